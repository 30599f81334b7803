//! What each GraphQL operation leaves behind: a `graphql` span carrying its name (and
//! the user, recorded by whoever learns them), one log line with its duration and error
//! codes, and its metrics by name, type, outcome and code. It never records variables,
//! the document or error messages: variables carry passwords and tokens, and documents
//! can carry them inline.
//!
//! Register it first, so it is the outermost extension and sees the codes `ErrorCodes`
//! settled on.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use async_graphql::{
    Response, ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest},
    parser::types::{ExecutableDocument, OperationType},
};
use tracing::{Instrument, field::Empty};

use super::code::Code;

/// Longest operation name logged (names are client-chosen).
const NAME_MAX: usize = 100;

/// Installs the per-operation span, log line and metrics.
pub struct Observability;

impl ExtensionFactory for Observability {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerRequest::default())
    }
}

/// What one request learned about its operation on the way through.
#[derive(Default)]
struct PerRequest {
    operation: Mutex<Operation>,
}

#[derive(Clone, Default)]
struct Operation {
    /// The executed operation's name (truncated); `None` until one was selected.
    name: Option<Option<String>>,
    kind: Option<&'static str>,
    /// Every operation of the document with its type, to name a request that failed
    /// validation and to find the executed one's type.
    declared: Vec<(Option<String>, &'static str)>,
}

fn kind_of(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

impl PerRequest {
    fn update(&self, f: impl FnOnce(&mut Operation)) {
        if let Ok(mut op) = self.operation.lock() {
            f(&mut op);
        }
    }

    fn snapshot(&self) -> Operation {
        self.operation.lock().map(|op| op.clone()).unwrap_or_default()
    }
}

/// The code of every error, in order, without repeats.
fn error_codes(response: &Response) -> Vec<Code> {
    let mut codes: Vec<Code> = Vec::new();
    for code in response.errors.iter().map(Code::of) {
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

/// Milliseconds rounded to the microsecond: enough to read, short enough to scan.
fn millis(elapsed: std::time::Duration) -> f64 {
    (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

#[async_trait::async_trait]
impl Extension for PerRequest {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        // `user.id` is recorded by whoever learns the caller (`RequestContext::viewer`,
        // the mutations that sign someone in), so every line of the operation names them.
        let span = tracing::info_span!("graphql", operation.name = Empty, user.id = Empty);
        let started = Instant::now();
        let response = next.run(ctx).instrument(span.clone()).await;
        let elapsed = started.elapsed();
        let op = self.snapshot();
        // `execute` put a selected operation's name on the span already: recording it
        // again printed it twice on pretty lines (the fmt layer appends each record).
        let named_by_execute = matches!(op.name, Some(Some(_)));
        // A document that did not parse has no name; one that failed validation has
        // the name of its only operation, if it has one.
        let name = match (op.name, op.declared.as_slice()) {
            (Some(name), _) => Some(name),
            (None, [(name, _)]) => Some(name.clone()),
            (None, _) => None,
        };
        let (name, label) = match name {
            Some(name) => (
                name.clone().unwrap_or_else(|| "anonymous".to_owned()),
                crate::metrics::operation_names().label(name.as_deref()),
            ),
            None => ("unknown".to_owned(), "unknown".to_owned()),
        };
        let kind = op.kind.unwrap_or(match op.declared.as_slice() {
            [(_, kind)] => kind,
            _ => "unknown",
        });
        if !named_by_execute {
            span.record("operation.name", name.as_str());
        }
        let codes = error_codes(&response);
        crate::metrics::graphql_operation(&label, kind, codes.first().map(|c| c.as_str()), elapsed);
        // The name is on the span, so the line carries it once.
        let elapsed_ms = millis(elapsed);
        if codes.is_empty() {
            tracing::info!(parent: &span, elapsed_ms, "graphql operation");
        } else {
            let codes = codes.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",");
            tracing::info!(parent: &span, elapsed_ms, error.codes = codes, "graphql operation failed");
        }
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let declared = doc
            .operations
            .iter()
            .map(|(name, op)| (name.map(|n| n.to_string()), kind_of(op.node.ty)))
            .collect();
        self.update(|op| op.declared = declared);
        Ok(doc)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        // The operation the document selected, so a valid GraphQL name (one naming
        // nothing never gets here); on the span now, so every line of the operation
        // carries it. Metrics label it later, from a bounded set.
        let name = operation_name.map(|n| n.chars().take(NAME_MAX).collect::<String>());
        if let Some(name) = &name {
            tracing::Span::current().record("operation.name", name.as_str());
        }
        self.update(|op| {
            op.kind = op
                .declared
                .iter()
                .find(|(declared, _)| declared.as_deref() == operation_name)
                .map(|(_, kind)| *kind);
            op.name = Some(name);
        });
        next.run(ctx, operation_name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::ServerError;

    #[test]
    fn codes_are_listed_once_each_in_order() {
        let response = Response::from_errors(vec![
            Code::RateLimited.error("message with alice@example.com"),
            Code::InvalidCredentials.error("x"),
            Code::RateLimited.error("y"),
            ServerError::new("bare", None),
        ]);
        assert_eq!(
            error_codes(&response),
            [Code::RateLimited, Code::InvalidCredentials, Code::Internal]
        );
    }

    #[test]
    fn durations_are_rounded_to_the_microsecond() {
        let elapsed = std::time::Duration::from_nanos(168_924_591);
        assert_eq!(millis(elapsed).to_string(), "168.925");
    }
}
