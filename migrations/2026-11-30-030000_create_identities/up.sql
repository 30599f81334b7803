-- Social sign-in. An account made from a provider identity may have no password (it
-- signs in through the provider) and no email (an untrusted or unverified provider
-- email never occupies an address its real owner could still register).
alter table users
    alter column email drop not null,
    alter column password_hash drop not null;

-- Provider identities linked to accounts: one (provider, subject) belongs to one account.
create table identities (
    id uuid primary key,
    user_id uuid not null references users (id) on delete cascade,
    -- the configured provider id (`google`, `github`, ...)
    provider text not null,
    -- the provider's stable id of the person: OIDC `sub`, GitHub's numeric user id
    subject text not null,
    -- the email the provider reported at linking, for display only: never used to sign in
    email text,
    linked_at timestamptz not null default now(),
    constraint identities_provider_subject_key unique (provider, subject)
);
create index identities_user_id_idx on identities (user_id);

-- Authorization flows between startOAuth and completeOAuth: single use, short-lived.
create table oauth_states (
    -- SHA-256 of the `state` parameter (256 random bits): the state itself is never stored
    state_hash bytea primary key,
    provider text not null,
    -- the allow-listed redirect URI the flow was started with; the code exchange sends it again
    redirect_uri text not null,
    -- the client's own PKCE S256 challenge: completeOAuth's codeVerifier must match it
    client_challenge text not null,
    -- our PKCE verifier towards the provider, and the OIDC nonce the ID token must carry
    pkce_verifier text not null,
    nonce text not null,
    -- set for a deliberate link: completeOAuth must carry this user's token
    link_user_id uuid references users (id) on delete cascade,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null
);
create index oauth_states_expires_at_idx on oauth_states (expires_at);
