//! The retention job: every `RETENTION_INTERVAL`, deletes what nothing needs any more
//! (sessions ended `RETENTION_SESSIONS` ago with their refresh tokens, mail and webhook
//! deliveries finished `RETENTION_OUTBOX` ago, email tokens expired `RETENTION_EMAIL_TOKENS` ago), in bounded
//! batches, on one replica at a time.
//!
//! Beside `mail`, below `auth`: like the mail worker it is a background task over
//! storage that `serve` starts and stops, and no use case calls it. The rules (what is
//! old enough) are settings; the queries are in `db::retention`.
//!
//! One replica at a time: a pass takes a PostgreSQL advisory lock on a connection of
//! its own (not a pooled one, which would keep the lock after the pass), and a replica
//! that finds it taken skips its turn. A replica that dies mid-pass loses its
//! connection, and with it the lock.

use std::time::Duration;

use anyhow::Context;
use diesel_async::AsyncPgConnection;
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{config::RetentionConfig, db};

/// The first pass waits at most this long after start-up (then `RETENTION_INTERVAL`),
/// so a development database is migrated first and a fleet restart is not a burst.
const FIRST_PASS_AFTER: Duration = Duration::from_secs(60);

/// Rows one pass deleted, per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Ended sessions.
    pub sessions: u64,
    /// Refresh tokens of those sessions.
    pub refresh_tokens: u64,
    /// Sent or dead mail.
    pub outbox: u64,
    /// Expired email tokens.
    pub email_tokens: u64,
    /// Delivered or dead webhook deliveries (kept as long as mail: `RETENTION_OUTBOX`).
    pub webhooks: u64,
}

impl Pruned {
    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.sessions + self.refresh_tokens + self.outbox + self.email_tokens + self.webhooks
    }

    fn add(&mut self, table: &'static str, rows: usize) {
        let rows = rows as u64;
        match table {
            "sessions" => self.sessions += rows,
            "refresh_tokens" => self.refresh_tokens += rows,
            "outbox" => self.outbox += rows,
            "webhook_deliveries" => self.webhooks += rows,
            _ => self.email_tokens += rows,
        }
        if rows > 0 {
            crate::metrics::retention_pruned(table, rows);
        }
    }
}

/// Runs one pass against the database at `url`: `None` when another replica holds the
/// retention lock (nothing was deleted), else what was deleted.
pub async fn prune_once(url: &str, config: &RetentionConfig) -> anyhow::Result<Option<Pruned>> {
    let mut conn = db::connect(url, "to prune expired rows").await?;
    if !db::retention::try_lock(&mut conn)
        .await
        .context("taking the retention lock")?
    {
        return Ok(None);
    }
    let mut pruned = Pruned::default();
    let result = prune_with(&mut conn, config, &mut pruned).await;
    // Closing the connection would release it too; this says so to the next pass at once.
    let _ = db::retention::unlock(&mut conn).await;
    result.map(|()| Some(pruned))
}

