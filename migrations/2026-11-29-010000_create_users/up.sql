create table users (
    -- random, so ids reveal neither order nor count
    id uuid primary key default gen_random_uuid(),
    -- stored normalised (trimmed, lowercased): the unique constraint is then case-insensitive
    email text not null constraint users_email_key unique
        constraint users_email_normalised check (email = lower(btrim(email))),
    -- argon2id PHC string
    password_hash text not null,
    display_name text,
    role text not null default 'USER' constraint users_role_known check (role in ('USER', 'ADMIN')),
    email_verified_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
