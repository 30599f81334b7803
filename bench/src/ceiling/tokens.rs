//! The ceiling's own access tokens: ES256 with jsonwebtoken on aws-lc-rs, from the key
//! file the service is given, with the checks the service makes (`typ`, `kid`, the key's
//! algorithm, signature, `iss`, `aud`, `exp`/`nbf` with 30 s leeway, required claims).

use anyhow::{Context, bail};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ACCESS_TOKEN_TYPE: &str = "at+jwt";
const DEVICE_TOKEN_TYPE: &str = "device+jwt";
const ACCESS_TTL_SECONDS: i64 = 15 * 60;
const DEVICE_TTL_SECONDS: i64 = 180 * 24 * 3600;

struct Key {
    kid: String,
    decoding: DecodingKey,
}

/// The keys of `JWT_KEYS`: the first signs, all verify.
pub struct Keys {
    signing: EncodingKey,
    signing_kid: String,
    verifying: Vec<Key>,
    validation: Validation,
    issuer: String,
    audience: String,
}

#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: Uuid,
    sid: Uuid,
    role: &'a str,
    iat: i64,
    exp: i64,
    jti: Uuid,
    auth_time: i64,
    acr: &'a str,
    amr: [&'a str; 1],
    scope: &'a str,
}

#[derive(Serialize)]
struct DeviceClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: Uuid,
    iat: i64,
    exp: i64,
    jti: Uuid,
}

/// What `me` needs of a verified token; `exp`, `iat`, `iss` and `aud` are checked by the
/// validation, not kept.
#[derive(Deserialize)]
pub struct Verified {
    pub sub: Uuid,
    pub sid: Uuid,
}

impl Keys {
    /// `JWT_KEYS` as the service reads it: PEM text, or comma-separated PEM files.
    pub fn from_env() -> anyhow::Result<Self> {
        let configured = std::env::var("JWT_KEYS").context("JWT_KEYS is required")?;
        let text = if configured.contains("-----BEGIN") {
            configured.replace("\\n", "\n")
        } else {
            let mut text = String::new();
            for path in configured.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                text.push_str(&std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?);
                text.push('\n');
            }
            text
        };
        let mut verifying = Vec::new();
        let mut signing = None;
        for block in pem::parse_many(text.as_bytes())? {
            let der = block.contents();
            let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) else {
                bail!("the ceiling signs with ES256 keys only");
            };
            let point = pair.public_key().as_ref();
            let (x, y) = (B64URL.encode(&point[1..33]), B64URL.encode(&point[33..]));
            // RFC 7638: the required members, sorted, no spaces.
            let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
            let kid = B64URL.encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                canonical.as_bytes(),
            ));
            if signing.is_none() {
                signing = Some((EncodingKey::from_ec_der(der), kid.clone()));
            }
            verifying.push(Key {
                kid,
                decoding: DecodingKey::from_ec_components(&x, &y)?,
            });
        }
        let (signing, signing_kid) = signing.context("JWT_KEYS holds no key")?;
        let issuer = std::env::var("JWT_ISSUER").unwrap_or_else(|_| "authgraph".into());
        let audience = std::env::var("JWT_AUDIENCE").unwrap_or_else(|_| "authgraph".into());
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = 30;
        validation.validate_nbf = true;
        validation.set_audience(&[&audience]);
        validation.set_issuer(&[&issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        Ok(Self {
            signing,
            signing_kid,
            verifying,
            validation,
            issuer,
            audience,
        })
    }

    /// An access token's subject and session, or `None` for anything the service refuses.
    pub fn verify(&self, token: &str) -> Option<Verified> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok || header.alg != Algorithm::ES256 {
            return None;
        }
        let key = self
            .verifying
            .iter()
            .find(|k| Some(&k.kid) == header.kid.as_ref())?;
        jsonwebtoken::decode::<Verified>(token, &key.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }

    /// A password sign-in's access token, with the claims the service puts in one.
    pub fn access(&self, user_id: Uuid, session_id: Uuid, now: i64) -> anyhow::Result<String> {
        let claims = AccessClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: user_id,
            sid: session_id,
            role: "USER",
            iat: now,
            exp: now + ACCESS_TTL_SECONDS,
            jti: Uuid::new_v4(),
            auth_time: now,
            acr: "aal1",
            amr: ["pwd"],
            scope: "user",
        };
        self.sign(ACCESS_TOKEN_TYPE, &claims)
    }

    /// The device token (OWASP's device cookie) the service sets after each sign-in.
    pub fn device(&self, user_id: Uuid, now: i64) -> anyhow::Result<String> {
        let audience = format!("{}#device", self.audience);
        let claims = DeviceClaims {
            iss: &self.issuer,
            aud: &audience,
            sub: user_id,
            iat: now,
            exp: now + DEVICE_TTL_SECONDS,
            jti: Uuid::new_v4(),
        };
        self.sign(DEVICE_TOKEN_TYPE, &claims)
    }

    fn sign(&self, typ: &str, claims: &impl Serialize) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.signing_kid.clone());
        header.typ = Some(typ.to_owned());
        Ok(jsonwebtoken::encode(&header, claims, &self.signing)?)
    }
}
