//! The audit log: each security event recorded once, in its change's transaction, with
//! no secret; append-only; readable by admins (`auditEvents`) and by each user
//! (`securityEvents`, without an admin's address).

use std::collections::HashMap;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};

use crate::{
    admin::{Account, account, admin},
    mfa::{mfa_token, user_with_mfa, verify},
    support::{PASSWORD, REFRESH, REQUEST_RESET, RESET, TestApp, VERIFY, code, count},
};

const LOGOUT: &str = "mutation($t: String) { logout(refreshToken: $t) }";
const CHANGE_PASSWORD: &str =
    "mutation($input: ChangePasswordInput!) { changePassword(input: $input) { accessToken refreshToken } }";
const DELETE: &str = "mutation($p: String) { deleteAccount(password: $p) }";
const REMOVE_FACTOR: &str = "mutation($id: ID!) { removeFactor(id: $id) }";
const SET_ROLE: &str = "mutation($id: ID!, $role: Role!) { setUserRole(id: $id, role: $role) { id } }";
const DISABLE: &str = "mutation($id: ID!) { disableUser(id: $id, reason: \"spam\") { id } }";
const ENABLE: &str = "mutation($id: ID!) { enableUser(id: $id) { id } }";
const RESET_MFA: &str = "mutation($id: ID!) { resetUserMfa(id: $id) { id } }";
const SECURITY_EVENTS: &str =
    "{ me { securityEvents(first: 50) { type clientAddress userAgent actor { id } user { id } } } }";
const AUDIT: &str = "query($first: Int, $after: String, $filter: AuditFilter) {
  auditEvents(first: $first, after: $after, filter: $filter) {
    edges { node { id type createdAt user { id } actor { id } details } }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}";
const NEW_PASSWORD: &str = "another correct horse battery";
const RESET_PASSWORD: &str = "yet another correct horse battery";

async fn texts(app: &TestApp, query: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Text {
        #[diesel(sql_type = diesel::sql_types::Text)]
        t: String,
    }
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    let rows: Vec<Text> = diesel::sql_query(query).load(&mut conn).await.unwrap();
    rows.into_iter().map(|r| r.t).collect()
}

/// The token of the newest mail of `kind` to `user_id`, from its link.
async fn mailed_token(app: &TestApp, kind: &str, user_id: &str) -> String {
    let bodies = texts(
        app,
        &format!(
            "select body_text as t from outbox where kind = '{kind}' and user_id = '{user_id}' \
             order by created_at desc limit 1"
        ),
    )
    .await;
    let body = bodies.into_iter().next().expect("a mail");
    let start = body.find("token=").unwrap() + "token=".len();
    body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

fn ok<'a>(body: &'a Value, field: &str) -> &'a Value {
    assert!(body["errors"].is_null(), "{field} failed: {body}");
    &body["data"][field]
}

