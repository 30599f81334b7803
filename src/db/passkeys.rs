//! Queries on `passkeys` (a user's WebAuthn credentials) and `passkey_ceremonies` (begun
//! registrations and sign-ins waiting for their finish).

use chrono::{DateTime, Utc};
use diesel::{pg::Pg, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    schema::{passkey_ceremonies, passkeys, users},
    users::Account,
};

/// `passkey_ceremonies.kind` of a registration.
pub const KIND_REGISTRATION: &str = "registration";
/// `passkey_ceremonies.kind` of a sign-in.
pub const KIND_AUTHENTICATION: &str = "authentication";

/// A row of `passkeys`.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = passkeys, check_for_backend(Pg))]
pub struct Passkey {
    /// Our id (the GraphQL `Passkey.id`).
    pub id: Uuid,
    /// The owner.
    pub user_id: Uuid,
    /// The authenticator's credential id.
    pub credential_id: Vec<u8>,
    /// webauthn-rs's `Credential`, as JSON.
    pub credential: String,
    /// The name the user gave it.
    pub name: Option<String>,
    /// The last signature counter seen.
    pub sign_count: i64,
    /// Synced (backup eligible).
    pub backup_eligible: bool,
    /// Backed up at its last use.
    pub backed_up: bool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last signed in.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A new passkey.
#[derive(Insertable)]
#[diesel(table_name = passkeys)]
pub struct NewPasskey<'a> {
    /// Our id.
    pub id: Uuid,
    /// The owner.
    pub user_id: Uuid,
    /// The authenticator's credential id.
    pub credential_id: &'a [u8],
    /// webauthn-rs's `Credential`, as JSON.
    pub credential: &'a str,
    /// The name the user gave it.
    pub name: Option<&'a str>,
    /// The signature counter at registration.
    pub sign_count: i64,
    /// Synced (backup eligible).
    pub backup_eligible: bool,
    /// Backed up now.
    pub backed_up: bool,
}

/// Stores a passkey.
pub async fn insert(conn: &mut AsyncPgConnection, new: &NewPasskey<'_>) -> QueryResult<Passkey> {
    diesel::insert_into(passkeys::table)
        .values(new)
        .returning(Passkey::as_returning())
        .get_result(conn)
        .await
}

/// A user's passkeys, oldest first.
pub async fn list(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Vec<Passkey>> {
    passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .order((passkeys::created_at.asc(), passkeys::id.asc()))
        .select(Passkey::as_select())
        .load(conn)
        .await
}

/// How many passkeys a user has.
pub async fn count(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<i64> {
    passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .count()
        .get_result(conn)
        .await
}

/// A passkey by credential id, locked for the rest of the transaction: two sign-ins
/// with one credential update its counter one after the other.
pub async fn lock_by_credential_id(
    conn: &mut AsyncPgConnection,
    credential_id: &[u8],
) -> QueryResult<Option<Passkey>> {
    passkeys::table
        .filter(passkeys::credential_id.eq(credential_id))
        .for_update()
        .select(Passkey::as_select())
        .first(conn)
        .await
        .optional()
}

/// Records a sign-in: the new counter, flags and credential.
pub async fn record_use(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    credential: &str,
    sign_count: i64,
    backed_up: bool,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(passkeys::table.find(id))
        .set((
            passkeys::credential.eq(credential),
            passkeys::sign_count.eq(sign_count),
            passkeys::backed_up.eq(backed_up),
            passkeys::last_used_at.eq(at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Deletes one of a user's passkeys; false if it is not theirs.
pub async fn delete_owned(conn: &mut AsyncPgConnection, id: Uuid, user_id: Uuid) -> QueryResult<bool> {
    diesel::delete(
        passkeys::table
            .filter(passkeys::id.eq(id))
            .filter(passkeys::user_id.eq(user_id)),
    )
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// A row of `passkey_ceremonies`.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = passkey_ceremonies, check_for_backend(Pg))]
pub struct Ceremony {
    /// The challengeId.
    pub id: Uuid,
    /// [`KIND_REGISTRATION`] or [`KIND_AUTHENTICATION`].
    pub kind: String,
    /// The user it was begun for, if known.
    pub user_id: Option<Uuid>,
    /// An email was given at its begin.
    pub email_bound: bool,
    /// webauthn-rs's state, as JSON.
    pub state: String,
    /// When it was begun.
    pub created_at: DateTime<Utc>,
    /// When it stops being finishable.
    pub expires_at: DateTime<Utc>,
}

/// A new ceremony.
#[derive(Insertable)]
#[diesel(table_name = passkey_ceremonies)]
pub struct NewCeremony<'a> {
    /// The challengeId.
    pub id: Uuid,
    /// [`KIND_REGISTRATION`] or [`KIND_AUTHENTICATION`].
    pub kind: &'a str,
    /// The user it is begun for, if known.
    pub user_id: Option<Uuid>,
    /// An email was given.
    pub email_bound: bool,
    /// webauthn-rs's state, as JSON.
    pub state: &'a str,
    /// When it stops being finishable.
    pub expires_at: DateTime<Utc>,
}

/// Stores a ceremony, deleting expired ones on the way (a ceremony is begun far less
/// often than a request is served, so this keeps the table small without a job).
pub async fn insert_ceremony(conn: &mut AsyncPgConnection, new: &NewCeremony<'_>) -> QueryResult<()> {
    diesel::delete(passkey_ceremonies::table.filter(passkey_ceremonies::expires_at.le(diesel::dsl::now)))
        .execute(conn)
        .await?;
    diesel::insert_into(passkey_ceremonies::table)
        .values(new)
        .execute(conn)
        .await
        .map(drop)
}

/// Takes a live ceremony of `kind`: deletes it and answers it, so it finishes once
/// whatever the outcome. `None` for an unknown, used or expired one.
pub async fn take_live(conn: &mut AsyncPgConnection, id: Uuid, kind: &str) -> QueryResult<Option<Ceremony>> {
    diesel::delete(
        passkey_ceremonies::table
            .filter(passkey_ceremonies::id.eq(id))
            .filter(passkey_ceremonies::kind.eq(kind))
            .filter(passkey_ceremonies::expires_at.gt(diesel::dsl::now)),
    )
    .returning(Ceremony::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// [`take_live`] for a ceremony begun by `user_id` only: another user's id (leaked or
/// guessed) neither finishes nor uses up someone else's registration.
pub async fn take_live_of(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    kind: &str,
    user_id: Uuid,
) -> QueryResult<Option<Ceremony>> {
    diesel::delete(
        passkey_ceremonies::table
            .filter(passkey_ceremonies::id.eq(id))
            .filter(passkey_ceremonies::kind.eq(kind))
            .filter(passkey_ceremonies::user_id.eq(user_id))
            .filter(passkey_ceremonies::expires_at.gt(diesel::dsl::now)),
    )
    .returning(Ceremony::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// The user row, locked for the rest of the transaction, so changes to a user's sign-in
/// methods run one at a time (none can remove the last one beside another).
pub async fn lock_owner(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Option<Account>> {
    users::table
        .find(user_id)
        .for_update()
        .select(Account::as_select())
        .first(conn)
        .await
        .optional()
}
