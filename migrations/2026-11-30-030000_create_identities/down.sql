drop table oauth_states;
drop table identities;
-- Accounts without an email or a password cannot exist before this migration.
delete from users where email is null or password_hash is null;
alter table users
    alter column email set not null,
    alter column password_hash set not null;
