-- The audit log: one row per security event, written in the transaction of the change
-- it describes. Append-only: a trigger refuses UPDATE and DELETE, and retention drops
-- whole monthly partitions (dropping a partition fires no row trigger).
-- No foreign key to users: deleting an account keeps its history, and a cascade would
-- be a DELETE the trigger refuses.
create table audit_events (
    id uuid not null default gen_random_uuid(),
    created_at timestamptz not null default now(),
    -- dotted lower case, as in API.md (`login.succeeded`, `user.disabled`, ...)
    type text not null,
    -- the user the event is about
    user_id uuid,
    -- who caused it: the user themself, an admin, or null (an operator command, a sign-in
    -- attempt on an unknown account)
    actor_id uuid,
    session_id uuid,
    -- text rather than inet: it is only ever shown, never computed on
    client_address text,
    user_agent text,
    request_id text,
    -- event-specific facts (reason, role, counts); never a password, token or code
    details jsonb not null default '{}',
    primary key (created_at, id)
) partition by range (created_at);

-- Rows whose month has no partition yet land here, so an insert never fails for want
-- of maintenance; retention never drops it.
create table audit_events_default partition of audit_events default;

-- Creates the monthly partition holding `at` if it is missing. The service calls it at
-- start and from its maintenance loop for this month and the next.
create function audit_events_ensure_partition(at timestamptz) returns void
language plpgsql as $$
declare
    first timestamptz := date_trunc('month', at, 'UTC');
    name text := 'audit_events_' || to_char(first at time zone 'UTC', 'YYYY_MM');
begin
    if to_regclass(name) is null then
        execute format(
            'create table %I partition of audit_events for values from (%L) to (%L)',
            name, first, first + interval '1 month');
    end if;
end
$$;

select audit_events_ensure_partition(now());
select audit_events_ensure_partition(now() + interval '1 month');

create function audit_events_refuse_change() returns trigger
language plpgsql as $$
begin
    raise exception 'audit_events is append-only: % refused', tg_op
        using errcode = 'insufficient_privilege';
end
$$;

create trigger audit_events_append_only
    before update or delete on audit_events
    for each row execute function audit_events_refuse_change();

-- `me { securityEvents }` and `auditEvents(filter: {userId})`: a user's events, newest first
create index audit_events_user_idx on audit_events (user_id, created_at desc);
-- `auditEvents(filter: {types})`
create index audit_events_type_idx on audit_events (type, created_at desc);
