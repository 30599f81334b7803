//! Attempt throttling: counted in PostgreSQL per account and address, per account and per
//! address, shared by replicas, atomic under concurrency, with growing waits.

use authgraph::{
    auth::jwt::{KeyAlgorithm, SigningKey},
    state::AppState,
};
use axum::extract::connect_info::MockConnectInfo;
use serde_json::{Value, json};

use crate::support::{
    CLIENT, PASSWORD, REFRESH, REGISTER, REQUEST_RESET, RESET, TestApp, VERIFY, code, count, count_code,
    email, login_via, post_via, router_from, sessions,
};

const WRONG: &str = "not the password at all";

fn retry_after(body: &Value) -> u64 {
    body["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap_or_else(|| panic!("no retryAfter in {body}"))
}

#[tokio::test]
async fn past_the_limit_even_the_right_password_waits() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "3/1h,10m..1h")
        .spawn()
        .await;
    let address = email("locked");
    app.register(&address, PASSWORD).await;
    for _ in 0..3 {
        assert_eq!(code(&app.login(&address, WRONG).await), "INVALID_CREDENTIALS");
    }
    let before = sessions(&app).await;
    let body = app.login(&address, PASSWORD).await;
    assert_eq!(code(&body), "RATE_LIMITED", "{body}");
    let wait = retry_after(&body);
    assert!((590..=600).contains(&wait), "{wait}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains(&wait.to_string()), "{message}");
    assert_eq!(sessions(&app).await, before, "no session was opened");
}

#[tokio::test]
async fn waits_grow_with_every_attempt_past_the_limit() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "2/1h,60s..1h")
        .spawn()
        .await;
    let address = email("grow");
    app.register(&address, PASSWORD).await;
    let mut waits = Vec::new();
    for _ in 0..3 {
        while code(&app.login(&address, WRONG).await) == "INVALID_CREDENTIALS" {}
        waits.push(retry_after(&app.login(&address, WRONG).await));
        // Let the wait pass without waiting for it.
        app.sql("update throttle_counters set locked_until = now()").await;
    }
    assert!(
        waits[0] <= 60 && waits[1] > 60 && waits[2] > waits[1],
        "{waits:?}"
    );
    assert!(waits[1] <= 120 && waits[2] <= 240, "{waits:?}");
}

#[tokio::test]
async fn a_flood_from_one_address_does_not_lock_the_owner_out_elsewhere() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "5/24h,1h..1h")
        .spawn()
        .await;
    let address = email("owner");
    app.register(&address, PASSWORD).await;
    let attacker = router_from(&app, "198.51.100.66:5000");
    let mut refused = 0;
    for _ in 0..30 {
        let body = login_via(&attacker, &address, WRONG).await;
        refused += count_code(&body, "RATE_LIMITED");
    }
    assert_eq!(refused, 25, "five guesses, then waits");
    // The attacker cannot get in even with the password now...
    assert_eq!(
        code(&login_via(&attacker, &address, PASSWORD).await),
        "RATE_LIMITED"
    );
    // ...but the owner, elsewhere, signs in at once.
    let owner = app.login(&address, PASSWORD).await;
    assert!(owner["errors"].is_null(), "{owner}");
}

#[tokio::test]
async fn many_addresses_together_reach_the_account_limit() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "3/24h,1h..1h")
        .env("THROTTLE_LOGIN_ACCOUNT", "7/24h,1h..1h")
        .spawn()
        .await;
    let address = email("distributed");
    app.register(&address, PASSWORD).await;
    let mut guessed = 0;
    for n in 1..=4 {
        let bot = router_from(&app, &format!("198.51.100.{n}:5000"));
        for _ in 0..5 {
            guessed += count_code(&login_via(&bot, &address, WRONG).await, "INVALID_CREDENTIALS");
        }
    }
    assert_eq!(
        guessed, 7,
        "the account limit caps the guesses of all addresses together"
    );
    assert_eq!(code(&app.login(&address, PASSWORD).await), "RATE_LIMITED");
}

#[tokio::test]
async fn unknown_emails_are_throttled_exactly_like_accounts() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "2/1h,5m..5m")
        .spawn()
        .await;
    let known = email("known");
    app.register(&known, PASSWORD).await;
    let unknown = email("unknown");
    let mut answers = Vec::new();
    for address in [&known, &unknown] {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let body = app.login(address, WRONG).await;
            seen.push((code(&body).to_owned(), body["errors"][0]["message"].clone()));
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][2].0, "RATE_LIMITED");
}

