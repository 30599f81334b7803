-- set by `disableUser`: sign-in then answers ACCOUNT_DISABLED (after valid credentials)
alter table users add column disabled_at timestamptz;
-- `users(first, after)`: keyset pagination in (created_at, id) order
create index users_created_at_id_idx on users (created_at, id);
-- `users(search)`: email prefix (the unique index on email follows the collation, which
-- LIKE 'x%' cannot use) and display-name prefix, case-insensitive
create index users_email_prefix_idx on users (email text_pattern_ops);
create index users_display_name_prefix_idx on users (lower(display_name) text_pattern_ops);
-- the last-admin check: few rows
create index users_admins_idx on users (id) where role = 'ADMIN' and disabled_at is null;
