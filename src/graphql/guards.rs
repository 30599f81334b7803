//! Field guards for the `User` privacy rules of API.md.

use async_graphql::{Context, Guard, Result};
use uuid::Uuid;

use super::{
    context::ContextExt,
    types::{SeenBy, User},
};
use crate::auth::AuthError;

/// Passes for the user themself (by token, or as the user of an `AuthPayload`) and
/// for admins; `FORBIDDEN` for anyone else.
pub struct OwnerOrAdmin {
    user_id: Uuid,
    /// The caller is known to be the user without reading a token.
    by_owner: bool,
}

impl OwnerOrAdmin {
    /// The guard for a field of `user`.
    pub fn of(user: &User) -> Self {
        Self {
            user_id: user.uuid,
            by_owner: user.seen_by != SeenBy::Token,
        }
    }
}

impl Guard for OwnerOrAdmin {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        if self.by_owner || ctx.viewer().await?.may_read_private(self.user_id) {
            Ok(())
        } else {
            Err(AuthError::Forbidden.into())
        }
    }
}

/// Passes for the user themself only, admins included in the refusal.
pub struct OwnerOnly {
    user_id: Uuid,
    /// The caller is known to be the user without reading a token.
    by_owner: bool,
}

impl OwnerOnly {
    /// The guard for a field of `user`.
    pub fn of(user: &User) -> Self {
        Self {
            user_id: user.uuid,
            by_owner: user.seen_by != SeenBy::Token,
        }
    }
}

impl Guard for OwnerOnly {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        if self.by_owner || ctx.viewer().await?.user.id == self.user_id {
            Ok(())
        } else {
            Err(AuthError::Forbidden.into())
        }
    }
}
