//! Queries on `refresh_tokens`.

use chrono::{DateTime, Utc};
use diesel::{
    pg::Pg,
    prelude::*,
    query_builder::{AstPass, QueryFragment, QueryId},
    sql_types::{Bytea, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{refresh_tokens, sessions, users};
use super::users::Account;

/// A row of `refresh_tokens`.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens, check_for_backend(Pg))]
pub struct RefreshToken {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// Its session.
    pub session_id: Uuid,
    /// Issue time.
    pub issued_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// When it was exchanged for its successor.
    pub rotated_at: Option<DateTime<Utc>>,
    /// The successor pair, sealed under this token.
    pub successor_sealed: Option<Vec<u8>>,
}

/// Records a newly issued refresh token by its hash.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    session_id: Uuid,
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(token_hash),
            refresh_tokens::session_id.eq(session_id),
            refresh_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Finds a token by hash.
pub async fn find(conn: &mut AsyncPgConnection, token_hash: &[u8]) -> QueryResult<Option<RefreshToken>> {
    refresh_tokens::table
        .find(token_hash)
        .select(RefreshToken::as_select())
        .first(conn)
        .await
        .optional()
}

/// A token with the owner of its session (shared reference: pipelined after a lock).
pub async fn find_with_owner(
    mut conn: &AsyncPgConnection,
    token_hash: &[u8],
) -> QueryResult<Option<(RefreshToken, Account)>> {
    refresh_tokens::table
        .inner_join(sessions::table.inner_join(users::table))
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .select((RefreshToken::as_select(), Account::as_select()))
        .first(&mut conn)
        .await
        .optional()
}

/// The writes of one rotation.
pub struct Rotation<'a> {
    /// The session.
    pub session_id: Uuid,
    /// The token being exchanged.
    pub parent_hash: &'a [u8],
    /// Its successor pair, sealed under the parent.
    pub successor_sealed: &'a [u8],
    /// The successor's hash.
    pub child_hash: &'a [u8],
    /// The successor's expiry, which becomes the session's.
    pub child_expires_at: DateTime<Utc>,
    /// Now.
    pub at: DateTime<Utc>,
    /// Sealed successors of tokens rotated before this are wiped: their grace is over.
    pub grace_cutoff: DateTime<Utc>,
}

/// Records a rotation: stores the child, marks the parent exchanged (keeping the sealed
/// successor for the grace window), wipes expired sealed successors and touches the
/// session. One statement (the writes as data-modifying `with` clauses, which see one
/// snapshot and touch no row twice: the parent is not yet rotated in it, so the wipe
/// cannot reach it), prepared once per connection; a refresh sends it with its COMMIT
/// (`db::pipelined`).
pub async fn record_rotation(mut conn: &AsyncPgConnection, r: &Rotation<'_>) -> QueryResult<()> {
    RecordRotation(r).execute(&mut conn).await.map(drop)
}

struct RecordRotation<'a>(&'a Rotation<'a>);

impl QueryFragment<Pg> for RecordRotation<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let r = self.0;
        out.push_sql(
            "with child as (insert into refresh_tokens \
             (token_hash, session_id, issued_at, expires_at) values (",
        );
        out.push_bind_param::<Bytea, _>(&r.child_hash)?;
        out.push_sql(", ");
        out.push_bind_param::<SqlUuid, _>(&r.session_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&r.at)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&r.child_expires_at)?;
        out.push_sql(")), mark as (update refresh_tokens set rotated_at = ");
        out.push_bind_param::<Timestamptz, _>(&r.at)?;
        out.push_sql(", successor_sealed = ");
        out.push_bind_param::<Bytea, _>(&r.successor_sealed)?;
        out.push_sql(" where token_hash = ");
        out.push_bind_param::<Bytea, _>(&r.parent_hash)?;
        out.push_sql("), forget as (update refresh_tokens set successor_sealed = null where session_id = ");
        out.push_bind_param::<SqlUuid, _>(&r.session_id)?;
        out.push_sql(" and rotated_at < ");
        out.push_bind_param::<Timestamptz, _>(&r.grace_cutoff)?;
        out.push_sql(" and successor_sealed is not null) update sessions set last_used_at = ");
        out.push_bind_param::<Timestamptz, _>(&r.at)?;
        out.push_sql(", expires_at = ");
        out.push_bind_param::<Timestamptz, _>(&r.child_expires_at)?;
        out.push_sql(" where id = ");
        out.push_bind_param::<SqlUuid, _>(&r.session_id)?;
        Ok(())
    }
}

impl QueryId for RecordRotation<'_> {
    type QueryId = RecordRotation<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// Forgets every token of a session (a password change re-keys the session).
pub async fn delete_for_session(conn: &mut AsyncPgConnection, session_id: Uuid) -> QueryResult<usize> {
    diesel::delete(refresh_tokens::table.filter(refresh_tokens::session_id.eq(session_id)))
        .execute(conn)
        .await
}
