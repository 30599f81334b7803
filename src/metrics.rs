// Over 400 lines on purpose: the one list of metric names, each beside its recorder.
//! Prometheus metrics: every metric name the service exports, and the small helpers the
//! other modules call to record them. Sits beside `config` and `telemetry`, so any layer
//! may record without importing another.
//!
//! Names follow Prometheus conventions: the `authgraph_` prefix, base units (`_seconds`),
//! `_total` on counters, and labels whose values come from a small fixed set (route
//! templates, error codes, outcomes), never from raw client input. The only client-chosen
//! label, the GraphQL operation name, is bounded by [`OperationNames`].
//!
//! Gauges that describe a resource (pool, hash queue, outbox) are sampled when `/metrics`
//! is scraped or when their owner changes them, not on every request.

use std::{
    collections::HashSet,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests by `method`, `route` (the matched route template, `unmatched` for
/// 404s) and `status`. Counter.
pub const HTTP_REQUESTS_TOTAL: &str = "authgraph_http_requests_total";
/// HTTP request latency by `method` and `route`. Histogram, seconds.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "authgraph_http_request_duration_seconds";

/// GraphQL operations by `operation` (name, bounded), `type` (`query`, `mutation`,
/// `unknown`), `outcome` (`ok`, `error`) and `code` (the first error's
/// `extensions.code`, `none` when it succeeded). Counter.
pub const GRAPHQL_OPERATIONS_TOTAL: &str = "authgraph_graphql_operations_total";
/// GraphQL operation latency by `operation`, `type` and `outcome`. Histogram, seconds.
pub const GRAPHQL_OPERATION_DURATION_SECONDS: &str = "authgraph_graphql_operation_duration_seconds";

/// Login attempts by `outcome`: `success`, `invalid_credentials`, `invalid_input`,
/// `rate_limited`, `unavailable`, `error`. Counter.
pub const LOGINS_TOTAL: &str = "authgraph_logins_total";
/// Attempts refused by a throttle, by `scope`: `http` (the per-address HTTP limit) or
/// the attempt limit's name (`login.account`, `login.address`, ...). Counter.
pub const THROTTLE_HITS_TOTAL: &str = "authgraph_throttle_hits_total";
/// Rotated refresh tokens presented again outside the grace window (each revokes a
/// session). Counter.
pub const REFRESH_TOKEN_REUSE_TOTAL: &str = "authgraph_refresh_token_reuse_detections_total";

/// Password hash jobs waiting for a slot. Gauge.
pub const PASSWORD_HASH_QUEUE_DEPTH: &str = "authgraph_password_hash_queue_depth";
/// Time one argon2 job takes on its thread, by `op` (`hash`, `verify`). Histogram, seconds.
pub const PASSWORD_HASH_DURATION_SECONDS: &str = "authgraph_password_hash_duration_seconds";

/// Connections the pool holds (busy and idle). Gauge.
pub const DB_POOL_CONNECTIONS: &str = "authgraph_db_pool_connections";
/// Idle connections in the pool. Gauge.
pub const DB_POOL_IDLE_CONNECTIONS: &str = "authgraph_db_pool_idle_connections";
/// Most connections the pool may hold (`DATABASE_POOL_SIZE`). Gauge.
pub const DB_POOL_MAX_CONNECTIONS: &str = "authgraph_db_pool_max_connections";
/// Connection checkouts by `result`: `direct` (one was idle), `waited`, `timed_out`
/// (answered `SERVICE_UNAVAILABLE`). Counter.
pub const DB_POOL_GETS_TOTAL: &str = "authgraph_db_pool_gets_total";
/// Time a request took to check out a connection (waits and timeouts included).
/// Histogram, seconds.
pub const DB_POOL_WAIT_DURATION_SECONDS: &str = "authgraph_db_pool_wait_duration_seconds";
/// Connections closed by `reason`: `broken`, `invalid` (failed the check on checkout,
/// as after a database restart), `idle_timeout`, `max_lifetime`. Counter.
pub const DB_POOL_CONNECTIONS_CLOSED_TOTAL: &str = "authgraph_db_pool_connections_closed_total";
/// Failed attempts to open a database connection. Counter.
pub const DB_CONNECT_ERRORS_TOTAL: &str = "authgraph_db_connect_errors_total";
/// 1 while `/readyz` last found the database answering, else 0. Gauge.
pub const DB_UP: &str = "authgraph_db_up";

/// Mails waiting in the outbox (shared by all replicas, so each reports the same). Gauge.
pub const MAIL_OUTBOX_DEPTH: &str = "authgraph_mail_outbox_depth";
/// Age of the oldest undelivered mail, 0 when the outbox is empty. Gauge, seconds.
pub const MAIL_OUTBOX_OLDEST_AGE_SECONDS: &str = "authgraph_mail_outbox_oldest_age_seconds";
/// Mail delivery outcomes by `outcome`: `sent`, `failed` (an attempt failed; the mail
/// is retried later or, after its last attempt, also counted `dead`), `dead`. Counter.
pub const MAIL_DELIVERIES_TOTAL: &str = "authgraph_mail_deliveries_total";
/// The SMTP circuit breaker: 1 on the current `state` (`closed`, `open`, `half_open`),
/// 0 on the others. Gauge.
pub const MAIL_BREAKER_STATE: &str = "authgraph_mail_breaker_state";

/// Webhook delivery outcomes by `endpoint` (1-based position in `WEBHOOK_ENDPOINTS`)
/// and `outcome`: `delivered`, `failed` (an attempt failed; retried later or, after
/// its last attempt, also counted `dead`), `dead`. Counter.
pub const WEBHOOK_DELIVERIES_TOTAL: &str = "authgraph_webhook_deliveries_total";
/// Each endpoint's circuit breaker: 1 on the current `state`, 0 on the others. Gauge.
pub const WEBHOOK_BREAKER_STATE: &str = "authgraph_webhook_breaker_state";

/// Open live-event sockets (upgraded, whether or not signed in yet). Gauge.
pub const LIVE_SOCKETS_OPEN: &str = "authgraph_live_sockets_open";
/// Session events sent over sockets, by `type` (`SESSION_REVOKED`, `NEW_SIGN_IN`,
/// `PASSWORD_CHANGED`, `other`). Counter.
pub const LIVE_EVENTS_SENT_TOTAL: &str = "authgraph_live_events_sent_total";
/// Sockets refused or closed by a limit, by `reason` (`address`, `user`, `messages`,
/// `subscriptions`, `keepalive`). Counter.
pub const LIVE_SOCKETS_REFUSED_TOTAL: &str = "authgraph_live_sockets_refused_total";
/// 1 while the process LISTENs for session events, else 0. Gauge.
pub const LIVE_LISTENER_UP: &str = "authgraph_live_listener_up";
/// Rows deleted by the retention job, by `table` (`sessions`, `refresh_tokens`,
/// `outbox`, `email_tokens`). Counter.
pub const RETENTION_PRUNED_ROWS_TOTAL: &str = "authgraph_retention_pruned_rows_total";
/// Retention passes by `outcome`: `done`, `skipped` (another replica holds the lock),
/// `failed`. Counter.
pub const RETENTION_RUNS_TOTAL: &str = "authgraph_retention_runs_total";

/// Most distinct GraphQL operation names kept as label values; later ones count as `other`.
const MAX_OPERATION_NAMES: usize = 200;
/// Longest operation name kept as a label value.
const MAX_OPERATION_NAME_LEN: usize = 64;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls are no-ops).
pub fn install() {
    HANDLE.get_or_init(|| {
        let fast = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), &fast)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(PASSWORD_HASH_DURATION_SECONDS.into()),
                    &[0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0],
                )
            });
        let handle = builder.and_then(PrometheusBuilder::install_recorder);
        match handle {
            Ok(handle) => {
                describe();
                // Histogram samples pile up until upkeep folds them into their buckets;
                // without a scrape that would be never, and the heap would grow with
                // every request. A plain thread, so it runs whatever the runtime.
                let upkeep = handle.clone();
                let spawned = std::thread::Builder::new()
                    .name("metrics-upkeep".into())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(std::time::Duration::from_secs(1));
                            upkeep.run_upkeep();
                        }
                    });
                if let Err(err) = spawned {
                    tracing::warn!(error = %err, "metrics upkeep thread not started");
                }
                Some(handle)
            }
            Err(err) => {
                tracing::warn!(error = %err, "metrics recorder not installed: /metrics stays empty");
                None
            }
        }
    });
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render() -> String {
    match HANDLE.get() {
        Some(Some(handle)) => {
            handle.run_upkeep();
            handle.render()
        }
        _ => String::new(),
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests by route and status");
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "HTTP request latency"
    );
    describe_counter!(
        GRAPHQL_OPERATIONS_TOTAL,
        "GraphQL operations by name, outcome and error code"
    );
    describe_histogram!(
        GRAPHQL_OPERATION_DURATION_SECONDS,
        Unit::Seconds,
        "GraphQL operation latency"
    );
    describe_counter!(LOGINS_TOTAL, "Login attempts by outcome");
    describe_counter!(THROTTLE_HITS_TOTAL, "Attempts refused by a throttle");
    describe_counter!(
        REFRESH_TOKEN_REUSE_TOTAL,
        "Rotated refresh tokens presented again"
    );
    describe_gauge!(PASSWORD_HASH_QUEUE_DEPTH, "Password hash jobs waiting for a slot");
    describe_histogram!(
        PASSWORD_HASH_DURATION_SECONDS,
        Unit::Seconds,
        "Time of one argon2 job"
    );
    describe_gauge!(DB_POOL_CONNECTIONS, "Database connections held by the pool");
    describe_gauge!(DB_POOL_IDLE_CONNECTIONS, "Idle database connections");
    describe_gauge!(DB_POOL_MAX_CONNECTIONS, "Most connections the pool may hold");
    describe_counter!(DB_POOL_GETS_TOTAL, "Connection checkouts by result");
    describe_histogram!(
        DB_POOL_WAIT_DURATION_SECONDS,
        Unit::Seconds,
        "Time to check out a connection"
    );
    describe_counter!(
        DB_POOL_CONNECTIONS_CLOSED_TOTAL,
        "Database connections closed by reason"
    );
    describe_counter!(
        DB_CONNECT_ERRORS_TOTAL,
        "Failed attempts to open a database connection"
    );
    describe_gauge!(DB_UP, "Whether the database answered the last readiness check");
    describe_gauge!(MAIL_OUTBOX_DEPTH, "Mails waiting in the outbox");
    describe_gauge!(
        MAIL_OUTBOX_OLDEST_AGE_SECONDS,
        Unit::Seconds,
        "Age of the oldest undelivered mail"
    );
    describe_counter!(MAIL_DELIVERIES_TOTAL, "Mail delivery attempts by outcome");
    describe_gauge!(
        MAIL_BREAKER_STATE,
        "SMTP circuit breaker state (1 on the current state)"
    );
    describe_counter!(
        WEBHOOK_DELIVERIES_TOTAL,
        "Webhook delivery attempts by endpoint and outcome"
    );
    describe_gauge!(
        WEBHOOK_BREAKER_STATE,
        "Webhook circuit breaker state per endpoint (1 on the current state)"
    );
    describe_gauge!(LIVE_SOCKETS_OPEN, "Open live-event sockets");
    describe_counter!(LIVE_EVENTS_SENT_TOTAL, "Session events sent over sockets by type");
    describe_counter!(LIVE_SOCKETS_REFUSED_TOTAL, "Sockets refused or closed by a limit");
    describe_gauge!(LIVE_LISTENER_UP, "Whether the process listens for session events");
    describe_counter!(
        RETENTION_PRUNED_ROWS_TOTAL,
        "Rows deleted by the retention job, by table"
    );
    describe_counter!(RETENTION_RUNS_TOTAL, "Retention passes by outcome");
}

