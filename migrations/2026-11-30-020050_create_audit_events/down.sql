drop table audit_events;
drop function audit_events_refuse_change();
drop function audit_events_ensure_partition(timestamptz);
