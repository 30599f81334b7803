// Over 400 lines on purpose: all provider calls (OIDC, GitHub) share `guarded`.
//! Provider clients: the authorization URL, the code exchange and who the provider says
//! signed in. OpenID Connect providers are found by issuer (discovery, JWKS) and their ID
//! tokens checked here (`iss`, `aud`, `exp`, `nonce`, the algorithm pinned to the key);
//! GitHub is plain OAuth2 plus its user and verified-emails endpoints.
//!
//! Every call to a provider runs under `OAUTH_HTTP_TIMEOUT` and through the provider's
//! circuit breaker: a provider that does not answer (transport failure, timeout, 5xx,
//! garbage) counts as down and answers `SERVICE_UNAVAILABLE`; one that answers "no"
//! (a bad code, an invalid ID token) is up, and the flow fails with `INVALID_TOKEN`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::anyhow;
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{Jwk, JwkSet},
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse,
    TokenUrl,
    basic::{
        BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
    },
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::super::AuthError;
use crate::{
    config::oauth::{OAuthConfig, ProviderConfig, ProviderKind},
    mail::breaker::{Admission, CircuitBreaker},
};

/// Longest provider response read (discovery, JWKS, tokens, user info).
const MAX_BODY: usize = 256 * 1024;
/// Clock skew allowed on `exp`, `iat` and `nbf` (RFC 8725 asks for at most 60 s).
const LEEWAY_SECONDS: u64 = 60;
/// A JWKS is fetched again for an unknown `kid` (key rotation) at most this often.
const JWKS_REFRESH: Duration = Duration::from_secs(60);
/// Discovery and keys are kept this long before being fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);

/// Who the provider says signed in.
#[derive(Clone)]
pub struct ProviderIdentity {
    /// The provider's stable id of the person (`sub`, GitHub's numeric id).
    pub subject: String,
    /// An email address the provider reports, if any.
    pub email: Option<String>,
    /// Whether the provider asserts the address is verified.
    pub email_verified: bool,
    /// A display name, if the provider has one.
    pub name: Option<String>,
}

impl std::fmt::Debug for ProviderIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderIdentity")
            .field("email_verified", &self.email_verified)
            .finish_non_exhaustive()
    }
}

/// What one authorization needs stored until its callback.
pub struct Authorization {
    /// Where the browser goes.
    pub url: String,
    /// Our PKCE verifier towards the provider.
    pub pkce_verifier: String,
}

/// A provider call's failure, before it becomes an `AuthError`.
enum Failure {
    /// The provider did not answer usefully: counts against its breaker.
    Down(anyhow::Error),
    /// The provider answered, and the answer refuses this flow.
    Refused(&'static str),
}

impl From<reqwest::Error> for Failure {
    fn from(err: reqwest::Error) -> Self {
        // reqwest's errors carry the URL, never a body or header.
        Self::Down(anyhow::Error::new(err.without_url()))
    }
}

/// The OIDC token response: the standard fields plus `id_token`.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct IdTokenFields {
    id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenFields {}

type TokenResp = StandardTokenResponse<IdTokenFields, BasicTokenType>;
type OAuthClient = Client<
    BasicErrorResponse,
    TokenResp,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The parts of an OIDC discovery document we use.
#[derive(Debug, Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    id_token_signing_alg_values_supported: Vec<String>,
}

/// Discovery and keys of an OIDC provider, as last fetched.
struct Metadata {
    document: DiscoveryDocument,
    /// Asymmetric algorithms the provider announces (RS256 when it announces none).
    algorithms: Vec<Algorithm>,
    keys: JwkSet,
    fetched_at: Instant,
    keys_fetched_at: Instant,
}

/// ID token claims we read.
#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    nonce: Option<String>,
    azp: Option<String>,
    #[serde(default)]
    aud: Audience,
    #[serde(flatten)]
    profile: Profile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Audience {
    #[default]
    None,
    One(serde::de::IgnoredAny),
    Many(Vec<String>),
}

/// Email and name claims, from the ID token or from userinfo.
#[derive(Debug, Default, Deserialize)]
struct Profile {
    email: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    email_verified: bool,
    name: Option<String>,
}

