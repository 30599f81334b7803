//! What each GraphQL operation leaves behind: a `graphql` span carrying its name (and
//! the user, recorded by whoever learns them), one log line with its duration and error
//! codes, and its metrics by name, type, outcome and code. It never records variables,
//! the document or error messages: variables carry passwords and tokens, and documents
//! can carry them inline.
//!
//! The pipeline runs it outermost, so it sees the codes `error` settled on.

use std::time::Duration;

use async_graphql::{
    Response,
    parser::types::{ExecutableDocument, OperationType},
};
use tracing::{Span, field::Empty};

use super::code::Code;

/// Longest operation name logged (names are client-chosen).
const NAME_MAX: usize = 100;

/// The span the whole operation runs in.
pub(super) fn span() -> Span {
    // `user.id` is recorded by whoever learns the caller (`RequestContext::viewer`,
    // the mutations that sign someone in), so every line of the operation names them.
    tracing::info_span!("graphql", operation.name = Empty, user.id = Empty)
}

/// What one request learned about its operation on the way through.
#[derive(Default)]
pub(super) struct Operation {
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
fn millis(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

impl Operation {
    /// Notes the operations `doc` declares.
    pub(super) fn parsed(&mut self, doc: &ExecutableDocument) {
        self.declared = doc
            .operations
            .iter()
            .map(|(name, op)| (name.map(|n| n.to_string()), kind_of(op.node.ty)))
            .collect();
    }

    /// Notes the operation about to run, and names the current span after it.
    pub(super) fn executing(&mut self, operation_name: Option<&str>) {
        // The operation the document selected, so a valid GraphQL name (one naming
        // nothing never gets here); on the span now, so every line of the operation
        // carries it. Metrics label it later, from a bounded set.
        let name = operation_name.map(|n| n.chars().take(NAME_MAX).collect::<String>());
        if let Some(name) = &name {
            Span::current().record("operation.name", name.as_str());
        }
        self.kind = self
            .declared
            .iter()
            .find(|(declared, _)| declared.as_deref() == operation_name)
            .map(|(_, kind)| *kind);
        self.name = Some(name);
    }

    /// Logs the finished operation in `span` and counts it.
    pub(super) fn finish(self, span: &Span, elapsed: Duration, response: &Response) {
        // `executing` put a selected operation's name on the span already: recording it
        // again printed it twice on pretty lines (the fmt layer appends each record).
        let named_by_execute = matches!(self.name, Some(Some(_)));
        // A document that did not parse has no name; one that failed validation has
        // the name of its only operation, if it has one.
        let name = match (self.name, self.declared.as_slice()) {
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
        let kind = self.kind.unwrap_or(match self.declared.as_slice() {
            [(_, kind)] => kind,
            _ => "unknown",
        });
        if !named_by_execute {
            span.record("operation.name", name.as_str());
        }
        let codes = error_codes(response);
        crate::metrics::graphql_operation(&label, kind, codes.first().map(|c| c.as_str()), elapsed);
        // The name is on the span, so the line carries it once.
        let elapsed_ms = millis(elapsed);
        if codes.is_empty() {
            tracing::info!(parent: span, elapsed_ms, "graphql operation");
        } else {
            let codes = codes.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",");
            tracing::info!(parent: span, elapsed_ms, error.codes = codes, "graphql operation failed");
        }
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
        let elapsed = Duration::from_nanos(168_924_591);
        assert_eq!(millis(elapsed).to_string(), "168.925");
    }
}
