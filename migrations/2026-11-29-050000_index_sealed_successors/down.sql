drop index refresh_tokens_sealed_idx;