/// Userinfo: `sub` must be the ID token's.
#[derive(Debug, Deserialize)]
struct UserInfo {
    sub: String,
    #[serde(flatten)]
    profile: Profile,
}

/// Some providers send `"email_verified": "true"`: read it as the boolean it means.
fn lenient_bool<'de, D: serde::Deserializer<'de>>(de: D) -> Result<bool, D::Error> {
    Ok(match serde_json::Value::deserialize(de)? {
        serde_json::Value::Bool(b) => b,
        serde_json::Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    })
}

/// GitHub's `/user`.
#[derive(Debug, Deserialize)]
struct GithubUser {
    id: u64,
    name: Option<String>,
}

/// One entry of GitHub's `/user/emails`.
#[derive(Debug, Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

/// One configured provider with its breaker and cached metadata.
pub struct Provider {
    config: ProviderConfig,
    breaker: CircuitBreaker,
    metadata: Mutex<Option<Arc<Metadata>>>,
}

impl Provider {
    /// The configured id.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The display name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether this provider's `email_verified` is believed.
    pub fn trusts_email(&self) -> bool {
        self.config.trust_email
    }

    fn is_oidc(&self) -> bool {
        matches!(self.config.kind, ProviderKind::Oidc { .. })
    }
}

/// Every configured provider and the HTTP client they share.
pub struct Providers {
    list: Vec<Provider>,
    http: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(Provider::id))
            .finish()
    }
}

