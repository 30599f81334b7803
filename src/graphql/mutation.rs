//! `Mutation`: each resolver reads its input, calls one `auth` use case, converts.

use async_graphql::{Context, Object, Result};

use super::{
    context::ContextExt,
    types::{AuthPayload, LoginInput, RegisterInput, User},
};
use crate::{auth::Issued, request::REFRESH_COOKIE};

const SET_COOKIE: &str = "set-cookie";

/// Write operations.
pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Creates an account and signs it in.
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> Result<AuthPayload> {
        let client = &ctx.request().client;
        let issued = ctx
            .state()
            .auth
            .register(
                &input.email,
                &input.password,
                input.display_name.as_deref(),
                client,
            )
            .await?;
        Ok(deliver(ctx, issued))
    }

    /// Signs in with email and password.
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> Result<AuthPayload> {
        let client = &ctx.request().client;
        let issued = ctx
            .state()
            .auth
            .login(&input.email, &input.password, client)
            .await?;
        Ok(deliver(ctx, issued))
    }
}

/// Hands a new token pair to the client: the refresh token in the body, or as an
/// HttpOnly cookie when the request asked for cookie delivery.
fn deliver(ctx: &Context<'_>, issued: Issued) -> AuthPayload {
    // The request's later log lines (the operation summary) name the signed-in user.
    tracing::Span::current().record("user.id", tracing::field::display(issued.user.id));
    let user = User::issued(&issued);
    let refresh_token = if ctx.request().cookie_delivery {
        let config = &ctx.state().config;
        let cookie = format!(
            "{REFRESH_COOKIE}={}; HttpOnly; Secure; SameSite={}; Path={}; Max-Age={}",
            issued.refresh_token.expose(),
            config.refresh_cookie_samesite.as_str(),
            config.refresh_cookie_path,
            issued.refresh_expires_in,
        );
        ctx.append_http_header(SET_COOKIE, cookie);
        None
    } else {
        Some(issued.refresh_token.expose().to_owned())
    };
    AuthPayload {
        access_token: issued.access_token,
        refresh_token,
        token_type: "Bearer".to_owned(),
        expires_in: i32::try_from(issued.expires_in).unwrap_or(i32::MAX),
        user,
    }
}
