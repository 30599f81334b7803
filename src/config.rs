//! Configuration, read once from the environment (and `.env` in development), each
//! value parsed once into the type its users take.
//!
//! [`Config::from_lookup`] builds every group from its own module (`config/database.rs`
//! reads `DATABASE_*`, and so on); [`VARIABLES`] lists every variable they read, and a
//! test keeps the two in step. A bad value stops start-up with an error that names the
//! variable, never its value when the value is a secret. A new variable goes into the
//! group of its concern, with its default there, and into [`VARIABLES`].

use std::{path::PathBuf, str::FromStr, time::Duration};

use anyhow::{Context, bail};

pub mod cookies;
pub mod database;
pub mod graphql;
pub mod http;
pub mod live;
pub mod mail;
pub mod mfa;
pub mod oauth;
pub mod passwords;
pub mod retention;
pub mod throttle;
pub mod tokens;
pub mod webauthn;
pub mod webhooks;

#[cfg(test)]
mod tests;

pub use cookies::{CookieConfig, SameSite};
pub use database::{DatabaseConfig, DatabaseTarget};
pub use graphql::GraphqlLimits;
pub use http::{ForwardedHeader, HttpConfig, HttpRateLimit, HttpServerLimits};
pub use live::LiveConfig;
pub use mail::MailConfig;
pub use mfa::MfaConfig;
pub use oauth::OAuthConfig;
pub use passwords::PasswordConfig;
pub use retention::RetentionConfig;
pub use throttle::{ThrottleConfig, ThrottleRule};
pub use tokens::TokenConfig;
pub use webauthn::WebauthnConfig;
pub use webhooks::WebhookConfig;

/// Every variable the configuration reads, by group, besides the per-provider
/// `OAUTH_<ID>_*` of each id in `OAUTH_PROVIDERS`. API.md documents them; their names
/// are part of the contract.
pub const VARIABLES: &[&str] = &[
    // Process
    "APP_ENV",
    "LOG_FORMAT",
    "DATA_DIR",
    // database.rs
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "DATABASE_TIMEOUT",
    // tokens.rs
    "JWT_KEYS",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "ACCESS_TOKEN_TTL",
    "REFRESH_TOKEN_TTL",
    "SESSION_MAX_LIFETIME",
    "REFRESH_GRACE_SECONDS",
    // cookies.rs
    "REFRESH_COOKIE_PATH",
    "REFRESH_COOKIE_SAMESITE",
    // http.rs
    "LISTEN_ADDR",
    "BODY_LIMIT",
    "REQUEST_TIMEOUT",
    "SHUTDOWN_TIMEOUT",
    "CORS_ALLOWED_ORIGINS",
    "CORS_MAX_AGE",
    "TRUSTED_PROXIES",
    "TRUSTED_PROXY_HEADER",
    "HTTP_RATE_LIMIT",
    "HTTP_RATE_LIMIT_BURST",
    "HTTP_HEADER_TIMEOUT",
    "HTTP_BODY_TIMEOUT",
    "HTTP_IDLE_TIMEOUT",
    "HTTP_MAX_CONNECTIONS",
    "GRAPHIQL",
    "GRAPHIQL_CDN_URL",
    // graphql.rs
    "GRAPHQL_MAX_DEPTH",
    "GRAPHQL_MAX_COMPLEXITY",
    "GRAPHQL_MAX_ALIASES",
    "GRAPHQL_MAX_FIELDS",
    "GRAPHQL_MAX_DIRECTIVES",
    "GRAPHQL_MAX_RECURSIVE_DEPTH",
    "GRAPHQL_INTROSPECTION",
    // mail.rs
    "PUBLIC_URL",
    "SMTP_URL",
    "EMAIL_FROM",
    "MAIL_POLL_INTERVAL",
    "MAIL_MAX_ATTEMPTS",
    "MAIL_RETRY_BASE",
    "MAIL_RETRY_MAX",
    "MAIL_BREAKER_FAILURES",
    "MAIL_BREAKER_OPEN",
    "MAIL_SMTP_TIMEOUT",
    // passwords.rs
    "PASSWORD_HASH_CONCURRENCY",
    "PASSWORDS_BREACH_CHECK_URL",
    // throttle.rs
    "THROTTLE_LOGIN_ACCOUNT_ADDRESS",
    "THROTTLE_LOGIN_ACCOUNT",
    "THROTTLE_LOGIN_ADDRESS",
    "THROTTLE_LOGIN_DEVICE",
    "THROTTLE_REGISTER_ADDRESS",
    "THROTTLE_EMAIL_ADDRESS",
    "THROTTLE_EMAIL_RECIPIENT",
    "THROTTLE_TOKEN_ADDRESS",
    // retention.rs
    "RETENTION_SESSIONS",
    "RETENTION_OUTBOX",
    "RETENTION_EMAIL_TOKENS",
    "RETENTION_INTERVAL",
    "RETENTION_BATCH",
    "AUDIT_RETENTION",
    // live.rs
    "LIVE_MAX_SOCKETS_PER_USER",
    "LIVE_MAX_SOCKETS_PER_ADDRESS",
    "LIVE_MAX_MESSAGE_BYTES",
    "LIVE_PING_INTERVAL",
    "LIVE_INIT_TIMEOUT",
    // mfa.rs
    "MFA_ENCRYPTION_KEY",
    "STEP_UP_MAX_AGE",
    "MFA_TOKEN_TTL",
    "TOTP_ISSUER",
    // webauthn.rs
    "WEBAUTHN_RP_ID",
    "WEBAUTHN_ORIGINS",
    "WEBAUTHN_RP_NAME",
    "WEBAUTHN_CHALLENGE_TTL",
    // oauth.rs
    "OAUTH_PROVIDERS",
    "OAUTH_REDIRECT_URIS",
    "OAUTH_STATE_TTL",
    "OAUTH_HTTP_TIMEOUT",
    "OAUTH_BREAKER_FAILURES",
    "OAUTH_BREAKER_OPEN",
    // webhooks.rs
    "WEBHOOK_ENDPOINTS",
    "WEBHOOK_SECRET",
    "WEBHOOK_EVENTS",
    "WEBHOOK_TIMEOUT",
    "WEBHOOK_MAX_ATTEMPTS",
    "WEBHOOK_RETRY_BASE",
    "WEBHOOK_RETRY_MAX",
    "WEBHOOK_BREAKER_FAILURES",
    "WEBHOOK_BREAKER_OPEN",
    "WEBHOOK_POLL_INTERVAL",
];

