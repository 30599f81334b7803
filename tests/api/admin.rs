//! The admin API: guards, pagination, disabling, roles, step-up and the last admin.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::{
    mfa::{mfa_token, user_with_mfa, verify},
    support::{PASSWORD, REFRESH, TestApp, claims, code, email},
};

const USERS: &str = "query($first: Int, $after: String, $search: String) {
  users(first: $first, after: $after, search: $search) {
    edges { cursor node { id email displayName disabled } }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}";
const AUDIT: &str = "query($first: Int, $filter: AuditFilter) {
  auditEvents(first: $first, filter: $filter) { edges { node { type } } totalCount }
}";
const DISABLE: &str = "mutation($id: ID!) { disableUser(id: $id, reason: \"abuse\") { id disabled } }";
const ENABLE: &str = "mutation($id: ID!) { enableUser(id: $id) { id disabled } }";
const SET_ROLE: &str = "mutation($id: ID!, $role: Role!) { setUserRole(id: $id, role: $role) { id role } }";
const REVOKE: &str = "mutation($id: ID!) { revokeUserSessions(id: $id) }";
const RESET_MFA: &str = "mutation($id: ID!) { resetUserMfa(id: $id) { id } }";
const DISABLED: &str = "query($id: ID!) { user(id: $id) { id disabled } }";
const ME: &str = "{ me { id role } }";

/// A signed-up user: id, access and refresh tokens.
pub(crate) struct Account {
    pub(crate) email: String,
    pub(crate) id: String,
    pub(crate) access: String,
    pub(crate) refresh: String,
}

pub(crate) async fn account(app: &TestApp, tag: &str) -> Account {
    let address = email(tag);
    let payload = app.register(&address, PASSWORD).await;
    Account {
        email: address,
        id: payload["user"]["id"].as_str().unwrap().to_owned(),
        access: payload["accessToken"].as_str().unwrap().to_owned(),
        refresh: payload["refreshToken"].as_str().unwrap().to_owned(),
    }
}

/// A user made ADMIN by the operator (as `authgraph user set-role` does).
pub(crate) async fn admin(app: &TestApp) -> Account {
    let admin = account(app, "admin").await;
    app.sql(&format!(
        "update users set role = 'ADMIN' where id = '{}'",
        admin.id
    ))
    .await;
    admin
}

fn ok<'a>(body: &'a Value, field: &str) -> &'a Value {
    assert!(body["errors"].is_null(), "{field} failed: {body}");
    &body["data"][field]
}

#[tokio::test]
async fn a_user_gets_forbidden_on_every_admin_field_and_mutation() {
    let app = TestApp::spawn().await;
    let user = account(&app, "user").await;
    let other = account(&app, "other").await;
    let id = json!({ "id": other.id });
    let cases = [
        (USERS, json!({})),
        (AUDIT, json!({})),
        (DISABLED, id.clone()),
        (DISABLE, id.clone()),
        (ENABLE, id.clone()),
        (SET_ROLE, json!({ "id": other.id, "role": "ADMIN" })),
        (REVOKE, id.clone()),
        (RESET_MFA, id.clone()),
    ];
    for (query, vars) in &cases {
        let body = app.graphql_as(&user.access, query, vars.clone()).await;
        assert_eq!(code(&body), "FORBIDDEN", "{query}: {body}");
        let body = app.graphql(query, vars.clone()).await;
        assert_eq!(code(&body), "UNAUTHENTICATED", "{query}: {body}");
    }
    // A USER cannot promote themself either, and nothing changed.
    let body = app
        .graphql_as(&user.access, SET_ROLE, json!({ "id": user.id, "role": "ADMIN" }))
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
    let me = app.graphql_as(&user.access, ME, json!({})).await;
    assert_eq!(me["data"]["me"]["role"], "USER");
    // `disabled` fails alone: the rest of the user still resolves.
    let body = app.graphql_as(&user.access, DISABLED, id).await;
    assert_eq!(body["data"]["user"]["id"], other.id.as_str());
    assert!(body["data"]["user"]["disabled"].is_null());
}

