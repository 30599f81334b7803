//! A tracing extension that logs each GraphQL operation by name, duration and error codes.
//! It never records variables, the document or error messages: variables carry
//! passwords and tokens, and documents can carry them inline.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use async_graphql::{
    Response, Value,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute, NextRequest},
};
use tracing::{Instrument, field::Empty};

use crate::request::RequestContext;

/// Longest operation name recorded (names are client-chosen).
const NAME_MAX: usize = 100;

/// Installs [`Telemetry`] on a schema. Register it first, so it sees the final codes.
pub struct Telemetry;

impl ExtensionFactory for Telemetry {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(TelemetryExtension::default())
    }
}

#[derive(Default)]
struct TelemetryExtension {
    /// The name of the operation that ran, once one was selected.
    operation: Mutex<Option<String>>,
}

/// The `extensions.code` of every error, in order, without repeats.
fn error_codes(response: &Response) -> Vec<String> {
    let mut codes: Vec<String> = Vec::new();
    for code in response
        .errors
        .iter()
        .map(|e| match e.extensions.as_ref().and_then(|x| x.get("code")) {
            Some(Value::String(code)) => code.clone(),
            _ => "UNKNOWN".to_owned(),
        })
    {
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

#[async_trait::async_trait]
impl Extension for TelemetryExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        // `user.id` is recorded by whoever learns the caller (`RequestContext::viewer`,
        // the mutations that sign someone in), so every line of the operation names them.
        // `client.address` is recorded in `execute`, once the request's data is attached:
        // every security event of the operation (failed logins, lockouts, token reuse)
        // then names the address it came from.
        let span = tracing::info_span!(
            "graphql",
            operation.name = Empty,
            user.id = Empty,
            client.address = Empty
        );
        let started = Instant::now();
        let response = next.run(ctx).instrument(span.clone()).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let name = self.operation.lock().ok().and_then(|mut name| name.take());
        if let Some(name) = &name {
            span.record("operation.name", name.as_str());
        }
        let name = name.as_deref().unwrap_or("-");
        let codes = error_codes(&response);
        if codes.is_empty() {
            tracing::info!(parent: &span, operation.name = name, elapsed_ms, "graphql operation");
        } else {
            let codes = codes.join(",");
            tracing::info!(
                parent: &span,
                operation.name = name,
                elapsed_ms,
                error.codes = codes,
                "graphql operation failed"
            );
        }
        response
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        // The name of the operation the document selected, so a valid GraphQL name (a
        // client-supplied `operationName` that matches nothing never gets here).
        if let (Some(name), Ok(mut slot)) = (operation_name, self.operation.lock()) {
            *slot = Some(name.chars().take(NAME_MAX).collect());
        }
        // The address after trusted-proxy resolution, not the TCP peer.
        if let Some(ip) = ctx
            .data_opt::<RequestContext>()
            .and_then(|request| request.client.ip)
        {
            tracing::Span::current().record("client.address", tracing::field::display(ip));
        }
        next.run(ctx, operation_name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{ErrorExtensionValues, ServerError};

    #[test]
    fn codes_are_listed_once_each_in_order() {
        let coded = |code: &str| {
            let mut e = ServerError::new("message with alice@example.com", None);
            let mut ext = ErrorExtensionValues::default();
            ext.set("code", code);
            e.extensions = Some(ext);
            e
        };
        let response = Response::from_errors(vec![
            coded("RATE_LIMITED"),
            coded("INVALID_CREDENTIALS"),
            coded("RATE_LIMITED"),
            ServerError::new("bare", None),
        ]);
        assert_eq!(
            error_codes(&response),
            ["RATE_LIMITED", "INVALID_CREDENTIALS", "UNKNOWN"]
        );
    }
}
