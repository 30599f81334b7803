drop index refresh_tokens_sealed_idx;
create index refresh_tokens_sealed_idx on refresh_tokens (session_id) where successor_sealed is not null;
