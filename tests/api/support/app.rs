//! `TestApp`: the real router on its own database, started through `TestAppBuilder`; the
//! request helpers and small assertions every test file uses.

use std::{collections::HashMap, net::SocketAddr};

use authgraph::{
    auth::jwt::{KeyAlgorithm, SigningKey},
    config::Config,
    state::AppState,
};
use axum::{
    Router,
    body::Body,
    extract::connect_info::MockConnectInfo,
    http::{HeaderMap, Request, StatusCode},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use http_body_util::BodyExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{
    db::TestDb,
    ops::{LOGIN, REGISTER},
};

/// The client address every in-process request comes from.
pub const CLIENT: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7)),
    40000,
);

/// A response as tests look at it.
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

/// Sends `request` through `router` and reads the whole response.
pub async fn send(router: &Router, request: Request<Body>) -> TestResponse {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    TestResponse {
        status,
        headers,
        body,
        text,
    }
}

/// The real router over its own database; `TestApp::spawn()`, or `TestApp::builder()` to
/// set environment variables or the key first.
pub struct TestApp {
    pub state: AppState,
    pub router: Router,
    /// PEM of the signing key, for tests that forge tokens with it.
    pub key_pem: SecretString,
    pub db: TestDb,
}

/// How a [`TestApp`] starts: the configuration it reads from environment variables (the
/// documented names, on top of the test defaults) and its signing key's algorithm.
/// `TestApp::builder().env("STEP_UP_MAX_AGE", "1s").spawn().await`.
#[derive(Clone)]
#[must_use = "the app starts only with `.spawn()`"]
pub struct TestAppBuilder {
    alg: KeyAlgorithm,
    env: Vec<(String, String)>,
}

impl TestAppBuilder {
    /// Sets an environment variable the configuration is read from (a later one wins).
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    /// Sets each of `vars`, as [`Self::env`] does.
    pub fn envs<K: AsRef<str>, V: Into<String>>(self, vars: impl IntoIterator<Item = (K, V)>) -> Self {
        vars.into_iter()
            .fold(self, |builder, (name, value)| builder.env(name.as_ref(), value))
    }

    /// Signs tokens with a fresh key of `alg` (ES256 unless set).
    pub fn key(mut self, alg: KeyAlgorithm) -> Self {
        self.alg = alg;
        self
    }

    /// Starts the app on a fresh database cloned from the migrated template.
    pub async fn spawn(&self) -> TestApp {
        authgraph::telemetry::init_for_tests();
        authgraph::metrics::install();
        let db = TestDb::create();
        let mut env: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), db.url.clone()),
            ("DATABASE_POOL_SIZE".into(), "4".into()),
            ("PASSWORD_HASH_CONCURRENCY".into(), "2".into()),
            ("MFA_ENCRYPTION_KEY".into(), TEST_MFA_KEY.into()),
        ]);
        env.extend(self.env.iter().cloned());
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("test config");
        let (key, key_pem) = SigningKey::generate(self.alg).unwrap();
        let state = AppState::with_keys(config, vec![key]).unwrap();
        let router = authgraph::app(state.clone()).layer(MockConnectInfo(CLIENT));
        TestApp {
            state,
            router,
            key_pem,
            db,
        }
    }
}

impl TestApp {
    /// Starts the app with the test defaults.
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    /// Starts describing an app; `.spawn()` starts it.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            alg: KeyAlgorithm::Es256,
            env: Vec::new(),
        }
    }

    /// Sends a raw request through the real router.
    pub async fn request(&self, request: Request<Body>) -> TestResponse {
        send(&self.router, request).await
    }

    /// POSTs a GraphQL operation with extra headers.
    pub async fn post(&self, query: &str, variables: Value, headers: &[(&str, &str)]) -> TestResponse {
        let mut builder = Request::post("/graphql").header("content-type", "application/json");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let body = json!({ "query": query, "variables": variables }).to_string();
        self.request(builder.body(Body::from(body)).unwrap()).await
    }

    /// POSTs a GraphQL operation and returns the JSON body.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.post(query, variables, &[]).await.body
    }

    /// POSTs a GraphQL operation with `Authorization: Bearer <token>`.
    pub async fn graphql_as(&self, token: &str, query: &str, variables: Value) -> Value {
        self.post(query, variables, &[("authorization", &format!("Bearer {token}"))])
            .await
            .body
    }

    /// Registers a user and returns the `AuthPayload`.
    pub async fn register(&self, email: &str, password: &str) -> Value {
        let body = self
            .graphql(
                REGISTER,
                json!({ "input": { "email": email, "password": password } }),
            )
            .await;
        assert!(body["errors"].is_null(), "register failed: {body}");
        body["data"]["register"].clone()
    }

    /// Logs in and returns the `AuthPayload` or the response with errors.
    pub async fn login(&self, email: &str, password: &str) -> Value {
        self.graphql(
            LOGIN,
            json!({ "input": { "email": email, "password": password } }),
        )
        .await
    }

    /// Runs SQL against this test's database.
    pub async fn sql(&self, statement: &str) {
        let mut conn = AsyncPgConnection::establish(&self.db.url).await.unwrap();
        diesel::sql_query(statement).execute(&mut conn).await.unwrap();
    }

    /// Serves the app on a real TCP listener; returns its address.
    pub async fn serve_tcp(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = authgraph::app(self.state.clone());
        // The production server (timeouts, connection cap), as `authgraph serve` runs it.
        let limits = self.state.config.http.server;
        tokio::spawn(async move {
            authgraph::http::server::serve(listener, app, limits, std::future::pending())
                .await
                .unwrap();
        });
        addr
    }

    pub fn key_pem(&self) -> &str {
        self.key_pem.expose_secret()
    }
}

/// The `extensions.code` of the first error.
pub fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

/// Claims of a JWT, read without verification (for assertions only).
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// A unique email for one test.
pub fn email(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid::Uuid::new_v4().simple())
}

pub const PASSWORD: &str = "correct horse battery staple";

/// `MFA_ENCRYPTION_KEY` of every test app and process (production mode requires one).
pub const TEST_MFA_KEY: &str = "dGVzdC1vbmx5LW1mYS1lbmNyeXB0aW9uLWtleS0zMmI=";
