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

use crate::{
    helpers::{LOGIN, ME, REGISTER, TestApp, TestResponse},
    smtp_sink::SmtpSink,
    support_mail::{GRACE, count, eventually, start_worker},
    webhooks::{Receiver, SECRET as WEBHOOK_SECRET, start_worker as start_webhooks},
};

/// A distinctive password nothing else could print by chance.
const SECRET_PASSWORD: &str = "Quokka-Marmalade-7741-Zephyr";

/// Everything the subscriber wrote (the MFA redaction test captures with it too).
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

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
    pub fn text(&self) -> String {
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

const SECOND_PASSWORD: &str = "Narwhal-Tamarind-3390-Quill";
const THIRD_PASSWORD: &str = "Ocelot-Persimmon-5128-Vane";

const REFRESH: &str = "mutation($t: String) { refresh(refreshToken: $t) { accessToken refreshToken } }";
const REQUEST_VERIFICATION: &str = "mutation { requestEmailVerification }";
const VERIFY: &str = "mutation($t: String!) { verifyEmail(token: $t) }";
const CHANGE: &str =
    "mutation($input: ChangePasswordInput!) { changePassword(input: $input) { accessToken refreshToken } }";
const REQUEST_RESET: &str = "mutation($e: String!) { requestPasswordReset(email: $e) }";
const RESET: &str = "mutation($input: ResetPasswordInput!) { resetPassword(input: $input) }";
const DELETE: &str = "mutation($p: String!) { deleteAccount(password: $p) }";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn field<'a>(response: &'a TestResponse, mutation: &str, name: &str) -> &'a str {
    response.body["data"][mutation][name]
        .as_str()
        .unwrap_or_else(|| panic!("no {mutation}.{name}: {}", response.text))
}

