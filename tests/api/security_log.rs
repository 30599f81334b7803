//! Security events in the log name the resolved client address, and the user when known:
//! failed and successful logins, lockouts, refused tokens, token reuse.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use serde_json::{Value, json};
use tracing_subscriber::prelude::*;

use crate::support::{PASSWORD, TestApp, code, email, login_via, post_via, router_from};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn lines(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// The captured lines whose message starts with `message`.
fn events(capture: &Capture, message: &str) -> Vec<Value> {
    capture
        .lines()
        .into_iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with(message)))
        .collect()
}

fn assert_named(lines: &[Value], what: &str, address: &str, user: Option<&str>) {
    assert!(!lines.is_empty(), "no `{what}` line");
    for line in lines {
        assert_eq!(line["client.address"], address, "{what}: {line}");
        if let Some(user) = user {
            assert_eq!(line["user.id"], user, "{what}: {line}");
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn security_events_name_the_client_address_and_the_user() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "2/1h,1h..1h")
        .env("THROTTLE_TOKEN_ADDRESS", "1/1h,1h..1h")
        .env("REFRESH_GRACE_SECONDS", "0")
        .spawn()
        .await;
    let capture = Capture::default();
    let writer = {
        let capture = capture.clone();
        move || capture.clone()
    };
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(authgraph::telemetry::JsonLines::new(writer));
    let _scoped = tracing::subscriber::set_default(subscriber);

    let owner = email("logged");
    let registered = app.register(&owner, PASSWORD).await;
    let user_id = registered["user"]["id"].as_str().unwrap().to_owned();
    let attacker = router_from(&app, "198.51.100.23:4000");
    for _ in 0..3 {
        login_via(&attacker, &owner, "not the password").await;
    }
    assert_named(
        &events(&capture, "login failed"),
        "login failed",
        "198.51.100.23",
        Some(&user_id),
    );
    assert_named(
        &events(&capture, "attempt limit reached"),
        "attempt limit reached",
        "198.51.100.23",
        Some(&user_id),
    );
    assert_named(
        &events(&capture, "attempt refused"),
        "attempt refused",
        "198.51.100.23",
        Some(&user_id),
    );
    assert!(login_via(&app.router, &owner, PASSWORD).await["errors"].is_null());
    assert_named(
        &events(&capture, "login succeeded"),
        "login succeeded",
        "203.0.113.7",
        Some(&user_id),
    );

    // Tokens: junk, then a reused token, from a third address.
    let refresh = "mutation($t: String) { refresh(refreshToken: $t) { refreshToken } }";
    let phone = router_from(&app, "192.0.2.99:1");
    let first = registered["refreshToken"].as_str().unwrap();
    for _ in 0..2 {
        post_via(&phone, refresh, json!({ "t": "junk" }), &[]).await;
    }
    let rotated = post_via(&phone, refresh, json!({ "t": first }), &[]).await.body;
    assert!(rotated["errors"].is_null(), "{rotated}");
    let reused = post_via(&phone, refresh, json!({ "t": first }), &[]).await.body;
    assert_eq!(code(&reused), "TOKEN_REUSED");
    assert_named(
        &events(&capture, "refresh token reused"),
        "refresh token reused",
        "192.0.2.99",
        Some(&user_id),
    );
    // The HTTP limit's refusals too.
    let tight = TestApp::builder()
        .env("HTTP_RATE_LIMIT", "1/h")
        .env("HTTP_RATE_LIMIT_BURST", "1")
        .spawn()
        .await;
    let flooder = router_from(&tight, "198.51.100.77:9");
    for _ in 0..2 {
        post_via(&flooder, "{ __typename }", json!({}), &[]).await;
    }
    assert_named(
        &events(&capture, "request refused"),
        "HTTP 429",
        "198.51.100.77",
        None,
    );
    let token_refusals: Vec<Value> = events(&capture, "attempt refused")
        .into_iter()
        .filter(|l| l["limit"] == "token.address")
        .collect();
    assert_named(&token_refusals, "token refusal", "192.0.2.99", None);
}