/// Rest between two full batches. A backlog (the first pass over an old database, a
/// million ended sessions) then drains at a bounded rate, about 1,000 rows per batch
/// and pause, leaving PostgreSQL and the cores to requests: without it the drain ran
/// flat out at ~27k rows/s and `me` p99 tripled meanwhile.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Deletes every kind in turn, batch by batch, counting as it goes (so a pass cut
/// short still reports and exports what it did).
async fn prune_with(
    conn: &mut AsyncPgConnection,
    config: &RetentionConfig,
    pruned: &mut Pruned,
) -> anyhow::Result<()> {
    let batch = config.batch;
    loop {
        let sessions = db::retention::ended_sessions(conn, config.sessions, batch)
            .await
            .context("finding ended sessions")?;
        if sessions.is_empty() {
            break;
        }
        loop {
            let n = db::retention::delete_refresh_tokens_of(conn, &sessions, batch)
                .await
                .context("deleting refresh tokens of ended sessions")?;
            pruned.add("refresh_tokens", n);
            if n < batch {
                break;
            }
            tokio::time::sleep(BATCH_PAUSE).await;
        }
        let n = db::retention::delete_sessions(conn, &sessions, config.sessions)
            .await
            .context("deleting ended sessions")?;
        pruned.add("sessions", n);
        if sessions.len() < batch || n == 0 {
            break;
        }
        tokio::time::sleep(BATCH_PAUSE).await;
    }
    loop {
        let n = db::retention::delete_finished_mail(conn, config.outbox, batch)
            .await
            .context("deleting sent and dead mail")?;
        pruned.add("outbox", n);
        if n < batch {
            break;
        }
        tokio::time::sleep(BATCH_PAUSE).await;
    }
    loop {
        let n = db::retention::delete_finished_webhooks(conn, config.outbox, batch)
            .await
            .context("deleting delivered and dead webhooks")?;
        pruned.add("webhook_deliveries", n);
        if n < batch {
            break;
        }
        tokio::time::sleep(BATCH_PAUSE).await;
    }
    loop {
        let n = db::retention::delete_expired_email_tokens(conn, config.email_tokens, batch)
            .await
            .context("deleting expired email tokens")?;
        pruned.add("email_tokens", n);
        if n < batch {
            break;
        }
        tokio::time::sleep(BATCH_PAUSE).await;
    }
    Ok(())
}

/// The retention job, ready to [`spawn`](Job::spawn).
pub struct Job {
    url: SecretString,
    config: RetentionConfig,
}

/// A running retention job: stop it with [`shutdown`](JobHandle::shutdown).
pub struct JobHandle {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl JobHandle {
    /// Stops the job. A pass in flight is dropped between or during its bounded
    /// statements: each commits on its own, so nothing is left half-done, and closing
    /// its connection releases the lock.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            warn!(error = %e, "retention job task failed");
        }
    }
}

impl Job {
    /// A job pruning the database at `url` (`DATABASE_URL`) by `config`.
    pub fn new(url: SecretString, config: RetentionConfig) -> Self {
        Self { url, config }
    }

    /// Starts the job on the current tokio runtime.
    pub fn spawn(self) -> JobHandle {
        let stop = CancellationToken::new();
        let task = tokio::spawn(self.run(stop.clone()));
        JobHandle { stop, task }
    }

    async fn run(self, stop: CancellationToken) {
        let interval = self.config.interval;
        info!(
            interval_s = interval.as_secs(),
            "retention job started: pruning ended sessions, finished mail and expired tokens"
        );
        let mut wait = interval.min(FIRST_PASS_AFTER);
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
            wait = interval;
            let pass = tokio::select! {
                () = stop.cancelled() => break,
                pass = prune_once(self.url.expose_secret(), &self.config) => pass,
            };
            match pass {
                Ok(Some(pruned)) => {
                    crate::metrics::retention_run("done");
                    if failing {
                        info!("retention pass succeeded again");
                        failing = false;
                    }
                    if pruned.total() > 0 {
                        info!(
                            sessions = pruned.sessions,
                            refresh_tokens = pruned.refresh_tokens,
                            outbox = pruned.outbox,
                            email_tokens = pruned.email_tokens,
                            webhooks = pruned.webhooks,
                            "expired rows pruned"
                        );
                    } else {
                        debug!("retention pass found nothing to prune");
                    }
                }
                Ok(None) => {
                    crate::metrics::retention_run("skipped");
                    debug!("another replica is pruning: skipped this pass");
                }
                Err(e) => {
                    crate::metrics::retention_run("failed");
                    // Once per streak: a database outage would otherwise log every pass.
                    if !failing {
                        warn!(
                            error = format!("{e:#}"),
                            retry_in_s = interval.as_secs(),
                            "pruning expired rows failed; will retry"
                        );
                        failing = true;
                    }
                }
            }
        }
        info!("retention job stopped");
    }
}
