//! The schema's one extension, running each concern's step at every hook of a request
//! in a fixed order, outermost first: `observability`, `error`, `field_errors`,
//! `coercion`, `limits`. async-graphql boxes every hook of every extension, so one
//! extension instead of five spares a request some twenty boxed futures, and each field
//! four.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

use async_graphql::{
    Request, Response, ServerError, ServerResult, ValidationResult, Value, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
        NextRequest, NextResolve, NextValidation, ResolveInfo,
    },
    parser::types::ExecutableDocument,
};
use tracing::Instrument;

use super::{
    coercion::Coercion,
    error,
    field_errors::{Failures, Field},
    limits::{DocumentLimits, Verdict},
    observability::{self, Operation},
};

/// Installs the pipeline; it holds the document limits and their cache for every request.
pub struct Pipeline {
    documents: Arc<DocumentLimits>,
}

impl Pipeline {
    /// A pipeline enforcing `documents` on every request.
    pub fn new(documents: DocumentLimits) -> Self {
        Self {
            documents: Arc::new(documents),
        }
    }
}

impl ExtensionFactory for Pipeline {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerRequest {
            documents: self.documents.clone(),
            steps: Mutex::default(),
            fields: Failures::default(),
        })
    }
}

struct PerRequest {
    documents: Arc<DocumentLimits>,
    /// The hooks before execution run one after another, so one lock serves them all.
    steps: Mutex<Steps>,
    /// Fields resolve concurrently: kept apart, behind an atomic flag.
    fields: Failures,
}

#[derive(Default)]
struct Steps {
    operation: Operation,
    coercion: Coercion,
    verdict: Verdict,
}

impl PerRequest {
    /// Never held across an await.
    fn steps(&self) -> MutexGuard<'_, Steps> {
        // Nothing panics while holding it; a poisoned lock still holds whole values.
        self.steps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl Extension for PerRequest {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let span = observability::span();
        let started = Instant::now();
        let response = async {
            let mut response = next.run(ctx).await;
            self.fields.finish(&mut response);
            // After `field_errors`, so the errors it kept are coded like any other.
            error::code_response(&mut response);
            response
        }
        .instrument(span.clone())
        .await;
        // Last, so it counts and logs the codes `error` settled on.
        let operation = std::mem::take(&mut self.steps().operation);
        operation.finish(&span, started.elapsed(), &response);
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        self.steps().coercion.prepared(&request);
        next.run(ctx, request).await
    }

    /// Never calls `next`: `limits` parses the document itself (see
    /// [`DocumentLimits::parse`]).
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        _next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let mut guard = self.steps();
        let steps = &mut *guard;
        let parsed = self
            .documents
            .parse(query, &mut steps.verdict)
            .inspect(|doc| steps.coercion.parsed(&ctx.schema_env.registry, doc, variables))
            .map_err(|e| error::code_parse_failure(query, e));
        if let Ok(doc) = &parsed {
            steps.operation.parsed(doc);
        }
        parsed
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let verdict = std::mem::take(&mut self.steps().verdict);
        let result = self.documents.validate(verdict, next.run(ctx)).await;
        let result = self.steps().coercion.validated(result);
        result.map_err(error::code_validation_failures)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        self.steps().operation.executing(operation_name);
        next.run(ctx, operation_name).await
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let field = Field::of(&info);
        self.fields.resolved(field, next.run(ctx, info).await)
    }
}
