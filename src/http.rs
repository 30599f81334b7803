//! Transport: the routes of API.md, GraphQL-over-HTTP request parsing and content
//! negotiation, and the layers every request passes (request id, tracing, CORS, client
//! address, rate limit, panics).

mod client_ip;
mod cors;
mod edge;
mod rate_limit;

use std::{net::SocketAddr, time::Duration};

use async_graphql::{http::GraphiQLSource, parser::types::OperationType};
use axum::{
    Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use secrecy::SecretString;
use serde_json::json;
use tower_http::{
    catch_panic::CatchPanicLayer,
    trace::{DefaultOnFailure, TraceLayer},
};

use crate::{
    auth::ClientInfo,
    graphql::{self, AuthSchema, error::failed_before_execution},
    request::{DEVICE_COOKIE, REFRESH_COOKIE, RequestContext},
    state::AppState,
};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";
const X_REQUEST_ID: &str = "x-request-id";
const X_TOKEN_DELIVERY: &str = "x-token-delivery";

#[derive(Clone)]
struct Http {
    state: AppState,
    schema: AuthSchema,
}

/// The whole HTTP application. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so client addresses are known.
pub fn router(state: AppState) -> Router {
    crate::metrics::install();
    let schema = graphql::build_schema(state.clone());
    let graphiql = state.config.graphiql;
    let mut router = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if graphiql {
        let page = Html(graphiql_page(state.config.graphiql_cdn_url.as_deref()));
        router = router.route("/graphiql", get(move || std::future::ready(page.clone())));
    }
    let config = state.config.clone();
    let trusted = client_ip::TrustedProxies::new(config.trusted_proxies.clone(), config.trusted_proxy_header);
    // Layers run outside-in from the last one added: the request id is checked, then
    // set, then the span opens, metrics, CORS, client address, rate limit, panics, and
    // the handler runs innermost.
    let mut router = router
        .fallback(not_found)
        .with_state(Http { state, schema })
        .layer(CatchPanicLayer::custom(|_panic| {
            // The payload may quote anything the code was handling: never echo it.
            tracing::error!("request handler panicked");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "internal error",
                Negotiated::Json,
            )
        }));
    // Inner to outer: the limit needs the client address; CORS headers go on refusals too.
    if let Some(limit) = config.http_rate_limit {
        router = rate_limit::limit(router, limit);
    }
    if let Some(cors) = cors::layer(&config) {
        router = router.layer(cors);
    }
    router
        .layer(
            TraceLayer::new_for_http()
                // A 5xx is logged where it is handled (an internal error once in
                // `graphql::error`, a database outage as readiness changes), not again per
                // response: an outage must not flood the log with every probe.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG))
                .make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get(X_REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    // The path only: a GET query string carries the GraphQL document and variables.
                    // (`operation.name` and `user.id` are on the `graphql` span inside it.)
                    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
                }),
        )
        // Outermost: the request id exists before the span opens, and 429s and
        // preflights are counted too.
        .layer(edge::EdgeLayer::new(trusted))
}

/// Which body format the client accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Negotiated {
    /// `application/json`: GraphQL errors answer 200.
    Json,
    /// `application/graphql-response+json`: the spec's status codes.
    GraphqlResponse,
}

impl Negotiated {
    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json; charset=utf-8",
            Self::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
        }
    }
}

/// Reads `Accept` as GraphQL-over-HTTP asks: highest quality wins, ties go to
/// `application/graphql-response+json`; no header means `application/json`.
fn negotiate(headers: &HeaderMap) -> Option<Negotiated> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Negotiated::Json);
    };
    if accept.trim().is_empty() {
        return Some(Negotiated::Json);
    }
    let mut best: Option<(f32, Negotiated)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let kind = match media.as_str() {
            GRAPHQL_RESPONSE_JSON => Negotiated::GraphqlResponse,
            JSON | "application/*" | "*/*" => Negotiated::Json,
            _ => continue,
        };
        if q <= 0.0 {
            continue;
        }
        let better = match best {
            None => true,
            Some((bq, bk)) => {
                q > bq || (q == bq && kind == Negotiated::GraphqlResponse && bk == Negotiated::Json)
            }
        };
        if better {
            best = Some((q, kind));
        }
    }
    best.map(|(_, kind)| kind)
}

/// A transport failure in GraphQL shape, in the format the client accepts.
fn error_response(status: StatusCode, code: &str, message: &str, format: Negotiated) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

fn not_acceptable() -> Response {
    error_response(
        StatusCode::NOT_ACCEPTABLE,
        "NOT_ACCEPTABLE",
        "accept application/graphql-response+json or application/json",
        Negotiated::Json,
    )
}

