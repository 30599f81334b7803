//! Passkeys over GraphQL with a software authenticator (webauthn-authenticator-rs's
//! `SoftPasskey`) playing the browser: registration, sign-in with and without an email,
//! user verification and `amr`/`acr`, decoys for unknown emails, removal, and the
//! refusals (wrong origin, replayed or expired challenge, another user's credential,
//! counter gone back).
//!
//! The authenticator gets the options as the service sends them, wrapped in
//! `{publicKey: …}` as `navigator.credentials` would be, and its credential goes back as
//! JSON, as a browser's `toJSON()` would.

use std::time::Duration;

use authgraph::{auth::jwt::KeyAlgorithm, config::Config, state::AppState};
use axum::extract::connect_info::MockConnectInfo;
use serde_json::{Value, json};
use webauthn_authenticator_rs::{WebauthnAuthenticator, softpasskey::SoftPasskey};
use webauthn_rs::prelude::Url;
use webauthn_rs_core::proto::{CreationChallengeResponse, RequestChallengeResponse};

use crate::support::{PASSWORD, TEST_MFA_KEY, TestApp, claims, code, email, send};

/// `PUBLIC_URL`'s default, hence the default relying party: id `localhost`.
const ORIGIN: &str = "http://localhost:3000";

const BEGIN_REGISTRATION: &str = "mutation { beginPasskeyRegistration { challengeId options } }";
const FINISH_REGISTRATION: &str = "mutation($id: ID!, $credential: JSON!, $name: String) {
  finishPasskeyRegistration(challengeId: $id, credential: $credential, name: $name) {
    id name createdAt lastUsedAt backedUp
  }
}";
const BEGIN_LOGIN: &str =
    "mutation($email: String) { beginPasskeyLogin(email: $email) { challengeId options } }";
const FINISH_LOGIN: &str = "mutation($id: ID!, $credential: JSON!) {
  finishPasskeyLogin(challengeId: $id, credential: $credential) { accessToken refreshToken user { id email } }
}";
const REMOVE: &str = "mutation($id: ID!) { removePasskey(id: $id) }";
const MY_PASSKEYS: &str = "{ me { id passkeys { id name createdAt lastUsedAt backedUp } } }";

fn data<'a>(body: &'a Value, field: &str) -> &'a Value {
    assert!(body["errors"].is_null(), "{field} failed: {body}");
    &body["data"][field]
}

fn message(body: &Value) -> &str {
    body["errors"][0]["message"].as_str().unwrap_or_default()
}

/// A signed-up user with a software authenticator (which reports user verification
/// whenever the options require it).
struct Holder {
    email: String,
    user_id: String,
    access: String,
    key: SoftPasskey,
}

async fn holder(app: &TestApp, tag: &str) -> Holder {
    let address = email(tag);
    let registered = app.register(&address, PASSWORD).await;
    Holder {
        user_id: registered["user"]["id"].as_str().unwrap().to_owned(),
        access: registered["accessToken"].as_str().unwrap().to_owned(),
        email: address,
        key: SoftPasskey::new(true),
    }
}

/// Runs a registration ceremony from `origin`: the challenge id and the credential JSON.
async fn create(app: &TestApp, holder: &mut Holder, origin: &str) -> (String, Value) {
    let body = app
        .graphql_as(&holder.access, BEGIN_REGISTRATION, json!({}))
        .await;
    let begun = data(&body, "beginPasskeyRegistration");
    let options = &begun["options"];
    assert!(
        options.get("publicKey").is_none(),
        "options are unwrapped: {options}"
    );
    let wrapped: CreationChallengeResponse = serde_json::from_value(json!({ "publicKey": options })).unwrap();
    let credential = holder
        .key
        .do_registration(Url::parse(origin).unwrap(), wrapped)
        .unwrap();
    (
        begun["challengeId"].as_str().unwrap().to_owned(),
        serde_json::to_value(&credential).unwrap(),
    )
}

