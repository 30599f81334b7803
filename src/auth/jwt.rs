// Over 400 lines on purpose: signing keys and the tokens they sign (key internals stay private).
//! Access tokens: JWTs signed with an asymmetric key (ES256 by default, EdDSA per key),
//! verified with the algorithm pinned by the key, never by the token (RFC 8725).

use std::{path::Path, time::Duration};

use anyhow::{Context, anyhow, bail};
use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::Role;
use super::{error::TokenProblem, step_up::Assurance};

/// The `typ` header of our access tokens (RFC 9068), so no other JWT passes as one.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: u64 = 30;
/// `typ` of a device token, so it is never taken for an access token (which needs
/// `at+jwt`) here, nor by a gateway (its `aud` is [`device_audience`]).
pub const DEVICE_TOKEN_TYPE: &str = "device+jwt";

/// The algorithm a key signs with; fixed by the key's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256: the default, verified by every common gateway.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl KeyAlgorithm {
    fn jwt(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }

    /// Parses `ES256` or `EdDSA` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "es256" => Some(Self::Es256),
            "eddsa" | "ed25519" => Some(Self::EdDsa),
            _ => None,
        }
    }
}

/// One signing key with everything derived from it.
pub struct SigningKey {
    kid: String,
    alg: KeyAlgorithm,
    signer: Signer,
    decoding: DecodingKey,
    validation_template: Algorithm,
    jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new key; returns it with its PKCS#8 PEM, the form `JWT_KEYS` takes.
    pub fn generate(alg: KeyAlgorithm) -> anyhow::Result<(Self, SecretString)> {
        let rng = SystemRandom::new();
        let der = match alg {
            KeyAlgorithm::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng),
            KeyAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|_| anyhow!("generating a key"))?;
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        Ok((Self::from_pkcs8_der(der.as_ref())?, SecretString::from(pem)))
    }

    /// Reads a PKCS#8 DER private key; its type decides the algorithm.
    pub fn from_pkcs8_der(der: &[u8]) -> anyhow::Result<Self> {
        if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            // Uncompressed SEC1 point: 0x04 || x || y.
            let point = pair.public_key().as_ref();
            anyhow::ensure!(point.len() == 65 && point[0] == 4, "unexpected P-256 public key");
            let (x, y) = (B64URL.encode(&point[1..33]), B64URL.encode(&point[33..]));
            let kid = thumbprint(&json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}));
            let decoding = DecodingKey::from_ec_components(&x, &y).context("P-256 public key")?;
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y,
                "kid": kid, "alg": "ES256", "use": "sig"});
            return Ok(Self::assemble(
                kid,
                KeyAlgorithm::Es256,
                Signer::Es256(pair),
                decoding,
                jwk,
            ));
        }
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            let x = B64URL.encode(pair.public_key().as_ref());
            let kid = thumbprint(&json!({"crv": "Ed25519", "kty": "OKP", "x": x}));
            let decoding = DecodingKey::from_ed_components(&x).context("Ed25519 public key")?;
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x,
                "kid": kid, "alg": "EdDSA", "use": "sig"});
            return Ok(Self::assemble(
                kid,
                KeyAlgorithm::EdDsa,
                Signer::EdDsa(pair),
                decoding,
                jwk,
            ));
        }
        bail!("not a PKCS#8 P-256 (ES256) or Ed25519 (EdDSA) private key")
    }

    fn assemble(
        kid: String,
        alg: KeyAlgorithm,
        signer: Signer,
        decoding: DecodingKey,
        jwk: serde_json::Value,
    ) -> Self {
        Self {
            kid,
            alg,
            signer,
            decoding,
            validation_template: alg.jwt(),
            jwk,
        }
    }

    /// The key id: its RFC 7638 thumbprint, the same on every replica.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm it signs with.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// A compact JWS (RFC 7515) of `claims` under `header`, written as jsonwebtoken's
    /// `encode` writes one, which verifies it. Signed with the key pair parsed once:
    /// `encode` parses an `EncodingKey`'s PKCS#8 bytes again for every signature, which
    /// was most of the cost of signing an ES256 token (a refresh signs one, a sign-in
    /// two).
    fn sign<T: Serialize>(&self, header: &Header, claims: &T) -> anyhow::Result<String> {
        let mut token = B64URL.encode(serde_json::to_vec(header)?);
        token.push('.');
        B64URL.encode_string(serde_json::to_vec(claims)?, &mut token);
        let signature = match &self.signer {
            Signer::Es256(pair) => pair
                .sign(&SystemRandom::new(), token.as_bytes())
                .map_err(|_| anyhow!("ES256 signing failed"))?,
            Signer::EdDsa(pair) => pair.sign(token.as_bytes()),
        };
        token.push('.');
        B64URL.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }
}

