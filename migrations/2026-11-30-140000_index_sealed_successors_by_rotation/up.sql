-- The wipe of sealed successors past their grace window reads, among its session's
-- tokens still holding one, only those rotated before the cutoff: with the rotation time
-- in the index that is a range of one or two entries, not every token rotated within the
-- window (a client refreshing in a tight loop had hundreds, and the planner then
-- preferred reading the session's whole chain through refresh_tokens_session_id_idx).
drop index refresh_tokens_sealed_idx;
create index refresh_tokens_sealed_idx on refresh_tokens (session_id, rotated_at) where successor_sealed is not null;
