//! `TestApp`: the real router on its own database, cloned from a migrated template.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        LazyLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use authgraph::{
    auth::jwt::{KeyAlgorithm, SigningKey},
    config::Config,
    db,
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

/// Server holding the test databases; `TEST_DATABASE_URL` overrides it.
fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn db_url(name: &str) -> String {
    format!("{}/{name}", server_url().trim_end_matches('/'))
}

/// Runs async set-up or tear-down on a runtime of its own, so it works from any test
/// runtime and from `Drop`.
fn block_on_own_runtime<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(fut)
    })
    .join()
    .expect("set-up thread panicked")
}

async fn admin_conn() -> AsyncPgConnection {
    AsyncPgConnection::establish(&db_url("postgres"))
        .await
        .expect("connect to PostgreSQL (is it running?)")
}

/// Databases of this process are named `authgraph_t<pid>_...`; those of dead processes
/// (a killed run) are dropped before the template is made.
static TEMPLATE: LazyLock<String> = LazyLock::new(|| {
    block_on_own_runtime(async {
        let pid = std::process::id();
        let mut conn = admin_conn().await;
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            datname: String,
        }
        let stale: Vec<Name> =
            diesel::sql_query("select datname from pg_database where datname like 'authgraph\\_t%'")
                .load(&mut conn)
                .await
                .unwrap();
        for Name { datname } in stale {
            let owner = datname
                .trim_start_matches("authgraph_t")
                .split('_')
                .next()
                .unwrap_or("");
            if owner
                .parse::<u32>()
                .is_ok_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
            {
                let _ = diesel::sql_query(format!("drop database if exists \"{datname}\" with (force)"))
                    .execute(&mut conn)
                    .await;
            }
        }
        let name = format!("authgraph_t{pid}_template");
        diesel::sql_query(format!("drop database if exists \"{name}\" with (force)"))
            .execute(&mut conn)
            .await
            .unwrap();
        diesel::sql_query(format!("create database \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        db::run_migrations(&db_url(&name))
            .await
            .expect("migrating the template");
        name
    })
});

static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A database of its own for one test, dropped with it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn create() -> Self {
        let template = TEMPLATE.clone();
        let name = format!(
            "authgraph_t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let create = format!("create database \"{name}\" template \"{template}\"");
        block_on_own_runtime(async move {
            let mut conn = admin_conn().await;
            diesel::sql_query(create)
                .execute(&mut conn)
                .await
                .expect("cloning the template");
        });
        let url = db_url(&name);
        Self { name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let drop = format!("drop database if exists \"{}\" with (force)", self.name);
        block_on_own_runtime(async move {
            let mut conn = admin_conn().await;
            let _ = diesel::sql_query(drop).execute(&mut conn).await;
        });
    }
}

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

pub struct TestApp {
    pub state: AppState,
    pub router: Router,
    /// PEM of the signing key, for tests that forge tokens with it.
    pub key_pem: SecretString,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(KeyAlgorithm::Es256, &[]).await
    }

    /// Starts the app with a fresh key of `alg` and extra environment variables.
    pub async fn spawn_with(alg: KeyAlgorithm, vars: &[(&str, &str)]) -> Self {
        authgraph::telemetry::init_for_tests();
        authgraph::metrics::install();
        let db = TestDb::create();
        let mut env: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), db.url.clone()),
            ("DATABASE_POOL_SIZE".into(), "4".into()),
            ("PASSWORD_HASH_CONCURRENCY".into(), "2".into()),
            ("MFA_ENCRYPTION_KEY".into(), TEST_MFA_KEY.into()),
        ]);
        env.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("test config");
        let (key, key_pem) = SigningKey::generate(alg).unwrap();
        let state = AppState::with_keys(config, vec![key]).unwrap();
        let router = authgraph::app(state.clone()).layer(MockConnectInfo(CLIENT));
        Self {
            state,
            router,
            key_pem,
            db,
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

pub const REGISTER: &str = "mutation Register($input: RegisterInput!) {
  register(input: $input) {
    accessToken refreshToken tokenType expiresIn
    user { id email emailVerified displayName role createdAt updatedAt }
  }
}";

pub const LOGIN: &str = "mutation Login($input: LoginInput!) {
  login(input: $input) {
    accessToken refreshToken tokenType expiresIn
    user { id email role }
  }
}";

pub const ME: &str = "query { me { id email displayName role } }";

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
