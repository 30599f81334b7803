//! Unit tests of `pipelined`, on a real PostgreSQL: what commits, what rolls back, and
//! what a connection is left in.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, pooled_connection::PoolableConnection};

use super::{Pipelined, transaction};
use crate::db::test_db::TestDb;

diesel::table! {
    notes (body) {
        body -> Text,
    }
}

async fn setup() -> (TestDb, AsyncPgConnection) {
    let db = TestDb::new("pipelined").await;
    let mut conn = db.conn().await;
    diesel::sql_query("create table notes (body text primary key)")
        .execute(&mut conn)
        .await
        .unwrap();
    (db, conn)
}

/// A statement diesel prepares (and caches) like any query of the service.
async fn note(mut conn: &AsyncPgConnection, body: &str) -> QueryResult<usize> {
    diesel::insert_into(notes::table)
        .values(notes::body.eq(body))
        .execute(&mut conn)
        .await
}

/// What another connection sees: only what committed.
async fn committed(db: &TestDb) -> Vec<String> {
    let mut other = db.conn().await;
    notes::table
        .select(notes::body)
        .order(notes::body)
        .load(&mut other)
        .await
        .unwrap()
}

/// Whether the connection is inside a transaction, asked of PostgreSQL itself: a
/// savepoint outside one is an error.
async fn in_transaction(conn: &mut AsyncPgConnection) -> bool {
    use diesel_async::SimpleAsyncConnection;
    conn.batch_execute("savepoint probe; release savepoint probe")
        .await
        .is_ok()
}

#[tokio::test]
async fn a_whole_transaction_commits_its_statements_in_one_go() {
    let (db, mut conn) = setup().await;
    transaction(&mut conn, async |tx: &mut Pipelined<'_>| {
        tx.whole(async |c: &AsyncPgConnection| tokio::try_join!(note(c, "a"), note(c, "b")))
            .await
    })
    .await
    .unwrap();
    assert_eq!(committed(&db).await, ["a", "b"]);
    assert!(!conn.is_broken(), "the pool keeps the connection");
    assert!(!in_transaction(&mut conn).await);
    db.drop().await;
}

#[tokio::test]
async fn a_failing_statement_takes_the_whole_transaction_with_it() {
    let (db, conn) = setup().await;
    note(&conn, "taken").await.unwrap();
    // A fresh connection: the first statement is prepared while the others wait, and the
    // COMMIT must still come after the failing one, or "new" would commit on its own.
    let mut fresh = db.conn().await;
    let failed = transaction(&mut fresh, async |tx: &mut Pipelined<'_>| {
        tx.whole(async |c: &AsyncPgConnection| tokio::try_join!(note(c, "new"), note(c, "taken")))
            .await
    })
    .await;
    assert!(failed.is_err());
    assert_eq!(committed(&db).await, ["taken"]);
    assert!(!fresh.is_broken());
    assert!(!in_transaction(&mut fresh).await);
    // And the connection still works.
    note(&fresh, "later").await.unwrap();
    assert_eq!(committed(&db).await, ["later", "taken"]);
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn opening_then_closing_commits_once_and_an_error_between_rolls_back() {
    let (db, mut conn) = setup().await;
    transaction(&mut conn, async |tx: &mut Pipelined<'_>| {
        tx.opening(async |c: &AsyncPgConnection| note(c, "first").await)
            .await?;
        note(tx.conn()?, "middle").await?;
        tx.closing(async |c: &AsyncPgConnection| note(c, "last").await)
            .await
    })
    .await
    .unwrap();
    assert_eq!(committed(&db).await, ["first", "last", "middle"]);

    let refused: Result<(), diesel::result::Error> =
        transaction(&mut conn, async |tx: &mut Pipelined<'_>| {
            tx.opening(async |c: &AsyncPgConnection| note(c, "gone").await)
                .await?;
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(refused.is_err());
    assert_eq!(committed(&db).await, ["first", "last", "middle"]);
    assert!(!conn.is_broken());
    assert!(!in_transaction(&mut conn).await);

    // A body that only opened commits after it.
    transaction(&mut conn, async |tx: &mut Pipelined<'_>| {
        tx.opening(async |c: &AsyncPgConnection| note(c, "opened").await)
            .await
    })
    .await
    .unwrap();
    assert!(committed(&db).await.contains(&"opened".to_owned()));
    db.drop().await;
}

#[tokio::test]
async fn a_transaction_dropped_halfway_leaves_a_connection_the_pool_discards() {
    let (db, mut conn) = setup().await;
    let halfway = transaction(&mut conn, async |tx: &mut Pipelined<'_>| {
        tx.opening(async |c: &AsyncPgConnection| note(c, "never").await)
            .await?;
        std::future::pending::<()>().await;
        Ok::<_, diesel::result::Error>(())
    });
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), halfway)
            .await
            .is_err()
    );
    assert!(
        conn.is_broken(),
        "a connection left inside a transaction is not reused"
    );
    assert_eq!(committed(&db).await, Vec::<String>::new());
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn misuse_is_an_error_not_a_statement_outside_the_transaction() {
    let (db, mut conn) = setup().await;
    let out = transaction(&mut conn, async |tx: &mut Pipelined<'_>| {
        // Not begun: no connection to use, nothing to close.
        assert!(tx.conn().is_err());
        tx.closing(async |c: &AsyncPgConnection| note(c, "x").await).await
    })
    .await;
    assert!(out.is_err());
    assert_eq!(committed(&db).await, Vec::<String>::new());
    assert!(!conn.is_broken());
    // Inside diesel's own transaction, refused.
    let nested = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            transaction(c, async |tx: &mut Pipelined<'_>| {
                tx.whole(async |c: &AsyncPgConnection| note(c, "y").await).await
            })
            .await
        })
        .await;
    assert!(matches!(nested, Err(diesel::result::Error::AlreadyInTransaction)));
    db.drop().await;
}
