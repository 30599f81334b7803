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
pub mod oauth;
pub mod webauthn;
pub mod webhooks;

pub use abuse::{ForwardedHeader, HttpRateLimit, HttpServerLimits, ThrottleConfig, ThrottleRule};
pub use mfa::MfaConfig;
pub use oauth::OAuthConfig;
pub use webauthn::WebauthnConfig;
pub use webhooks::WebhookConfig;

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

/// Limits of the live-events sockets (`LIVE_*`).
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// `LIVE_MAX_SOCKETS_PER_USER`: open sockets one user may hold (every tab and app).
    pub max_sockets_per_user: usize,
    /// `LIVE_MAX_SOCKETS_PER_ADDRESS`: open sockets from one client address, signed in
    /// or not (an office behind one NAT address holds many).
    pub max_sockets_per_address: usize,
    /// `LIVE_MAX_MESSAGE_BYTES`: largest message a client may send.
    pub max_message_bytes: usize,
    /// `LIVE_PING_INTERVAL`: how often the server pings; a socket silent for two
    /// intervals is closed.
    pub ping_interval: Duration,
    /// `LIVE_INIT_TIMEOUT`: how long a socket may stay open without `connection_init`.
    pub init_timeout: Duration,
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

/// Deleting rows nothing needs any more: how long each kind is kept after it ended, and
/// how often (and in what batches) the retention job runs.
#[derive(Clone, Debug)]
pub struct RetentionConfig {
    /// `RETENTION_SESSIONS`: how long an ended (revoked or expired) session and its
    /// refresh tokens are kept: a rotated token presented again within it is still
    /// recognised as reuse, and audits can still see the session.
    pub sessions: Duration,
    /// `RETENTION_OUTBOX`: how long a sent or dead mail's row (and a delivered or dead
    /// webhook's) is kept (mail bodies are dropped at once; the row is for following
    /// up deliveries).
    pub outbox: Duration,
    /// `RETENTION_EMAIL_TOKENS`: how long an expired email token is kept (a used one is
    /// deleted when used).
    pub email_tokens: Duration,
    /// `RETENTION_INTERVAL`: time between two pruning passes (one replica prunes at a time).
    pub interval: Duration,
    /// `RETENTION_BATCH`: most rows one delete statement touches.
    pub batch: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            sessions: Duration::from_secs(30 * DAY),
            outbox: Duration::from_secs(7 * DAY),
            email_tokens: Duration::from_secs(7 * DAY),
            interval: Duration::from_secs(600),
            batch: 1000,
        }
    }
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
    /// `RETENTION_*`: pruning of ended sessions, finished mail and expired tokens.
    pub retention: RetentionConfig,
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
    /// `PASSWORDS_BREACH_CHECK_URL`: a breached-password range API (`None`: no check).
    pub passwords_breach_check_url: Option<String>,
    /// `HTTP_HEADER_TIMEOUT`, `HTTP_BODY_TIMEOUT`, `HTTP_IDLE_TIMEOUT`, `HTTP_MAX_CONNECTIONS`.
    pub http_server: HttpServerLimits,
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
    /// `LIVE_*`: the live-events sockets.
    pub live: LiveConfig,
    /// `MFA_ENCRYPTION_KEY`, `STEP_UP_MAX_AGE`, `MFA_TOKEN_TTL`, `TOTP_ISSUER`.
    pub mfa: MfaConfig,
    /// `WEBAUTHN_*`: the passkey relying party.
    pub webauthn: WebauthnConfig,
    /// `AUDIT_RETENTION`: audit events older than this go, a whole month at a time.
    pub audit_retention: Duration,
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

        // Required in production by `serve` only (`require_signing_keys`): `migrate`
        // and `user set-role` sign nothing.
        let jwt_keys = get("JWT_KEYS").map(SecretString::from);

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
            database_url: database_url(
                get("DATABASE_URL").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/authgraph".into()),
            )?,
            database_pool_size: parse(&get, "DATABASE_POOL_SIZE", 10)?,
            // Below 2 s, so a request needing a database that is down answers
            // SERVICE_UNAVAILABLE within 2 s, checkout and all.
            database_timeout: duration(&get, "DATABASE_TIMEOUT", "1s")?,
            listen_addr: listen_addr(get("LISTEN_ADDR"))?,
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
            retention: RetentionConfig {
                sessions: duration(&get, "RETENTION_SESSIONS", "30d")?,
                outbox: duration(&get, "RETENTION_OUTBOX", "7d")?,
                email_tokens: duration(&get, "RETENTION_EMAIL_TOKENS", "7d")?,
                interval: duration(&get, "RETENTION_INTERVAL", "10m")?,
                batch: parse(&get, "RETENTION_BATCH", 1000)?,
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
            passwords_breach_check_url: abuse::breach_check_url(get("PASSWORDS_BREACH_CHECK_URL"))?,
            http_server: HttpServerLimits::from_lookup(&get)?,
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
            live: LiveConfig {
                max_sockets_per_user: parse(&get, "LIVE_MAX_SOCKETS_PER_USER", 20)?,
                max_sockets_per_address: parse(&get, "LIVE_MAX_SOCKETS_PER_ADDRESS", 200)?,
                max_message_bytes: parse(&get, "LIVE_MAX_MESSAGE_BYTES", 16 * 1024)?,
                ping_interval: duration(&get, "LIVE_PING_INTERVAL", "30s")?,
                init_timeout: duration(&get, "LIVE_INIT_TIMEOUT", "10s")?,
            },
            mfa: MfaConfig::from_lookup(&get)?,
            webauthn: WebauthnConfig::from_lookup(&get, &public_url)?,
            audit_retention: duration(&get, "AUDIT_RETENTION", "365d")?,
            oauth: OAuthConfig::from_lookup(&get, public_url.trim_end_matches('/'))?,
            webhooks: WebhookConfig::from_lookup(&get)?,
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
            ("LIVE_MAX_SOCKETS_PER_USER", self.live.max_sockets_per_user),
            ("LIVE_MAX_SOCKETS_PER_ADDRESS", self.live.max_sockets_per_address),
            ("LIVE_MAX_MESSAGE_BYTES", self.live.max_message_bytes),
            ("LIVE_PING_INTERVAL", self.live.ping_interval.as_millis() as usize),
            ("LIVE_INIT_TIMEOUT", self.live.init_timeout.as_millis() as usize),
            ("RETENTION_BATCH", self.retention.batch),
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
            ("RETENTION_INTERVAL", self.retention.interval),
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

    /// Fails in production without `JWT_KEYS`: what `serve` needs before it signs
    /// anything (development generates a key instead).
    pub fn require_signing_keys(&self) -> anyhow::Result<()> {
        if !self.is_development() && self.jwt_keys.is_none() {
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

/// Where `DATABASE_URL` points, read the way the connection reads it (tokio-postgres),
/// for messages that name the server and for creating the database in development.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseTarget {
    /// Every `host:port` (or socket directory) in the URL, in order, comma-separated.
    pub servers: String,
    /// The database name (percent-decoded).
    pub dbname: String,
}

impl DatabaseTarget {
    /// Reads a `postgres://` or `postgresql://` URL naming at least one host and a
    /// database. Multi-host URLs (`postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`)
    /// are well-formed. Errors name `DATABASE_URL` and never echo it (it may carry a
    /// password).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        const EXAMPLE: &str = "postgres://user:password@host:5432/dbname";
        let url = url.trim();
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("postgres" | "postgresql") => {}
            // A scheme holds no secret: naming it tells a `mysql://` from a typo.
            Some(other)
                if !other.is_empty()
                    && other.len() <= 20
                    && other
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                bail!("DATABASE_URL must be a PostgreSQL URL like {EXAMPLE}, not a `{other}://` URL")
            }
            _ => bail!("DATABASE_URL must be a PostgreSQL URL like {EXAMPLE}"),
        }
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL ({e}); expected {EXAMPLE}")
        })?;
        let hosts = config.get_hosts();
        if hosts.is_empty() {
            bail!("DATABASE_URL names no host; expected {EXAMPLE}");
        }
        let ports = config.get_ports();
        if ports.len() > 1 && ports.len() != hosts.len() {
            bail!(
                "DATABASE_URL lists {} ports for {} hosts: give one port per host, or one for all",
                ports.len(),
                hosts.len()
            );
        }
        let servers = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    tokio_postgres::config::Host::Tcp(name) if name.contains(':') => {
                        format!("[{name}]:{port}")
                    }
                    tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        // In the path, where the development start-up finds it to create the database
        // (and where every example puts it); without one the server would pick a
        // database named after the user.
        let (base, _) = url.split_once('?').unwrap_or((url, ""));
        let in_path = base
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .is_some_and(|(_, path)| !path.is_empty());
        let dbname = config.get_dbname().filter(|name| in_path && !name.is_empty());
        let Some(dbname) = dbname else {
            bail!(
                "DATABASE_URL names no database: put its name after the host, as in postgres://postgres@127.0.0.1:5432/authgraph"
            );
        };
        Ok(Self {
            servers,
            dbname: dbname.to_owned(),
        })
    }
}

