//! Queries on `throttle_counters`: attempt counts shared by every replica. The rules
//! (how many, how long) live in `auth::throttle`; this module only reads and writes rows.

use chrono::{DateTime, Utc};
use diesel::{pg::Pg, prelude::*, upsert::excluded};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::throttle_counters;

/// A row of `throttle_counters`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = throttle_counters, check_for_backend(Pg), treat_none_as_null = true)]
pub struct Counter {
    /// `<limit>:<subject>`.
    pub key: String,
    /// Attempts counted in the current window.
    pub attempts: i32,
    /// When the count starts over.
    pub window_ends_at: DateTime<Utc>,
    /// No attempt is taken before this.
    pub locked_until: Option<DateTime<Utc>>,
}

/// Makes sure a row exists for every key (a new one has no attempts and an expired
/// window) and locks them all, in key order so two transactions never deadlock; answers
/// them with the database's clock, so every replica decides by the same time. One
/// statement: the no-op update on conflict is what takes the lock. Call inside a
/// transaction: the locks last until it ends.
pub async fn lock(
    conn: &mut AsyncPgConnection,
    keys: &[String],
) -> QueryResult<(Vec<Counter>, DateTime<Utc>)> {
    use diesel::{dsl::sql, sql_types::Timestamptz};
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    sorted.dedup();
    let fresh: Vec<_> = sorted
        .iter()
        .map(|key| {
            (
                throttle_counters::key.eq(*key),
                throttle_counters::window_ends_at.eq(sql::<Timestamptz>("now()")),
            )
        })
        .collect();
    let rows: Vec<(Counter, DateTime<Utc>)> = diesel::insert_into(throttle_counters::table)
        .values(&fresh)
        .on_conflict(throttle_counters::key)
        .do_update()
        .set(throttle_counters::key.eq(excluded(throttle_counters::key)))
        .returning((Counter::as_returning(), sql::<Timestamptz>("now()")))
        .get_results(conn)
        .await?;
    let now = <[_]>::first(&rows).map_or_else(Utc::now, |(_, now)| *now);
    Ok((rows.into_iter().map(|(counter, _)| counter).collect(), now))
}

/// When a counter stops refusing attempts, if it is waiting (a plain read: no lock).
/// Takes a shared reference so it can be pipelined with other reads.
pub async fn locked_until(mut conn: &AsyncPgConnection, key: &str) -> QueryResult<Option<DateTime<Utc>>> {
    throttle_counters::table
        .find(key)
        .select(throttle_counters::locked_until)
        .first::<Option<DateTime<Utc>>>(&mut conn)
        .await
        .optional()
        .map(Option::flatten)
}

/// Writes counters back (inside the transaction that locked them).
pub async fn save(conn: &mut AsyncPgConnection, counters: &[Counter]) -> QueryResult<()> {
    if counters.is_empty() {
        return Ok(());
    }
    diesel::insert_into(throttle_counters::table)
        .values(counters)
        .on_conflict(throttle_counters::key)
        .do_update()
        .set((
            throttle_counters::attempts.eq(excluded(throttle_counters::attempts)),
            throttle_counters::window_ends_at.eq(excluded(throttle_counters::window_ends_at)),
            throttle_counters::locked_until.eq(excluded(throttle_counters::locked_until)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes back one attempt, in one atomic statement (`attempts` on the right-hand side is
/// the value before this update).
const REFUND: &str = "update throttle_counters set attempts = greatest(attempts - 1, 0), \
     locked_until = case when attempts - 1 < $2 then null else locked_until end \
     where key = $1";

/// A successful attempt, in one round trip: forgets the `clear` counters (a successful
/// login clears its account's counts) and takes one attempt back from each of `refund`
/// (key, free attempts): a key's wait ends when its count drops below its free attempts.
pub async fn settle(
    conn: &mut AsyncPgConnection,
    clear: &[String],
    refund: &[(&str, i32)],
) -> QueryResult<()> {
    use diesel::sql_types::{Integer, Text};
    // A shared reference per statement, so they go out together (pipelined).
    let conn: &AsyncPgConnection = conn;
    let forget = async {
        if clear.is_empty() {
            return Ok(0);
        }
        let mut conn = conn;
        diesel::delete(throttle_counters::table.filter(throttle_counters::key.eq_any(clear)))
            .execute(&mut conn)
            .await
    };
    let refunds = futures_util::future::try_join_all(refund.iter().map(|(key, free)| {
        let mut conn = conn;
        async move {
            diesel::sql_query(REFUND)
                .bind::<Text, _>(*key)
                .bind::<Integer, _>(*free)
                .execute(&mut conn)
                .await
        }
    }));
    tokio::try_join!(forget, refunds).map(drop)
}

/// Deletes counters whose window and wait are both over: they would start afresh anyway.
pub async fn prune(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::delete(
        throttle_counters::table
            .filter(throttle_counters::window_ends_at.lt(diesel::dsl::now))
            .filter(
                throttle_counters::locked_until
                    .is_null()
                    .or(throttle_counters::locked_until.lt(diesel::dsl::now)),
            ),
    )
    .execute(conn)
    .await
}
