//! The HTTP edge: the per-client rate limit, trusted proxies, and CORS.

use axum::{body::Body, http::Request};
use serde_json::json;

use crate::support::{PASSWORD, TestApp, TestResponse, code, count, email, login_via, router_from};

async fn typename(app: &TestApp, headers: &[(&str, &str)]) -> TestResponse {
    app.post("{ __typename }", json!({}), headers).await
}

#[tokio::test]
async fn a_client_over_the_http_limit_gets_429_in_graphql_shape() {
    let app = TestApp::builder()
        .env("HTTP_RATE_LIMIT", "1/h")
        .env("HTTP_RATE_LIMIT_BURST", "2")
        .spawn()
        .await;
    for _ in 0..2 {
        assert_eq!(typename(&app, &[]).await.status, 200);
    }
    let refused = typename(&app, &[]).await;
    assert_eq!(refused.status, 429);
    assert_eq!(code(&refused.body), "RATE_LIMITED");
    let retry_after: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(refused.body["errors"][0]["extensions"]["retryAfter"], retry_after);
    assert!(
        refused.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(!refused.headers["x-request-id"].is_empty());
    let negotiated = typename(&app, &[("accept", "application/graphql-response+json")]).await;
    assert_eq!(negotiated.status, 429);
    assert!(
        negotiated.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/graphql-response+json")
    );
    // Every route but the probes is behind it (see below), and only this client is.
    let jwks = app
        .request(
            Request::get("/.well-known/jwks.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(jwks.status, 429);
}

#[tokio::test]
async fn each_client_behind_a_trusted_proxy_has_its_own_budget() {
    let app = TestApp::builder()
        .env("HTTP_RATE_LIMIT", "1/h")
        .env("HTTP_RATE_LIMIT_BURST", "1")
        // The test client (203.0.113.7) plays the load balancer.
        .env("TRUSTED_PROXIES", "203.0.113.0/24")
        .spawn()
        .await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    assert_eq!(typename(&app, &from("198.51.100.1")).await.status, 200);
    assert_eq!(typename(&app, &from("198.51.100.2")).await.status, 200);
    assert_eq!(typename(&app, &from("198.51.100.1")).await.status, 429);
    // IPv6 clients share the budget of their /64.
    assert_eq!(typename(&app, &from("2001:db8:0:1::1")).await.status, 200);
    assert_eq!(typename(&app, &from("2001:db8:0:1::2")).await.status, 429);
}

#[tokio::test]
async fn the_login_throttle_counts_the_forwarded_client_behind_a_trusted_proxy() {
    let app = TestApp::builder()
        .env("TRUSTED_PROXIES", "203.0.113.7")
        .spawn()
        .await;
    let address = email("proxied");
    app.register(&address, PASSWORD).await;
    let login = json!({ "input": { "email": address, "password": "wrong password here" } });
    // The client prepended a forged hop; the proxy appended the real address.
    app.post(
        crate::support::LOGIN,
        login,
        &[("x-forwarded-for", "10.9.9.9, 198.51.100.23")],
    )
    .await;
    let keyed =
        |ip: &str| format!("select count(*) as n from throttle_counters where key = 'login.address:{ip}'");
    assert_eq!(count(&app, &keyed("198.51.100.23")).await, 1);
    assert_eq!(count(&app, &keyed("10.9.9.9")).await, 0);
    assert_eq!(count(&app, &keyed("203.0.113.7")).await, 0);
}

fn preflight(origin: &str) -> Request<Body> {
    Request::builder()
        .method("OPTIONS")
        .uri("/graphql")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-token-delivery",
        )
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn cors_admits_the_configured_origins_with_credentials() {
    let app = TestApp::builder()
        .env(
            "CORS_ALLOWED_ORIGINS",
            "https://app.example.com, http://localhost:3000/",
        )
        .spawn()
        .await;
    let answer = app.request(preflight("https://app.example.com")).await;
    assert!(answer.status.is_success(), "{}", answer.status);
    let h = &answer.headers;
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "3600");
    let allowed = h["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    for name in ["authorization", "content-type", "x-token-delivery"] {
        assert!(allowed.contains(name), "{allowed}");
    }
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    // The trailing slash of the configured origin does not matter.
    let local = app.request(preflight("http://localhost:3000")).await;
    assert_eq!(
        local.headers["access-control-allow-origin"],
        "http://localhost:3000"
    );
    // A real request exposes Retry-After to the script.
    let response = app
        .post(
            "{ __typename }",
            json!({}),
            &[("origin", "https://app.example.com")],
        )
        .await;
    assert_eq!(
        response.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let exposed = response.headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
}

#[tokio::test]
async fn cors_admits_no_other_origin_and_no_origin_by_default() {
    let app = TestApp::builder()
        .env("CORS_ALLOWED_ORIGINS", "https://app.example.com")
        .spawn()
        .await;
    for origin in [
        "https://evil.example.com",
        "https://app.example.com.evil.net",
        "null",
    ] {
        let answer = app.request(preflight(origin)).await;
        assert!(
            !answer.headers.contains_key("access-control-allow-origin"),
            "{origin}: {:?}",
            answer.headers
        );
        let response = app.post("{ __typename }", json!({}), &[("origin", origin)]).await;
        assert!(!response.headers.contains_key("access-control-allow-origin"));
        assert!(!response.headers.contains_key("access-control-allow-credentials"));
    }
    let closed = TestApp::builder().spawn().await;
    let answer = closed.request(preflight("https://app.example.com")).await;
    assert!(!answer.headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn the_throttle_and_the_http_limit_apply_to_a_real_socket() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "1/1h,1h..1h")
        .spawn()
        .await;
    let address = email("socket");
    app.register(&address, PASSWORD).await;
    let addr = app.serve_tcp().await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/graphql");
    let mut codes = Vec::new();
    for _ in 0..2 {
        let body: serde_json::Value = client
            .post(&url)
            .json(&json!({ "query": crate::support::LOGIN, "variables": { "input": { "email": address, "password": "wrong password here" } } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        codes.push(code(&body).to_owned());
    }
    assert_eq!(codes, ["INVALID_CREDENTIALS", "RATE_LIMITED"]);
    // Counted against the socket's peer (127.0.0.1), not the in-process test address.
    assert_eq!(
        count(
            &app,
            "select count(*) as n from throttle_counters where key = 'login.address:127.0.0.1'"
        )
        .await,
        1
    );
    // The test address has its own budget.
    let other = router_from(&app, "192.0.2.9:1");
    assert_eq!(
        code(&login_via(&other, &address, "wrong password here").await),
        "INVALID_CREDENTIALS"
    );
}

async fn get(app: &TestApp, path: &str) -> TestResponse {
    app.request(Request::get(path).body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn health_probes_answer_through_a_flood_and_metrics_has_its_own_budget() {
    let app = TestApp::builder()
        .env("HTTP_RATE_LIMIT", "1/h")
        .env("HTTP_RATE_LIMIT_BURST", "3")
        .spawn()
        .await;
    // The address floods the probes, in parallel: none is refused.
    let mut probes = tokio::task::JoinSet::new();
    for n in 0..150 {
        let router = app.router.clone();
        let path = if n % 2 == 0 { "/healthz" } else { "/readyz" };
        probes.spawn(async move {
            crate::support::send(&router, Request::get(path).body(Body::empty()).unwrap())
                .await
                .status
                .as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = probes.join_next().await {
        statuses.push(status.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // The same address's GraphQL budget is untouched by them, then spent.
    for _ in 0..3 {
        assert_eq!(typename(&app, &[]).await.status, 200);
    }
    assert_eq!(typename(&app, &[]).await.status, 429);
    // The probes still answer; /metrics has a budget of its own, so it still answers too.
    assert_eq!(get(&app, "/healthz").await.status, 200);
    assert_eq!(get(&app, "/readyz").await.status, 200);
    for _ in 0..3 {
        assert_eq!(get(&app, "/metrics").await.status, 200);
    }
    let refused = get(&app, "/metrics").await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(code(&refused.body), "RATE_LIMITED");
}