fn database_url(raw: String) -> anyhow::Result<SecretString> {
    DatabaseTarget::parse(&raw)?;
    Ok(SecretString::from(raw.trim().to_owned()))
}

/// `LISTEN_ADDR` as `IP:port` or `host:port`; a host name is resolved once, preferring
/// its IPv4 address (so `localhost:8080` listens where browsers look first).
fn listen_addr(raw: Option<String>) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let Some(raw) = raw else {
        return Ok(SocketAddr::from(([127, 0, 0, 1], 8080)));
    };
    let raw = raw.trim();
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let hint =
        "give IP:port or host:port, such as 127.0.0.1:8080, 0.0.0.0:8080 (every interface) or localhost:8080";
    if raw
        .rsplit_once(':')
        .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    {
        bail!("LISTEN_ADDR `{raw}` has no valid port: {hint}");
    }
    let addrs: Vec<SocketAddr> = raw
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("LISTEN_ADDR `{raw}`: the host name does not resolve ({e}): {hint}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| anyhow::anyhow!("LISTEN_ADDR `{raw}`: the host name has no address: {hint}"))
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
        assert_eq!(c.retention.sessions, Duration::from_secs(30 * 86_400));
        assert_eq!(c.retention.outbox, Duration::from_secs(7 * 86_400));
        assert_eq!(c.retention.email_tokens, Duration::from_secs(7 * 86_400));
        assert_eq!(c.retention.interval, Duration::from_secs(600));
        assert_eq!(c.retention.batch, 1000);
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
    fn production_serves_only_with_keys_but_operator_commands_need_none() {
        let c = config(&[("APP_ENV", "production")]).expect("migrate and user set-role sign nothing");
        let err = c.require_signing_keys().unwrap_err();
        assert!(err.to_string().contains("JWT_KEYS"), "{err}");
        let c = config(&[("APP_ENV", "production"), ("JWT_KEYS", "/etc/keys.pem")]).unwrap();
        let err = c.require_signing_keys().unwrap_err();
        assert!(err.to_string().contains("MFA_ENCRYPTION_KEY"), "{err}");
        let c = config(&[
            ("APP_ENV", "production"),
            ("JWT_KEYS", "/etc/keys.pem"),
            (
                "MFA_ENCRYPTION_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
        ])
        .unwrap();
        assert!(c.require_signing_keys().is_ok());
        assert!(
            config(&[]).unwrap().require_signing_keys().is_ok(),
            "development generates one"
        );
    }

    #[test]
    fn a_malformed_database_url_names_the_variable_and_never_echoes_it() {
        for (url, says) in [
            ("nonsense", "PostgreSQL URL"),
            ("mysql://root:hunter2@127.0.0.1:3306/authgraph", "`mysql://`"),
            ("postgres://postgres:hunter2@127.0.0.1:5432", "names no database"),
            ("postgres://postgres:hunter2@127.0.0.1:5432/", "names no database"),
            (
                "postgres://postgres:hunter2@127.0.0.1:5432?dbname=x",
                "names no database",
            ),
            (
                "postgres://postgres:hunter2@127.0.0.1:notaport/authgraph",
                "not a valid",
            ),
            (
                "host=127.0.0.1 password=hunter2 dbname=authgraph",
                "PostgreSQL URL",
            ),
        ] {
            let err = match config(&[("DATABASE_URL", url)]) {
                Ok(_) => panic!("{url} was accepted"),
                Err(e) => format!("{e:#}"),
            };
            assert!(err.contains("DATABASE_URL") && err.contains(says), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
    }

    #[test]
    fn multi_host_database_urls_are_well_formed() {
        let url = "postgres://u:pw@h1:5432,h2:5433/db?target_session_attrs=read-write";
        let c = config(&[("DATABASE_URL", url)]).unwrap();
        assert_eq!(
            c.database_url.expose_secret(),
            url,
            "handed to the connection unchanged"
        );
        let target = DatabaseTarget::parse(url).unwrap();
        assert_eq!(target.servers, "h1:5432, h2:5433");
        assert_eq!(target.dbname, "db");
        let target = DatabaseTarget::parse("postgresql://u@h1,h2:6432/my%20db").unwrap();
        assert_eq!(target.servers, "h1:5432, h2:6432");
        assert_eq!(target.dbname, "my db");
        assert_eq!(
            DatabaseTarget::parse("postgres://postgres@127.0.0.1/authgraph")
                .unwrap()
                .servers,
            "127.0.0.1:5432"
        );
    }

    #[test]
    fn listen_addr_takes_host_names_or_says_what_it_needs() {
        let c = config(&[("LISTEN_ADDR", "localhost:8080")]).unwrap();
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(
            config(&[("LISTEN_ADDR", "[::1]:9000")])
                .unwrap()
                .listen_addr
                .to_string(),
            "[::1]:9000"
        );
        for bad in ["8080", "localhost", ":8080", "localhost:http"] {
            let err = config(&[("LISTEN_ADDR", bad)]).unwrap_err().to_string();
            assert!(
                err.contains("LISTEN_ADDR") && err.contains("127.0.0.1:8080"),
                "{bad}: {err}"
            );
        }
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
            ("RETENTION_SESSIONS", "a month"),
            ("RETENTION_INTERVAL", "0"),
            ("RETENTION_BATCH", "0"),
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
