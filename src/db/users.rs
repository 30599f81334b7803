//! Queries on `users`, and the two types the whole service names an account by:
//! [`Account`] and [`Role`]. They live here because queries return them; `auth`
//! re-exports them, and the layers above name them from there. The password hash is no
//! field of [`Account`]: only the password checks read it, through the two functions
//! that say so ([`find_for_sign_in`], [`password_hash`]).

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

use super::{cached::Cached, schema::users};

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

/// The columns of [`Account`] in its field order, for hand-written SQL on hot paths that
/// names `users` as `u` (constant SQL: see `sessions::LiveOwner`); a macro so `concat!`
/// can build whole statements from it.
macro_rules! account_columns {
    () => {
        "u.id, u.email, (u.password_hash is not null and u.password_hash <> ''), \
         u.display_name, u.role, u.email_verified_at, u.created_at, u.updated_at, u.disabled_at"
    };
}
pub(crate) use account_columns;

/// The SQL types of [`account_columns`].
pub type AccountColumns = (
    diesel::sql_types::Uuid,
    diesel::sql_types::Nullable<Text>,
    diesel::sql_types::Bool,
    diesel::sql_types::Nullable<Text>,
    Text,
    diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
    diesel::sql_types::Timestamptz,
    diesel::sql_types::Timestamptz,
    diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
);

/// An account, as every layer sees it.
#[derive(Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(Pg))]
pub struct Account {
    /// Opaque random id.
    pub id: Uuid,
    /// Normalised email address; none for an account made from a provider identity
    /// whose email was not trusted.
    pub email: Option<String>,
    /// Whether it has a password (a hash, not empty): an account that signs in only
    /// through providers has none. The hash itself stays in storage ([`password_hash`]).
    /// Built from query-builder parts, not an SQL literal: a literal makes the query
    /// uncacheable, so every request would prepare (and PostgreSQL plan) it again.
    #[diesel(select_expression = users::password_hash
        .is_not_null()
        .and(users::password_hash.assume_not_null().ne("")))]
    #[diesel(select_expression_type = diesel::dsl::And<
        diesel::dsl::IsNotNull<users::password_hash>,
        diesel::dsl::NotEq<diesel::dsl::AssumeNotNull<users::password_hash>, &'static str>,
    >)]
    pub has_password: bool,
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
    /// Set by `disableUser`: sign-in is refused while it is.
    pub disabled_at: Option<DateTime<Utc>>,
}

// The email stays out of every Debug output, so a stray `?user` in a log line does not
// leak it.
impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A user about to be inserted.
#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    /// Chosen by the caller, so rows referring to the user can go in the same round trip.
    pub id: Uuid,
    /// Normalised email address.
    pub email: &'a str,
    /// argon2id PHC string.
    pub password_hash: &'a str,
    /// Optional display name.
    pub display_name: Option<&'a str>,
}

/// Inserts a user; a taken email fails with a unique violation on `users_email_key`.
/// Takes a shared reference so the rows that refer to the user can be pipelined after it.
pub async fn insert(mut conn: &AsyncPgConnection, new: &NewUser<'_>) -> QueryResult<Account> {
    Cached(
        diesel::insert_into(users::table)
            .values(new)
            .returning(Account::as_returning()),
    )
    .get_result(&mut conn)
    .await
}

/// Inserts an account made from a provider identity: no password, and an email only
/// when the provider is trusted and verified it (so it counts as verified); a taken
/// email fails with a unique violation on `users_email_key`.
pub async fn insert_social(
    conn: &mut AsyncPgConnection,
    verified_email: Option<&str>,
    display_name: Option<&str>,
) -> QueryResult<Account> {
    diesel::insert_into(users::table)
        .values((
            users::email.eq(verified_email),
            users::email_verified_at.eq(verified_email.map(|_| Utc::now())),
            users::display_name.eq(display_name),
        ))
        .returning(Account::as_returning())
        .get_result(conn)
        .await
}

/// Finds a user by id and locks the row for the rest of the transaction (changes to
/// the user's sign-in methods take it, so they happen one at a time).
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Account>> {
    users::table
        .find(id)
        .for_update()
        .select(Account::as_select())
        .first(conn)
        .await
        .optional()
}

/// Finds a user by normalised email.
pub async fn find_by_email(conn: &mut AsyncPgConnection, email: &str) -> QueryResult<Option<Account>> {
    users::table
        .filter(users::email.eq(email))
        .select(Account::as_select())
        .first(conn)
        .await
        .optional()
}

/// A user by email with their stored password hash (an argon2id PHC string; none for
/// an account without a password) and whether they have a confirmed second factor: what
/// a sign-in needs to know, in one query. The hash is for the login check only.
/// Takes a shared reference so login can pipeline its attempt count with it.
pub async fn find_for_sign_in(
    mut conn: &AsyncPgConnection,
    email: &str,
) -> QueryResult<Option<(Account, Option<String>, bool)>> {
    use super::schema::mfa_factors;
    let has_factor = diesel::dsl::exists(
        mfa_factors::table
            .filter(mfa_factors::user_id.eq(users::id))
            .filter(mfa_factors::confirmed_at.is_not_null()),
    );
    users::table
        .filter(users::email.eq(email))
        .select((Account::as_select(), users::password_hash, has_factor))
        .first(&mut conn)
        .await
        .optional()
}

