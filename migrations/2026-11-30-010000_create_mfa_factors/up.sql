-- How each session was authenticated (API.md's `amr`/`acr` table), so `refresh` issues
-- the same claims and a step-up updates them. Sessions from before this migration were
-- password sign-ins at their creation.
alter table sessions
    -- RFC 8176 method references, in the order they were used: {pwd}, {pwd,otp,mfa}, ...
    add column amr text[] not null default '{pwd}',
    -- aal1, or aal2 once a second factor was verified in the session
    add column acr text not null default 'aal1'
        constraint sessions_acr_known check (acr in ('aal1', 'aal2')),
    -- the last time the user actively authenticated in this session (sign-in or step-up)
    add column auth_time timestamptz;
update sessions set auth_time = created_at;
alter table sessions
    alter column auth_time set not null,
    alter column amr drop default,
    alter column acr drop default;

-- Second factors. A factor counts only once confirmed with a valid code.
create table mfa_factors (
    id uuid primary key,
    user_id uuid not null references users (id) on delete cascade,
    kind text not null constraint mfa_factors_kind_known check (kind in ('TOTP')),
    -- the TOTP secret under AES-256-GCM with MFA_ENCRYPTION_KEY (nonce || ciphertext ||
    -- tag), bound to this row's id and user: never stored in the clear
    secret_sealed bytea not null,
    created_at timestamptz not null default now(),
    -- null until confirmTotp: an unconfirmed factor is an enrollment in progress
    confirmed_at timestamptz,
    last_used_at timestamptz,
    -- the RFC 6238 time step of the last accepted code: a code of that step or an earlier
    -- one is refused, so no code works twice
    last_used_step bigint
);
create index mfa_factors_user_id_idx on mfa_factors (user_id);

-- Recovery codes: they belong to the user, not to one factor, and each works once.
create table recovery_codes (
    user_id uuid not null references users (id) on delete cascade,
    -- SHA-256 of the normalised code (80 random bits: no salt or slow hash needed)
    code_hash bytea not null,
    created_at timestamptz not null default now(),
    used_at timestamptz,
    primary key (user_id, code_hash)
);

-- Sign-ins waiting for their second factor (`MFA_REQUIRED`), in PostgreSQL so any
-- replica can complete one. Single use: deleted when completed.
create table mfa_challenges (
    -- SHA-256 of the opaque mfaToken; the token itself is only in the login answer
    token_hash bytea primary key,
    user_id uuid not null references users (id) on delete cascade,
    -- the methods of the first step (e.g. {pwd}); the second adds otp and mfa
    amr text[] not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null
);
create index mfa_challenges_user_id_idx on mfa_challenges (user_id);
create index mfa_challenges_expires_at_idx on mfa_challenges (expires_at);
