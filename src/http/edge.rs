//! The edge of every request, in one layer: a usable request id (the client's when
//! short and plain, else a new UUID) set on the request and echoed on the response, the
//! client address, the request's span, the per-route request metric, and `Accept`
//! applied to a 429.
//!
//! One hand-written service instead of four `from_fn` middlewares and tower-http's
//! `TraceLayer`: each of those clones everything inside it or wraps the response on
//! every request, which the benchmark showed as a tenth of the time of a `me`.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, connect_info::MockConnectInfo},
    http::{HeaderValue, Method, StatusCode, header},
    response::Response,
};
use tower::{Layer, Service};
use tracing::Instrument;

use super::{
    X_REQUEST_ID,
    client_ip::{ClientAddr, TrustedProxies},
    response::negotiate,
};

/// Longest client-supplied request id kept; a longer one is replaced.
const REQUEST_ID_MAX: usize = 128;

/// Applies [`Edge`].
#[derive(Clone)]
pub(crate) struct EdgeLayer {
    trusted: TrustedProxies,
}

impl EdgeLayer {
    pub(crate) fn new(trusted: TrustedProxies) -> Self {
        Self { trusted }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            trusted: self.trusted.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub(crate) struct Edge<S> {
    inner: S,
    trusted: TrustedProxies,
}

/// Keeps a client's `X-Request-Id` only when it is the only one and short and plain
/// (letters, digits, `-`, `_`, `.`, `:`), so it cannot inject fake log lines, bloat
/// every log line, or smuggle markup into the echoed header; otherwise a new UUID.
fn request_id(request: &mut Request) -> HeaderValue {
    let usable = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= REQUEST_ID_MAX
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
    };
    let headers = request.headers_mut();
    let mut ids = headers.get_all(X_REQUEST_ID).iter();
    let id = match (ids.next(), ids.next()) {
        (Some(id), None) if usable(id) => id.clone(),
        _ => HeaderValue::try_from(uuid::Uuid::new_v4().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
    };
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let id = request_id(&mut request);
        let extensions = request.extensions();
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            // What `ConnectInfo` extraction falls back to, so tests see a peer too.
            .or_else(|| extensions.get::<MockConnectInfo<SocketAddr>>().map(|m| m.0.ip()));
        // The route template, never the raw path, which a client can make unique on every
        // request: layers added with `Router::layer` run after routing, so it is known.
        let route = extensions
            .get::<MatchedPath>()
            .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
        let client = self.trusted.client(peer, request.headers());
        request.extensions_mut().insert(ClientAddr(client));
        let method = match *request.method() {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            _ => "other",
        };
        let format = negotiate(request.headers());
        // The request's span: every line logged while serving it carries the request id,
        // the method, the path (never the query string, which carries a GET's document
        // and variables) and the client. `operation.name` and `user.id` are on the
        // `graphql` span inside it.
        let span = tracing::info_span!(
            "request",
            request_id = id.to_str().unwrap_or(""),
            method,
            path = request.uri().path(),
            client.address = tracing::field::Empty,
        );
        if let Some(ip) = client {
            span.record("client.address", tracing::field::display(ip));
        }
        let response = span.in_scope(|| self.inner.call(request));
        let served = async move {
            let mut response = response.await?;
            let status = response.status();
            let headers = response.headers_mut();
            // A 429 from the HTTP limit speaks the format `Accept` asked for, like every
            // other transport failure (Apollo Client reads non-2xx bodies only as
            // graphql-response+json).
            if status == StatusCode::TOO_MANY_REQUESTS
                && let Some(format) = format
            {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(format.content_type()),
                );
            }
            headers.insert(X_REQUEST_ID, id);
            crate::metrics::http_request(method, &route, status.as_u16(), started.elapsed());
            Ok(response)
        };
        Box::pin(served.instrument(span))
    }
}
