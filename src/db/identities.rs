//! Queries on `identities`: provider identities linked to accounts.

use chrono::{DateTime, Utc};
use diesel::{pg::Pg, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::identities;

/// A row of `identities`.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = identities, check_for_backend(Pg))]
pub struct Identity {
    /// Opaque random id (for `unlinkIdentity`).
    pub id: Uuid,
    /// The account it signs in to.
    pub user_id: Uuid,
    /// The configured provider id.
    pub provider: String,
    /// The provider's stable id of the person.
    pub subject: String,
    /// The email the provider reported when it was linked (display only).
    pub email: Option<String>,
    /// When it was linked.
    pub linked_at: DateTime<Utc>,
}

// The subject and email stay out of Debug output: they identify a person.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// An identity about to be linked.
#[derive(Insertable)]
#[diesel(table_name = identities)]
pub struct NewIdentity<'a> {
    /// Opaque random id.
    pub id: Uuid,
    /// The account.
    pub user_id: Uuid,
    /// The configured provider id.
    pub provider: &'a str,
    /// The provider's stable id of the person.
    pub subject: &'a str,
    /// The provider's email, if any.
    pub email: Option<&'a str>,
}

/// Links an identity; one already linked (to anyone) fails with a unique violation on
/// `identities_provider_subject_key`.
pub async fn insert(conn: &mut AsyncPgConnection, new: &NewIdentity<'_>) -> QueryResult<Identity> {
    diesel::insert_into(identities::table)
        .values(new)
        .returning(Identity::as_returning())
        .get_result(conn)
        .await
}

/// The identity a provider knows by `subject`, if it is linked.
pub async fn find(
    conn: &mut AsyncPgConnection,
    provider: &str,
    subject: &str,
) -> QueryResult<Option<Identity>> {
    identities::table
        .filter(identities::provider.eq(provider))
        .filter(identities::subject.eq(subject))
        .select(Identity::as_select())
        .first(conn)
        .await
        .optional()
}

/// The identities of a user, oldest first.
pub async fn list(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Vec<Identity>> {
    identities::table
        .filter(identities::user_id.eq(user_id))
        .order((identities::linked_at.asc(), identities::id.asc()))
        .select(Identity::as_select())
        .load(conn)
        .await
}

/// How many identities a user has.
pub async fn count(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<i64> {
    identities::table
        .filter(identities::user_id.eq(user_id))
        .count()
        .get_result(conn)
        .await
}

/// Deletes one identity of `user_id`; answers whether there was one.
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid, user_id: Uuid) -> QueryResult<bool> {
    diesel::delete(identities::table.find(id).filter(identities::user_id.eq(user_id)))
        .execute(conn)
        .await
        .map(|n| n > 0)
}
