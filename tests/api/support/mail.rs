//! Mail test support: an app whose `SMTP_URL` is a sink, workers with test-fast
//! settings, the outbox's depth, and the password reset flow.

use std::time::Duration;

use authgraph::{
    config::{Config, MailConfig},
    db::DbPool,
    mail::{Worker, WorkerHandle},
};
use serde_json::json;

use super::{
    app::{TestApp, TestAppBuilder},
    db::{count, text},
    ops::{REQUEST_RESET, RESET},
    smtp_sink::SmtpSink,
};

/// What tests give a worker to finish a delivery in flight when they stop it.
pub const GRACE: Duration = Duration::from_secs(5);

impl TestAppBuilder {
    /// Mails to `sink`; no worker runs until a test starts one.
    pub fn mail_to(self, sink: &SmtpSink) -> Self {
        self.env("SMTP_URL", sink.url())
    }
}

/// Settings that keep tests short: quick polls, short backoff and open times, and
/// attempts enough that nothing dies unless a test wants it to.
pub fn fast(mail: &mut MailConfig) {
    mail.poll_interval = Duration::from_millis(50);
    mail.retry_base = Duration::from_millis(50);
    mail.retry_max = Duration::from_millis(200);
    mail.breaker_failures = 3;
    mail.breaker_open = Duration::from_millis(300);
    mail.smtp_timeout = Duration::from_secs(5);
    mail.max_attempts = 1000;
}

/// Starts a worker on `pool` with the app's configuration, made fast and then `tweak`ed.
pub fn start_worker_on(pool: DbPool, config: &Config, tweak: impl FnOnce(&mut MailConfig)) -> WorkerHandle {
    let mut config = config.clone();
    fast(&mut config.mail);
    tweak(&mut config.mail);
    Worker::new(pool, &config).unwrap().spawn()
}

/// Starts a worker on the app's own pool.
pub fn start_worker(app: &TestApp, tweak: impl FnOnce(&mut MailConfig)) -> WorkerHandle {
    start_worker_on(app.state.db.clone(), &app.state.config, tweak)
}

/// Pending mail left in the outbox.
pub async fn pending(app: &TestApp) -> i64 {
    count(app, "select count(*) as n from outbox where status = 'pending'").await
}

/// Sets a new password for `email` through the reset flow, reading the link from the
/// outbox (no worker needs to run).
pub async fn reset_password(app: &TestApp, email: &str, new_password: &str) {
    let requested = app.graphql(REQUEST_RESET, json!({ "email": email })).await;
    assert_eq!(requested["data"]["requestPasswordReset"], true, "{requested}");
    let body = text(
        app,
        "select body_text as t from outbox where kind = 'reset_password'",
    )
    .await;
    let token = body
        .split("reset-password?token=")
        .nth(1)
        .unwrap()
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap();
    let reset = app
        .graphql(
            RESET,
            json!({ "input": { "token": token, "newPassword": new_password } }),
        )
        .await;
    assert_eq!(reset["data"]["resetPassword"], true, "{reset}");
}
