//! API tests: the real router over a real PostgreSQL, one database per test.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns stop the test on failure"
)]

mod account;
mod attacks;
mod cookies;
mod e2e;
mod edge;
mod email;
mod federation;
mod helpers;
mod jwt;
mod login;
mod me;
mod migrations;
mod redaction;
mod register;
mod robustness;
mod sessions;
mod smtp_sink;
mod support_abuse;
mod support_mail;
mod support_sql;
mod throttle;
mod transport;
