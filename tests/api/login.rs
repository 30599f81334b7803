use serde_json::json;

use crate::support::{LOGIN, PASSWORD, TestApp, claims, code, email};

#[tokio::test]
async fn login_with_the_right_password_opens_a_new_session() {
    let app = TestApp::spawn().await;
    let address = email("login");
    let registered = app.register(&address, PASSWORD).await;
    let body = app.login(&address.to_uppercase(), PASSWORD).await;
    let payload = &body["data"]["login"];
    assert_eq!(payload["user"]["id"], registered["user"]["id"]);
    assert_eq!(payload["user"]["email"], address);
    let first = claims(registered["accessToken"].as_str().unwrap());
    let second = claims(payload["accessToken"].as_str().unwrap());
    assert_ne!(first["sid"], second["sid"], "each login is its own session");
    assert_ne!(registered["refreshToken"], payload["refreshToken"]);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_fail_alike() {
    let app = TestApp::spawn().await;
    let address = email("alike");
    app.register(&address, PASSWORD).await;
    let wrong = app.login(&address, "not the password").await;
    let unknown = app.login(&email("nobody"), PASSWORD).await;
    assert_eq!(code(&wrong), "INVALID_CREDENTIALS");
    assert_eq!(code(&unknown), "INVALID_CREDENTIALS");
    assert_eq!(wrong["errors"][0]["message"], unknown["errors"][0]["message"]);
    assert_eq!(
        wrong["errors"][0]["extensions"],
        unknown["errors"][0]["extensions"]
    );
}

#[tokio::test]
async fn login_ignores_a_stale_authorization_header() {
    let app = TestApp::spawn().await;
    let address = email("stale");
    app.register(&address, PASSWORD).await;
    let body = app
        .post(
            LOGIN,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[("authorization", "Bearer expired.garbage.token")],
        )
        .await
        .body;
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn passwords_are_not_trimmed() {
    let app = TestApp::spawn().await;
    let address = email("trim");
    app.register(&address, "  spaces around  ").await;
    assert_eq!(
        code(&app.login(&address, "spaces around").await),
        "INVALID_CREDENTIALS"
    );
    assert!(app.login(&address, "  spaces around  ").await["errors"].is_null());
}
