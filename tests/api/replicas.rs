//! Two service processes on one database, as behind a load balancer: whatever one
//! replica does, the other sees.

use authgraph::auth::jwt::{KeyAlgorithm, SigningKey};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::support::{
    LOGIN, ME, PASSWORD, REFRESH, REGISTER, REQUEST_RESET, Service, TestDb, code, email, eventually,
};

/// Two production replicas sharing a database and a signing key.
pub fn two_replicas(db: &TestDb) -> (Service, Service) {
    let replica = Service::builder().production(&db.url);
    (replica.spawn(), replica.spawn())
}

fn bearer(token: &Value) -> String {
    format!("Bearer {}", token.as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_started_on_one_replica_works_on_the_other() {
    let db = TestDb::create();
    let (a, b) = two_replicas(&db);
    assert_eq!(
        a.get("/.well-known/jwks.json").await,
        b.get("/.well-known/jwks.json").await
    );

    let address = email("replica");
    let (_, registered, _) = a
        .graphql(
            REGISTER,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[],
        )
        .await;
    let token = &registered["data"]["register"]["accessToken"];
    let (_, me, _) = b
        .graphql(ME, json!({}), &[("authorization", &bearer(token))])
        .await;
    assert_eq!(me["data"]["me"]["email"], address.as_str(), "{me}");

    let (_, login, _) = b
        .graphql(
            LOGIN,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[],
        )
        .await;
    let token = &login["data"]["login"]["accessToken"];
    let (_, me, _) = a
        .graphql(ME, json!({}), &[("authorization", &bearer(token))])
        .await;
    assert_eq!(me["data"]["me"]["email"], address.as_str(), "{me}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_request_and_user_but_no_secrets() {
    let db = TestDb::create();
    let (a, _b) = two_replicas(&db);
    let address = email("logs");
    let (_, registered, _) = a
        .graphql(
            REGISTER,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[],
        )
        .await;
    let user_id = registered["data"]["register"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, _, _) = a
        .graphql(
            LOGIN,
            json!({ "input": { "email": address, "password": "wrong password!" } }),
            &[("x-request-id", "trace-wrong-1")],
        )
        .await;
    let (_, login, _) = a
        .graphql(
            LOGIN,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[("x-request-id", "trace-login-1")],
        )
        .await;
    let refresh = login["data"]["login"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let access = login["data"]["login"]["accessToken"].as_str().unwrap().to_owned();

    // The answer can arrive before the child's last lines are read from its stdout: wait
    // for the sign-in's operation line, the last it writes.
    eventually("the sign-in's lines are read", || async {
        a.json_lines()
            .iter()
            .any(|l| l["message"] == "graphql operation" && l["request_id"] == "trace-login-1")
    })
    .await;
    let lines = a.json_lines();
    for line in &lines {
        for key in ["timestamp", "level", "message"] {
            assert!(line.get(key).is_some(), "no {key} in {line}");
        }
    }
    let find = |message: &str, request_id: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message && l["request_id"] == request_id)
            .unwrap_or_else(|| panic!("no `{message}` line for {request_id} in {lines:#?}"))
            .clone()
    };
    let succeeded = find("login succeeded", "trace-login-1");
    assert_eq!(succeeded["user.id"], user_id.as_str());
    assert_eq!(succeeded["operation.name"], "Login");
    assert_eq!(succeeded["level"], "INFO");
    let failed = find("login failed: invalid credentials", "trace-wrong-1");
    assert_eq!(failed["user.id"], user_id.as_str());
    let summary = find("graphql operation", "trace-login-1");
    assert_eq!(
        summary["user.id"],
        user_id.as_str(),
        "the operation line names the user"
    );

    let text = a.lines().join("\n");
    for secret in [address.as_str(), PASSWORD, "wrong password!", &refresh, &access] {
        assert!(!text.contains(secret), "a log line carries a secret or an email");
    }
}

/// Step 2 of the README's key rotation: during a rolling restart one replica signs with
/// the new key and another still with the old; each accepts the other's tokens.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_mid_rotation_accept_each_others_tokens() {
    let db = TestDb::create();
    let dir = crate::support::TempDir::new("keys");
    let (old, new) = (dir.0.join("keys.pem"), dir.0.join("next.pem"));
    for path in [&old, &new] {
        let (_, pem) = SigningKey::generate(KeyAlgorithm::Es256).unwrap();
        std::fs::write(path, pem.expose_secret()).unwrap();
    }
    let keys = |first: &std::path::Path, second: &std::path::Path| {
        format!("{},{}", first.display(), second.display())
    };
    let (old_first, new_first) = (keys(&old, &new), keys(&new, &old));
    let replica = |keys: &str| {
        Service::builder()
            .env("APP_ENV", "production")
            .env("DATABASE_URL", &db.url)
            .env("JWT_KEYS", keys)
            .spawn()
    };
    let (a, b) = (replica(&old_first), replica(&new_first));
    let (_, jwks_a) = a.get("/.well-known/jwks.json").await;
    let jwks: Value = serde_json::from_str(&jwks_a).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "both keys published");

    let address = email("rotation");
    let (_, registered, _) = a
        .graphql(
            REGISTER,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[],
        )
        .await;
    let (_, login, _) = b
        .graphql(
            LOGIN,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[],
        )
        .await;
    let from_a = &registered["data"]["register"]["accessToken"];
    let from_b = &login["data"]["login"]["accessToken"];
    let kid = |token: &Value| {
        let header = token.as_str().unwrap().split('.').next().unwrap().to_owned();
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["kid"].clone()
    };
    assert_ne!(kid(from_a), kid(from_b), "each replica signs with its first key");
    for (service, token) in [(&b, from_a), (&a, from_b)] {
        let (_, me, _) = service
            .graphql(ME, json!({}), &[("authorization", &bearer(token))])
            .await;
        assert_eq!(me["data"]["me"]["email"], address.as_str(), "{me}");
    }
}

