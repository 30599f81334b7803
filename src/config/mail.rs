//! Mail: `PUBLIC_URL` (the frontend its links point at), `SMTP_URL`, `EMAIL_FROM`, and the
//! outbox delivery's `MAIL_POLL_INTERVAL`, `MAIL_MAX_ATTEMPTS`, `MAIL_RETRY_BASE`,
//! `MAIL_RETRY_MAX`, `MAIL_BREAKER_FAILURES`, `MAIL_BREAKER_OPEN` and `MAIL_SMTP_TIMEOUT`.

use std::time::Duration;

use anyhow::bail;
use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};

use super::{duration, nonzero_duration, positive};

/// What mail says and where it goes: the sender, the SMTP server, the links, and the
/// outbox worker's pace, retries and circuit breaker.
#[derive(Clone, Debug)]
pub struct MailConfig {
    /// `PUBLIC_URL`: the frontend, for links in mail; an http(s) URL without a trailing `/`.
    pub public_url: String,
    /// `SMTP_URL`: may carry credentials, hence secret.
    pub smtp_url: SecretString,
    /// `EMAIL_FROM`: the sender of every mail; its domain also names Message-IDs.
    pub from: Mailbox,
    /// `MAIL_POLL_INTERVAL`: how often an idle worker looks for due mail.
    pub poll_interval: Duration,
    /// `MAIL_MAX_ATTEMPTS`: failed attempts after which a mail is marked dead.
    pub max_attempts: u32,
    /// `MAIL_RETRY_BASE`: wait after the first failure; doubles with each further one.
    pub retry_base: Duration,
    /// `MAIL_RETRY_MAX`: the longest wait between two attempts.
    pub retry_max: Duration,
    /// `MAIL_BREAKER_FAILURES`: consecutive SMTP failures that open the breaker.
    pub breaker_failures: u32,
    /// `MAIL_BREAKER_OPEN`: how long an open breaker waits before one probe.
    pub breaker_open: Duration,
    /// `MAIL_SMTP_TIMEOUT`: the longest one delivery may take, connection included.
    pub smtp_timeout: Duration,
}

impl MailConfig {
    /// Reads the variables above.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let public_url = get("PUBLIC_URL").unwrap_or_else(|| "http://localhost:3000".into());
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("PUBLIC_URL must be an http:// or https:// URL");
        }
        let secs = Duration::from_secs;
        let retry_base = nonzero_duration(get, "MAIL_RETRY_BASE", secs(30))?;
        let retry_max = duration(get, "MAIL_RETRY_MAX", secs(3600))?;
        if retry_max < retry_base {
            bail!("MAIL_RETRY_MAX must be at least MAIL_RETRY_BASE");
        }
        let from = get("EMAIL_FROM").unwrap_or_else(|| "authgraph <no-reply@localhost>".into());
        let Ok(from) = from.parse::<Mailbox>() else {
            bail!("EMAIL_FROM must be an address like `authgraph <no-reply@example.com>`");
        };
        let smtp_url = SecretString::from(get("SMTP_URL").unwrap_or_else(|| "smtp://127.0.0.1:1025".into()));
        // The URL may carry SMTP credentials: name the variable, never echo the value.
        if lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(smtp_url.expose_secret()).is_err() {
            bail!("SMTP_URL must be smtp://host:port (add ?tls=required for STARTTLS) or smtps://host:port");
        }
        Ok(Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            smtp_url,
            from,
            poll_interval: nonzero_duration(get, "MAIL_POLL_INTERVAL", secs(2))?,
            max_attempts: positive(get, "MAIL_MAX_ATTEMPTS", 10)?,
            retry_base,
            retry_max,
            breaker_failures: positive(get, "MAIL_BREAKER_FAILURES", 3)?,
            breaker_open: nonzero_duration(get, "MAIL_BREAKER_OPEN", secs(60))?,
            smtp_timeout: nonzero_duration(get, "MAIL_SMTP_TIMEOUT", secs(30))?,
        })
    }
}
