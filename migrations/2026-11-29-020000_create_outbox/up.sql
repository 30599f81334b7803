-- The transactional outbox: a mail is inserted in the same transaction as the change
-- that causes it, and the mail worker delivers it later (at least once; the stable
-- message_id makes a resend after an ambiguous failure recognisable).
create table outbox (
    id uuid primary key,
    -- on delete cascade: deleting an account drops its undelivered mail too
    user_id uuid references users (id) on delete cascade,
    -- what the mail is for: verify_email or reset_password
    kind text not null,
    recipient text not null,
    subject text not null,
    -- the rendered parts; cleared once the mail is sent or dead, since they carry a token
    body_text text,
    body_html text,
    -- the Message-ID header, fixed at insert so every attempt carries the same one
    message_id text not null constraint outbox_message_id_key unique,
    status text not null default 'pending'
        constraint outbox_status_known check (status in ('pending', 'sent', 'dead')),
    -- failed delivery attempts so far
    attempts integer not null default 0,
    -- not claimed before this time (backoff after a failure)
    next_attempt_at timestamptz not null default now(),
    -- the worker run delivering it, until claimed_until: a crashed worker's claim lapses
    claimed_by uuid,
    claimed_until timestamptz,
    -- class of the last failure (connection, timeout, smtp 4xx/5xx code); never an address
    last_error text,
    created_at timestamptz not null default now(),
    sent_at timestamptz
);
-- the worker's claim query: due pending mail, oldest first
create index outbox_due_idx on outbox (next_attempt_at) where status = 'pending';
create index outbox_user_id_idx on outbox (user_id);
