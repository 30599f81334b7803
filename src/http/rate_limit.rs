//! The per-client HTTP limit (tower_governor), keyed on the resolved client address:
//! a refusal is a 429 with `Retry-After` and a GraphQL-shaped body coded `RATE_LIMITED`.
//! It guards the service's capacity; guessing is limited per account inside `auth`,
//! since one request can carry many operations' worth of work.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Response, StatusCode, header},
};
use serde_json::json;
use tower_governor::{
    GovernorError, GovernorLayer, governor::GovernorConfigBuilder, key_extractor::KeyExtractor,
};

use super::{
    client_ip::ClientAddr,
    response::{Negotiated, error_response},
};
use crate::{auth::throttle::subscriber_block, config::HttpRateLimit, graphql::Code};

/// How often idle clients are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// Keys requests by [`ClientAddr`]; IPv6 clients by their /64, the block one
/// subscriber holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientKey;

impl KeyExtractor for ClientKey {
    type Key = IpAddr;

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        let ip = request
            .extensions()
            .get::<ClientAddr>()
            .and_then(|c| c.0)
            // No connection info (an embedded router): one shared bucket.
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(subscriber_block(ip))
    }
}

/// Puts `router` behind the limit; idle clients are forgotten every minute while the
/// router lives.
pub(crate) fn limit(router: Router, limit: HttpRateLimit) -> Router {
    let Some(config) = GovernorConfigBuilder::default()
        .period(limit.period)
        .burst_size(limit.burst)
        .key_extractor(ClientKey)
        .finish()
    else {
        // Only a zero period or burst fails, and the configuration refuses both.
        return router;
    };
    let limiter = Arc::downgrade(config.limiter());
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(FORGET_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limiter) = limiter.upgrade() else { break };
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        });
    }
    router.layer(GovernorLayer::new(config).error_handler(refusal))
}

/// The 429 answer (in `application/json`; the edge layer adjusts it to `Accept`).
fn refusal(error: GovernorError) -> Response<Body> {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            // The governor rounds down; a client told 0 would retry at once.
            let retry_after = wait_time.max(1);
            crate::metrics::throttle_hit("http");
            tracing::warn!(retry_after, "request refused: client over the HTTP rate limit");
            let body = json!({ "errors": [{
                "message": format!("too many requests: retry in {retry_after} seconds"),
                "extensions": { "code": Code::RateLimited.as_str(), "retryAfter": retry_after },
            }] });
            let mut response = Response::new(Body::from(body.to_string()));
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(Negotiated::Json.content_type()),
            );
            response
        }
        _ => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            "internal error",
            Negotiated::Json,
        ),
    }
}
