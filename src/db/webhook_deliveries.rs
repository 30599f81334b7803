//! Queries on `webhook_deliveries`: one row per event and endpoint, written in the
//! transaction of the change, claimed by one worker at a time (the claim, lease and
//! outcome rules of [`super::outbox`]), then marked delivered, rescheduled or dead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::{dsl::now, pg::Pg, prelude::*, sql_types::Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{outbox::interval, schema::webhook_deliveries as wd};

const PENDING: &str = "pending";
const DELIVERED: &str = "delivered";
const DEAD: &str = "dead";

/// A delivery about to be queued.
#[derive(Debug, Insertable)]
#[diesel(table_name = wd)]
pub struct NewDelivery<'a> {
    /// The row's own id.
    pub id: Uuid,
    /// The `webhook-id`, shared by every endpoint's copy of the event.
    pub event_id: &'a str,
    /// The URL it goes to.
    pub endpoint: &'a str,
    /// The event type.
    pub kind: &'static str,
    /// The JSON body, sent byte for byte on every attempt.
    pub payload: &'a str,
}

/// A delivery a worker has claimed for one attempt.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = wd, check_for_backend(Pg))]
pub struct ClaimedDelivery {
    /// The row id.
    pub id: Uuid,
    /// The `webhook-id`.
    pub event_id: String,
    /// The event type.
    pub kind: String,
    /// The JSON body.
    pub payload: String,
    /// Failed attempts before this one.
    pub attempts: i32,
}

/// Queues deliveries; call it inside the transaction of the change they describe.
pub async fn insert(conn: &mut AsyncPgConnection, rows: &[NewDelivery<'_>]) -> QueryResult<()> {
    diesel::insert_into(wd::table)
        .values(rows)
        .execute(conn)
        .await
        .map(drop)
}

/// Claims the most overdue pending delivery to `endpoint` for `worker` until `lease` has
/// passed, skipping rows another worker is claiming right now (`FOR UPDATE SKIP
/// LOCKED`): any number of workers on one database never claim one delivery at once.
pub async fn claim_next(
    conn: &mut AsyncPgConnection,
    endpoint: &str,
    worker: Uuid,
    lease: Duration,
) -> QueryResult<Option<ClaimedDelivery>> {
    conn.transaction(async |conn| {
        let id: Option<Uuid> = wd::table
            .filter(wd::endpoint.eq(endpoint))
            .filter(wd::status.eq(PENDING))
            .filter(wd::next_attempt_at.le(now))
            .filter(wd::claimed_until.is_null().or(wd::claimed_until.lt(now)))
            .order(wd::next_attempt_at)
            .select(wd::id)
            .limit(1)
            .for_update()
            .skip_locked()
            .first(conn)
            .await
            .optional()?;
        let Some(id) = id else { return Ok(None) };
        diesel::update(wd::table.find(id))
            .set((
                wd::claimed_by.eq(worker),
                wd::claimed_until.eq((now.into_sql::<Timestamptz>() + interval(lease)).nullable()),
            ))
            .returning(ClaimedDelivery::as_returning())
            .get_result(conn)
            .await
            .map(Some)
    })
    .await
}

/// Marks a claimed delivery delivered; false when the claim had lapsed and another
/// worker took it over.
pub async fn mark_delivered(conn: &mut AsyncPgConnection, id: Uuid, worker: Uuid) -> QueryResult<bool> {
    diesel::update(claimed(id, worker))
        .set((
            wd::status.eq(DELIVERED),
            wd::delivered_at.eq(now),
            wd::claimed_by.eq(None::<Uuid>),
            wd::claimed_until.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await
        .map(|n| n > 0)
}

/// Records a failed attempt and schedules the next one after `delay`.
pub async fn reschedule(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    worker: Uuid,
    delay: Duration,
    error: &str,
) -> QueryResult<bool> {
    diesel::update(claimed(id, worker))
        .set((
            wd::attempts.eq(wd::attempts + 1),
            wd::next_attempt_at.eq(now.into_sql::<Timestamptz>() + interval(delay)),
            wd::last_error.eq(error),
            wd::claimed_by.eq(None::<Uuid>),
            wd::claimed_until.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await
        .map(|n| n > 0)
}

/// Gives up on a delivery after its last failed attempt; the row stays for inspection
/// until retention prunes it.
pub async fn mark_dead(conn: &mut AsyncPgConnection, id: Uuid, worker: Uuid, error: &str) -> QueryResult<bool> {
    diesel::update(claimed(id, worker))
        .set((
            wd::status.eq(DEAD),
            wd::attempts.eq(wd::attempts + 1),
            wd::last_error.eq(error),
            wd::claimed_by.eq(None::<Uuid>),
            wd::claimed_until.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await
        .map(|n| n > 0)
}

/// Hands back every delivery `worker` still claims (graceful shutdown), so another
/// worker can send it at once instead of waiting for the lease to lapse.
pub async fn release_claims(conn: &mut AsyncPgConnection, worker: Uuid) -> QueryResult<usize> {
    diesel::update(
        wd::table
            .filter(wd::claimed_by.eq(worker))
            .filter(wd::status.eq(PENDING)),
    )
    .set((
        wd::claimed_by.eq(None::<Uuid>),
        wd::claimed_until.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await
}

/// Pending deliveries: how many, and when the oldest was queued (for metrics).
pub async fn pending_stats(conn: &mut AsyncPgConnection) -> QueryResult<(i64, Option<DateTime<Utc>>)> {
    wd::table
        .filter(wd::status.eq(PENDING))
        .select((diesel::dsl::count_star(), diesel::dsl::min(wd::created_at)))
        .first(conn)
        .await
}

/// The row `worker` claims, if it still does: marking after a lapsed claim changes nothing.
fn claimed(
    id: Uuid,
    worker: Uuid,
) -> diesel::dsl::Filter<
    diesel::dsl::Filter<diesel::dsl::Find<wd::table, Uuid>, diesel::dsl::Eq<wd::claimed_by, Uuid>>,
    diesel::dsl::Eq<wd::status, &'static str>,
> {
    wd::table
        .find(id)
        .filter(wd::claimed_by.eq(worker))
        .filter(wd::status.eq(PENDING))
}
