//! New passwords: the blocklist's normalised variants, and the breached-password range
//! API (k-anonymity, padding, timeout, breaker, failing open) against a local server.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Path, State},
    http::HeaderMap,
    routing::get,
};
use serde_json::{Value, json};

use crate::support::{REGISTER, TestApp, TestAppBuilder, code, email};

/// What the fake range service does with a lookup.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Answer,
    Slow,
    Broken,
}

/// The path and `Add-Padding` header of one lookup.
type Lookup = (String, Option<String>);

#[derive(Clone)]
struct Range {
    seen: Arc<Mutex<Vec<Lookup>>>,
    mode: Arc<Mutex<Mode>>,
}

fn sha1_hex(password: &str) -> String {
    use std::fmt::Write;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
    digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

const BREACHED: &str = "a perfectly unlisted passphrase";
const PADDED: &str = "another unlisted passphrase";

async fn range(State(range): State<Range>, Path(prefix): Path<String>, headers: HeaderMap) -> String {
    let padding = headers
        .get("add-padding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    range
        .seen
        .lock()
        .unwrap()
        .push((format!("/range/{prefix}"), padding));
    let mode = *range.mode.lock().unwrap();
    match mode {
        Mode::Slow => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            String::new()
        }
        Mode::Broken => "<html>maintenance</html>".to_owned(),
        Mode::Answer => {
            // Real-looking neighbours, the breached password, and a padding line (count 0)
            // that carries the suffix of a password no breach holds.
            let mut lines = vec!["0018A45C4D1DEF81644B54AB7F969B88D65:3".to_owned()];
            for (password, count) in [(BREACHED, 42), (PADDED, 0)] {
                let hash = sha1_hex(password);
                if hash[..5] == prefix {
                    lines.push(format!("{}:{count}", &hash[5..]));
                }
            }
            lines.push("FFFFF0000000000000000000000000000000:0".to_owned());
            lines.join("\r\n")
        }
    }
}

async fn range_server() -> (SocketAddr, Range) {
    let state = Range {
        seen: Arc::default(),
        mode: Arc::new(Mutex::new(Mode::Answer)),
    };
    let app = Router::new()
        .route("/range/{prefix}", get(range))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, state)
}

/// An app that registers as many accounts as a test needs from one address.
fn app() -> TestAppBuilder {
    TestApp::builder().env("THROTTLE_REGISTER_ADDRESS", "off")
}

async fn register(app: &TestApp, password: &str) -> Value {
    app.graphql(
        REGISTER,
        json!({ "input": { "email": email("pw"), "password": password } }),
    )
    .await
}

fn refused_as_guessable(body: &Value, password: &str) {
    assert_eq!(code(body), "BAD_USER_INPUT", "{password}: {body}");
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["field"], "password", "{body}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("too easy to guess"), "{message}");
    assert!(!message.contains(password), "{message}");
}

#[tokio::test]
async fn common_passwords_dressed_up_are_refused_with_a_reason() {
    let app = app().spawn().await;
    for password in [
        "qwertyuiopasdf",
        "Qwerty123!",
        "Summer2024!",
        "P@ssw0rd123",
        "1qaz2wsx3edc",
    ] {
        refused_as_guessable(&register(&app, password).await, password);
    }
    let body = register(&app, "purple monkey dishwasher 42").await;
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn breached_passwords_are_refused_and_only_a_hash_prefix_leaves() {
    let (addr, range) = range_server().await;
    let url = format!("http://{addr}/range");
    let app = app().env("PASSWORDS_BREACH_CHECK_URL", &url).spawn().await;
    refused_as_guessable(&register(&app, BREACHED).await, BREACHED);
    // Present in the answer only as padding (count 0): not breached.
    let body = register(&app, PADDED).await;
    assert!(body["errors"].is_null(), "{body}");
    let seen = range.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for ((path, padding), password) in seen.iter().zip([BREACHED, PADDED]) {
        let hash = sha1_hex(password);
        assert_eq!(path, &format!("/range/{}", &hash[..5]));
        assert!(!path.contains(&hash[5..10]), "more than the prefix left: {path}");
        assert_eq!(padding.as_deref(), Some("true"));
    }
    // The other ways to set a password check too.
    let registered = body["data"]["register"].clone();
    let access = registered["accessToken"].as_str().unwrap();
    let change = "mutation($i: ChangePasswordInput!) { changePassword(input: $i) { accessToken } }";
    let body = app
        .graphql_as(
            access,
            change,
            json!({ "i": { "currentPassword": PADDED, "newPassword": BREACHED } }),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], "newPassword");
}

#[tokio::test]
async fn a_slow_or_broken_range_service_fails_open_behind_a_breaker() {
    let (addr, range) = range_server().await;
    let url = format!("http://{addr}/range");
    let app = app().env("PASSWORDS_BREACH_CHECK_URL", &url).spawn().await;
    *range.mode.lock().unwrap() = Mode::Slow;
    let started = Instant::now();
    let body = register(&app, BREACHED).await;
    let took = started.elapsed();
    assert!(body["errors"].is_null(), "fails open: {body}");
    assert!(
        took < Duration::from_millis(2500),
        "the lookup is cut at 1 s: {took:?}"
    );
    *range.mode.lock().unwrap() = Mode::Broken;
    for _ in 0..2 {
        let body = register(&app, BREACHED).await;
        assert!(body["errors"].is_null(), "fails open: {body}");
    }
    // Three failures in a row: the breaker is open and the service is left alone.
    *range.mode.lock().unwrap() = Mode::Answer;
    let asked = range.seen.lock().unwrap().len();
    assert_eq!(asked, 3);
    let body = register(&app, BREACHED).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(range.seen.lock().unwrap().len(), asked, "no call while open");
}

#[tokio::test]
async fn an_unreachable_range_service_fails_open() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/range");
    let app = app().env("PASSWORDS_BREACH_CHECK_URL", &url).spawn().await;
    let body = register(&app, BREACHED).await;
    assert!(body["errors"].is_null(), "{body}");
}
