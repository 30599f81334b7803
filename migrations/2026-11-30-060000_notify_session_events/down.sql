drop trigger users_notify_password_changed on users;
drop function authgraph_notify_password_changed();
drop trigger sessions_notify_deleted on sessions;
drop trigger sessions_notify_revoked on sessions;
drop trigger sessions_notify_started on sessions;
drop function authgraph_notify_session_event();
