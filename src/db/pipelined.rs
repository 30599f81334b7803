//! Transactions that cost no round trip of their own. diesel's `transaction` waits for
//! `BEGIN` and for `COMMIT` on round trips of their own; here `BEGIN` goes out ahead of
//! the first statements and `COMMIT` behind the last ones, on the same round trip
//! (PostgreSQL runs a connection's statements in the order they arrive). A refresh
//! takes two round trips instead of four, a sign-in one instead of three. Each round
//! trip saved is a wakeup of the service and of a backend, and time a pooled
//! connection is held.
//!
//! Why the order holds: statements sent through `&AsyncPgConnection` leave in the order
//! their futures are first polled, and `try_join!`/`join!` poll in order. A statement
//! not yet prepared on the connection holds diesel-async's statement-cache lock while it
//! is prepared; the statements polled after it wait on that lock in FIFO order (a tokio
//! mutex), `BEGIN` and `COMMIT` included, since they are prepared statements too. So
//! `COMMIT` is never sent before a statement that was polled ahead of it, as long as
//! the statements are *joined*. A body that awaited one statement before sending the
//! next would let `COMMIT` overtake it: [`Pipelined::closing`] and
//! [`Pipelined::whole`] take only joined statements, and say so.

use diesel::{
    connection::TransactionManagerStatus,
    pg::Pg,
    query_builder::{AstPass, QueryFragment, QueryId},
    result::Error,
};
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection, TransactionManager,
};

/// `COMMIT` and `ROLLBACK` as prepared statements, each a type of its own so it is
/// prepared once per connection and cached under its own id like any query here: then
/// `COMMIT` waits its turn on the statement cache behind the statements polled before it.
macro_rules! control {
    ($ty:ident, $sql:literal) => {
        #[derive(Clone, Copy, Debug)]
        struct $ty;

        impl QueryFragment<Pg> for $ty {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
                out.push_sql($sql);
                Ok(())
            }
        }

        impl QueryId for $ty {
            type QueryId = Self;
            const HAS_STATIC_QUERY_ID: bool = true;
        }
    };
}
control!(Commit, "COMMIT");
control!(Rollback, "ROLLBACK");

/// Where the transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    NotBegun,
    Open,
    Ended,
}

/// A transaction under way on a connection: see [`transaction`].
pub struct Pipelined<'c> {
    conn: &'c mut AsyncPgConnection,
    stage: Stage,
}

