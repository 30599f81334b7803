-- Passkeys (WebAuthn credentials) a user signs in with.
create table passkeys (
    id uuid primary key,
    user_id uuid not null references users (id) on delete cascade,
    -- the credential id the authenticator chose (rawId); one account per credential
    credential_id bytea not null constraint passkeys_credential_id_key unique,
    -- webauthn-rs's Credential as JSON (public key, algorithm, flags): what verifies assertions
    credential text not null,
    name text,
    -- the authenticator's signature counter: an assertion whose counter does not grow
    -- past it (a cloned authenticator) is refused
    sign_count bigint not null default 0,
    -- backup eligible (a synced passkey: amr `swk`, else `hwk`) and backed up now
    backup_eligible boolean not null,
    backed_up boolean not null,
    created_at timestamptz not null default now(),
    last_used_at timestamptz
);
create index passkeys_user_id_idx on passkeys (user_id);

-- WebAuthn ceremonies between their begin and finish mutations, in PostgreSQL so any
-- replica can finish what another began. Single use: deleted when finished, failed or not.
create table passkey_ceremonies (
    -- the challengeId handed to the client
    id uuid primary key,
    kind text not null constraint passkey_ceremonies_kind_known
        check (kind in ('registration', 'authentication')),
    -- registration: the registering user; authentication: the user whose email was
    -- given (null for an unknown email, or a discoverable sign-in)
    user_id uuid references users (id) on delete cascade,
    -- an email was given: only that user's passkeys may finish it
    email_bound boolean not null default false,
    -- webauthn-rs's ceremony state as JSON (challenge, policy, allowed credentials)
    state text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null
);
create index passkey_ceremonies_expires_at_idx on passkey_ceremonies (expires_at);
create index passkey_ceremonies_user_id_idx on passkey_ceremonies (user_id);
