use serde_json::json;

use crate::support::{PASSWORD, REGISTER, TestApp, claims, code, email};

#[tokio::test]
async fn register_returns_a_token_pair_and_the_private_user() {
    let app = TestApp::spawn().await;
    let address = email("reg");
    let payload = app.register(&address, PASSWORD).await;
    assert_eq!(payload["tokenType"], "Bearer");
    assert_eq!(payload["expiresIn"], 900);
    assert!(payload["refreshToken"].as_str().unwrap().len() >= 43);
    let user = &payload["user"];
    assert_eq!(user["email"], address);
    assert_eq!(user["role"], "USER");
    assert_eq!(user["emailVerified"], false);
    assert!(uuid::Uuid::parse_str(user["id"].as_str().unwrap()).is_ok());
    let claims = claims(payload["accessToken"].as_str().unwrap());
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["role"], "USER");
    assert_eq!(claims["iss"], "authgraph");
    assert_eq!(claims["aud"], "authgraph");
    for claim in ["sid", "iat", "exp", "jti"] {
        assert!(!claims[claim].is_null(), "missing {claim}");
    }
}

#[tokio::test]
async fn register_normalises_the_email_and_refuses_it_twice_in_any_case() {
    let app = TestApp::spawn().await;
    let address = email("dup");
    let payload = app
        .register(&format!("  {}  ", address.to_uppercase()), PASSWORD)
        .await;
    assert_eq!(payload["user"]["email"], address);
    let again = app
        .graphql(
            REGISTER,
            json!({ "input": { "email": address, "password": PASSWORD } }),
        )
        .await;
    assert_eq!(code(&again), "EMAIL_TAKEN");
    assert_eq!(again["errors"][0]["extensions"]["field"], "email");
}

#[tokio::test]
async fn register_validates_each_field_and_names_it() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({ "email": "not-an-email", "password": PASSWORD }), "email"),
        (json!({ "email": email("v"), "password": "short" }), "password"),
        (
            json!({ "email": email("v"), "password": "x".repeat(129) }),
            "password",
        ),
        (
            json!({ "email": email("v"), "password": PASSWORD, "displayName": "   " }),
            "displayName",
        ),
        (
            json!({ "email": email("v"), "password": PASSWORD, "displayName": "n".repeat(65) }),
            "displayName",
        ),
        (
            json!({ "email": email("v"), "password": PASSWORD, "displayName": "bell\u{7}" }),
            "displayName",
        ),
    ];
    for (input, field) in cases {
        let body = app.graphql(REGISTER, json!({ "input": input })).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{input}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{input}");
        assert!(body["data"].is_null(), "{body}");
    }
}

#[tokio::test]
async fn a_display_name_is_trimmed_and_kept() {
    let app = TestApp::spawn().await;
    let body = app
        .graphql(
            REGISTER,
            json!({ "input": { "email": email("dn"), "password": PASSWORD, "displayName": "  Ada Lovelace " } }),
        )
        .await;
    assert_eq!(body["data"]["register"]["user"]["displayName"], "Ada Lovelace");
}

#[tokio::test]
async fn a_password_registered_in_nfc_logs_in_with_its_nfd_spelling() {
    let app = TestApp::spawn().await;
    let address = email("nfc");
    app.register(&address, "caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e")
        .await;
    let body = app
        .login(&address, "cafe\u{301} cre\u{300}me bru\u{302}le\u{301}e")
        .await;
    assert!(body["errors"].is_null(), "{body}");
}
