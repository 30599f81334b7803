//! CORS for browser frontends on other origins (API.md `CORS_ALLOWED_ORIGINS`): only the
//! listed origins, with credentials, never a wildcard; the preflight allows the headers
//! a client sends and is cached for `CORS_MAX_AGE`.

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};

use super::{X_REQUEST_ID, X_TOKEN_DELIVERY};
use crate::config::Config;

/// The CORS layer, or `None` when no origin is allowed (then browsers keep every
/// cross-origin call out, since no response carries `Access-Control-Allow-Origin`).
pub(crate) fn layer(config: &Config) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = config
        .http
        .cors_allowed_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            // An exact list: the layer echoes a listed origin and nothing else.
            .allow_origin(AllowOrigin::list(origins.clone()))
            // Credentials only ever for a listed origin (the header alone is harmless
            // without a matching origin, but says what it should not).
            .allow_credentials(AllowCredentials::predicate(move |origin, _| {
                origins.contains(origin)
            }))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static(X_TOKEN_DELIVERY),
            ])
            .expose_headers([header::RETRY_AFTER, HeaderName::from_static(X_REQUEST_ID)])
            .max_age(config.http.cors_max_age),
    )
}