/// Records one HTTP request.
pub fn http_request(method: &'static str, route: &str, status: u16, elapsed: Duration) {
    let route = metrics::SharedString::from_shared(std::sync::Arc::<str>::from(route));
    counter!(HTTP_REQUESTS_TOTAL, "method" => method, "route" => route.clone(), "status" => status_label(status))
        .increment(1);
    histogram!(HTTP_REQUEST_DURATION_SECONDS, "method" => method, "route" => route).record(elapsed);
}

/// A status code as a label: the ones this service answers without an allocation.
fn status_label(status: u16) -> metrics::SharedString {
    let known = match status {
        200 => "200",
        204 => "204",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        406 => "406",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => return status.to_string().into(),
    };
    metrics::SharedString::const_str(known)
}

/// Records one GraphQL operation; `code` is `None` when it succeeded.
pub fn graphql_operation(operation: &str, kind: &'static str, code: Option<&str>, elapsed: Duration) {
    let outcome = if code.is_some() { "error" } else { "ok" };
    let operation = operation.to_owned();
    counter!(
        GRAPHQL_OPERATIONS_TOTAL,
        "operation" => operation.clone(),
        "type" => kind,
        "outcome" => outcome,
        "code" => code.unwrap_or("none").to_owned(),
    )
    .increment(1);
    histogram!(GRAPHQL_OPERATION_DURATION_SECONDS, "operation" => operation, "type" => kind, "outcome" => outcome)
        .record(elapsed);
}

