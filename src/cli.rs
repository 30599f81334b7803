//! The `authgraph` command line: `serve` (the default), `migrate`, `print-schema`,
//! `keygen` and `user set-role`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use secrecy::ExposeSecret;

use crate::{
    auth::jwt::{KeyAlgorithm, SigningKey, write_private},
    config::Config,
    db::{self, users::Role},
    mail::Worker,
    state::AppState,
    telemetry,
};

/// How long shutdown waits for a mail delivery in flight before releasing its mail.
const MAIL_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

const ENV_HELP: &str = "\
Configuration comes from the environment (and a .env file in development):
  DATABASE_URL        postgres://postgres@127.0.0.1:5432/authgraph
  LISTEN_ADDR         127.0.0.1:8080
  APP_ENV             development | production
  JWT_KEYS            PKCS#8 PEM keys or comma-separated key files, newest first
  JWT_ISSUER, JWT_AUDIENCE, ACCESS_TOKEN_TTL, REFRESH_TOKEN_TTL, REFRESH_GRACE_SECONDS
  PUBLIC_URL, SMTP_URL, EMAIL_FROM, LOG_FORMAT, RUST_LOG, CORS_ALLOWED_ORIGINS
  TRUSTED_PROXIES, HTTP_RATE_LIMIT, THROTTLE_LOGIN_ACCOUNT_ADDRESS, THROTTLE_* ...
  MAIL_POLL_INTERVAL, MAIL_MAX_ATTEMPTS, MAIL_RETRY_BASE, MAIL_RETRY_MAX,
  MAIL_BREAKER_FAILURES, MAIL_BREAKER_OPEN, MAIL_SMTP_TIMEOUT  (mail delivery)
See README.md for every variable and its default.";

/// authgraph: a self-hosted authentication service with a GraphQL API.
#[derive(Parser)]
#[command(name = "authgraph", version, after_help = ENV_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API on LISTEN_ADDR (the default command), with the mail worker delivering
    /// the outbox to SMTP_URL. In development, creates and migrates the database first and
    /// generates a signing key under DATA_DIR.
    Serve,
    /// Apply pending migrations to DATABASE_URL (creating the database in development).
    Migrate,
    /// Print the federation SDL of the schema (what schema.graphql holds).
    PrintSchema,
    /// Generate a signing key as PKCS#8 PEM: printed, or added in front of a key file.
    Keygen {
        /// ES256 (P-256, the default: every gateway verifies it) or EdDSA (Ed25519).
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// Prepend the key to this file (created with mode 0600), making it the signing key.
        #[arg(long)]
        add_to: Option<PathBuf>,
    },
    /// Manage users (reads DATABASE_URL).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Set a user's role: `authgraph user set-role alice@example.com ADMIN`.
    SetRole {
        /// The user's email address.
        email: String,
        /// The new role.
        #[arg(value_enum, ignore_case = true)]
        role: RoleArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    #[value(name = "USER")]
    User,
    #[value(name = "ADMIN")]
    Admin,
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
            let config = Config::from_env()?;
            let state = AppState::new(config)?;
            let role = match role {
                RoleArg::User => Role::User,
                RoleArg::Admin => Role::Admin,
            };
            let found = state
                .auth
                .set_role(&email, role)
                .await
                .map_err(|e| anyhow::anyhow!("setting the role: {e}"))?;
            anyhow::ensure!(found, "no user has that email address");
            println!("role set to {}", role.as_str());
            Ok(())
        }
    }
}

async fn prepare_database(config: &Config) -> anyhow::Result<()> {
    let url = config.database_url.expose_secret();
    if config.is_development() && db::create_database_if_missing(url).await? {
        tracing::info!("created the database");
    }
    let applied = db::run_migrations(url).await?;
    tracing::info!(count = applied.len(), "migrations applied");
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    if config.is_development() {
        prepare_database(&config)
            .await
            .context("preparing the development database (is PostgreSQL running at DATABASE_URL?)")?;
    }
    let addr = config.listen_addr;
    let state = AppState::new(config)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding LISTEN_ADDR {addr}"))?;
    let mail_worker = Worker::new(state.auth.db().clone(), &state.config)?.spawn();
    tracing::info!(%addr, graphiql = state.config.graphiql, "authgraph listening");
    let served = axum::serve(
        listener,
        crate::app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving");
    // After the last request: mail it queued stays in the outbox for the next start.
    mail_worker.shutdown(MAIL_SHUTDOWN_GRACE).await;
    served
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
    tracing::info!("shutting down: finishing in-flight requests");
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
