//! Queries on `outbox`: mail written in the transaction of the change that causes it,
//! claimed by one worker at a time, then marked sent, rescheduled or dead (the shared
//! [`queue`] rules).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::{pg::Pg, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    cached::Cached,
    queue::{self, Queue},
    schema::outbox,
};

const SENT: &str = "sent";

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
#[derive(QueryableByName)]
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

/// The outbox as a [`queue::Queue`]: a finished mail loses its bodies, which carry a
/// live token.
pub const QUEUE: Queue = Queue {
    table: "outbox",
    done: SENT,
    done_at: "sent_at",
    scrub: ", body_text = null, body_html = null",
    returning: "id, kind, recipient, subject, body_text, body_html, message_id, attempts",
    partition: None,
};

/// Queues a mail; call it inside the transaction of the change that causes the mail.
pub async fn insert(mut conn: &AsyncPgConnection, mail: &NewMail) -> QueryResult<()> {
    Cached(diesel::insert_into(outbox::table).values(mail))
        .execute(&mut conn)
        .await
        .map(drop)
}

/// Claims the most overdue pending mail for `worker` until `lease` has passed; no two
/// workers on one database ever claim the same mail at once ([`queue::claim`]).
pub async fn claim_next(
    conn: &mut AsyncPgConnection,
    worker: Uuid,
    lease: Duration,
) -> QueryResult<Option<ClaimedMail>> {
    queue::claim(conn, &QUEUE, None, worker, lease).await
}

/// Marks a claimed mail sent and drops its bodies; false when the claim had lapsed
/// and another worker took the mail over.
pub async fn mark_sent(conn: &mut AsyncPgConnection, id: Uuid, worker: Uuid) -> QueryResult<bool> {
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

/// Gives up on a mail after a failed attempt: dead, bodies dropped.
pub async fn mark_dead(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    worker: Uuid,
    error: &str,
) -> QueryResult<bool> {
    queue::give_up(conn, &QUEUE, id, worker, error).await
}

/// Hands back every mail `worker` still claims (graceful shutdown), so another worker
/// can deliver it at once instead of waiting for the lease to lapse.
pub async fn release_claims(pool: &super::DbPool, worker: Uuid) -> Result<usize, String> {
    queue::release_claims(pool, &QUEUE, worker).await
}

/// Pending mail: how many, and when the oldest was queued (for metrics).
pub async fn pending_stats(conn: &mut AsyncPgConnection) -> QueryResult<(i64, Option<DateTime<Utc>>)> {
    queue::pending_stats(conn, &QUEUE).await
}
