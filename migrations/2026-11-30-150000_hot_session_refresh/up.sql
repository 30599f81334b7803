-- Every refresh moves its session's sliding expires_at. While expires_at is in an index,
-- PostgreSQL cannot update the row in place (a HOT update): each refresh wrote a new
-- entry into every index of sessions, and a session refreshed often left a trail of dead
-- versions that every lookup of it walked. The retention index now holds expires_at
-- rounded down to the hour, a stored generated column that changes once an hour of
-- sliding, so nearly every refresh is a HOT update. The retention query scans the index
-- for the rounded time and checks the exact one (src/db/retention.rs).
alter table sessions
    add column expires_hour timestamptz not null
    generated always as (date_bin('1 hour', expires_at, timestamptz '2000-01-01 00:00:00+00')) stored;
drop index sessions_ended_at_idx;
create index sessions_ended_at_idx on sessions ((least(revoked_at, expires_hour, absolute_expires_at)));
-- Room on each page for the new versions of its rows, so a HOT update rarely finds its
-- page full.
alter table sessions set (fillfactor = 90);
