//! Address limits must not lock out bystanders: a valid refresh token is never refused
//! for its address's failures, and a browser that signed in before (device cookie) logs
//! in past an address a neighbour is spraying from, while the account's limit holds.

use serde_json::{Value, json};

use crate::support::{LOGIN, PASSWORD, REFRESH, TestApp, TestResponse, code, email, post_via, router_from};

const WRONG: &str = "not the password at all";

/// The device cookie a response sets, as a `Cookie` header value.
fn device_cookie(response: &TestResponse) -> Option<String> {
    response
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("device_token="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

async fn login_with(app: &TestApp, email: &str, password: &str, cookie: Option<&str>) -> TestResponse {
    let headers: Vec<(&str, &str)> = cookie.map(|c| vec![("cookie", c)]).unwrap_or_default();
    app.post(
        LOGIN,
        json!({ "input": { "email": email, "password": password } }),
        &headers,
    )
    .await
}

fn ok(body: &Value) {
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn a_valid_refresh_token_passes_an_address_locked_by_junk() {
    let app = TestApp::builder()
        .env("THROTTLE_TOKEN_ADDRESS", "3/1h,1h..1h")
        .spawn()
        .await;
    let registered = app.register(&email("nat"), PASSWORD).await;
    let mut token = registered["refreshToken"].as_str().unwrap().to_owned();
    // A neighbour behind the same address sends junk until the address waits.
    let mut answers = Vec::new();
    for n in 0..5 {
        answers.push(code(&app.graphql(REFRESH, json!({ "t": format!("junk-{n}") })).await).to_owned());
    }
    assert_eq!(
        answers,
        [
            "INVALID_TOKEN",
            "INVALID_TOKEN",
            "INVALID_TOKEN",
            "RATE_LIMITED",
            "RATE_LIMITED"
        ]
    );
    // The bystander's real token still works, again and again.
    for _ in 0..3 {
        let body = app.graphql(REFRESH, json!({ "t": token })).await;
        ok(&body);
        token = body["data"]["refresh"]["refreshToken"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    // Junk keeps waiting; and a rotated token presented again is still caught as reuse.
    assert_eq!(
        code(&app.graphql(REFRESH, json!({ "t": "junk" })).await),
        "RATE_LIMITED"
    );
    let old = registered["refreshToken"].as_str().unwrap();
    app.sql("update refresh_tokens set rotated_at = now() - interval '1 hour' where rotated_at is not null")
        .await;
    assert_eq!(
        code(&app.graphql(REFRESH, json!({ "t": old })).await),
        "TOKEN_REUSED"
    );
}

#[tokio::test]
async fn a_browser_that_signed_in_before_passes_a_sprayed_address() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ADDRESS", "3/1h,1h..1h")
        .spawn()
        .await;
    let owner = email("owner");
    app.register(&owner, PASSWORD).await;
    let signed_in = login_with(&app, &owner, PASSWORD, None).await;
    ok(&signed_in.body);
    let cookie = device_cookie(&signed_in).expect("a device cookie after a sign-in");
    let set = signed_in
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    let attributes = set.iter().find(|v| v.starts_with("device_token=")).unwrap();
    assert!(
        attributes.contains("HttpOnly") && attributes.contains("Secure"),
        "{attributes}"
    );
    // A neighbour on the same address sprays other accounts until the address waits.
    for n in 0..3 {
        let body = login_with(&app, &email(&format!("spray{n}")), WRONG, None).await;
        assert_eq!(code(&body.body), "INVALID_CREDENTIALS");
    }
    assert_eq!(
        code(&login_with(&app, &owner, PASSWORD, None).await.body),
        "RATE_LIMITED"
    );
    // The owner's browser gets through, and a new device cookie with it.
    let again = login_with(&app, &owner, PASSWORD, Some(&cookie)).await;
    ok(&again.body);
    assert!(device_cookie(&again).is_some());
    // The cookie is the owner's: for another account it is worth nothing.
    let other = email("other");
    app.register(&other, PASSWORD).await;
    assert_eq!(
        code(&login_with(&app, &other, PASSWORD, Some(&cookie)).await.body),
        "RATE_LIMITED"
    );
    // A failed login sets no device cookie.
    let failed = login_with(&app, &email("nobody"), WRONG, Some(&cookie)).await;
    assert!(device_cookie(&failed).is_none());
}

#[tokio::test]
async fn a_device_keeps_its_own_count_and_never_lifts_the_account_limit() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_DEVICE", "2/1h,1h..1h")
        .env("THROTTLE_LOGIN_ACCOUNT", "6/24h,1h..1h")
        .spawn()
        .await;
    let owner = email("device");
    app.register(&owner, PASSWORD).await;
    let cookie = device_cookie(&login_with(&app, &owner, PASSWORD, None).await).unwrap();
    // A stolen device cookie buys two guesses, then waits.
    for _ in 0..2 {
        assert_eq!(
            code(&login_with(&app, &owner, WRONG, Some(&cookie)).await.body),
            "INVALID_CREDENTIALS"
        );
    }
    assert_eq!(
        code(&login_with(&app, &owner, PASSWORD, Some(&cookie)).await.body),
        "RATE_LIMITED"
    );
    // Guesses from many addresses reach the account limit; a fresh device cookie (the
    // owner's other browser) waits with everyone.
    let fresh = device_cookie(&login_with(&app, &owner, PASSWORD, None).await).unwrap();
    for n in 1..=6 {
        let bot = router_from(&app, &format!("198.51.100.{n}:5000"));
        let body = post_via(
            &bot,
            LOGIN,
            json!({ "input": { "email": owner, "password": WRONG } }),
            &[],
        )
        .await
        .body;
        assert_eq!(code(&body), "INVALID_CREDENTIALS", "{body}");
    }
    assert_eq!(
        code(&login_with(&app, &owner, PASSWORD, Some(&fresh)).await.body),
        "RATE_LIMITED"
    );
}