impl Providers {
    /// The providers of `config`. Nothing is fetched yet: discovery happens on first use,
    /// so a provider that is down at start-up does not stop the service.
    pub fn new(config: &OAuthConfig) -> anyhow::Result<Self> {
        crate::auth::breach::install_tls_provider();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            // A provider's redirect is never followed (OAuth 2.0 security BCP: no SSRF
            // through a token endpoint that answers 302).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.http_timeout)
            .user_agent(concat!("authgraph/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let list = config
            .providers
            .iter()
            .map(|p| Provider {
                config: p.clone(),
                breaker: CircuitBreaker::new(config.breaker_failures, config.breaker_open),
                metadata: Mutex::new(None),
            })
            .collect();
        Ok(Self {
            list,
            http,
            timeout: config.http_timeout,
        })
    }

    /// The providers, in configuration order.
    pub fn all(&self) -> &[Provider] {
        &self.list
    }

    /// The provider with this id.
    pub fn get(&self, id: &str) -> Option<&Provider> {
        self.list.iter().find(|p| p.config.id == id)
    }

    /// Runs one provider interaction through its breaker and the timeout.
    async fn guarded<T>(
        &self,
        provider: &Provider,
        call: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, AuthError> {
        let now = Instant::now();
        if let Admission::Wait(_) = provider.breaker.admit(now) {
            info!(provider = provider.id(), "provider breaker open: not called");
            return Err(AuthError::Unavailable);
        }
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::Down(anyhow!("no answer within {:?}", self.timeout))),
        };
        match outcome {
            Ok(value) => {
                if provider.breaker.succeeded() {
                    info!(provider = provider.id(), "provider answers again: breaker closed");
                }
                Ok(value)
            }
            Err(Failure::Refused(why)) => {
                provider.breaker.succeeded();
                info!(
                    provider = provider.id(),
                    reason = why,
                    "provider refused the sign-in"
                );
                Err(AuthError::InvalidToken)
            }
            Err(Failure::Down(err)) => {
                let opened = provider.breaker.failed(Instant::now());
                warn!(provider = provider.id(), error = %err, breaker_opened = opened, "provider unavailable");
                Err(AuthError::Unavailable)
            }
        }
    }

    /// The URL that sends the browser to `provider`, with our PKCE challenge, `state`
    /// and (OIDC) `nonce`.
    pub async fn authorize(
        &self,
        provider: &Provider,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
    ) -> Result<Authorization, AuthError> {
        let (auth_url, token_url) = self.endpoints(provider).await?;
        let client = self.client(provider, &auth_url, &token_url, redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            .set_pkce_challenge(challenge);
        request = if provider.is_oidc() {
            request
                .add_scope(Scope::new("openid".into()))
                .add_scope(Scope::new("email".into()))
                .add_scope(Scope::new("profile".into()))
                .add_extra_param("nonce", nonce)
        } else {
            request
                .add_scope(Scope::new("read:user".into()))
                .add_scope(Scope::new("user:email".into()))
        };
        let (url, _) = request.url();
        Ok(Authorization {
            url: url.to_string(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges `code` and answers who signed in. `nonce` is the one the flow started
    /// with (OIDC only).
    pub async fn identify(
        &self,
        provider: &Provider,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<ProviderIdentity, AuthError> {
        let (auth_url, token_url) = self.endpoints(provider).await?;
        let client = self.client(provider, &auth_url, &token_url, redirect_uri)?;
        let token = self
            .guarded(provider, async {
                // An owned client per request: oauth2 wants a future that borrows nothing.
                let http = |request: HttpRequest| send_oauth(self.http.clone(), request);
                client
                    .exchange_code(AuthorizationCode::new(code.to_owned()))
                    .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
                    .request_async(&http)
                    .await
                    .map_err(|err| match err {
                        RequestTokenError::ServerResponse(_) => Failure::Refused("the code was refused"),
                        RequestTokenError::Request(err) => err,
                        RequestTokenError::Parse(err, _) => {
                            Failure::Down(anyhow!("unreadable token response at {}", err.path()))
                        }
                        RequestTokenError::Other(why) => Failure::Down(anyhow!(why)),
                    })
            })
            .await?;
        match &provider.config.kind {
            ProviderKind::Oidc { issuer } => self.oidc_identity(provider, issuer, &token, nonce).await,
            ProviderKind::Github { api_url, .. } => self.github_identity(provider, api_url, &token).await,
        }
    }

    fn client(
        &self,
        provider: &Provider,
        auth_url: &str,
        token_url: &str,
        redirect_uri: &str,
    ) -> Result<OAuthClient, AuthError> {
        let bad = |what: &str| AuthError::Internal(anyhow!("provider {}: bad {what}", provider.id()));
        let mut client: OAuthClient = Client::new(ClientId::new(provider.config.client_id.clone()))
            .set_auth_uri(AuthUrl::new(auth_url.to_owned()).map_err(|_| bad("authorization endpoint"))?)
            .set_token_uri(TokenUrl::new(token_url.to_owned()).map_err(|_| bad("token endpoint"))?)
            .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| bad("redirect URI"))?);
        if let Some(secret) = &provider.config.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
        }
        if !provider.is_oidc() {
            // GitHub documents the client credentials in the form body.
            client = client.set_auth_type(AuthType::RequestBody);
        }
        Ok(client)
    }

    /// The authorization and token endpoints: configured (GitHub) or discovered (OIDC).
    async fn endpoints(&self, provider: &Provider) -> Result<(String, String), AuthError> {
        match &provider.config.kind {
            ProviderKind::Github {
                auth_url, token_url, ..
            } => Ok((auth_url.clone(), token_url.clone())),
            ProviderKind::Oidc { issuer } => {
                let metadata = self.metadata(provider, issuer, false).await?;
                Ok((
                    metadata.document.authorization_endpoint.clone(),
                    metadata.document.token_endpoint.clone(),
                ))
            }
        }
    }

    /// Discovery and keys, fetched once an hour, or again when `refresh_keys` asks and
    /// the keys are older than a minute (an ID token signed with a new key).
    async fn metadata(
        &self,
        provider: &Provider,
        issuer: &str,
        refresh_keys: bool,
    ) -> Result<Arc<Metadata>, AuthError> {
        let mut cached = provider.metadata.lock().await;
        if let Some(current) = cached.as_ref() {
            let fresh = current.fetched_at.elapsed() < METADATA_TTL;
            let keys_fresh = !refresh_keys || current.keys_fetched_at.elapsed() < JWKS_REFRESH;
            if fresh && keys_fresh {
                return Ok(current.clone());
            }
        }
        let fetched = self
            .guarded(provider, async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let document: DiscoveryDocument = self.get_json(&url, None).await?;
                // OIDC Discovery 4.3: the document's issuer must be the one configured.
                if document.issuer != issuer {
                    return Err(Failure::Down(anyhow!("discovery names another issuer")));
                }
                let keys: JwkSet = self.get_json(&document.jwks_uri, None).await?;
                Ok((document, keys))
            })
            .await?;
        let (document, keys) = fetched;
        let mut algorithms: Vec<Algorithm> = document
            .id_token_signing_alg_values_supported
            .iter()
            .filter_map(|a| asymmetric(a))
            .collect();
        if algorithms.is_empty() {
            algorithms.push(Algorithm::RS256);
        }
        let now = Instant::now();
        let metadata = Arc::new(Metadata {
            document,
            algorithms,
            keys,
            fetched_at: now,
            keys_fetched_at: now,
        });
        *cached = Some(metadata.clone());
        Ok(metadata)
    }

    async fn oidc_identity(
        &self,
        provider: &Provider,
        issuer: &str,
        token: &TokenResp,
        nonce: &str,
    ) -> Result<ProviderIdentity, AuthError> {
        let id_token = token
            .extra_fields()
            .id_token
            .as_deref()
            .ok_or_else(|| refused(provider, "no ID token in the token response"))?;
        let header =
            jsonwebtoken::decode_header(id_token).map_err(|_| refused(provider, "ID token unreadable"))?;
        let mut metadata = self.metadata(provider, issuer, false).await?;
        let mut jwk = find_key(&metadata.keys, header.kid.as_deref());
        if jwk.is_none() {
            metadata = self.metadata(provider, issuer, true).await?;
            jwk = find_key(&metadata.keys, header.kid.as_deref());
        }
        let jwk = jwk.ok_or_else(|| refused(provider, "ID token signed with an unknown key"))?;
        let claims = verify_id_token(
            id_token,
            &header,
            jwk,
            &metadata.algorithms,
            issuer,
            &provider.config.client_id,
        )
        .map_err(|why| refused(provider, why))?;
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(refused(provider, "ID token nonce does not match the flow"));
        }
        let mut profile = claims.profile;
        // Many providers (oidc-provider's defaults among them) put email claims only in
        // userinfo: ask it when the ID token has none.
        if profile.email.is_none()
            && let Some(endpoint) = metadata.document.userinfo_endpoint.clone()
        {
            let access = token.access_token().secret().clone();
            let info: UserInfo = self
                .guarded(provider, async { self.get_json(&endpoint, Some(&access)).await })
                .await?;
            // OIDC Core 5.3.2: a userinfo answer about someone else is not used.
            if info.sub != claims.sub {
                return Err(refused(provider, "userinfo is about another subject"));
            }
            profile = info.profile;
        }
        Ok(ProviderIdentity {
            subject: claims.sub,
            email: profile.email,
            email_verified: profile.email_verified,
            name: profile.name,
        })
    }

    async fn github_identity(
        &self,
        provider: &Provider,
        api_url: &str,
        token: &TokenResp,
    ) -> Result<ProviderIdentity, AuthError> {
        let access = token.access_token().secret().clone();
        let (user, emails) = self
            .guarded(provider, async {
                let user: GithubUser = self.get_json(&format!("{api_url}/user"), Some(&access)).await?;
                let emails: Vec<GithubEmail> = self
                    .get_json(&format!("{api_url}/user/emails"), Some(&access))
                    .await?;
                Ok((user, emails))
            })
            .await?;
        // The primary address if GitHub verified it, else any verified one.
        let chosen = emails
            .iter()
            .find(|e| e.primary && e.verified)
            .or_else(|| emails.iter().find(|e| e.verified));
        Ok(ProviderIdentity {
            subject: user.id.to_string(),
            email: chosen.map(|e| e.email.clone()),
            email_verified: chosen.is_some(),
            name: user.name,
        })
    }

    /// GET a JSON document (with a bearer token for userinfo and GitHub's API).
    async fn get_json<T: DeserializeOwned>(&self, url: &str, bearer: Option<&str>) -> Result<T, Failure> {
        let mut request = self.http.get(url).header("accept", "application/json");
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = read_limited(response).await?;
        if status.is_client_error() {
            // 401/403 on userinfo or GitHub's API: the access token was refused.
            return Err(Failure::Refused("the provider refused the access token"));
        }
        if !status.is_success() {
            return Err(Failure::Down(anyhow!("HTTP {status}")));
        }
        serde_json::from_slice(&body).map_err(|e| Failure::Down(anyhow!("unreadable JSON: {e}")))
    }
}

/// The HTTP client oauth2 sends the token request through. GitHub answers a bad code
/// with 200 and `{"error": ...}`: that is turned into the 400 it means.
async fn send_oauth(http: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, Failure> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut status = response.status();
    let headers = response.headers().clone();
    let body = read_limited(response).await?;
    if status.is_server_error() {
        return Err(Failure::Down(anyhow!("token endpoint HTTP {status}")));
    }
    if status.is_success()
        && serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.get("error").is_some())
    {
        status = reqwest::StatusCode::BAD_REQUEST;
    }
    let mut out = HttpResponse::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Down(err) => write!(f, "provider down: {err}"),
            Self::Refused(why) => write!(f, "provider refused: {why}"),
        }
    }
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Failure {}

