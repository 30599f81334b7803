//! Logging: pretty lines in development, one JSON object per line in production,
//! filtered by `RUST_LOG` (default `info`).
//!
//! A JSON line carries `timestamp` (RFC 3339, UTC), `level`, `message`, `target`, then
//! the fields of every enclosing span from the outermost in (so `request_id`,
//! `operation.name` and `user.id` of the request span appear on each line of that
//! request), then the event's own fields. Flat keys, so `jq 'select(.["user.id"]==...)'`
//! and log indexers need no knowledge of span nesting.

use std::io::{IsTerminal, Write};

use serde_json::Value;
use tracing::{
    Event, Level, Metadata, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{
    EnvFilter,
    filter::{FilterFn, filter_fn},
    fmt::{self, MakeWriter},
    layer::Context,
    prelude::*,
    registry::LookupSpan,
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
        LogFormat::Json => registry.with(JsonLines::new(std::io::stdout)).try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().compact().with_ansi(colour(&std::io::stdout())))
            .try_init(),
    };
    // Already installed (a second init in one process) is fine.
    let _ = result;
}

/// Colour codes only for a person at a terminal: a file or a pipe (a log collector,
/// `| less`, `> log.txt`) would get them as raw escape sequences. `NO_COLOR` turns
/// them off everywhere (<https://no-color.org>).
fn colour(stdout: &impl IsTerminal) -> bool {
    stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs a subscriber that prints through the test harness, once per process.
pub fn init_for_tests() {
    let _ = tracing_subscriber::registry()
        .with(secrets_guard())
        .with(filter())
        .with(fmt::layer().with_test_writer())
        .try_init();
}

/// A layer writing each event as one flat JSON object per line.
///
/// Rendered straight into one buffer per line: span fields are kept as JSON text from
/// the moment they are recorded, so an event costs no map and no per-value allocation.
/// At info level every request writes a line, so this is on the hot path.
pub struct JsonLines<W> {
    writer: W,
}

impl<W> JsonLines<W> {
    /// Writes to what `writer` makes (stdout in the service, a buffer in tests).
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
}

/// Fields recorded so far, each as its name and its value already rendered as JSON. A
/// name recorded again replaces its value.
#[derive(Default)]
struct Fields(Vec<(&'static str, String)>);

impl Fields {
    fn put(&mut self, name: &'static str, json: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = json,
            None => self.0.push((name, json)),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// A string as a JSON string literal.
fn json_str(text: &str) -> String {
    // Serialising a `str` cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field.name(), Value::from(value).to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field.name(), value.to_string());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), json_str(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole chain, as `{:#}` on anyhow would print it.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(err) = source {
            text.push_str(": ");
            text.push_str(&err.to_string());
            source = err.source();
        }
        self.put(field.name(), json_str(&text));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field.name(), json_str(&format!("{value:?}")));
    }
}

/// Keys every line starts with; a field of the same name is not written again.
const FIXED_KEYS: [&str; 4] = ["timestamp", "level", "message", "target"];

impl<S, W> tracing_subscriber::Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut own = Fields::default();
        event.record(&mut own);
        let meta = event.metadata();
        let mut line = String::with_capacity(256);
        // The fixed keys first, so a person reading raw lines sees them at once.
        line.push_str("{\"timestamp\":\"");
        // RFC 3339 by chrono's own writer: a `format` string is parsed again per line.
        line.push_str(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push_str("\",\"message\":");
        line.push_str(own.get("message").unwrap_or("\"\""));
        line.push_str(",\"target\":");
        line.push_str(&json_str(meta.target()));
        let mut push = |name: &str, json: &str| {
            line.push_str(",\"");
            line.push_str(name);
            line.push_str("\":");
            line.push_str(json);
        };
        // Span fields from the outermost in, then the event's own; a name given again
        // further in is written once, with the innermost value.
        if let Some(scope) = ctx.event_scope(event) {
            let spans: Vec<_> = scope.from_root().collect();
            for (depth, span) in spans.iter().enumerate() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<Fields>() else {
                    continue;
                };
                for (name, json) in &fields.0 {
                    let shadowed = FIXED_KEYS.contains(name)
                        || own.get(name).is_some()
                        || spans[depth + 1..].iter().any(|inner| {
                            inner
                                .extensions()
                                .get::<Fields>()
                                .is_some_and(|f| f.get(name).is_some())
                        });
                    if !shadowed {
                        push(name, json);
                    }
                }
            }
        }
        for (name, json) in &own.0 {
            if !FIXED_KEYS.contains(name) {
                push(name, json);
            }
        }
        line.push_str("}\n");
        // One write per line, so lines of concurrent requests never interleave.
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn json_lines_are_flat_objects_with_span_fields() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "abc-1", user.id = tracing::field::Empty);
            let _entered = span.enter();
            span.record("user.id", "u-42");
            let inner = tracing::info_span!("login", attempt = 2);
            let _inner = inner.enter();
            tracing::warn!(session.id = "s-7", "quote \" and\nnewline");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "quote \" and\nnewline");
        assert_eq!(line["request_id"], "abc-1");
        assert_eq!(line["user.id"], "u-42");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["session.id"], "s-7");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn a_name_given_again_further_in_is_written_once_with_the_inner_value() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("request", scope = "outer", message = "spoof");
            let _outer = outer.enter();
            let inner = tracing::info_span!("graphql", scope = "inner");
            let _inner = inner.enter();
            tracing::info!(elapsed_ms = 1.5, "done");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("\"scope\"").count(), 1, "{text}");
        assert_eq!(text.matches("\"message\"").count(), 1, "{text}");
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["scope"], "inner");
        assert_eq!(line["message"], "done");
        assert_eq!(line["elapsed_ms"], 1.5);
    }

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
