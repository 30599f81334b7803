//! One test per attack of issue 5 (section 8), each proving the refusal is coded and that
//! the mutation did not run. (Timing equality of unknown-email and wrong-password logins
//! is measured in the benchmark, not here.)

use axum::{body::Body, http::Request};
use serde_json::json;

use crate::support::{
    PASSWORD, TestApp, code, count, count_code, email, login_via, router_from, sessions, users,
};

fn register_mutation(address: &str) -> String {
    format!(
        r#"mutation {{ register(input: {{ email: "{address}", password: "{PASSWORD}" }}) {{ accessToken }} }}"#
    )
}

fn aliased_logins(address: &str, n: usize, last_password: &str) -> String {
    let fields: String = (0..n)
        .map(|i| {
            let password = if i + 1 == n {
                last_password.to_owned()
            } else {
                format!("guess number {i}")
            };
            format!(
                r#"l{i}: login(input: {{ email: "{address}", password: "{password}" }}) {{ accessToken }} "#
            )
        })
        .collect();
    format!("mutation {{ {fields} }}")
}

async fn throttle_rows(app: &TestApp) -> i64 {
    count(app, "select count(*) as n from throttle_counters").await
}

#[tokio::test]
async fn a_hundred_aliased_logins_are_refused_whole() {
    let app = TestApp::spawn().await;
    let address = email("alias");
    app.register(&address, PASSWORD).await;
    let before = (sessions(&app).await, throttle_rows(&app).await);
    let body = app
        .graphql(&aliased_logins(&address, 100, PASSWORD), json!({}))
        .await;
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    assert!(body["data"].is_null());
    assert_eq!(
        (sessions(&app).await, throttle_rows(&app).await),
        before,
        "no login ran: no session, no counted attempt"
    );
}

#[tokio::test]
async fn with_aliases_allowed_a_hundred_logins_still_get_five_password_checks() {
    let app = TestApp::builder()
        .env("GRAPHQL_MAX_ALIASES", "200")
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "5/24h,1h..1h")
        .spawn()
        .await;
    let address = email("alias-allowed");
    app.register(&address, PASSWORD).await;
    let before = sessions(&app).await;
    // 99 guesses, then the right password in the 100th alias.
    let body = app
        .graphql(&aliased_logins(&address, 100, PASSWORD), json!({}))
        .await;
    assert_eq!(count_code(&body, "INVALID_CREDENTIALS"), 5, "{body}");
    assert_eq!(count_code(&body, "RATE_LIMITED"), 95);
    assert_eq!(
        sessions(&app).await,
        before,
        "the right password in alias 100 was refused too"
    );
}

