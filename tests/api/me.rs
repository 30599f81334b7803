use authgraph::db::users::Role;
use serde_json::json;

use crate::support::{ME, PASSWORD, TestApp, code, email};

const USER: &str = "query($id: ID!) { user(id: $id) { id email displayName role } }";

#[tokio::test]
async fn me_needs_a_token_and_returns_the_caller() {
    let app = TestApp::spawn().await;
    assert_eq!(code(&app.graphql(ME, json!({})).await), "UNAUTHENTICATED");
    let address = email("me");
    let payload = app.register(&address, PASSWORD).await;
    let body = app
        .graphql_as(payload["accessToken"].as_str().unwrap(), ME, json!({}))
        .await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(body["data"]["me"]["email"], address);
    assert_eq!(body["data"]["me"]["id"], payload["user"]["id"]);
}

#[tokio::test]
async fn another_users_email_is_forbidden_but_the_rest_is_visible() {
    let app = TestApp::spawn().await;
    let alice = app.register(&email("alice"), PASSWORD).await;
    let bob = app.register(&email("bob"), PASSWORD).await;
    let body = app
        .graphql_as(
            alice["accessToken"].as_str().unwrap(),
            USER,
            json!({ "id": bob["user"]["id"] }),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
    assert_eq!(body["errors"][0]["path"], json!(["user", "email"]));
    assert_eq!(body["data"]["user"]["id"], bob["user"]["id"]);
    assert!(body["data"]["user"]["email"].is_null());
}

#[tokio::test]
async fn an_admin_reads_any_email() {
    let app = TestApp::spawn().await;
    let admin_email = email("admin");
    app.register(&admin_email, PASSWORD).await;
    assert!(app.state.auth.set_role(&admin_email, Role::Admin).await.unwrap());
    let admin = &app.login(&admin_email, PASSWORD).await["data"]["login"];
    assert_eq!(admin["user"]["role"], "ADMIN");
    let bob_email = email("bob");
    let bob = app.register(&bob_email, PASSWORD).await;
    let body = app
        .graphql_as(
            admin["accessToken"].as_str().unwrap(),
            USER,
            json!({ "id": bob["user"]["id"] }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(body["data"]["user"]["email"], bob_email);
}

#[tokio::test]
async fn user_needs_a_token_and_answers_null_for_unknown_ids() {
    let app = TestApp::spawn().await;
    let alice = app.register(&email("alice"), PASSWORD).await;
    let anonymous = app.graphql(USER, json!({ "id": alice["user"]["id"] })).await;
    assert_eq!(code(&anonymous), "UNAUTHENTICATED");
    let token = alice["accessToken"].as_str().unwrap();
    for id in [uuid::Uuid::new_v4().to_string(), "42".to_owned()] {
        let body = app.graphql_as(token, USER, json!({ "id": id })).await;
        assert!(body["errors"].is_null(), "{body}");
        assert!(body["data"]["user"].is_null());
    }
}

#[tokio::test]
async fn sessions_are_visible_to_their_owner_only_and_mark_the_current_one() {
    let app = TestApp::spawn().await;
    let address = email("sessions");
    let first = app.register(&address, PASSWORD).await;
    let second = &app.login(&address, PASSWORD).await["data"]["login"];
    let token = second["accessToken"].as_str().unwrap();
    let body = app
        .graphql_as(
            token,
            "{ me { sessions { id current userAgent expiresAt } } }",
            json!({}),
        )
        .await;
    let sessions = body["data"]["me"]["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], crate::support::claims(token)["sid"]);

    let admin_email = email("admin");
    app.register(&admin_email, PASSWORD).await;
    app.state.auth.set_role(&admin_email, Role::Admin).await.unwrap();
    let admin = &app.login(&admin_email, PASSWORD).await["data"]["login"];
    let body = app
        .graphql_as(
            admin["accessToken"].as_str().unwrap(),
            "query($id: ID!) { user(id: $id) { sessions { id } } }",
            json!({ "id": first["user"]["id"] }),
        )
        .await;
    assert_eq!(
        code(&body),
        "FORBIDDEN",
        "even admins cannot list another user's sessions"
    );
}

#[tokio::test]
async fn role_changes_apply_to_existing_tokens_at_once() {
    let app = TestApp::spawn().await;
    let admin_email = email("demoted");
    let admin_payload = app.register(&admin_email, PASSWORD).await;
    let bob = app.register(&email("bob"), PASSWORD).await;
    app.state.auth.set_role(&admin_email, Role::Admin).await.unwrap();
    let token = admin_payload["accessToken"].as_str().unwrap();
    let body = app
        .graphql_as(token, USER, json!({ "id": bob["user"]["id"] }))
        .await;
    assert!(
        body["errors"].is_null(),
        "the database role counts, not the token claim: {body}"
    );
    app.state.auth.set_role(&admin_email, Role::User).await.unwrap();
    let body = app
        .graphql_as(token, USER, json!({ "id": bob["user"]["id"] }))
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
}
