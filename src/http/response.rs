//! Responses: `Accept` negotiation as GraphQL-over-HTTP asks, GraphQL responses
//! serialized once in selection order, and transport refusals in GraphQL shape. A leaf:
//! the handler, the edge layer and the rate limit all answer through it.

use std::collections::BTreeMap;

use async_graphql::ServerError;
use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::json;

use super::{GRAPHQL_RESPONSE_JSON, JSON};
use crate::graphql::{Code, error::failed_before_execution};

/// Which body format the client accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Negotiated {
    /// `application/json`: GraphQL errors answer 200.
    Json,
    /// `application/graphql-response+json`: the spec's status codes.
    GraphqlResponse,
}

impl Negotiated {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json; charset=utf-8",
            Self::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
        }
    }
}

/// Reads `Accept` as GraphQL-over-HTTP asks: highest quality wins, ties go to
/// `application/graphql-response+json`; no header means `application/json`.
pub(crate) fn negotiate(headers: &HeaderMap) -> Option<Negotiated> {
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
pub(crate) fn error_response(status: StatusCode, code: Code, message: &str, format: Negotiated) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

pub(crate) fn not_acceptable() -> Response {
    error_response(
        StatusCode::NOT_ACCEPTABLE,
        Code::NotAcceptable,
        "accept application/graphql-response+json or application/json",
        Negotiated::Json,
    )
}

/// A GraphQL response as HTTP: status by `format`, no cache, and headers set by resolvers.
pub(crate) fn graphql_response(response: &async_graphql::Response, format: Negotiated) -> Response {
    let not_executed = failed_before_execution(response);
    let status = if format == Negotiated::GraphqlResponse && not_executed {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = match response_body(response, not_executed) {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(error = %err, "cannot serialize a GraphQL response");
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::Internal,
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

/// The response body as the spec lays it out: `errors` first when present, then `data`,
/// whose keys keep the order of the selection ("Serialized Map Ordering":
/// async-graphql's values are ordered maps, so this serializes them directly instead of
/// through `serde_json::Value`, which sorts keys).
#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [ServerError],
    /// Absent, not `null`, when the request failed before execution (GraphQL spec,
    /// "Response Format"; the `graphql-http` audits D586 and 5E5B check it).
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a async_graphql::Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extensions: &'a BTreeMap<String, async_graphql::Value>,
}

fn response_body(response: &async_graphql::Response, not_executed: bool) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Body {
        errors: &response.errors,
        data: (!not_executed).then_some(&response.data),
        extensions: &response.extensions,
    })
}

pub(crate) async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        Code::NotFound,
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
    fn data_keys_keep_the_selection_order() {
        let mut data = async_graphql::indexmap::IndexMap::new();
        for key in ["accessToken", "refreshToken", "expiresIn", "user"] {
            data.insert(async_graphql::Name::new(key), async_graphql::Value::from(1));
        }
        let response = async_graphql::Response::new(async_graphql::Value::Object(data));
        let body = String::from_utf8(response_body(&response, false).unwrap()).unwrap();
        assert_eq!(
            body,
            r#"{"data":{"accessToken":1,"refreshToken":1,"expiresIn":1,"user":1}}"#
        );
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
