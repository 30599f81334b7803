-- Single-use tokens mailed for email verification and password reset, stored by hash
-- only. At most one live token per user and purpose: issuing one deletes the older.
create table email_tokens (
    -- SHA-256 of the opaque token; the token itself is only in the mail
    token_hash bytea primary key,
    user_id uuid not null references users (id) on delete cascade,
    purpose text not null
        constraint email_tokens_purpose_known check (purpose in ('verify_email', 'reset_password')),
    -- the address the token was mailed to: a verification token proves this address only
    email text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null
);
create index email_tokens_user_purpose_idx on email_tokens (user_id, purpose);
