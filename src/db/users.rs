//! Queries on `users`.

use chrono::{DateTime, Utc};
use diesel::{
    deserialize::{self, FromSql, FromSqlRow},
    expression::AsExpression,
    pg::{Pg, PgValue},
    prelude::*,
    serialize::{self, Output, ToSql},
    sql_types::Text,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::users;

/// What a user may do beyond their own account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum Role {
    /// A regular account.
    User,
    /// May read every user's private fields.
    Admin,
}

impl Role {
    /// The stored (and GraphQL) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "USER",
            Self::Admin => "ADMIN",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "USER" => Some(Self::User),
            "ADMIN" => Some(Self::Admin),
            _ => None,
        }
    }
}

impl ToSql<Text, Pg> for Role {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for Role {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let s = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        Self::parse(&s).ok_or_else(|| format!("unknown role `{s}`").into())
    }
}

/// A row of `users`.
#[derive(Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(Pg))]
pub struct User {
    /// Opaque random id.
    pub id: Uuid,
    /// Normalised email address; none for an account made from a provider identity
    /// whose email was not trusted.
    pub email: Option<String>,
    /// argon2id PHC string; none for an account that signs in only through providers.
    pub password_hash: Option<String>,
    /// Optional name shown to others.
    pub display_name: Option<String>,
    /// USER or ADMIN.
    pub role: Role,
    /// When the address was proven.
    pub email_verified_at: Option<DateTime<Utc>>,
    /// Row creation.
    pub created_at: DateTime<Utc>,
    /// Last profile change.
    pub updated_at: DateTime<Utc>,
}

// The email and the hash stay out of every Debug output, so a stray `?user` in a log
// line leaks neither.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A user about to be inserted.
#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    /// Normalised email address.
    pub email: &'a str,
    /// argon2id PHC string.
    pub password_hash: &'a str,
    /// Optional display name.
    pub display_name: Option<&'a str>,
}

/// Inserts a user; a taken email fails with a unique violation on `users_email_key`.
pub async fn insert(conn: &mut AsyncPgConnection, new: &NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(new)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// Inserts an account made from a provider identity: no password, and an email only
/// when the provider is trusted and verified it (so it counts as verified); a taken
/// email fails with a unique violation on `users_email_key`.
pub async fn insert_social(
    conn: &mut AsyncPgConnection,
    verified_email: Option<&str>,
    display_name: Option<&str>,
) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values((
            users::email.eq(verified_email),
            users::email_verified_at.eq(verified_email.map(|_| Utc::now())),
            users::display_name.eq(display_name),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// Finds a user by id and locks the row for the rest of the transaction (changes to
/// the user's sign-in methods take it, so they happen one at a time).
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .for_update()
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Finds a user by normalised email.
pub async fn find_by_email(conn: &mut AsyncPgConnection, email: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::email.eq(email))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Finds a user by id.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Finds every user whose id is listed, in one query.
pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<User>> {
    users::table
        .filter(users::id.eq_any(ids))
        .select(User::as_select())
        .load(conn)
        .await
}

/// Sets the role of the user with this normalised email; answers how many rows changed.
pub async fn set_role(conn: &mut AsyncPgConnection, email: &str, role: Role) -> QueryResult<usize> {
    diesel::update(users::table.filter(users::email.eq(email)))
        .set((users::role.eq(role), users::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await
}

diesel::define_sql_function! {
    /// `coalesce(email_verified_at, now())`: keeps the first verification time.
    #[sql_name = "coalesce"]
    fn verified_since(
        at: diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        now: diesel::sql_types::Timestamptz,
    ) -> diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>;
}

/// Marks the address of a user verified, if it is still `email`; answers how many rows
/// changed (0: no such user, or the address changed since the token was mailed).
pub async fn mark_email_verified(conn: &mut AsyncPgConnection, id: Uuid, email: &str) -> QueryResult<usize> {
    diesel::update(users::table.find(id).filter(users::email.eq(email)))
        .set((
            users::email_verified_at.eq(verified_since(users::email_verified_at, diesel::dsl::now)),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
}

/// Sets or clears the display name; answers the updated row.
pub async fn set_display_name(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    display_name: Option<&str>,
) -> QueryResult<User> {
    diesel::update(users::table.find(id))
        .set((
            users::display_name.eq(display_name),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// Replaces the password hash.
pub async fn set_password_hash(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    password_hash: &str,
) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set((
            users::password_hash.eq(password_hash),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Deletes a user; sessions and tokens go with it (foreign keys cascade).
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    diesel::delete(users::table.find(id))
        .execute(conn)
        .await
        .map(|n| n > 0)
}
