//! Social sign-in against the in-process provider of `support_oidc`: the whole flow,
//! state and PKCE binding, ID-token checks, the breaker, linking rules, GitHub, MFA.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::support::{
    FakeProvider, PASSWORD, Person, REDIRECT_URI, TestApp, Tweaks, claims, code, email, reset_password,
};

const START: &str = "mutation($p: String!, $r: String!, $c: String!, $l: Boolean!) {
  startOAuth(provider: $p, redirectUri: $r, codeChallenge: $c, link: $l) { authorizationUrl }
}";
const COMPLETE: &str = "mutation($code: String!, $state: String!, $v: String!) {
  completeOAuth(code: $code, state: $state, codeVerifier: $v) {
    accessToken refreshToken
    user { id email emailVerified identities { id provider email linkedAt } }
  }
}";
const PROVIDERS: &str = "{ oauthProviders { id name } }";
const IDENTITIES: &str = "{ me { id identities { id provider email } } }";
const UNLINK: &str = "mutation($id: ID!) { unlinkIdentity(id: $id) }";
const DELETE: &str = "mutation($password: String) { deleteAccount(password: $password) }";

/// A client's own PKCE pair.
struct Pkce {
    verifier: String,
    challenge: String,
}

impl Pkce {
    fn new() -> Self {
        let verifier = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            verifier.as_bytes(),
        ));
        Self { verifier, challenge }
    }
}

async fn spawn(provider: &FakeProvider, trust_email: bool) -> TestApp {
    TestApp::builder().envs(provider.env(trust_email)).spawn().await
}

async fn start(app: &TestApp, token: Option<&str>, provider: &str, pkce: &Pkce, link: bool) -> Value {
    let vars = json!({ "p": provider, "r": REDIRECT_URI, "c": pkce.challenge, "l": link });
    match token {
        Some(token) => app.graphql_as(token, START, vars).await,
        None => app.graphql(START, vars).await,
    }
}