/// Where the service runs: development turns on conveniences, production turns them off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppEnv {
    /// Local use: GraphiQL, introspection, generated keys, database created on start.
    Development,
    /// Real deployments: keys must be configured, GraphiQL and introspection are off.
    Production,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The whole configuration of one authgraph process, one group per concern.
#[derive(Clone, Debug)]
pub struct Config {
    /// `APP_ENV`.
    pub app_env: AppEnv,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `DATA_DIR`: where development keys (signing and MFA) are generated and kept.
    pub data_dir: PathBuf,
    /// `DATABASE_*`: where the database is, pool size and checkout timeout.
    pub database: DatabaseConfig,
    /// `JWT_*`, token lifetimes and the refresh grace.
    pub tokens: TokenConfig,
    /// `REFRESH_COOKIE_*`.
    pub cookies: CookieConfig,
    /// Listening, body and time limits, CORS, trusted proxies, the per-client limit, GraphiQL.
    pub http: HttpConfig,
    /// `GRAPHQL_*`: document limits and the introspection and suggestion switches.
    pub graphql: GraphqlLimits,
    /// `PUBLIC_URL`, `SMTP_URL`, `EMAIL_FROM` and `MAIL_*`: mail and its delivery.
    pub mail: MailConfig,
    /// `PASSWORD_HASH_CONCURRENCY`, `PASSWORDS_BREACH_CHECK_URL`.
    pub passwords: PasswordConfig,
    /// `THROTTLE_*`: attempt limits on login, register, mail requests and tokens.
    pub throttle: ThrottleConfig,
    /// `RETENTION_*`, `AUDIT_RETENTION`: pruning of ended sessions, finished mail,
    /// expired tokens and old audit events.
    pub retention: RetentionConfig,
    /// `LIVE_*`: the live-events sockets.
    pub live: LiveConfig,
    /// `MFA_ENCRYPTION_KEY`, `STEP_UP_MAX_AGE`, `MFA_TOKEN_TTL`, `TOTP_ISSUER`.
    pub mfa: MfaConfig,
    /// `WEBAUTHN_*`: the passkey relying party.
    pub webauthn: WebauthnConfig,
    /// `OAUTH_*`: social sign-in providers, redirect URIs and flow lifetime.
    pub oauth: OAuthConfig,
    /// `WEBHOOK_*`: endpoints receiving signed events; `None` when none is configured.
    pub webhooks: Option<WebhookConfig>,
}

