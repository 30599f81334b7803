//! API tests: the real router over a real PostgreSQL, one database per test.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns stop the test on failure"
)]

mod account;
mod admin;
mod ambiguity;
mod attacks;
mod audit;
mod bystanders;
mod cli;
mod cookies;
mod e2e;
mod edge;
mod email;
mod federation;
mod first_use;
mod ha;
mod helpers;
mod identity;
mod jwt;
mod live;
mod login;
mod logs;
mod me;
mod metrics;
mod mfa;
mod migrations;
mod outage;
mod passkeys;
mod passwords;
mod redaction;
mod register;
mod replicas;
mod responses;
mod retention;
mod robustness;
mod security_log;
mod sessions;
mod shutdown;
mod smtp_sink;
mod social;
mod support_abuse;
mod support_mail;
mod support_oidc;
mod support_pg;
mod support_process;
mod support_sql;
mod throttle;
mod timeouts;
mod transport;
mod webhooks;
