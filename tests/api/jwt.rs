//! Access-token negative cases, each for both algorithms.

use authgraph::auth::jwt::KeyAlgorithm;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{ME, PASSWORD, TestApp, claims, code, email};

const ALGS: [KeyAlgorithm; 2] = [KeyAlgorithm::Es256, KeyAlgorithm::EdDsa];

struct Signed {
    app: TestApp,
    token: String,
    claims: Value,
    kid: String,
    alg: KeyAlgorithm,
}

async fn signed_in(alg: KeyAlgorithm) -> Signed {
    let app = TestApp::builder().key(alg).spawn().await;
    let payload = app.register(&email("jwt"), PASSWORD).await;
    let token = payload["accessToken"].as_str().unwrap().to_owned();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    Signed {
        claims: claims(&token),
        token,
        kid,
        alg,
        app,
    }
}

impl Signed {
    /// Signs `claims` with the service's real key, under `kid`.
    fn sign(&self, claims: &Value, kid: &str) -> String {
        let (alg, key) = match self.alg {
            KeyAlgorithm::Es256 => (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(self.app.key_pem().as_bytes()),
            ),
            KeyAlgorithm::EdDsa => (
                Algorithm::EdDSA,
                EncodingKey::from_ed_pem(self.app.key_pem().as_bytes()),
            ),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &key.unwrap()).unwrap()
    }

    fn with_claim(&self, name: &str, value: Value) -> String {
        let mut claims = self.claims.clone();
        claims[name] = value;
        self.sign(&claims, &self.kid)
    }

    async fn me_code(&self, token: &str) -> String {
        code(&self.app.graphql_as(token, ME, json!({})).await).to_owned()
    }
}

fn segment(value: &Value) -> String {
    B64.encode(value.to_string())
}

#[tokio::test]
async fn a_genuine_token_is_accepted() {
    for alg in ALGS {
        let s = signed_in(alg).await;
        let body = s.app.graphql_as(&s.token, ME, json!({})).await;
        assert!(body["errors"].is_null(), "{alg:?}: {body}");
        // And a token we re-sign with identical claims passes too, so the negative
        // cases below fail for their one change only.
        let resigned = s.sign(&s.claims, &s.kid);
        assert!(s.app.graphql_as(&resigned, ME, json!({})).await["errors"].is_null());
    }
}

