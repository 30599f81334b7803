//! Webhooks end to end: real receivers on TCP sockets verify every signature twice (an
//! HMAC computed here, and the `standardwebhooks` crate's own), and record what they
//! accepted by `webhook-id`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use authgraph::{
    auth::jwt::KeyAlgorithm,
    config::WebhookConfig,
    mail::breaker::BreakerState,
    webhooks::{Worker, WorkerHandle},
};
use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use base64::Engine;
use serde_json::{Value, json};

use crate::{
    helpers::{PASSWORD, TestApp, email},
    support_mail::{count, eventually},
};

/// A Standard Webhooks secret for tests (24 random bytes).
pub const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

const DISABLE: &str = "mutation($id: ID!) { disableUser(id: $id, reason: \"abuse\") { id disabled } }";
const DELETE: &str = "mutation($p: String) { deleteAccount(password: $p) }";

/// How a receiver answers.
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum Mode {
    Ok = 0,
    Unavailable = 1,
    /// Answers 200 after 10 s (past the worker's timeout).
    Slow = 2,
}

/// One delivery a receiver accepted.
#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    pub body: Value,
    pub raw: String,
}

#[derive(Default)]
struct Inner {
    mode: AtomicU8,
    hits: AtomicUsize,
    accepted: Mutex<Vec<Received>>,
    bad_signatures: AtomicUsize,
}

/// An HTTP server on 127.0.0.1 receiving webhooks.
pub struct Receiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Receiver {
    pub async fn start() -> Self {
        let inner = Arc::<Inner>::default();
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        self.inner.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Requests that reached it, answered or not.
    pub fn hits(&self) -> usize {
        self.inner.hits.load(Ordering::SeqCst)
    }

    /// Deliveries it answered 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Received> {
        self.inner.accepted.lock().unwrap().clone()
    }

