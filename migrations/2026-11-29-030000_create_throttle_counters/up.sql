-- Attempt counters shared by every replica: failed logins per account, per account and
-- address, and per address; registrations, mail requests and bad tokens per address or
-- recipient. Rows are taken under `for update`, so concurrent attempts never both pass
-- a limit (ASVS 15.4.2).
create table throttle_counters (
    -- `<limit>:<subject>`, e.g. `login.account:<sha-256 of the email>` or
    -- `login.address:203.0.113.7`; emails are stored only as hashes
    key text primary key,
    -- attempts counted in the current window
    attempts integer not null default 0 constraint throttle_counters_attempts_nonnegative check (attempts >= 0),
    -- when the count starts over (fixed window from its first attempt)
    window_ends_at timestamptz not null,
    -- no attempt is taken before this; the wait grows with every attempt past the limit
    locked_until timestamptz
);
-- Pruning finds expired rows by their window.
create index throttle_counters_window_ends_at_idx on throttle_counters (window_ends_at);
