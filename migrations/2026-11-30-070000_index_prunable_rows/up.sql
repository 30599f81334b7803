-- The retention job (src/retention.rs) deletes rows nothing needs any more in batches of
-- a thousand; each batch picks its rows with a `limit`ed subselect on these indexes, so
-- it reads what it deletes and not the whole table.

-- When a session ended: revoked, idle past its refresh token, or past its absolute
-- lifetime (`least` skips a null revoked_at). The same expression as the job's query.
create index sessions_ended_at_idx on sessions ((least(revoked_at, expires_at, absolute_expires_at)));

-- Sent or dead mail by when it finished: sent_at, or for dead mail its last scheduled
-- attempt. Pending mail (the worker's own index covers it) is left out.
create index outbox_finished_at_idx on outbox ((coalesce(sent_at, next_attempt_at))) where status <> 'pending';

-- Email tokens by expiry.
create index email_tokens_expires_at_idx on email_tokens (expires_at);
