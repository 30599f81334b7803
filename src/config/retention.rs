//! Deleting rows nothing needs any more: `RETENTION_SESSIONS`, `RETENTION_OUTBOX`,
//! `RETENTION_EMAIL_TOKENS`, `RETENTION_INTERVAL`, `RETENTION_BATCH` and `AUDIT_RETENTION`.

use std::time::Duration;

use super::{duration, nonzero_duration, positive};

const DAY: Duration = Duration::from_secs(86_400);

/// How long each kind of row is kept after it ended, and how often (and in what
/// batches) the retention job runs.
#[derive(Clone, Debug)]
pub struct RetentionConfig {
    /// `RETENTION_SESSIONS`: how long an ended (revoked or expired) session and its
    /// refresh tokens are kept: a rotated token presented again within it is still
    /// recognised as reuse, and audits can still see the session.
    pub sessions: Duration,
    /// `RETENTION_OUTBOX`: how long a sent or dead mail's row is kept (its bodies are
    /// dropped at once; the row is for following up deliveries).
    pub outbox: Duration,
    /// `RETENTION_EMAIL_TOKENS`: how long an expired email token is kept (a used one is
    /// deleted when used).
    pub email_tokens: Duration,
    /// `RETENTION_INTERVAL`: time between two pruning passes (one replica prunes at a time).
    pub interval: Duration,
    /// `RETENTION_BATCH`: most rows one delete statement touches.
    pub batch: usize,
    /// `AUDIT_RETENTION`: audit events older than this go, a whole month at a time (by
    /// the hourly audit-log maintenance, not the retention job).
    pub audit: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            sessions: 30 * DAY,
            outbox: 7 * DAY,
            email_tokens: 7 * DAY,
            interval: Duration::from_secs(600),
            batch: 1000,
            audit: 365 * DAY,
        }
    }
}

impl RetentionConfig {
    /// Reads the variables above, with the defaults of [`Default`].
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let d = Self::default();
        Ok(Self {
            sessions: duration(get, "RETENTION_SESSIONS", d.sessions)?,
            outbox: duration(get, "RETENTION_OUTBOX", d.outbox)?,
            email_tokens: duration(get, "RETENTION_EMAIL_TOKENS", d.email_tokens)?,
            interval: nonzero_duration(get, "RETENTION_INTERVAL", d.interval)?,
            batch: positive(get, "RETENTION_BATCH", d.batch)?,
            audit: duration(get, "AUDIT_RETENTION", d.audit)?,
        })
    }
}
