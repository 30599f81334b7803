//! Nothing that could sign someone in reaches a log or an error message: a whole scenario
//! runs with every log at TRACE captured (the service's own subscriber layers, its
//! secrets guard included), then the capture and every error are searched for the
//! password, the email and every token issued.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use authgraph::auth::jwt::KeyAlgorithm;
use axum::{body::Body, http::Request};
use serde_json::{Value, json};
use tracing_subscriber::{filter::LevelFilter, fmt, fmt::format::FmtSpan, prelude::*};

use crate::helpers::{LOGIN, ME, REGISTER, TestApp, TestResponse};

/// A distinctive password nothing else could print by chance.
const SECRET_PASSWORD: &str = "Quokka-Marmalade-7741-Zephyr";

/// Everything the subscriber wrote.
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
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// What the scenario saw: secrets to look for, and every error to search.
#[derive(Default)]
struct Seen {
    secrets: Vec<String>,
    errors: Vec<Value>,
}

impl Seen {
    fn response(&mut self, response: &TestResponse) {
        let body = &response.body;
        if let Some(errors) = body["errors"].as_array() {
            self.errors.extend(errors.iter().cloned());
        }
        for payload in body["data"].as_object().into_iter().flat_map(|d| d.values()) {
            for token in ["accessToken", "refreshToken"] {
                if let Some(t) = payload[token].as_str() {
                    self.secrets.push(t.to_owned());
                }
            }
        }
        for cookie in response.headers.get_all("set-cookie") {
            let value = cookie.to_str().unwrap();
            if let Some(token) = value
                .strip_prefix("refresh_token=")
                .and_then(|v| v.split(';').next())
                .filter(|t| !t.is_empty())
            {
                self.secrets.push(token.to_owned());
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn no_password_token_or_email_reaches_a_log_or_an_error() {
    let app = TestApp::spawn_with(
        KeyAlgorithm::Es256,
        &[("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "2/1h,1h..1h")],
    )
    .await;
    let capture = Capture::default();
    let writer = {
        let capture = capture.clone();
        move || capture.clone()
    };
    // Production's layers (compact and JSON), at TRACE, behind the secrets guard.
    let subscriber = tracing_subscriber::registry()
        .with(authgraph::telemetry::secrets_guard())
        .with(LevelFilter::TRACE)
        .with(
            fmt::layer()
                .compact()
                .with_ansi(false)
                .with_span_events(FmtSpan::FULL)
                .with_writer(writer.clone()),
        )
        .with(
            fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(writer),
        );
    let _scoped = tracing::subscriber::set_default(subscriber);
    // tokio-postgres logs through the `log` facade: open it all the way too.
    log::set_max_level(log::LevelFilter::Trace);

    let mixed_case = format!("Quokka.Owner+{}@Example.COM", uuid::Uuid::new_v4().simple());
    let email = mixed_case.to_lowercase();
    let mut seen = Seen::default();
    let credentials = json!({ "input": { "email": mixed_case, "password": SECRET_PASSWORD } });

    // Register: tokens in the body; then the same email again (EMAIL_TAKEN).
    let registered = app.post(REGISTER, credentials.clone(), &[]).await;
    assert!(registered.body["errors"].is_null(), "{}", registered.text);
    seen.response(&registered);
    seen.response(&app.post(REGISTER, credentials.clone(), &[]).await);
    // A refused new password (too common) and a malformed email carrying the password.
    let weak = json!({ "input": { "email": format!("weak.{email}"), "password": "Password1" } });
    seen.response(&app.post(REGISTER, weak, &[]).await);
    let odd =
        json!({ "input": { "email": format!("{SECRET_PASSWORD} <{email}>"), "password": SECRET_PASSWORD } });
    seen.response(&app.post(REGISTER, odd, &[]).await);
    // Login: right, with a cookie; wrong; then locked out with the right password.
    let cookie = app
        .post(LOGIN, credentials.clone(), &[("x-token-delivery", "cookie")])
        .await;
    assert!(cookie.headers.contains_key("set-cookie"), "{}", cookie.text);
    seen.response(&cookie);
    let wrong = json!({ "input": { "email": email, "password": format!("{SECRET_PASSWORD}!") } });
    for _ in 0..2 {
        seen.response(&app.post(LOGIN, wrong.clone(), &[]).await);
    }
    let locked = app.post(LOGIN, credentials.clone(), &[]).await;
    assert_eq!(locked.body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    seen.response(&locked);
    // Authenticated calls, a broken token, and a GET whose query string holds the email.
    let access = registered.body["data"]["register"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    seen.response(
        &app.post(ME, json!({}), &[("authorization", &format!("Bearer {access}"))])
            .await,
    );
    seen.response(
        &app.post(ME, json!({}), &[("authorization", &format!("Bearer {access}x"))])
            .await,
    );
    let query =
        format!("/graphql?query=%7B%20me%20%7B%20id%20%7D%20%7D&variables=%7B%22e%22%3A%22{email}%22%7D");
    let get = app
        .request(
            Request::get(query)
                .header("authorization", format!("Bearer {access}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    seen.response(&get);
    // A parse failure whose document holds the password inline.
    seen.response(
        &app.post(
            &format!(
                r#"mutation {{ login(input: {{ email: "{email}", password: "{SECRET_PASSWORD}" }}) {{ "#
            ),
            json!({}),
            &[],
        )
        .await,
    );

    drop(_scoped);
    let logs = capture.text();
    let tokens = seen.secrets.len();
    assert!(tokens >= 4, "the scenario issued {tokens} tokens");
    let user_id = registered.body["data"]["register"]["user"]["id"]
        .as_str()
        .unwrap();
    // The capture is real: operations, the user by id, the blocking hasher's events.
    for expected in [
        "graphql operation",
        "Register",
        "Login",
        "RATE_LIMITED",
        user_id,
        "login succeeded",
        "argon2 job done",
    ] {
        assert!(logs.contains(expected), "the capture lacks {expected:?}");
    }
    let mut forbidden = vec![
        SECRET_PASSWORD.to_owned(),
        email.clone(),
        mixed_case.clone(),
        // The local part alone, as a log might split it.
        email.split('@').next().unwrap().to_owned(),
    ];
    forbidden.extend(seen.secrets.iter().cloned());
    // Also as a driver would print them: `Debug` of the bytes (tokio-postgres prints
    // statement parameters so) and hex.
    for secret in forbidden.clone() {
        let bytes = secret.as_bytes();
        forbidden.push(
            format!("{:?}", &bytes[..bytes.len().min(12)])
                .trim_end_matches(']')
                .to_owned(),
        );
        forbidden.push(bytes.iter().map(|b| format!("{b:02x}")).collect());
    }
    let errors = serde_json::to_string(&seen.errors).unwrap();
    for secret in &forbidden {
        assert!(
            !logs.contains(secret.as_str()),
            "a log line carries a secret: {}",
            logs.lines().find(|l| l.contains(secret.as_str())).unwrap_or("")
        );
        assert!(
            !errors.contains(secret.as_str()),
            "an error carries a secret: {errors}"
        );
    }
}
