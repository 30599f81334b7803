-- One row per login session. Access tokens carry its id as `sid`; revoking the row
-- ends every token of the session at once.
create table sessions (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null references users (id) on delete cascade,
    user_agent text,
    created_at timestamptz not null default now(),
    last_used_at timestamptz not null default now(),
    -- expiry of the session's current refresh token: an idle session dies here
    expires_at timestamptz not null,
    -- no refresh extends the session past this
    absolute_expires_at timestamptz not null,
    revoked_at timestamptz,
    -- why it ended: logout, reuse, password_change, password_reset, revoked
    revoked_reason text
);
create index sessions_user_id_idx on sessions (user_id);

-- Every refresh token a session was ever given, by hash only, so a rotated token
-- presented again is recognised (reuse detection) instead of looking unknown.
create table refresh_tokens (
    -- SHA-256 of the opaque token; the token itself is never stored
    token_hash bytea primary key,
    session_id uuid not null references sessions (id) on delete cascade,
    issued_at timestamptz not null default now(),
    expires_at timestamptz not null,
    -- when this token was exchanged for its successor
    rotated_at timestamptz,
    -- the successor pair, encrypted under a key derived from this token (which only its
    -- holder knows), so a duplicate request inside the grace window gets the same pair
    successor_sealed bytea
);
create index refresh_tokens_session_id_idx on refresh_tokens (session_id);