/// Records one login attempt by outcome (see [`LOGINS_TOTAL`]).
pub fn login(outcome: &'static str) {
    counter!(LOGINS_TOTAL, "outcome" => outcome).increment(1);
}

/// Records an attempt refused by a throttle of `scope` (see [`THROTTLE_HITS_TOTAL`]).
pub fn throttle_hit(scope: &'static str) {
    counter!(THROTTLE_HITS_TOTAL, "scope" => scope).increment(1);
}

/// Records a detected refresh-token reuse.
pub fn refresh_token_reused() {
    counter!(REFRESH_TOKEN_REUSE_TOTAL).increment(1);
}

/// Records the time of one argon2 job (`op` is `hash` or `verify`).
pub fn password_hash(op: &'static str, elapsed: Duration) {
    histogram!(PASSWORD_HASH_DURATION_SECONDS, "op" => op).record(elapsed);
}

/// Sets the password hash queue depth.
pub fn password_hash_queue(depth: usize) {
    gauge!(PASSWORD_HASH_QUEUE_DEPTH).set(depth as f64);
}

/// What the pool reports, copied out of bb8's `State` so this module needs no bb8.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolSample {
    /// Connections held.
    pub connections: u32,
    /// Idle connections.
    pub idle: u32,
    /// `DATABASE_POOL_SIZE`.
    pub max: u32,
    /// Checkouts that found an idle connection.
    pub gets_direct: u64,
    /// Checkouts that waited.
    pub gets_waited: u64,
    /// Checkouts that gave up.
    pub gets_timed_out: u64,
    /// Closed as broken.
    pub closed_broken: u64,
    /// Closed after failing the checkout test.
    pub closed_invalid: u64,
    /// Closed after idling too long.
    pub closed_idle_timeout: u64,
    /// Closed at the end of their lifetime.
    pub closed_max_lifetime: u64,
}

