//! API tests: the real router over a real PostgreSQL, one database per test.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns stop the test on failure"
)]

mod account;
mod cli;
mod cookies;
mod e2e;
mod email;
mod federation;
mod helpers;
mod jwt;
mod login;
mod me;
mod metrics;
mod migrations;
mod outage;
mod register;
mod replicas;
mod sessions;
mod shutdown;
mod smtp_sink;
mod support_mail;
mod support_pg;
mod support_process;
mod support_sql;
mod transport;
