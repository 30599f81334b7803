//! Queries on `outbox`: mail written in the transaction of the change that causes it,
//! claimed by one worker at a time, then marked sent, rescheduled or dead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::{
    dsl::now,
    pg::{Pg, data_types::PgInterval},
    prelude::*,
    sql_types::Timestamptz,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::outbox;

const PENDING: &str = "pending";
const SENT: &str = "sent";
const DEAD: &str = "dead";

/// A mail about to be queued.
#[derive(Insertable)]
#[diesel(table_name = outbox)]
pub struct NewMail {
    /// Chosen by the caller, so the Message-ID can be derived from it.
    pub id: Uuid,
    /// The user the mail is about.
    pub user_id: Option<Uuid>,
    /// What the mail is for (`verify_email`, `reset_password`).
    pub kind: &'static str,
    /// The address it goes to.
    pub recipient: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text part.
    pub body_text: Option<String>,
    /// The HTML part.
    pub body_html: Option<String>,
    /// The `Message-ID` header, angle brackets included.
    pub message_id: String,
}

// The bodies carry a live token and the recipient is an address: neither is printed.
impl std::fmt::Debug for NewMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMail")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A mail a worker has claimed for one delivery attempt.
#[derive(Queryable, Selectable)]
#[diesel(table_name = outbox, check_for_backend(Pg))]
pub struct ClaimedMail {
    /// The mail id (logged instead of the address).
    pub id: Uuid,
    /// What the mail is for.
    pub kind: String,
    /// The address it goes to.
    pub recipient: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text part.
    pub body_text: Option<String>,
    /// The HTML part.
    pub body_html: Option<String>,
    /// The `Message-ID` header.
    pub message_id: String,
    /// Failed attempts before this one.
    pub attempts: i32,
}

impl std::fmt::Debug for ClaimedMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedMail")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// `delay` as a PostgreSQL interval. Claims and schedules use `now()` plus one of these,
/// so every replica goes by the database's clock, whatever its own says.
pub(crate) fn interval(delay: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(delay.as_micros()).unwrap_or(i64::MAX))
}

/// Queues a mail; call it inside the transaction of the change that causes the mail.
pub async fn insert(conn: &mut AsyncPgConnection, mail: &NewMail) -> QueryResult<()> {
    diesel::insert_into(outbox::table)
        .values(mail)
        .execute(conn)
        .await
        .map(drop)
}

/// Claims the most overdue pending mail for `worker` until `lease` has passed. Rows
/// another worker is claiming right now are skipped (`FOR UPDATE SKIP LOCKED`), so any
/// number of workers on one database never claim the same mail at once.
pub async fn claim_next(
    conn: &mut AsyncPgConnection,
    worker: Uuid,
    lease: Duration,
) -> QueryResult<Option<ClaimedMail>> {
    conn.transaction(async |conn| {
        let id: Option<Uuid> = outbox::table
            .filter(outbox::status.eq(PENDING))
            .filter(outbox::next_attempt_at.le(now))
            .filter(outbox::claimed_until.is_null().or(outbox::claimed_until.lt(now)))
            .order(outbox::next_attempt_at)
            .select(outbox::id)
            .limit(1)
            .for_update()
            .skip_locked()
            .first(conn)
            .await
            .optional()?;
        let Some(id) = id else { return Ok(None) };
        diesel::update(outbox::table.find(id))
            .set((
                outbox::claimed_by.eq(worker),
                outbox::claimed_until.eq((now.into_sql::<Timestamptz>() + interval(lease)).nullable()),
            ))
            .returning(ClaimedMail::as_returning())
            .get_result(conn)
            .await
            .map(Some)
    })
    .await
}

/// Marks a claimed mail sent and drops its bodies; false when the claim had lapsed
/// and another worker took the mail over.
pub async fn mark_sent(conn: &mut AsyncPgConnection, id: Uuid, worker: Uuid) -> QueryResult<bool> {
    diesel::update(
        outbox::table
            .find(id)
            .filter(outbox::claimed_by.eq(worker))
            .filter(outbox::status.eq(PENDING)),
    )
    .set((
        outbox::status.eq(SENT),
        outbox::sent_at.eq(now),
        outbox::body_text.eq(None::<String>),
        outbox::body_html.eq(None::<String>),
        outbox::claimed_by.eq(None::<Uuid>),
        outbox::claimed_until.eq(None::<DateTime<Utc>>),
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
    diesel::update(
        outbox::table
            .find(id)
            .filter(outbox::claimed_by.eq(worker))
            .filter(outbox::status.eq(PENDING)),
    )
    .set((
        outbox::attempts.eq(outbox::attempts + 1),
        outbox::next_attempt_at.eq(now.into_sql::<Timestamptz>() + interval(delay)),
        outbox::last_error.eq(error),
        outbox::claimed_by.eq(None::<Uuid>),
        outbox::claimed_until.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Gives up on a mail after a failed attempt: dead, bodies dropped.
pub async fn mark_dead(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    worker: Uuid,
    error: &str,
) -> QueryResult<bool> {
    diesel::update(
        outbox::table
            .find(id)
            .filter(outbox::claimed_by.eq(worker))
            .filter(outbox::status.eq(PENDING)),
    )
    .set((
        outbox::status.eq(DEAD),
        outbox::attempts.eq(outbox::attempts + 1),
        outbox::last_error.eq(error),
        outbox::body_text.eq(None::<String>),
        outbox::body_html.eq(None::<String>),
        outbox::claimed_by.eq(None::<Uuid>),
        outbox::claimed_until.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Hands back every mail `worker` still claims (graceful shutdown), so another worker
/// can deliver it at once instead of waiting for the lease to lapse.
pub async fn release_claims(conn: &mut AsyncPgConnection, worker: Uuid) -> QueryResult<usize> {
    diesel::update(
        outbox::table
            .filter(outbox::claimed_by.eq(worker))
            .filter(outbox::status.eq(PENDING)),
    )
    .set((
        outbox::claimed_by.eq(None::<Uuid>),
        outbox::claimed_until.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await
}

/// Pending mail: how many, and when the oldest was queued (for metrics).
pub async fn pending_stats(conn: &mut AsyncPgConnection) -> QueryResult<(i64, Option<DateTime<Utc>>)> {
    outbox::table
        .filter(outbox::status.eq(PENDING))
        .select((diesel::dsl::count_star(), diesel::dsl::min(outbox::created_at)))
        .first(conn)
        .await
}