/// A refresh on one replica is seen by the other, and a rotated token replayed on the
/// other replica (outside the grace window) is caught as reuse there.
#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotation_and_reuse_detection_span_replicas() {
    let db = TestDb::create();
    let replica = Service::builder()
        .production(&db.url)
        // No grace: a replay is reuse at once, without waiting in the test.
        .env("REFRESH_GRACE_SECONDS", "0");
    let (a, b) = (replica.spawn(), replica.spawn());
    let address = email("replica-refresh");
    let (_, registered, _) = a
        .graphql(
            REGISTER,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[],
        )
        .await;
    let first = registered["data"]["register"]["refreshToken"].clone();

    // Rotated on A; B accepts the new access token and the new refresh token.
    let (_, rotated, _) = a.graphql(REFRESH, json!({ "t": first }), &[]).await;
    let second = rotated["data"]["refresh"]["refreshToken"].clone();
    assert!(second.is_string(), "{rotated}");
    let (_, me, _) = b
        .graphql(
            ME,
            json!({}),
            &[(
                "authorization",
                &bearer(&rotated["data"]["refresh"]["accessToken"]),
            )],
        )
        .await;
    assert_eq!(me["data"]["me"]["email"], address.as_str(), "{me}");

    // The first token, already rotated on A, replayed on B: reuse, session ended.
    let (_, replay, _) = b.graphql(REFRESH, json!({ "t": first }), &[]).await;
    assert_eq!(code(&replay), "TOKEN_REUSED", "{replay}");
    // ... for A too: the current token of that session no longer works there.
    let (_, after, _) = a.graphql(REFRESH, json!({ "t": second }), &[]).await;
    assert_eq!(code(&after), "INVALID_TOKEN", "{after}");

    let (_, metrics) = b.get("/metrics").await;
    assert!(
        metrics.contains("authgraph_refresh_token_reuse_detections_total 1"),
        "{metrics}"
    );
    let reused = |l: &serde_json::Value| l["message"] == "refresh token reused: session revoked";
    eventually("a warning for the reuse", || async {
        b.json_lines().iter().any(reused)
    })
    .await;
    let warned = b
        .json_lines()
        .into_iter()
        .find(reused)
        .expect("a warning for the reuse");
    assert_eq!(warned["level"], "WARN");
    assert_eq!(warned["user.id"], registered["data"]["register"]["user"]["id"]);
}

