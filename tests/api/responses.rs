//! Responses as clients rely on them (issue 11): every nullable key present, keys in
//! selection order, and a client's mistakes coded as the client's, never as internal.

use axum::{body::Body, http::Request};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::{LOGIN, PASSWORD, TestApp, code, email};

const OTHER_USER: &str = "query($id: ID!) { user(id: $id) { id email sessions { id } } }";

#[tokio::test]
async fn a_forbidden_nullable_field_is_present_as_null() {
    let app = TestApp::spawn().await;
    let alice = app.register(&email("alice"), PASSWORD).await;
    let bob = app.register(&email("bob"), PASSWORD).await;
    let token = bob["accessToken"].as_str().unwrap();
    let id = alice["user"]["id"].as_str().unwrap();

    let body = app.graphql_as(token, OTHER_USER, json!({ "id": id })).await;
    let user = body["data"]["user"].as_object().expect("the user is there");
    assert_eq!(user["id"], id);
    for key in ["email", "sessions"] {
        assert!(user.contains_key(key), "`{key}` missing from {body}");
        assert_eq!(user[key], Value::Null, "{body}");
    }
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{body}");
    for error in errors {
        assert_eq!(error["extensions"]["code"], "FORBIDDEN", "{body}");
        assert_eq!(error["path"][0], "user");
    }

    let entities = app
        .graphql_as(
            token,
            r#"query($r: [_Any!]!) { _entities(representations: $r) { ... on User { id email } } }"#,
            json!({ "r": [{ "__typename": "User", "id": id }] }),
        )
        .await;
    let entity = entities["data"]["_entities"][0].as_object().expect("entity");
    assert!(entity.contains_key("email"), "{entities}");
    assert_eq!(entity["email"], Value::Null);
    assert_eq!(code(&entities), "FORBIDDEN");
}

#[tokio::test]
async fn response_keys_follow_the_selection_order() {
    let app = TestApp::spawn().await;
    let address = email("order");
    app.register(&address, PASSWORD).await;
    let response = app
        .post(
            "mutation($input: LoginInput!) { login(input: $input) { accessToken refreshToken expiresIn user { id email } } }",
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[],
        )
        .await;
    let text = &response.text;
    let at = |key: &str| {
        text.find(&format!("\"{key}\""))
            .unwrap_or_else(|| panic!("{key} in {text}"))
    };
    assert!(at("accessToken") < at("refreshToken"), "{text}");
    assert!(at("refreshToken") < at("expiresIn"), "{text}");
    assert!(at("expiresIn") < at("user"), "{text}");
    assert!(at("id") < at("email"), "{text}");
}

