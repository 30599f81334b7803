//! Second factors: TOTP enrollment, MFA at sign-in, recovery codes, step-up, and the
//! `amr`/`acr`/`auth_time` claims. Codes are computed here, as an authenticator app
//! would, from the otpauth URI with totp-rs and the real clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authgraph::auth::jwt::KeyAlgorithm;
use serde_json::{Value, json};
use totp_rs::Totp;

use crate::support::{
    PASSWORD, REFRESH, TestApp, claims, code, count, count_code, email, reset_password, sessions,
};

const ENROLL: &str = "mutation { enrollTotp { factorId secret otpauthUri qrCodeSvg } }";
const CONFIRM: &str = "mutation($id: ID!, $code: String!) { confirmTotp(factorId: $id, code: $code) }";
const VERIFY: &str = "mutation($token: String, $code: String!) {
  verifyMfa(mfaToken: $token, code: $code) { accessToken refreshToken expiresIn user { id email } }
}";
const REMOVE: &str = "mutation($id: ID!) { removeFactor(id: $id) }";
const REGENERATE: &str = "mutation { regenerateRecoveryCodes }";
const MFA_STATE: &str = "{ me { factors { id kind createdAt lastUsedAt } recoveryCodesLeft } }";
const CHANGE_PASSWORD: &str =
    "mutation($input: ChangePasswordInput!) { changePassword(input: $input) { accessToken } }";
const DELETE: &str = "mutation($password: String) { deleteAccount(password: $password) }";
const NEW_PASSWORD: &str = "another correct horse battery";

/// An authenticator app: reads the otpauth URI and gives a code of a step after the last
/// one it gave (the service refuses a step twice), within the ±1 step the service takes.
pub(crate) struct Authenticator {
    totp: Totp,
    last_step: Option<u64>,
}

impl Authenticator {
    fn scan(otpauth_uri: &str) -> Self {
        Self {
            totp: Totp::from_url(otpauth_uri).unwrap(),
            last_step: None,
        }
    }

    /// A fresh code: up to three per 30-second window (previous, current and next step),
    /// then it waits for the next window.
    pub(crate) async fn code(&mut self) -> String {
        loop {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let (secs, step) = (now.as_secs(), now.as_secs() / 30);
            // Near a window's end the previous step could expire on its way to the server.
            if secs % 30 >= 27 {
                tokio::time::sleep(Duration::from_millis(3100)).await;
                continue;
            }
            let next = self.last_step.map_or(step - 1, |last| (last + 1).max(step - 1));
            if next <= step + 1 {
                self.last_step = Some(next);
                return self.totp.generate(next * 30).to_string();
            }
            let until_next_window = Duration::from_secs((step + 1) * 30) - now;
            tokio::time::sleep(until_next_window + Duration::from_millis(100)).await;
        }
    }
}

/// A signed-up user who turned TOTP on.
pub(crate) struct MfaUser {
    pub(crate) email: String,
    /// The access token of the session that enrolled (`aal1` claims, from registering).
    pub(crate) access: String,
    pub(crate) factor_id: String,
    pub(crate) app: Authenticator,
    pub(crate) recovery_codes: Vec<String>,
}

fn data<'a>(body: &'a Value, field: &str) -> &'a Value {
    assert!(body["errors"].is_null(), "{field} failed: {body}");
    &body["data"][field]
}

async fn enroll(app: &TestApp, access: &str) -> (String, Authenticator) {
    let body = app.graphql_as(access, ENROLL, json!({})).await;
    let enrollment = data(&body, "enrollTotp");
    let uri = enrollment["otpauthUri"].as_str().unwrap();
    (
        enrollment["factorId"].as_str().unwrap().to_owned(),
        Authenticator::scan(uri),
    )
}

async fn confirm(app: &TestApp, access: &str, factor_id: &str, code: &str) -> Value {
    app.graphql_as(access, CONFIRM, json!({ "id": factor_id, "code": code }))
        .await
}