#[tokio::test]
async fn the_right_password_clears_the_account_counts() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "3/1h,1h..1h")
        .spawn()
        .await;
    let address = email("clear");
    app.register(&address, PASSWORD).await;
    for _ in 0..2 {
        app.login(&address, WRONG).await;
    }
    assert!(app.login(&address, PASSWORD).await["errors"].is_null());
    for _ in 0..2 {
        assert_eq!(code(&app.login(&address, WRONG).await), "INVALID_CREDENTIALS");
    }
    let accounts = count(
        &app,
        "select count(*) as n from throttle_counters where key like 'login.account%' and attempts = 2",
    )
    .await;
    assert_eq!(
        accounts, 2,
        "account and account-address counts start over after a success"
    );
}

#[tokio::test]
async fn replicas_share_the_counts() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "3/1h,1h..1h")
        .spawn()
        .await;
    let address = email("replica");
    app.register(&address, PASSWORD).await;
    // A second replica: its own process state, keys and router; the same database.
    let (key, _) = SigningKey::generate(KeyAlgorithm::Es256).unwrap();
    let other = AppState::with_keys((*app.state.config).clone(), vec![key]).unwrap();
    let other = authgraph::app(other).layer(MockConnectInfo(CLIENT));
    for _ in 0..3 {
        assert_eq!(code(&app.login(&address, WRONG).await), "INVALID_CREDENTIALS");
    }
    assert_eq!(code(&login_via(&other, &address, PASSWORD).await), "RATE_LIMITED");
}

#[tokio::test]
async fn concurrent_attempts_never_pass_the_limit_together() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "3/1h,1h..1h")
        .spawn()
        .await;
    let address = email("race");
    app.register(&address, PASSWORD).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let router = app.router.clone();
        let address = address.clone();
        tasks.spawn(async move { login_via(&router, &address, WRONG).await });
    }
    let mut answered = Vec::new();
    while let Some(body) = tasks.join_next().await {
        answered.push(code(&body.unwrap()).to_owned());
    }
    let checked = answered.iter().filter(|c| *c == "INVALID_CREDENTIALS").count();
    let refused = answered.iter().filter(|c| *c == "RATE_LIMITED").count();
    assert_eq!((checked, refused), (3, 9), "{answered:?}");
}

#[tokio::test]
async fn one_address_spraying_many_accounts_is_stopped() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ADDRESS", "4/1h,1h..1h")
        .spawn()
        .await;
    for n in 0..4 {
        assert_eq!(
            code(&app.login(&email(&format!("spray{n}")), WRONG).await),
            "INVALID_CREDENTIALS"
        );
    }
    assert_eq!(
        code(&app.login(&email("spray-next"), WRONG).await),
        "RATE_LIMITED"
    );
    let elsewhere = router_from(&app, "192.0.2.44:1000");
    assert_eq!(
        code(&login_via(&elsewhere, &email("spray-other"), WRONG).await),
        "INVALID_CREDENTIALS"
    );
}

#[tokio::test]
async fn registrations_are_limited_per_address() {
    let app = TestApp::builder()
        .env("THROTTLE_REGISTER_ADDRESS", "2/1h")
        .spawn()
        .await;
    app.register(&email("reg1"), PASSWORD).await;
    app.register(&email("reg2"), PASSWORD).await;
    let vars = |tag: &str| json!({ "input": { "email": email(tag), "password": PASSWORD } });
    let body = app.graphql(REGISTER, vars("reg3")).await;
    assert_eq!(code(&body), "RATE_LIMITED", "{body}");
    assert!(retry_after(&body) > 3000);
    let elsewhere = router_from(&app, "192.0.2.45:1000");
    let body = post_via(&elsewhere, REGISTER, vars("reg4"), &[]).await.body;
    assert!(body["errors"].is_null(), "{body}");
    // Invalid input costs nothing and counts nothing.
    let weak = json!({ "input": { "email": email("reg5"), "password": "password" } });
    assert_eq!(
        code(&post_via(&elsewhere, REGISTER, weak, &[]).await.body),
        "BAD_USER_INPUT"
    );
    let body = post_via(&elsewhere, REGISTER, vars("reg6"), &[]).await.body;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(
        code(&post_via(&elsewhere, REGISTER, vars("reg7"), &[]).await.body),
        "RATE_LIMITED"
    );
}