/// A private key, parsed.
enum Signer {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// RFC 7638: SHA-256 over the required members in lexicographic order.
fn thumbprint(required: &serde_json::Value) -> String {
    // serde_json without `preserve_order` writes object keys sorted, as RFC 7638 needs.
    let canonical = required.to_string();
    B64URL.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// Reads every PKCS#8 PEM block of a text, in order.
pub fn parse_pem_bundle(text: &str) -> anyhow::Result<Vec<SigningKey>> {
    // Env files often carry PEM on one line with literal `\n`.
    let text = if text.contains('\n') {
        text.to_owned()
    } else {
        text.replace("\\n", "\n")
    };
    let blocks = pem::parse_many(text.as_bytes()).context("JWT_KEYS is not valid PEM")?;
    blocks
        .iter()
        .enumerate()
        .map(|(i, block)| {
            anyhow::ensure!(
                block.tag() == "PRIVATE KEY",
                "JWT_KEYS key {} is not a PKCS#8 `PRIVATE KEY`",
                i + 1
            );
            SigningKey::from_pkcs8_der(block.contents()).with_context(|| format!("JWT_KEYS key {}", i + 1))
        })
        .collect()
}

/// Loads the keys from `JWT_KEYS` (PEM text, or comma-separated PEM file paths), or in
/// development from `<DATA_DIR>/keys`, generating a key there on first start.
pub fn load_keys(configured: Option<&SecretString>, dev_dir: &Path) -> anyhow::Result<Vec<SigningKey>> {
    let keys = match configured {
        Some(value) if value.expose_secret().contains("-----BEGIN") => {
            parse_pem_bundle(value.expose_secret())?
        }
        Some(paths) => {
            let mut keys = Vec::new();
            for path in paths
                .expose_secret()
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("JWT_KEYS: reading key file `{path}`"))?;
                keys.extend(parse_pem_bundle(&text).with_context(|| format!("JWT_KEYS: key file `{path}`"))?);
            }
            keys
        }
        None => {
            let path = dev_dir.join("keys");
            if !path.exists() {
                let (_, pem) = SigningKey::generate(KeyAlgorithm::Es256)?;
                write_private(&path, pem.expose_secret())?;
                tracing::info!(path = %path.display(), "generated a development signing key");
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading development keys from {}", path.display()))?;
            parse_pem_bundle(&text).with_context(|| format!("development keys in {}", path.display()))?
        }
    };
    anyhow::ensure!(!keys.is_empty(), "JWT_KEYS holds no key");
    Ok(keys)
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        builder.mode(0o700);
        builder
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// The claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer (`JWT_ISSUER`).
    pub iss: String,
    /// Audience (`JWT_AUDIENCE`).
    pub aud: String,
    /// The user id.
    pub sub: Uuid,
    /// The session id.
    pub sid: Uuid,
    /// `USER` or `ADMIN`, as of issue.
    pub role: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// Unique token id.
    pub jti: Uuid,
    /// When the user last actively authenticated in this session (sign-in or step-up).
    /// Absent only from tokens issued before tokens carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// `aal1`, or `aal2` after a second factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// RFC 8176 methods used: `["pwd"]`, `["pwd", "otp", "mfa"]`, ...
    #[serde(default)]
    pub amr: Vec<String>,
    /// Space-separated scopes for gateways (`user`, plus `admin` for admins), as of issue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Claims {
    /// How the holder authenticated, as the token claims it; `None` for a token without
    /// `auth_time`, which then proves no recent authentication.
    pub fn assurance(&self) -> Option<Assurance> {
        let auth_time = DateTime::<Utc>::from_timestamp(self.auth_time?, 0)?;
        Some(Assurance::from_parts(
            self.amr.iter().map(String::as_str),
            auth_time,
        ))
    }
}

/// The `scope` claim of a role.
fn scope_of(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Admin => "user admin",
    }
}

/// The configured keys: the first signs, all verify.
pub struct JwtKeys {
    keys: Vec<SigningKey>,
    issuer: String,
    audience: String,
    ttl: Duration,
    jwks: String,
    verified: verified::VerifiedTokens,
}

