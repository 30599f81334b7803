//! Refresh-token cookie delivery, over a real TCP connection.

use serde_json::{Value, json};

use crate::support::{LOGIN, ME, PASSWORD, REFRESH, TestApp, email};

fn set_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("set-cookie")
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap()
        .to_owned()
}

fn cookie_value(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("refresh_token=")
        .unwrap()
}

#[tokio::test]
async fn cookie_delivery_refresh_and_logout_over_tcp() {
    let app = TestApp::spawn().await;
    let address = email("cookie");
    app.register(&address, PASSWORD).await;
    let url = format!("http://{}/graphql", app.serve_tcp().await);
    let client = reqwest::Client::new();

    let response = client
        .post(&url)
        .header("x-token-delivery", "cookie")
        .json(
            &json!({ "query": LOGIN, "variables": { "input": { "email": address, "password": PASSWORD } } }),
        )
        .send()
        .await
        .unwrap();
    let header = set_cookie(&response);
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/graphql",
        "Max-Age=",
    ] {
        assert!(header.contains(attribute), "{attribute} missing in {header}");
    }
    let body: Value = response.json().await.unwrap();
    assert!(body["data"]["login"]["refreshToken"].is_null(), "{body}");
    let first = cookie_value(&header).to_owned();
    assert!(first.len() >= 43);

    // Refresh with the cookie only: a new cookie comes back.
    let response = client
        .post(&url)
        .header("cookie", format!("refresh_token={first}"))
        .json(&json!({ "query": REFRESH }))
        .send()
        .await
        .unwrap();
    let header = set_cookie(&response);
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"].is_null(), "{body}");
    assert!(body["data"]["refresh"]["refreshToken"].is_null());
    let second = cookie_value(&header).to_owned();
    assert_ne!(first, second);
    let access = body["data"]["refresh"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();

    // Logout with the cookie clears it and ends the session.
    let response = client
        .post(&url)
        .header("cookie", format!("refresh_token={second}"))
        .json(&json!({ "query": "mutation { logout }" }))
        .send()
        .await
        .unwrap();
    let header = set_cookie(&response);
    assert!(
        header.starts_with("refresh_token=;") && header.contains("Max-Age=0"),
        "{header}"
    );
    let me: Value = client
        .post(&url)
        .bearer_auth(&access)
        .json(&json!({ "query": ME }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn an_argument_wins_over_the_cookie() {
    let app = TestApp::spawn().await;
    let payload = app.register(&email("arg"), PASSWORD).await;
    let token = payload["refreshToken"].as_str().unwrap();
    let response = app
        .post(
            REFRESH,
            json!({ "t": token }),
            &[("cookie", "refresh_token=garbage")],
        )
        .await;
    assert!(response.body["errors"].is_null(), "{}", response.body);
    assert!(response.body["data"]["refresh"]["refreshToken"].is_string());
    assert!(response.headers.get("set-cookie").is_none());
}

#[tokio::test]
async fn cookie_attributes_follow_configuration() {
    let app = TestApp::builder()
        .env("REFRESH_COOKIE_PATH", "/")
        .env("REFRESH_COOKIE_SAMESITE", "None")
        .spawn()
        .await;
    let address = email("conf");
    app.register(&address, PASSWORD).await;
    let response = app
        .post(
            LOGIN,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[("x-token-delivery", "cookie")],
        )
        .await;
    let header = response.headers["set-cookie"].to_str().unwrap();
    assert!(
        header.contains("Path=/;") && header.contains("SameSite=None") && header.contains("Secure"),
        "{header}"
    );
}