#[tokio::test]
async fn limits_that_are_off_count_nothing() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "off")
        .env("THROTTLE_LOGIN_ACCOUNT", "off")
        .env("THROTTLE_LOGIN_ADDRESS", "off")
        .spawn()
        .await;
    let address = email("off");
    app.register(&address, PASSWORD).await;
    for _ in 0..7 {
        assert_eq!(code(&app.login(&address, WRONG).await), "INVALID_CREDENTIALS");
    }
    assert_eq!(
        count(
            &app,
            "select count(*) as n from throttle_counters where key like 'login%'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn guessing_tokens_is_limited_per_address_and_good_tokens_do_not_count() {
    let app = TestApp::builder()
        .env("THROTTLE_TOKEN_ADDRESS", "3/1h,1h..1h")
        .spawn()
        .await;
    let registered = app.register(&email("tokens"), PASSWORD).await;
    // Good tokens, many times: each attempt is given back.
    let mut token = registered["refreshToken"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        let body = app.graphql(REFRESH, json!({ "t": token })).await;
        token = body["data"]["refresh"]["refreshToken"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_owned();
    }
    for n in 0..3 {
        let body = app.graphql(REFRESH, json!({ "t": format!("guess-{n}") })).await;
        assert_eq!(code(&body), "INVALID_TOKEN");
    }
    // Refresh, verification and reset tokens share the budget of the address; only
    // unusable ones wait for it (see bystanders.rs for a good one passing).
    for (query, vars) in [
        (REFRESH, json!({ "t": "another guess" })),
        (VERIFY, json!({ "token": "guess" })),
        (
            RESET,
            json!({ "input": { "token": "guess", "newPassword": "a fresh passphrase here" } }),
        ),
    ] {
        assert_eq!(code(&app.graphql(query, vars).await), "RATE_LIMITED");
    }
    let elsewhere = router_from(&app, "192.0.2.77:1");
    let body = post_via(&elsewhere, REFRESH, json!({ "t": token }), &[])
        .await
        .body;
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn reset_requests_are_limited_per_recipient_known_or_not() {
    let app = TestApp::builder()
        .env("THROTTLE_EMAIL_RECIPIENT", "2/1h")
        .spawn()
        .await;
    let known = email("reset-known");
    app.register(&known, PASSWORD).await;
    for address in [known.clone(), email("reset-unknown")] {
        for _ in 0..2 {
            let body = app.graphql(REQUEST_RESET, json!({ "email": address })).await;
            assert_eq!(body["data"]["requestPasswordReset"], true, "{body}");
        }
        let body = app
            .graphql(REQUEST_RESET, json!({ "email": address.to_uppercase() }))
            .await;
        assert_eq!(code(&body), "RATE_LIMITED", "{body}");
    }
}

#[tokio::test]
async fn current_password_guesses_share_the_login_limit() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "3/1h,1h..1h")
        .spawn()
        .await;
    let address = email("change");
    let registered = app.register(&address, PASSWORD).await;
    let access = registered["accessToken"].as_str().unwrap();
    let change = "mutation($i: ChangePasswordInput!) { changePassword(input: $i) { accessToken } }";
    let guess = |current: &str| json!({ "i": { "currentPassword": current, "newPassword": "a fresh passphrase here" } });
    for _ in 0..2 {
        assert_eq!(code(&app.login(&address, WRONG).await), "INVALID_CREDENTIALS");
    }
    // A stolen access token buys no extra guesses at the current password.
    assert_eq!(
        code(&app.graphql_as(access, change, guess(WRONG)).await),
        "INVALID_CREDENTIALS"
    );
    assert_eq!(
        code(&app.graphql_as(access, change, guess(PASSWORD)).await),
        "RATE_LIMITED"
    );
    let delete = "mutation($p: String!) { deleteAccount(password: $p) }";
    assert_eq!(
        code(&app.graphql_as(access, delete, json!({ "p": PASSWORD })).await),
        "RATE_LIMITED"
    );
}