/// The mail worker's metrics: with SMTP down, the failed attempt, the outbox depth and
/// the breaker's state show on `/metrics`.
#[tokio::test(flavor = "multi_thread")]
async fn mail_outbox_and_breaker_show_in_metrics() {
    let db = TestDb::create();
    let service = Service::builder()
        .production(&db.url)
        // Nothing listens there: every delivery fails at once.
        .env("SMTP_URL", "smtp://127.0.0.1:9")
        .env("MAIL_POLL_INTERVAL", "1")
        .spawn();
    let address = email("mail-metrics");
    service
        .graphql(
            REGISTER,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[],
        )
        .await;
    let (_, body, _) = service
        .graphql(REQUEST_RESET, json!({ "email": address }), &[])
        .await;
    assert_eq!(body["data"]["requestPasswordReset"], true, "{body}");
    crate::support::eventually("a failed delivery and a pending mail in /metrics", || async {
        let (_, text) = service.get("/metrics").await;
        text.contains("authgraph_mail_deliveries_total{outcome=\"failed\"}")
            && text
                .lines()
                .any(|l| l.starts_with("authgraph_mail_outbox_depth ") && !l.ends_with(" 0"))
            && text.contains("authgraph_mail_breaker_state{state=\"closed\"}")
            && text.contains("authgraph_mail_outbox_oldest_age_seconds")
    })
    .await;
    let lines = service.json_lines();
    assert!(
        lines.iter().any(|l| l["message"] == "password reset mail queued"),
        "{lines:#?}"
    );
    assert!(
        !service.lines().join("\n").contains(&address),
        "a log line carries the email address"
    );
}

/// Failed logins on two replicas add up in PostgreSQL: the limit is reached by
/// attempts split between them, and refused on both, with the refusal counted.
#[tokio::test(flavor = "multi_thread")]
async fn login_throttling_counts_attempts_made_on_both_replicas() {
    let db = TestDb::create();
    let replica = Service::builder()
        .production(&db.url)
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "3/1h,1h..1h");
    let (a, b) = (replica.spawn(), replica.spawn());
    let address = email("replica-throttle");
    a.graphql(
        REGISTER,
        json!({ "input": { "email": address, "password": PASSWORD } }),
        &[],
    )
    .await;
    let login = |password: &'static str| json!({ "input": { "email": address, "password": password } });
    for (service, n) in [(&a, 1), (&b, 2), (&a, 3)] {
        let (_, body, _) = service.graphql(LOGIN, login("wrong password!"), &[]).await;
        assert_eq!(code(&body), "INVALID_CREDENTIALS", "attempt {n}: {body}");
    }
    // The fourth attempt, right password and all, waits on either replica.
    for service in [&b, &a] {
        let (_, body, _) = service.graphql(LOGIN, login(PASSWORD), &[]).await;
        assert_eq!(code(&body), "RATE_LIMITED", "{body}");
    }
    let (_, metrics) = b.get("/metrics").await;
    assert!(
        metrics.contains("authgraph_throttle_hits_total{scope=\"login.account_address\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("authgraph_logins_total{outcome=\"rate_limited\"} 1"),
        "{metrics}"
    );
    let refused = b
        .json_lines()
        .into_iter()
        .find(|l| l["message"] == "attempt refused: too many attempts")
        .expect("a warning for the refusal");
    assert_eq!(refused["level"], "WARN");
}