    /// Accepted deliveries per event type.
    pub fn types(&self) -> HashMap<String, usize> {
        let mut types = HashMap::new();
        for r in self.accepted() {
            *types
                .entry(r.body["type"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        types
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        assert_eq!(
            self.inner.bad_signatures.load(Ordering::SeqCst),
            0,
            "a delivery failed signature verification"
        );
    }
}

/// The HMAC of the spec, computed here from the secret string alone.
fn expected_signature(id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = aws_lc_rs::hmac::sign(&key, &signed);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    inner.hits.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let ours = signature == expected_signature(&id, &timestamp, &body);
    let theirs = standardwebhooks::Webhook::new(SECRET)
        .unwrap()
        .verify(&body, &headers)
        .is_ok();
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 60);
    if !(ours && theirs && fresh && id.starts_with("msg_")) {
        inner.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::BAD_REQUEST;
    }
    match inner.mode.load(Ordering::SeqCst) {
        0 => {}
        1 => return StatusCode::SERVICE_UNAVAILABLE,
        _ => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            return StatusCode::OK;
        }
    }
    let raw = String::from_utf8(body.to_vec()).unwrap();
    inner.accepted.lock().unwrap().push(Received {
        id,
        body: serde_json::from_str(&raw).unwrap(),
        raw,
    });
    StatusCode::NO_CONTENT
}

/// An app sending to `endpoints`, with extra variables.
pub async fn app_sending_to(endpoints: &[String], vars: &[(&str, &str)]) -> TestApp {
    let endpoints = endpoints.join(",");
    let mut all = vec![
        ("WEBHOOK_ENDPOINTS", endpoints.as_str()),
        ("WEBHOOK_SECRET", SECRET),
    ];
    all.extend_from_slice(vars);
    TestApp::spawn_with(KeyAlgorithm::Es256, &all).await
}

/// Starts a worker with test-fast retries and breakers.
pub fn start_worker(app: &TestApp) -> WorkerHandle {
    let mut config: WebhookConfig = app.state.config.webhooks.clone().unwrap();
    config.poll_interval = Duration::from_millis(50);
    config.retry_base = Duration::from_millis(50);
    config.retry_max = Duration::from_millis(300);
    config.breaker_failures = 3;
    config.breaker_open = Duration::from_millis(300);
    config.max_attempts = 1000;
    Worker::new(app.state.db.clone(), &config).spawn().unwrap()
}

async fn register(app: &TestApp, tag: &str) -> (String, String) {
    let payload = app.register(&email(tag), PASSWORD).await;
    (
        payload["user"]["id"].as_str().unwrap().to_owned(),
        payload["accessToken"].as_str().unwrap().to_owned(),
    )
}

fn ids(received: &[Received]) -> Vec<String> {
    let mut ids: Vec<String> = received.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn register_login_disable_and_delete_send_signed_events_exactly_once() {
    let receiver = Receiver::start().await;
    let app = app_sending_to(&[receiver.url()], &[]).await;
    let worker = start_worker(&app);

    let address = email("hooked");
    let registered = app.register(&address, PASSWORD).await;
    let user = registered["user"]["id"].as_str().unwrap().to_owned();
    let login = app.login(&address, PASSWORD).await;
    let access = login["data"]["login"]["accessToken"].as_str().unwrap().to_owned();
    let (admin, admin_access) = register(&app, "admin").await;
    app.sql(&format!("update users set role = 'ADMIN' where id = '{admin}'"))
        .await;
    let disabled = app
        .graphql_as(&admin_access, DISABLE, json!({ "id": user }))
        .await;
    assert_eq!(disabled["data"]["disableUser"]["disabled"], true, "{disabled}");
    let (victim, victim_access) = register(&app, "leaving").await;
    let deleted = app
        .graphql_as(&victim_access, DELETE, json!({ "p": PASSWORD }))
        .await;
    assert_eq!(deleted["data"]["deleteAccount"], true, "{deleted}");

    let audited = count(&app, "select count(*) as n from audit_events").await;
    eventually("every audit event delivered", || async {
        receiver.accepted().len() as i64 == audited
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.shutdown(Duration::from_secs(5)).await;

    let accepted = receiver.accepted();
    assert_eq!(accepted.len() as i64, audited, "once each, nothing more");
    let types = receiver.types();
    assert_eq!(types["user.created"], 3, "{types:?}");
    assert_eq!(types["login.succeeded"], 1, "{types:?}");
    assert_eq!(types["user.disabled"], 1, "{types:?}");
    assert_eq!(types["user.deleted"], 1, "{types:?}");
    let mut unique = ids(&accepted);
    unique.dedup();
    assert_eq!(unique.len(), accepted.len(), "every event has its own id");

    // Ids are the audit events' ids, and the bodies have the standard shape.
    let of = |kind: &str| accepted.iter().find(|r| r.body["type"] == kind).unwrap().clone();
    let created = of("user.created");
    assert_eq!(created.body["data"]["userId"], user.as_str());
    assert_eq!(created.body["data"]["email"], address.as_str());
    assert!(chrono::DateTime::parse_from_rfc3339(created.body["timestamp"].as_str().unwrap()).is_ok());
    let audit_id = created.id.strip_prefix("msg_").unwrap();
    assert_eq!(
        count(
            &app,
            &format!("select count(*) as n from audit_events where replace(id::text, '-', '') = '{audit_id}' and type = 'user.created'")
        )
        .await,
        1
    );
    let disabled = of("user.disabled");
    assert_eq!(
        disabled.body["data"]["actorId"],
        admin.as_str(),
        "the acting admin"
    );
    assert_eq!(disabled.body["data"]["userId"], user.as_str());
    let gone = of("user.deleted");
    assert_eq!(
        gone.body["data"]["userId"],
        victim.as_str(),
        "it outlived its account"
    );
    assert!(
        gone.body["data"]["email"]
            .as_str()
            .is_some_and(|e| e.starts_with("leaving-"))
    );

    // No password or token in any body.
    let tokens = [
        access.as_str(),
        admin_access.as_str(),
        victim_access.as_str(),
        registered["refreshToken"].as_str().unwrap(),
        login["data"]["login"]["refreshToken"].as_str().unwrap(),
    ];
    for r in &accepted {
        assert!(!r.raw.contains(PASSWORD), "{}", r.raw);
        for token in tokens {
            assert!(!r.raw.contains(token), "{}", r.raw);
        }
    }
    assert_eq!(
        count(
            &app,
            "select count(*) as n from webhook_deliveries where status <> 'delivered'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn only_the_events_of_webhook_events_are_queued() {
    let receiver = Receiver::start().await;
    let app = app_sending_to(&[receiver.url()], &[("WEBHOOK_EVENTS", "user.created")]).await;
    let worker = start_worker(&app);
    let address = email("filtered");
    app.register(&address, PASSWORD).await;
    assert!(app.login(&address, PASSWORD).await["errors"].is_null());
    app.login(&address, "wrong password entirely").await;

    eventually("user.created delivered", || async {
        receiver.accepted().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(receiver.types(), HashMap::from([("user.created".to_owned(), 1)]));
    assert_eq!(
        count(&app, "select count(*) as n from webhook_deliveries").await,
        1,
        "nothing else was even queued"
    );
    assert!(count(&app, "select count(*) as n from audit_events").await >= 3);
}

#[tokio::test]
async fn an_outage_loses_and_duplicates_nothing_across_two_replicas() {
    let receiver = Receiver::start().await;
    receiver.set(Mode::Unavailable);
    let app = app_sending_to(&[receiver.url()], &[]).await;
    // Two workers on one database, as two replicas would run.
    let (a, b) = (start_worker(&app), start_worker(&app));
    for i in 0..5 {
        let address = email(&format!("outage{i}"));
        app.register(&address, PASSWORD).await;
        assert!(app.login(&address, PASSWORD).await["errors"].is_null());
    }
    eventually("the endpoint's breakers open", || async {
        a.breaker_states()[0] != BreakerState::Closed && b.breaker_states()[0] != BreakerState::Closed
    })
    .await;
    assert!(receiver.hits() >= 6, "both retried meanwhile");
    assert!(receiver.accepted().is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;

    receiver.set(Mode::Ok);
    eventually("all ten events delivered", || async {
        receiver.accepted().len() >= 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sa, sb) = (a.stats(), b.stats());
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;

    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 10, "no duplicate: {:?}", ids(&accepted));
    let mut unique = ids(&accepted);
    unique.dedup();
    assert_eq!(unique.len(), 10);
    assert_eq!(sa.delivered + sb.delivered, 10);
    assert!(sa.failed + sb.failed >= 6);
    assert_eq!(sa.dead + sb.dead, 0);
    assert_eq!(
        count(
            &app,
            "select count(*) as n from webhook_deliveries where status = 'delivered'"
        )
        .await,
        10
    );
    let metrics = app
        .request(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .text;
    for outcome in ["delivered", "failed"] {
        let series = format!("authgraph_webhook_deliveries_total{{endpoint=\"1\",outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&series), "no {series} in /metrics");
    }
    assert!(metrics.contains("authgraph_webhook_breaker_state{"));
    let types = receiver.types();
    assert_eq!((types["user.created"], types["login.succeeded"]), (5, 5));
}

#[tokio::test]
async fn a_dead_endpoint_does_not_hold_back_a_healthy_one() {
    let healthy = Receiver::start().await;
    // A port nothing listens on: every attempt is refused.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", listener.local_addr().unwrap())
    };
    let app = app_sending_to(&[dead, healthy.url()], &[]).await;
    let worker = start_worker(&app);
    for i in 0..4 {
        register(&app, &format!("split{i}")).await;
    }
    let started = Instant::now();
    eventually("the healthy endpoint got all four", || async {
        healthy.accepted().len() == 4
    })
    .await;
    // Well inside the breaker's and the retries' timescales: nothing waited on the dead one.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    eventually("the dead endpoint's breaker opens", || async {
        worker.breaker_states()[0] != BreakerState::Closed
    })
    .await;
    assert_eq!(worker.breaker_states()[1], BreakerState::Closed);
    for i in 4..8 {
        register(&app, &format!("split{i}")).await;
    }
    eventually("and the next four too", || async {
        healthy.accepted().len() == 8
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        count(
            &app,
            "select count(*) as n from webhook_deliveries where status = 'pending'"
        )
        .await,
        8,
        "the dead endpoint's copies wait for it"
    );
}

#[tokio::test]
async fn a_slow_endpoint_never_slows_sign_in() {
    let slow = Receiver::start().await;
    slow.set(Mode::Slow);
    let app = app_sending_to(&[slow.url()], &[("WEBHOOK_TIMEOUT", "5s")]).await;
    let address = email("quick");
    app.register(&address, PASSWORD).await;
    // Baseline without the worker, then with it busy on a 10-second endpoint.
    let t = Instant::now();
    assert!(app.login(&address, PASSWORD).await["errors"].is_null());
    let baseline = t.elapsed();
    let worker = start_worker(&app);
    eventually("the worker is stuck on the slow endpoint", || async {
        slow.hits() >= 1
    })
    .await;
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        assert!(app.login(&address, PASSWORD).await["errors"].is_null());
        slowest = slowest.max(t.elapsed());
    }
    // A sign-in that waited on the delivery would take its 5-second timeout at least.
    assert!(
        slowest < Duration::from_secs(3),
        "login took {slowest:?} (baseline {baseline:?})"
    );
    let stopping = Instant::now();
    worker.shutdown(Duration::from_millis(200)).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "shutdown abandons the slow call"
    );
    assert_eq!(
        count(
            &app,
            "select count(*) as n from webhook_deliveries where claimed_by is not null"
        )
        .await,
        0,
        "the abandoned delivery was released for the next worker"
    );
    assert!(slow.accepted().is_empty());
}

/// One bigint `n` from a query on `url`'s database.
async fn count_in(url: &str, query: &str) -> i64 {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    diesel::sql_query(query)
        .get_result::<N>(&mut conn)
        .await
        .unwrap()
        .n
}

#[tokio::test(flavor = "multi_thread")]
async fn the_served_binary_pushes_events_and_a_slow_endpoint_does_not_hold_up_sigterm() {
    use authgraph::auth::jwt::SigningKey;
    use secrecy::ExposeSecret;

    use crate::{
        helpers::{REGISTER, TestDb},
        support_process::Service,
    };

    let (healthy, slow) = (Receiver::start().await, Receiver::start().await);
    slow.set(Mode::Slow);
    let db = TestDb::create();
    let (_, pem) = SigningKey::generate(KeyAlgorithm::Es256).unwrap();
    let endpoints = format!("{},{}", healthy.url(), slow.url());
    let mut service = Service::spawn(&[
        ("APP_ENV", "production"),
        ("DATABASE_URL", db.url.as_str()),
        ("JWT_KEYS", pem.expose_secret()),
        ("WEBHOOK_ENDPOINTS", &endpoints),
        ("WEBHOOK_SECRET", SECRET),
        ("WEBHOOK_POLL_INTERVAL", "100ms"),
    ]);
    let (status, body, _) = service
        .graphql(
            REGISTER,
            json!({ "input": { "email": email("served"), "password": PASSWORD } }),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("the healthy endpoint got user.created", || async {
        healthy.accepted().len() == 1
    })
    .await;
    eventually("the slow endpoint is being called", || async { slow.hits() >= 1 }).await;

    let stopping = Instant::now();
    service.sigterm();
    let exit = service
        .wait_exit(Duration::from_secs(30))
        .expect("the process did not exit after SIGTERM");
    assert!(exit.success(), "{exit:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "{:?}",
        stopping.elapsed()
    );
    let messages: Vec<String> = service
        .json_lines()
        .iter()
        .map(|l| l["message"].as_str().unwrap_or("").to_owned())
        .collect();
    for expected in [
        "webhook worker started",
        "webhook worker stopped",
        "shutdown complete",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "no `{expected}` in {messages:?}"
        );
    }
    assert_eq!(healthy.types()["user.created"], 1);
    assert_eq!(
        count_in(
            &db.url,
            "select count(*) as n from webhook_deliveries where status = 'pending' and claimed_by is null"
        )
        .await,
        1,
        "the slow endpoint's copy waits, unclaimed, for the next start"
    );
}
