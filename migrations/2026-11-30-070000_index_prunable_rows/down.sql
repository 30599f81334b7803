drop index email_tokens_expires_at_idx;
drop index outbox_finished_at_idx;
drop index sessions_ended_at_idx;
