//! Builds the per-request [`RequestContext`] (credentials, client, request id) from the
//! headers and the connection.

use std::net::SocketAddr;

use axum::{extract::ConnectInfo, http::header};
use secrecy::SecretString;

use super::{X_REQUEST_ID, X_TOKEN_DELIVERY, client_ip};
use crate::{
    auth::ClientInfo,
    request::{REFRESH_COOKIE, RequestContext},
};

/// The per-request facts the GraphQL layer reads, from headers and the connection.
pub(crate) fn request_context(parts: &axum::http::request::Parts) -> RequestContext {
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
    let refresh_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(REFRESH_COOKIE)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
        .map(|v| SecretString::from(v.to_owned()));
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
        },
        text(header::HeaderName::from_static(X_REQUEST_ID))
            .unwrap_or_default()
            .to_owned(),
    )
}