async fn finish_registration(app: &TestApp, holder: &Holder, id: &str, credential: &Value) -> Value {
    app.graphql_as(
        &holder.access,
        FINISH_REGISTRATION,
        json!({ "id": id, "credential": credential, "name": "Laptop" }),
    )
    .await
}

/// Registers a passkey from the right origin; its GraphQL `Passkey`.
async fn add_passkey(app: &TestApp, holder: &mut Holder) -> Value {
    let (id, credential) = create(app, holder, ORIGIN).await;
    let body = finish_registration(app, holder, &id, &credential).await;
    data(&body, "finishPasskeyRegistration").clone()
}

async fn begin_login(app: &TestApp, email: Option<&str>) -> (String, Value) {
    let body = app.graphql(BEGIN_LOGIN, json!({ "email": email })).await;
    let begun = data(&body, "beginPasskeyLogin");
    (
        begun["challengeId"].as_str().unwrap().to_owned(),
        begun["options"].clone(),
    )
}

/// Signs `options` with `key` from `origin`; `verified` asks for user verification as a
/// browser does when the platform can (the service only prefers it).
fn assert_with(key: &mut SoftPasskey, options: &Value, origin: &str, verified: bool) -> Value {
    let mut options = options.clone();
    assert_eq!(options["userVerification"], "preferred", "{options}");
    if verified {
        options["userVerification"] = json!("required");
    }
    let wrapped: RequestChallengeResponse = serde_json::from_value(json!({ "publicKey": options })).unwrap();
    let assertion = key
        .do_authentication(Url::parse(origin).unwrap(), wrapped)
        .unwrap();
    serde_json::to_value(&assertion).unwrap()
}

async fn finish_login(app: &TestApp, id: &str, credential: &Value) -> Value {
    app.graphql(FINISH_LOGIN, json!({ "id": id, "credential": credential }))
        .await
}

/// Begins with the holder's email and finishes with its authenticator.
async fn sign_in(app: &TestApp, holder: &mut Holder, verified: bool) -> Value {
    let (id, options) = begin_login(app, Some(&holder.email)).await;
    let assertion = assert_with(&mut holder.key, &options, ORIGIN, verified);
    finish_login(app, &id, &assertion).await
}

fn amr(token: &str) -> Vec<String> {
    serde_json::from_value(claims(token)["amr"].clone()).unwrap()
}