fn refused(provider: &Provider, why: &'static str) -> AuthError {
    info!(provider = provider.id(), reason = why, "provider sign-in refused");
    AuthError::InvalidToken
}

async fn read_limited(response: reqwest::Response) -> Result<Vec<u8>, Failure> {
    if response.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(Failure::Down(anyhow!("response too large")));
    }
    let bytes = response.bytes().await?;
    if bytes.len() > MAX_BODY {
        return Err(Failure::Down(anyhow!("response too large")));
    }
    Ok(bytes.to_vec())
}

/// The asymmetric algorithms we accept from a provider: never `none` or an HMAC (whose
/// key would be the client secret, or worse, a public key).
fn asymmetric(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "RS512" => Some(Algorithm::RS512),
        "PS256" => Some(Algorithm::PS256),
        "PS384" => Some(Algorithm::PS384),
        "PS512" => Some(Algorithm::PS512),
        "ES256" => Some(Algorithm::ES256),
        "ES384" => Some(Algorithm::ES384),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// The signing key with this `kid` (or the only signing key, when the token names none).
fn find_key<'a>(keys: &'a JwkSet, kid: Option<&str>) -> Option<&'a Jwk> {
    let signing = keys.keys.iter().filter(|k| {
        !matches!(
            k.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        )
    });
    match kid {
        Some(kid) => signing.clone().find(|k| k.common.key_id.as_deref() == Some(kid)),
        None => {
            let mut all = signing;
            let first = all.next();
            if all.next().is_some() { None } else { first }
        }
    }
}

