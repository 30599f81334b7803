//! Logging: pretty lines in development, one JSON object per line in production,
//! filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber for the service.
pub fn init(format: LogFormat) {
    let registry = tracing_subscriber::registry().with(filter());
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
        .with(filter())
        .with(fmt::layer().with_test_writer())
        .try_init();
}