/// Publishes a pool sample (cumulative counts are set, not added).
pub fn db_pool(sample: &PoolSample) {
    gauge!(DB_POOL_CONNECTIONS).set(f64::from(sample.connections));
    gauge!(DB_POOL_IDLE_CONNECTIONS).set(f64::from(sample.idle));
    gauge!(DB_POOL_MAX_CONNECTIONS).set(f64::from(sample.max));
    for (result, n) in [
        ("direct", sample.gets_direct),
        ("waited", sample.gets_waited),
        ("timed_out", sample.gets_timed_out),
    ] {
        counter!(DB_POOL_GETS_TOTAL, "result" => result).absolute(n);
    }
    for (reason, n) in [
        ("broken", sample.closed_broken),
        ("invalid", sample.closed_invalid),
        ("idle_timeout", sample.closed_idle_timeout),
        ("max_lifetime", sample.closed_max_lifetime),
    ] {
        counter!(DB_POOL_CONNECTIONS_CLOSED_TOTAL, "reason" => reason).absolute(n);
    }
}

/// Records how long one connection checkout took.
pub fn db_pool_wait(elapsed: Duration) {
    histogram!(DB_POOL_WAIT_DURATION_SECONDS).record(elapsed);
}

/// Records a failed attempt to open a database connection.
pub fn db_connect_error() {
    counter!(DB_CONNECT_ERRORS_TOTAL).increment(1);
}

/// Records whether the database answered the readiness check.
pub fn db_up(up: bool) {
    gauge!(DB_UP).set(if up { 1.0 } else { 0.0 });
}

