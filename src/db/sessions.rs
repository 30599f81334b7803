//! Queries on `sessions`.

use chrono::{DateTime, Utc};
use diesel::{
    pg::Pg,
    prelude::*,
    query_builder::{AstPass, Query, QueryFragment, QueryId},
    sql_types::Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::cached::Cached;
use super::schema::{refresh_tokens, sessions};
use super::users::{Account, account_columns};

/// A row of `sessions`.
#[derive(Clone, Debug, Queryable, Selectable, Identifiable)]
#[diesel(table_name = sessions, check_for_backend(Pg))]
pub struct Session {
    /// The `sid` of its access tokens.
    pub id: Uuid,
    /// Whose session.
    pub user_id: Uuid,
    /// The client that logged in.
    pub user_agent: Option<String>,
    /// Login time.
    pub created_at: DateTime<Utc>,
    /// Last login or refresh.
    pub last_used_at: DateTime<Utc>,
    /// Expiry of the current refresh token.
    pub expires_at: DateTime<Utc>,
    /// Hard end of the session.
    pub absolute_expires_at: DateTime<Utc>,
    /// Set when the session was ended.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Why it was ended.
    pub revoked_reason: Option<String>,
    /// RFC 8176 methods the session was authenticated with (`pwd`, `otp`, `mfa`, ...).
    pub amr: Vec<Option<String>>,
    /// `aal1` or `aal2`.
    pub acr: String,
    /// The last active authentication: sign-in or step-up.
    pub auth_time: DateTime<Utc>,
}

/// A session about to be inserted.
#[derive(Insertable)]
#[diesel(table_name = sessions)]
pub struct NewSession<'a> {
    /// Chosen by the caller, so the first refresh token can be written with the session.
    pub id: Uuid,
    /// Whose session.
    pub user_id: Uuid,
    /// The client that logged in, truncated.
    pub user_agent: Option<&'a str>,
    /// Login time (the application's clock, which also computes the expiries).
    pub created_at: DateTime<Utc>,
    /// Same as `created_at`.
    pub last_used_at: DateTime<Utc>,
    /// Expiry of the first refresh token.
    pub expires_at: DateTime<Utc>,
    /// Hard end of the session.
    pub absolute_expires_at: DateTime<Utc>,
    /// RFC 8176 methods of the sign-in.
    pub amr: Vec<String>,
    /// `aal1` or `aal2`.
    pub acr: &'a str,
    /// The sign-in time as its tokens claim it.
    pub auth_time: DateTime<Utc>,
}

/// Inserts a session and its first refresh token, pipelined: one round trip. Takes a
/// shared reference so the caller can pipeline more statements with them.
pub async fn open(
    conn: &AsyncPgConnection,
    new: &NewSession<'_>,
    token_hash: &[u8],
    token_expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    let mut conn = conn;
    let session = Cached(diesel::insert_into(sessions::table).values(new)).execute(&mut conn);
    let token = diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(token_hash),
            refresh_tokens::session_id.eq(new.id),
            refresh_tokens::expires_at.eq(token_expires_at),
        ))
        .execute(&mut conn);
    tokio::try_join!(session, token).map(drop)
}

/// The owner of a live session (not revoked, not expired) when it belongs to `user_id`:
/// the one query behind every authenticated request.
pub async fn find_live_owner(
    mut conn: &AsyncPgConnection,
    session_id: Uuid,
    user_id: Uuid,
) -> QueryResult<Option<Account>> {
    LiveOwner { session_id, user_id }
        .get_result(&mut conn)
        .await
        .optional()
}

/// [`find_live_owner`]'s query, with constant SQL: diesel-async renders a query-builder
/// query's SQL again on every execution (to find its cached statement), and this one
/// runs on every authenticated request. No `LIMIT` either: the session id is unique.
#[derive(Clone, Copy, Debug)]
struct LiveOwner {
    session_id: Uuid,
    user_id: Uuid,
}

