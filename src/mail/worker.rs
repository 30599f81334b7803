// Over 400 lines on purpose: one delivery loop (claim, send, record), its shutdown and stats.
//! The delivery worker: claims due outbox mail one at a time, sends it over SMTP through
//! the circuit breaker, and records the outcome (sent, retry later, or dead).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
    transport::smtp::PoolConfig,
};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use super::breaker::{Admission, BreakerState, CircuitBreaker};
use crate::{
    config::{Config, MailConfig},
    db::{self, DbPool, outbox::ClaimedMail},
};

/// How long past the SMTP timeout a claim lasts: time to record the outcome. A worker
/// that died mid-delivery has its mail picked up by another once the claim lapses.
const CLAIM_MARGIN: Duration = Duration::from_secs(60);
/// Pause between tries to record a delivery while the database is unreachable.
const RECORD_RETRY: Duration = Duration::from_millis(250);

/// How often the worker samples the outbox for `/metrics`.
const OUTBOX_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Counts of what a worker did, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Mails handed to the SMTP server.
    pub sent: u64,
    /// Failed delivery attempts (each one a connection the server may have seen).
    pub failed: u64,
    /// Mails given up on.
    pub dead: u64,
    /// Attempts made as the half-open breaker's probe (included in `sent` or `failed`).
    pub probes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    dead: AtomicU64,
    probes: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
            probes: self.probes.load(Ordering::Relaxed),
        }
    }
}

/// A mail worker, ready to [`spawn`](Worker::spawn). Any number of workers (in one
/// process or in several replicas) can share a database: each mail is claimed by one.
pub struct Worker {
    id: Uuid,
    pool: DbPool,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    config: MailConfig,
    breaker: Arc<CircuitBreaker>,
    counters: Arc<Counters>,
    /// Cancelled when shutdown gives up waiting for a delivery in flight.
    abandon: CancellationToken,
    /// A delivery failed and none has succeeded since: later failures of the same
    /// outage are logged at debug, so an SMTP server that is down for hours logs one
    /// failure and one breaker opening, not one line per attempt.
    failing: AtomicBool,
    /// This worker may hold a claim whose outcome it could not record (or that
    /// shutdown abandoned): the only case where stopping has something to release.
    holding: AtomicBool,
}

/// A running worker: stop it with [`shutdown`](WorkerHandle::shutdown).
pub struct WorkerHandle {
    stop: CancellationToken,
    abandon: CancellationToken,
    task: JoinHandle<()>,
    breaker: Arc<CircuitBreaker>,
    counters: Arc<Counters>,
}

impl WorkerHandle {
    /// Stops the worker: it claims no more mail, a delivery in flight gets `grace` to
    /// finish, and a mail still unfinished then is released, unsent and with no attempt
    /// counted, for another worker (or the next start) to deliver.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.cancel();
        let finished = tokio::time::timeout(grace, &mut self.task).await;
        let joined = match finished {
            Ok(joined) => joined,
            Err(_) => {
                self.abandon.cancel();
                self.task.await
            }
        };
        if let Err(e) = joined {
            error!(error = %e, "mail worker task failed");
        }
    }

    /// The SMTP circuit breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state(Instant::now())
    }

    /// What the worker has done so far.
    pub fn stats(&self) -> WorkerStats {
        self.counters.snapshot()
    }
}

/// What one step of the loop found, deciding how long to wait before the next.
enum Step {
    /// A mail was attempted: look for the next one at once.
    Worked,
    /// Nothing due (or the database is unreachable): wait a poll interval.
    Idle,
    /// The breaker is open: wait until it lets a probe through.
    Blocked(Duration),
}

impl Worker {
    /// A worker delivering the outbox of `pool` over `SMTP_URL` as `EMAIL_FROM`.
    pub fn new(pool: DbPool, config: &Config) -> anyhow::Result<Self> {
        let mail = config.mail.clone();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(config.mail.smtp_url.expose_secret())
            .map_err(|_| anyhow::anyhow!("SMTP_URL is not a valid smtp:// or smtps:// URL"))?
            .timeout(Some(mail.smtp_timeout))
            // One worker sends one mail at a time: one pooled connection, reused while busy.
            .pool_config(
                PoolConfig::new()
                    .max_size(1)
                    .idle_timeout(Duration::from_secs(60)),
            )
            .build();
        Ok(Self {
            id: Uuid::new_v4(),
            pool,
            transport,
            from: config.mail.from.clone(),
            breaker: Arc::new(CircuitBreaker::new(mail.breaker_failures, mail.breaker_open)),
            counters: Arc::default(),
            abandon: CancellationToken::new(),
            config: mail,
            failing: AtomicBool::new(false),
            holding: AtomicBool::new(false),
        })
    }

