// Over 400 lines on purpose: the plumbing every query module shares (pool, migrations, errors).
//! Storage: the connection pool, embedded migrations, and one module of queries per table.
//!
//! Query functions return `QueryResult<T>`; deciding what a row means is `auth`'s job.

pub mod audit;
pub mod cached;
pub mod email_tokens;
pub mod factors;
pub mod identities;
pub mod mfa_challenges;
pub mod oauth_states;
pub mod outbox;
pub mod passkeys;
pub mod pipelined;
pub mod queue;
pub mod refresh_tokens;
pub mod retention;
pub mod schema;
pub mod sessions;
#[cfg(test)]
pub(crate) mod test_db;
pub mod throttle;
pub mod users;
pub mod webhook_deliveries;

use std::time::Duration;

use anyhow::Context;
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::{
    AsyncConnection, AsyncPgConnection, RunQueryDsl,
    async_connection_wrapper::AsyncConnectionWrapper,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig, PoolError, PoolableConnection, RecyclingMethod, bb8,
    },
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::DatabaseTarget;

/// Migrations compiled into the binary, so a deployment needs no migration files or CLI.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The connection pool shared by every request.
pub type DbPool = bb8::Pool<AsyncPgConnection>;

/// A connection checked out of [`DbPool`].
pub type DbConn<'a> = bb8::PooledConnection<'a, AsyncPgConnection>;

/// Builds the pool without connecting, so the service starts (and reports not ready)
/// while the database is down, and recovers on its own when it comes back.
///
/// `timeout` bounds both a checkout (waiting for a free connection; an idle one the
/// database closed in a restart is found broken and replaced, instead of failing the
/// request) and the
/// opening of a new connection, which otherwise waits on TCP for minutes when the
/// database host does not answer at all.
pub fn pool(url: &str, max_size: u32, timeout: Duration) -> DbPool {
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        Box::pin(async move {
            match tokio::time::timeout(timeout, AsyncPgConnection::establish(&url)).await {
                Ok(result) => result,
                Err(_) => Err(diesel::ConnectionError::BadConnection(
                    "timed out opening a database connection".to_owned(),
                )),
            }
        })
    });
    // The check before use is local: a connection the database closed (a restart
    // terminates every backend) has already seen its socket close, so it is replaced
    // without a `select 1` round trip on every checkout of a healthy one. Only while a
    // write was lately refused as read-only (a failover demoted the server under an
    // open connection) does each checkout ask the server, so connections to a standby
    // are dropped and replaced by ones the multi-host URL points at the new primary.
    config.recycling_method = RecyclingMethod::CustomFunction(Box::new(|conn| {
        let broken = PoolableConnection::is_broken(conn);
        Box::pin(async move {
            if broken {
                return Err(diesel::result::Error::BrokenTransactionManager);
            }
            if read_only::suspected() && is_read_only(conn).await? {
                return Err(diesel::result::Error::BrokenTransactionManager);
            }
            Ok(())
        })
    }));
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    bb8::Pool::builder()
        .max_size(max_size)
        .connection_timeout(timeout)
        .test_on_check_out(true)
        .error_sink(Box::new(ConnectErrors))
        // Connections broken by a database restart are dropped when they fail; the
        // reaper bounds how long an idle one lingers.
        .idle_timeout(Some(Duration::from_secs(300)))
        .build_unchecked(manager)
}

/// Counts the pool's background connection failures; logged at debug only, since an
/// outage produces one every few hundred milliseconds (readiness and the request
/// errors already say the database is down).
#[derive(Debug, Clone, Copy)]
struct ConnectErrors;

impl ::bb8::ErrorSink<PoolError> for ConnectErrors {
    fn sink(&self, error: PoolError) {
        crate::metrics::db_connect_error();
        tracing::debug!(error = %error, "database connection failed");
    }

    fn boxed_clone(&self) -> Box<dyn ::bb8::ErrorSink<PoolError>> {
        Box::new(*self)
    }
}

/// A pool checkout failure as a person reads it. bb8 says "Timed out in bb8", naming
/// itself and not the cause: a timeout means no connection could be opened or freed
/// within `DATABASE_TIMEOUT`.
pub fn pool_error_message(err: &bb8::RunError) -> String {
    match err {
        ::bb8::RunError::TimedOut => "no database connection within DATABASE_TIMEOUT: PostgreSQL is down or \
                                    unreachable at DATABASE_URL, or every pooled connection is busy"
            .to_owned(),
        ::bb8::RunError::User(e) => format!("database connection failed: {e}"),
    }
}

