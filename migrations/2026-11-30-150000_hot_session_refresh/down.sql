alter table sessions reset (fillfactor);
drop index sessions_ended_at_idx;
alter table sessions drop column expires_hour;
create index sessions_ended_at_idx on sessions ((least(revoked_at, expires_at, absolute_expires_at)));
