//! Queries on `mfa_factors` and `recovery_codes`.

use chrono::{DateTime, Utc};
use diesel::{pg::Pg, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{mfa_factors, recovery_codes};

/// The only kind of factor so far.
pub const KIND_TOTP: &str = "TOTP";

/// A row of `mfa_factors`.
#[derive(Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = mfa_factors, check_for_backend(Pg))]
pub struct Factor {
    /// Its id (also the context its secret is sealed to).
    pub id: Uuid,
    /// Whose factor.
    pub user_id: Uuid,
    /// `TOTP`.
    pub kind: String,
    /// The secret under `MFA_ENCRYPTION_KEY`.
    pub secret_sealed: Vec<u8>,
    /// Enrollment time.
    pub created_at: DateTime<Utc>,
    /// When `confirmTotp` activated it; `None` while enrollment is pending.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Last accepted code.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Time step of the last accepted code.
    pub last_used_step: Option<i64>,
}

// The sealed secret stays out of Debug output.
impl std::fmt::Debug for Factor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Factor")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .field("confirmed_at", &self.confirmed_at)
            .finish_non_exhaustive()
    }
}

/// A factor about to be inserted (unconfirmed).
#[derive(Insertable)]
#[diesel(table_name = mfa_factors)]
pub struct NewFactor<'a> {
    /// Chosen by the caller: the sealed secret is bound to it.
    pub id: Uuid,
    /// Whose factor.
    pub user_id: Uuid,
    /// `TOTP`.
    pub kind: &'a str,
    /// The secret under `MFA_ENCRYPTION_KEY`.
    pub secret_sealed: &'a [u8],
}

/// Inserts an unconfirmed factor, replacing the user's other unconfirmed ones: an
/// abandoned enrollment leaves nothing behind.
pub async fn insert_pending(conn: &mut AsyncPgConnection, new: &NewFactor<'_>) -> QueryResult<()> {
    diesel::delete(mfa_factors::table)
        .filter(mfa_factors::user_id.eq(new.user_id))
        .filter(mfa_factors::confirmed_at.is_null())
        .execute(conn)
        .await?;
    diesel::insert_into(mfa_factors::table)
        .values(new)
        .execute(conn)
        .await
        .map(drop)
}

/// Whether the user has a confirmed factor: the one question behind `MFA_REQUIRED` and
/// the step-up rules.
pub async fn has_active(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        mfa_factors::table
            .filter(mfa_factors::user_id.eq(user_id))
            .filter(mfa_factors::confirmed_at.is_not_null()),
    ))
    .get_result(conn)
    .await
}

/// The user's confirmed factors, oldest first.
pub async fn list_active(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Vec<Factor>> {
    mfa_factors::table
        .filter(mfa_factors::user_id.eq(user_id))
        .filter(mfa_factors::confirmed_at.is_not_null())
        .order((mfa_factors::created_at.asc(), mfa_factors::id.asc()))
        .select(Factor::as_select())
        .load(conn)
        .await
}

/// The user's confirmed factors, locked for the rest of the transaction: concurrent
/// checks of one code queue here, so the second sees the first's step and refuses it.
pub async fn lock_active(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Vec<Factor>> {
    mfa_factors::table
        .filter(mfa_factors::user_id.eq(user_id))
        .filter(mfa_factors::confirmed_at.is_not_null())
        .order(mfa_factors::id.asc())
        .for_update()
        .select(Factor::as_select())
        .load(conn)
        .await
}

/// One factor of a user, confirmed or not, locked for the rest of the transaction.
pub async fn lock_owned(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    user_id: Uuid,
) -> QueryResult<Option<Factor>> {
    mfa_factors::table
        .find(id)
        .filter(mfa_factors::user_id.eq(user_id))
        .for_update()
        .select(Factor::as_select())
        .first(conn)
        .await
        .optional()
}

/// Records an accepted code: its step (never moving back) and the time.
pub async fn record_use(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    step: i64,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(mfa_factors::table.find(id))
        .set((
            mfa_factors::last_used_step.eq(step),
            mfa_factors::last_used_at.eq(at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Activates a factor with the step of the code that confirmed it.
pub async fn confirm(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    step: i64,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(mfa_factors::table.find(id))
        .set((
            mfa_factors::confirmed_at.eq(at),
            mfa_factors::last_used_step.eq(step),
            mfa_factors::last_used_at.eq(at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Deletes one factor of a user; answers whether it existed.
pub async fn delete_owned(conn: &mut AsyncPgConnection, id: Uuid, user_id: Uuid) -> QueryResult<bool> {
    diesel::delete(mfa_factors::table.find(id))
        .filter(mfa_factors::user_id.eq(user_id))
        .execute(conn)
        .await
        .map(|n| n > 0)
}

/// Deletes every factor of a user (operator reset); answers how many.
pub async fn delete_all(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<usize> {
    diesel::delete(mfa_factors::table.filter(mfa_factors::user_id.eq(user_id)))
        .execute(conn)
        .await
}

/// Replaces the user's recovery codes with these hashes.
pub async fn replace_recovery_codes(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    hashes: &[[u8; 32]],
) -> QueryResult<()> {
    delete_recovery_codes(conn, user_id).await?;
    let rows: Vec<_> = hashes
        .iter()
        .map(|hash| {
            (
                recovery_codes::user_id.eq(user_id),
                recovery_codes::code_hash.eq(hash.as_slice()),
            )
        })
        .collect();
    diesel::insert_into(recovery_codes::table)
        .values(rows)
        .execute(conn)
        .await
        .map(drop)
}

/// Deletes every recovery code of a user; answers how many.
pub async fn delete_recovery_codes(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<usize> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id)))
        .execute(conn)
        .await
}

/// Uses up an unused recovery code atomically; answers whether there was one.
pub async fn use_recovery_code(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    hash: &[u8],
) -> QueryResult<bool> {
    diesel::update(recovery_codes::table.find((user_id, hash)))
        .filter(recovery_codes::used_at.is_null())
        .set(recovery_codes::used_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|n| n > 0)
}

/// How many unused recovery codes a user has.
pub async fn recovery_codes_left(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<i64> {
    recovery_codes::table
        .filter(recovery_codes::user_id.eq(user_id))
        .filter(recovery_codes::used_at.is_null())
        .count()
        .get_result(conn)
        .await
}