#[tokio::test]
async fn users_pages_through_250_users_with_concurrent_inserts_without_duplicates_or_gaps() {
    let app = TestApp::spawn().await;
    let admin = admin(&app).await;
    // 250 users, five to a creation time, so the id breaks ties across page boundaries.
    app.sql(
        "insert into users (email, password_hash, display_name, created_at)
         select 'bulk' || i || '@example.com', 'x', 'Bulk ' || i,
                now() - interval '1 day' + (i / 5) * interval '1 second'
         from generate_series(1, 250) i",
    )
    .await;
    let body = app
        .graphql_as(&admin.access, USERS, json!({ "first": 100, "search": "bulk" }))
        .await;
    assert_eq!(ok(&body, "users")["totalCount"], 250);

    let writer = {
        let url = app.db.url.clone();
        tokio::spawn(async move {
            use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
            let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
            for i in 0..40 {
                diesel::sql_query(format!(
                    "insert into users (email, password_hash) values ('late{i}@example.com', 'x')"
                ))
                .execute(&mut conn)
                .await
                .unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let body = app
            .graphql_as(&admin.access, USERS, json!({ "first": 7, "after": after }))
            .await;
        let page = ok(&body, "users");
        for edge in page["edges"].as_array().unwrap() {
            seen.push(edge["node"]["email"].as_str().unwrap().to_owned());
        }
        if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = Some(page["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
    }
    writer.await.unwrap();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a user was listed twice");
    for i in 1..=250 {
        assert!(
            unique.contains(&format!("bulk{i}@example.com")),
            "bulk{i} missing"
        );
    }
    assert!(unique.contains(&admin.email));

    // Search: email prefix and display-name prefix, case-insensitive, wildcards literal.
    let search = |s: &str| {
        let s = s.to_owned();
        let app = &app;
        let token = admin.access.clone();
        async move {
            let body = app
                .graphql_as(&token, USERS, json!({ "first": 100, "search": s }))
                .await;
            ok(&body, "users")["totalCount"].as_i64().unwrap()
        }
    };
    assert_eq!(search("BULK25").await, 2, "bulk25 and bulk250");
    assert_eq!(search("bulk 7").await, 11, "Bulk 7, Bulk 70..79");
    assert_eq!(search("bul_").await, 0);
    assert_eq!(search("late").await, 40);

    let body = app
        .graphql_as(&admin.access, USERS, json!({ "after": "garbage" }))
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "after");
    let body = app
        .graphql_as(&admin.access, USERS, json!({ "first": 101 }))
        .await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "first");
}

#[tokio::test]
async fn disable_takes_effect_on_the_next_request_and_sign_in_then_answers_account_disabled() {
    let app = TestApp::spawn().await;
    let admin = admin(&app).await;
    let user = account(&app, "target").await;
    let id = json!({ "id": user.id });
    assert_eq!(
        ok(&app.graphql_as(&user.access, ME, json!({})).await, "me")["id"],
        user.id.as_str()
    );

    let body = app.graphql_as(&admin.access, DISABLE, id.clone()).await;
    assert_eq!(ok(&body, "disableUser")["disabled"], true);

    // The very next request of the existing token, and its refresh token.
    let body = app.graphql_as(&user.access, ME, json!({})).await;
    assert_eq!(code(&body), "UNAUTHENTICATED");
    let body = app.graphql(REFRESH, json!({ "t": user.refresh })).await;
    assert_eq!(code(&body), "INVALID_TOKEN");
    // Only valid credentials learn that the account is disabled.
    assert_eq!(
        code(&app.login(&user.email, "wrong password!").await),
        "INVALID_CREDENTIALS"
    );
    assert_eq!(code(&app.login(&user.email, PASSWORD).await), "ACCOUNT_DISABLED");
    let body = app.graphql_as(&admin.access, DISABLED, id.clone()).await;
    assert_eq!(ok(&body, "user")["disabled"], true);

    let body = app.graphql_as(&admin.access, ENABLE, id.clone()).await;
    assert_eq!(ok(&body, "enableUser")["disabled"], false);
    let body = app.login(&user.email, PASSWORD).await;
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn a_disabled_user_with_a_factor_gets_mfa_required_then_account_disabled() {
    let app = TestApp::spawn().await;
    let admin = admin(&app).await;
    let mut user = user_with_mfa(&app, "mfa-target").await;
    let id = app.graphql_as(&user.access, ME, json!({})).await["data"]["me"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        &app.graphql_as(&admin.access, DISABLE, json!({ "id": id })).await,
        "disableUser",
    );
    let token = mfa_token(&app, &user.email).await;
    let body = verify(&app, Some(&token), &user.app.code().await).await;
    assert_eq!(code(&body), "ACCOUNT_DISABLED", "{body}");

    // resetUserMfa: the factor goes, so sign-in needs the password alone again.
    ok(
        &app.graphql_as(&admin.access, ENABLE, json!({ "id": id })).await,
        "enableUser",
    );
    ok(
        &app.graphql_as(&admin.access, RESET_MFA, json!({ "id": id }))
            .await,
        "resetUserMfa",
    );
    let body = app.login(&user.email, PASSWORD).await;
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn admin_mutations_need_step_up() {
    let app = TestApp::builder().env("STEP_UP_MAX_AGE", "1s").spawn().await;
    let admin = admin(&app).await;
    let user = account(&app, "target").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    for (query, vars) in [
        (DISABLE, json!({ "id": user.id })),
        (ENABLE, json!({ "id": user.id })),
        (SET_ROLE, json!({ "id": user.id, "role": "ADMIN" })),
        (REVOKE, json!({ "id": user.id })),
        (RESET_MFA, json!({ "id": user.id })),
    ] {
        let body = app.graphql_as(&admin.access, query, vars).await;
        assert_eq!(code(&body), "INSUFFICIENT_USER_AUTHENTICATION", "{query}: {body}");
    }
    // Reads need no step-up.
    ok(&app.graphql_as(&admin.access, USERS, json!({})).await, "users");
}

#[tokio::test]
async fn the_last_admin_cannot_demote_or_disable_themself() {
    let app = TestApp::spawn().await;
    let first = admin(&app).await;
    let mine = json!({ "id": first.id, "role": "USER" });
    assert_eq!(
        code(&app.graphql_as(&first.access, SET_ROLE, mine.clone()).await),
        "FORBIDDEN"
    );
    let body = app
        .graphql_as(&first.access, DISABLE, json!({ "id": first.id }))
        .await;
    assert_eq!(code(&body), "FORBIDDEN");

    // With a second admin, the first may step down; then the second is the last.
    let second = account(&app, "second").await;
    let promote = json!({ "id": second.id, "role": "ADMIN" });
    ok(
        &app.graphql_as(&first.access, SET_ROLE, promote).await,
        "setUserRole",
    );
    ok(
        &app.graphql_as(&first.access, SET_ROLE, mine).await,
        "setUserRole",
    );
    let body = app
        .graphql_as(
            &second.access,
            SET_ROLE,
            json!({ "id": second.id, "role": "USER" }),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
    // The demotion applied at once: the first admin's token is a USER's now.
    assert_eq!(
        code(&app.graphql_as(&first.access, USERS, json!({})).await),
        "FORBIDDEN"
    );
}

#[tokio::test]
async fn refresh_issues_the_current_role_and_scope_and_revoke_user_sessions_counts() {
    let app = TestApp::spawn().await;
    let admin = admin(&app).await;
    let user = account(&app, "promoted").await;
    assert_eq!(claims(&user.access)["scope"], "user");
    let promote = json!({ "id": user.id, "role": "ADMIN" });
    ok(
        &app.graphql_as(&admin.access, SET_ROLE, promote).await,
        "setUserRole",
    );
    let body = app.graphql(REFRESH, json!({ "t": user.refresh })).await;
    let access = ok(&body, "refresh")["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(claims(&access)["role"], "ADMIN");
    assert_eq!(claims(&access)["scope"], "user admin");

    app.login(&user.email, PASSWORD).await;
    let body = app
        .graphql_as(&admin.access, REVOKE, json!({ "id": user.id }))
        .await;
    assert_eq!(ok(&body, "revokeUserSessions"), 2);
    assert_eq!(
        code(&app.graphql_as(&access, ME, json!({})).await),
        "UNAUTHENTICATED"
    );
    let body = app
        .graphql_as(&admin.access, REVOKE, json!({ "id": uuid::Uuid::new_v4() }))
        .await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "id");
}
