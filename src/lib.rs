//! authgraph: a self-hosted authentication service with a GraphQL API.
//!
//! Three layers, imports flowing down only:
//! - transport: [`http`] (routes, GraphQL-over-HTTP) and [`graphql`] (schema, guards,
//!   the one error-code mapping), with per-request facts in [`request`];
//! - auth logic: [`auth`] (use cases over the pool; knows nothing of HTTP or GraphQL);
//! - mail: [`mail`] (outbox mail composition, and the worker delivering it over SMTP
//!   through a circuit breaker), below auth and above storage;
//! - live events: [`events`] (the LISTEN connection and the per-user fan-out behind the
//!   `sessionEvents` subscription), fed by storage and read by the transport;
//! - storage: [`db`] (pool, migrations, queries per table).
//!
//! [`config`], [`telemetry`] and [`metrics`] sit beside them; [`state`] wires them together.

pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod events;
pub mod graphql;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod request;
pub mod state;
pub mod telemetry;

/// The real router, for `main` and for tests.
pub fn app(state: state::AppState) -> axum::Router {
    http::router(state)
}