#[tokio::test]
async fn alg_none_is_refused() {
    for alg in ALGS {
        let s = signed_in(alg).await;
        let header = json!({ "alg": "none", "typ": "at+jwt", "kid": s.kid });
        let token = format!("{}.{}.", segment(&header), segment(&s.claims));
        assert_eq!(s.me_code(&token).await, "UNAUTHENTICATED", "{alg:?}");
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    use aws_lc_rs::hmac;
    for alg in ALGS {
        let s = signed_in(alg).await;
        let jwks = s
            .app
            .request(
                axum::http::Request::get("/.well-known/jwks.json")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        let jwk = &jwks.body["keys"][0];
        let public = B64.decode(jwk["x"].as_str().unwrap()).unwrap();
        for secret in [jwk.to_string().into_bytes(), public] {
            let header = json!({ "alg": "HS256", "typ": "at+jwt", "kid": s.kid });
            let signing_input = format!("{}.{}", segment(&header), segment(&s.claims));
            let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
            let tag = hmac::sign(&key, signing_input.as_bytes());
            let token = format!("{signing_input}.{}", B64.encode(tag.as_ref()));
            assert_eq!(s.me_code(&token).await, "UNAUTHENTICATED", "{alg:?}");
        }
    }
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    for alg in ALGS {
        let s = signed_in(alg).await;
        let other = s.app.register(&email("victim"), PASSWORD).await;
        let mut claims = s.claims.clone();
        claims["sub"] = other["user"]["id"].clone();
        claims["role"] = json!("ADMIN");
        let parts: Vec<&str> = s.token.split('.').collect();
        let token = format!("{}.{}.{}", parts[0], segment(&claims), parts[2]);
        assert_eq!(s.me_code(&token).await, "UNAUTHENTICATED", "{alg:?}");
    }
}

#[tokio::test]
async fn wrong_audience_issuer_or_expiry_is_refused() {
    for alg in ALGS {
        let s = signed_in(alg).await;
        let now = chrono::Utc::now().timestamp();
        for token in [
            s.with_claim("aud", json!("another-service")),
            s.with_claim("iss", json!("https://evil.example")),
            s.with_claim("exp", json!(now - 120)),
        ] {
            assert_eq!(s.me_code(&token).await, "UNAUTHENTICATED", "{alg:?}");
        }
        let expired = s
            .app
            .graphql_as(&s.with_claim("exp", json!(now - 120)), ME, json!({}))
            .await;
        assert!(
            expired["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("expired")
        );
    }
}

#[tokio::test]
async fn an_unknown_kid_or_missing_typ_is_refused() {
    for alg in ALGS {
        let s = signed_in(alg).await;
        assert_eq!(
            s.me_code(&s.sign(&s.claims, "not-a-key")).await,
            "UNAUTHENTICATED"
        );
        // A token from a key we never configured, under its own kid.
        let stranger = TestApp::builder().key(alg).spawn().await;
        let foreign = stranger.register(&email("stranger"), PASSWORD).await;
        assert_eq!(
            s.me_code(foreign["accessToken"].as_str().unwrap()).await,
            "UNAUTHENTICATED"
        );
        // Right key, but not typed as an access token.
        let (jwt_alg, key) = match alg {
            KeyAlgorithm::Es256 => (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(s.app.key_pem().as_bytes()),
            ),
            KeyAlgorithm::EdDsa => (
                Algorithm::EdDSA,
                EncodingKey::from_ed_pem(s.app.key_pem().as_bytes()),
            ),
        };
        let mut header = Header::new(jwt_alg);
        header.kid = Some(s.kid.clone());
        let untyped = jsonwebtoken::encode(&header, &s.claims, &key.unwrap()).unwrap();
        assert_eq!(s.me_code(&untyped).await, "UNAUTHENTICATED", "{alg:?}");
    }
}

#[tokio::test]
async fn the_token_of_a_revoked_session_is_refused() {
    for alg in ALGS {
        let s = signed_in(alg).await;
        s.app
            .sql(&format!(
                "update sessions set revoked_at = now() where id = '{}'",
                s.claims["sid"].as_str().unwrap()
            ))
            .await;
        assert_eq!(s.me_code(&s.token).await, "UNAUTHENTICATED", "{alg:?}");
        // A session that never existed, signed with the real key.
        let ghost = s.with_claim("sid", json!(uuid::Uuid::new_v4()));
        assert_eq!(s.me_code(&ghost).await, "UNAUTHENTICATED", "{alg:?}");
    }
}

#[tokio::test]
async fn a_token_without_the_bearer_prefix_is_refused() {
    for alg in ALGS {
        let s = signed_in(alg).await;
        for header in [
            s.token.clone(),
            format!("Token {}", s.token),
            format!("Basic {}", s.token),
        ] {
            let body = s
                .app
                .post(ME, json!({}), &[("authorization", &header)])
                .await
                .body;
            assert_eq!(code(&body), "UNAUTHENTICATED", "{alg:?}");
        }
    }
}

#[tokio::test]
async fn the_jwks_alone_verifies_an_access_token() {
    for alg in ALGS {
        let s = signed_in(alg).await;
        let response = s
            .app
            .request(
                axum::http::Request::get("/.well-known/jwks.json")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status, 200);
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(response.body.clone()).unwrap();
        let jwk = set.find(&s.kid).expect("the signing kid is published");
        assert!(
            response.body["keys"][0].get("d").is_none(),
            "private key material published"
        );
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let expected = match alg {
            KeyAlgorithm::Es256 => Algorithm::ES256,
            KeyAlgorithm::EdDsa => Algorithm::EdDSA,
        };
        let mut validation = jsonwebtoken::Validation::new(expected);
        validation.set_audience(&["authgraph"]);
        validation.set_issuer(&["authgraph"]);
        let data = jsonwebtoken::decode::<Value>(&s.token, &key, &validation).unwrap();
        assert_eq!(data.claims["sub"], s.claims["sub"]);
    }
}
