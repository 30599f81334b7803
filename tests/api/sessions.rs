//! Refresh rotation, the grace window, reuse detection, logout and revocation.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::support::{ME, PASSWORD, REFRESH, TestApp, claims, code, email};

const SESSIONS: &str = "{ me { sessions { id current } } }";

async fn refresh(app: &TestApp, token: &str) -> Value {
    app.graphql(REFRESH, json!({ "t": token })).await
}

fn pair(body: &Value) -> (String, String) {
    let p = &body["data"]["refresh"];
    assert!(body["errors"].is_null(), "{body}");
    (
        p["accessToken"].as_str().unwrap().to_owned(),
        p["refreshToken"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn refresh_rotates_the_token_and_keeps_the_session() {
    let app = TestApp::spawn().await;
    let registered = app.register(&email("rot"), PASSWORD).await;
    let sid = claims(registered["accessToken"].as_str().unwrap())["sid"].clone();
    let mut token = registered["refreshToken"].as_str().unwrap().to_owned();
    // A session kept alive through a chain of refreshes.
    for _ in 0..5 {
        let (access, next) = pair(&refresh(&app, &token).await);
        assert_ne!(next, token);
        assert_eq!(claims(&access)["sid"], sid);
        assert!(app.graphql_as(&access, ME, json!({})).await["errors"].is_null());
        token = next;
    }
}

#[tokio::test]
async fn unknown_missing_or_logged_out_tokens_are_invalid() {
    let app = TestApp::spawn().await;
    assert_eq!(code(&refresh(&app, "not-a-token").await), "INVALID_TOKEN");
    assert_eq!(code(&app.graphql(REFRESH, json!({})).await), "INVALID_TOKEN");
    let registered = app.register(&email("out"), PASSWORD).await;
    let token = registered["refreshToken"].as_str().unwrap();
    let out = app
        .graphql(
            "mutation($t: String) { logout(refreshToken: $t) }",
            json!({ "t": token }),
        )
        .await;
    assert_eq!(out["data"]["logout"], true);
    assert_eq!(code(&refresh(&app, token).await), "INVALID_TOKEN");
    let access = registered["accessToken"].as_str().unwrap();
    assert_eq!(
        code(&app.graphql_as(access, ME, json!({})).await),
        "UNAUTHENTICATED"
    );
    // Logging out an unknown token still answers true.
    let unknown = app
        .graphql("mutation { logout(refreshToken: \"nope\") }", json!({}))
        .await;
    assert_eq!(unknown["data"]["logout"], true);
}

#[tokio::test]
async fn an_expired_refresh_token_is_invalid() {
    let app = TestApp::spawn().await;
    let registered = app.register(&email("exp"), PASSWORD).await;
    app.sql("update refresh_tokens set expires_at = now() - interval '1 second'")
        .await;
    assert_eq!(
        code(&refresh(&app, registered["refreshToken"].as_str().unwrap()).await),
        "INVALID_TOKEN"
    );
}

#[tokio::test]
async fn the_absolute_lifetime_caps_every_refresh() {
    let app = TestApp::builder().env("SESSION_MAX_LIFETIME", "1h").spawn().await;
    let registered = app.register(&email("abs"), PASSWORD).await;
    let token = registered["refreshToken"].as_str().unwrap();
    let (access, next) = pair(&refresh(&app, token).await);
    let sessions = app
        .graphql_as(&access, "{ me { sessions { expiresAt createdAt } } }", json!({}))
        .await;
    let s = &sessions["data"]["me"]["sessions"][0];
    let expires = chrono::DateTime::parse_from_rfc3339(s["expiresAt"].as_str().unwrap()).unwrap();
    let created = chrono::DateTime::parse_from_rfc3339(s["createdAt"].as_str().unwrap()).unwrap();
    assert!(expires - created <= chrono::TimeDelta::hours(1), "{s}");
    app.sql("update sessions set absolute_expires_at = now() - interval '1 second'")
        .await;
    assert_eq!(code(&refresh(&app, &next).await), "INVALID_TOKEN");
}

#[tokio::test]
async fn reuse_after_rotation_revokes_the_whole_session() {
    let app = TestApp::builder().env("REFRESH_GRACE_SECONDS", "0").spawn().await;
    let registered = app.register(&email("reuse"), PASSWORD).await;
    let first = registered["refreshToken"].as_str().unwrap();
    let (access, second) = pair(&refresh(&app, first).await);
    let (later_access, _third) = pair(&refresh(&app, &second).await);
    // The thief replays the first token.
    assert_eq!(code(&refresh(&app, first).await), "TOKEN_REUSED");
    // Every token of that session is dead now: access tokens and the current refresh token.
    for token in [
        registered["accessToken"].as_str().unwrap(),
        &access,
        &later_access,
    ] {
        assert_eq!(
            code(&app.graphql_as(token, ME, json!({})).await),
            "UNAUTHENTICATED"
        );
    }
    assert_eq!(code(&refresh(&app, &_third).await), "INVALID_TOKEN");
    assert_eq!(
        code(&refresh(&app, first).await),
        "INVALID_TOKEN",
        "the session is already gone"
    );
}

#[tokio::test]
async fn a_late_duplicate_inside_the_grace_window_gets_the_same_pair() {
    let app = TestApp::spawn().await;
    let registered = app.register(&email("grace"), PASSWORD).await;
    let first = registered["refreshToken"].as_str().unwrap();
    let a = pair(&refresh(&app, first).await);
    let b = pair(&refresh(&app, first).await);
    assert_eq!(a, b);
    assert!(app.graphql_as(&a.0, ME, json!({})).await["errors"].is_null());
    // The chain continues from the shared successor.
    pair(&refresh(&app, &a.1).await);
}

async fn race(app: Arc<TestApp>, token: &str, n: usize) -> Vec<Value> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let app = app.clone();
            let token = token.to_owned();
            tokio::spawn(async move { refresh(&app, &token).await })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_inside_the_grace_window_all_get_one_pair() {
    for n in [2, 10] {
        let app = Arc::new(TestApp::builder().env("DATABASE_POOL_SIZE", "12").spawn().await);
        let registered = app.register(&email("race"), PASSWORD).await;
        let results = race(app.clone(), registered["refreshToken"].as_str().unwrap(), n).await;
        let pairs: Vec<_> = results.iter().map(pair).collect();
        assert!(
            pairs.windows(2).all(|w| w[0] == w[1]),
            "{n} racers got different pairs"
        );
        let body = app.graphql_as(&pairs[0].0, SESSIONS, json!({})).await;
        assert_eq!(
            body["data"]["me"]["sessions"].as_array().unwrap().len(),
            1,
            "the session survives"
        );
        pair(&refresh(&app, &pairs[0].1).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_outside_the_grace_window_revoke_the_session() {
    for n in [2, 10] {
        let app = Arc::new(
            TestApp::builder()
                .env("DATABASE_POOL_SIZE", "12")
                .env("REFRESH_GRACE_SECONDS", "0")
                .spawn()
                .await,
        );
        let registered = app.register(&email("race0"), PASSWORD).await;
        let results = race(app.clone(), registered["refreshToken"].as_str().unwrap(), n).await;
        let codes: Vec<&str> = results
            .iter()
            .map(|b| b["errors"][0]["extensions"]["code"].as_str().unwrap_or("OK"))
            .collect();
        assert_eq!(codes.iter().filter(|c| **c == "OK").count(), 1, "{codes:?}");
        assert!(
            codes
                .iter()
                .all(|c| matches!(*c, "OK" | "TOKEN_REUSED" | "INVALID_TOKEN")),
            "nothing else, and never an internal error: {codes:?}"
        );
        assert!(codes.contains(&"TOKEN_REUSED"), "{codes:?}");
        let winner = results.iter().find(|b| b["errors"].is_null()).unwrap();
        let (access, next) = pair(winner);
        assert_eq!(
            code(&app.graphql_as(&access, ME, json!({})).await),
            "UNAUTHENTICATED"
        );
        assert_eq!(code(&refresh(&app, &next).await), "INVALID_TOKEN");
    }
}

#[tokio::test]
async fn logout_all_sessions_needs_a_token_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let address = email("all");
    let first = app.register(&address, PASSWORD).await;
    let second = &app.login(&address, PASSWORD).await["data"]["login"];
    let anonymous = app
        .graphql("mutation { logout(allSessions: true) }", json!({}))
        .await;
    assert_eq!(code(&anonymous), "UNAUTHENTICATED");
    let token = second["accessToken"].as_str().unwrap();
    let body = app
        .graphql_as(token, "mutation { logout(allSessions: true) }", json!({}))
        .await;
    assert_eq!(body["data"]["logout"], true);
    for t in [first["accessToken"].as_str().unwrap(), token] {
        assert_eq!(code(&app.graphql_as(t, ME, json!({})).await), "UNAUTHENTICATED");
    }
    assert_eq!(
        code(&refresh(&app, first["refreshToken"].as_str().unwrap()).await),
        "INVALID_TOKEN"
    );
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_by_their_owner_only() {
    let app = TestApp::spawn().await;
    let alice_email = email("alice");
    let alice1 = app.register(&alice_email, PASSWORD).await;
    let alice2 = &app.login(&alice_email, PASSWORD).await["data"]["login"];
    let bob = app.register(&email("bob"), PASSWORD).await;
    let alice_token = alice2["accessToken"].as_str().unwrap();
    let bob_token = bob["accessToken"].as_str().unwrap();
    let alice_sid = claims(alice1["accessToken"].as_str().unwrap())["sid"].clone();

    // Bob can neither list nor revoke Alice's sessions.
    let listing = app
        .graphql_as(
            bob_token,
            "query($id: ID!) { user(id: $id) { sessions { id } } }",
            json!({ "id": alice1["user"]["id"] }),
        )
        .await;
    assert_eq!(code(&listing), "FORBIDDEN");
    let revoke = "mutation($id: ID!) { revokeSession(id: $id) }";
    let body = app
        .graphql_as(bob_token, revoke, json!({ "id": alice_sid }))
        .await;
    assert_eq!(body["data"]["revokeSession"], false);
    assert!(
        app.graphql_as(alice1["accessToken"].as_str().unwrap(), ME, json!({}))
            .await["errors"]
            .is_null()
    );

    // Alice revokes her first session from her second.
    let body = app
        .graphql_as(alice_token, revoke, json!({ "id": alice_sid }))
        .await;
    assert_eq!(body["data"]["revokeSession"], true);
    assert_eq!(
        code(
            &app.graphql_as(alice1["accessToken"].as_str().unwrap(), ME, json!({}))
                .await
        ),
        "UNAUTHENTICATED"
    );
    let again = app
        .graphql_as(alice_token, revoke, json!({ "id": alice_sid }))
        .await;
    assert_eq!(again["data"]["revokeSession"], false, "no longer active");
    let listed = app.graphql_as(alice_token, SESSIONS, json!({})).await;
    assert_eq!(listed["data"]["me"]["sessions"].as_array().unwrap().len(), 1);
}
