//! Requests that name the caller twice: duplicate `Authorization` headers are refused,
//! duplicate refresh cookies resolved the way browsers order them.

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use serde_json::json;

use crate::support::{ME, PASSWORD, REFRESH, TestApp, code, email};

#[tokio::test]
async fn two_authorization_headers_are_refused_whatever_they_hold() {
    let app = TestApp::spawn().await;
    let alice = app.register(&email("alice"), PASSWORD).await;
    let mallory = app.register(&email("mallory"), PASSWORD).await;
    let bearer = |v: &serde_json::Value| format!("Bearer {}", v["accessToken"].as_str().unwrap());
    let (a, m) = (bearer(&alice), bearer(&mallory));
    for accept in ["application/json", "application/graphql-response+json"] {
        for pair in [[&a, &m], [&a, &a]] {
            let response = app
                .post(
                    ME,
                    json!({}),
                    &[
                        ("accept", accept),
                        ("authorization", pair[0]),
                        ("authorization", pair[1]),
                    ],
                )
                .await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{}", response.text);
            assert_eq!(code(&response.body), "BAD_REQUEST");
            assert!(response.body.get("data").is_none(), "{}", response.text);
            let content_type = response.headers["content-type"].to_str().unwrap();
            assert!(content_type.starts_with(accept), "{content_type}");
        }
    }
    // Over GET too.
    let get = Request::get("/graphql?query=%7Bme%7Bid%7D%7D")
        .header("authorization", &a)
        .header("authorization", &m)
        .body(Body::empty())
        .unwrap();
    let response = app.request(get).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST, "{}", response.text);
    assert_eq!(code(&response.body), "BAD_REQUEST");
    // One header is fine.
    let body = app.post(ME, json!({}), &[("authorization", &a)]).await.body;
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn of_two_refresh_cookies_the_first_the_most_specific_path_is_used() {
    let app = TestApp::spawn().await;
    let registered = app.register(&email("cookies"), PASSWORD).await;
    let current = registered["refreshToken"].as_str().unwrap().to_owned();
    let stale = "a-cookie-left-from-an-older-path";
    // A browser lists the cookie with the longer path first (RFC 6265 5.4): the one set
    // for this route's path now. Both in one header line...
    let both = format!("refresh_token={current}; other=1; refresh_token={stale}");
    let body = app.post(REFRESH, json!({}), &[("cookie", &both)]).await.body;
    assert!(body["errors"].is_null(), "{body}");
    // ...or, as HTTP/2 sends them, one line each; the order still decides.
    let registered = app.register(&email("cookies2"), PASSWORD).await;
    let current = registered["refreshToken"].as_str().unwrap().to_owned();
    let first = format!("refresh_token={current}");
    let second = format!("refresh_token={stale}");
    let body = app
        .post(REFRESH, json!({}), &[("cookie", &first), ("cookie", &second)])
        .await
        .body;
    assert!(body["errors"].is_null(), "{body}");
    let body = app
        .post(REFRESH, json!({}), &[("cookie", &second), ("cookie", &first)])
        .await
        .body;
    assert_eq!(code(&body), "INVALID_TOKEN", "{body}");
}