    /// Starts delivering on the current tokio runtime.
    pub fn spawn(self) -> WorkerHandle {
        let stop = CancellationToken::new();
        let abandon = self.abandon.clone();
        let breaker = Arc::clone(&self.breaker);
        let counters = Arc::clone(&self.counters);
        let task = tokio::spawn(self.run(stop.clone()));
        WorkerHandle {
            stop,
            abandon,
            task,
            breaker,
            counters,
        }
    }

    async fn run(self, stop: CancellationToken) {
        info!(worker.id = %self.id, "mail worker started");
        let mut db_down = false;
        let mut sampled: Option<Instant> = None;
        while !stop.is_cancelled() {
            self.publish_metrics(&mut sampled).await;
            let wait = match self.step(&mut db_down).await {
                Step::Worked => continue,
                Step::Idle => self.config.poll_interval,
                Step::Blocked(until_probe) => until_probe,
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.release().await;
        info!(worker.id = %self.id, "mail worker stopped");
    }

    /// Publishes the breaker's state, and at most every [`OUTBOX_SAMPLE_EVERY`] the
    /// outbox's depth and oldest age (the whole shared outbox: every replica reports
    /// the same figures).
    async fn publish_metrics(&self, sampled: &mut Option<Instant>) {
        crate::metrics::mail_breaker(self.breaker.state(Instant::now()).as_str());
        if sampled.is_some_and(|at| at.elapsed() < OUTBOX_SAMPLE_EVERY) {
            return;
        }
        *sampled = Some(Instant::now());
        let Ok(mut conn) = self.pool.get().await else {
            return;
        };
        if let Ok((depth, oldest)) = db::outbox::pending_stats(&mut conn).await {
            let age = oldest
                .and_then(|at| (chrono::Utc::now() - at).to_std().ok())
                .unwrap_or_default();
            crate::metrics::mail_outbox(u64::try_from(depth).unwrap_or(0), age);
        }
    }

    async fn step(&self, db_down: &mut bool) -> Step {
        let probe = match self.breaker.admit(Instant::now()) {
            Admission::Wait(d) => return Step::Blocked(d),
            Admission::Probe => true,
            Admission::Call => false,
        };
        let claimed = match self.pool.get().await {
            Ok(mut conn) => {
                db::outbox::claim_next(&mut conn, self.id, self.config.smtp_timeout + CLAIM_MARGIN)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(db::pool_error_message(&e)),
        };
        let mail = match claimed {
            Ok(Some(mail)) => mail,
            Ok(None) | Err(_) => {
                if probe {
                    self.breaker.probe_unused();
                }
                match claimed {
                    Err(e) if !*db_down => {
                        warn!(error = %e, "mail worker cannot reach the database; retrying");
                        *db_down = true;
                    }
                    Ok(None) if *db_down => {
                        info!("mail worker reaches the database again");
                        *db_down = false;
                    }
                    _ => {}
                }
                return Step::Idle;
            }
        };
        if *db_down {
            info!("mail worker reaches the database again");
            *db_down = false;
        }
        if probe {
            Counters::bump(&self.counters.probes);
        }
        self.holding.store(true, Ordering::Relaxed);
        self.deliver(mail).await;
        Step::Worked
    }

    /// One delivery attempt of a claimed mail, and its outcome recorded.
    async fn deliver(&self, mail: ClaimedMail) {
        let message = match self.message(&mail) {
            Ok(message) => message,
            Err(e) => {
                // Nothing the SMTP server did: retrying cannot help, the breaker is unaffected.
                Counters::bump(&self.counters.dead);
                crate::metrics::mail_delivery("dead");
                error!(mail.id = %mail.id, mail.kind = %mail.kind, error = %e, "mail dead: it cannot be built");
                if let Some(mut conn) = self.conn().await {
                    self.record(db::outbox::mark_dead(&mut conn, mail.id, self.id, "unbuildable"))
                        .await;
                }
                return;
            }
        };
        let send = tokio::time::timeout(self.config.smtp_timeout, self.transport.send(message));
        let outcome = tokio::select! {
            outcome = send => outcome,
            () = self.abandon.cancelled() => {
                // Shutting down: the claim is released below (`run` ends with `release`).
                // Had the server taken the mail already, the resend carries the same
                // Message-ID.
                info!(mail.id = %mail.id, "mail delivery abandoned by shutdown; released");
                return;
            }
        };
        let failure = match outcome {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(classify(&e)),
            Err(_) => Some("timeout".to_owned()),
        };
        let Some(failure) = failure else {
            if self.breaker.succeeded() {
                info!("SMTP circuit breaker closed: the server answers again");
            }
            self.failing.store(false, Ordering::Relaxed);
            Counters::bump(&self.counters.sent);
            crate::metrics::mail_delivery("sent");
            info!(mail.id = %mail.id, mail.kind = %mail.kind, attempt = mail.attempts + 1, "mail sent");
            self.record_sent(mail.id).await;
            return;
        };
        if self.breaker.failed(Instant::now()) {
            warn!(
                error = %failure,
                open_for_ms = u64::try_from(self.config.breaker_open.as_millis()).unwrap_or(u64::MAX),
                "SMTP circuit breaker open: delivery paused, one probe per open period"
            );
        }
        let first_failure = !self.failing.swap(true, Ordering::Relaxed);
        Counters::bump(&self.counters.failed);
        crate::metrics::mail_delivery("failed");
        let attempts = u32::try_from(mail.attempts).unwrap_or(0).saturating_add(1);
        let Some(mut conn) = self.conn().await else { return };
        if attempts >= self.config.max_attempts {
            Counters::bump(&self.counters.dead);
            crate::metrics::mail_delivery("dead");
            error!(mail.id = %mail.id, mail.kind = %mail.kind, attempts, error = %failure, "mail dead: giving up after the last attempt");
            self.record(db::outbox::mark_dead(&mut conn, mail.id, self.id, &failure))
                .await;
        } else {
            let delay = backoff(
                attempts,
                self.config.retry_base,
                self.config.retry_max,
                random_unit(),
            );
            let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            if first_failure {
                warn!(
                    mail.id = %mail.id, mail.kind = %mail.kind, attempts, error = %failure, retry_in_ms,
                    "mail delivery failed; will retry"
                );
            } else {
                debug!(
                    mail.id = %mail.id, mail.kind = %mail.kind, attempts, error = %failure, retry_in_ms,
                    "mail delivery failed; will retry"
                );
            }
            self.record(db::outbox::reschedule(
                &mut conn, mail.id, self.id, delay, &failure,
            ))
            .await;
        }
    }

    fn message(&self, mail: &ClaimedMail) -> anyhow::Result<Message> {
        let to: Mailbox = mail.recipient.parse().context("recipient address")?;
        let text = mail.body_text.clone().context("no text part")?;
        let html = mail.body_html.clone().context("no html part")?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&mail.subject)
            .message_id(Some(mail.message_id.clone()))
            .multipart(MultiPart::alternative_plain_html(text, html))
            .context("building the message")
    }

    /// A connection to record the outcome of a delivery that was attempted.
    async fn conn(&self) -> Option<db::DbConn<'_>> {
        match self.pool.get().await {
            Ok(conn) => Some(conn),
            Err(e) => {
                warn!(
                    error = db::pool_error_message(&e),
                    "mail worker cannot record a delivery outcome; the mail is retried once its claim lapses"
                );
                None
            }
        }
    }

    async fn record(&self, write: impl Future<Output = diesel::QueryResult<bool>>) {
        match write.await {
            Ok(true) => self.holding.store(false, Ordering::Relaxed),
            Ok(false) => {
                self.holding.store(false, Ordering::Relaxed);
                warn!(worker.id = %self.id, "mail claim lapsed before its outcome was recorded");
            }
            Err(e) => warn!(
                error = %e,
                "mail worker cannot record a delivery outcome; the mail is retried once its claim lapses"
            ),
        }
    }

    /// Records a delivery, retrying while the database is unreachable (a failover
    /// takes seconds) for half the claim's margin: a record lost for good means a
    /// resend once the claim lapses, which the same Message-ID lets the receiving side
    /// recognise, but a failover alone should not send a mail twice. Marking matches
    /// this worker's pending claim, so a retry after a mark whose answer was lost in
    /// the switch finds nothing left to change.
    async fn record_sent(&self, id: uuid::Uuid) {
        let deadline = Instant::now() + CLAIM_MARGIN / 2;
        let mut retried = false;
        loop {
            let result = match self.pool.get().await {
                Ok(mut conn) => db::outbox::mark_sent(&mut conn, id, self.id).await.map_err(Some),
                Err(_) => Err(None),
            };
            match result {
                Ok(true) => return,
                Ok(false) if retried => {
                    info!(mail.id = %id, "mail already recorded as sent (or its claim lapsed)");
                    return;
                }
                Ok(false) => {
                    warn!(worker.id = %self.id, "mail claim lapsed before its outcome was recorded");
                    return;
                }
                Err(e) if Instant::now() < deadline && !self.abandon.is_cancelled() => {
                    if let Some(e) = e.filter(|e| !db::is_unavailable(e)) {
                        warn!(error = %e, "mail worker cannot record a delivery outcome");
                        return;
                    }
                    retried = true;
                    tokio::time::sleep(RECORD_RETRY).await;
                }
                Err(e) => {
                    warn!(error = ?e.map(|e| e.to_string()), "mail worker cannot record a delivery outcome");
                    return;
                }
            }
        }
    }

    /// Hands back a claim this worker may still hold; with none (the usual case) there is
    /// nothing to do, and nothing to say when the database is down.
    async fn release(&self) {
        if !self.holding.load(Ordering::Relaxed) {
            return;
        }
        match db::outbox::release_claims(&self.pool, self.id).await {
            Ok(0) => {}
            Ok(n) => info!(count = n, "mail worker released its claimed mail"),
            Err(e) => warn!(
                error = e,
                "mail worker could not release its claimed mail; the claim lapses on its own"
            ),
        }
    }
}

/// A failure as stored and logged: the SMTP reply code or the kind of transport
/// failure, never the server's text (it may quote the address).
fn classify(err: &lettre::transport::smtp::Error) -> String {
    if let Some(code) = err.status() {
        format!("smtp {code}")
    } else if err.is_timeout() {
        "timeout".to_owned()
    } else if err.is_tls() {
        "tls".to_owned()
    } else {
        "connection".to_owned()
    }
}

/// The wait after the `failures`-th failure: `base` doubled per earlier failure, capped
/// at `max`, with "equal jitter" (half fixed, half scaled by `unit` in [0, 1)) so
/// replicas that failed together do not retry together.
pub fn backoff(failures: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(31);
    let full = base.saturating_mul(1u32 << exponent).min(max);
    let half = full / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// A random number in [0, 1) from the system CSPRNG (jitter needs no more).
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0.5;
    }
    // 53 random bits make every f64 in [0, 1) equally likely.
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(30);
    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn backoff_doubles_per_failure_within_its_jitter_band() {
        for (failures, full) in [(1, 30), (2, 60), (3, 120), (5, 480)] {
            let full = Duration::from_secs(full);
            assert_eq!(backoff(failures, BASE, MAX, 0.0), full / 2);
            assert_eq!(backoff(failures, BASE, MAX, 1.0), full);
            let mid = backoff(failures, BASE, MAX, 0.5);
            assert!(mid > full / 2 && mid < full);
        }
    }

    #[test]
    fn backoff_is_capped_and_never_overflows() {
        assert_eq!(backoff(8, BASE, MAX, 1.0), MAX);
        assert_eq!(backoff(u32::MAX, BASE, MAX, 1.0), MAX);
        assert_eq!(backoff(0, BASE, MAX, 1.0), BASE);
    }

    #[test]
    fn jitter_stays_in_its_unit_interval() {
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
