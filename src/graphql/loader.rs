//! Batched loading of users by id, so `_entities` with N `User` representations (and any
//! other fan-out over users) costs one SQL query instead of N.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use crate::auth::{Account, Auth};

/// Loads users by id through [`Auth::find_users`]. Holds no cache: it lives on the
/// schema, so a cache would serve one request's rows to the next.
pub struct UserLoader {
    auth: Auth,
}

impl UserLoader {
    /// A loader over the auth service.
    pub fn new(auth: Auth) -> Self {
        Self { auth }
    }
}

impl Loader<Uuid> for UserLoader {
    type Value = Account;
    // Converted (and an internal error logged) once per batch, not once per key.
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Account>, Self::Error> {
        let users = self.auth.find_users(ids).await?;
        Ok(users.into_iter().map(|user| (user.id, user)).collect())
    }
}
