//! Per-operation metrics: counts each operation by name, type, outcome and error code
//! with its latency, and puts the operation name on the `graphql` span (of
//! `graphql::telemetry`) as soon as it is known, so every log line of the operation
//! carries it, not only the summary line. Never records variables or the document.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use async_graphql::{
    Response, ServerResult, Value, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest},
    parser::types::{ExecutableDocument, OperationType},
};

use super::error::code;

/// Installs [`OperationMetrics`] on the schema.
pub struct OperationMetrics;

impl ExtensionFactory for OperationMetrics {
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
    /// The bounded label value; `None` until the document parsed.
    name: Option<String>,
    kind: Option<&'static str>,
    /// Every operation of the document with its type, to find the executed one's type.
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

    fn name(&self, name: Option<&str>) -> String {
        let label = crate::metrics::operation_names().label(name);
        tracing::Span::current().record("operation.name", label.as_str());
        label
    }
}

/// The `extensions.code` of the first error, if any.
fn first_code(response: &Response) -> Option<String> {
    let error = response.errors.first()?;
    let code = error
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .and_then(|c| match c {
            Value::String(s) => Some(s.clone()),
            _ => None,
        });
    Some(code.unwrap_or_else(|| code::INTERNAL.to_owned()))
}

#[async_trait::async_trait]
impl Extension for PerRequest {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let elapsed = started.elapsed();
        let op = self.snapshot();
        // A document that did not parse has no name; one that failed validation has
        // the name of its only operation, if it has one.
        let name = op.name.unwrap_or_else(|| match op.declared.as_slice() {
            [(name, _)] => self.name(name.as_deref()),
            _ => "unknown".to_owned(),
        });
        let kind = op.kind.unwrap_or(match op.declared.as_slice() {
            [(_, kind)] => kind,
            _ => "unknown",
        });
        let code = first_code(&response);
        crate::metrics::graphql_operation(&name, kind, code.as_deref(), elapsed);
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
        let label = self.name(operation_name);
        self.update(|op| {
            let kind = op
                .declared
                .iter()
                .find(|(name, _)| name.as_deref() == operation_name)
                .map(|(_, kind)| *kind);
            op.name = Some(label);
            op.kind = kind;
        });
        next.run(ctx, operation_name).await
    }
}
