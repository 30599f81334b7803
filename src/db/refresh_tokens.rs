//! Queries on `refresh_tokens`.

use chrono::{DateTime, Utc};
use diesel::{pg::Pg, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::cached::Cached;
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
/// session. The four statements are pipelined: they go out together (with the COMMIT
/// of a refresh, see `db::pipelined`).
pub async fn record_rotation(mut conn: &AsyncPgConnection, r: &Rotation<'_>) -> QueryResult<()> {
    let insert = diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(r.child_hash),
            refresh_tokens::session_id.eq(r.session_id),
            refresh_tokens::issued_at.eq(r.at),
            refresh_tokens::expires_at.eq(r.child_expires_at),
        ))
        .execute(&mut conn);
    let mark = Cached(diesel::update(refresh_tokens::table.find(r.parent_hash)).set((
        refresh_tokens::rotated_at.eq(r.at),
        refresh_tokens::successor_sealed.eq(r.successor_sealed),
    )))
    .execute(&mut conn);
    let forget = Cached(
        diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::session_id.eq(r.session_id))
                .filter(refresh_tokens::rotated_at.lt(r.grace_cutoff))
                .filter(refresh_tokens::successor_sealed.is_not_null()),
        )
        .set(refresh_tokens::successor_sealed.eq(None::<Vec<u8>>)),
    )
    .execute(&mut conn);
    let touch = Cached(diesel::update(sessions::table.find(r.session_id)).set((
        sessions::last_used_at.eq(r.at),
        sessions::expires_at.eq(r.child_expires_at),
    )))
    .execute(&mut conn);
    tokio::try_join!(insert, mark, forget, touch).map(drop)
}

/// Forgets every token of a session (a password change re-keys the session).
pub async fn delete_for_session(conn: &mut AsyncPgConnection, session_id: Uuid) -> QueryResult<usize> {
    diesel::delete(refresh_tokens::table.filter(refresh_tokens::session_id.eq(session_id)))
        .execute(conn)
        .await
}
