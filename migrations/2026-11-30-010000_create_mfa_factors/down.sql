drop table mfa_challenges;
drop table recovery_codes;
drop table mfa_factors;
alter table sessions
    drop column auth_time,
    drop column acr,
    drop column amr;
