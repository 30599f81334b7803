//! API tests: the real router over a real PostgreSQL, one database per test.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns stop the test on failure"
)]

mod attacks;
mod edge;
mod helpers;
mod jwt;
mod login;
mod me;
mod migrations;
mod redaction;
mod register;
mod robustness;
mod support_abuse;
mod throttle;
mod transport;
