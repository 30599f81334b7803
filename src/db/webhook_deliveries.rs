//! Queries on `webhook_deliveries`: one row per event and endpoint, written in the
//! transaction of the change, claimed by one worker at a time (the shared [`queue`]
//! rules, partitioned by endpoint), then marked delivered, rescheduled or dead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::{pg::Pg, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    queue::{self, Queue},
    schema::webhook_deliveries as wd,
};

/// Deliveries as a [`queue::Queue`], one partition per endpoint. Nothing is scrubbed
/// when a delivery finishes: the body holds no secret, and is kept for inspection.
pub const QUEUE: Queue = Queue {
    table: "webhook_deliveries",
    done: "delivered",
    done_at: "delivered_at",
    scrub: "",
    returning: "id, event_id, kind, payload, attempts",
    partition: Some("endpoint"),
};

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
#[derive(Debug, QueryableByName)]
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

/// Claims the most overdue pending delivery to `endpoint` for `worker` until `lease`
/// has passed; no two workers ever claim one delivery at once ([`queue::claim`]).
pub async fn claim_next(
    conn: &mut AsyncPgConnection,
    endpoint: &str,
    worker: Uuid,
    lease: Duration,
) -> QueryResult<Option<ClaimedDelivery>> {
    queue::claim(conn, &QUEUE, Some(endpoint), worker, lease).await
}

/// Marks a claimed delivery delivered; false when the claim had lapsed and another
/// worker took it over.
pub async fn mark_delivered(conn: &mut AsyncPgConnection, id: Uuid, worker: Uuid) -> QueryResult<bool> {
    queue::finish(conn, &QUEUE, id, worker).await
}

/// Records a failed attempt and schedules the next one after `delay`.
pub async fn reschedule(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    worker: Uuid,
    delay: Duration,
    error: &str,
) -> QueryResult<bool> {
    queue::reschedule(conn, &QUEUE, id, worker, delay, error).await
}

/// Gives up on a delivery after its last failed attempt; the row stays for inspection
/// until retention prunes it.
pub async fn mark_dead(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    worker: Uuid,
    error: &str,
) -> QueryResult<bool> {
    queue::give_up(conn, &QUEUE, id, worker, error).await
}

/// Hands back every delivery `worker` still claims (graceful shutdown).
pub async fn release_claims(pool: &super::DbPool, worker: Uuid) -> Result<usize, String> {
    queue::release_claims(pool, &QUEUE, worker).await
}

/// Pending deliveries: how many, and when the oldest was queued (for metrics).
pub async fn pending_stats(conn: &mut AsyncPgConnection) -> QueryResult<(i64, Option<DateTime<Utc>>)> {
    queue::pending_stats(conn, &QUEUE).await
}
