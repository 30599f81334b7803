//! HTTP rules: content types, methods, limits, negotiation, health, and a real socket.

use axum::{body::Body, http::Request};
use serde_json::{Value, json};

use crate::support::{ME, PASSWORD, REGISTER, TestApp, code, email};

fn post_raw(content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::post("/graphql");
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    builder.body(body.into()).unwrap()
}

#[tokio::test]
async fn mutations_never_run_over_get() {
    let app = TestApp::spawn().await;
    let query = urlencode("mutation { login(input: {email: \"a@b.co\", password: \"x\"}) { accessToken } }");
    let response = app
        .request(
            Request::get(format!("/graphql?query={query}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status, 405);
    assert_eq!(response.headers["allow"], "POST");
    assert_eq!(code(&response.body), "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn queries_run_over_get() {
    let app = TestApp::spawn().await;
    let response = app
        .request(
            Request::get(format!("/graphql?query={}", urlencode("{ me { id } }")))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(code(&response.body), "UNAUTHENTICATED");
}

#[tokio::test]
async fn post_needs_a_json_content_type() {
    let app = TestApp::spawn().await;
    let body = json!({ "query": "{ __typename }" }).to_string();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let response = app.request(post_raw(ct, body.clone())).await;
        assert_eq!(response.status, 415, "{ct:?}");
        assert_eq!(code(&response.body), "UNSUPPORTED_MEDIA_TYPE");
    }
    let ok = app
        .request(post_raw(Some("application/json; charset=utf-8"), body))
        .await;
    assert_eq!(ok.body["data"]["__typename"], "Query");
}

#[tokio::test]
async fn batches_and_broken_json_are_bad_requests() {
    let app = TestApp::spawn().await;
    for body in [
        r#"[{"query":"{ __typename }"}]"#,
        "{not json",
        r#"{"variables":{}}"#,
    ] {
        let response = app.request(post_raw(Some("application/json"), body)).await;
        assert_eq!(response.status, 400, "{body}");
        assert_eq!(code(&response.body), "BAD_REQUEST");
    }
}

#[tokio::test]
async fn an_oversize_body_is_refused_in_graphql_shape() {
    let app = TestApp::spawn().await;
    let padding = "x".repeat(70 * 1024);
    let body = json!({ "query": "{ __typename }", "variables": { "pad": padding } }).to_string();
    let response = app.request(post_raw(Some("application/json"), body)).await;
    assert_eq!(response.status, 413);
    assert_eq!(code(&response.body), "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn parse_and_validation_failures_carry_codes() {
    let app = TestApp::spawn().await;
    assert_eq!(
        code(&app.graphql("{ me { id ", json!({})).await),
        "GRAPHQL_PARSE_FAILED"
    );
    assert_eq!(
        code(&app.graphql("{ nope }", json!({})).await),
        "GRAPHQL_VALIDATION_FAILED"
    );
    // Introspection nests deeper than our own types can: 12 levels against a limit of 10.
    let mut nested = String::from("name");
    for _ in 0..9 {
        nested = format!("ofType {{ {nested} }}");
    }
    let body = app
        .graphql(
            &format!("{{ __schema {{ types {{ fields {{ type {{ {nested} }} }} }} }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    let shallow = app
        .graphql("{ __schema { types { fields { type { name } } } } }", json!({}))
        .await;
    assert!(shallow["errors"].is_null(), "{shallow}");
}

#[tokio::test]
async fn accept_decides_the_content_type_and_status() {
    let app = TestApp::spawn().await;
    let invalid = json!({ "query": "{ nope }" }).to_string();
    let mut request = post_raw(Some("application/json"), invalid.clone());
    request
        .headers_mut()
        .insert("accept", "application/graphql-response+json".parse().unwrap());
    let response = app.request(request).await;
    assert_eq!(response.status, 400);
    assert!(
        response.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/graphql-response+json")
    );
    let mut request = post_raw(Some("application/json"), invalid);
    request
        .headers_mut()
        .insert("accept", "application/json".parse().unwrap());
    let response = app.request(request).await;
    assert_eq!(response.status, 200);
    assert!(
        response.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // An execution error is still 200 with data on graphql-response+json.
    let mut request = post_raw(
        Some("application/json"),
        json!({ "query": "{ me { id } }" }).to_string(),
    );
    request
        .headers_mut()
        .insert("accept", "application/graphql-response+json".parse().unwrap());
    assert_eq!(app.request(request).await.status, 200);
}

#[tokio::test]
async fn health_readiness_and_request_ids() {
    let app = TestApp::spawn().await;
    let health = app
        .request(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(health.status, 200);
    let ready = app
        .request(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(ready.status, 200);
    assert!(!ready.headers["x-request-id"].is_empty());
    let echoed = app
        .request(
            Request::get("/healthz")
                .header("x-request-id", "trace-me-123")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(echoed.headers["x-request-id"], "trace-me-123");
    let missing = app
        .request(Request::get("/nowhere").body(Body::empty()).unwrap())
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn graphiql_is_served_in_development_only() {
    let app = TestApp::spawn().await;
    let page = app
        .request(Request::get("/graphiql").body(Body::empty()).unwrap())
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("graphiql"),
        "{}",
        &page.text[..200.min(page.text.len())]
    );
    let prod = TestApp::builder()
        .env("APP_ENV", "production")
        .env("JWT_KEYS", "/unused-because-keys-are-injected")
        .spawn()
        .await;
    let page = prod
        .request(Request::get("/graphiql").body(Body::empty()).unwrap())
        .await;
    assert_eq!(page.status, 404);
    let introspection = prod.graphql("{ __schema { types { name } } }", json!({})).await;
    assert!(introspection["errors"].is_array(), "{introspection}");
    let sdl = prod.graphql("{ _service { sdl } }", json!({})).await;
    assert!(
        sdl["data"]["_service"]["sdl"]
            .as_str()
            .unwrap()
            .contains("type User")
    );
}

#[tokio::test]
async fn register_login_and_me_over_a_real_socket() {
    let app = TestApp::spawn().await;
    let addr = app.serve_tcp().await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/graphql");
    let address = email("tcp");
    let registered: Value = client
        .post(&url)
        .json(&json!({ "query": REGISTER, "variables": { "input": { "email": address, "password": PASSWORD } } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = registered["data"]["register"]["accessToken"].as_str().unwrap();
    let response = client
        .post(&url)
        .bearer_auth(token)
        .json(&json!({ "query": ME }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["data"]["me"]["email"], address);
    // The session remembers the client's user agent.
    let sessions: Value = client
        .post(&url)
        .bearer_auth(token)
        .header("user-agent", "authgraph-tests/1.0")
        .json(&json!({ "query": "{ me { sessions { userAgent } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(sessions["data"]["me"]["sessions"].is_array(), "{sessions}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn aliases_are_limited_even_through_fragments() {
    let app = TestApp::spawn().await;
    let ten: String = (0..10).map(|i| format!("a{i}: __typename ")).collect();
    assert!(app.graphql(&format!("{{ {ten} }}"), json!({})).await["errors"].is_null());
    let eleven = format!("{{ {ten} b: __typename }}");
    assert_eq!(
        code(&app.graphql(&eleven, json!({})).await),
        "GRAPHQL_VALIDATION_FAILED"
    );
    let spread = "query { ...F ...G } fragment F on Query { a: __typename b: __typename c: __typename d: __typename e: __typename f: __typename } fragment G on Query { ...F }";
    assert_eq!(
        code(&app.graphql(spread, json!({})).await),
        "GRAPHQL_VALIDATION_FAILED"
    );
    let logins: String = (0..11)
        .map(|i| {
            format!("l{i}: login(input: {{email: \"a@b.co\", password: \"password{i}\"}}) {{ accessToken }} ")
        })
        .collect();
    let body = app.graphql(&format!("mutation {{ {logins} }}"), json!({})).await;
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
}