pub(crate) async fn user_with_mfa(app: &TestApp, tag: &str) -> MfaUser {
    let address = email(tag);
    let registered = app.register(&address, PASSWORD).await;
    let access = registered["accessToken"].as_str().unwrap().to_owned();
    let (factor_id, mut authenticator) = enroll(app, &access).await;
    let body = confirm(app, &access, &factor_id, &authenticator.code().await).await;
    let recovery_codes = data(&body, "confirmTotp")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    MfaUser {
        email: address,
        access,
        factor_id,
        app: authenticator,
        recovery_codes,
    }
}

/// Logs in with the password, expecting `MFA_REQUIRED`; answers its `mfaToken`.
pub(crate) async fn mfa_token(app: &TestApp, address: &str) -> String {
    let body = app.login(address, PASSWORD).await;
    assert_eq!(code(&body), "MFA_REQUIRED", "{body}");
    body["errors"][0]["extensions"]["mfaToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) async fn verify(app: &TestApp, token: Option<&str>, code: &str) -> Value {
    app.graphql(VERIFY, json!({ "token": token, "code": code })).await
}

pub(crate) async fn step_up(app: &TestApp, access: &str, code: &str) -> Value {
    app.graphql_as(access, VERIFY, json!({ "code": code })).await
}

fn amr(token: &str) -> Vec<String> {
    serde_json::from_value(claims(token)["amr"].clone()).unwrap()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn totp_turns_on_and_then_sign_in_needs_it_and_yields_aal2_claims() {
    let app = TestApp::spawn().await;
    let address = email("mfa-flow");
    let registered = app.register(&address, PASSWORD).await;
    let access = registered["accessToken"].as_str().unwrap().to_owned();
    let first = claims(&access);
    assert_eq!(first["amr"], json!(["pwd"]));
    assert_eq!(
        (first["acr"].as_str(), first["scope"].as_str()),
        (Some("aal1"), Some("user"))
    );
    assert!(
        (first["auth_time"].as_i64().unwrap() - now()).abs() <= 5,
        "{first}"
    );
    let other = app.login(&address, PASSWORD).await;
    let other_access = data(&other, "login")["accessToken"].as_str().unwrap().to_owned();

    let body = app.graphql_as(&access, ENROLL, json!({})).await;
    let enrollment = data(&body, "enrollTotp").clone();
    let uri = enrollment["otpauthUri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/authgraph:"), "{uri}");
    assert!(uri.contains(&format!("secret={}", enrollment["secret"].as_str().unwrap())));
    assert!(
        enrollment["qrCodeSvg"].as_str().unwrap().starts_with("<?xml"),
        "{enrollment}"
    );
    let factor_id = enrollment["factorId"].as_str().unwrap();
    let mut authenticator = Authenticator::scan(uri);
    // The secret is sealed at rest: not its bytes, not its base32.
    let secret = authenticator.totp.secret().as_bytes().to_vec();
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let leaks = count(
        &app,
        &format!(
            "select count(*) as n from mfa_factors where position('\\x{hex}'::bytea in secret_sealed) > 0 \
             or position(convert_to('{}', 'UTF8') in secret_sealed) > 0",
            enrollment["secret"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(leaks, 0, "the TOTP secret is stored in the clear");
    // Pending until confirmed: no factor yet, and sign-in is unchanged.
    let state = app.graphql_as(&access, MFA_STATE, json!({})).await;
    assert_eq!(data(&state, "me")["factors"], json!([]));
    assert_eq!(
        code(&confirm(&app, &access, factor_id, "000000").await),
        "INVALID_CODE"
    );

    let body = confirm(&app, &access, factor_id, &authenticator.code().await).await;
    let codes = data(&body, "confirmTotp").as_array().unwrap().clone();
    assert_eq!(codes.len(), 10, "{body}");
    let ended = app.graphql_as(&other_access, MFA_STATE, json!({})).await;
    assert_eq!(
        code(&ended),
        "UNAUTHENTICATED",
        "the other session ended: {ended}"
    );
    let state = app.graphql_as(&access, MFA_STATE, json!({})).await;
    let me = data(&state, "me");
    assert_eq!(me["recoveryCodesLeft"], 10);
    assert_eq!(me["factors"][0]["id"], factor_id);
    assert_eq!(me["factors"][0]["kind"], "TOTP");
    // The confirming session proved the factor: its next refresh claims aal2.
    let refreshed = app
        .graphql(REFRESH, json!({ "t": registered["refreshToken"] }))
        .await;
    let upgraded = data(&refreshed, "refresh")["accessToken"].as_str().unwrap();
    assert_eq!(claims(upgraded)["acr"], "aal2");
    // Now a factor is on, so the aal1 token no longer passes step-up; the aal2 one does.
    let stale = confirm(&app, &access, factor_id, "123456").await;
    assert_eq!(code(&stale), "INSUFFICIENT_USER_AUTHENTICATION", "{stale}");
    let again = confirm(&app, upgraded, factor_id, &authenticator.code().await).await;
    assert_eq!(
        data(&again, "confirmTotp"),
        &json!([]),
        "recovery codes are shown once"
    );

    // Password alone: MFA_REQUIRED, with what the client needs next, and no session.
    let before = sessions(&app).await;
    let body = app.login(&address, PASSWORD).await;
    assert_eq!(code(&body), "MFA_REQUIRED", "{body}");
    assert!(body["data"].is_null(), "no tokens: {body}");
    let extensions = &body["errors"][0]["extensions"];
    assert_eq!(extensions["factors"], json!(["TOTP", "RECOVERY_CODE"]));
    let token = extensions["mfaToken"].as_str().unwrap();
    assert!(token.len() >= 43, "{token}");
    assert_eq!(sessions(&app).await, before);

    // A stale Authorization header does not matter with an mfaToken.
    let body = app
        .post(
            VERIFY,
            json!({ "token": token, "code": authenticator.code().await }),
            &[("authorization", "Bearer stale")],
        )
        .await
        .body;
    let payload = data(&body, "verifyMfa");
    assert_eq!(payload["user"]["email"], address.as_str());
    let access = payload["accessToken"].as_str().unwrap();
    let signed_in = claims(access);
    assert_eq!(amr(access), ["pwd", "otp", "mfa"]);
    assert_eq!(signed_in["acr"], "aal2");
    assert!((signed_in["auth_time"].as_i64().unwrap() - now()).abs() <= 5);
    let state = app.graphql_as(access, MFA_STATE, json!({})).await;
    assert!(data(&state, "me")["factors"][0]["lastUsedAt"].is_string());

    // Refresh keeps the session's claims, auth_time included.
    let refreshed = app
        .graphql(REFRESH, json!({ "t": payload["refreshToken"] }))
        .await;
    let renewed = data(&refreshed, "refresh")["accessToken"].as_str().unwrap();
    let renewed_claims = claims(renewed);
    assert_eq!(renewed_claims["sid"], signed_in["sid"]);
    for claim in ["amr", "acr", "auth_time", "scope"] {
        assert_eq!(renewed_claims[claim], signed_in[claim], "{claim}");
    }
}

#[tokio::test]
async fn a_code_works_once_and_a_wrong_code_leaves_the_mfa_token_usable() {
    let app = TestApp::spawn().await;
    let mut user = user_with_mfa(&app, "mfa-replay").await;
    let code_once = user.app.code().await;
    let token = mfa_token(&app, &user.email).await;
    data(&verify(&app, Some(&token), &code_once).await, "verifyMfa");

    let token = mfa_token(&app, &user.email).await;
    let replayed = verify(&app, Some(&token), &code_once).await;
    assert_eq!(code(&replayed), "INVALID_CODE", "{replayed}");
    for wrong in ["000000", "abcd-efgh-ijkl-mnop"] {
        assert_eq!(code(&verify(&app, Some(&token), wrong).await), "INVALID_CODE");
    }
    let blank = verify(&app, Some(&token), " ").await;
    assert_eq!(code(&blank), "BAD_USER_INPUT");
    assert_eq!(blank["errors"][0]["extensions"]["field"], "code");
    // Still usable after all of that; and cookie delivery works as for login.
    let response = app
        .post(
            VERIFY,
            json!({ "token": token, "code": user.app.code().await }),
            &[("x-token-delivery", "cookie")],
        )
        .await;
    let payload = data(&response.body, "verifyMfa");
    assert!(payload["refreshToken"].is_null(), "{payload}");
    let cookie = response.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("refresh_token=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}

#[tokio::test]
async fn a_recovery_code_signs_in_once() {
    let app = TestApp::spawn().await;
    let user = user_with_mfa(&app, "mfa-recovery").await;
    let recovery = &user.recovery_codes[3];
    let token = mfa_token(&app, &user.email).await;
    // Typed loosely: upper case, spaces for dashes.
    let typed = recovery.to_uppercase().replace('-', " ");
    let body = verify(&app, Some(&token), &typed).await;
    let access = data(&body, "verifyMfa")["accessToken"].as_str().unwrap();
    assert_eq!(amr(access), ["pwd", "otp", "mfa"]);
    assert_eq!(claims(access)["acr"], "aal2");
    let state = app.graphql_as(access, MFA_STATE, json!({})).await;
    assert_eq!(data(&state, "me")["recoveryCodesLeft"], 9);

    let token = mfa_token(&app, &user.email).await;
    assert_eq!(code(&verify(&app, Some(&token), recovery).await), "INVALID_CODE");
    data(
        &verify(&app, Some(&token), &user.recovery_codes[4]).await,
        "verifyMfa",
    );
}

#[tokio::test]
async fn an_mfa_token_is_single_use_and_expires() {
    let app = TestApp::builder().env("MFA_TOKEN_TTL", "2s").spawn().await;
    let user = user_with_mfa(&app, "mfa-token").await;
    let token = mfa_token(&app, &user.email).await;
    data(
        &verify(&app, Some(&token), &user.recovery_codes[0]).await,
        "verifyMfa",
    );
    let reused = verify(&app, Some(&token), &user.recovery_codes[1]).await;
    assert_eq!(code(&reused), "INVALID_TOKEN", "{reused}");
    for bogus in ["", "not-a-token"] {
        assert_eq!(
            code(&verify(&app, Some(bogus), &user.recovery_codes[1]).await),
            "INVALID_TOKEN"
        );
    }

    let token = mfa_token(&app, &user.email).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let expired = verify(&app, Some(&token), &user.recovery_codes[1]).await;
    assert_eq!(code(&expired), "INVALID_TOKEN", "{expired}");
    let state = app
        .graphql_as(&user.access, "{ me { recoveryCodesLeft } }", json!({}))
        .await;
    assert_eq!(
        data(&state, "me")["recoveryCodesLeft"],
        9,
        "the refused attempt used no code"
    );
}

#[tokio::test]
async fn wrong_codes_share_the_password_throttle_and_aliases_do_not_multiply_them() {
    let app = TestApp::builder()
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "4/1h,10m..1h")
        .spawn()
        .await;
    let mut user = user_with_mfa(&app, "mfa-throttle").await;
    // The right password counts until the second factor clears it: else every login
    // would buy a fresh round of guesses.
    let token = mfa_token(&app, &user.email).await;
    let aliases: String = (0..10)
        .map(|i| {
            format!(
                "a{i}: verifyMfa(mfaToken: $token, code: \"{:06}\") {{ accessToken }} ",
                111_111 + i
            )
        })
        .collect();
    let burst = app
        .graphql(
            &format!("mutation($token: String) {{ {aliases} }}"),
            json!({ "token": token }),
        )
        .await;
    assert_eq!(count_code(&burst, "INVALID_CODE"), 3, "{burst}");
    assert_eq!(count_code(&burst, "RATE_LIMITED"), 7, "{burst}");
    // Past the limit even the right code and the right password wait.
    let right = verify(&app, Some(&token), &user.app.code().await).await;
    assert_eq!(code(&right), "RATE_LIMITED", "{right}");
    assert_eq!(code(&app.login(&user.email, PASSWORD).await), "RATE_LIMITED");
    // Step-up guesses count on the same counters.
    let guess = step_up(&app, &user.access, "123456").await;
    assert_eq!(code(&guess), "RATE_LIMITED", "{guess}");

    // Once the wait is over, the right code signs in and clears the count.
    app.sql("update throttle_counters set locked_until = now()").await;
    data(
        &verify(&app, Some(&token), &user.app.code().await).await,
        "verifyMfa",
    );
    let remaining = count(
        &app,
        "select coalesce(max(attempts), 0)::bigint as n from throttle_counters where key like 'login.account_address:%'",
    )
    .await;
    assert_eq!(remaining, 0);
}

#[tokio::test]
// 8 s, not 2: a fresh TOTP code may wait up to 3.1 s (near a window's end), and on a
// loaded 2-core machine the sign-in, enrollment and confirmation must all fit inside.
async fn step_up_is_judged_from_the_presented_token() {
    let app = TestApp::builder().env("STEP_UP_MAX_AGE", "8s").spawn().await;
    let address = email("mfa-step-up");
    let registered = app.register(&address, PASSWORD).await;
    let stale = registered["accessToken"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(8100)).await;

    // Without a factor: adding a sign-in method needs a recent sign-in...
    let refused = app.graphql_as(&stale, ENROLL, json!({})).await;
    assert_eq!(code(&refused), "INSUFFICIENT_USER_AUTHENTICATION", "{refused}");
    assert_eq!(refused["errors"][0]["extensions"]["maxAge"], 8);
    // ...while a password change with the password works as it always did.
    let changed = app
        .graphql_as(
            &stale,
            CHANGE_PASSWORD,
            json!({ "input": { "currentPassword": PASSWORD, "newPassword": NEW_PASSWORD } }),
        )
        .await;
    let stale = data(&changed, "changePassword")["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let no_factor = step_up(&app, &stale, "123456").await;
    assert_eq!(code(&no_factor), "BAD_USER_INPUT", "{no_factor}");

    let login = app.login(&address, NEW_PASSWORD).await;
    let fresh = data(&login, "login")["accessToken"].as_str().unwrap().to_owned();
    let (factor_id, mut authenticator) = enroll(&app, &fresh).await;
    data(
        &confirm(&app, &fresh, &factor_id, &authenticator.code().await).await,
        "confirmTotp",
    );

    // With a factor, a password sign-in is not enough for sensitive operations.
    for (query, variables) in [
        (REMOVE, json!({ "id": factor_id })),
        (REGENERATE, json!({})),
        (DELETE, json!({ "password": NEW_PASSWORD })),
        (
            CHANGE_PASSWORD,
            json!({ "input": { "currentPassword": NEW_PASSWORD, "newPassword": PASSWORD } }),
        ),
    ] {
        let body = app.graphql_as(&fresh, query, variables).await;
        assert_eq!(code(&body), "INSUFFICIENT_USER_AUTHENTICATION", "{query}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("verifyMfa"), "{message}");
    }

    // Step-up without an mfaToken needs an access token...
    assert_eq!(code(&verify(&app, None, "123456").await), "UNAUTHENTICATED");
    // ...and gives the same session a new pair: fresh auth_time, otp and mfa, aal2.
    let body = step_up(&app, &fresh, &authenticator.code().await).await;
    let stepped = data(&body, "verifyMfa")["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (before, after) = (claims(&fresh), claims(&stepped));
    assert_eq!(after["sid"], before["sid"]);
    assert_eq!(amr(&stepped), ["pwd", "otp", "mfa"]);
    assert_eq!(after["acr"], "aal2");
    assert!(after["auth_time"].as_i64() >= before["auth_time"].as_i64());
    let codes = app.graphql_as(&stepped, REGENERATE, json!({})).await;
    assert_eq!(
        data(&codes, "regenerateRecoveryCodes").as_array().unwrap().len(),
        10
    );
    // The older token of the same session does not inherit the step-up.
    let older = app.graphql_as(&fresh, REGENERATE, json!({})).await;
    assert_eq!(code(&older), "INSUFFICIENT_USER_AUTHENTICATION");

    // And a step-up ages like a sign-in.
    tokio::time::sleep(Duration::from_millis(8100)).await;
    let aged = app
        .graphql_as(&stepped, DELETE, json!({ "password": NEW_PASSWORD }))
        .await;
    assert_eq!(code(&aged), "INSUFFICIENT_USER_AUTHENTICATION", "{aged}");
    let body = step_up(&app, &stepped, &authenticator.code().await).await;
    let again = data(&body, "verifyMfa")["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing = app.graphql_as(&again, DELETE, json!({})).await;
    assert_eq!(code(&missing), "BAD_USER_INPUT");
    assert_eq!(missing["errors"][0]["extensions"]["field"], "password");
    let deleted = app
        .graphql_as(&again, DELETE, json!({ "password": NEW_PASSWORD }))
        .await;
    assert_eq!(data(&deleted, "deleteAccount"), true);
    assert_eq!(count(&app, "select count(*) as n from mfa_factors").await, 0);
}

#[tokio::test]
async fn removing_a_factor_removes_only_it_and_the_last_takes_the_recovery_codes() {
    let app = TestApp::spawn().await;
    let mut user = user_with_mfa(&app, "mfa-remove").await;
    let body = step_up(&app, &user.access, &user.app.code().await).await;
    let access = data(&body, "verifyMfa")["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (second_id, mut second) = enroll(&app, &access).await;
    let body = confirm(&app, &access, &second_id, &second.code().await).await;
    assert_eq!(
        data(&body, "confirmTotp"),
        &json!([]),
        "codes come with the first factor only"
    );
    let state = app.graphql_as(&access, MFA_STATE, json!({})).await;
    assert_eq!(data(&state, "me")["factors"].as_array().unwrap().len(), 2);

    let removed = app
        .graphql_as(&access, REMOVE, json!({ "id": user.factor_id }))
        .await;
    assert_eq!(data(&removed, "removeFactor"), true);
    let state = app.graphql_as(&access, MFA_STATE, json!({})).await;
    let me = data(&state, "me");
    assert_eq!(me["factors"][0]["id"], second_id.as_str());
    assert_eq!(me["factors"].as_array().unwrap().len(), 1);
    assert_eq!(me["recoveryCodesLeft"], 10);
    for unknown in [user.factor_id.as_str(), "not-an-id"] {
        let again = app.graphql_as(&access, REMOVE, json!({ "id": unknown })).await;
        assert_eq!(data(&again, "removeFactor"), false);
    }
    // Another user cannot remove my factor.
    let stranger = user_with_mfa(&app, "mfa-stranger").await;
    let token = mfa_token(&app, &stranger.email).await;
    let body = verify(&app, Some(&token), &stranger.recovery_codes[0]).await;
    let theirs = data(&body, "verifyMfa")["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = app.graphql_as(&theirs, REMOVE, json!({ "id": second_id })).await;
    assert_eq!(data(&body, "removeFactor"), false);

    let removed = app.graphql_as(&access, REMOVE, json!({ "id": second_id })).await;
    assert_eq!(data(&removed, "removeFactor"), true);
    let state = app.graphql_as(&access, MFA_STATE, json!({})).await;
    assert_eq!(data(&state, "me")["recoveryCodesLeft"], 0);
    let login = app.login(&user.email, PASSWORD).await;
    assert!(login["errors"].is_null(), "MFA is off again: {login}");
}

#[tokio::test]
async fn others_see_neither_my_factors_nor_my_recovery_codes() {
    let app = TestApp::spawn().await;
    let user = user_with_mfa(&app, "mfa-private").await;
    let other = app.register(&email("mfa-nosy"), PASSWORD).await;
    let id = claims(&user.access)["sub"].as_str().unwrap().to_owned();
    let body = app
        .graphql_as(
            other["accessToken"].as_str().unwrap(),
            "query($id: ID!) { user(id: $id) { id factors { id } recoveryCodesLeft } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(body["data"]["user"]["id"], id.as_str());
    assert!(body["data"]["user"]["factors"].is_null() && body["data"]["user"]["recoveryCodesLeft"].is_null());
    assert_eq!(count_code(&body, "FORBIDDEN"), 2, "{body}");
}

#[tokio::test]
async fn a_password_reset_keeps_the_factor() {
    let app = TestApp::spawn().await;
    let user = user_with_mfa(&app, "mfa-reset").await;
    reset_password(&app, &user.email, NEW_PASSWORD).await;
    let login = app.login(&user.email, NEW_PASSWORD).await;
    assert_eq!(code(&login), "MFA_REQUIRED", "{login}");
}

#[tokio::test]
async fn reset_mfa_command_removes_factors_and_codes_and_is_logged() {
    let app = TestApp::spawn().await;
    let user = user_with_mfa(&app, "mfa-cli").await;
    let run = |address: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_authgraph"))
            .args(["user", "reset-mfa", address])
            .env("DATABASE_URL", &app.db.url)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env(
                "DATA_DIR",
                std::env::temp_dir().join(format!("authgraph-cli-{}", uuid::Uuid::new_v4())),
            )
            .output()
            .unwrap()
    };
    let output = run(&user.email.to_uppercase());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let user_id = claims(&user.access)["sub"].as_str().unwrap().to_owned();
    let logged = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"].as_str().is_some_and(|m| m.starts_with("MFA reset")))
        .unwrap_or_else(|| panic!("no log line of the reset in {stdout}"));
    assert_eq!(logged["user.id"], user_id.as_str(), "{logged}");
    assert!(
        !stdout.contains(&user.email),
        "the email is never logged: {stdout}"
    );

    let login = app.login(&user.email, PASSWORD).await;
    let access = data(&login, "login")["accessToken"].as_str().unwrap().to_owned();
    let state = app.graphql_as(&access, MFA_STATE, json!({})).await;
    assert_eq!(data(&state, "me")["factors"], json!([]));
    assert_eq!(data(&state, "me")["recoveryCodesLeft"], 0);
    assert!(!run("nobody@example.com").status.success());
}

#[tokio::test(flavor = "current_thread")]
async fn no_secret_code_or_mfa_token_reaches_a_log() {
    use tracing_subscriber::{filter::LevelFilter, fmt, prelude::*};

    use crate::redaction::Capture;

    let app = TestApp::spawn().await;
    let capture = Capture::default();
    let writer = {
        let capture = capture.clone();
        move || capture.clone()
    };
    // Production's JSON lines and the compact format, at TRACE, behind the secrets guard.
    let subscriber = tracing_subscriber::registry()
        .with(authgraph::telemetry::secrets_guard())
        .with(LevelFilter::TRACE)
        .with(
            fmt::layer()
                .compact()
                .with_ansi(false)
                .with_writer(writer.clone()),
        )
        .with(authgraph::telemetry::JsonLines::new(writer));
    let scoped = tracing::subscriber::set_default(subscriber);
    log::set_max_level(log::LevelFilter::Trace);

    let address = email("mfa-redaction");
    let registered = app.register(&address, PASSWORD).await;
    let access = registered["accessToken"].as_str().unwrap().to_owned();
    let body = app.graphql_as(&access, ENROLL, json!({})).await;
    let enrollment = data(&body, "enrollTotp").clone();
    let mut authenticator = Authenticator::scan(enrollment["otpauthUri"].as_str().unwrap());
    let id = enrollment["factorId"].as_str().unwrap();
    let body = confirm(&app, &access, id, &authenticator.code().await).await;
    let recovery: Vec<String> = serde_json::from_value(data(&body, "confirmTotp").clone()).unwrap();
    let token = mfa_token(&app, &address).await;
    assert_eq!(code(&verify(&app, Some(&token), "000000").await), "INVALID_CODE");
    let body = verify(&app, Some(&token), &recovery[0]).await;
    let signed_in = data(&body, "verifyMfa")["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = step_up(&app, &signed_in, &authenticator.code().await).await;
    let stepped = data(&body, "verifyMfa")["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(scoped);

    let logs = capture.text();
    for expected in [
        "TOTP enrollment started",
        "second factor required",
        "step-up succeeded",
    ] {
        assert!(logs.contains(expected), "the capture lacks {expected:?}");
    }
    let mut secrets = vec![
        enrollment["secret"].as_str().unwrap().to_owned(),
        enrollment["otpauthUri"].as_str().unwrap().to_owned(),
        token,
        signed_in,
        stepped,
        address,
    ];
    secrets.extend(recovery.iter().cloned());
    // Recovery codes as typed without their dashes, too.
    secrets.extend(recovery.iter().map(|c| c.replace('-', "")));
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a log line carries a secret: {}",
            logs.lines().find(|l| l.contains(secret.as_str())).unwrap_or("")
        );
    }
}

#[tokio::test]
async fn races_use_a_code_or_an_mfa_token_once_and_any_replica_completes_a_sign_in() {
    use authgraph::{auth::jwt::SigningKey, state::AppState};
    use axum::extract::connect_info::MockConnectInfo;

    let app = TestApp::spawn().await;
    let mut user = user_with_mfa(&app, "mfa-race").await;
    // A second replica: its own process state and keys; the same database and MFA key.
    let (key, _) = SigningKey::generate(KeyAlgorithm::Es256).unwrap();
    let other = AppState::with_keys((*app.state.config).clone(), vec![key]).unwrap();
    let other = authgraph::app(other).layer(MockConnectInfo(crate::support::CLIENT));
    let via_other = |token: String, code: String| {
        let other = other.clone();
        async move {
            crate::support::post_via(&other, VERIFY, json!({ "token": token, "code": code }), &[])
                .await
                .body
        }
    };

    // One TOTP code, two sign-ins at once (one per replica): exactly one gets in.
    let (first, second) = (
        mfa_token(&app, &user.email).await,
        mfa_token(&app, &user.email).await,
    );
    let code_once = user.app.code().await;
    let (a, b) = tokio::join!(
        verify(&app, Some(&first), &code_once),
        via_other(second, code_once.clone())
    );
    let mut outcomes = [
        a["errors"][0]["extensions"]["code"].clone(),
        b["errors"][0]["extensions"]["code"].clone(),
    ];
    outcomes.sort_by_key(Value::to_string);
    assert_eq!(outcomes, [json!("INVALID_CODE"), Value::Null], "{a}\n{b}");

    // One mfaToken, two different recovery codes at once: one session, one INVALID_TOKEN.
    let token = mfa_token(&app, &user.email).await;
    let before = sessions(&app).await;
    let (a, b) = tokio::join!(
        verify(&app, Some(&token), &user.recovery_codes[0]),
        via_other(token.clone(), user.recovery_codes[1].clone())
    );
    let mut outcomes = [
        a["errors"][0]["extensions"]["code"].clone(),
        b["errors"][0]["extensions"]["code"].clone(),
    ];
    outcomes.sort_by_key(Value::to_string);
    assert_eq!(outcomes, [json!("INVALID_TOKEN"), Value::Null], "{a}\n{b}");
    assert_eq!(sessions(&app).await, before + 1);

    // A sign-in started on one replica completes on the other.
    let token = mfa_token(&app, &user.email).await;
    let body = via_other(token, user.app.code().await).await;
    assert_eq!(
        amr(data(&body, "verifyMfa")["accessToken"].as_str().unwrap()),
        ["pwd", "otp", "mfa"]
    );
}
