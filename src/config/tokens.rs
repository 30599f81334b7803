//! Access and refresh tokens: `JWT_KEYS`, `JWT_ISSUER`, `JWT_AUDIENCE`,
//! `ACCESS_TOKEN_TTL`, `REFRESH_TOKEN_TTL`, `SESSION_MAX_LIFETIME` and
//! `REFRESH_GRACE_SECONDS`.

use std::time::Duration;

use secrecy::SecretString;

use super::{duration, nonzero_duration};

const DAY: Duration = Duration::from_secs(86_400);

/// How tokens are signed and how long they and their sessions live.
#[derive(Clone, Debug)]
pub struct TokenConfig {
    /// `JWT_KEYS`: PKCS#8 PEM keys (or paths to PEM files), newest first. Required in
    /// production by `serve` only ([`super::Config::require_signing_keys`]): `migrate`
    /// and `user set-role` sign nothing.
    pub keys: Option<SecretString>,
    /// `JWT_ISSUER`.
    pub issuer: String,
    /// `JWT_AUDIENCE`.
    pub audience: String,
    /// `ACCESS_TOKEN_TTL`.
    pub access_ttl: Duration,
    /// `REFRESH_TOKEN_TTL`: each refresh token's lifetime, so also the idle timeout of a session.
    pub refresh_ttl: Duration,
    /// `SESSION_MAX_LIFETIME`: absolute lifetime of a session, whatever its refreshes.
    pub session_max_lifetime: Duration,
    /// `REFRESH_GRACE_SECONDS`: how long a rotated refresh token still yields the same
    /// successor pair (a client's retry) rather than counting as reuse.
    pub refresh_grace: Duration,
}

impl TokenConfig {
    /// Reads the variables above.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        Ok(Self {
            keys: get("JWT_KEYS").map(SecretString::from),
            issuer: get("JWT_ISSUER").unwrap_or_else(|| "authgraph".into()),
            audience: get("JWT_AUDIENCE").unwrap_or_else(|| "authgraph".into()),
            access_ttl: nonzero_duration(get, "ACCESS_TOKEN_TTL", Duration::from_secs(15 * 60))?,
            refresh_ttl: nonzero_duration(get, "REFRESH_TOKEN_TTL", 30 * DAY)?,
            session_max_lifetime: nonzero_duration(get, "SESSION_MAX_LIFETIME", 90 * DAY)?,
            refresh_grace: duration(get, "REFRESH_GRACE_SECONDS", Duration::from_secs(10))?,
        })
    }
}
