//! The ways a user can sign in, counted in one place: removing one (a passkey, a linked
//! identity) must leave at least one (`FORBIDDEN` otherwise).

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;

use crate::db::{self, users::Account};

/// What a user can sign in with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignInMethods {
    /// The account has a password.
    pub password: bool,
    /// How many passkeys it has.
    pub passkeys: i64,
    /// How many social identities are linked to it.
    pub identities: i64,
}

impl SignInMethods {
    /// How many ways to sign in are left.
    pub fn count(&self) -> i64 {
        i64::from(self.password) + self.passkeys + self.identities
    }
}

/// The sign-in methods of `user`, read in the caller's transaction (which should hold
/// the user's row lock when it is about to remove one).
pub async fn of(conn: &mut AsyncPgConnection, user: &Account) -> QueryResult<SignInMethods> {
    Ok(SignInMethods {
        password: user.has_password,
        passkeys: db::passkeys::count(conn, user.id).await?,
        identities: db::identities::count(conn, user.id).await?,
    })
}
