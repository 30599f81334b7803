//! Support for the abuse tests: requests from other client addresses, and error codes.

use std::net::SocketAddr;

use axum::{
    Router,
    body::Body,
    extract::connect_info::MockConnectInfo,
    http::{Request, StatusCode},
};
use serde_json::{Value, json};

use super::{
    app::{TestApp, TestResponse, send},
    ops::LOGIN,
};

/// The real router over `app`'s state, as if every request came from `peer`.
pub fn router_from(app: &TestApp, peer: &str) -> Router {
    let peer: SocketAddr = peer.parse().unwrap();
    authgraph::app(app.state.clone()).layer(MockConnectInfo(peer))
}

/// POSTs a GraphQL operation through `router` with extra headers.
pub async fn post_via(
    router: &Router,
    query: &str,
    variables: Value,
    headers: &[(&str, &str)],
) -> TestResponse {
    let mut builder = Request::post("/graphql").header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = json!({ "query": query, "variables": variables }).to_string();
    send(router, builder.body(Body::from(body)).unwrap()).await
}

/// A login through `router`; answers the JSON body.
pub async fn login_via(router: &Router, email: &str, password: &str) -> Value {
    let response = post_via(
        router,
        LOGIN,
        json!({ "input": { "email": email, "password": password } }),
        &[],
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    response.body
}

/// The codes of every error of a response, in order.
pub fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// How many errors of a response have `code`.
pub fn count_code(body: &Value, code: &str) -> usize {
    codes(body).iter().filter(|c| *c == code).count()
}
