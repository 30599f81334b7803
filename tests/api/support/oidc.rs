//! A small in-process identity provider for social sign-in tests: OpenID Connect
//! (discovery, JWKS, authorization, token, userinfo; ID tokens signed with an ES256 test
//! key) and GitHub's OAuth2 endpoints, on 127.0.0.1 port 0. Tests choose who signs in
//! next and how the provider misbehaves.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use aws_lc_rs::{
    rand::SecureRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "authgraph-test";
pub const CLIENT_SECRET: &str = "test-client-secret-0123456789";
pub const REDIRECT_URI: &str = "https://app.example/auth/callback";

/// Who signs in at the provider next.
#[derive(Clone, Debug)]
pub struct Person {
    pub sub: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

impl Person {
    pub fn new(email: &str, verified: bool) -> Self {
        Self {
            sub: uuid::Uuid::new_v4().simple().to_string(),
            email: Some(email.to_owned()),
            email_verified: verified,
            name: Some("Ada Lovelace".into()),
        }
    }
}

/// How the next ID token is bent.
#[derive(Clone, Debug, Default)]
pub struct Tweaks {
    pub wrong_nonce: bool,
    pub wrong_aud: bool,
    pub expired: bool,
    /// Email claims only from userinfo (oidc-provider's default), not in the ID token.
    pub email_only_in_userinfo: bool,
    /// Signed with HS256 keyed by the client secret instead of the announced ES256 key.
    pub hmac_signed: bool,
}

struct Grant {
    person: Person,
    nonce: Option<String>,
    challenge: String,
    redirect_uri: String,
}

struct Inner {
    addr: SocketAddr,
    key_der: Vec<u8>,
    jwk: Value,
    next: Mutex<Option<Person>>,
    tweaks: Mutex<Tweaks>,
    grants: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, Person>>,
    /// Answer 503 everywhere.
    down: AtomicBool,
    /// Requests received (any endpoint).
    pub hits: AtomicUsize,
}

/// The running provider.
#[derive(Clone)]
pub struct FakeProvider(Arc<Inner>);

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).unwrap();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ))
}