/// The columns of [`Account`], in its field order, then the conditions, around the
/// session id and the user id. `disableUser` ends the sessions too; the last condition
/// covers a sign-in racing it.
const LIVE_OWNER: [&str; 3] = [
    concat!(
        "select ",
        account_columns!(),
        " from sessions s join users u on u.id = s.user_id where s.id = "
    ),
    " and s.user_id = ",
    " and s.revoked_at is null and s.expires_at > now() and s.absolute_expires_at > now() \
     and u.disabled_at is null",
];

impl QueryFragment<Pg> for LiveOwner {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(LIVE_OWNER[0]);
        out.push_bind_param::<SqlUuid, _>(&self.session_id)?;
        out.push_sql(LIVE_OWNER[1]);
        out.push_bind_param::<SqlUuid, _>(&self.user_id)?;
        out.push_sql(LIVE_OWNER[2]);
        Ok(())
    }
}

impl QueryId for LiveOwner {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for LiveOwner {
    type SqlType = super::users::AccountColumns;
}

/// The live sessions of a user, newest first.
pub async fn list_live(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Vec<Session>> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(diesel::dsl::now))
        .filter(sessions::absolute_expires_at.gt(diesel::dsl::now))
        .order(sessions::created_at.desc())
        .select(Session::as_select())
        .load(conn)
        .await
}

/// Ends every live session of a user (password reset, account events); answers how many.
pub async fn revoke_all_for_user(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    reason: &str,
) -> QueryResult<usize> {
    diesel::update(sessions::table)
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .set((
            sessions::revoked_at.eq(diesel::dsl::now),
            sessions::revoked_reason.eq(reason),
        ))
        .execute(conn)
        .await
}

/// Locks a session row for the rest of the transaction: every refresh of one session
/// queues here, on every replica.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Session>> {
    sessions::table
        .find(id)
        .for_update()
        .select(Session::as_select())
        .first(conn)
        .await
        .optional()
}

/// Records a refresh: new last use and the new token's expiry.
pub async fn touch(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(sessions::table.find(id))
        .set((sessions::last_used_at.eq(at), sessions::expires_at.eq(expires_at)))
        .execute(conn)
        .await
        .map(drop)
}

/// Ends one session if still live; answers whether it did.
pub async fn revoke(conn: &mut AsyncPgConnection, id: Uuid, reason: &str) -> QueryResult<bool> {
    diesel::update(sessions::table.find(id))
        .filter(sessions::revoked_at.is_null())
        .set((
            sessions::revoked_at.eq(diesel::dsl::now),
            sessions::revoked_reason.eq(reason),
        ))
        .execute(conn)
        .await
        .map(|n| n > 0)
}

/// Ends one session of `user_id` if it is live; answers whether it did.
pub async fn revoke_owned(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    user_id: Uuid,
    reason: &str,
) -> QueryResult<bool> {
    diesel::update(sessions::table.find(id))
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(diesel::dsl::now))
        .filter(sessions::absolute_expires_at.gt(diesel::dsl::now))
        .set((
            sessions::revoked_at.eq(diesel::dsl::now),
            sessions::revoked_reason.eq(reason),
        ))
        .execute(conn)
        .await
        .map(|n| n > 0)
}

/// Ends every live session of a user but one.
pub async fn revoke_all_except(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    keep: Uuid,
    reason: &str,
) -> QueryResult<usize> {
    diesel::update(sessions::table)
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::id.ne(keep))
        .filter(sessions::revoked_at.is_null())
        .set((
            sessions::revoked_at.eq(diesel::dsl::now),
            sessions::revoked_reason.eq(reason),
        ))
        .execute(conn)
        .await
}

/// Records a step-up (or a first factor confirmed) in a session: its new methods, level
/// and authentication time, which its next tokens claim.
pub async fn set_assurance(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    amr: &[String],
    acr: &str,
    auth_time: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(sessions::table.find(id))
        .set((
            sessions::amr.eq(amr),
            sessions::acr.eq(acr),
            sessions::auth_time.eq(auth_time),
        ))
        .execute(conn)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests;