/// Verifies an ID token's signature and its `iss`, `aud`, `exp` (and `azp` when there
/// are several audiences). The algorithm is the header's only if the provider announces
/// it and the key is of its family (and, when the JWK names one, is exactly it).
fn verify_id_token(
    id_token: &str,
    header: &jsonwebtoken::Header,
    jwk: &Jwk,
    allowed: &[Algorithm],
    issuer: &str,
    client_id: &str,
) -> Result<IdClaims, &'static str> {
    let alg = header.alg;
    if !allowed.contains(&alg) {
        return Err("ID token algorithm not allowed");
    }
    if let Some(key_alg) = jwk.common.key_algorithm
        && key_alg.to_string() != format!("{alg:?}")
    {
        return Err("ID token algorithm differs from its key's");
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "unusable provider key")?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY_SECONDS;
    let data = jsonwebtoken::decode::<IdClaims>(id_token, &key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => "ID token expired",
            ErrorKind::InvalidAudience => "ID token for another client",
            ErrorKind::InvalidIssuer => "ID token from another issuer",
            ErrorKind::InvalidSignature => "ID token signature invalid",
            _ => "ID token invalid",
        }
    })?;
    let claims = data.claims;
    if let Audience::Many(list) = &claims.aud
        && list.len() > 1
        && claims.azp.as_deref() != Some(client_id)
    {
        return Err("ID token authorized for another party");
    }
    Ok(claims)
}
