//! Transport: the routes of API.md and the layers every request passes (request id,
//! tracing, CORS, client address, rate limit, panics). The GraphQL-over-HTTP handler is
//! in `handler`, answers in `response`, the per-request context in `request_context`,
//! the probes in `probes`.

mod client_ip;
mod cors;
mod edge;
mod graphiql;
mod handler;
mod live;
mod probes;
mod rate_limit;
mod request_context;
mod response;
pub mod server;

use axum::{Router, http::StatusCode, response::Html, routing::get};
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    graphql::{self, AuthSchema, Code},
    state::AppState,
};
use response::{Negotiated, error_response};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";
const X_REQUEST_ID: &str = "x-request-id";
const X_TOKEN_DELIVERY: &str = "x-token-delivery";

#[derive(Clone)]
struct Http {
    state: AppState,
    schema: AuthSchema,
    /// Open live sockets, for their limits.
    live: std::sync::Arc<live::Sockets>,
}

/// The whole HTTP application. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so client addresses are known.
/// Metrics must be installed first ([`crate::metrics::install`], done at start-up).
pub fn router(state: AppState) -> Router {
    let schema = graphql::build_schema(state.clone());
    let graphiql = state.config.http.graphiql;
    let mut router = Router::new()
        .route("/graphql", get(handler::graphql_get).post(handler::graphql_post))
        .route("/.well-known/jwks.json", get(probes::jwks));
    if graphiql {
        let page = Html(graphiql::graphiql_page(
            state.config.http.graphiql_cdn_url.as_deref(),
        ));
        router = router.route("/graphiql", get(move || std::future::ready(page.clone())));
    }
    let config = state.config.clone();
    let trusted = client_ip::TrustedProxies::new(
        config.http.trusted_proxies.clone(),
        config.http.trusted_proxy_header,
    );
    let http = Http {
        state,
        schema,
        live: Default::default(),
    };
    // Layers run outside-in from the last one added: the edge (request id, client
    // address, span, metrics), CORS, rate limit, panics, and the handler innermost. The limit needs the client address; CORS headers go on
    // refusals too.
    let limited = |routes: Router<Http>| {
        let routes = routes
            .with_state(http.clone())
            .layer(CatchPanicLayer::custom(panicked));
        match config.http.rate_limit {
            Some(limit) => rate_limit::limit(routes, limit),
            None => routes,
        }
    };
    // The probes answer whatever else the address sends: a flood from one address (or
    // from everyone behind the load balancer, without TRUSTED_PROXIES) must not fail the
    // load balancer's or the kubelet's checks and take the replica out. `/metrics` is
    // limited, but in a bucket of its own, so a scraper and the clients behind its
    // address do not spend each other's budget.
    let probes = Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .with_state(http.clone())
        .layer(CatchPanicLayer::custom(panicked));
    let metrics = limited(Router::new().route("/metrics", get(probes::metrics)));
    let mut router = limited(router.fallback(response::not_found))
        .merge(metrics)
        .merge(probes);
    if let Some(cors) = cors::layer(&config) {
        router = router.layer(cors);
    }
    router
        // Outermost: the request id and its span exist before anything else runs, and
        // 429s and preflights are counted too.
        .layer(edge::EdgeLayer::new(trusted))
}

/// The answer to a handler that panicked. The payload may quote anything the code was
/// handling: it is never echoed.
fn panicked(_panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    tracing::error!("request handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        Code::Internal,
        "internal error",
        Negotiated::Json,
    )
}
