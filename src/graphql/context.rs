//! `ContextExt`: typed access to the state and the request from any resolver or guard.

use async_graphql::{Context, dataloader::DataLoader};

use super::loader::UserLoader;
use crate::{
    auth::{AuthError, Viewer},
    request::RequestContext,
    state::AppState,
};

/// Accessors over an async-graphql `Context`, so resolvers never call `data_unchecked`.
pub trait ContextExt {
    /// The application state (set once on the schema).
    fn state(&self) -> &AppState;
    /// This request's context (set by the HTTP handler).
    fn request(&self) -> &RequestContext;
    /// Users by id, batched across concurrent resolvers (one query per batch).
    fn users(&self) -> &DataLoader<UserLoader>;
    /// The authenticated caller, or `UNAUTHENTICATED`.
    fn viewer(&self) -> impl Future<Output = Result<&Viewer, AuthError>> + Send;
}

impl ContextExt for Context<'_> {
    fn state(&self) -> &AppState {
        // Both data items are inserted by `graphql::build_schema` and `http` before any
        // execution; a missing one is a wiring bug that must fail loudly in tests.
        #[expect(clippy::expect_used, reason = "set on every schema by build_schema")]
        self.data::<AppState>().expect("AppState is set on the schema")
    }

    fn users(&self) -> &DataLoader<UserLoader> {
        #[expect(clippy::expect_used, reason = "set on every schema by build_schema")]
        self.data::<DataLoader<UserLoader>>()
            .expect("the user loader is set on the schema")
    }

    fn request(&self) -> &RequestContext {
        static EMPTY: std::sync::LazyLock<RequestContext> = std::sync::LazyLock::new(RequestContext::default);
        // A request executed without HTTP (tests, print-schema) is simply anonymous.
        self.data::<RequestContext>().unwrap_or(&EMPTY)
    }

    async fn viewer(&self) -> Result<&Viewer, AuthError> {
        self.request().viewer(&self.state().auth).await
    }
}
