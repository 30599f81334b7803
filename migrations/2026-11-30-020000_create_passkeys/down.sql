drop table passkey_ceremonies;
drop table passkeys;
