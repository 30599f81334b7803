//! Configuration, read once from the environment (and `.env` in development).
//!
//! Every variable is listed in [`Config::from_lookup`]; a bad value stops start-up with an
//! error that names the variable, never its value when the value is a secret.

use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use anyhow::{Context, bail};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};

pub mod abuse;
pub mod mfa;

pub use abuse::{ForwardedHeader, HttpRateLimit, ThrottleConfig, ThrottleRule};
pub use mfa::MfaConfig;

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

/// `SameSite` attribute of the refresh-token cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// Sent only on same-site requests (the default).
    Strict,
    /// Sent on top-level navigations too.
    Lax,
    /// Sent cross-site (needs `Secure`); for frontends on another site.
    None,
}

impl SameSite {
    /// The attribute value as it appears in `Set-Cookie`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

/// Limits applied to every GraphQL document.
#[derive(Clone, Debug)]
pub struct GraphqlLimits {
    /// Deepest allowed selection nesting.
    pub max_depth: usize,
    /// Highest allowed complexity (one per field by default).
    pub max_complexity: usize,
    /// Most aliases allowed in one document.
    pub max_aliases: usize,
    /// Most field selections in one document, fragments expanded.
    pub max_fields: usize,
    /// Most directives allowed on one field.
    pub max_directives: usize,
    /// Deepest allowed recursion while walking a document (fragments included).
    pub max_recursive_depth: usize,
    /// Whether the schema can be introspected (`_service` always works).
    pub introspection: bool,
    /// Whether validation errors suggest names ("did you mean").
    pub suggestions: bool,
}

/// Delivery of the mail outbox: worker pace, retries and the SMTP circuit breaker.
#[derive(Clone, Debug)]
pub struct MailConfig {
    /// `MAIL_POLL_INTERVAL`: how often an idle worker looks for due mail.
    pub poll_interval: Duration,
    /// `MAIL_MAX_ATTEMPTS`: failed attempts after which a mail is marked dead.
    pub max_attempts: u32,
    /// `MAIL_RETRY_BASE`: wait after the first failure; doubles with each further one.
    pub retry_base: Duration,
    /// `MAIL_RETRY_MAX`: the longest wait between two attempts.
    pub retry_max: Duration,
    /// `MAIL_BREAKER_FAILURES`: consecutive SMTP failures that open the breaker.
    pub breaker_failures: u32,
    /// `MAIL_BREAKER_OPEN`: how long an open breaker waits before one probe.
    pub breaker_open: Duration,
    /// `MAIL_SMTP_TIMEOUT`: the longest one delivery may take, connection included.
    pub smtp_timeout: Duration,
}

/// The whole configuration of one authgraph process.
#[derive(Clone, Debug)]
pub struct Config {
    /// `APP_ENV`.
    pub app_env: AppEnv,
    /// `DATABASE_URL`: may carry a password, hence secret.
    pub database_url: SecretString,
    /// `DATABASE_POOL_SIZE`: connections per process.
    pub database_pool_size: u32,
    /// `DATABASE_TIMEOUT`: how long a request waits for a connection before `SERVICE_UNAVAILABLE`.
    pub database_timeout: Duration,
    /// `LISTEN_ADDR`.
    pub listen_addr: SocketAddr,
    /// `PUBLIC_URL`: the frontend, for links in mail.
    pub public_url: String,
    /// `SMTP_URL`.
    pub smtp_url: SecretString,
    /// `EMAIL_FROM`.
    pub email_from: String,
    /// `MAIL_*`: outbox delivery.
    pub mail: MailConfig,
    /// `JWT_ISSUER`.
    pub jwt_issuer: String,
    /// `JWT_AUDIENCE`.
    pub jwt_audience: String,
    /// `JWT_KEYS`: PKCS#8 PEM keys (or paths to PEM files), newest first.
    pub jwt_keys: Option<SecretString>,
    /// `DATA_DIR`: where development keys are generated and kept.
    pub data_dir: PathBuf,
    /// `ACCESS_TOKEN_TTL`.
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL`: each refresh token's lifetime, so also the idle timeout of a session.
    pub refresh_token_ttl: Duration,
    /// `SESSION_MAX_LIFETIME`: absolute lifetime of a session, whatever its refreshes.
    pub session_max_lifetime: Duration,
    /// `REFRESH_GRACE_SECONDS`.
    pub refresh_grace: Duration,
    /// `REFRESH_COOKIE_PATH`.
    pub refresh_cookie_path: String,
    /// `REFRESH_COOKIE_SAMESITE`.
    pub refresh_cookie_samesite: SameSite,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `CORS_ALLOWED_ORIGINS`.
    pub cors_allowed_origins: Vec<String>,
    /// `CORS_MAX_AGE`: how long browsers may cache a preflight answer.
    pub cors_max_age: Duration,
    /// `TRUSTED_PROXIES`: peers whose `Forwarded`/`X-Forwarded-For` name the client.
    pub trusted_proxies: Vec<IpNet>,
    /// `TRUSTED_PROXY_HEADER`: which forwarding header those proxies write.
    pub trusted_proxy_header: ForwardedHeader,
    /// `HTTP_RATE_LIMIT`, `HTTP_RATE_LIMIT_BURST`: per-client request limit (`None`: off).
    pub http_rate_limit: Option<HttpRateLimit>,
    /// `THROTTLE_*`: attempt limits on login, register, mail requests and tokens.
    pub throttle: ThrottleConfig,
    /// `GRAPHIQL`: serve `/graphiql`.
    pub graphiql: bool,
    /// `GRAPHIQL_CDN_URL`: where the GraphiQL page loads its assets from.
    pub graphiql_cdn_url: Option<String>,
    /// `BODY_LIMIT`: largest accepted request body, in bytes.
    pub body_limit: usize,
    /// `REQUEST_TIMEOUT`: longest a request may run.
    pub request_timeout: Duration,
    /// `SHUTDOWN_TIMEOUT`: after SIGTERM or Ctrl-C, how long in-flight requests may still run.
    pub shutdown_timeout: Duration,
    /// `PASSWORD_HASH_CONCURRENCY`: password hashes run at once (default: the number of cores).
    pub password_hash_concurrency: usize,
    /// `GRAPHQL_MAX_DEPTH`, `GRAPHQL_MAX_COMPLEXITY`, `GRAPHQL_MAX_ALIASES`, ... and the
    /// introspection and suggestion switches.
    pub graphql: GraphqlLimits,
    /// `MFA_ENCRYPTION_KEY`, `STEP_UP_MAX_AGE`, `MFA_TOKEN_TTL`, `TOTP_ISSUER`.
    pub mfa: MfaConfig,
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

    /// Builds the configuration from any variable source, so tests need no process environment.
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
        let cores = std::thread::available_parallelism().map_or(2, usize::from);

        let jwt_keys = get("JWT_KEYS").map(SecretString::from);
        if !dev && jwt_keys.is_none() {
            bail!("JWT_KEYS must be set when APP_ENV=production (generate one with `authgraph keygen`)");
        }

        let log_format = match get("LOG_FORMAT").as_deref() {
            None if dev => LogFormat::Pretty,
            None => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("LOG_FORMAT must be `pretty` or `json`, not `{other}`"),
        };
        let refresh_cookie_samesite = match get("REFRESH_COOKIE_SAMESITE")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("strict") => SameSite::Strict,
            Some("lax") => SameSite::Lax,
            Some("none") => SameSite::None,
            Some(_) => bail!("REFRESH_COOKIE_SAMESITE must be `Strict`, `Lax` or `None`"),
        };
        let refresh_cookie_path = get("REFRESH_COOKIE_PATH").unwrap_or_else(|| "/graphql".into());
        if !refresh_cookie_path.starts_with('/') || refresh_cookie_path.contains([';', ' ']) {
            bail!("REFRESH_COOKIE_PATH must be a URL path starting with `/`");
        }
        let graphiql_cdn_url = get("GRAPHIQL_CDN_URL")
            .map(|url| url.trim().trim_end_matches('/').to_owned())
            .filter(|url| !url.is_empty());
        // Written into the page's script and link tags: an absolute http(s) URL or a path
        // on this origin, with nothing that could close the attribute.
        if let Some(url) = &graphiql_cdn_url
            && (!(url.starts_with("http://") || url.starts_with("https://") || url.starts_with('/'))
                || url.starts_with("//")
                || url.contains(|c: char| c.is_whitespace() || "\"'<>\\".contains(c)))
        {
            bail!("GRAPHIQL_CDN_URL must be an http(s) URL or an absolute path such as /graphiql-assets");
        }
        let public_url = get("PUBLIC_URL").unwrap_or_else(|| "http://localhost:3000".into());
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("PUBLIC_URL must be an http:// or https:// URL");
        }
        let cors_allowed_origins = get("CORS_ALLOWED_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if let Some(bad) = cors_allowed_origins.iter().find(|o| {
            *o == "*"
                || !(o.starts_with("http://") || o.starts_with("https://"))
                || o.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
        }) {
            bail!("CORS_ALLOWED_ORIGINS must list http(s) origins (no wildcard), not `{bad}`");
        }

        let config = Self {
            app_env,
            database_url: SecretString::from(
                get("DATABASE_URL").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/authgraph".into()),
            ),
            database_pool_size: parse(&get, "DATABASE_POOL_SIZE", 10)?,
            // Below 2 s, so a request needing a database that is down answers
            // SERVICE_UNAVAILABLE within 2 s, checkout and all.
            database_timeout: duration(&get, "DATABASE_TIMEOUT", "1s")?,
            listen_addr: parse(&get, "LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            public_url: public_url.trim_end_matches('/').to_owned(),
            smtp_url: SecretString::from(get("SMTP_URL").unwrap_or_else(|| "smtp://127.0.0.1:1025".into())),
            email_from: get("EMAIL_FROM").unwrap_or_else(|| "authgraph <no-reply@localhost>".into()),
            mail: MailConfig {
                poll_interval: duration(&get, "MAIL_POLL_INTERVAL", "2s")?,
                max_attempts: parse(&get, "MAIL_MAX_ATTEMPTS", 10)?,
                retry_base: duration(&get, "MAIL_RETRY_BASE", "30s")?,
                retry_max: duration(&get, "MAIL_RETRY_MAX", "1h")?,
                breaker_failures: parse(&get, "MAIL_BREAKER_FAILURES", 3)?,
                breaker_open: duration(&get, "MAIL_BREAKER_OPEN", "60s")?,
                smtp_timeout: duration(&get, "MAIL_SMTP_TIMEOUT", "30s")?,
            },
            jwt_issuer: get("JWT_ISSUER").unwrap_or_else(|| "authgraph".into()),
            jwt_audience: get("JWT_AUDIENCE").unwrap_or_else(|| "authgraph".into()),
            jwt_keys,
            data_dir: get("DATA_DIR").map_or_else(|| PathBuf::from(".authgraph"), PathBuf::from),
            access_token_ttl: duration(&get, "ACCESS_TOKEN_TTL", "15m")?,
            refresh_token_ttl: duration(&get, "REFRESH_TOKEN_TTL", "30d")?,
            session_max_lifetime: duration(&get, "SESSION_MAX_LIFETIME", "90d")?,
            refresh_grace: duration(&get, "REFRESH_GRACE_SECONDS", "10")?,
            refresh_cookie_path,
            refresh_cookie_samesite,
            log_format,
            cors_allowed_origins,
            cors_max_age: duration(&get, "CORS_MAX_AGE", "1h")?,
            trusted_proxies: abuse::trusted_proxies(get("TRUSTED_PROXIES"))?,
            trusted_proxy_header: ForwardedHeader::parse(get("TRUSTED_PROXY_HEADER"))?,
            http_rate_limit: HttpRateLimit::from_lookup(&get)?,
            throttle: ThrottleConfig::from_lookup(&get)?,
            graphiql: parse(&get, "GRAPHIQL", dev)?,
            graphiql_cdn_url,
            body_limit: parse(&get, "BODY_LIMIT", 64 * 1024)?,
            request_timeout: duration(&get, "REQUEST_TIMEOUT", "30s")?,
            shutdown_timeout: duration(&get, "SHUTDOWN_TIMEOUT", "30s")?,
            password_hash_concurrency: parse(&get, "PASSWORD_HASH_CONCURRENCY", cores)?,
            graphql: GraphqlLimits {
                max_depth: parse(&get, "GRAPHQL_MAX_DEPTH", 10)?,
                max_complexity: parse(&get, "GRAPHQL_MAX_COMPLEXITY", 200)?,
                max_aliases: parse(&get, "GRAPHQL_MAX_ALIASES", 10)?,
                max_fields: parse(&get, "GRAPHQL_MAX_FIELDS", 1000)?,
                max_directives: parse(&get, "GRAPHQL_MAX_DIRECTIVES", 10)?,
                max_recursive_depth: parse(&get, "GRAPHQL_MAX_RECURSIVE_DEPTH", 32)?,
                introspection: parse(&get, "GRAPHQL_INTROSPECTION", dev)?,
                suggestions: dev,
            },
            mfa: MfaConfig::from_lookup(&get, !dev)?,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        let positive = [
            ("DATABASE_POOL_SIZE", self.database_pool_size as usize),
            ("BODY_LIMIT", self.body_limit),
            ("PASSWORD_HASH_CONCURRENCY", self.password_hash_concurrency),
            ("GRAPHQL_MAX_DEPTH", self.graphql.max_depth),
            ("GRAPHQL_MAX_COMPLEXITY", self.graphql.max_complexity),
            ("GRAPHQL_MAX_FIELDS", self.graphql.max_fields),
            ("MAIL_MAX_ATTEMPTS", self.mail.max_attempts as usize),
            ("MAIL_BREAKER_FAILURES", self.mail.breaker_failures as usize),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            bail!("{name} must be greater than zero");
        }
        for (name, ttl) in [
            ("ACCESS_TOKEN_TTL", self.access_token_ttl),
            ("REFRESH_TOKEN_TTL", self.refresh_token_ttl),
            ("SESSION_MAX_LIFETIME", self.session_max_lifetime),
            ("DATABASE_TIMEOUT", self.database_timeout),
            ("REQUEST_TIMEOUT", self.request_timeout),
            ("SHUTDOWN_TIMEOUT", self.shutdown_timeout),
            ("MAIL_POLL_INTERVAL", self.mail.poll_interval),
            ("MAIL_RETRY_BASE", self.mail.retry_base),
            ("MAIL_BREAKER_OPEN", self.mail.breaker_open),
            ("MAIL_SMTP_TIMEOUT", self.mail.smtp_timeout),
        ] {
            if ttl.is_zero() {
                bail!("{name} must be longer than zero");
            }
        }
        if self.mail.retry_max < self.mail.retry_base {
            bail!("MAIL_RETRY_MAX must be at least MAIL_RETRY_BASE");
        }
        if self.email_from.parse::<lettre::message::Mailbox>().is_err() {
            bail!("EMAIL_FROM must be an address like `authgraph <no-reply@example.com>`");
        }
        // The URL may carry SMTP credentials: name the variable, never echo the value.
        if lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(self.smtp_url.expose_secret())
            .is_err()
        {
            bail!("SMTP_URL must be smtp://host:port (add ?tls=required for STARTTLS) or smtps://host:port");
        }
        Ok(())
    }

    /// True in development.
    pub fn is_development(&self) -> bool {
        self.app_env == AppEnv::Development
    }
}

fn parse<T: FromStr>(get: &impl Fn(&str) -> Option<String>, name: &str, default: T) -> anyhow::Result<T> {
    match get(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name} has an invalid value `{}`", raw.trim())),
    }
}

fn duration(get: &impl Fn(&str) -> Option<String>, name: &str, default: &str) -> anyhow::Result<Duration> {
    let raw = get(name).unwrap_or_else(|| default.to_owned());
    parse_duration(&raw).ok_or_else(|| {
        anyhow::anyhow!(
            "{name} must be a duration like `90s`, `15m`, `12h`, `30d` or plain seconds, not `{raw}`"
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.app_env, AppEnv::Development);
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.refresh_token_ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(c.refresh_grace, Duration::from_secs(10));
        assert_eq!(c.jwt_issuer, "authgraph");
        assert_eq!(c.jwt_audience, "authgraph");
        assert_eq!(c.body_limit, 65_536);
        assert_eq!(c.graphql.max_depth, 10);
        assert_eq!(c.graphql.max_aliases, 10);
        assert!(c.graphiql && c.graphql.introspection);
        assert_eq!(c.log_format, LogFormat::Pretty);
        assert_eq!(c.refresh_cookie_path, "/graphql");
        assert_eq!(c.database_timeout, Duration::from_secs(1));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.mail.max_attempts, 10);
        assert_eq!(c.mail.breaker_failures, 3);
        assert_eq!(c.mail.breaker_open, Duration::from_secs(60));
    }

    #[test]
    fn mail_retry_bounds_must_be_ordered() {
        let err = config(&[("MAIL_RETRY_BASE", "2h"), ("MAIL_RETRY_MAX", "1h")]).unwrap_err();
        assert!(err.to_string().contains("MAIL_RETRY_MAX"), "{err}");
        assert!(config(&[("SMTP_URL", "smtps://user:pw@mail.example.com:465")]).is_ok());
        assert!(config(&[("SMTP_URL", "smtp://mail.example.com:587?tls=required")]).is_ok());
    }

    #[test]
    fn a_bad_smtp_url_is_not_echoed() {
        let err = config(&[("SMTP_URL", "ftp://user:hunter2@host")])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn production_refuses_to_start_without_keys() {
        let err = config(&[("APP_ENV", "production")]).unwrap_err();
        assert!(err.to_string().contains("JWT_KEYS"), "{err}");
    }

    #[test]
    fn production_turns_off_development_conveniences() {
        let c = config(&[
            ("APP_ENV", "production"),
            ("JWT_KEYS", "/etc/keys.pem"),
            (
                "MFA_ENCRYPTION_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
        ])
        .unwrap();
        assert!(!c.graphiql && !c.graphql.introspection && !c.graphql.suggestions);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (name, value) in [
            ("LISTEN_ADDR", "nowhere"),
            ("ACCESS_TOKEN_TTL", "soon"),
            ("REFRESH_GRACE_SECONDS", "-1"),
            ("APP_ENV", "staging"),
            ("LOG_FORMAT", "xml"),
            ("BODY_LIMIT", "0"),
            ("DATABASE_POOL_SIZE", "many"),
            ("CORS_ALLOWED_ORIGINS", "*"),
            ("CORS_ALLOWED_ORIGINS", "https://app.example.com/x y"),
            ("CORS_MAX_AGE", "forever"),
            ("TRUSTED_PROXIES", "10.0.0.0/8,nonsense"),
            ("TRUSTED_PROXY_HEADER", "X-Real-IP"),
            ("HTTP_RATE_LIMIT", "-3/s"),
            ("HTTP_RATE_LIMIT_BURST", "lots"),
            ("THROTTLE_LOGIN_ACCOUNT", "100"),
            ("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "5/24h,1h..1s"),
            ("THROTTLE_REGISTER_ADDRESS", "0/1h"),
            ("REFRESH_COOKIE_SAMESITE", "sometimes"),
            ("PUBLIC_URL", "example.com"),
            ("SHUTDOWN_TIMEOUT", "0"),
            ("SHUTDOWN_TIMEOUT", "a while"),
            ("DATABASE_TIMEOUT", "0s"),
            ("EMAIL_FROM", "not an address"),
            ("SMTP_URL", "http://mail.example.com"),
            ("MAIL_MAX_ATTEMPTS", "0"),
            ("MAIL_BREAKER_FAILURES", "0"),
            ("MAIL_BREAKER_OPEN", "0"),
            ("MAIL_RETRY_BASE", "soon"),
            ("MAIL_POLL_INTERVAL", "0"),
            ("MAIL_SMTP_TIMEOUT", "-5"),
            ("GRAPHIQL_CDN_URL", "unpkg.com"),
            ("GRAPHIQL_CDN_URL", "//cdn.example.com"),
            ("GRAPHIQL_CDN_URL", "https://cdn.example.com/\"><script>"),
        ] {
            let err = config(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn graphiql_cdn_url_takes_a_url_or_a_path() {
        assert_eq!(config(&[]).unwrap().graphiql_cdn_url, None);
        for (raw, kept) in [
            ("https://cdn.example.com/npm/", "https://cdn.example.com/npm"),
            ("/graphiql-assets", "/graphiql-assets"),
        ] {
            let c = config(&[("GRAPHIQL_CDN_URL", raw)]).unwrap();
            assert_eq!(c.graphiql_cdn_url.as_deref(), Some(kept));
        }
    }

    #[test]
    fn durations_accept_units_and_plain_seconds() {
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30d"), Some(Duration::from_secs(2_592_000)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("15 minutes"), None);
        assert_eq!(parse_duration(""), None);
    }
}