/// The pool's counters, for `/metrics`.
pub fn pool_sample(pool: &DbPool) -> crate::metrics::PoolSample {
    let state = pool.state();
    let s = &state.statistics;
    crate::metrics::PoolSample {
        connections: state.connections,
        idle: state.idle_connections,
        max: pool.config().max_size,
        gets_direct: s.get_direct,
        gets_waited: s.get_waited,
        gets_timed_out: s.get_timed_out,
        closed_broken: s.connections_closed_broken,
        closed_invalid: s.connections_closed_invalid,
        closed_idle_timeout: s.connections_closed_idle_timeout,
        closed_max_lifetime: s.connections_closed_max_lifetime,
    }
}

/// Answers whether the database takes a trivial query.
pub async fn ping(pool: &DbPool) -> bool {
    let Ok(mut conn) = pool.get().await else {
        return false;
    };
    diesel::sql_query("select 1").execute(&mut conn).await.is_ok()
}

/// The database name and the URL of the `postgres` maintenance database on the same
/// servers (every host of a multi-host URL, options kept).
fn maintenance_url(url: &str) -> anyhow::Result<(String, String)> {
    let target = DatabaseTarget::parse(url)?;
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let slash = base
        .rfind('/')
        .filter(|i| *i > "postgres://".len() - 1)
        .context("DATABASE_URL names no database")?;
    let mut admin = format!("{}/postgres", &base[..slash]);
    if !query.is_empty() {
        admin = format!("{admin}?{query}");
    }
    Ok((target.dbname, admin))
}

/// How long a command-line connection attempt may take before it is reported as such.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a failed connection says: the servers `DATABASE_URL` names and the cause (as
/// "connection refused"), never the URL itself (it may carry a password).
fn connect_error(url: &str, purpose: &str, cause: impl std::fmt::Display) -> anyhow::Error {
    let servers = DatabaseTarget::parse(url).map_or_else(|_| "DATABASE_URL".to_owned(), |t| t.servers);
    let cause = cause.to_string();
    // tokio-postgres writes "Connection refused (os error 111)": say it as a person would.
    let cause = cause.replace("Connection refused", "connection refused");
    anyhow::anyhow!("cannot connect to PostgreSQL at {servers} (DATABASE_URL) {purpose}: {cause}")
}

/// Opens one connection (for the commands and start-up work that run outside the pool),
/// bounded in time, with an error naming the server and the cause.
pub async fn connect(url: &str, purpose: &str) -> anyhow::Result<AsyncPgConnection> {
    // Through tokio-postgres itself (as diesel-async's `establish` does, with the URL
    // unchanged), because its error keeps the cause ("connection refused") that
    // diesel's connection error drops.
    let connecting = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(connect_error(url, purpose, error_chain(&e))),
        Err(_) => {
            return Err(connect_error(
                url,
                purpose,
                format_args!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            ));
        }
    };
    AsyncPgConnection::try_from_client_and_connection(client, connection)
        .await
        .map_err(|e| connect_error(url, purpose, e))
}

/// An error and its sources, `: `-separated, as `{:#}` prints an anyhow chain.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Creates the database named by `url` when it does not exist yet (development).
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<bool> {
    use diesel::dsl::sql;
    use diesel::sql_types::{Bool, Text};

    let (name, admin_url) = maintenance_url(url)?;
    let mut conn = connect(
        &admin_url,
        &format!("(its `postgres` database, to create the database `{name}`)"),
    )
    .await?;
    let exists: bool = diesel::select(
        sql::<Bool>("exists (select 1 from pg_database where datname = ")
            .bind::<Text, _>(&name)
            .sql(")"),
    )
    .get_result(&mut conn)
    .await
    .context("looking up the database")?;
    if exists {
        return Ok(false);
    }
    let quoted = name.replace('"', "\"\"");
    match diesel::sql_query(format!("create database \"{quoted}\""))
        .execute(&mut conn)
        .await
    {
        Ok(_) => Ok(true),
        // Another replica created it between our check and our create.
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::Unknown, info))
            if info.message().contains("already exists") =>
        {
            Ok(false)
        }
        Err(e) => Err(e).context("creating the database"),
    }
}

/// Applies every pending embedded migration.
pub async fn run_migrations(url: &str) -> anyhow::Result<Vec<String>> {
    // Connected here, bounded and with a message naming the server; the blocking
    // migration harness then borrows the connection.
    let conn = connect(url, "to run migrations").await?;
    tokio::task::spawn_blocking(move || {
        let mut conn: AsyncConnectionWrapper<AsyncPgConnection> = AsyncConnectionWrapper::from(conn);
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("running migrations: {e}"))?;
        Ok(applied.iter().map(ToString::to_string).collect())
    })
    .await
    .context("migration task")?
}