async fn event_counts(app: &TestApp) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for t in texts(app, "select type as t from audit_events").await {
        *counts.entry(t).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn each_event_is_recorded_exactly_once_and_never_holds_a_secret() {
    let app = TestApp::builder().env("REFRESH_GRACE_SECONDS", "0").spawn().await;
    let mut secrets: Vec<String> = vec![PASSWORD.into(), NEW_PASSWORD.into(), RESET_PASSWORD.into()];
    let mut keep = |s: &str| secrets.push(s.to_owned());

    // user.created, login.failed, login.succeeded
    let a = account(&app, "a").await;
    keep(&a.access);
    keep(&a.refresh);
    assert_eq!(
        code(&app.login(&a.email, "not the password").await),
        "INVALID_CREDENTIALS"
    );
    let login = app.login(&a.email, PASSWORD).await;
    let second_refresh = ok(&login, "login")["refreshToken"].as_str().unwrap().to_owned();
    keep(&second_refresh);
    // refresh.reused: the first refresh token, once rotated, comes back.
    let body = app.graphql(REFRESH, json!({ "t": a.refresh })).await;
    let rotated = ok(&body, "refresh");
    keep(rotated["accessToken"].as_str().unwrap());
    keep(rotated["refreshToken"].as_str().unwrap());
    assert_eq!(
        code(&app.graphql(REFRESH, json!({ "t": a.refresh })).await),
        "TOKEN_REUSED"
    );
    // session.revoked: logout of the login's session.
    ok(
        &app.graphql(LOGOUT, json!({ "t": second_refresh })).await,
        "logout",
    );

    // password.changed, email.verified, password.reset on another account.
    let b = account(&app, "b").await;
    keep(&b.access);
    keep(&b.refresh);
    let input = json!({ "input": { "currentPassword": PASSWORD, "newPassword": NEW_PASSWORD } });
    let changed = app.graphql_as(&b.access, CHANGE_PASSWORD, input).await;
    keep(ok(&changed, "changePassword")["accessToken"].as_str().unwrap());
    let token = mailed_token(&app, "verify_email", &b.id).await;
    keep(&token);
    ok(
        &app.graphql(VERIFY, json!({ "token": token })).await,
        "verifyEmail",
    );
    ok(
        &app.graphql(REQUEST_RESET, json!({ "email": b.email })).await,
        "requestPasswordReset",
    );
    let token = mailed_token(&app, "reset_password", &b.id).await;
    keep(&token);
    let input = json!({ "input": { "token": token, "newPassword": RESET_PASSWORD } });
    ok(&app.graphql(RESET, input).await, "resetPassword");

    // login.locked: wrong passwords until the account (from this address) waits.
    let c = account(&app, "c").await;
    let mut failures = 0;
    loop {
        let body = app.login(&c.email, "wrong guess again").await;
        match code(&body) {
            "INVALID_CREDENTIALS" => failures += 1,
            "RATE_LIMITED" => break,
            other => panic!("{other}: {body}"),
        }
        assert!(failures < 50, "never locked");
    }

    // role.changed, user.disabled, user.enabled by an admin.
    let boss = admin(&app).await;
    let d = account(&app, "d").await;
    let id = json!({ "id": d.id });
    ok(
        &app.graphql_as(&boss.access, SET_ROLE, json!({ "id": d.id, "role": "ADMIN" }))
            .await,
        "setUserRole",
    );
    ok(
        &app.graphql_as(&boss.access, DISABLE, id.clone()).await,
        "disableUser",
    );
    ok(&app.graphql_as(&boss.access, ENABLE, id).await, "enableUser");

    // mfa.enrolled, mfa.failed, a second-factor login.succeeded, mfa.removed, mfa.reset.
    let mut m = user_with_mfa(&app, "m").await;
    secrets.extend(m.recovery_codes.iter().cloned());
    let token = mfa_token(&app, &m.email).await;
    secrets.push(token.clone());
    assert_eq!(code(&verify(&app, Some(&token), "000000").await), "INVALID_CODE");
    let totp = m.app.code().await;
    let signed_in = verify(&app, Some(&token), &totp).await;
    secrets.push(totp);
    let aal2 = ok(&signed_in, "verifyMfa")["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let m_id = ok(&signed_in, "verifyMfa")["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.push(aal2.clone());
    ok(
        &app.graphql_as(&aal2, REMOVE_FACTOR, json!({ "id": m.factor_id }))
            .await,
        "removeFactor",
    );
    ok(
        &app.graphql_as(&boss.access, RESET_MFA, json!({ "id": m_id }))
            .await,
        "resetUserMfa",
    );

    // user.deleted
    let e = account(&app, "e").await;
    ok(
        &app.graphql_as(&e.access, DELETE, json!({ "p": PASSWORD })).await,
        "deleteAccount",
    );

    let counts = event_counts(&app).await;
    let expected: HashMap<&str, usize> = HashMap::from([
        // a, b, c, the admin, d, m, e
        ("user.created", 7),
        // a's wrong password and c's until the lock
        ("login.failed", 1 + failures),
        // a's login and m's second-factor sign-in
        ("login.succeeded", 2),
        ("refresh.reused", 1),
        ("session.revoked", 1),
        ("password.changed", 1),
        ("email.verified", 1),
        ("password.reset", 1),
        ("login.locked", 1),
        ("role.changed", 1),
        ("user.disabled", 1),
        ("user.enabled", 1),
        ("mfa.enrolled", 1),
        ("mfa.failed", 1),
        ("mfa.removed", 1),
        ("mfa.reset", 1),
        ("user.deleted", 1),
    ]);
    let expected: HashMap<String, usize> = expected.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    assert_eq!(counts, expected);

    // No password, token, code or mfaToken anywhere in a row.
    let dump = texts(&app, "select t::text as t from audit_events t")
        .await
        .join("\n");
    for secret in &secrets {
        assert!(!dump.contains(secret.as_str()), "a secret reached the audit log");
    }
    // The deleted account's history stays.
    let kept = count(
        &app,
        &format!(
            "select count(*) as n from audit_events where user_id = '{}'",
            e.id
        ),
    )
    .await;
    assert_eq!(kept, 2, "user.created and user.deleted");
    // Every row of a request carries its address and a request id.
    let unaddressed = count(
        &app,
        "select count(*) as n from audit_events where client_address is null or request_id is null",
    )
    .await;
    assert_eq!(unaddressed, 0);
}

#[tokio::test]
async fn the_audit_table_refuses_update_and_delete() {
    let app = TestApp::spawn().await;
    account(&app, "x").await;
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    for statement in [
        "update audit_events set type = 'forged'",
        "delete from audit_events",
        // Straight at the partition holding the row: the trigger guards each partition too.
        "do $$ begin execute format('delete from %s', \
         (select tableoid::regclass from audit_events limit 1)); end $$",
    ] {
        let refused = diesel::sql_query(statement).execute(&mut conn).await;
        assert!(refused.is_err(), "{statement} was allowed");
    }
    assert_eq!(count(&app, "select count(*) as n from audit_events").await, 1);
}

#[tokio::test]
async fn admins_page_the_log_newest_first_and_users_see_no_admin_address() {
    let app = TestApp::spawn().await;
    let boss = admin(&app).await;
    let u: Account = account(&app, "u").await;
    for _ in 0..3 {
        app.login(&u.email, PASSWORD).await;
    }
    ok(
        &app.graphql_as(&boss.access, DISABLE, json!({ "id": u.id })).await,
        "disableUser",
    );
    ok(
        &app.graphql_as(&boss.access, ENABLE, json!({ "id": u.id })).await,
        "enableUser",
    );
    let fresh = app.login(&u.email, PASSWORD).await;
    let access = ok(&fresh, "login")["accessToken"].as_str().unwrap().to_owned();

    // Newest first, two at a time, nothing twice.
    let filter = json!({ "userId": u.id });
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let body = app
            .graphql_as(
                &boss.access,
                AUDIT,
                json!({ "first": 2, "after": after, "filter": filter }),
            )
            .await;
        let page = ok(&body, "auditEvents");
        assert_eq!(page["totalCount"], 7);
        for edge in page["edges"].as_array().unwrap() {
            seen.push(edge["node"].clone());
        }
        if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = Some(page["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
    }
    let types: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "login.succeeded",
            "user.enabled",
            "user.disabled",
            "login.succeeded",
            "login.succeeded",
            "login.succeeded",
            "user.created"
        ]
    );
    assert_eq!(seen[2]["actor"]["id"], boss.id.as_str());
    assert_eq!(seen[2]["details"]["reason"], "spam");
    let body = app
        .graphql_as(
            &boss.access,
            AUDIT,
            json!({ "filter": { "types": ["login.bogus"] } }),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "types");

    // The user's recent activity: their own sign-ins with their address, the admin's
    // actions without the admin's.
    let body = app.graphql_as(&access, SECURITY_EVENTS, json!({})).await;
    let events = ok(&body, "me")["securityEvents"].as_array().unwrap().clone();
    assert_eq!(events.len(), 7);
    for event in &events {
        let by_admin = event["actor"]["id"] == boss.id.as_str();
        assert_eq!(event["clientAddress"].is_null(), by_admin, "{event}");
        if by_admin {
            assert!(event["userAgent"].is_null(), "{event}");
        }
    }
    // Nobody else's.
    let body = app
        .graphql_as(
            &boss.access,
            "query($id: ID!) { user(id: $id) { securityEvents { type } } }",
            json!({ "id": u.id }),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
}

#[tokio::test]
async fn retention_drops_whole_months_past_it_and_keeps_the_rest() {
    let app = TestApp::spawn().await;
    account(&app, "x").await;
    let auth = &app.state.auth;
    // A year's retention keeps this month's events.
    let dropped = auth
        .maintain_audit_log(std::time::Duration::from_secs(365 * 86_400))
        .await
        .unwrap();
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(count(&app, "select count(*) as n from audit_events").await, 1);
    // Rows of a month with no partition yet land in the default partition.
    app.sql(
        "insert into audit_events (type, created_at) values ('user.created', now() - interval '3 years')",
    )
    .await;
    // With a retention of zero every month that ended is dropped: this one has not ended,
    // so nothing of it goes, and the trigger does not stand in the way of a drop.
    auth.maintain_audit_log(std::time::Duration::ZERO).await.unwrap();
    assert_eq!(count(&app, "select count(*) as n from audit_events").await, 2);
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    let far = chrono::Utc::now() + chrono::TimeDelta::days(120);
    let dropped = authgraph::db::audit::drop_partitions_before(&mut conn, far)
        .await
        .unwrap();
    assert_eq!(dropped.len(), 2, "this month and the next: {dropped:?}");
    assert_eq!(
        count(&app, "select count(*) as n from audit_events").await,
        1,
        "the default partition is never dropped"
    );
}
