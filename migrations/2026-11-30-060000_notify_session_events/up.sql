-- Live session events (`sessionEvents`). Published by the database itself, so every
-- change that starts or ends a session notifies inside its own transaction whichever
-- code path made it (logout, revokeSession, logout of all sessions, refresh-token reuse,
-- password change or reset, account deletion, and any later one): NOTIFY is delivered
-- at commit, to every replica's LISTEN connection, and never for a rolled-back change.
-- The payload is small and carries no secret: type, user, session, user agent, time.
create function authgraph_notify_session_event() returns trigger
language plpgsql as $$
declare
    row_ sessions;
    kind text;
begin
    if tg_op = 'INSERT' then
        row_ := new;
        kind := 'NEW_SIGN_IN';
    elsif tg_op = 'UPDATE' then
        row_ := new;
        kind := 'SESSION_REVOKED';
    else
        row_ := old;
        kind := 'SESSION_REVOKED';
    end if;
    perform pg_notify('authgraph_session_events', json_build_object(
        'type', kind,
        'user', row_.user_id,
        'session', row_.id,
        'userAgent', left(row_.user_agent, 256),
        'at', (extract(epoch from clock_timestamp()) * 1000)::bigint
    )::text);
    return null;
end
$$;

create trigger sessions_notify_started
    after insert on sessions
    for each row execute function authgraph_notify_session_event();

create trigger sessions_notify_revoked
    after update of revoked_at on sessions
    for each row when (old.revoked_at is null and new.revoked_at is not null)
    execute function authgraph_notify_session_event();

-- Deleting an account cascades to its sessions: the live ones end there. Pruning ended
-- sessions (revoked or expired: the retention job) announces nothing.
create trigger sessions_notify_deleted
    after delete on sessions
    for each row when (
        old.revoked_at is null
        and old.expires_at > now()
        and old.absolute_expires_at > now()
    )
    execute function authgraph_notify_session_event();

create function authgraph_notify_password_changed() returns trigger
language plpgsql as $$
begin
    perform pg_notify('authgraph_session_events', json_build_object(
        'type', 'PASSWORD_CHANGED',
        'user', new.id,
        'session', null,
        'userAgent', null,
        'at', (extract(epoch from clock_timestamp()) * 1000)::bigint
    )::text);
    return null;
end
$$;

create trigger users_notify_password_changed
    after update of password_hash on users
    for each row when (old.password_hash is distinct from new.password_hash)
    execute function authgraph_notify_password_changed();
