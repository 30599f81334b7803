//! `Query`: the caller and other users.

use async_graphql::{Context, ID, Object, Result};
use uuid::Uuid;

use super::{context::ContextExt, types::User};

/// Read operations.
pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The signed-in user. Requires a valid access token.
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        let viewer = ctx.viewer().await?;
        Ok(User::public(viewer.user.clone()))
    }

    /// A user by id, or null if there is none. Requires a valid access token.
    async fn user(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        ctx.viewer().await?;
        let Ok(id) = Uuid::parse_str(&id) else {
            return Ok(None);
        };
        Ok(ctx.state().auth.find_user(id).await?.map(User::public))
    }

    /// Federation: resolves `User` references by key, with the rules of `user(id)`.
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        self.user(ctx, id).await
    }
}
