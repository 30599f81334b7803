//! authgraph: a self-hosted authentication service with a GraphQL API.
//!
//! Four floors, imports flowing down only:
//! - transport: [`http`] (routes, GraphQL-over-HTTP, response negotiation, probes) and
//!   [`graphql`] (schema, resolvers per capability, guards, document limits, and the one
//!   place errors get their code, [`graphql::Code`]), with per-request facts in [`request`];
//! - auth logic: [`auth`] (use cases over the pool; knows nothing of HTTP or GraphQL;
//!   fails with one `AuthError`);
//! - mail: [`mail`] (outbox mail composition, and the worker delivering it over SMTP
//!   through a circuit breaker);
//! - webhooks: [`webhooks`] (the worker POSTing signed events from `webhook_deliveries`,
//!   one task and circuit breaker per endpoint), beside mail and built from its parts;
//!   the rows are queued by `auth` with each audit event;
//! - retention: [`retention`] (the job deleting ended sessions, finished mail and expired
//!   tokens), beside mail: a background task over storage that `serve` runs;
//! - live events: [`events`] (the LISTEN connection and the per-user fan-out behind the
//!   `sessionEvents` subscription), beside mail: fed by storage, read by the transport;
//! - storage: [`db`] (pool, migrations, queries per table; `db/schema.rs` is generated).
//!
//! [`config`] (every environment variable, parsed once), [`telemetry`] and [`metrics`] sit
//! beside them; [`state`] wires them together and [`cli`] starts them.
//!
//! Where things go: a new mutation is a thin resolver in `graphql/` calling a use case
//! in `auth/`; a new error code is a [`graphql::Code`] variant plus its `AuthError`
//! mapping in `graphql/error.rs`; a new table is a migration in `migrations/` and a module
//! in `db/`; a new variable goes, with its default, into the group of [`config::Config`]
//! for its concern (one module under `config/`) and into [`config::VARIABLES`].

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
pub mod retention;
pub mod state;
pub mod telemetry;
pub mod webhooks;

/// The real router, for `main` and for tests.
pub fn app(state: state::AppState) -> axum::Router {
    http::router(state)
}