async fn graphql_post(State(http): State<Http>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(format) = negotiate(&parts.headers) else {
        return not_acceptable();
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    // Only JSON: a cross-site form or `text/plain` POST cannot run a mutation (CSRF).
    if !matches!(content_type.as_deref(), Some(JSON | GRAPHQL_RESPONSE_JSON)) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "POST /graphql needs `Content-Type: application/json`",
            format,
        );
    }
    let limit = http.state.config.body_limit;
    let bytes = match read_body(body, limit).await {
        Ok(bytes) => bytes,
        Err(status) if status == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(
                status,
                "PAYLOAD_TOO_LARGE",
                &format!("the request body is larger than {limit} bytes"),
                format,
            );
        }
        Err(status) => {
            return error_response(
                status,
                "BAD_REQUEST",
                "the request body could not be read",
                format,
            );
        }
    };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "batched requests are not supported: send one operation per request",
            format,
        );
    }
    let gql = match serde_json::from_slice::<GraphqlBody>(&bytes)
        .ok()
        .and_then(GraphqlBody::into_request)
    {
        Some(request) => request,
        None => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "the body must be a JSON object with a `query` string (and optional `variables` object and `operationName`)",
                format,
            );
        }
    };
    execute(&http, gql, &parts, format).await
}

/// A GraphQL-over-HTTP POST body: `query` is required, `variables` an object if present.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphqlBody {
    query: String,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<serde_json::Value>,
    #[serde(default)]
    extensions: Option<serde_json::Map<String, serde_json::Value>>,
}

impl GraphqlBody {
    fn into_request(self) -> Option<async_graphql::Request> {
        let mut request = async_graphql::Request::new(self.query);
        match self.variables {
            None | Some(serde_json::Value::Null) => {}
            Some(vars @ serde_json::Value::Object(_)) => {
                request = request.variables(async_graphql::Variables::from_json(vars));
            }
            Some(_) => return None,
        }
        if let Some(name) = self.operation_name.filter(|n| !n.is_empty()) {
            request = request.operation_name(name);
        }
        // Extensions (persisted-query hashes and the like) are accepted and ignored.
        let _ = self.extensions;
        Some(request)
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, StatusCode> {
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(err) => {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>())
                || err.into_inner().is::<http_body_util::LengthLimitError>();
            Err(if too_large {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            })
        }
    }
}

async fn graphql_get(State(http): State<Http>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let Some(format) = negotiate(&parts.headers) else {
        return not_acceptable();
    };
    let gql = match async_graphql::http::parse_query_string(parts.uri.query().unwrap_or("")) {
        Ok(request) => request,
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "GET /graphql needs a `query` parameter (and optional `variables` JSON and `operationName`)",
                format,
            );
        }
    };
    // A mutation must never run from a link or an <img> tag (ASVS 3.5.3). A document
    // nested too deep for the parser is refused by the schema's limits instead.
    let parsed = graphql::limits::nesting_within(&gql.query, graphql::limits::MAX_NESTING)
        .then(|| async_graphql::parser::parse_query(&gql.query).ok())
        .flatten();
    if let Some(document) = parsed {
        let selected = match &gql.operation_name {
            Some(name) => document
                .operations
                .iter()
                .find(|(n, _)| n.is_some_and(|n| n.as_str() == name)),
            None => document.operations.iter().next(),
        };
        if let Some((_, op)) = selected
            && op.node.ty != OperationType::Query
        {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "mutations are accepted over POST only",
                format,
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
    }
    execute(&http, gql, &parts, format).await
}

async fn execute(
    http: &Http,
    gql: async_graphql::Request,
    parts: &axum::http::request::Parts,
    format: Negotiated,
) -> Response {
    let context = request_context(parts);
    let response = http.schema.execute(gql.data(context)).await;
    let not_executed = failed_before_execution(&response);
    let status = if format == Negotiated::GraphqlResponse && not_executed {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = match response_body(&response, not_executed) {
        Ok(body) => body,
        Err(_) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "internal error",
                format,
            );
        }
    };
    let mut out = (status, body).into_response();
    let headers = out.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    // Responses carry tokens and private fields: no cache may keep them.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in &response.http_headers {
        headers.append(name, value.clone());
    }
    out
}

/// The JSON body of a GraphQL response. A request that failed before execution has no
/// `data` entry at all, not `"data": null` (GraphQL spec, "Response Format"; the
/// `graphql-http` audits D586 and 5E5B check it).
fn response_body(response: &async_graphql::Response, not_executed: bool) -> serde_json::Result<Vec<u8>> {
    let mut body = serde_json::to_value(response)?;
    if not_executed && let Some(object) = body.as_object_mut() {
        object.remove("data");
    }
    serde_json::to_vec(&body)
}

fn request_context(parts: &axum::http::request::Parts) -> RequestContext {
    let headers = &parts.headers;
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    // Resolved by `client_ip::resolve` (trusted proxies); the peer if that did not run.
    let client_ip = match parts.extensions.get::<client_ip::ClientAddr>() {
        Some(resolved) => resolved.0,
        None => parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
    };
    let refresh_cookie = cookie(headers, REFRESH_COOKIE);
    RequestContext::new(
        text(header::AUTHORIZATION).map(|v| SecretString::from(v.to_owned())),
        refresh_cookie,
        headers
            .get(X_TOKEN_DELIVERY)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("cookie")),
        ClientInfo {
            user_agent: text(header::USER_AGENT).map(str::to_owned),
            ip: client_ip,
            device: cookie(headers, DEVICE_COOKIE),
        },
        text(header::HeaderName::from_static(X_REQUEST_ID))
            .unwrap_or_default()
            .to_owned(),
    )
}

