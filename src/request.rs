//! Per-request facts (credentials, client, request id), built by `http` and read by
//! `graphql`. Lives below both so neither imports the other's internals.

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use crate::auth::{Auth, AuthError, ClientInfo, Viewer};

/// Name of the refresh-token cookie.
pub const REFRESH_COOKIE: &str = "refresh_token";
/// Name of the device cookie: a browser that signed in before (see `auth::throttle`).
pub const DEVICE_COOKIE: &str = "device_token";

/// What one HTTP request brings to the GraphQL layer.
#[derive(Debug, Default)]
pub struct RequestContext {
    /// The raw `Authorization` header.
    pub authorization: Option<SecretString>,
    /// The `refresh_token` cookie.
    pub refresh_cookie: Option<SecretString>,
    /// `X-Token-Delivery: cookie` was sent.
    pub cookie_delivery: bool,
    /// Client address and user agent.
    pub client: ClientInfo,
    /// The request id, echoed in `X-Request-Id`.
    pub request_id: String,
    viewer: OnceCell<Viewer>,
}

impl RequestContext {
    /// A context for one request.
    pub fn new(
        authorization: Option<SecretString>,
        refresh_cookie: Option<SecretString>,
        cookie_delivery: bool,
        client: ClientInfo,
        request_id: String,
    ) -> Self {
        Self {
            authorization,
            refresh_cookie,
            cookie_delivery,
            client,
            request_id,
            viewer: OnceCell::new(),
        }
    }

    /// The authenticated caller, checked once per request however many fields ask.
    pub async fn viewer(&self, auth: &Auth) -> Result<&Viewer, AuthError> {
        self.viewer
            .get_or_try_init(|| async {
                let viewer = auth
                    .authenticate(self.authorization.as_ref().map(|s| s.expose_secret()))
                    .await?;
                // Every later log line of this request names its user.
                tracing::Span::current().record("user.id", tracing::field::display(viewer.user.id));
                Ok(viewer)
            })
            .await
    }
}