#[tokio::test(flavor = "current_thread")]
async fn no_password_token_or_email_reaches_a_log_or_an_error() {
    let sink = SmtpSink::start().await;
    let receiver = Receiver::start().await;
    let app = TestApp::spawn_with(
        KeyAlgorithm::Es256,
        &[
            ("SMTP_URL", &sink.url()),
            // Every event is pushed too: webhook bodies and the webhook worker's logs
            // are searched like the rest.
            ("WEBHOOK_ENDPOINTS", &receiver.url()),
            ("WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "2/1h,1h..1h"),
            // A rotated refresh token presented again is reuse at once.
            ("REFRESH_GRACE_SECONDS", "0"),
        ],
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
    let scoped = tracing::subscriber::set_default(subscriber);
    // tokio-postgres logs through the `log` facade: open it all the way too.
    log::set_max_level(log::LevelFilter::Trace);
    // The mail worker runs on this thread too, so its logs (SMTP included) are captured.
    let worker = start_worker(&app, |_| {});
    let webhooks = start_webhooks(&app);

    let mixed_case = format!("Quokka.Owner+{}@Example.COM", uuid::Uuid::new_v4().simple());
    let email = mixed_case.to_lowercase();
    let other = format!("ocelot.victim+{}@example.net", uuid::Uuid::new_v4().simple());
    let mut seen = Seen::default();
    let credentials = json!({ "input": { "email": mixed_case, "password": SECRET_PASSWORD } });

    // Register (a verification mail goes out); the same email again; refused inputs.
    let registered = app.post(REGISTER, credentials.clone(), &[]).await;
    seen.response(&registered);
    let user_id = registered.body["data"]["register"]["user"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", registered.text))
        .to_owned();
    let first_refresh = field(&registered, "register", "refreshToken").to_owned();
    seen.response(&app.post(REGISTER, credentials.clone(), &[]).await);
    let weak = json!({ "input": { "email": format!("weak.{email}"), "password": "Password1" } });
    seen.response(&app.post(REGISTER, weak, &[]).await);
    let odd =
        json!({ "input": { "email": format!("{SECRET_PASSWORD} <{email}>"), "password": SECRET_PASSWORD } });
    seen.response(&app.post(REGISTER, odd, &[]).await);

    // Login: wrong, then right with cookie delivery (which clears the count).
    let wrong = json!({ "input": { "email": email, "password": format!("{SECRET_PASSWORD}!") } });
    seen.response(&app.post(LOGIN, wrong, &[]).await);
    let cookie_login = app
        .post(LOGIN, credentials.clone(), &[("x-token-delivery", "cookie")])
        .await;
    assert!(
        cookie_login.headers.contains_key("set-cookie"),
        "{}",
        cookie_login.text
    );
    seen.response(&cookie_login);
    let cookie = seen.secrets.last().unwrap().clone();

    // Authenticated reads, a broken token, and a GET whose query string holds the email.
    let access = field(&registered, "register", "accessToken").to_owned();
    seen.response(
        &app.post(ME, json!({}), &[("authorization", &bearer(&access))])
            .await,
    );
    seen.response(
        &app.post(ME, json!({}), &[("authorization", &format!("Bearer {access}x"))])
            .await,
    );
    let query =
        format!("/graphql?query=%7B%20me%20%7B%20id%20%7D%20%7D&variables=%7B%22e%22%3A%22{email}%22%7D");
    let get = Request::get(query)
        .header("authorization", bearer(&access))
        .body(Body::empty())
        .unwrap();
    seen.response(&app.request(get).await);

    // Refresh: by argument, by cookie, a reused token (its session ends), garbage.
    let refreshed = app.post(REFRESH, json!({ "t": first_refresh }), &[]).await;
    seen.response(&refreshed);
    let cookie_header = format!("refresh_token={cookie}");
    let by_cookie = app.post(REFRESH, json!({}), &[("cookie", &cookie_header)]).await;
    seen.response(&by_cookie);
    let reused = app.post(REFRESH, json!({ "t": first_refresh }), &[]).await;
    assert_eq!(reused.body["errors"][0]["extensions"]["code"], "TOKEN_REUSED");
    seen.response(&reused);
    seen.response(
        &app.post(REFRESH, json!({ "t": format!("{first_refresh}x") }), &[])
            .await,
    );
    // The reuse ended the first session: sign in again.
    let login = app.post(LOGIN, credentials.clone(), &[]).await;
    seen.response(&login);
    let access = field(&login, "login", "accessToken").to_owned();

    // Verification: a fresh link by mail, used, then a wrong token.
    seen.response(
        &app.post(
            REQUEST_VERIFICATION,
            json!({}),
            &[("authorization", &bearer(&access))],
        )
        .await,
    );
    let verify_token = sink.wait_for(2).await[1].token("/verify-email");
    seen.secrets.push(verify_token.clone());
    seen.response(&app.post(VERIFY, json!({ "t": verify_token }), &[]).await);
    seen.response(&app.post(VERIFY, json!({ "t": verify_token }), &[]).await);

    // Password change: a wrong current password, then the right one.
    let change =
        |current: &str| json!({ "input": { "currentPassword": current, "newPassword": SECOND_PASSWORD } });
    seen.response(
        &app.post(
            CHANGE,
            change(THIRD_PASSWORD),
            &[("authorization", &bearer(&access))],
        )
        .await,
    );
    let changed = app
        .post(
            CHANGE,
            change(SECRET_PASSWORD),
            &[("authorization", &bearer(&access))],
        )
        .await;
    seen.response(&changed);
    assert!(changed.body["errors"].is_null(), "{}", changed.text);

    // Reset: a link by mail, a new password with it, a login with that.
    seen.response(&app.post(REQUEST_RESET, json!({ "e": mixed_case }), &[]).await);
    let reset_token = sink.wait_for(3).await[2].token("/reset-password");
    seen.secrets.push(reset_token.clone());
    let reset = json!({ "input": { "token": reset_token, "newPassword": THIRD_PASSWORD } });
    seen.response(&app.post(RESET, reset.clone(), &[]).await);
    seen.response(&app.post(RESET, reset, &[]).await);
    let last = app
        .post(
            LOGIN,
            json!({ "input": { "email": email, "password": THIRD_PASSWORD } }),
            &[],
        )
        .await;
    seen.response(&last);
    let access = field(&last, "login", "accessToken").to_owned();

    // Another account locked out: past the limit, even its right password waits.
    let other_credentials = json!({ "input": { "email": other, "password": SECRET_PASSWORD } });
    seen.response(&app.post(REGISTER, other_credentials.clone(), &[]).await);
    let other_wrong = json!({ "input": { "email": other, "password": SECOND_PASSWORD } });
    for _ in 0..2 {
        seen.response(&app.post(LOGIN, other_wrong.clone(), &[]).await);
    }
    let locked = app.post(LOGIN, other_credentials, &[]).await;
    assert_eq!(locked.body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    seen.response(&locked);

    // A parse failure whose document holds a password inline; then the account goes.
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
    let deleted = app
        .post(
            DELETE,
            json!({ "p": THIRD_PASSWORD }),
            &[("authorization", &bearer(&access))],
        )
        .await;
    assert_eq!(deleted.body["data"]["deleteAccount"], true, "{}", deleted.text);
    seen.response(&deleted);

    worker.shutdown(GRACE).await;
    let audited = count(&app, "select count(*) as n from audit_events").await;
    eventually("every audit event pushed", || async {
        receiver.accepted().len() as i64 == audited
    })
    .await;
    webhooks.shutdown(GRACE).await;
    drop(scoped);
    let logs = capture.text();
    let tokens = seen.secrets.len();
    assert!(tokens >= 12, "the scenario issued {tokens} tokens");
    // The capture is real: operations by name, the user by id, the blocking hasher, mail.
    for expected in [
        "graphql operation",
        "Register",
        "operation.name",
        "RATE_LIMITED",
        "TOKEN_REUSED",
        user_id.as_str(),
        "login succeeded",
        "password changed",
        "password reset",
        "argon2 job done",
        "mail sent",
        "webhook worker started",
    ] {
        assert!(logs.contains(expected), "the capture lacks {expected:?}");
    }
    let mut forbidden = vec![
        SECRET_PASSWORD.to_owned(),
        SECOND_PASSWORD.to_owned(),
        THIRD_PASSWORD.to_owned(),
        email.clone(),
        mixed_case.clone(),
        other.clone(),
        // Local parts alone, as a log might split an address.
        email.split('@').next().unwrap().to_owned(),
        other.split('@').next().unwrap().to_owned(),
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
    // Webhook bodies go to the operator's own service and carry the address by design,
    // but never a password, token or code.
    let bodies: String = receiver.accepted().into_iter().map(|r| r.raw).collect();
    assert!(bodies.contains("password.reset") && bodies.contains("user.deleted"));
    for secret in [SECRET_PASSWORD, SECOND_PASSWORD, THIRD_PASSWORD]
        .into_iter()
        .chain(seen.secrets.iter().map(String::as_str))
    {
        assert!(
            !bodies.contains(secret),
            "a webhook body carries a secret: {bodies}"
        );
    }
    // Nor does the signing secret reach a log.
    forbidden.push(WEBHOOK_SECRET.trim_start_matches("whsec_").to_owned());
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
