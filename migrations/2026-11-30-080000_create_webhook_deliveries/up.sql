-- Webhook deliveries: one row per event and endpoint, inserted in the transaction of the
-- change (beside its audit row) and POSTed later by the webhook worker, at least once.
-- A sibling of `outbox` with the same claim columns, not `outbox` itself: outbox rows
-- cascade away with their user (right for mail, wrong for `user.deleted`) and are
-- mail-shaped (recipient, subject, message_id).
create table webhook_deliveries (
    id uuid primary key,
    -- the Standard Webhooks message id (`webhook-id`): the audit event's id, shared by
    -- every endpoint's copy and every retry, so receivers can deduplicate
    event_id text not null,
    -- the URL it goes to, one of WEBHOOK_ENDPOINTS when it was queued
    endpoint text not null,
    -- the event type (`user.created`), for inspection and metrics
    kind text not null,
    -- the exact JSON body, fixed at insert: every attempt signs and sends the same bytes
    -- (no user foreign key: the row outlives a deleted account, as the audit row does)
    payload text not null,
    status text not null default 'pending'
        constraint webhook_deliveries_status_known check (status in ('pending', 'delivered', 'dead')),
    -- failed delivery attempts so far
    attempts integer not null default 0,
    -- not claimed before this time (backoff after a failure)
    next_attempt_at timestamptz not null default now(),
    -- the worker run delivering it, until claimed_until: a crashed worker's claim lapses
    claimed_by uuid,
    claimed_until timestamptz,
    -- class of the last failure (`http 503`, `timeout`, `connection`); never a body
    last_error text,
    created_at timestamptz not null default now(),
    delivered_at timestamptz,
    constraint webhook_deliveries_event_endpoint_key unique (event_id, endpoint)
);
-- each endpoint's worker claims its own due deliveries, oldest first
create index webhook_deliveries_due_idx on webhook_deliveries (endpoint, next_attempt_at)
    where status = 'pending';
-- retention: finished deliveries by the time they finished
create index webhook_deliveries_finished_idx
    on webhook_deliveries ((coalesce(delivered_at, next_attempt_at)))
    where status <> 'pending';
