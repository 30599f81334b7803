//! API tests: the real router over a real PostgreSQL, one database per test.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns stop the test on failure"
)]

mod account;
mod attacks;
mod cli;
mod cookies;
mod e2e;
mod edge;
mod email;
mod federation;
mod first_use;
mod ha;
mod helpers;
mod jwt;
mod login;
mod logs;
mod me;
mod metrics;
mod mfa;
mod migrations;
mod outage;
mod redaction;
mod register;
mod replicas;
mod responses;
mod retention;
mod robustness;
mod sessions;
mod shutdown;
mod smtp_sink;
mod support_abuse;
mod support_mail;
mod support_pg;
mod support_process;
mod support_sql;
mod throttle;
mod transport;
