//! The delivery queue shared by `outbox` (mail) and `webhook_deliveries`: rows written in
//! the transaction of a change, claimed by one worker at a time under a lease, then
//! finished, rescheduled or given up on. One implementation for both tables, so a
//! claiming or lease fix lands in both.
//!
//! Each table has the same queue columns (`id`, `status` of `pending`/done/`dead`,
//! `attempts`, `next_attempt_at`, `claimed_by`, `claimed_until`, `last_error`,
//! `created_at` and a done-at time); a [`Queue`] names them. The SQL is assembled from
//! those constants only, never from input. Every time is `now()` plus an interval, on
//! the database's clock, so replicas agree whatever their own clocks say.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::{
    QueryResult, QueryableByName,
    pg::{Pg, data_types::PgInterval},
    sql_types::{BigInt, Interval, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// A table driven as a queue.
#[derive(Debug)]
pub struct Queue {
    /// The table.
    pub table: &'static str,
    /// The status of a finished row (`sent`, `delivered`).
    pub done: &'static str,
    /// The column stamped when a row finishes (`sent_at`, `delivered_at`).
    pub done_at: &'static str,
    /// Extra assignments when a row leaves the queue either way (`, body_text = null`):
    /// columns that hold a secret only while the row may still be sent.
    pub scrub: &'static str,
    /// The columns a claim answers (the claimed row's struct).
    pub returning: &'static str,
    /// A column each worker claims one value of (`endpoint`), if any.
    pub partition: Option<&'static str>,
}

/// `delay` as a PostgreSQL interval.
pub(crate) fn interval(delay: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(delay.as_micros()).unwrap_or(i64::MAX))
}

/// Claims the most overdue pending row (of `partition`'s value, for a partitioned
/// queue) for `worker` until `lease` has passed. Rows another worker is claiming right
/// now are skipped (`FOR UPDATE SKIP LOCKED`), and a row whose claim is still running
/// is not due, so any number of workers on one database never hold the same row at
/// once; a crashed worker's row comes back when its lease lapses.
pub async fn claim<T>(
    conn: &mut AsyncPgConnection,
    queue: &Queue,
    partition: Option<&str>,
    worker: Uuid,
    lease: Duration,
) -> QueryResult<Option<T>>
where
    T: QueryableByName<Pg> + Send + 'static,
{
    let Queue { table, returning, .. } = queue;
    let only = match queue.partition {
        Some(column) => format!(" and {column} = $3"),
        None => String::new(),
    };
    let query = diesel::sql_query(format!(
        "update {table} set claimed_by = $1, claimed_until = now() + $2 \
         where id = (select id from {table} where status = 'pending' and next_attempt_at <= now() \
         and (claimed_until is null or claimed_until < now()){only} \
         order by next_attempt_at limit 1 for update skip locked) \
         returning {returning}"
    ))
    .bind::<SqlUuid, _>(worker)
    .bind::<Interval, _>(interval(lease));
    let claimed = match (queue.partition, partition) {
        (Some(_), Some(value)) => query.bind::<Text, _>(value).load::<T>(conn).await?,
        (None, None) => query.load::<T>(conn).await?,
        _ => {
            return Err(diesel::result::Error::QueryBuilderError(
                "queue partition mismatch".into(),
            ));
        }
    };
    Ok(claimed.into_iter().next())
}

/// Marks a claimed row done; false when the claim had lapsed and another worker took
/// the row over (or an earlier try of this very mark succeeded).
pub async fn finish(
    conn: &mut AsyncPgConnection,
    queue: &Queue,
    id: Uuid,
    worker: Uuid,
) -> QueryResult<bool> {
    let Queue {
        table,
        done,
        done_at,
        scrub,
        ..
    } = queue;
    diesel::sql_query(format!(
        "update {table} set status = '{done}', {done_at} = now(), claimed_by = null, \
         claimed_until = null{scrub} where id = $1 and claimed_by = $2 and status = 'pending'"
    ))
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(worker)
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Records a failed attempt of a claimed row and schedules the next after `delay`.
pub async fn reschedule(
    conn: &mut AsyncPgConnection,
    queue: &Queue,
    id: Uuid,
    worker: Uuid,
    delay: Duration,
    error: &str,
) -> QueryResult<bool> {
    let table = queue.table;
    diesel::sql_query(format!(
        "update {table} set attempts = attempts + 1, next_attempt_at = now() + $3, \
         last_error = $4, claimed_by = null, claimed_until = null \
         where id = $1 and claimed_by = $2 and status = 'pending'"
    ))
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(worker)
    .bind::<Interval, _>(interval(delay))
    .bind::<Text, _>(error)
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Gives up on a claimed row after a failed attempt: `dead`, kept for inspection.
pub async fn give_up(
    conn: &mut AsyncPgConnection,
    queue: &Queue,
    id: Uuid,
    worker: Uuid,
    error: &str,
) -> QueryResult<bool> {
    let Queue { table, scrub, .. } = queue;
    diesel::sql_query(format!(
        "update {table} set status = 'dead', attempts = attempts + 1, last_error = $3, \
         claimed_by = null, claimed_until = null{scrub} \
         where id = $1 and claimed_by = $2 and status = 'pending'"
    ))
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(worker)
    .bind::<Text, _>(error)
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Hands back every row `worker` still claims (graceful shutdown), so another worker
/// can take it at once instead of waiting for the lease to lapse. On a connection of its
/// own; a failure comes back as a message for the shutdown log line (the claims then
/// lapse on their own).
pub async fn release_claims(pool: &super::DbPool, queue: &Queue, worker: Uuid) -> Result<usize, String> {
    let mut conn = pool.get().await.map_err(|e| super::pool_error_message(&e))?;
    release_claims_on(&mut conn, queue, worker)
        .await
        .map_err(|e| e.to_string())
}

async fn release_claims_on(conn: &mut AsyncPgConnection, queue: &Queue, worker: Uuid) -> QueryResult<usize> {
    let table = queue.table;
    diesel::sql_query(format!(
        "update {table} set claimed_by = null, claimed_until = null \
         where claimed_by = $1 and status = 'pending'"
    ))
    .bind::<SqlUuid, _>(worker)
    .execute(conn)
    .await
}

#[derive(QueryableByName)]
struct Stats {
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    oldest: Option<DateTime<Utc>>,
}

/// Pending rows: how many, and when the oldest was queued (for metrics).
pub async fn pending_stats(
    conn: &mut AsyncPgConnection,
    queue: &Queue,
) -> QueryResult<(i64, Option<DateTime<Utc>>)> {
    let table = queue.table;
    diesel::sql_query(format!(
        "select count(*) as n, min(created_at) as oldest from {table} where status = 'pending'"
    ))
    .get_result::<Stats>(conn)
    .await
    .map(|s| (s.n, s.oldest))
}