/// The stored password hash of a user (none: no such user, or no password): for the
/// checks of the caller's own password only.
pub async fn password_hash(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<String>> {
    users::table
        .find(id)
        .select(users::password_hash)
        .first::<Option<String>>(conn)
        .await
        .optional()
        .map(Option::flatten)
}

/// Finds a user by id.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Account>> {
    users::table
        .find(id)
        .select(Account::as_select())
        .first(conn)
        .await
        .optional()
}

/// Finds every user whose id is listed, in one query.
pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Account>> {
    users::table
        .filter(users::id.eq_any(ids))
        .select(Account::as_select())
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
) -> QueryResult<Account> {
    diesel::update(users::table.find(id))
        .set((
            users::display_name.eq(display_name),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Account::as_returning())
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

diesel::define_sql_function! {
    /// SQL `lower`, for the display-name prefix index.
    fn lower(x: diesel::sql_types::Nullable<Text>) -> diesel::sql_types::Nullable<Text>;
}

/// `prefix` as a LIKE pattern matching what starts with it (wildcards escaped).
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn searched(search: Option<&str>) -> users::BoxedQuery<'static, Pg> {
    let mut query = users::table.into_boxed();
    if let Some(search) = search {
        // Emails are stored lowercased; names are matched through `lower(display_name)`.
        let pattern = prefix_pattern(&search.to_lowercase());
        query = query.filter(
            users::email
                .like(pattern.clone())
                .or(lower(users::display_name).like(pattern)),
        );
    }
    query
}

/// Up to `limit` users in (created_at, id) order after the cursor `after`, whose email
/// or display name starts with `search` (case-insensitive).
pub async fn page(
    conn: &mut AsyncPgConnection,
    search: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<Account>> {
    let mut query = searched(search);
    if let Some((at, id)) = after {
        // A row comparison, not `a > x or (a = x and b > y)`: PostgreSQL turns only this
        // form into an index range (0.06 ms against 430 ms at a million users).
        query = query.filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("(users.created_at, users.id) > (")
                .bind::<diesel::sql_types::Timestamptz, _>(at)
                .sql(", ")
                .bind::<diesel::sql_types::Uuid, _>(id)
                .sql(")"),
        );
    }
    query
        .order((users::created_at.asc(), users::id.asc()))
        .limit(limit)
        .select(Account::as_select())
        .load(conn)
        .await
}

/// How many users `page` would walk through for `search`.
pub async fn count(conn: &mut AsyncPgConnection, search: Option<&str>) -> QueryResult<i64> {
    searched(search).count().get_result(conn).await
}

/// Locks every enabled admin and answers their ids: role and disable changes take this
/// lock first, so two admins demoting each other at once cannot both succeed.
pub async fn lock_active_admins(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Uuid>> {
    users::table
        .filter(users::role.eq(Role::Admin))
        .filter(users::disabled_at.is_null())
        .order(users::id)
        .select(users::id)
        .for_update()
        .load(conn)
        .await
}

/// Sets or clears `disabled_at`; answers the updated row.
pub async fn set_disabled(conn: &mut AsyncPgConnection, id: Uuid, disabled: bool) -> QueryResult<Account> {
    let at = disabled.then(Utc::now);
    diesel::update(users::table.find(id))
        .set((users::disabled_at.eq(at), users::updated_at.eq(diesel::dsl::now)))
        .returning(Account::as_returning())
        .get_result(conn)
        .await
}

/// Sets the role of a user by id; answers the updated row.
pub async fn set_role_of(conn: &mut AsyncPgConnection, id: Uuid, role: Role) -> QueryResult<Account> {
    diesel::update(users::table.find(id))
        .set((users::role.eq(role), users::updated_at.eq(diesel::dsl::now)))
        .returning(Account::as_returning())
        .get_result(conn)
        .await
}

/// Users whose stored email holds anything but printable ASCII, oldest first: the only
/// rows whose spelling Unicode normalisation can change.
pub async fn with_non_ascii_email(conn: &mut AsyncPgConnection) -> QueryResult<Vec<(Uuid, String)>> {
    let rows: Vec<(Uuid, Option<String>)> = users::table
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>("email ~ '[^ -~]'"))
        .order(users::created_at.asc())
        .select((users::id, users::email))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, email)| Some((id, email?)))
        .collect())
}

/// Rewrites the stored email of a user; a taken address fails with a unique violation
/// on `users_email_key`.
pub async fn set_email(conn: &mut AsyncPgConnection, id: Uuid, email: &str) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((users::email.eq(email), users::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await
}

#[cfg(test)]
mod tests;