#[tokio::test]
async fn a_mistyped_variable_is_bad_user_input_before_execution() {
    let app = TestApp::spawn().await;
    let response = app.post(LOGIN, json!({ "input": 42 }), &[]).await;
    assert_eq!(code(&response.body), "BAD_USER_INPUT", "{}", response.text);
    assert!(
        response.body.get("data").is_none(),
        "not executed: {}",
        response.text
    );
    assert_eq!(response.body["errors"][0]["extensions"]["field"], "input");

    let strict = app
        .post(
            LOGIN,
            json!({ "input": { "email": "a@b.co", "password": ["hunter2-secret"] } }),
            &[("accept", "application/graphql-response+json")],
        )
        .await;
    assert_eq!(strict.status, 400, "{}", strict.text);
    assert_eq!(code(&strict.body), "BAD_USER_INPUT");
    assert_eq!(strict.body["errors"][0]["extensions"]["field"], "password");
    assert!(
        !strict.text.contains("hunter2"),
        "the value is never quoted: {}",
        strict.text
    );

    for (variables, field) in [
        (json!({}), "input"),
        (json!({ "input": null }), "input"),
        (json!({ "input": { "email": "a@b.co" } }), "password"),
        (
            json!({ "input": { "email": "a@b.co", "password": "x", "extra": 1 } }),
            "extra",
        ),
    ] {
        let body = app.graphql(LOGIN, variables.clone()).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{variables}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn operation_selection_errors_are_the_clients() {
    let app = TestApp::spawn().await;
    let unknown = app
        .request(
            Request::post("/graphql")
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({ "query": "{__typename}", "operationName": "Xylophone" }).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(code(&unknown.body), "BAD_USER_INPUT", "{}", unknown.text);
    assert!(
        !unknown.text.contains("Xylophone"),
        "input is not echoed: {}",
        unknown.text
    );
    assert!(unknown.body.get("data").is_none());

    let two = app.graphql("{ __typename } { __typename }", json!({})).await;
    assert_eq!(code(&two), "GRAPHQL_VALIDATION_FAILED", "{two}");

    let which = app
        .graphql("query A { __typename } query B { __typename }", json!({}))
        .await;
    assert_eq!(code(&which), "BAD_USER_INPUT", "{which}");

    // GET honours operationName.
    let get = app
        .request(
            Request::get(
                "/graphql?query=query%20A%7B__typename%7D%20query%20B%7Bme%7Bid%7D%7D&operationName=A",
            )
            .body(Body::empty())
            .unwrap(),
        )
        .await;
    assert_eq!(get.body["data"]["__typename"], "Query", "{}", get.text);

    let entity = app
        .graphql(
            r#"query($r: [_Any!]!) { _entities(representations: $r) { __typename } }"#,
            json!({ "r": [{ "__typename": "Nope", "id": "x" }] }),
        )
        .await;
    assert_eq!(code(&entity), "BAD_USER_INPUT", "{entity}");
}

/// Every operation of the schema, with the variables it declares.
const OPERATIONS: &[&str] = &[
    "mutation($input: RegisterInput!) { register(input: $input) { accessToken } }",
    "mutation($input: LoginInput!) { login(input: $input) { accessToken } }",
    "mutation($t: String) { refresh(refreshToken: $t) { accessToken } }",
    "mutation($t: String, $all: Boolean!) { logout(refreshToken: $t, allSessions: $all) }",
    "mutation($id: ID!) { revokeSession(id: $id) }",
    "mutation($input: UpdateProfileInput!) { updateProfile(input: $input) { id } }",
    "mutation($input: ChangePasswordInput!) { changePassword(input: $input) { accessToken } }",
    "mutation { requestEmailVerification }",
    "mutation($t: String!) { verifyEmail(token: $t) }",
    "mutation($e: String!) { requestPasswordReset(email: $e) }",
    "mutation($input: ResetPasswordInput!) { resetPassword(input: $input) }",
    "mutation($p: String) { deleteAccount(password: $p) }",
    "query($id: ID!) { user(id: $id) { id email sessions { id } } }",
    "query { me { id email sessions { id current } } }",
    "query($r: [_Any!]!) { _entities(representations: $r) { ... on User { id email } } }",
];

fn variable_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z@. ]{0,12}".prop_map(Value::from),
        Just(json!({ "__typename": "User", "id": "00000000-0000-0000-0000-000000000000" })),
        Just(json!({ "email": "x@y.zz", "password": "p" })),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn variables() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop_oneof![
            Just("input".to_owned()),
            Just("t".to_owned()),
            Just("id".to_owned()),
            Just("all".to_owned()),
            Just("e".to_owned()),
            Just("p".to_owned()),
            Just("r".to_owned()),
            "[a-z]{1,5}",
        ],
        variable_value(),
        0..4,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Wrong-typed, missing, null and extra variables on every operation, with and without
/// a token: whatever the client sends, `INTERNAL_SERVER_ERROR` never answers it.
#[test]
fn no_variable_makes_an_internal_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (app, token) = runtime.block_on(async {
        let app = TestApp::spawn().await;
        let payload = app.register(&email("sweep"), PASSWORD).await;
        let token = payload["accessToken"].as_str().unwrap().to_owned();
        (app, token)
    });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(96));
    runner
        .run(
            &(0..OPERATIONS.len(), variables(), any::<bool>()),
            |(op, vars, signed_in)| {
                let body = runtime.block_on(async {
                    if signed_in {
                        app.graphql_as(&token, OPERATIONS[op], vars.clone()).await
                    } else {
                        app.graphql(OPERATIONS[op], vars.clone()).await
                    }
                });
                for error in body["errors"].as_array().into_iter().flatten() {
                    prop_assert_ne!(
                        &error["extensions"]["code"],
                        "INTERNAL_SERVER_ERROR",
                        "{} with {} answered {}",
                        OPERATIONS[op],
                        vars,
                        body
                    );
                }
                Ok(())
            },
        )
        .unwrap();
}

#[tokio::test]
async fn a_request_past_request_timeout_is_cancelled_and_writes_nothing() {
    let app = TestApp::builder().env("REQUEST_TIMEOUT", "1ms").spawn().await;
    let body = app
        .graphql(
            crate::support::REGISTER,
            json!({ "input": { "email": email("slow"), "password": PASSWORD } }),
        )
        .await;
    assert_eq!(code(&body), "SERVICE_UNAVAILABLE", "{body}");
    assert!(body.get("data").is_none() || body["data"].is_null(), "{body}");
    // Cancelled before its transaction committed: no user, no session, no mail.
    for table in ["users", "sessions", "outbox"] {
        let n = crate::support::count(&app, &format!("select count(*) as n from {table}")).await;
        assert_eq!(n, 0, "{table} has a row from a cancelled request");
    }
}
