//! Queries on `refresh_tokens`.

use chrono::{DateTime, Utc};
use diesel::{pg::Pg, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::refresh_tokens;

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

/// Marks a token as exchanged, keeping its sealed successor for the grace window.
pub async fn mark_rotated(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    at: DateTime<Utc>,
    successor_sealed: &[u8],
) -> QueryResult<()> {
    diesel::update(refresh_tokens::table.find(token_hash))
        .set((
            refresh_tokens::rotated_at.eq(at),
            refresh_tokens::successor_sealed.eq(successor_sealed),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Drops sealed successors whose grace window has passed: they can no longer be
/// handed out, so nothing decryptable should outlive it.
pub async fn forget_successors_before(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    cutoff: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::session_id.eq(session_id))
            .filter(refresh_tokens::rotated_at.lt(cutoff))
            .filter(refresh_tokens::successor_sealed.is_not_null()),
    )
    .set(refresh_tokens::successor_sealed.eq(None::<Vec<u8>>))
    .execute(conn)
    .await
    .map(drop)
}

/// Forgets every token of a session (a password change re-keys the session).
pub async fn delete_for_session(conn: &mut AsyncPgConnection, session_id: Uuid) -> QueryResult<usize> {
    diesel::delete(refresh_tokens::table.filter(refresh_tokens::session_id.eq(session_id)))
        .execute(conn)
        .await
}
