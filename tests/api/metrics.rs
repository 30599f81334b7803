//! `/metrics` and request ids, through the real router.

use axum::{body::Body, http::Request};
use serde_json::json;

use crate::support::{PASSWORD, TestApp, email};

/// The value of the sample whose line starts with `series` (name and labels), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn scrape(app: &TestApp) -> String {
    let response = app
        .request(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status, 200);
    let content_type = response.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text
}

#[tokio::test]
async fn metrics_count_requests_operations_and_logins() {
    let app = TestApp::spawn().await;
    let address = email("metrics");
    app.register(&address, PASSWORD).await;
    let login = "mutation MetricsProbeLogin($input: LoginInput!) { login(input: $input) { accessToken } }";
    let before = scrape(&app).await;
    let failed = "authgraph_logins_total{outcome=\"invalid_credentials\"}";
    let failed_before = sample(&before, failed).unwrap_or(0.0);
    app.graphql(
        login,
        json!({ "input": { "email": address, "password": "not the password" } }),
    )
    .await;
    app.graphql(
        login,
        json!({ "input": { "email": address, "password": PASSWORD } }),
    )
    .await;
    app.request(Request::get("/no/such/route/4711").body(Body::empty()).unwrap())
        .await;

    let text = scrape(&app).await;
    assert!(sample(&text, failed).unwrap() > failed_before, "{text}");
    assert!(sample(&text, "authgraph_logins_total{outcome=\"success\"}").unwrap() >= 1.0);
    assert_eq!(
        sample(
            &text,
            "authgraph_graphql_operations_total{operation=\"MetricsProbeLogin\",type=\"mutation\",outcome=\"error\",code=\"INVALID_CREDENTIALS\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "authgraph_graphql_operations_total{operation=\"MetricsProbeLogin\",type=\"mutation\",outcome=\"ok\",code=\"none\"}"
        ),
        Some(1.0)
    );
    assert!(text.contains(
        "authgraph_graphql_operation_duration_seconds_bucket{operation=\"MetricsProbeLogin\",type=\"mutation\",outcome=\"ok\",le=\"+Inf\"} 1"
    ));
    // Routes are templates: a 404 is `unmatched`, never its raw path.
    assert!(
        sample(
            &text,
            "authgraph_http_requests_total{method=\"POST\",route=\"/graphql\",status=\"200\"}"
        )
        .is_some()
    );
    assert!(
        sample(
            &text,
            "authgraph_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        )
        .is_some()
    );
    // The raw path as a label value (a sample's value may hold the digits 4711 by chance).
    assert!(!text.contains("/no/such/route"), "{text}");
    for series in [
        "authgraph_password_hash_queue_depth",
        "authgraph_password_hash_duration_seconds_count{op=\"verify\"}",
        "authgraph_db_pool_connections",
        "authgraph_db_pool_idle_connections",
        "authgraph_db_pool_max_connections",
        "authgraph_db_pool_gets_total{result=\"timed_out\"}",
        "authgraph_db_pool_wait_duration_seconds_count",
    ] {
        assert!(sample(&text, series).is_some(), "no {series} in {text}");
    }
    // No label value is an email, and no series names a user.
    assert!(!text.contains(&address));
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_anything_else_replaced() {
    let app = TestApp::spawn().await;
    let id_of = |headers: &axum::http::HeaderMap| headers["x-request-id"].to_str().unwrap().to_owned();
    let ok = app
        .post(
            "{ __typename }",
            json!({}),
            &[("x-request-id", "edge-7f3a:1.2_x")],
        )
        .await;
    assert_eq!(id_of(&ok.headers), "edge-7f3a:1.2_x");

    let long = "a".repeat(129);
    for junk in ["two words", "<script>", "line\tbreak", long.as_str()] {
        let response = app
            .post("{ __typename }", json!({}), &[("x-request-id", junk)])
            .await;
        let id = id_of(&response.headers);
        assert_ne!(id, junk);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "a fresh id, not {id}");
    }
    let none = app.post("{ __typename }", json!({}), &[]).await;
    assert!(uuid::Uuid::parse_str(&id_of(&none.headers)).is_ok());
}
