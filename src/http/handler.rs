//! The GraphQL-over-HTTP handler: `POST /graphql` with a JSON body and `GET /graphql`
//! for queries, each turned into one async-graphql request and executed; a `GET` asking
//! for a WebSocket goes to `live`.

use async_graphql::parser::types::OperationType;
use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};

use super::{
    GRAPHQL_RESPONSE_JSON, Http, JSON,
    request_context::request_context,
    response::{Negotiated, error_response, graphql_response, negotiate, not_acceptable},
};
use crate::graphql::{self, Code};

/// `POST /graphql`.
pub(crate) async fn graphql_post(State(http): State<Http>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(format) = negotiate(&parts.headers) else {
        return not_acceptable();
    };
    if let Some(refused) = ambiguous_credentials(&parts.headers, format) {
        return refused;
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    // Only JSON: a cross-site form or `text/plain` POST cannot run a mutation (CSRF).
    if !matches!(content_type.as_deref(), Some(JSON | GRAPHQL_RESPONSE_JSON)) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::UnsupportedMediaType,
            "POST /graphql needs `Content-Type: application/json`",
            format,
        );
    }
    let limit = http.state.config.http.body_limit;
    let too_large = || {
        // The rest of the body is never read: the connection cannot carry another
        // request, so say it closes.
        closing(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::PayloadTooLarge,
            &format!("the request body is larger than {limit} bytes"),
            format,
        ))
    };
    // A declared length over the limit is refused at once, before a byte of the body is
    // read: waiting for 100 MB only to refuse them holds the connection for nothing.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let bytes = match read_body(body, limit).await {
        Ok(bytes) => bytes,
        Err(status) if status == StatusCode::PAYLOAD_TOO_LARGE => return too_large(),
        Err(status) if status == StatusCode::REQUEST_TIMEOUT => {
            return closing(error_response(
                status,
                Code::RequestTimeout,
                "the request body did not arrive in time",
                format,
            ));
        }
        Err(status) => {
            return error_response(
                status,
                Code::BadRequest,
                "the request body could not be read",
                format,
            );
        }
    };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return error_response(
            StatusCode::BAD_REQUEST,
            Code::BadRequest,
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
                Code::BadRequest,
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

/// A GraphQL-over-HTTP GET: the same fields as a POST body, `variables` and
/// `extensions` as JSON text. (async-graphql's own parser looks for `operation_name`,
/// so a client's `operationName` was ignored.)
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphqlQueryString {
    query: String,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<String>,
}

impl GraphqlQueryString {
    fn parse(query_string: &str) -> Option<async_graphql::Request> {
        let fields: Self = serde_urlencoded::from_str(query_string).ok()?;
        let variables = match fields.variables.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(serde_json::from_str(text).ok()?),
        };
        GraphqlBody {
            query: fields.query,
            operation_name: fields.operation_name,
            variables,
            extensions: None,
        }
        .into_request()
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, StatusCode> {
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(err) => {
            // The cause sits a layer or two down (axum wraps the body's own error).
            let chain = || std::iter::successors(std::error::Error::source(&err), |e| e.source());
            let too_large = chain().any(|e| e.is::<http_body_util::LengthLimitError>());
            let timed_out = chain().any(|e| e.is::<super::server::BodyTimeout>());
            Err(
                if too_large || err.into_inner().is::<http_body_util::LengthLimitError>() {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else if timed_out {
                    StatusCode::REQUEST_TIMEOUT
                } else {
                    StatusCode::BAD_REQUEST
                },
            )
        }
    }
}

/// `GET /graphql`: queries only, or the upgrade to the live socket.
pub(crate) async fn graphql_get(State(http): State<Http>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    // Before anything reads a query string: an upgrade carries none.
    if super::live::is_upgrade(&parts) {
        return super::live::upgrade(http, parts).await;
    }
    let Some(format) = negotiate(&parts.headers) else {
        return not_acceptable();
    };
    if let Some(refused) = ambiguous_credentials(&parts.headers, format) {
        return refused;
    }
    let gql = match GraphqlQueryString::parse(parts.uri.query().unwrap_or("")) {
        Some(request) => request,
        None => {
            return error_response(
                StatusCode::BAD_REQUEST,
                Code::BadRequest,
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
                Code::MethodNotAllowed,
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
    let limit = http.state.config.http.request_timeout;
    // Dropping the execution cancels it where it waits: a transaction not yet committed
    // is never committed (its connection leaves the pool, so PostgreSQL rolls it back).
    match tokio::time::timeout(limit, http.schema.execute(gql.data(context))).await {
        Ok(response) => graphql_response(&response, format),
        Err(_) => {
            tracing::warn!(
                timeout_ms = limit.as_millis(),
                "request ran past REQUEST_TIMEOUT; cancelled"
            );
            let response = async_graphql::Response::from_errors(vec![
                Code::ServiceUnavailable.error("the request took too long and was cancelled; retry shortly"),
            ]);
            let mut out = graphql_response(&response, format);
            if format == Negotiated::GraphqlResponse {
                *out.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            out
        }
    }
}

/// `response` with `Connection: close`, for a refusal that leaves the body unread.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Refuses a request with more than one `Authorization` header. We would read the first
/// and a gateway or proxy in front of us may read the last (or join them), so the two
/// would disagree about who the caller is: neither guess is safe.
fn ambiguous_credentials(headers: &HeaderMap, format: Negotiated) -> Option<Response> {
    let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
    authorizations.next()?;
    authorizations.next()?;
    Some(error_response(
        StatusCode::BAD_REQUEST,
        Code::BadRequest,
        "send at most one Authorization header",
        format,
    ))
}