impl JwtKeys {
    /// Takes keys newest first.
    pub fn new(keys: Vec<SigningKey>, issuer: &str, audience: &str, ttl: Duration) -> anyhow::Result<Self> {
        anyhow::ensure!(!keys.is_empty(), "at least one signing key is needed");
        let mut kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        kids.sort_unstable();
        kids.dedup();
        anyhow::ensure!(kids.len() == keys.len(), "JWT_KEYS lists the same key twice");
        let jwks = json!({ "keys": keys.iter().map(|k| &k.jwk).collect::<Vec<_>>() }).to_string();
        Ok(Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
            jwks,
            verified: verified::VerifiedTokens::default(),
        })
    }

    /// The JWK Set document served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// Access token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The key that signs new tokens.
    pub fn signing_key(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// Signs an access token for a session, claiming how the session was authenticated.
    pub fn issue(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        role: Role,
        assurance: &Assurance,
        now: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let key = self.signing_key();
        let iat = now.timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id,
            sid: session_id,
            role: role.as_str().to_owned(),
            iat,
            exp: iat + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2),
            jti: Uuid::new_v4(),
            auth_time: Some(assurance.auth_time.timestamp()),
            acr: Some(assurance.acr().to_owned()),
            amr: assurance.amr_strings(),
            scope: Some(scope_of(role).to_owned()),
        };
        let mut header = Header::new(key.alg.jwt());
        header.kid = Some(key.kid.clone());
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        key.sign(&header, &claims).context("signing an access token")
    }

    /// Verifies an access token: known `kid`, that key's algorithm, `typ`, signature,
    /// `iss`, `aud`, `exp` (with a small leeway).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenProblem> {
        self.verify_at(token, Utc::now().timestamp())
    }

    /// [`verify`](Self::verify), with `now` deciding expiry for a token verified before
    /// (a new one is checked against the clock by `jsonwebtoken`).
    fn verify_at(&self, token: &str, now: i64) -> Result<Claims, TokenProblem> {
        let digest = verified::digest_of(token);
        if let Some(claims) = self.verified.get(&digest) {
            // The rule `jsonwebtoken` applies, leeway included.
            let leeway = i64::try_from(LEEWAY_SECONDS).unwrap_or(0);
            return if claims.exp < now - leeway {
                Err(TokenProblem::Expired)
            } else {
                Ok(claims)
            };
        }
        let claims = self.verify_signed(token)?;
        self.verified.put(digest, &claims);
        Ok(claims)
    }

    /// Every check of an access token, signature included.
    fn verify_signed(&self, token: &str) -> Result<Claims, TokenProblem> {
        // The header was `Bearer <token>`: what fails here is the token, not the header.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenProblem::Invalid)?;
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(TokenProblem::Invalid);
        }
        // The key is looked up by `kid`; its algorithm, not the token's, decides.
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.iter().find(|k| k.kid == kid))
            .ok_or(TokenProblem::Invalid)?;
        if header.alg != key.validation_template {
            return Err(TokenProblem::Invalid);
        }
        let mut validation = Validation::new(key.validation_template);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        match jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenProblem::Expired),
            Err(_) => Err(TokenProblem::Invalid),
        }
    }
}

/// The claims of a device token: a browser that completed a sign-in to `sub`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DeviceClaims {
    iss: String,
    aud: String,
    sub: Uuid,
    iat: i64,
    exp: i64,
    /// The device's id: its failed logins are counted under it.
    jti: Uuid,
}

/// A verified device token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    /// The account the browser signed in to.
    pub user_id: Uuid,
    /// The device's own id (its throttle counter).
    pub id: Uuid,
}

/// The audience of device tokens: never the access tokens' one, so no gateway that
/// verifies access tokens from the JWKS accepts a device token as one.
fn device_audience(audience: &str) -> String {
    format!("{audience}#device")
}

impl JwtKeys {
    /// Signs a device token (OWASP's device cookie) for a browser that just completed a
    /// sign-in to `user_id`. Signed with the access-token keys, so every replica verifies
    /// it and key rotation needs nothing more; it carries no email, role or session.
    pub fn issue_device(&self, user_id: Uuid, now: DateTime<Utc>, ttl: Duration) -> anyhow::Result<String> {
        let key = self.signing_key();
        let iat = now.timestamp();
        let claims = DeviceClaims {
            iss: self.issuer.clone(),
            aud: device_audience(&self.audience),
            sub: user_id,
            iat,
            exp: iat + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            jti: Uuid::new_v4(),
        };
        let mut header = Header::new(key.alg.jwt());
        header.kid = Some(key.kid.clone());
        header.typ = Some(DEVICE_TOKEN_TYPE.to_owned());
        key.sign(&header, &claims).context("signing a device token")
    }

    /// Verifies a device token like an access token (known `kid`, that key's algorithm,
    /// signature, `iss`, `exp`), with its own `typ` and audience.
    pub fn verify_device(&self, token: &str) -> Option<Device> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if !header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(DEVICE_TOKEN_TYPE))
        {
            return None;
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.iter().find(|k| k.kid == kid))?;
        if header.alg != key.validation_template {
            return None;
        }
        let mut validation = Validation::new(key.validation_template);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_audience(&[device_audience(&self.audience)]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<DeviceClaims>(token, &key.decoding, &validation)
            .ok()?
            .claims;
        Some(Device {
            user_id: claims.sub,
            id: claims.jti,
        })
    }
}

mod verified;

#[cfg(test)]
mod tests;
