//! Retention queries: bounded deletes of rows nothing needs any more (ended sessions and
//! their refresh tokens, sent or dead mail and webhook deliveries, expired email tokens), and the advisory lock
//! that lets one replica at a time run them.
//!
//! Each statement touches at most `batch` rows, chosen in a `limit`ed subselect by
//! `ctid` (or id), so no delete holds many locks or writes a huge WAL burst, and each
//! commits on its own. Every cut-off is `now() - keep` on the database's clock, the clock
//! that wrote the timestamps. The indexes of migration `index_prunable_rows` make each
//! subselect an index range scan.

use std::time::Duration;

use diesel::{
    QueryableByName,
    pg::data_types::PgInterval,
    sql_types::{Array, BigInt, Bool, Interval, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// The advisory lock key held by the replica that prunes ("authretn" in ASCII): one
/// replica at a time, the others skip their turn.
pub const LOCK_KEY: i64 = 0x6175_7468_7265_746e;

/// When a session ended: revoked, idle past its refresh token, or past its absolute
/// lifetime, whichever came first (`least` skips a null `revoked_at`).
const SESSION_ENDED_AT: &str = "least(revoked_at, expires_at, absolute_expires_at)";

/// The same with the idle expiry rounded down to the hour: the expression of the index
/// `sessions_ended_at_idx` (which leaves out the exact `expires_at` so a refresh can
/// update its session in place). Never later than [`SESSION_ENDED_AT`], so every session
/// that ended before a cut-off is in the index's range below it.
const SESSION_ENDED_BY_HOUR: &str = "least(revoked_at, expires_hour, absolute_expires_at)";

fn interval(keep: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX))
}

fn limit(batch: usize) -> i64 {
    i64::try_from(batch).unwrap_or(i64::MAX)
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Takes the retention lock for this connection's session if no other session holds
/// it; answers whether it did. The lock lasts until the connection closes (or
/// [`unlock`]), so take it on a connection of its own, never a pooled one.
pub async fn try_lock(conn: &mut AsyncPgConnection) -> diesel::QueryResult<bool> {
    diesel::sql_query("select pg_try_advisory_lock($1) as locked")
        .bind::<BigInt, _>(LOCK_KEY)
        .get_result::<Locked>(conn)
        .await
        .map(|row| row.locked)
}

/// Releases the retention lock taken by [`try_lock`] on this connection.
pub async fn unlock(conn: &mut AsyncPgConnection) -> diesel::QueryResult<bool> {
    diesel::sql_query("select pg_advisory_unlock($1) as locked")
        .bind::<BigInt, _>(LOCK_KEY)
        .get_result::<Locked>(conn)
        .await
        .map(|row| row.locked)
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Up to `batch` sessions that ended more than `keep` ago.
pub async fn ended_sessions(
    conn: &mut AsyncPgConnection,
    keep: Duration,
    batch: usize,
) -> diesel::QueryResult<Vec<Uuid>> {
    diesel::sql_query(format!(
        "select id from sessions \
         where {SESSION_ENDED_BY_HOUR} < now() - $1 and {SESSION_ENDED_AT} < now() - $1 limit $2"
    ))
    .bind::<Interval, _>(interval(keep))
    .bind::<BigInt, _>(limit(batch))
    .load::<Id>(conn)
    .await
    .map(|rows| rows.into_iter().map(|row| row.id).collect())
}

/// Deletes up to `batch` refresh tokens of `sessions`; answers how many. Called until
/// it answers fewer than `batch`, so a session with a long rotation chain is emptied in
/// bounded steps before the session itself goes.
pub async fn delete_refresh_tokens_of(
    conn: &mut AsyncPgConnection,
    sessions: &[Uuid],
    batch: usize,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "delete from refresh_tokens where ctid = any(array(\
         select ctid from refresh_tokens where session_id = any($1) limit $2))",
    )
    .bind::<Array<SqlUuid>, _>(sessions)
    .bind::<BigInt, _>(limit(batch))
    .execute(conn)
    .await
}

/// Deletes `sessions` that still ended more than `keep` ago (a session that has ended
/// never comes back, but the check costs nothing); their refresh tokens go by cascade
/// should any remain.
pub async fn delete_sessions(
    conn: &mut AsyncPgConnection,
    sessions: &[Uuid],
    keep: Duration,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(format!(
        "delete from sessions where id = any($1) and {SESSION_ENDED_AT} < now() - $2"
    ))
    .bind::<Array<SqlUuid>, _>(sessions)
    .bind::<Interval, _>(interval(keep))
    .execute(conn)
    .await
}

/// Deletes up to `batch` mails sent or given up on more than `keep` ago. A dead mail's
/// time is its last scheduled attempt (`next_attempt_at`; it died minutes after), a
/// pending mail is never deleted.
pub async fn delete_finished_mail(
    conn: &mut AsyncPgConnection,
    keep: Duration,
    batch: usize,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "delete from outbox where ctid = any(array(\
         select ctid from outbox where status <> 'pending' \
         and coalesce(sent_at, next_attempt_at) < now() - $1 limit $2))",
    )
    .bind::<Interval, _>(interval(keep))
    .bind::<BigInt, _>(limit(batch))
    .execute(conn)
    .await
}

/// Deletes up to `batch` webhook deliveries delivered or dead more than `keep` ago.
pub async fn delete_finished_webhooks(
    conn: &mut AsyncPgConnection,
    keep: Duration,
    batch: usize,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "delete from webhook_deliveries where ctid = any(array(\
         select ctid from webhook_deliveries where status <> 'pending' \
         and coalesce(delivered_at, next_attempt_at) < now() - $1 limit $2))",
    )
    .bind::<Interval, _>(interval(keep))
    .bind::<BigInt, _>(limit(batch))
    .execute(conn)
    .await
}

/// Deletes up to `batch` email tokens that expired more than `keep` ago (a used token
/// is deleted when it is used).
pub async fn delete_expired_email_tokens(
    conn: &mut AsyncPgConnection,
    keep: Duration,
    batch: usize,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "delete from email_tokens where ctid = any(array(\
         select ctid from email_tokens where expires_at < now() - $1 limit $2))",
    )
    .bind::<Interval, _>(interval(keep))
    .bind::<BigInt, _>(limit(batch))
    .execute(conn)
    .await
}
