update refresh_tokens t set successor_sealed = x.sealed
from refresh_token_successors x
where x.parent_hash = t.token_hash;
create index refresh_tokens_sealed_idx on refresh_tokens (session_id, rotated_at) where successor_sealed is not null;
drop table refresh_token_successors;
