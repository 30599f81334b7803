//! Identity normalisation: every spelling of one address is one account, and invisible
//! or direction-changing characters never reach an email or a display name.

use serde_json::json;

use crate::support::{PASSWORD, REGISTER, TestApp, code, count, users};

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

async fn register(app: &TestApp, email: &str, display_name: Option<&str>) -> serde_json::Value {
    app.graphql(
        REGISTER,
        json!({ "input": { "email": email, "password": PASSWORD, "displayName": display_name } }),
    )
    .await
}

#[tokio::test]
async fn two_spellings_of_one_address_are_one_account() {
    let app = TestApp::spawn().await;
    let tag = unique();
    for (first, second) in [
        (format!("\u{e9}x{tag}@t.test"), format!("e\u{301}x{tag}@t.test")),
        (
            format!("user{tag}@b\u{fc}cher.test"),
            format!("user{tag}@xn--bcher-kva.test"),
        ),
        (format!("\u{fb01}{tag}@t.test"), format!("fi{tag}@t.test")),
        (format!("\u{ff41}{tag}@t.test"), format!("a{tag}@t.test")),
    ] {
        let body = register(&app, &first, None).await;
        assert!(body["errors"].is_null(), "{first:?}: {body}");
        let body = register(&app, &second, None).await;
        assert_eq!(code(&body), "EMAIL_TAKEN", "{second:?}: {body}");
        // And either spelling signs in to the one account.
        let body = app.login(&second, PASSWORD).await;
        assert!(body["errors"].is_null(), "{second:?}: {body}");
    }
    assert_eq!(users(&app).await, 4);
    let stored = count(
        &app,
        &format!("select count(*) as n from users where email = 'user{tag}@xn--bcher-kva.test'"),
    )
    .await;
    assert_eq!(stored, 1, "domains are stored in their ASCII form");
}

#[tokio::test]
async fn invisible_characters_and_address_literals_are_refused() {
    let app = TestApp::spawn().await;
    for bad in [
        "a\u{200b}@t.test",
        "\u{202e}a@t.test",
        "a@[127.0.0.1]",
        "a@127.0.0.1",
    ] {
        let body = register(&app, bad, None).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{bad:?}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "email", "{body}");
    }
    let tag = unique();
    for (n, bad) in ["\u{200b}", "Ada\u{202e}gnp.exe", "\u{2066}Ada"]
        .into_iter()
        .enumerate()
    {
        let body = register(&app, &format!("n{n}{tag}@t.test"), Some(bad)).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{bad:?}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "displayName", "{body}");
    }
    let registered = register(&app, &format!("fine{tag}@t.test"), None).await;
    let token = registered["data"]["register"]["accessToken"].as_str().unwrap();
    let update = "mutation($n: String) { updateProfile(input: { displayName: $n }) { displayName } }";
    let body = app.graphql_as(token, update, json!({ "n": "Ada\u{202e}" })).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(users(&app).await, 1);
}

#[tokio::test]
async fn emails_stored_before_normalisation_are_brought_into_it() {
    let app = TestApp::spawn().await;
    // Rows as the earlier rules stored them: lowercased only.
    app.sql(
        "insert into users (email, password_hash, created_at) values
           ('e\u{301}x@t.test', 'x', now() - interval '3 days'),
           ('user@b\u{fc}cher.test', 'x', now() - interval '2 days'),
           ('\u{ff41}@t.test', 'x', now() - interval '2 days'),
           ('a@t.test', 'x', now() - interval '3 days'),
           ('z\u{200b}@t.test', 'x', now())",
    )
    .await;
    let done = authgraph::auth::account::normalise_stored_emails(&app.db.url)
        .await
        .unwrap();
    assert_eq!(
        (done.rewritten, done.duplicates, done.invalid),
        (2, 1, 1),
        "{done:?}"
    );
    for canonical in ["\u{e9}x@t.test", "user@xn--bcher-kva.test", "a@t.test"] {
        let n = count(
            &app,
            &format!("select count(*) as n from users where email = '{canonical}'"),
        )
        .await;
        assert_eq!(n, 1, "{canonical}");
    }
    // Running it again changes nothing.
    let again = authgraph::auth::account::normalise_stored_emails(&app.db.url)
        .await
        .unwrap();
    assert_eq!((again.rewritten, again.duplicates, again.invalid), (0, 1, 1));
}