#[tokio::test]
async fn a_batched_array_is_refused_and_runs_nothing() {
    let app = TestApp::spawn().await;
    let batch = json!([
        { "query": register_mutation(&email("batch1")) },
        { "query": register_mutation(&email("batch2")) },
    ])
    .to_string();
    let response = app
        .request(
            Request::post("/graphql")
                .header("content-type", "application/json")
                .body(Body::from(batch))
                .unwrap(),
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(code(&response.body), "BAD_REQUEST");
    assert_eq!(users(&app).await, 0);
}

#[tokio::test]
async fn a_mutation_over_get_is_refused_and_runs_nothing() {
    let app = TestApp::spawn().await;
    let query: String = register_mutation(&email("get"))
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let response = app
        .request(
            Request::get(format!("/graphql?query={query}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status, 405);
    assert_eq!(code(&response.body), "METHOD_NOT_ALLOWED");
    assert_eq!(users(&app).await, 0);
}

#[tokio::test]
async fn text_plain_form_and_multipart_posts_are_refused_and_run_nothing() {
    let app = TestApp::spawn().await;
    let mutation = register_mutation(&email("csrf"));
    let json_body = json!({ "query": mutation }).to_string();
    let form_body = format!(
        "query={}",
        mutation
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            })
            .collect::<String>()
    );
    let multipart_body = format!(
        "--x\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{json_body}\r\n--x\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{{}}\r\n--x--\r\n"
    );
    // What a cross-site <form> or fetch without preflight can send.
    for (content_type, body) in [
        ("text/plain", json_body.clone()),
        ("text/plain;charset=UTF-8", json_body.clone()),
        ("application/x-www-form-urlencoded", form_body),
        ("multipart/form-data; boundary=x", multipart_body),
    ] {
        let response = app
            .request(
                Request::post("/graphql")
                    .header("content-type", content_type)
                    .header("origin", "https://evil.example.net")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status, 415, "{content_type}");
        assert_eq!(code(&response.body), "UNSUPPORTED_MEDIA_TYPE");
    }
    assert_eq!(users(&app).await, 0);
}

#[tokio::test]
async fn an_eleven_level_query_is_refused() {
    let app = TestApp::spawn().await;
    // `__schema` (1) types (2) fields (3) type (4) ofType x n (5..) name.
    let nested = |of_types: usize| {
        let mut inner = String::from("name");
        for _ in 0..of_types {
            inner = format!("ofType {{ {inner} }}");
        }
        format!("{{ __schema {{ types {{ fields {{ type {{ {inner} }} }} }} }} }}")
    };
    // Ten levels pass, eleven do not.
    let ten = app.graphql(&nested(5), json!({})).await;
    assert!(ten["errors"].is_null(), "{ten}");
    let eleven = app.graphql(&nested(6), json!({})).await;
    assert_eq!(code(&eleven), "GRAPHQL_VALIDATION_FAILED", "{eleven}");
    assert!(eleven["data"].is_null());
}

#[tokio::test]
async fn an_oversize_body_is_refused_and_runs_nothing() {
    let app = TestApp::spawn().await;
    let body = json!({
        "query": "mutation R($input: RegisterInput!) { register(input: $input) { accessToken } }",
        "variables": { "input": { "email": email("big"), "password": PASSWORD, "displayName": "x".repeat(70 * 1024) } },
    })
    .to_string();
    let response = app
        .request(
            Request::post("/graphql")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(response.status, 413);
    assert_eq!(code(&response.body), "PAYLOAD_TOO_LARGE");
    assert_eq!(users(&app).await, 0);
}

#[tokio::test]
async fn a_forged_x_forwarded_for_changes_nothing() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "3/24h,1h..1h")
        .env("HTTP_RATE_LIMIT", "1/h")
        .env("HTTP_RATE_LIMIT_BURST", "20")
        .spawn()
        .await;
    let address = email("forged");
    app.register(&address, PASSWORD).await;
    let mut answers = Vec::new();
    for n in 0..6 {
        let forged = format!("198.51.100.{n}");
        let body = app
            .post(
                crate::support::LOGIN,
                json!({ "input": { "email": address, "password": "a wrong guess here" } }),
                &[
                    ("x-forwarded-for", &forged),
                    ("forwarded", &format!("for={forged}")),
                ],
            )
            .await
            .body;
        answers.push(code(&body).to_owned());
    }
    // A fresh address per request did not buy fresh guesses...
    assert_eq!(&answers[3..], ["RATE_LIMITED"; 3]);
    // ...because every attempt was counted against the real peer only.
    let keys = count(
        &app,
        "select count(*) as n from throttle_counters where key like 'login.address:%'",
    )
    .await;
    let real = count(
        &app,
        "select count(*) as n from throttle_counters where key = 'login.address:203.0.113.7'",
    )
    .await;
    assert_eq!((keys, real), (1, 1));
    // Nor a fresh HTTP budget: the burst of 20 is one budget, whatever the headers say.
    let mut statuses = Vec::new();
    for n in 0..20 {
        let forged = format!("192.0.2.{n}");
        statuses.push(
            app.post("{ __typename }", json!({}), &[("x-forwarded-for", &forged)])
                .await
                .status,
        );
    }
    assert!(statuses.contains(&axum::http::StatusCode::TOO_MANY_REQUESTS));
    // The owner elsewhere is unaffected.
    let owner = router_from(&app, "192.0.2.200:1");
    assert!(login_via(&owner, &address, PASSWORD).await["errors"].is_null());
}

#[tokio::test]
async fn circular_fragments_and_directive_floods_are_refused() {
    let app = TestApp::spawn().await;
    let circular = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
    let body = app.graphql(circular, json!({})).await;
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    assert!(body["data"].is_null());
    let directives = "@include(if: true) ".repeat(50);
    let flood = format!("{{ __typename {directives} }}");
    assert_eq!(
        code(&app.graphql(&flood, json!({})).await),
        "GRAPHQL_VALIDATION_FAILED"
    );
}

#[tokio::test]
async fn a_deeply_nested_literal_is_refused_before_the_parser_sees_it() {
    // 2000 nested lists fit in 10 KiB and would overflow the parser's stack, aborting the
    // whole process; over GET too, where the mutation check parses the document.
    let app = TestApp::spawn().await;
    let list = format!("{}1{}", "[".repeat(2000), "]".repeat(2000));
    let document = format!("{{ user(id: {list}) {{ id }} }}");
    let body = app.graphql(&document, json!({})).await;
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    let encoded: String = document
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let response = app
        .request(
            Request::get(format!("/graphql?query={encoded}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(code(&response.body), "GRAPHQL_VALIDATION_FAILED");
}

/// `{...F0} fragment F0 on Query{...F1 ...F1} ... fragment F{levels} on Query{leaf}`: 1.3 KB
/// at 30 levels, 2^30 selections once expanded.
fn spread_doubling(levels: usize, leaf: &str) -> String {
    let mut doc = String::from("{...F0}");
    for i in 0..levels {
        doc += &format!(" fragment F{i} on Query{{...F{n} ...F{n}}}", n = i + 1);
    }
    doc + &format!(" fragment F{levels} on Query{{{leaf}}}")
}

#[tokio::test]
async fn a_spread_doubling_document_is_refused_before_it_is_expanded() {
    // Before the expansion bound, 30 levels grew the process until the kernel killed it.
    let app = TestApp::spawn().await;
    for leaf in ["__typename", "me { id }"] {
        let body = app.graphql(&spread_doubling(30, leaf), json!({})).await;
        assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
        assert!(body.get("data").is_none(), "not executed: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or("");
        assert!(message.contains("too many fields"), "{message}");
    }
    let cycle = app
        .graphql(
            "{...A} fragment A on Query{...B} fragment B on Query{...A}",
            json!({}),
        )
        .await;
    assert_eq!(code(&cycle), "GRAPHQL_VALIDATION_FAILED", "{cycle}");
    // A small expansion of the same shape still runs.
    let small = app.graphql(&spread_doubling(3, "__typename"), json!({})).await;
    assert_eq!(small["data"]["__typename"], "Query", "{small}");
}