impl Config {
    /// Reads `.env` (development only) and then the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let production = std::env::var("APP_ENV").is_ok_and(|v| v == "production");
        if !production {
            // A missing .env is normal; a broken one is worth stopping for.
            match dotenvy::dotenv() {
                Ok(_) => {}
                Err(e) if e.not_found() => {}
                Err(e) => return Err(e).context("reading .env"),
            }
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any variable source, so tests need no process
    /// environment. An empty value counts as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let app_env = match get("APP_ENV").as_deref() {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(other) => {
                bail!("APP_ENV must be `development` or `production`, not `{other}`")
            }
        };
        let dev = app_env == AppEnv::Development;
        let log_format = match get("LOG_FORMAT").as_deref() {
            None if dev => LogFormat::Pretty,
            None => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("LOG_FORMAT must be `pretty` or `json`, not `{other}`"),
        };
        // Passkeys and social sign-in default from the frontend's URL.
        let mail = MailConfig::from_lookup(&get)?;
        Ok(Self {
            app_env,
            log_format,
            data_dir: get("DATA_DIR").map_or_else(|| PathBuf::from(".authgraph"), PathBuf::from),
            database: DatabaseConfig::from_lookup(&get)?,
            tokens: TokenConfig::from_lookup(&get)?,
            cookies: CookieConfig::from_lookup(&get)?,
            http: HttpConfig::from_lookup(&get, dev)?,
            graphql: GraphqlLimits::from_lookup(&get, dev)?,
            passwords: PasswordConfig::from_lookup(&get)?,
            throttle: ThrottleConfig::from_lookup(&get)?,
            retention: RetentionConfig::from_lookup(&get)?,
            live: LiveConfig::from_lookup(&get)?,
            mfa: MfaConfig::from_lookup(&get)?,
            webauthn: WebauthnConfig::from_lookup(&get, &mail.public_url)?,
            oauth: OAuthConfig::from_lookup(&get, &mail.public_url)?,
            webhooks: WebhookConfig::from_lookup(&get)?,
            mail,
        })
    }

    /// True in development.
    pub fn is_development(&self) -> bool {
        self.app_env == AppEnv::Development
    }

    /// Fails in production without `JWT_KEYS`: what `serve` needs before it signs
    /// anything (development generates a key instead).
    pub fn require_signing_keys(&self) -> anyhow::Result<()> {
        if !self.is_development() && self.tokens.keys.is_none() {
            bail!("JWT_KEYS must be set when APP_ENV=production (generate one with `authgraph keygen`)");
        }
        if !self.is_development() && self.mfa.encryption_key.is_none() {
            bail!(
                "MFA_ENCRYPTION_KEY must be set when APP_ENV=production (32 random bytes in base64: `openssl rand -base64 32`)"
            );
        }
        Ok(())
    }
}

/// `name` parsed as a `T`, or `default` when unset.
fn parse<T: FromStr>(get: &impl Fn(&str) -> Option<String>, name: &str, default: T) -> anyhow::Result<T> {
    match get(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name} has an invalid value `{}`", raw.trim())),
    }
}

/// Like [`parse`], refusing zero.
fn positive<T: FromStr + PartialEq + From<u8>>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> anyhow::Result<T> {
    let value = parse(get, name, default)?;
    if value == T::from(0) {
        bail!("{name} must be greater than zero");
    }
    Ok(value)
}

/// `name` as a duration ([`parse_duration`]), or `default` when unset.
fn duration(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: Duration,
) -> anyhow::Result<Duration> {
    let Some(raw) = get(name) else {
        return Ok(default);
    };
    parse_duration(&raw).ok_or_else(|| {
        anyhow::anyhow!(
            "{name} must be a duration like `90s`, `15m`, `12h`, `30d` or plain seconds, not `{raw}`"
        )
    })
}

/// Like [`duration`], refusing zero.
fn nonzero_duration(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: Duration,
) -> anyhow::Result<Duration> {
    let value = duration(get, name, default)?;
    if value.is_zero() {
        bail!("{name} must be longer than zero");
    }
    Ok(value)
}

/// Parses `90`, `90s`, `15m`, `12h`, `30d` or `250ms`.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}