impl FakeProvider {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let key_der = pair.to_pkcs8v1().unwrap().as_ref().to_vec();
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "test-key-1",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        let provider = Self(Arc::new(Inner {
            addr,
            key_der,
            jwk,
            next: Mutex::new(None),
            tweaks: Mutex::new(Tweaks::default()),
            grants: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            down: AtomicBool::new(false),
            hits: AtomicUsize::new(0),
        }));
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(github_token))
            .route("/api/user", get(github_user))
            .route("/api/user/emails", get(github_emails))
            .layer(axum::middleware::from_fn_with_state(
                provider.clone(),
                count_and_fail,
            ))
            .with_state(provider.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        provider
    }

    pub fn issuer(&self) -> String {
        format!("http://{}", self.0.addr)
    }

    /// The app's environment for an OIDC provider `acme` (trusting emails or not) and a
    /// GitHub provider `github`, both on this server.
    pub fn env(&self, trust_email: bool) -> Vec<(String, String)> {
        let base = self.issuer();
        [
            ("OAUTH_PROVIDERS", "acme,github".to_owned()),
            ("OAUTH_ACME_NAME", "Acme ID".to_owned()),
            ("OAUTH_ACME_ISSUER", base.clone()),
            ("OAUTH_ACME_CLIENT_ID", CLIENT_ID.to_owned()),
            ("OAUTH_ACME_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("OAUTH_ACME_TRUST_EMAIL", trust_email.to_string()),
            ("OAUTH_GITHUB_KIND", "github".to_owned()),
            ("OAUTH_GITHUB_NAME", "GitHub".to_owned()),
            ("OAUTH_GITHUB_CLIENT_ID", CLIENT_ID.to_owned()),
            ("OAUTH_GITHUB_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("OAUTH_GITHUB_TRUST_EMAIL", "true".to_owned()),
            ("OAUTH_GITHUB_AUTH_URL", format!("{base}/login/oauth/authorize")),
            (
                "OAUTH_GITHUB_TOKEN_URL",
                format!("{base}/login/oauth/access_token"),
            ),
            ("OAUTH_GITHUB_API_URL", format!("{base}/api")),
            (
                "OAUTH_REDIRECT_URIS",
                format!("{REDIRECT_URI},https://other.example/cb"),
            ),
            ("OAUTH_HTTP_TIMEOUT", "2s".to_owned()),
            ("OAUTH_BREAKER_FAILURES", "2".to_owned()),
            ("OAUTH_BREAKER_OPEN", "60s".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    pub fn sign_in_next(&self, person: &Person) {
        *self.0.next.lock().unwrap() = Some(person.clone());
    }

    pub fn tweak(&self, tweaks: Tweaks) {
        *self.0.tweaks.lock().unwrap() = tweaks;
    }

    pub fn set_down(&self, down: bool) {
        self.0.down.store(down, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.0.hits.load(Ordering::SeqCst)
    }

    fn id_token(&self, grant: &Grant) -> String {
        let tweaks = self.0.tweaks.lock().unwrap().clone();
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": self.issuer(),
            "sub": grant.person.sub,
            "aud": if tweaks.wrong_aud { "someone-else" } else { CLIENT_ID },
            "iat": now,
            "exp": if tweaks.expired { now - 3600 } else { now + 300 },
            "nonce": if tweaks.wrong_nonce { Some("not-the-nonce".to_owned()) } else { grant.nonce.clone() },
        });
        if !tweaks.email_only_in_userinfo {
            claims["email"] = json!(grant.person.email);
            claims["email_verified"] = json!(grant.person.email_verified);
            claims["name"] = json!(grant.person.name);
        }
        if tweaks.hmac_signed {
            return jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(CLIENT_SECRET.as_bytes()).unwrap(),
            )
            .unwrap();
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("test-key-1".into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&self.0.key_der)).unwrap()
    }

    /// Plays the browser at the provider: opens the authorization URL, the person set
    /// with `sign_in_next` signs in, and the redirect's `code` and `state` come back.
    pub async fn follow(&self, authorization_url: &str) -> (String, String) {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = client.get(authorization_url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{authorization_url}");
        let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        let param = |name: &str| {
            location
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap()
        };
        (param("code"), param("state"))
    }
}

async fn count_and_fail(
    State(provider): State<FakeProvider>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    provider.0.hits.fetch_add(1, Ordering::SeqCst);
    if provider.0.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    next.run(request).await
}

async fn discovery(State(p): State<FakeProvider>) -> Json<Value> {
    let base = p.issuer();
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks(State(p): State<FakeProvider>) -> Json<Value> {
    Json(json!({ "keys": [p.0.jwk] }))
}

#[derive(Deserialize)]
struct AuthorizeParams {
    client_id: String,
    redirect_uri: String,
    state: String,
    nonce: Option<String>,
    code_challenge: String,
    code_challenge_method: String,
    response_type: String,
}

async fn authorize(State(p): State<FakeProvider>, Query(q): Query<AuthorizeParams>) -> Response {
    assert_eq!(q.client_id, CLIENT_ID);
    assert_eq!(q.response_type, "code");
    assert_eq!(q.code_challenge_method, "S256", "PKCE S256 towards the provider");
    let person = p.0.next.lock().unwrap().clone().expect("sign_in_next first");
    let code = random_token();
    let location = format!(
        "{}?code={code}&state={}",
        q.redirect_uri,
        url::form_urlencoded::byte_serialize(q.state.as_bytes()).collect::<String>()
    );
    p.0.grants.lock().unwrap().insert(
        code,
        Grant {
            person,
            nonce: q.nonce,
            challenge: q.code_challenge,
            redirect_uri: q.redirect_uri,
        },
    );
    Redirect::to(&location).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Client authentication: HTTP Basic (OIDC's default) or the form body (GitHub's).
fn client_authenticated(headers: &HeaderMap, form: &TokenForm) -> bool {
    if let Some(basic) = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD.decode(basic).unwrap();
        return decoded == format!("{CLIENT_ID}:{CLIENT_SECRET}").into_bytes();
    }
    form.client_id.as_deref() == Some(CLIENT_ID) && form.client_secret.as_deref() == Some(CLIENT_SECRET)
}

fn take_grant(p: &FakeProvider, headers: &HeaderMap, form: &TokenForm) -> Option<Grant> {
    if form.grant_type != "authorization_code" || !client_authenticated(headers, form) {
        return None;
    }
    let grant = p.0.grants.lock().unwrap().remove(&form.code)?;
    let verifier_ok = form.code_verifier.as_deref().map(s256).as_deref() == Some(grant.challenge.as_str());
    let redirect_ok = form.redirect_uri.as_deref() == Some(grant.redirect_uri.as_str());
    (verifier_ok && redirect_ok).then_some(grant)
}

async fn token(State(p): State<FakeProvider>, headers: HeaderMap, Form(form): Form<TokenForm>) -> Response {
    let Some(grant) = take_grant(&p, &headers, &form) else {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": "invalid_grant" }))).into_response();
    };
    let access = random_token();
    p.0.tokens
        .lock()
        .unwrap()
        .insert(access.clone(), grant.person.clone());
    Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": p.id_token(&grant),
    }))
    .into_response()
}

fn bearer_person(p: &FakeProvider, headers: &HeaderMap) -> Option<Person> {
    let token = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    p.0.tokens.lock().unwrap().get(token).cloned()
}

async fn userinfo(State(p): State<FakeProvider>, headers: HeaderMap) -> Response {
    let Some(person) = bearer_person(&p, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    Json(json!({
        "sub": person.sub,
        "email": person.email,
        "email_verified": person.email_verified,
        "name": person.name,
    }))
    .into_response()
}

/// GitHub answers a bad code with 200 and an error object.
async fn github_token(
    State(p): State<FakeProvider>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let Some(grant) = take_grant(&p, &headers, &form) else {
        return Json(json!({ "error": "bad_verification_code" })).into_response();
    };
    let access = random_token();
    p.0.tokens.lock().unwrap().insert(access.clone(), grant.person);
    Json(json!({ "access_token": access, "token_type": "bearer", "scope": "read:user,user:email" }))
        .into_response()
}

async fn github_user(State(p): State<FakeProvider>, headers: HeaderMap) -> Response {
    let Some(person) = bearer_person(&p, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    // GitHub's ids are numbers: derive one from the test subject.
    let id = person
        .sub
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        >> 12;
    Json(json!({ "id": id, "login": "ada", "name": person.name, "email": null })).into_response()
}

async fn github_emails(State(p): State<FakeProvider>, headers: HeaderMap) -> Response {
    let Some(person) = bearer_person(&p, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let emails: Vec<Value> = person
        .email
        .iter()
        .map(|e| json!({ "email": e, "primary": true, "verified": person.email_verified, "visibility": "private" }))
        .chain(std::iter::once(
            json!({ "email": "ada@users.noreply.github.com", "primary": false, "verified": true, "visibility": null }),
        ))
        .collect();
    Json(Value::Array(emails)).into_response()
}
