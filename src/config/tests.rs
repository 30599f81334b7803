//! Unit tests of the whole configuration: defaults, and errors that name their variable.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use secrecy::ExposeSecret;

use super::*;

fn config(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn defaults_match_the_contract() {
    let c = config(&[]).unwrap();
    assert_eq!(c.app_env, AppEnv::Development);
    assert_eq!(c.http.listen_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(c.tokens.access_ttl, Duration::from_secs(900));
    assert_eq!(c.tokens.refresh_ttl, Duration::from_secs(30 * 86_400));
    assert_eq!(c.tokens.refresh_grace, Duration::from_secs(10));
    assert_eq!(c.tokens.issuer, "authgraph");
    assert_eq!(c.tokens.audience, "authgraph");
    assert_eq!(c.http.body_limit, 65_536);
    assert_eq!(c.graphql.max_depth, 10);
    assert_eq!(c.graphql.max_aliases, 10);
    assert!(c.http.graphiql && c.graphql.introspection);
    assert_eq!(c.log_format, LogFormat::Pretty);
    assert_eq!(c.cookies.path, "/graphql");
    assert_eq!(c.database.timeout, Duration::from_secs(1));
    assert_eq!(c.http.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(c.mail.max_attempts, 10);
    assert_eq!(c.mail.breaker_failures, 3);
    assert_eq!(c.mail.breaker_open, Duration::from_secs(60));
    assert_eq!(c.retention.sessions, Duration::from_secs(30 * 86_400));
    assert_eq!(c.retention.outbox, Duration::from_secs(7 * 86_400));
    assert_eq!(c.retention.email_tokens, Duration::from_secs(7 * 86_400));
    assert_eq!(c.retention.interval, Duration::from_secs(600));
    assert_eq!(c.retention.batch, 1000);
    assert_eq!(c.retention.audit, Duration::from_secs(365 * 86_400));
    assert_eq!(c.mail.public_url, "http://localhost:3000");
    assert_eq!(c.mail.from.to_string(), "authgraph <no-reply@localhost>");
}

#[test]
fn every_variable_read_is_listed_and_every_listed_one_is_read() {
    let read = Mutex::new(Vec::new());
    let provider = [
        ("OAUTH_PROVIDERS", "acme"),
        ("OAUTH_ACME_ISSUER", "https://idp.example"),
        ("OAUTH_ACME_CLIENT_ID", "x"),
        // Configured, so the webhook group reads its secret and tuning too.
        ("WEBHOOK_ENDPOINTS", "https://hooks.example/authgraph"),
        ("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ];
    Config::from_lookup(|name| {
        read.lock().unwrap().push(name.to_owned());
        provider
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    let read = read.into_inner().unwrap();
    for name in &read {
        assert!(
            VARIABLES.contains(&name.as_str()) || name.starts_with("OAUTH_ACME_"),
            "{name} is read but not in VARIABLES"
        );
    }
    for name in VARIABLES {
        assert!(
            read.iter().any(|r| r == name),
            "{name} is in VARIABLES but never read"
        );
    }
}

#[test]
fn email_from_is_parsed_once_into_the_sender() {
    let c = config(&[("EMAIL_FROM", "Example <no-reply@mail.example.com>")]).unwrap();
    assert_eq!(c.mail.from.email.domain(), "mail.example.com");
    assert_eq!(c.mail.from.name.as_deref(), Some("Example"));
}

#[test]
fn zero_is_refused_in_the_words_it_always_was() {
    for (name, value, says) in [
        (
            "DATABASE_POOL_SIZE",
            "0",
            "DATABASE_POOL_SIZE must be greater than zero",
        ),
        (
            "GRAPHQL_MAX_DEPTH",
            "0",
            "GRAPHQL_MAX_DEPTH must be greater than zero",
        ),
        (
            "LIVE_PING_INTERVAL",
            "0",
            "LIVE_PING_INTERVAL must be greater than zero",
        ),
        (
            "ACCESS_TOKEN_TTL",
            "0s",
            "ACCESS_TOKEN_TTL must be longer than zero",
        ),
        (
            "MAIL_RETRY_MAX",
            "0",
            "MAIL_RETRY_MAX must be at least MAIL_RETRY_BASE",
        ),
    ] {
        let err = config(&[(name, value)]).unwrap_err().to_string();
        assert_eq!(err, says);
    }
    assert_eq!(
        config(&[("GRAPHQL_MAX_ALIASES", "0")])
            .unwrap()
            .graphql
            .max_aliases,
        0
    );
    assert!(
        config(&[("REFRESH_GRACE_SECONDS", "0")])
            .unwrap()
            .tokens
            .refresh_grace
            .is_zero()
    );
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
        c.database.url.expose_secret(),
        url,
        "handed to the connection unchanged"
    );
    assert_eq!(c.database.target.servers, "h1:5432, h2:5433");
    assert_eq!(c.database.target.dbname, "db");
}

#[test]
fn listen_addr_takes_host_names_or_says_what_it_needs() {
    let c = config(&[("LISTEN_ADDR", "localhost:8080")]).unwrap();
    assert_eq!(c.http.listen_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(
        config(&[("LISTEN_ADDR", "[::1]:9000")])
            .unwrap()
            .http
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
    assert!(!c.http.graphiql && !c.graphql.introspection && !c.graphql.suggestions);
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
    assert_eq!(config(&[]).unwrap().http.graphiql_cdn_url, None);
    for (raw, kept) in [
        ("https://cdn.example.com/npm/", "https://cdn.example.com/npm"),
        ("/graphiql-assets", "/graphiql-assets"),
    ] {
        let c = config(&[("GRAPHIQL_CDN_URL", raw)]).unwrap();
        assert_eq!(c.http.graphiql_cdn_url.as_deref(), Some(kept));
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
