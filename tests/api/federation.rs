//! Federation v2: `_entities` for `User` (batched, with the rules of `user(id)`) and
//! `_service { sdl }` (no token, introspection off).

use serde_json::{Value, json};

use crate::support::{PASSWORD, SqlLog, TestApp, code, email};

const ENTITIES: &str = "query Entities($representations: [_Any!]!) {
  _entities(representations: $representations) { ... on User { id displayName } }
}";

fn users(ids: &[&str]) -> Value {
    json!({ "representations": ids.iter().map(|id| json!({ "__typename": "User", "id": id })).collect::<Vec<_>>() })
}

async fn registered(app: &TestApp, tag: &str) -> (String, String) {
    let payload = app.register(&email(tag), PASSWORD).await;
    (
        payload["user"]["id"].as_str().unwrap().to_owned(),
        payload["accessToken"].as_str().unwrap().to_owned(),
    )
}

/// Statements that read users by a list of ids (the loader's query).
fn batched_reads(statements: &[String]) -> usize {
    statements
        .iter()
        .filter(|s| s.contains("FROM \"users\"") && s.contains("= ANY("))
        .count()
}

#[tokio::test]
async fn entities_resolve_in_order_with_null_for_unknown_ids() {
    let app = TestApp::spawn().await;
    let (a, token) = registered(&app, "ent-a").await;
    let (b, _) = registered(&app, "ent-b").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let body = app
        .graphql_as(&token, ENTITIES, users(&[&b, &unknown, &a, "not-a-uuid"]))
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let entities = body["data"]["_entities"].as_array().unwrap();
    assert_eq!(entities.len(), 4);
    assert_eq!(entities[0]["id"], b.as_str());
    assert!(entities[1].is_null());
    assert_eq!(entities[2]["id"], a.as_str());
    assert!(entities[3].is_null());
}

#[tokio::test]
async fn n_representations_cost_one_users_query() {
    let app = TestApp::spawn().await;
    let log = SqlLog::watch(&app.db.name);
    let (_, token) = registered(&app, "batch-viewer").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(registered(&app, &format!("batch-{i}")).await.0);
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();

    log.take();
    let one = app.graphql_as(&token, ENTITIES, users(&ids[..1])).await;
    assert_eq!(one["data"]["_entities"].as_array().unwrap().len(), 1, "{one}");
    let for_one = log.take();

    let five = app.graphql_as(&token, ENTITIES, users(&ids)).await;
    assert_eq!(five["data"]["_entities"].as_array().unwrap().len(), 5, "{five}");
    let for_five = log.take();

    assert_eq!(batched_reads(&for_five), 1, "{for_five:#?}");
    assert_eq!(
        for_five.len(),
        for_one.len(),
        "five representations ran more statements than one:\n{for_five:#?}\nvs\n{for_one:#?}"
    );
}

#[tokio::test]
async fn entities_need_a_token() {
    let app = TestApp::spawn().await;
    let (a, _) = registered(&app, "ent-anon").await;
    let body = app.graphql(ENTITIES, users(&[&a])).await;
    assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");
    assert!(body["data"]["_entities"].is_null(), "{body}");
    let forged = app.graphql_as("not-a-jwt", ENTITIES, users(&[&a])).await;
    assert_eq!(code(&forged), "UNAUTHENTICATED", "{forged}");
}

#[tokio::test]
async fn entities_apply_the_user_field_rules() {
    let app = TestApp::spawn().await;
    let (a, token) = registered(&app, "ent-self").await;
    let (b, _) = registered(&app, "ent-other").await;
    let body = app
        .graphql_as(
            &token,
            "query($representations: [_Any!]!) { _entities(representations: $representations) { ... on User { id email } } }",
            users(&[&a, &b]),
        )
        .await;
    assert!(
        body["data"]["_entities"][0]["email"]
            .as_str()
            .unwrap()
            .starts_with("ent-self-")
    );
    assert!(body["data"]["_entities"][1]["email"].is_null(), "{body}");
    assert_eq!(code(&body), "FORBIDDEN");
    assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{body}");
    // async-graphql 7.2.1 leaves the list index out of paths inside `_entities`
    // (`["_entities", "email"]`); gateways still hand the code to the client
    // (tests/e2e/gateway.mjs), under the path of the entity fetch.
    assert_eq!(body["errors"][0]["path"][0], "_entities");
}

#[tokio::test]
async fn service_sdl_needs_no_token_and_is_schema_graphql() {
    let prod = TestApp::builder()
        .env("APP_ENV", "production")
        .env("JWT_KEYS", "/unused-because-keys-are-injected")
        .spawn()
        .await;
    let introspection = prod
        .graphql("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(code(&introspection), "GRAPHQL_VALIDATION_FAILED");
    let body = prod
        .post(
            "{ _service { sdl } }",
            json!({}),
            &[("authorization", "Bearer stale")],
        )
        .await
        .body;
    let sdl = body["data"]["_service"]["sdl"].as_str().unwrap();
    let on_disk = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    // `_service` adds blank lines where @composeDirective imports would go; we have none.
    assert_eq!(
        sdl.trim_end(),
        on_disk.trim_end(),
        "gateways compose what schema.graphql shows"
    );
    assert!(sdl.contains("type User @key(fields: \"id\")"));
    assert!(sdl.contains("https://specs.apollo.dev/federation/v2"));
}
