//! The `authgraph` command line: `serve` (the default), `migrate`, `print-schema`,
//! `keygen`, `user set-role` and `user reset-mfa`, and the service's life cycle
//! (background database preparation in development, graceful shutdown).

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{
        Role,
        jwt::{KeyAlgorithm, SigningKey, write_private},
    },
    config::Config,
    db,
    mail::Worker,
    retention,
    state::AppState,
    telemetry,
};

/// How long shutdown waits for a mail delivery in flight before releasing its mail.
const MAIL_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

const ENV_HELP: &str = "\
Configuration comes from environment variables (and a .env file when APP_ENV is not
production). The main ones:
  DATABASE_URL          postgres://postgres@127.0.0.1:5432/authgraph
  DATABASE_POOL_SIZE    10 connections per process
  DATABASE_TIMEOUT      1s: longest wait for a connection before SERVICE_UNAVAILABLE
  LISTEN_ADDR           127.0.0.1:8080
  APP_ENV               development | production
  JWT_KEYS              PKCS#8 PEM keys, or comma-separated key files, newest first
  MFA_ENCRYPTION_KEY    32 random bytes, base64: encrypts TOTP secrets (required in production)
  STEP_UP_MAX_AGE, MFA_TOKEN_TTL, TOTP_ISSUER  (second factors)
  JWT_ISSUER, JWT_AUDIENCE, ACCESS_TOKEN_TTL, REFRESH_TOKEN_TTL, REFRESH_GRACE_SECONDS
  PUBLIC_URL, SMTP_URL, EMAIL_FROM, CORS_ALLOWED_ORIGINS
  TRUSTED_PROXIES       load balancers whose X-Forwarded-For names the client
  HTTP_RATE_LIMIT, THROTTLE_LOGIN_ACCOUNT_ADDRESS, THROTTLE_* ...  (abuse limits)
  MAIL_POLL_INTERVAL, MAIL_MAX_ATTEMPTS, MAIL_RETRY_BASE, MAIL_RETRY_MAX,
  MAIL_BREAKER_FAILURES, MAIL_BREAKER_OPEN, MAIL_SMTP_TIMEOUT  (mail delivery)
  RETENTION_SESSIONS, RETENTION_OUTBOX, RETENTION_EMAIL_TOKENS, RETENTION_INTERVAL,
  RETENTION_BATCH       (deleting what has ended: 30d, 7d, 7d, every 10m, 1000 a batch)
  LOG_FORMAT            pretty | json;  RUST_LOG filters (default info)
  SHUTDOWN_TIMEOUT      30s: how long SIGTERM waits for in-flight requests
See README.md for every variable and its default.";

const SERVE_HELP: &str = "\
Reads every variable that `authgraph --help` lists (DATABASE_URL, LISTEN_ADDR, APP_ENV,
JWT_KEYS, LOG_FORMAT, SHUTDOWN_TIMEOUT, ...; README.md has them all). Routes: /graphql,
/graphiql (development), /healthz, /readyz, /metrics, /.well-known/jwks.json.

In development (APP_ENV unset or development) it also creates and migrates the database
named by DATABASE_URL, in the background: the service starts even while PostgreSQL is
down, /readyz answers 503 until the database is ready, and GraphQL requests answer
SERVICE_UNAVAILABLE meanwhile. Without JWT_KEYS it generates a key in DATA_DIR/keys.
In production it never touches the schema: run `authgraph migrate` first.

It also runs the mail worker, delivering the outbox to SMTP_URL (MAIL_* variables),
the webhook worker when WEBHOOK_ENDPOINTS is set (WEBHOOK_* variables),
the retention job, deleting ended sessions, finished mail and expired email tokens
(RETENTION_* variables; one replica at a time), and listens on DATABASE_URL for session events, pushed to live sockets (LIVE_* variables).

SIGTERM or Ctrl-C stops accepting connections, lets in-flight requests finish for at
most SHUTDOWN_TIMEOUT while the mail worker finishes its delivery in flight (or releases
the mail for another replica), then closes the database pool and exits 0.";

const MIGRATE_HELP: &str = "\
Reads DATABASE_URL (and APP_ENV: in development the database is created when missing),
LOG_FORMAT and RUST_LOG. Safe to run from several replicas at once, and on every deploy:
applied migrations are skipped.";

