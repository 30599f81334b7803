//! Profile, password change and account deletion.

use serde_json::json;

use crate::support::{ME, PASSWORD, REFRESH, REGISTER, TestApp, claims, code, email};

const UPDATE: &str =
    "mutation($input: UpdateProfileInput!) { updateProfile(input: $input) { displayName email } }";
const CHANGE: &str =
    "mutation($input: ChangePasswordInput!) { changePassword(input: $input) { accessToken refreshToken } }";

#[tokio::test]
async fn update_profile_keeps_absent_fields_and_clears_nulls() {
    let app = TestApp::spawn().await;
    let payload = app.register(&email("prof"), PASSWORD).await;
    let token = payload["accessToken"].as_str().unwrap();
    let set = app
        .graphql_as(token, UPDATE, json!({ "input": { "displayName": "  Grace " } }))
        .await;
    assert_eq!(set["data"]["updateProfile"]["displayName"], "Grace");
    assert!(
        set["data"]["updateProfile"]["email"].is_string(),
        "own email visible"
    );
    let keep = app.graphql_as(token, UPDATE, json!({ "input": {} })).await;
    assert_eq!(keep["data"]["updateProfile"]["displayName"], "Grace");
    let clear = app
        .graphql_as(token, UPDATE, json!({ "input": { "displayName": null } }))
        .await;
    assert!(clear["data"]["updateProfile"]["displayName"].is_null(), "{clear}");
    let bad = app
        .graphql_as(token, UPDATE, json!({ "input": { "displayName": "" } }))
        .await;
    assert_eq!(code(&bad), "BAD_USER_INPUT");
    assert_eq!(bad["errors"][0]["extensions"]["field"], "displayName");
    assert_eq!(
        code(&app.graphql(UPDATE, json!({ "input": {} })).await),
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn change_password_keeps_this_session_and_ends_the_others() {
    let app = TestApp::spawn().await;
    let address = email("chpw");
    let other = app.register(&address, PASSWORD).await;
    let this = &app.login(&address, PASSWORD).await["data"]["login"];
    let token = this["accessToken"].as_str().unwrap();
    let input =
        |current: &str, new: &str| json!({ "input": { "currentPassword": current, "newPassword": new } });

    assert_eq!(
        code(
            &app.graphql_as(token, CHANGE, input("wrong password", "a brand new secret"))
                .await
        ),
        "INVALID_CREDENTIALS"
    );
    let short = app.graphql_as(token, CHANGE, input(PASSWORD, "short")).await;
    assert_eq!(short["errors"][0]["extensions"]["field"], "newPassword");

    let changed = app
        .graphql_as(token, CHANGE, input(PASSWORD, "a brand new secret"))
        .await;
    let pair = &changed["data"]["changePassword"];
    assert!(changed["errors"].is_null(), "{changed}");
    let new_access = pair["accessToken"].as_str().unwrap();
    assert_eq!(claims(new_access)["sid"], claims(token)["sid"], "same session");
    assert!(app.graphql_as(new_access, ME, json!({})).await["errors"].is_null());
    assert!(app.graphql(REFRESH, json!({ "t": pair["refreshToken"] })).await["errors"].is_null());
    // The session's old refresh token and every other session are finished.
    assert_eq!(
        code(&app.graphql(REFRESH, json!({ "t": this["refreshToken"] })).await),
        "INVALID_TOKEN"
    );
    assert_eq!(
        code(
            &app.graphql_as(other["accessToken"].as_str().unwrap(), ME, json!({}))
                .await
        ),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        code(&app.graphql(REFRESH, json!({ "t": other["refreshToken"] })).await),
        "INVALID_TOKEN"
    );
    // Old password out, new one in.
    assert_eq!(code(&app.login(&address, PASSWORD).await), "INVALID_CREDENTIALS");
    assert!(app.login(&address, "a brand new secret").await["errors"].is_null());
}

#[tokio::test]
async fn delete_account_needs_the_password_and_frees_the_email() {
    let app = TestApp::spawn().await;
    let address = email("del");
    let payload = app.register(&address, PASSWORD).await;
    let token = payload["accessToken"].as_str().unwrap();
    let delete = "mutation($p: String!) { deleteAccount(password: $p) }";
    assert_eq!(
        code(
            &app.graphql_as(token, delete, json!({ "p": "wrong password" }))
                .await
        ),
        "INVALID_CREDENTIALS"
    );
    let body = app.graphql_as(token, delete, json!({ "p": PASSWORD })).await;
    assert_eq!(body["data"]["deleteAccount"], true);
    assert_eq!(
        code(&app.graphql_as(token, ME, json!({})).await),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        code(
            &app.graphql(REFRESH, json!({ "t": payload["refreshToken"] }))
                .await
        ),
        "INVALID_TOKEN"
    );
    assert_eq!(code(&app.login(&address, PASSWORD).await), "INVALID_CREDENTIALS");
    let again = app
        .graphql(
            REGISTER,
            json!({ "input": { "email": address, "password": PASSWORD } }),
        )
        .await;
    assert!(again["errors"].is_null(), "{again}");
}

#[tokio::test]
async fn set_role_command_promotes_by_email() {
    let app = TestApp::spawn().await;
    let address = email("role");
    app.register(&address, PASSWORD).await;
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_authgraph"))
        .args(["user", "set-role", &address.to_uppercase(), "ADMIN"])
        .env("DATABASE_URL", &app.db.url)
        .env(
            "DATA_DIR",
            std::env::temp_dir().join(format!("authgraph-cli-{}", uuid::Uuid::new_v4())),
        )
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let login = app.login(&address, PASSWORD).await;
    assert_eq!(login["data"]["login"]["user"]["role"], "ADMIN");
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_authgraph"))
        .args(["user", "set-role", "nobody@example.com", "ADMIN"])
        .env("DATABASE_URL", &app.db.url)
        .env(
            "DATA_DIR",
            std::env::temp_dir().join(format!("authgraph-cli-{}", uuid::Uuid::new_v4())),
        )
        .output()
        .unwrap();
    assert!(!missing.status.success());
}