/// The first non-empty cookie called `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<SecretString> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
        .map(|v| SecretString::from(v.to_owned()))
}

/// Where async-graphql's GraphiQL page loads React and GraphiQL from.
const GRAPHIQL_DEFAULT_CDN: &str = "https://unpkg.com";

/// The GraphiQL page. With `GRAPHIQL_CDN_URL` (`cdn`) its scripts and stylesheet load from
/// that base in unpkg's layout (`{cdn}/react@18/umd/react.development.js`,
/// `{cdn}/graphiql@4/graphiql.min.js`, ...) and the graphql.org favicon is left out, so the
/// page makes no request to a third party.
fn graphiql_page(cdn: Option<&str>) -> String {
    let page = GraphiQLSource::build()
        .endpoint("/graphql")
        .title("authgraph")
        .finish();
    let Some(cdn) = cdn else {
        return page;
    };
    page.replace(GRAPHIQL_DEFAULT_CDN, cdn)
        .lines()
        .filter(|line| !line.contains("graphql.org/favicon.ico"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn jwks(State(http): State<Http>) -> Response {
    let mut response = http.state.auth.keys().jwks().to_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Short enough that a rotated key is picked up well inside an access token's life.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

async fn healthz() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, JSON)],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

async fn readyz(State(http): State<Http>) -> Response {
    let answered = tokio::time::timeout(Duration::from_secs(2), crate::db::ping(http.state.auth.db()))
        .await
        .unwrap_or(false);
    crate::metrics::db_up(answered);
    http.state.readiness.database_answered(answered);
    let status = if !answered {
        "database unavailable"
    } else if let Some(reason) = http.state.readiness.not_ready() {
        reason
    } else {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, JSON)],
            r#"{"status":"ready"}"#,
        )
            .into_response();
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, JSON)],
        json!({ "status": status }).to_string(),
    )
        .into_response()
}

/// Prometheus text format. Resource gauges (pool, hash queue) are sampled now.
async fn metrics(State(http): State<Http>) -> Response {
    let auth = &http.state.auth;
    crate::metrics::db_pool(&crate::db::pool_sample(auth.db()));
    crate::metrics::password_hash_queue(auth.passwords().queue_depth());
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        crate::metrics::render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such route",
        Negotiated::Json,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Option<Negotiated> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        negotiate(&headers)
    }

    #[test]
    fn graphiql_assets_load_from_the_configured_base() {
        let default = graphiql_page(None);
        assert!(default.contains("https://unpkg.com/graphiql@4/graphiql.min.js"));
        let page = graphiql_page(Some("https://assets.example.com/graphiql"));
        for asset in [
            "/react@18/umd/react.development.js",
            "/react-dom@18/umd/react-dom.development.js",
            "/graphiql@4/graphiql.min.css",
            "/graphiql@4/graphiql.min.js",
        ] {
            let url = format!("https://assets.example.com/graphiql{asset}");
            assert!(page.contains(&url), "{url} missing from the page");
        }
        // Every remaining absolute URL points at the configured base.
        for (i, _) in page.match_indices("https://") {
            assert!(
                page[i..].starts_with("https://assets.example.com/graphiql/"),
                "third-party URL in the page: {}",
                &page[i..(i + 60).min(page.len())]
            );
        }
        assert!(!page.contains("//unpkg.com") && !page.contains("graphql.org"));
    }

    #[test]
    fn a_response_that_failed_before_execution_has_no_data_entry() {
        let mut failed =
            async_graphql::Response::from_errors(vec![async_graphql::ServerError::new("syntax error", None)]);
        failed.data = async_graphql::Value::Null;
        let body: serde_json::Value = serde_json::from_slice(&response_body(&failed, true).unwrap()).unwrap();
        assert!(body.get("data").is_none(), "{body}");
        assert!(body["errors"].is_array());
        let executed: serde_json::Value =
            serde_json::from_slice(&response_body(&failed, false).unwrap()).unwrap();
        assert!(executed.get("data").is_some(), "{executed}");
    }

    #[test]
    fn accept_negotiation_follows_graphql_over_http() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(Negotiated::Json));
        assert_eq!(accept("application/json"), Some(Negotiated::Json));
        assert_eq!(
            accept("application/graphql-response+json"),
            Some(Negotiated::GraphqlResponse)
        );
        assert_eq!(
            accept("application/graphql-response+json, application/json;q=0.9"),
            Some(Negotiated::GraphqlResponse)
        );
        assert_eq!(
            accept("application/json, application/graphql-response+json;q=0.5"),
            Some(Negotiated::Json)
        );
        assert_eq!(accept("*/*"), Some(Negotiated::Json));
        assert_eq!(accept("text/html"), None);
        assert_eq!(accept("application/json;q=0"), None);
    }
}