const KEYGEN_HELP: &str = "\
Reads no environment variable. The printed or written PEM is secret: keep it out of logs
and version control. For rotating keys across replicas, see README.md (\"Production\").

Examples:
  authgraph keygen > key.pem
  authgraph keygen --alg EdDSA --add-to /etc/authgraph/keys.pem";

const USER_HELP: &str = "\
Reads DATABASE_URL and DATABASE_TIMEOUT; needs no signing key or MFA_ENCRYPTION_KEY.";

/// authgraph: a self-hosted authentication service with a GraphQL API.
///
/// Runs the service (the default command) or one of the operator commands below.
#[derive(Parser)]
#[command(name = "authgraph", version, after_help = ENV_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API on LISTEN_ADDR (the default command), with the mail worker delivering
    /// the outbox to SMTP_URL.
    #[command(after_help = SERVE_HELP)]
    Serve,
    /// Apply pending database migrations to DATABASE_URL, then exit.
    #[command(after_help = MIGRATE_HELP)]
    Migrate,
    /// Print the federation SDL of the schema (what schema.graphql holds) and exit.
    ///
    /// Reads no environment variable and needs no database.
    PrintSchema,
    /// Generate a signing key as PKCS#8 PEM: printed, or added in front of a key file.
    #[command(after_help = KEYGEN_HELP)]
    Keygen {
        /// ES256 (P-256, the default: every gateway verifies it) or EdDSA (Ed25519).
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// Prepend the key to this file (created with mode 0600), making it the file's
        /// signing key; the keys already there keep verifying.
        #[arg(long, value_name = "FILE")]
        add_to: Option<PathBuf>,
    },
    /// Manage users directly in the database.
    #[command(after_help = USER_HELP)]
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Set a user's role: `authgraph user set-role alice@example.com ADMIN`.
    ///
    /// Takes effect on the user's next request (roles are read fresh), though access
    /// tokens already issued carry the old `role` claim until they expire.
    SetRole {
        /// The user's email address.
        email: String,
        /// The new role.
        #[arg(value_enum, ignore_case = true)]
        role: Role,
    },
    /// Remove every second factor and recovery code of a user who lost them:
    /// `authgraph user reset-mfa alice@example.com`.
    ///
    /// The user then signs in with the password alone and can enroll again. Logged
    /// (with the user's id) as an operator action.
    ResetMfa {
        /// The user's email address.
        email: String,
    },
}

// The domain's role, spelled on the command line as in the schema and the database.
impl ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &[Role::User, Role::Admin]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// Parses the command line and runs the command.
pub async fn run() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Migrate => {
            let config = Config::from_env()?;
            telemetry::init(config.log_format);
            prepare_database(&config).await
        }
        Command::PrintSchema => {
            print!("{}", crate::graphql::sdl());
            Ok(())
        }
        Command::Keygen { alg, add_to } => keygen(&alg, add_to),
        Command::User {
            command: UserCommand::SetRole { email, role },
        } => {
            let state = operator_state(Config::from_env()?, "to set the role").await?;
            let found = state
                .auth
                .set_role(&email, role)
                .await
                .map_err(|e| anyhow::anyhow!("setting the role: {e}"))?;
            anyhow::ensure!(found, "no user has that email address");
            println!("role set to {}", role.as_str());
            Ok(())
        }
        Command::User {
            command: UserCommand::ResetMfa { email },
        } => {
            let config = Config::from_env()?;
            // The reset is an operator action worth a log line of its own.
            telemetry::init(config.log_format);
            let state = operator_state(config, "to reset MFA").await?;
            let removed = state
                .auth
                .reset_mfa(&email)
                .await
                .map_err(|e| anyhow::anyhow!("resetting MFA: {e}"))?
                .context("no user has that email address")?;
            println!("removed {removed} factor(s) and every recovery code");
            Ok(())
        }
    }
}

/// The state an operator command needs: the database, checked first so a failure names
/// the server and the cause ("connection refused") rather than the API's "temporarily
/// unavailable"; and throwaway keys, since these commands sign and decrypt nothing, so
/// they neither demand `JWT_KEYS`/`MFA_ENCRYPTION_KEY` nor write development keys.
async fn operator_state(config: Config, purpose: &str) -> anyhow::Result<AppState> {
    db::connect(config.database.url.expose_secret(), purpose).await?;
    let (key, _) = SigningKey::generate(KeyAlgorithm::Es256)?;
    AppState::with_keys(config, vec![key])
}

/// Every hour (first at start): the audit log's next partitions, and retention. Any
/// replica may run it; creating or dropping a partition twice is harmless.
async fn maintain_audit_log(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        match state.auth.maintain_audit_log(state.config.retention.audit).await {
            Ok(dropped) if dropped.is_empty() => {}
            Ok(dropped) => tracing::info!(partitions = ?dropped, "audit log: expired months dropped"),
            Err(e) => tracing::warn!(error = %e, "audit log maintenance failed; retrying in an hour"),
        }
    }
}

