//! The probes and public documents beside `/graphql`: liveness (`/healthz`), readiness
//! (`/readyz`), the JWKS and Prometheus metrics.

use std::time::Duration;

use axum::{
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{Http, JSON};

pub(crate) async fn jwks(State(http): State<Http>) -> Response {
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

pub(crate) async fn healthz() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, JSON)],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

pub(crate) async fn readyz(State(http): State<Http>) -> Response {
    let answered = tokio::time::timeout(Duration::from_secs(2), crate::db::ping(&http.state.db))
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
pub(crate) async fn metrics(State(http): State<Http>) -> Response {
    let auth = &http.state.auth;
    crate::metrics::db_pool(&crate::db::pool_sample(&http.state.db));
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
