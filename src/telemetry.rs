//! Logging: pretty lines in development, one JSON object per line in production,
//! filtered by `RUST_LOG` (default `info`).

use tracing::{Level, Metadata};
use tracing_subscriber::{
    EnvFilter,
    filter::{FilterFn, filter_fn},
    fmt,
    prelude::*,
};

use crate::config::LogFormat;

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Libraries that write secrets into their verbose logs: tokio-postgres logs every
/// statement's parameters (emails, password hashes) at debug, and an SMTP client the
/// mail it sends (one-time tokens).
const SECRET_LEAKING_TARGETS: [&str; 2] = ["tokio_postgres", "lettre"];

fn allowed(meta: &Metadata<'_>) -> bool {
    allowed_at(meta.target(), *meta.level())
}

fn allowed_at(target: &str, level: Level) -> bool {
    level <= Level::INFO
        || !SECRET_LEAKING_TARGETS.iter().any(|t| {
            target
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// A filter that drops the verbose logs of [`SECRET_LEAKING_TARGETS`] whatever
/// `RUST_LOG` asks for, so turning on debug logging never writes an email or a token.
/// Every subscriber of the service (and the redaction test's) installs it.
pub fn secrets_guard() -> FilterFn<fn(&Metadata<'_>) -> bool> {
    filter_fn(allowed as fn(&Metadata<'_>) -> bool)
}

/// Installs the global subscriber for the service.
pub fn init(format: LogFormat) {
    let registry = tracing_subscriber::registry()
        .with(secrets_guard())
        .with(filter());
    let result = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
    // Already installed (a second init in one process) is fine.
    let _ = result;
}

/// Installs a subscriber that prints through the test harness, once per process.
pub fn init_for_tests() {
    let _ = tracing_subscriber::registry()
        .with(secrets_guard())
        .with(filter())
        .with(fmt::layer().with_test_writer())
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_logs_of_leaky_libraries_never_pass() {
        assert!(!allowed_at("tokio_postgres::query", Level::DEBUG));
        assert!(!allowed_at("tokio_postgres", Level::TRACE));
        assert!(!allowed_at("lettre::transport::smtp", Level::DEBUG));
        assert!(allowed_at("tokio_postgres::connection", Level::INFO));
        assert!(allowed_at("tokio_postgres_extra", Level::DEBUG));
        assert!(allowed_at("authgraph::auth", Level::TRACE));
    }
}
