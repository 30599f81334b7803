//! Queries on `email_tokens`: single-use verification and reset tokens, by hash.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::email_tokens;

/// What a mailed token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Proves an email address (`verifyEmail`).
    VerifyEmail,
    /// Sets a new password (`resetPassword`).
    ResetPassword,
}

impl Purpose {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

/// Stores a new token of `purpose` for a user and deletes every older one of the same
/// purpose (and any expired token of the user), so only the newest works.
pub async fn replace(
    conn: &AsyncPgConnection,
    token_hash: &[u8],
    user_id: Uuid,
    purpose: Purpose,
    email: &str,
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    // Pipelined: PostgreSQL runs the delete before the insert.
    let (mut forget_conn, mut insert_conn) = (conn, conn);
    let forget = diesel::delete(
        email_tokens::table
            .filter(email_tokens::user_id.eq(user_id))
            .filter(
                email_tokens::purpose
                    .eq(purpose.as_str())
                    .or(email_tokens::expires_at.le(diesel::dsl::now)),
            ),
    )
    .execute(&mut forget_conn);
    let insert = diesel::insert_into(email_tokens::table)
        .values((
            email_tokens::token_hash.eq(token_hash),
            email_tokens::user_id.eq(user_id),
            email_tokens::purpose.eq(purpose.as_str()),
            email_tokens::email.eq(email),
            email_tokens::expires_at.eq(expires_at),
        ))
        .execute(&mut insert_conn);
    tokio::try_join!(forget, insert).map(drop)
}

/// Whether a live token of `purpose` has this hash (a read, consuming nothing).
pub async fn is_live(conn: &mut AsyncPgConnection, token_hash: &[u8], purpose: Purpose) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        email_tokens::table
            .filter(email_tokens::token_hash.eq(token_hash))
            .filter(email_tokens::purpose.eq(purpose.as_str()))
            .filter(email_tokens::expires_at.gt(diesel::dsl::now)),
    ))
    .get_result(conn)
    .await
}

/// Uses a token up: deletes it and answers its user and address when it was live and
/// of `purpose`. One statement, so two concurrent uses cannot both succeed.
pub async fn consume(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    purpose: Purpose,
) -> QueryResult<Option<(Uuid, String)>> {
    diesel::delete(
        email_tokens::table
            .filter(email_tokens::token_hash.eq(token_hash))
            .filter(email_tokens::purpose.eq(purpose.as_str()))
            .filter(email_tokens::expires_at.gt(diesel::dsl::now)),
    )
    .returning((email_tokens::user_id, email_tokens::email))
    .get_result(conn)
    .await
    .optional()
}

/// Deletes every token of a user with `purpose` (a reset voids pending verifications).
pub async fn delete_for_user(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    purpose: Purpose,
) -> QueryResult<usize> {
    diesel::delete(
        email_tokens::table
            .filter(email_tokens::user_id.eq(user_id))
            .filter(email_tokens::purpose.eq(purpose.as_str())),
    )
    .execute(conn)
    .await
}
