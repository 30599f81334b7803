//! API tests: the real router over a real PostgreSQL, one database per test.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns stop the test on failure"
)]

mod account;
mod cookies;
mod e2e;
mod email;
mod federation;
mod helpers;
mod jwt;
mod login;
mod me;
mod migrations;
mod register;
mod sessions;
mod smtp_sink;
mod support_mail;
mod support_sql;
mod transport;