async fn prepare_database(config: &Config) -> anyhow::Result<()> {
    let url = config.database.url.expose_secret();
    if config.is_development() && db::create_database_if_missing(url).await? {
        tracing::info!("created the database");
    }
    let applied = db::run_migrations(url).await?;
    tracing::info!(count = applied.len(), "migrations applied");
    crate::auth::account::normalise_stored_emails(url).await?;
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    config.require_signing_keys()?;
    telemetry::init(config.log_format);
    crate::metrics::install();
    let shutdown_timeout = config.http.shutdown_timeout;
    let addr = config.http.listen_addr;
    let state = AppState::new(config)?;
    if state.config.is_development() {
        // In the background, so the service starts (not ready) while PostgreSQL is down.
        state.readiness.set_preparing(true);
        tokio::spawn(prepare_until_done(state.clone()));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding LISTEN_ADDR {addr}"))?;
    let addr = listener.local_addr().unwrap_or(addr);
    let mail_worker = Worker::new(state.db.clone(), &state.config)?.spawn();
    let webhooks = match &state.config.webhooks {
        Some(hooks) => Some(crate::webhooks::Worker::new(state.db.clone(), hooks).spawn()?),
        None => None,
    };
    let retention =
        retention::Job::new(state.config.database.url.clone(), state.config.retention.clone()).spawn();
    tokio::spawn(maintain_audit_log(state.clone()));
    tracing::info!(%addr, graphiql = state.config.http.graphiql, "authgraph listening");

    let stop = CancellationToken::new();
    // Session events for the live sockets: one LISTEN connection for the process,
    // reconnecting on its own while the database is away.
    let live_events = crate::events::spawn_listener(
        state.config.database.url.expose_secret().to_owned(),
        state.events.clone(),
        stop.clone(),
    );
    let readiness = state.readiness.clone();
    let signalled = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        readiness.set_draining();
        signalled.cancel();
    });
    // The mail worker stops alongside the HTTP drain, not after it, so the two together
    // stay within SHUTDOWN_TIMEOUT. Mail queued by the last requests stays in the outbox
    // for another replica (or the next start).
    let mail_grace = MAIL_SHUTDOWN_GRACE.min(shutdown_timeout);
    let mail_stopped = tokio::spawn({
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            let webhooks = async {
                if let Some(webhooks) = webhooks {
                    webhooks.shutdown(mail_grace).await;
                }
            };
            tokio::join!(mail_worker.shutdown(mail_grace), retention.shutdown(), webhooks);
        }
    });
    // Not axum::serve: it has no read timeouts and no connection cap (http::server).
    let server = crate::http::server::serve(
        listener,
        crate::app(state.clone()),
        state.config.http.server,
        stop.clone().cancelled_owned(),
    );
    let deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(shutdown_timeout).await;
    };
    let served = tokio::select! {
        served = server => served.context("serving"),
        () = deadline => {
            tracing::warn!(
                timeout_secs = shutdown_timeout.as_secs(),
                "SHUTDOWN_TIMEOUT passed with requests in flight: dropping them"
            );
            Ok(())
        }
    };
    stop.cancel();
    let _ = live_events.await;
    if let Err(e) = mail_stopped.await {
        tracing::error!(error = %e, "stopping the mail worker failed");
    }
    // The router's and the worker's clones are gone; this is the last one, so dropping
    // it closes every pooled database connection.
    drop(state);
    tracing::info!("shutdown complete");
    served
}

/// Creates and migrates the development database, retrying until PostgreSQL answers,
/// then marks the service ready.
async fn prepare_until_done(state: AppState) {
    let mut wait = Duration::from_millis(500);
    loop {
        // Bounded: an attempt against a host that swallows packets must not wait on TCP
        // for minutes before the next try.
        let attempt = tokio::time::timeout(Duration::from_secs(30), prepare_database(&state.config));
        match attempt
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")))
        {
            Ok(()) => {
                state.readiness.set_preparing(false);
                return;
            }
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    retry_in_ms = wait.as_millis() as u64,
                    "preparing the development database failed (is PostgreSQL running at DATABASE_URL?)"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
}

fn keygen(alg: &str, add_to: Option<PathBuf>) -> anyhow::Result<()> {
    let alg = KeyAlgorithm::parse(alg).context("--alg must be ES256 or EdDSA")?;
    let (key, pem) = SigningKey::generate(alg)?;
    match add_to {
        None => print!("{}", pem.expose_secret()),
        Some(path) => {
            let existing = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            write_private(&path, &format!("{}{existing}", pem.expose_secret()))?;
            eprintln!("added key {} in front of {}", key.kid(), path.display());
        }
    }
    Ok(())
}
