//! `Query`: the caller and other users, and the federation entity resolver.

use async_graphql::{Context, ID, Object, Result};
use uuid::Uuid;

use super::{context::ContextExt, types::User};

/// Read operations.
#[derive(Default)]
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// The signed-in user. Requires a valid access token.
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        let viewer = ctx.viewer().await?;
        Ok(User::public(viewer.user.clone()))
    }

    /// A user by id, or null if there is none. Requires a valid access token.
    async fn user(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        user_by_id(ctx, &id).await
    }

    /// The configured social sign-in providers. Public.
    async fn oauth_providers(&self, ctx: &Context<'_>) -> Vec<super::social::OAuthProvider> {
        super::social::providers(ctx)
    }

    /// Federation: resolves `User` references by key, with the rules of `user(id)`.
    /// The representations of one `_entities` call resolve concurrently, so the loader
    /// reads them all in one query.
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        user_by_id(ctx, &id).await
    }
}

/// A token is required; an id that is not a UUID names no user.
async fn user_by_id(ctx: &Context<'_>, id: &ID) -> Result<Option<User>> {
    ctx.viewer().await?;
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(None);
    };
    Ok(ctx.users().load_one(id).await?.map(User::public))
}