/// Publishes the outbox depth and the age of its oldest mail.
pub fn mail_outbox(depth: u64, oldest_age: Duration) {
    gauge!(MAIL_OUTBOX_DEPTH).set(depth as f64);
    gauge!(MAIL_OUTBOX_OLDEST_AGE_SECONDS).set(oldest_age.as_secs_f64());
}

/// Records one mail delivery outcome (`sent`, `failed`, `dead`).
pub fn mail_delivery(outcome: &'static str) {
    counter!(MAIL_DELIVERIES_TOTAL, "outcome" => outcome).increment(1);
}

/// Records a socket opening (`+1`) or closing (`-1`).
pub fn live_socket(delta: f64) {
    gauge!(LIVE_SOCKETS_OPEN).increment(delta);
}

/// Records one session event sent over a socket.
pub fn live_event_sent(kind: &str) {
    let kind = match kind {
        "SESSION_REVOKED" => "SESSION_REVOKED",
        "NEW_SIGN_IN" => "NEW_SIGN_IN",
        "PASSWORD_CHANGED" => "PASSWORD_CHANGED",
        _ => "other",
    };
    counter!(LIVE_EVENTS_SENT_TOTAL, "type" => kind).increment(1);
}

/// Records a socket refused or closed by a limit (see [`LIVE_SOCKETS_REFUSED_TOTAL`]).
pub fn live_refused(reason: &'static str) {
    counter!(LIVE_SOCKETS_REFUSED_TOTAL, "reason" => reason).increment(1);
}

/// Records whether the LISTEN connection is up.
pub fn live_listener_up(up: bool) {
    gauge!(LIVE_LISTENER_UP).set(if up { 1.0 } else { 0.0 });
}

/// Records rows the retention job deleted from `table`.
pub fn retention_pruned(table: &'static str, rows: u64) {
    counter!(RETENTION_PRUNED_ROWS_TOTAL, "table" => table).increment(rows);
}

/// Records one retention pass (`done`, `skipped`, `failed`).
pub fn retention_run(outcome: &'static str) {
    counter!(RETENTION_RUNS_TOTAL, "outcome" => outcome).increment(1);
}

/// Publishes the SMTP breaker's state: `closed`, `open` or `half_open`.
pub fn mail_breaker(state: &'static str) {
    for s in ["closed", "open", "half_open"] {
        gauge!(MAIL_BREAKER_STATE, "state" => s).set(if s == state { 1.0 } else { 0.0 });
    }
}

/// Records one webhook delivery outcome for endpoint number `endpoint`.
pub fn webhook_delivery(endpoint: &str, outcome: &'static str) {
    counter!(WEBHOOK_DELIVERIES_TOTAL, "endpoint" => endpoint.to_owned(), "outcome" => outcome).increment(1);
}

/// Publishes endpoint number `endpoint`'s breaker state.
pub fn webhook_breaker(endpoint: &str, state: &'static str) {
    for s in ["closed", "open", "half_open"] {
        gauge!(WEBHOOK_BREAKER_STATE, "endpoint" => endpoint.to_owned(), "state" => s).set(if s == state {
            1.0
        } else {
            0.0
        });
    }
}

/// Keeps the GraphQL operation-name label bounded: a client picks the names, so a
/// flood of random ones must not grow the registry without end.
#[derive(Default)]
pub struct OperationNames {
    seen: Mutex<HashSet<String>>,
}

impl OperationNames {
    /// The label value for an operation name: the name itself while fewer than
    /// 200 distinct names were seen, `anonymous` for none, `other` past the bound.
    pub fn label(&self, name: Option<&str>) -> String {
        let Some(name) = name else {
            return "anonymous".to_owned();
        };
        let well_formed = name.len() <= MAX_OPERATION_NAME_LEN
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return "other".to_owned();
        }
        let Ok(mut seen) = self.seen.lock() else {
            return "other".to_owned();
        };
        if seen.contains(name) || seen.len() < MAX_OPERATION_NAMES && seen.insert(name.to_owned()) {
            name.to_owned()
        } else {
            "other".to_owned()
        }
    }
}

/// The process-wide operation-name bound.
pub fn operation_names() -> &'static OperationNames {
    static NAMES: OnceLock<OperationNames> = OnceLock::new();
    NAMES.get_or_init(OperationNames::default)
}

#[cfg(test)]
mod tests;
