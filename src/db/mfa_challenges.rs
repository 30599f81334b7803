//! Queries on `mfa_challenges`: sign-ins waiting for their second factor.

use chrono::{DateTime, Utc};
use diesel::{pg::Pg, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::mfa_challenges;

/// A row of `mfa_challenges`.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = mfa_challenges, check_for_backend(Pg))]
pub struct Challenge {
    /// SHA-256 of the mfaToken.
    pub token_hash: Vec<u8>,
    /// Who is signing in.
    pub user_id: Uuid,
    /// The methods of the first step.
    pub amr: Vec<Option<String>>,
    /// When the first step succeeded.
    pub created_at: DateTime<Utc>,
    /// When the mfaToken stops working.
    pub expires_at: DateTime<Utc>,
}

/// Stores a challenge, deleting the user's expired ones on the way.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    user_id: Uuid,
    amr: &[String],
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::delete(mfa_challenges::table)
        .filter(mfa_challenges::user_id.eq(user_id))
        .filter(mfa_challenges::expires_at.le(diesel::dsl::now))
        .execute(conn)
        .await?;
    diesel::insert_into(mfa_challenges::table)
        .values((
            mfa_challenges::token_hash.eq(token_hash),
            mfa_challenges::user_id.eq(user_id),
            mfa_challenges::amr.eq(amr),
            mfa_challenges::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// A live (unexpired) challenge by token hash.
pub async fn find_live(conn: &mut AsyncPgConnection, token_hash: &[u8]) -> QueryResult<Option<Challenge>> {
    mfa_challenges::table
        .find(token_hash)
        .filter(mfa_challenges::expires_at.gt(diesel::dsl::now))
        .select(Challenge::as_select())
        .first(conn)
        .await
        .optional()
}

/// A live challenge, locked for the rest of the transaction: of two completions with
/// one token, the second waits and then finds it gone.
pub async fn lock_live(conn: &mut AsyncPgConnection, token_hash: &[u8]) -> QueryResult<Option<Challenge>> {
    mfa_challenges::table
        .find(token_hash)
        .filter(mfa_challenges::expires_at.gt(diesel::dsl::now))
        .for_update()
        .select(Challenge::as_select())
        .first(conn)
        .await
        .optional()
}

/// Deletes a challenge (it was completed).
pub async fn delete(conn: &mut AsyncPgConnection, token_hash: &[u8]) -> QueryResult<()> {
    diesel::delete(mfa_challenges::table.find(token_hash))
        .execute(conn)
        .await
        .map(drop)
}

/// Deletes every challenge of a user (factors reset or removed).
pub async fn delete_for_user(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<usize> {
    diesel::delete(mfa_challenges::table.filter(mfa_challenges::user_id.eq(user_id)))
        .execute(conn)
        .await
}
