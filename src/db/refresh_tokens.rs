//! Queries on `refresh_tokens`.

use chrono::{DateTime, Utc};
use diesel::{
    pg::Pg,
    prelude::*,
    query_builder::{AstPass, Query, QueryFragment, QueryId},
    sql_types::{Array, Bytea, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{refresh_token_successors, refresh_tokens};
use super::sessions::Session;
use super::users::{Account, AccountColumns, account_columns};

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

/// What a refresh reads before it decides: see [`lock_for_rotation`].
pub struct ForRotation {
    /// The token's session, locked.
    pub session: Session,
    /// The token, locked.
    pub token: RefreshToken,
    /// The session's owner.
    pub owner: Account,
    /// Until when the throttle key passed in waits, if it does.
    pub locked_until: Option<DateTime<Utc>>,
}

/// Locks a refresh token and its session for the rest of the transaction, and reads
/// both with the session's owner and how long `throttle_key` waits: one statement, so a
/// refresh's reads are one executor run and one row. Every refresh of one session queues
/// on the session's row, on every replica.
///
/// Both rows are locked (`FOR UPDATE OF s, t`), not only the session: a refresh that
/// waited for a concurrent one then reads the latest version of both locked rows, so it
/// sees the token that one just rotated. With the session alone locked it would read
/// the token as its snapshot from before the wait had it, and rotate it a second time.
/// An unknown token has no row, and so no wait: the caller reads that on its own.
pub async fn lock_for_rotation(
    mut conn: &AsyncPgConnection,
    token_hash: &[u8],
    throttle_key: Option<&str>,
) -> QueryResult<Option<ForRotation>> {
    LockForRotation {
        token_hash,
        throttle_key,
    }
    .get_result::<(Session, RefreshToken, Account, Option<DateTime<Utc>>)>(&mut conn)
    .await
    .optional()
    .map(|row| {
        row.map(|(session, token, owner, locked_until)| ForRotation {
            session,
            token,
            owner,
            locked_until,
        })
    })
}

/// [`lock_for_rotation`]'s statement, with constant SQL (prepared once per connection,
/// never rendered again). The columns follow the field order of [`Session`],
/// [`RefreshToken`] and [`Account`].
struct LockForRotation<'a> {
    token_hash: &'a [u8],
    throttle_key: Option<&'a str>,
}

const LOCK_FOR_ROTATION: [&str; 3] = [
    concat!(
        "select s.id, s.user_id, s.user_agent, s.created_at, s.last_used_at, s.expires_at, \
         s.absolute_expires_at, s.revoked_at, s.revoked_reason, s.amr, s.acr, s.auth_time, \
         t.token_hash, t.session_id, t.issued_at, t.expires_at, t.rotated_at, ",
        account_columns!(),
        ", (select c.locked_until from throttle_counters c where c.key = "
    ),
    ") from refresh_tokens t join sessions s on s.id = t.session_id \
     join users u on u.id = s.user_id where t.token_hash = ",
    " for update of s, t",
];

impl QueryFragment<Pg> for LockForRotation<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(LOCK_FOR_ROTATION[0]);
        out.push_bind_param::<Nullable<Text>, _>(&self.throttle_key)?;
        out.push_sql(LOCK_FOR_ROTATION[1]);
        out.push_bind_param::<Bytea, _>(&self.token_hash)?;
        out.push_sql(LOCK_FOR_ROTATION[2]);
        Ok(())
    }
}

impl QueryId for LockForRotation<'_> {
    type QueryId = LockForRotation<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for LockForRotation<'_> {
    type SqlType = (
        (
            SqlUuid,
            SqlUuid,
            Nullable<Text>,
            Timestamptz,
            Timestamptz,
            Timestamptz,
            Timestamptz,
            Nullable<Timestamptz>,
            Nullable<Text>,
            Array<Nullable<Text>>,
            Text,
            Timestamptz,
        ),
        (Bytea, SqlUuid, Timestamptz, Timestamptz, Nullable<Timestamptz>),
        AccountColumns,
        Nullable<Timestamptz>,
    );
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

/// Records a rotation: stores the child, marks the parent exchanged, keeps the parent's
/// sealed successor for the grace window, wipes the sealed successors whose window is
/// over and touches the session. One statement (the writes as data-modifying `with`
/// clauses, which see one snapshot: the wipe cannot reach the successor sealed in the
/// same statement, which is newer than its cut-off anyway), prepared once per
/// connection; a refresh sends it with its COMMIT (`db::pipelined`). The parent's mark
/// and the session's touch change no indexed column, so both are updates in place.
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
        out.push_sql(" where token_hash = ");
        out.push_bind_param::<Bytea, _>(&r.parent_hash)?;
        out.push_sql(
            "), seal as (insert into refresh_token_successors \
             (session_id, rotated_at, parent_hash, sealed) values (",
        );
        out.push_bind_param::<SqlUuid, _>(&r.session_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&r.at)?;
        out.push_sql(", ");
        out.push_bind_param::<Bytea, _>(&r.parent_hash)?;
        out.push_sql(", ");
        out.push_bind_param::<Bytea, _>(&r.successor_sealed)?;
        out.push_sql(")), forget as (delete from refresh_token_successors where session_id = ");
        out.push_bind_param::<SqlUuid, _>(&r.session_id)?;
        out.push_sql(" and rotated_at < ");
        out.push_bind_param::<Timestamptz, _>(&r.grace_cutoff)?;
        out.push_sql(") update sessions set last_used_at = ");
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

/// Forgets every token of a session, and their sealed successors (a password change
/// re-keys the session).
pub async fn delete_for_session(conn: &mut AsyncPgConnection, session_id: Uuid) -> QueryResult<usize> {
    diesel::delete(
        refresh_token_successors::table.filter(refresh_token_successors::session_id.eq(session_id)),
    )
    .execute(conn)
    .await?;
    diesel::delete(refresh_tokens::table.filter(refresh_tokens::session_id.eq(session_id)))
        .execute(conn)
        .await
}

/// The successor pair sealed under a rotated token, while its grace window keeps it. A
/// statement of its own, sent once the token's row is locked: it reads with a snapshot
/// taken after the lock was granted, so it finds the successor of a rotation that
/// committed while this refresh waited (the locking read itself sees only the rows it
/// locked as they are now). Only a token presented again takes this path. A token rotated
/// by a replica still on the previous release has its seal in `refresh_tokens`.
pub async fn sealed_successor(
    conn: &mut AsyncPgConnection,
    token: &RefreshToken,
) -> QueryResult<Option<Vec<u8>>> {
    let Some(rotated_at) = token.rotated_at else {
        return Ok(None);
    };
    let sealed = refresh_token_successors::table
        .find((token.session_id, rotated_at, &token.token_hash))
        .select(refresh_token_successors::sealed)
        .first::<Vec<u8>>(conn)
        .await
        .optional()?;
    if sealed.is_some() {
        return Ok(sealed);
    }
    refresh_tokens::table
        .find(&token.token_hash)
        .select(refresh_tokens::successor_sealed)
        .first::<Option<Vec<u8>>>(conn)
        .await
        .optional()
        .map(Option::flatten)
}
