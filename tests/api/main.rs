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
mod social;
mod support;
// The module paths from before `support/`, for test files written against them on other
// branches; see `support/compat.rs`.
#[allow(unused_imports, reason = "used only by files not yet ported")]
use support::{
    self as helpers, self as smtp_sink, self as support_abuse, self as support_mail, self as support_oidc,
    self as support_pg, self as support_process, self as support_sql,
};
mod throttle;
mod timeouts;
mod transport;
mod webhooks;