/// Runs `body` in one transaction, committed when it answers `Ok` and rolled back when
/// it answers `Err`. `body` begins it with [`Pipelined::opening`] or
/// [`Pipelined::whole`]; it may end it with [`Pipelined::closing`] (otherwise `COMMIT`
/// follows on a round trip of its own, once `body` is done).
///
/// Until the transaction ends, diesel's transaction manager reports the connection
/// broken: a request dropped halfway (a timeout, a client gone) gives the connection
/// back to the pool inside the transaction, and the pool must close it rather than lend
/// it to the next request.
pub async fn transaction<T, E>(
    conn: &mut AsyncPgConnection,
    body: impl AsyncFnOnce(&mut Pipelined<'_>) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<Error>,
{
    let status = AnsiTransactionManager::transaction_manager_status_mut(conn);
    if status.transaction_depth()?.is_some() {
        return Err(Error::AlreadyInTransaction.into());
    }
    status.set_in_error();
    let mut tx = Pipelined {
        conn,
        stage: Stage::NotBegun,
    };
    let out = body(&mut tx).await;
    let ended = match (tx.stage, &out) {
        (Stage::Open, Ok(_)) => send_on(tx.conn, Commit).await,
        (Stage::Open, Err(_)) => send_on(tx.conn, Rollback).await,
        (Stage::NotBegun | Stage::Ended, _) => Ok(()),
    };
    if ended.is_ok() {
        *AnsiTransactionManager::transaction_manager_status_mut(tx.conn) =
            TransactionManagerStatus::default();
    }
    let value = out?;
    ended?;
    Ok(value)
}

impl Pipelined<'_> {
    /// `BEGIN`, then `statements`, on one round trip.
    pub async fn opening<T, E>(
        &mut self,
        statements: impl AsyncFnOnce(&AsyncPgConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<Error>,
    {
        self.expect(Stage::NotBegun)?;
        self.stage = Stage::Open;
        let shared: &AsyncPgConnection = self.conn;
        let (begun, out) = futures_util::join!(begin(shared), statements(shared));
        begun?;
        out
    }

    /// The connection, inside the open transaction, for statements that wait for each
    /// other.
    pub fn conn(&mut self) -> Result<&mut AsyncPgConnection, Error> {
        self.expect(Stage::Open)?;
        Ok(self.conn)
    }

    /// `statements`, then `COMMIT`, on one round trip; ends the transaction.
    /// `statements` must send every statement when first polled (join them, never
    /// await one before sending the next), or `COMMIT` overtakes the rest.
    pub async fn closing<T, E>(
        &mut self,
        statements: impl AsyncFnOnce(&AsyncPgConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<Error>,
    {
        self.expect(Stage::Open)?;
        let shared: &AsyncPgConnection = self.conn;
        let (out, committed) = with_commit(shared, statements).await;
        self.settle(committed, out).await
    }

    /// `BEGIN`, `statements` and `COMMIT` on one round trip: a whole transaction.
    /// `statements` must send every statement when first polled, as for
    /// [`Pipelined::closing`].
    pub async fn whole<T, E>(
        &mut self,
        statements: impl AsyncFnOnce(&AsyncPgConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<Error>,
    {
        self.expect(Stage::NotBegun)?;
        let shared: &AsyncPgConnection = self.conn;
        let (begun, out) = futures_util::join!(begin(shared), with_commit(shared, statements));
        self.settle(begun.and(out.1), out.0).await
    }

    /// The transaction's end, from what `COMMIT` and the statements before it answered.
    /// A failed statement aborted the transaction, so its `COMMIT` rolled back; one that
    /// failed only here (nothing was sent, say) leaves it open: roll it back, which is
    /// harmless once it has ended either way.
    async fn settle<T, E>(&mut self, committed: Result<(), Error>, out: Result<T, E>) -> Result<T, E>
    where
        E: From<Error>,
    {
        self.stage = Stage::Open;
        if out.is_ok() && committed.is_ok() {
            self.stage = Stage::Ended;
            return out;
        }
        if send_on(self.conn, Rollback).await.is_ok() {
            self.stage = Stage::Ended;
        }
        let value = out?;
        committed?;
        Ok(value)
    }

    fn expect(&self, stage: Stage) -> Result<(), Error> {
        match (self.stage, stage) {
            (now, wanted) if now == wanted => Ok(()),
            (Stage::NotBegun, _) => Err(Error::NotInTransaction),
            _ => Err(Error::AlreadyInTransaction),
        }
    }
}

/// `BEGIN` as a simple query: sent the moment it is first polled, ahead of anything
/// polled after it, and with nothing to prepare that could fail and let the statements
/// behind it run outside the transaction.
async fn begin(mut conn: &AsyncPgConnection) -> Result<(), Error> {
    conn.batch_execute("BEGIN").await
}

/// `statements` joined with the `COMMIT` behind them.
async fn with_commit<T, E>(
    shared: &AsyncPgConnection,
    statements: impl AsyncFnOnce(&AsyncPgConnection) -> Result<T, E>,
) -> (Result<T, E>, Result<(), Error>) {
    futures_util::join!(statements(shared), send_on(shared, Commit))
}

async fn send_on<Q>(mut conn: &AsyncPgConnection, statement: Q) -> Result<(), Error>
where
    Q: QueryFragment<Pg> + QueryId + Send + 'static,
{
    statement.execute(&mut conn).await.map(drop)
}

#[cfg(test)]
mod tests;