/// Reverts every migration, newest first, then applies them all again: proves each
/// `down.sql` undoes its `up.sql`.
pub async fn redo_all_migrations(url: &str) -> anyhow::Result<()> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn: AsyncConnectionWrapper<AsyncPgConnection> =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)?;
        conn.revert_all_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("reverting migrations: {e}"))?;
        conn.run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("re-applying migrations: {e}"))?;
        Ok(())
    })
    .await
    .context("migration task")?
}

/// Names of the user tables that exist, for the migration round-trip test.
pub async fn table_names(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<String>> {
    diesel::table! {
        information_schema.tables (table_name) {
            table_name -> Text,
            table_schema -> Text,
        }
    }
    tables::table
        .filter(tables::table_schema.eq("public"))
        .filter(tables::table_name.ne("__diesel_schema_migrations"))
        .select(tables::table_name)
        .order(tables::table_name)
        .load(conn)
        .await
}

/// Maps a unique violation by constraint name (realworld-axum-sqlx's `on_constraint`),
/// so use cases never match on Diesel's error internals.
pub trait ResultExt<T> {
    /// A violation of the unique constraint `name` becomes `err()`; any other error
    /// converts as usual.
    fn on_constraint<E: From<diesel::result::Error>>(
        self,
        name: &str,
        err: impl FnOnce() -> E,
    ) -> Result<T, E>;
}

impl<T> ResultExt<T> for diesel::QueryResult<T> {
    fn on_constraint<E: From<diesel::result::Error>>(
        self,
        name: &str,
        err: impl FnOnce() -> E,
    ) -> Result<T, E> {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
                if info.constraint_name() == Some(name) =>
            {
                Err(err())
            }
            other => other.map_err(E::from),
        }
    }
}

/// Is the database itself unreachable (as opposed to a query being wrong)?
///
/// A lost connection (diesel-async reports tokio-postgres errors without an SQLSTATE,
/// such as "connection closed", as `UnableToSendCommand`), a server shutting down or
/// starting up, and a write refused because the server became a standby (SQLSTATE
/// 25006) all are: the request gets `SERVICE_UNAVAILABLE`, never an internal error.
/// The last one also makes the pool check its connections before reuse for a while
/// (see [`pool`]).
pub fn is_unavailable(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        Error::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _) => {
            read_only::suspect();
            true
        }
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let m = info.message();
            m.contains("connection")
                || m.contains("terminating")
                || m.contains("shutting down")
                || m.contains("database system is")
        }
        _ => false,
    }
}

/// Tells a transaction that failed before its `COMMIT` was sent (so it certainly did
/// not commit, and running it again on a fresh connection is safe) from one whose
/// outcome is unknown: the body calls [`CommitPoint::reach`] on its result.
#[derive(Debug, Default)]
pub struct CommitPoint(std::sync::atomic::AtomicBool);

impl CommitPoint {
    /// Passes the body's result through, noting whether a `COMMIT` follows.
    pub fn reach<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        self.0.store(result.is_ok(), std::sync::atomic::Ordering::Relaxed);
        result
    }

    /// Whether the body succeeded, so the failure (if any) came at or after `COMMIT`.
    pub fn reached(&self) -> bool {
        std::sync::atomic::AtomicBool::load(&self.0, std::sync::atomic::Ordering::Relaxed)
    }
}

/// Whether the server behind `conn` refuses writes (a standby, or a primary being
/// demoted).
async fn is_read_only(conn: &mut AsyncPgConnection) -> diesel::QueryResult<bool> {
    use diesel::dsl::sql;
    use diesel::sql_types::Bool;
    diesel::select(sql::<Bool>("current_setting('transaction_read_only')::bool"))
        .get_result(conn)
        .await
}

/// A process-wide window, opened by a write refused as read-only, during which the pool
/// checks each connection before reuse.
mod read_only {
    use std::{
        sync::{
            OnceLock,
            atomic::{AtomicU64, Ordering},
        },
        time::{Duration, Instant},
    };

    /// Long enough for the pool's connections to be checked out, and so checked, once
    /// under load; every refusal opens it again.
    const WINDOW: Duration = Duration::from_secs(30);

    static EPOCH: OnceLock<Instant> = OnceLock::new();
    /// Milliseconds since `EPOCH` until which connections are checked; 0 when never.
    static UNTIL_MS: AtomicU64 = AtomicU64::new(0);

    fn now_ms() -> u64 {
        u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn suspect() {
        let until = now_ms().saturating_add(u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX));
        UNTIL_MS.fetch_max(until, Ordering::Relaxed);
    }

    pub(super) fn suspected() -> bool {
        let until = UNTIL_MS.load(Ordering::Relaxed);
        until != 0 && now_ms() < until
    }
}

#[cfg(test)]
mod tests;
