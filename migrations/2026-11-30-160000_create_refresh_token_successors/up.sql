-- A rotated token's successor pair, sealed under the token, kept through the grace
-- window, moves out of refresh_tokens into a table of its own. In refresh_tokens it
-- took a partial index (`where successor_sealed is not null`) to find the ones to wipe,
-- and a column in an index's key or predicate makes every update of it a non-HOT update:
-- each rotation marked its parent and wiped an older sealed successor, writing new
-- entries into every index of refresh_tokens twice over. Here the seal is one insert,
-- the wipe a delete by primary-key range, and the parent's mark (rotated_at, in no
-- index now) an update in place.
create table refresh_token_successors (
    session_id uuid not null references sessions (id) on delete cascade,
    rotated_at timestamptz not null,
    parent_hash bytea not null,
    sealed bytea not null,
    primary key (session_id, rotated_at, parent_hash)
);
insert into refresh_token_successors (session_id, rotated_at, parent_hash, sealed)
select session_id, rotated_at, token_hash, successor_sealed
from refresh_tokens
where successor_sealed is not null and rotated_at is not null;
update refresh_tokens set successor_sealed = null where successor_sealed is not null;
drop index refresh_tokens_sealed_idx;
-- refresh_tokens.successor_sealed stays for one release: replicas still on the previous
-- binary during a rolling deploy write and read it, and this binary reads it too when a
-- token has no row here. The next release drops it.
