//! Queries on `audit_events`: append-only rows written in the transaction of the change
//! they describe, read newest first, and the monthly partitions retention drops.

use chrono::{DateTime, Months, Utc};
use diesel::{pg::Pg, prelude::*, sql_types};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{cached::Cached, schema::audit_events};

/// An event about to be recorded.
#[derive(Debug, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditEvent<'a> {
    /// Chosen by the caller, so a webhook delivery can carry the same id.
    pub id: Uuid,
    /// When it happened (the recording replica's clock).
    pub created_at: DateTime<Utc>,
    /// Dotted lower-case type (`login.succeeded`).
    #[diesel(column_name = type_)]
    pub kind: &'a str,
    /// The user the event is about.
    pub user_id: Option<Uuid>,
    /// Who caused it.
    pub actor_id: Option<Uuid>,
    /// The session involved.
    pub session_id: Option<Uuid>,
    /// The client address of the request.
    pub client_address: Option<String>,
    /// The `User-Agent` of the request.
    pub user_agent: Option<&'a str>,
    /// The request id (`X-Request-Id`).
    pub request_id: Option<&'a str>,
    /// Event-specific facts, never a secret.
    pub details: serde_json::Value,
}

/// A recorded event.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = audit_events, check_for_backend(Pg))]
pub struct AuditEvent {
    /// Its id.
    pub id: Uuid,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// Dotted lower-case type.
    #[diesel(column_name = type_)]
    pub kind: String,
    /// The user the event is about.
    pub user_id: Option<Uuid>,
    /// Who caused it.
    pub actor_id: Option<Uuid>,
    /// The session involved.
    pub session_id: Option<Uuid>,
    /// The client address of the request.
    pub client_address: Option<String>,
    /// The `User-Agent` of the request.
    pub user_agent: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// Event-specific facts.
    pub details: serde_json::Value,
}

/// Which events `page` and `count` select; every part is optional.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Events about this user.
    pub user_id: Option<Uuid>,
    /// Events of these types.
    pub types: Option<Vec<String>>,
    /// At or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Before this time.
    pub to: Option<DateTime<Utc>>,
}

type Boxed<'a> = audit_events::BoxedQuery<'a, Pg>;

fn filtered(filter: &Filter) -> Boxed<'_> {
    let mut query = audit_events::table.into_boxed();
    if let Some(user_id) = filter.user_id {
        query = query.filter(audit_events::user_id.eq(user_id));
    }
    if let Some(types) = &filter.types {
        query = query.filter(audit_events::type_.eq_any(types));
    }
    if let Some(from) = filter.from {
        query = query.filter(audit_events::created_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(audit_events::created_at.lt(to));
    }
    query
}

/// Records an event; call it inside the transaction of the change it describes.
pub async fn insert(mut conn: &AsyncPgConnection, event: &NewAuditEvent<'_>) -> QueryResult<()> {
    Cached(diesel::insert_into(audit_events::table).values(event))
        .execute(&mut conn)
        .await
        .map(drop)
}

/// Up to `limit` events matching `filter`, newest first, strictly after the cursor
/// `before` (the `(created_at, id)` of the last event of the previous page).
pub async fn page(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<AuditEvent>> {
    let mut query = filtered(filter);
    if let Some((at, id)) = before {
        // A row comparison: the only form PostgreSQL turns into an index range.
        query = query.filter(
            diesel::dsl::sql::<sql_types::Bool>("(audit_events.created_at, audit_events.id) < (")
                .bind::<sql_types::Timestamptz, _>(at)
                .sql(", ")
                .bind::<sql_types::Uuid, _>(id)
                .sql(")"),
        );
    }
    query
        .order((audit_events::created_at.desc(), audit_events::id.desc()))
        .limit(limit)
        .select(AuditEvent::as_select())
        .load(conn)
        .await
}

/// How many events match `filter`.
pub async fn count(conn: &mut AsyncPgConnection, filter: &Filter) -> QueryResult<i64> {
    filtered(filter).count().get_result(conn).await
}

/// Creates the monthly partitions of `now`'s month and the next, if missing.
pub async fn ensure_partitions(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> QueryResult<()> {
    for at in [now, now.checked_add_months(Months::new(1)).unwrap_or(now)] {
        diesel::select(ensure_partition(at)).execute(conn).await?;
    }
    Ok(())
}

diesel::define_sql_function! {
    /// `audit_events_ensure_partition(at)` of the migration.
    #[sql_name = "audit_events_ensure_partition"]
    fn ensure_partition(at: sql_types::Timestamptz) -> sql_types::Nullable<sql_types::Text>;
}

#[derive(QueryableByName)]
struct Partition {
    #[diesel(sql_type = sql_types::Text)]
    name: String,
}

/// Drops every monthly partition whose month ended before `cutoff`; answers their
/// names. The default partition is never dropped.
pub async fn drop_partitions_before(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
) -> QueryResult<Vec<String>> {
    let partitions: Vec<Partition> = diesel::sql_query(
        "select c.relname as name from pg_inherits i \
         join pg_class c on c.oid = i.inhrelid \
         join pg_class p on p.oid = i.inhparent \
         where p.relname = 'audit_events' and c.relname ~ '^audit_events_[0-9]{4}_[0-9]{2}$'",
    )
    .load(conn)
    .await?;
    let mut dropped = Vec::new();
    for partition in partitions {
        let Some(month_end) = month_end(&partition.name) else {
            continue;
        };
        if month_end <= cutoff {
            // The name matched the strict pattern above, so it needs no quoting.
            diesel::sql_query(format!("drop table {}", partition.name))
                .execute(conn)
                .await?;
            dropped.push(partition.name);
        }
    }
    Ok(dropped)
}

/// The end of the month an `audit_events_YYYY_MM` partition holds.
fn month_end(name: &str) -> Option<DateTime<Utc>> {
    let (year, month) = name.strip_prefix("audit_events_")?.split_once('_')?;
    let first = chrono::NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1)?;
    let next = first.checked_add_months(Months::new(1))?;
    Some(next.and_hms_opt(0, 0, 0)?.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_give_the_end_of_their_month() {
        let end = month_end("audit_events_2026_12").unwrap();
        assert_eq!(end.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(month_end("audit_events_default"), None);
        assert_eq!(month_end("audit_events_2026_13"), None);
    }
}