fn url_of(body: &Value) -> &str {
    body["data"]["startOAuth"]["authorizationUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("startOAuth failed: {body}"))
}

async fn complete(app: &TestApp, token: Option<&str>, code: &str, state: &str, verifier: &str) -> Value {
    let vars = json!({ "code": code, "state": state, "v": verifier });
    match token {
        Some(token) => app.graphql_as(token, COMPLETE, vars).await,
        None => app.graphql(COMPLETE, vars).await,
    }
}

/// The whole browser-less flow for `person` at `provider_id`; answers completeOAuth's body.
async fn sign_in(app: &TestApp, provider: &FakeProvider, provider_id: &str, person: &Person) -> Value {
    let pkce = Pkce::new();
    let started = start(app, None, provider_id, &pkce, false).await;
    provider.sign_in_next(person);
    let (code, state) = provider.follow(url_of(&started)).await;
    complete(app, None, &code, &state, &pkce.verifier).await
}

fn payload(body: &Value) -> &Value {
    assert!(body["errors"].is_null(), "completeOAuth failed: {body}");
    &body["data"]["completeOAuth"]
}

fn access(body: &Value) -> String {
    payload(body)["accessToken"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_new_person_gets_an_account_with_federated_claims_and_comes_back_to_it() {
    let provider = FakeProvider::start().await;
    let app = spawn(&provider, true).await;
    let listed = app.graphql(PROVIDERS, json!({})).await;
    assert_eq!(
        listed["data"]["oauthProviders"],
        json!([{ "id": "acme", "name": "Acme ID" }, { "id": "github", "name": "GitHub" }])
    );

    let address = email("social-new");
    let person = Person::new(&address, true);
    let pkce = Pkce::new();
    let started = start(&app, None, "acme", &pkce, false).await;
    let url = url::Url::parse(url_of(&started)).unwrap();
    let params: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_ne!(
        params["code_challenge"], pkce.challenge,
        "our own PKCE pair towards the provider"
    );
    assert!(params["scope"].contains("openid"));
    assert!(params.contains_key("nonce"));
    provider.sign_in_next(&person);
    let (code_param, state) = provider.follow(url.as_str()).await;
    let body = complete(&app, None, &code_param, &state, &pkce.verifier).await;
    let signed_in = payload(&body);
    assert_eq!(
        signed_in["user"]["email"],
        address.as_str(),
        "trusted and verified: the email is taken"
    );
    assert_eq!(signed_in["user"]["emailVerified"], true);
    assert_eq!(signed_in["user"]["identities"][0]["provider"], "acme");
    let token_claims = claims(signed_in["accessToken"].as_str().unwrap());
    assert_eq!(token_claims["amr"], json!(["fed"]));
    assert_eq!(token_claims["acr"], "aal1");
    let user_id = signed_in["user"]["id"].clone();

    let again = sign_in(&app, &provider, "acme", &person).await;
    assert_eq!(
        payload(&again)["user"]["id"],
        user_id,
        "the same identity, the same account"
    );
    assert_eq!(payload(&again)["user"]["identities"].as_array().unwrap().len(), 1);

    // No password: login runs the dummy hash and answers like a wrong password.
    let login = app.login(&address, PASSWORD).await;
    assert_eq!(code(&login), "INVALID_CREDENTIALS", "{login}");
    let login = app.login(&address, "").await;
    assert!(
        matches!(code(&login), "INVALID_CREDENTIALS" | "BAD_USER_INPUT"),
        "{login}"
    );
}

#[tokio::test]
async fn an_untrusted_or_unverified_email_never_occupies_an_account() {
    let provider = FakeProvider::start().await;
    let app = spawn(&provider, false).await;
    let address = email("untrusted");
    let body = sign_in(&app, &provider, "acme", &Person::new(&address, true)).await;
    assert_eq!(payload(&body)["user"]["email"], Value::Null, "{body}");
    assert_eq!(payload(&body)["user"]["emailVerified"], false);
    // The identity still remembers what the provider said, for display.
    assert_eq!(payload(&body)["user"]["identities"][0]["email"], address.as_str());
    // The address's real owner can still register it.
    let registered = app.register(&address, PASSWORD).await;
    assert_eq!(registered["user"]["email"], address.as_str());

    let trusting = spawn(&provider, true).await;
    let unverified = email("unverified");
    let body = sign_in(&trusting, &provider, "acme", &Person::new(&unverified, false)).await;
    assert_eq!(payload(&body)["user"]["email"], Value::Null, "{body}");
}

#[tokio::test]
async fn email_claims_found_only_in_userinfo_are_used() {
    let provider = FakeProvider::start().await;
    let app = spawn(&provider, true).await;
    provider.tweak(Tweaks {
        email_only_in_userinfo: true,
        ..Tweaks::default()
    });
    let address = email("userinfo");
    let body = sign_in(&app, &provider, "acme", &Person::new(&address, true)).await;
    assert_eq!(payload(&body)["user"]["email"], address.as_str(), "{body}");
    assert_eq!(payload(&body)["user"]["emailVerified"], true);
}

#[tokio::test]
async fn a_wrong_replayed_or_unbound_state_is_an_invalid_token() {
    let provider = FakeProvider::start().await;
    let app = spawn(&provider, true).await;
    let person = Person::new(&email("state"), true);

    // Wrong state.
    let pkce = Pkce::new();
    let started = start(&app, None, "acme", &pkce, false).await;
    provider.sign_in_next(&person);
    let (code_param, state) = provider.follow(url_of(&started)).await;
    let body = complete(&app, None, &code_param, "not-a-state-we-issued", &pkce.verifier).await;
    assert_eq!(code(&body), "INVALID_TOKEN", "{body}");

    // Someone else's verifier (a leaked callback URL): refused, and the state is used up.
    let other = Pkce::new();
    let body = complete(&app, None, &code_param, &state, &other.verifier).await;
    assert_eq!(code(&body), "INVALID_TOKEN", "{body}");
    let body = complete(&app, None, &code_param, &state, &pkce.verifier).await;
    assert_eq!(code(&body), "INVALID_TOKEN", "a state works once: {body}");

    // Replayed state after a success.
    let pkce = Pkce::new();
    let started = start(&app, None, "acme", &pkce, false).await;
    provider.sign_in_next(&person);
    let (code_param, state) = provider.follow(url_of(&started)).await;
    payload(&complete(&app, None, &code_param, &state, &pkce.verifier).await);
    let replay = complete(&app, None, &code_param, &state, &pkce.verifier).await;
    assert_eq!(code(&replay), "INVALID_TOKEN", "{replay}");

    // Expired state.
    let pkce = Pkce::new();
    let started = start(&app, None, "acme", &pkce, false).await;
    provider.sign_in_next(&person);
    let (code_param, state) = provider.follow(url_of(&started)).await;
    app.sql("update oauth_states set expires_at = now() - interval '1 second'")
        .await;
    let body = complete(&app, None, &code_param, &state, &pkce.verifier).await;
    assert_eq!(code(&body), "INVALID_TOKEN", "{body}");

    // A malformed verifier is named.
    let body = complete(&app, None, "c", "s", "short").await;
    assert_eq!(code(&body), "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "codeVerifier");
}

#[tokio::test]
async fn id_tokens_with_a_wrong_nonce_audience_expiry_or_algorithm_are_refused() {
    let provider = FakeProvider::start().await;
    let app = spawn(&provider, true).await;
    let cases = [
        (
            "wrong nonce",
            Tweaks {
                wrong_nonce: true,
                ..Tweaks::default()
            },
        ),
        (
            "wrong aud",
            Tweaks {
                wrong_aud: true,
                ..Tweaks::default()
            },
        ),
        (
            "expired",
            Tweaks {
                expired: true,
                ..Tweaks::default()
            },
        ),
        (
            "HS256 keyed with the client secret",
            Tweaks {
                hmac_signed: true,
                ..Tweaks::default()
            },
        ),
    ];
    for (case, tweaks) in cases {
        provider.tweak(tweaks);
        let body = sign_in(&app, &provider, "acme", &Person::new(&email("idt"), true)).await;
        assert_eq!(code(&body), "INVALID_TOKEN", "{case}: {body}");
    }
    provider.tweak(Tweaks::default());
    let body = sign_in(&app, &provider, "acme", &Person::new(&email("idt"), true)).await;
    payload(&body);
}

#[tokio::test]
async fn an_unknown_provider_or_unlisted_redirect_uri_is_bad_input_naming_the_field() {
    let provider = FakeProvider::start().await;
    let app = spawn(&provider, true).await;
    let pkce = Pkce::new();
    let body = start(&app, None, "myspace", &pkce, false).await;
    assert_eq!(code(&body), "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "provider");
    for redirect in [
        "https://evil.example/auth/callback",
        "https://app.example/auth/callback/",
        "https://app.example/auth/callback?x=1",
    ] {
        let vars = json!({ "p": "acme", "r": redirect, "c": pkce.challenge, "l": false });
        let body = app.graphql(START, vars).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{redirect}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "redirectUri");
    }
    let vars = json!({ "p": "acme", "r": REDIRECT_URI, "c": "plain", "l": false });
    let body = app.graphql(START, vars).await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "codeChallenge");
    // Another allow-listed URI works.
    let vars = json!({ "p": "acme", "r": "https://other.example/cb", "c": pkce.challenge, "l": false });
    url_of(&app.graphql(START, vars).await);
}

#[tokio::test]
async fn a_provider_that_is_down_answers_service_unavailable_and_opens_its_breaker() {
    let provider = FakeProvider::start().await;
    let app = spawn(&provider, true).await;
    provider.set_down(true);
    let pkce = Pkce::new();
    for _ in 0..2 {
        let body = start(&app, None, "acme", &pkce, false).await;
        assert_eq!(code(&body), "SERVICE_UNAVAILABLE", "{body}");
    }
    // The breaker is open: the provider is back but not called until OAUTH_BREAKER_OPEN.
    provider.set_down(false);
    let hits = provider.hits();
    let started = SystemTime::now();
    let body = start(&app, None, "acme", &pkce, false).await;
    assert_eq!(code(&body), "SERVICE_UNAVAILABLE", "{body}");
    assert_eq!(
        provider.hits(),
        hits,
        "an open breaker does not call the provider"
    );
    assert!(
        started.elapsed().unwrap().as_millis() < 1000,
        "no waiting on a known outage"
    );
    // GitHub has a breaker of its own.
    let github = start(&app, None, "github", &pkce, false).await;
    url_of(&github);
}

#[tokio::test]
async fn a_provider_email_matching_an_account_links_only_when_trusted_and_verified_on_both_sides() {
    let provider = FakeProvider::start().await;
    let untrusting = spawn(&provider, false).await;
    let address = email("existing");
    untrusting.register(&address, PASSWORD).await;
    untrusting.sql("update users set email_verified_at = now()").await;
    let body = sign_in(&untrusting, &provider, "acme", &Person::new(&address, true)).await;
    assert_eq!(code(&body), "LINK_REQUIRED", "untrusted provider: {body}");
    assert_eq!(body["errors"][0]["extensions"]["provider"], "acme");

    let app = spawn(&provider, true).await;
    let registered = app.register(&address, PASSWORD).await;
    // Unverified at the provider.
    let body = sign_in(&app, &provider, "acme", &Person::new(&address, false)).await;
    assert_eq!(code(&body), "LINK_REQUIRED", "unverified provider email: {body}");
    // Verified at the provider, but our account's email is not verified.
    let person = Person::new(&address, true);
    let body = sign_in(&app, &provider, "acme", &person).await;
    assert_eq!(code(&body), "LINK_REQUIRED", "unverified account email: {body}");
    // Both verified, provider trusted: linked automatically, password still works.
    app.sql("update users set email_verified_at = now()").await;
    let body = sign_in(&app, &provider, "acme", &person).await;
    assert_eq!(payload(&body)["user"]["id"], registered["user"]["id"]);
    assert_eq!(payload(&body)["user"]["identities"][0]["provider"], "acme");
    assert!(app.login(&address, PASSWORD).await["errors"].is_null());
}

#[tokio::test]
async fn a_signed_in_user_links_and_unlinks_identities_but_keeps_one_way_in() {
    let provider = FakeProvider::start().await;
    let app = spawn(&provider, false).await;
    let registered = app.register(&email("linker"), PASSWORD).await;
    let token = registered["accessToken"].as_str().unwrap().to_owned();
    let person = Person::new(&email("elsewhere"), false);

    // Linking needs a token.
    let pkce = Pkce::new();
    let body = start(&app, None, "acme", &pkce, true).await;
    assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");

    // Completed without the token, or with another user's: refused.
    let other = app.register(&email("other"), PASSWORD).await;
    let other_token = other["accessToken"].as_str().unwrap();
    for wrong in [None, Some(other_token)] {
        let started = start(&app, Some(&token), "acme", &pkce, true).await;
        provider.sign_in_next(&person);
        let (code_param, state) = provider.follow(url_of(&started)).await;
        let body = complete(&app, wrong, &code_param, &state, &pkce.verifier).await;
        let expected = if wrong.is_some() {
            "FORBIDDEN"
        } else {
            "UNAUTHENTICATED"
        };
        assert_eq!(code(&body), expected, "{body}");
    }

    // The same user's token: linked, and the session gets a new pair.
    let started = start(&app, Some(&token), "acme", &pkce, true).await;
    provider.sign_in_next(&person);
    let (code_param, state) = provider.follow(url_of(&started)).await;
    let body = complete(&app, Some(&token), &code_param, &state, &pkce.verifier).await;
    let linked = payload(&body);
    assert_eq!(linked["user"]["id"], registered["user"]["id"]);
    assert_eq!(
        claims(linked["accessToken"].as_str().unwrap())["amr"],
        json!(["pwd"])
    );
    let token = linked["accessToken"].as_str().unwrap().to_owned();
    let me = app.graphql_as(&token, IDENTITIES, json!({})).await;
    let identity_id = me["data"]["me"]["identities"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The identity now signs in to this account.
    let body = sign_in(&app, &provider, "acme", &person).await;
    assert_eq!(payload(&body)["user"]["id"], registered["user"]["id"]);

    // Linking it to another account is refused.
    let started = start(&app, Some(other_token), "acme", &pkce, true).await;
    provider.sign_in_next(&person);
    let (code_param, state) = provider.follow(url_of(&started)).await;
    let body = complete(&app, Some(other_token), &code_param, &state, &pkce.verifier).await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");

    // Others cannot see or unlink it.
    let body = app
        .graphql_as(other_token, UNLINK, json!({ "id": identity_id }))
        .await;
    assert_eq!(body["data"]["unlinkIdentity"], false, "{body}");
    // Password left: unlinking works.
    let body = app.graphql_as(&token, UNLINK, json!({ "id": identity_id })).await;
    assert_eq!(body["data"]["unlinkIdentity"], true, "{body}");
    let unlinked = crate::support::count(
        &app,
        "select count(*) as n from audit_events where type = 'identity.unlinked'",
    )
    .await;
    assert_eq!(unlinked, 1, "the unlink is in the audit log");
    let linked = crate::support::count(
        &app,
        "select count(*) as n from audit_events where type = 'identity.linked'",
    )
    .await;
    assert!(linked >= 1, "the link is in the audit log");

    // A social-only account cannot unlink its only identity, and deletes on step-up alone.
    let social = sign_in(&app, &provider, "acme", &Person::new(&email("only"), true)).await;
    let social_token = access(&social);
    let only = payload(&social)["user"]["identities"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = app.graphql_as(&social_token, UNLINK, json!({ "id": only })).await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let body = app.graphql_as(&social_token, DELETE, json!({})).await;
    assert_eq!(body["data"]["deleteAccount"], true, "{body}");
}

#[tokio::test]
async fn github_signs_in_through_its_user_and_verified_emails_endpoints() {
    let provider = FakeProvider::start().await;
    let app = spawn(&provider, false).await;
    let address = email("octo");
    let person = Person::new(&address, true);
    let body = sign_in(&app, &provider, "github", &person).await;
    let signed_in = payload(&body);
    // GitHub is configured as trusted in the fake's environment; its primary address is verified.
    assert_eq!(signed_in["user"]["email"], address.as_str(), "{body}");
    assert_eq!(signed_in["user"]["identities"][0]["provider"], "github");
    assert_eq!(
        claims(signed_in["accessToken"].as_str().unwrap())["amr"],
        json!(["fed"])
    );
    let again = sign_in(&app, &provider, "github", &person).await;
    assert_eq!(payload(&again)["user"]["id"], signed_in["user"]["id"]);

    // A bad code (GitHub answers 200 with an error) is an invalid token, not an outage.
    let pkce = Pkce::new();
    let started = start(&app, None, "github", &pkce, false).await;
    provider.sign_in_next(&person);
    let (_, state) = provider.follow(url_of(&started)).await;
    let body = complete(&app, None, "not-the-code", &state, &pkce.verifier).await;
    assert_eq!(code(&body), "INVALID_TOKEN", "{body}");
}

#[tokio::test]
async fn a_social_user_with_totp_gets_mfa_required() {
    let provider = FakeProvider::start().await;
    let app = spawn(&provider, true).await;
    let person = Person::new(&email("mfa-social"), true);
    let token = access(&sign_in(&app, &provider, "acme", &person).await);
    let body = app
        .graphql_as(
            &token,
            "mutation { enrollTotp { factorId otpauthUri } }",
            json!({}),
        )
        .await;
    let enrollment = &body["data"]["enrollTotp"];
    let totp = totp_rs::Totp::from_url(enrollment["otpauthUri"].as_str().unwrap()).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let body = app
        .graphql_as(
            &token,
            "mutation($id: ID!, $code: String!) { confirmTotp(factorId: $id, code: $code) }",
            json!({ "id": enrollment["factorId"], "code": totp.generate(now - 30).to_string() }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");

    let body = sign_in(&app, &provider, "acme", &person).await;
    assert_eq!(code(&body), "MFA_REQUIRED", "{body}");
    let mfa_token = body["errors"][0]["extensions"]["mfaToken"].as_str().unwrap();
    let body = app
        .graphql(
            "mutation($t: String, $c: String!) { verifyMfa(mfaToken: $t, code: $c) { accessToken } }",
            json!({ "t": mfa_token, "c": totp.generate(now).to_string() }),
        )
        .await;
    let access = body["data"]["verifyMfa"]["accessToken"].as_str().unwrap();
    assert_eq!(claims(access)["amr"], json!(["fed", "otp", "mfa"]));
    assert_eq!(claims(access)["acr"], "aal2");
}

#[tokio::test]
async fn a_social_only_user_sets_a_password_through_the_reset_flow() {
    let provider = FakeProvider::start().await;
    let app = spawn(&provider, true).await;
    let address = email("reset-social");
    payload(&sign_in(&app, &provider, "acme", &Person::new(&address, true)).await);
    reset_password(&app, &address, PASSWORD).await;
    let login = app.login(&address, PASSWORD).await;
    assert!(login["errors"].is_null(), "{login}");
    // Now a password is a second way in: the identity can go.
    let token = login["data"]["login"]["accessToken"].as_str().unwrap();
    let me = app.graphql_as(token, IDENTITIES, json!({})).await;
    let id = me["data"]["me"]["identities"][0]["id"].clone();
    let body = app.graphql_as(token, UNLINK, json!({ "id": id })).await;
    assert_eq!(body["data"]["unlinkIdentity"], true, "{body}");
}
