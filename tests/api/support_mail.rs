//! Mail test support: an app whose `SMTP_URL` is a sink, workers with test-fast
//! settings, and small SQL probes of the outbox.

use std::time::Duration;

use authgraph::{
    auth::jwt::KeyAlgorithm,
    config::{Config, MailConfig},
    db::DbPool,
    mail::{Worker, WorkerHandle},
};
use diesel::{QueryableByName, sql_types::BigInt};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::{helpers::TestApp, smtp_sink::SmtpSink};

/// What tests give a worker to finish a delivery in flight when they stop it.
pub const GRACE: Duration = Duration::from_secs(5);

/// An app that mails to `sink`; no worker runs until a test starts one.
pub async fn app_mailing_to(sink: &SmtpSink) -> TestApp {
    TestApp::spawn_with(KeyAlgorithm::Es256, &[("SMTP_URL", &sink.url())]).await
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

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Runs a `select count(*) as n ...` (or any query answering one bigint `n`).
pub async fn count(app: &TestApp, query: &str) -> i64 {
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    diesel::sql_query(query)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .n
}

#[derive(QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    t: String,
}

/// Runs a query answering one text column `t`.
pub async fn text(app: &TestApp, query: &str) -> String {
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    diesel::sql_query(query)
        .get_result::<Text>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .t
}

/// Pending mail left in the outbox.
pub async fn pending(app: &TestApp) -> i64 {
    count(app, "select count(*) as n from outbox where status = 'pending'").await
}

/// Waits (at most 30 s, checking every 20 ms) until `check` holds.
pub async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "waited 30 s for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub const REQUEST_VERIFICATION: &str = "mutation { requestEmailVerification }";
pub const VERIFY: &str = "mutation Verify($token: String!) { verifyEmail(token: $token) }";
pub const REQUEST_RESET: &str = "mutation Reset($email: String!) { requestPasswordReset(email: $email) }";
pub const RESET: &str = "mutation Reset($input: ResetPasswordInput!) { resetPassword(input: $input) }";
pub const ME_VERIFIED: &str = "query { me { id emailVerified } }";
