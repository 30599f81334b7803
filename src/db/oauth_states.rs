//! Queries on `oauth_states`: authorization flows between `startOAuth` and
//! `completeOAuth`, each usable once.

use chrono::{DateTime, Utc};
use diesel::{pg::Pg, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::oauth_states;

/// A row of `oauth_states`.
#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_states, check_for_backend(Pg))]
pub struct OAuthState {
    /// SHA-256 of the `state` parameter.
    pub state_hash: Vec<u8>,
    /// The configured provider id.
    pub provider: String,
    /// The redirect URI the flow started with.
    pub redirect_uri: String,
    /// The client's PKCE S256 challenge.
    pub client_challenge: String,
    /// Our PKCE verifier towards the provider.
    pub pkce_verifier: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The user a deliberate link is for.
    pub link_user_id: Option<Uuid>,
    /// When the flow started.
    pub created_at: DateTime<Utc>,
    /// When it stops being usable.
    pub expires_at: DateTime<Utc>,
}

// The verifier and nonce stay out of Debug output.
impl std::fmt::Debug for OAuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthState")
            .field("provider", &self.provider)
            .field("link_user_id", &self.link_user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Stores a flow, deleting expired ones on the way (they are never usable again).
pub async fn insert(conn: &mut AsyncPgConnection, state: &OAuthState) -> QueryResult<()> {
    diesel::delete(oauth_states::table)
        .filter(oauth_states::expires_at.le(diesel::dsl::now))
        .execute(conn)
        .await?;
    diesel::insert_into(oauth_states::table)
        .values(state)
        .execute(conn)
        .await
        .map(drop)
}

/// Takes a live flow by state hash: deleted and answered in one statement, so of two
/// completions with one state exactly one gets it.
pub async fn take_live(conn: &mut AsyncPgConnection, state_hash: &[u8]) -> QueryResult<Option<OAuthState>> {
    diesel::delete(oauth_states::table.find(state_hash))
        .filter(oauth_states::expires_at.gt(diesel::dsl::now))
        .returning(OAuthState::as_returning())
        .get_result(conn)
        .await
        .optional()
}
