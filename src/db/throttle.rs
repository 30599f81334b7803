//! Queries on `throttle_counters`: attempt counts shared by every replica. The rules
//! (which limits, how many, how long) are chosen in `auth::throttle`; counting applies
//! them here, in one statement, so the database's clock and row locks decide.
//!
//! The statements the query builder cannot express ([`Count`], [`Refund`], [`Clear`])
//! are small query types with a constant SQL text: diesel caches their prepared
//! statements by type, where `sql_query` would be parsed and planned on every login.

use chrono::{DateTime, Utc};
use diesel::{
    pg::Pg,
    prelude::*,
    query_builder::{AstPass, Query, QueryFragment, QueryId},
    sql_types::{Array, Bool, Double, Integer, Nullable, Text, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::throttle_counters;
use crate::config::ThrottleRule;

/// What counting one attempt did to one key, with the database's clock.
#[derive(Clone, Debug, PartialEq, Eq, Queryable)]
pub struct Taken {
    /// `<limit>:<subject>`.
    pub key: String,
    /// Whether the attempt was counted on this key (on none, when any key was waiting).
    pub counted: bool,
    /// Counted: the wait this attempt started, if any. Not counted: the wait that
    /// refused it, when known (a wait started by an attempt that committed while this
    /// one ran is not: the statement's snapshot predates it).
    pub locked_until: Option<DateTime<Utc>>,
    /// The database's `now()`, which every replica decides by.
    pub now: DateTime<Utc>,
}

/// Counts one attempt on each key, with its rule, in one statement: a new window once
/// the old one is over; from the `free`-th attempt of a window on, a wait of
/// `first_wait` doubled per attempt past `free`, at most `max_wait`. When any key is
/// waiting, the attempt is refused and no key is counted. Answers one [`Taken`] per key.
///
/// Concurrent counts queue on the rows, which the upsert locks in key order (so two
/// counts never deadlock), and each decides on the latest committed row: no two
/// attempts ever pass a limit together. One race is left to a single statement: a key
/// that starts waiting, by an attempt committed after this statement began, refuses
/// this attempt after the keys before it in order were counted.
#[derive(Clone, Debug)]
pub struct Count {
    keys: Vec<String>,
    free: Vec<i32>,
    window_s: Vec<f64>,
    first_wait_s: Vec<f64>,
    max_wait_s: Vec<f64>,
}

impl Count {
    /// An attempt on `keys`, each with its rule; a key listed twice is counted once.
    pub fn new<'a>(keys: impl IntoIterator<Item = (&'a str, &'a ThrottleRule)>) -> Self {
        let mut keys: Vec<(&str, &ThrottleRule)> = keys.into_iter().collect();
        // Two rows with one key in one upsert would be an error.
        keys.sort_by_key(|(key, _)| *key);
        keys.dedup_by_key(|(key, _)| *key);
        Self {
            keys: keys.iter().map(|(key, _)| (*key).to_owned()).collect(),
            free: keys
                .iter()
                .map(|(_, rule)| i32::try_from(rule.free).unwrap_or(i32::MAX))
                .collect(),
            window_s: keys.iter().map(|(_, rule)| rule.window.as_secs_f64()).collect(),
            first_wait_s: keys
                .iter()
                .map(|(_, rule)| rule.first_wait.as_secs_f64())
                .collect(),
            max_wait_s: keys.iter().map(|(_, rule)| rule.max_wait.as_secs_f64()).collect(),
        }
    }

    /// Whether there is nothing to count.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// After `with r (k, f, w, fw, mw) as (select * from unnest(` and its five binds (keys,
/// free attempts, window, first and longest wait in seconds). `waiting` reads the
/// statement's snapshot: any key waiting means nothing is inserted or updated. The
/// upsert's `where` re-checks each row as locked (its latest version). `attempts` on the
/// right-hand side of `set` is the value before this update.
const COUNT: &str = ")), \
     waiting as ( \
       select c.key, c.locked_until from throttle_counters c join r on c.key = r.k \
       where c.locked_until > now()), \
     counted as ( \
       insert into throttle_counters as c (key, attempts, window_ends_at, locked_until) \
       select k, 1, now() + make_interval(secs => w), \
              case when 1 >= f then now() + make_interval(secs => least(fw, mw)) end \
       from r where not exists (select from waiting) order by k \
       on conflict (key) do update set \
         attempts = case when c.window_ends_at <= now() then 1 \
                    else least(c.attempts, 2147483646) + 1 end, \
         window_ends_at = case when c.window_ends_at <= now() then excluded.window_ends_at \
                          else c.window_ends_at end, \
         locked_until = (select case when n.n >= r.f then now() + make_interval(secs => \
                           least(r.fw * power(2::float8, least(n.n - r.f, 31)), r.mw)) end \
                         from r, (select case when c.window_ends_at <= now() then 1 \
                                  else least(c.attempts, 2147483646) + 1 end) n (n) \
                         where r.k = c.key) \
       where c.locked_until is null or c.locked_until <= now() \
       returning c.key, c.locked_until) \
     select r.k, counted.key is not null, coalesce(counted.locked_until, waiting.locked_until), now() \
     from r left join counted on counted.key = r.k left join waiting on waiting.key = r.k \
     order by r.k";

impl QueryFragment<Pg> for Count {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("with r (k, f, w, fw, mw) as (select * from unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.keys)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&self.free)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Double>, _>(&self.window_s)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Double>, _>(&self.first_wait_s)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Double>, _>(&self.max_wait_s)?;
        out.push_sql(COUNT);
        Ok(())
    }
}

impl QueryId for Count {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for Count {
    type SqlType = (Text, Bool, Nullable<Timestamptz>, Timestamptz);
}

/// Counts an attempt (see [`Count`]). Takes a shared reference so it can be pipelined
/// with the caller's own query.
pub async fn count(mut conn: &AsyncPgConnection, count: &Count) -> QueryResult<Vec<Taken>> {
    if count.is_empty() {
        return Ok(Vec::new());
    }
    count.clone().load(&mut conn).await
}

/// Forgets counters (a right password clears its account's counts). The rows are
/// locked in key order before they go, as [`Count`] locks them, so a clear inside a
/// longer transaction never deadlocks with a count.
#[derive(Clone, Debug)]
pub struct Clear(Vec<String>);

const CLEAR: [&str; 2] = [
    "delete from throttle_counters where key in ( \
     select key from throttle_counters where key = any(",
    ") order by key for update)",
];

impl QueryFragment<Pg> for Clear {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(CLEAR[0]);
        out.push_bind_param::<Array<Text>, _>(&self.0)?;
        out.push_sql(CLEAR[1]);
        Ok(())
    }
}

impl QueryId for Clear {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// Takes back one attempt from a key, with its free attempts: its wait ends when its
/// count drops below them. One atomic statement.
#[derive(Clone, Debug)]
pub struct Refund {
    key: String,
    free: i32,
}

/// Around the free attempts and the key. `attempts` on the right-hand side is the value
/// before this update.
const REFUND: [&str; 2] = [
    "update throttle_counters set attempts = greatest(attempts - 1, 0), \
     locked_until = case when attempts - 1 < ",
    " then null else locked_until end where key = ",
];

impl QueryFragment<Pg> for Refund {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(REFUND[0]);
        out.push_bind_param::<Integer, _>(&self.free)?;
        out.push_sql(REFUND[1]);
        out.push_bind_param::<Text, _>(&self.key)
    }
}

impl QueryId for Refund {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// The counter changes of a successful attempt: counters to forget, and counters to
/// take one attempt back from (key, free attempts).
#[derive(Clone, Debug, Default)]
pub struct Settlement {
    /// Keys whose counts end.
    pub clear: Vec<String>,
    /// Keys that get one attempt back, with their free attempts.
    pub refund: Vec<(String, i32)>,
}

impl Settlement {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.clear.is_empty() && self.refund.is_empty()
    }

    /// Forgets the `clear` counters (no-op without any). Shared reference: pipelined.
    pub async fn clear(&self, mut conn: &AsyncPgConnection) -> QueryResult<()> {
        if self.clear.is_empty() {
            return Ok(());
        }
        Clear(self.clear.clone()).execute(&mut conn).await.map(drop)
    }

    /// Takes one attempt back from each `refund` counter (pipelined, in key order as
    /// [`Count`] locks rows; no-op without any).
    pub async fn refund(&self, conn: &AsyncPgConnection) -> QueryResult<()> {
        let mut refund = self.refund.clone();
        refund.sort();
        futures_util::future::try_join_all(refund.into_iter().map(|(key, free)| {
            let mut conn = conn;
            async move { Refund { key, free }.execute(&mut conn).await }
        }))
        .await
        .map(drop)
    }

    /// Both, in one round trip (pipelined), each its own autocommit when the
    /// connection is in no transaction.
    pub async fn apply(&self, conn: &AsyncPgConnection) -> QueryResult<()> {
        tokio::try_join!(self.clear(conn), self.refund(conn)).map(drop)
    }
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

/// Deletes counters whose window and wait are both over: they would start afresh anyway.
pub async fn prune(mut conn: &AsyncPgConnection) -> QueryResult<usize> {
    diesel::delete(
        throttle_counters::table
            .filter(throttle_counters::window_ends_at.lt(diesel::dsl::now))
            .filter(
                throttle_counters::locked_until
                    .is_null()
                    .or(throttle_counters::locked_until.lt(diesel::dsl::now)),
            ),
    )
    .execute(&mut conn)
    .await
}