fn allowed_ids(options: &Value) -> Vec<String> {
    options["allowCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_passkey_registers_then_signs_in_as_two_factors_and_satisfies_step_up() {
    let app = TestApp::spawn().await;
    let mut alice = holder(&app, "passkey").await;

    let body = app.graphql_as(&alice.access, BEGIN_REGISTRATION, json!({})).await;
    let options = &data(&body, "beginPasskeyRegistration")["options"];
    assert_eq!(options["rp"]["id"], "localhost", "{options}");
    assert_eq!(options["user"]["name"], alice.email.as_str());
    assert!(
        options["challenge"].as_str().is_some_and(|c| c.len() >= 43),
        "{options}"
    );

    let passkey = add_passkey(&app, &mut alice).await;
    assert_eq!(passkey["name"], "Laptop");
    assert_eq!(passkey["backedUp"], false);
    assert!(passkey["lastUsedAt"].is_null());
    let body = app.graphql_as(&alice.access, MY_PASSKEYS, json!({})).await;
    let mine = data(&body, "me")["passkeys"].as_array().unwrap().clone();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], passkey["id"]);

    let (id, options) = begin_login(&app, Some(&alice.email)).await;
    assert_eq!(allowed_ids(&options).len(), 1, "{options}");
    assert_eq!(options["rpId"], "localhost");
    let assertion = assert_with(&mut alice.key, &options, ORIGIN, true);
    let body = finish_login(&app, &id, &assertion).await;
    let payload = data(&body, "finishPasskeyLogin");
    assert_eq!(payload["user"]["email"], alice.email.as_str());
    assert!(payload["refreshToken"].as_str().is_some());
    let token = payload["accessToken"].as_str().unwrap().to_owned();
    // Not backup eligible (a device-bound key): hwk; user-verified: mfa and aal2.
    assert_eq!(amr(&token), ["hwk", "mfa"]);
    assert_eq!(claims(&token)["acr"], "aal2");

    // It counts as a recent second factor: adding another sign-in method is allowed.
    let body = app.graphql_as(&token, BEGIN_REGISTRATION, json!({})).await;
    data(&body, "beginPasskeyRegistration");
    let body = app.graphql_as(&token, MY_PASSKEYS, json!({})).await;
    assert!(
        data(&body, "me")["passkeys"][0]["lastUsedAt"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn without_user_verification_a_passkey_is_one_factor_and_totp_users_get_mfa_required() {
    let app = TestApp::spawn().await;
    let mut bob = holder(&app, "passkey-uv").await;
    add_passkey(&app, &mut bob).await;

    let body = sign_in(&app, &mut bob, false).await;
    let token = data(&body, "finishPasskeyLogin")["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(amr(&token), ["hwk"]);
    assert_eq!(claims(&token)["acr"], "aal1");

    // With a TOTP factor on the account, that sign-in is only the first step.
    app.sql(&format!(
        "insert into mfa_factors (id, user_id, kind, secret_sealed, confirmed_at)
         values (gen_random_uuid(), '{}', 'TOTP', '\\x00', now())",
        bob.user_id
    ))
    .await;
    let body = sign_in(&app, &mut bob, false).await;
    assert_eq!(code(&body), "MFA_REQUIRED", "{body}");
    let extensions = &body["errors"][0]["extensions"];
    assert!(extensions["mfaToken"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(extensions["factors"], json!(["TOTP", "RECOVERY_CODE"]));
    // User-verified, it is both factors at once.
    let body = sign_in(&app, &mut bob, true).await;
    let token = data(&body, "finishPasskeyLogin")["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(claims(&token)["acr"], "aal2");
}

#[tokio::test]
async fn unknown_emails_and_emails_without_passkeys_get_stable_decoys() {
    let app = TestApp::spawn().await;
    let mut carol = holder(&app, "passkey-real").await;
    add_passkey(&app, &mut carol).await;
    let plain = holder(&app, "passkey-none").await;
    let unknown = email("nobody");

    let (_, real) = begin_login(&app, Some(&carol.email)).await;
    for address in [unknown.as_str(), plain.email.as_str()] {
        let (first_id, first) = begin_login(&app, Some(address)).await;
        let (second_id, second) = begin_login(&app, Some(address)).await;
        assert_ne!(first_id, second_id);
        assert_ne!(first["challenge"], second["challenge"]);
        let ids = allowed_ids(&first);
        assert!(!ids.is_empty(), "{first}");
        assert_eq!(ids, allowed_ids(&second), "decoys are stable");
        // The same shape as a real answer.
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&first), keys(&real));
        assert_eq!(
            keys(&first["allowCredentials"][0]),
            keys(&real["allowCredentials"][0])
        );
        // A real credential of someone else does not finish it.
        let mut options = first.clone();
        options["allowCredentials"] = real["allowCredentials"].clone();
        let assertion = assert_with(&mut carol.key, &options, ORIGIN, true);
        let body = finish_login(&app, &first_id, &assertion).await;
        assert_eq!(code(&body), "INVALID_CREDENTIALS", "{body}");
    }
    let (_, again) = begin_login(&app, Some(&unknown.to_uppercase())).await;
    let (_, before) = begin_login(&app, Some(&unknown)).await;
    assert_eq!(
        allowed_ids(&again),
        allowed_ids(&before),
        "emails are normalised first"
    );
}

#[tokio::test]
async fn a_wrong_origin_is_refused_with_a_clear_error() {
    let app = TestApp::spawn().await;
    let mut dave = holder(&app, "passkey-origin").await;
    for origin in ["https://evil.localhost", "http://localhost:4000"] {
        let (id, credential) = create(&app, &mut dave, origin).await;
        let body = finish_registration(&app, &dave, &id, &credential).await;
        assert_eq!(code(&body), "INVALID_CREDENTIALS", "{origin}: {body}");
        assert!(message(&body).contains("WEBAUTHN_ORIGINS"), "{body}");
    }
    add_passkey(&app, &mut dave).await;
    let (id, options) = begin_login(&app, Some(&dave.email)).await;
    let assertion = assert_with(&mut dave.key, &options, "https://evil.localhost", true);
    let body = finish_login(&app, &id, &assertion).await;
    assert_eq!(code(&body), "INVALID_CREDENTIALS", "{body}");
    assert!(message(&body).contains("WEBAUTHN_ORIGINS"), "{body}");
}

#[tokio::test]
async fn a_challenge_finishes_once_within_its_lifetime() {
    let app = TestApp::spawn().await;
    let mut erin = holder(&app, "passkey-replay").await;

    let (id, credential) = create(&app, &mut erin, ORIGIN).await;
    // Another user's token neither finishes nor uses up Erin's registration.
    let mallory = holder(&app, "passkey-mallory").await;
    let body = finish_registration(&app, &mallory, &id, &credential).await;
    assert_eq!(code(&body), "INVALID_TOKEN", "{body}");
    data(
        &finish_registration(&app, &erin, &id, &credential).await,
        "finishPasskeyRegistration",
    );
    let body = finish_registration(&app, &erin, &id, &credential).await;
    assert_eq!(code(&body), "INVALID_TOKEN", "replayed registration: {body}");

    let (id, options) = begin_login(&app, Some(&erin.email)).await;
    let assertion = assert_with(&mut erin.key, &options, ORIGIN, true);
    data(&finish_login(&app, &id, &assertion).await, "finishPasskeyLogin");
    let body = finish_login(&app, &id, &assertion).await;
    assert_eq!(code(&body), "INVALID_TOKEN", "replayed sign-in: {body}");

    // Expired.
    let (id, options) = begin_login(&app, Some(&erin.email)).await;
    let assertion = assert_with(&mut erin.key, &options, ORIGIN, true);
    app.sql("update passkey_ceremonies set expires_at = now() - interval '1 second'")
        .await;
    assert_eq!(code(&finish_login(&app, &id, &assertion).await), "INVALID_TOKEN");

    // A failed finish uses the challenge up too.
    let (id, options) = begin_login(&app, Some(&erin.email)).await;
    let good = assert_with(&mut erin.key, &options, ORIGIN, true);
    let mut bad = good.clone();
    bad["response"]["signature"] = json!("AAAA");
    assert_eq!(code(&finish_login(&app, &id, &bad).await), "INVALID_CREDENTIALS");
    assert_eq!(code(&finish_login(&app, &id, &good).await), "INVALID_TOKEN");

    // Unknown ids, garbage, and a registration's id at sign-in.
    let (registration_id, _) = create(&app, &mut erin, ORIGIN).await;
    for id in ["not-an-id", &uuid::Uuid::new_v4().to_string(), &registration_id] {
        assert_eq!(
            code(&finish_login(&app, id, &good).await),
            "INVALID_TOKEN",
            "{id}"
        );
    }
    let body = app
        .graphql(
            FINISH_LOGIN,
            json!({ "id": uuid::Uuid::new_v4(), "credential": {"id": 1} }),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], "credential");
}

#[tokio::test]
async fn another_users_credential_does_not_sign_in() {
    let app = TestApp::spawn().await;
    let mut frank = holder(&app, "passkey-frank").await;
    let mut grace = holder(&app, "passkey-grace").await;
    add_passkey(&app, &mut frank).await;
    add_passkey(&app, &mut grace).await;

    // Grace's authenticator answers a sign-in begun for Frank.
    let (id, options) = begin_login(&app, Some(&frank.email)).await;
    let (_, grace_options) = begin_login(&app, Some(&grace.email)).await;
    let mut forged = options.clone();
    forged["allowCredentials"] = grace_options["allowCredentials"].clone();
    let assertion = assert_with(&mut grace.key, &forged, ORIGIN, true);
    let body = finish_login(&app, &id, &assertion).await;
    assert_eq!(code(&body), "INVALID_CREDENTIALS", "{body}");

    // Discoverable (no email): the authenticator names the user; it must own the key.
    let discoverable = |user_id: &str, options: &Value, key: &mut SoftPasskey, holder_allowed: &Value| {
        let mut options = options.clone();
        options["allowCredentials"] = holder_allowed.clone();
        let mut assertion = assert_with(key, &options, ORIGIN, true);
        let handle = uuid::Uuid::parse_str(user_id).unwrap();
        assertion["response"]["userHandle"] = json!(base64url(handle.as_bytes()));
        assertion
    };
    let (id, options) = begin_login(&app, None).await;
    assert!(allowed_ids(&options).is_empty(), "{options}");
    let assertion = discoverable(
        &frank.user_id,
        &options,
        &mut grace.key,
        &grace_options["allowCredentials"],
    );
    assert_eq!(
        code(&finish_login(&app, &id, &assertion).await),
        "INVALID_CREDENTIALS"
    );

    let (id, options) = begin_login(&app, None).await;
    let assertion = discoverable(
        &grace.user_id,
        &options,
        &mut grace.key,
        &grace_options["allowCredentials"],
    );
    let body = finish_login(&app, &id, &assertion).await;
    assert_eq!(
        data(&body, "finishPasskeyLogin")["user"]["id"],
        grace.user_id.as_str()
    );
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test(flavor = "current_thread")]
async fn a_counter_going_back_is_refused_and_logged() {
    use tracing_subscriber::{filter::LevelFilter, fmt, prelude::*};

    use crate::redaction::Capture;

    let app = TestApp::spawn().await;
    let capture = Capture::default();
    let writer = {
        let capture = capture.clone();
        move || capture.clone()
    };
    let subscriber = tracing_subscriber::registry()
        .with(LevelFilter::INFO)
        .with(fmt::layer().with_ansi(false).with_writer(writer));
    let scoped = tracing::subscriber::set_default(subscriber);

    let mut heidi = holder(&app, "passkey-clone").await;
    add_passkey(&app, &mut heidi).await;
    data(&sign_in(&app, &mut heidi, true).await, "finishPasskeyLogin");
    data(&sign_in(&app, &mut heidi, true).await, "finishPasskeyLogin");
    // Another copy of the key signed more often than this one: ours now looks cloned.
    app.sql("update passkeys set sign_count = 1000").await;
    let body = sign_in(&app, &mut heidi, true).await;
    drop(scoped);
    assert_eq!(code(&body), "INVALID_CREDENTIALS", "{body}");
    assert!(message(&body).contains("counter"), "{body}");
    let logs = capture.text();
    assert!(logs.contains("signature counter went back"), "{logs}");
    assert!(!logs.contains(&heidi.email), "logs name users by id only");
}

#[tokio::test]
async fn removing_never_removes_the_last_way_to_sign_in() {
    let app = TestApp::spawn().await;
    let mut ivan = holder(&app, "passkey-remove").await;
    let first = add_passkey(&app, &mut ivan).await;
    let second = add_passkey(&app, &mut ivan).await;

    // Someone else's passkey is not theirs to remove, nor to see.
    let other = holder(&app, "passkey-other").await;
    let body = app
        .graphql_as(&other.access, REMOVE, json!({ "id": first["id"] }))
        .await;
    assert_eq!(data(&body, "removePasskey"), false);
    let query = format!("{{ user(id: \"{}\") {{ passkeys {{ id }} }} }}", ivan.user_id);
    let body = app.graphql_as(&other.access, &query, json!({})).await;
    assert!(body["data"]["user"]["passkeys"].is_null(), "{body}");

    // An account without a password keeps its last passkey.
    app.sql(&format!(
        "update users set password_hash = '' where id = '{}'",
        ivan.user_id
    ))
    .await;
    let body = app
        .graphql_as(&ivan.access, REMOVE, json!({ "id": first["id"] }))
        .await;
    assert_eq!(data(&body, "removePasskey"), true);
    // Each addition and removal is in the audit log, in its own transaction.
    let audited = |kind: &'static str| {
        let app = &app;
        async move {
            crate::support::count(
                app,
                &format!("select count(*) as n from audit_events where type = '{kind}'"),
            )
            .await
        }
    };
    assert_eq!(audited("passkey.added").await, 2);
    assert_eq!(audited("passkey.removed").await, 1);
    let body = app
        .graphql_as(&ivan.access, REMOVE, json!({ "id": second["id"] }))
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let body = app.graphql_as(&ivan.access, MY_PASSKEYS, json!({})).await;
    assert_eq!(data(&body, "me")["passkeys"].as_array().unwrap().len(), 1);
    // With a password, the last passkey may go.
    app.sql(&format!(
        "update users set password_hash = 'x' where id = '{}'",
        ivan.user_id
    ))
    .await;
    let body = app
        .graphql_as(&ivan.access, REMOVE, json!({ "id": second["id"] }))
        .await;
    assert_eq!(data(&body, "removePasskey"), true);
}

#[tokio::test]
async fn adding_and_removing_need_a_recent_sign_in() {
    let app = TestApp::builder().env("STEP_UP_MAX_AGE", "1s").spawn().await;
    let judy = holder(&app, "passkey-step-up").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let body = app.graphql_as(&judy.access, BEGIN_REGISTRATION, json!({})).await;
    assert_eq!(code(&body), "INSUFFICIENT_USER_AUTHENTICATION", "{body}");
    let id = uuid::Uuid::new_v4();
    let body = app.graphql_as(&judy.access, REMOVE, json!({ "id": id })).await;
    assert_eq!(code(&body), "INSUFFICIENT_USER_AUTHENTICATION", "{body}");
    let body = app.graphql(BEGIN_REGISTRATION, json!({})).await;
    assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");
}

#[tokio::test]
async fn another_replica_finishes_what_one_began() {
    let app = TestApp::spawn().await;
    let mut judy = holder(&app, "passkey-replica").await;
    add_passkey(&app, &mut judy).await;
    // A second process on the same database, with a signing key of its own.
    let vars = [
        ("DATABASE_URL", app.db.url.clone()),
        ("MFA_ENCRYPTION_KEY", TEST_MFA_KEY.to_owned()),
    ];
    let config = Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
    let (key, _) = authgraph::auth::jwt::SigningKey::generate(KeyAlgorithm::Es256).unwrap();
    let other = authgraph::app(AppState::with_keys(config, vec![key]).unwrap()).layer(MockConnectInfo(
        std::net::SocketAddr::from(([127, 0, 0, 2], 4000)),
    ));

    let (id, options) = begin_login(&app, Some(&judy.email)).await;
    let assertion = assert_with(&mut judy.key, &options, ORIGIN, true);
    let request = axum::http::Request::post("/graphql")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({ "query": FINISH_LOGIN, "variables": { "id": id, "credential": assertion } }).to_string(),
        ))
        .unwrap();
    let body = send(&other, request).await.body;
    assert_eq!(
        data(&body, "finishPasskeyLogin")["user"]["email"],
        judy.email.as_str()
    );
}

#[test]
fn the_json_scalar_is_named_json_in_the_schema() {
    let sdl = authgraph::graphql::sdl();
    assert!(sdl.contains("scalar JSON"), "no JSON scalar");
    assert!(sdl.contains("options: JSON!"));
    assert!(sdl.contains("finishPasskeyLogin(challengeId: ID!, credential: JSON!): AuthPayload!"));
}
