//! `Mutation`: each resolver reads its input, calls one `auth` use case, converts.

use async_graphql::{Context, Object, Result};

use super::{
    context::ContextExt,
    types::{AuthPayload, LoginInput, RegisterInput, ResetPasswordInput, User},
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

    /// Mails the caller a new verification link (any older link stops working). Needs an
    /// access token; answers true and sends nothing when the address is already verified.
    async fn request_email_verification(&self, ctx: &Context<'_>) -> Result<bool> {
        let viewer = ctx.viewer().await?;
        Ok(ctx.state().auth.request_email_verification(viewer).await?)
    }

    /// Proves the account's email address with the token from a verification link.
    /// Each token works once.
    async fn verify_email(&self, ctx: &Context<'_>, #[graphql(secret)] token: String) -> Result<bool> {
        Ok(ctx.state().auth.verify_email(&token).await?)
    }

    /// Mails a password reset link, valid for one hour, if an account has this email.
    /// Always answers true: it never reveals whether the email is registered.
    async fn request_password_reset(&self, ctx: &Context<'_>, email: String) -> Result<bool> {
        Ok(ctx.state().auth.request_password_reset(&email).await?)
    }

    /// Sets a new password with the token from a reset link (once), signs the user out
    /// of every session and marks the email verified.
    async fn reset_password(&self, ctx: &Context<'_>, input: ResetPasswordInput) -> Result<bool> {
        Ok(ctx
            .state()
            .auth
            .reset_password(&input.token, &input.new_password)
            .await?)
    }
}

/// Hands a new token pair to the client: the refresh token in the body, or as an
/// HttpOnly cookie when the request asked for cookie delivery.
fn deliver(ctx: &Context<'_>, issued: Issued) -> AuthPayload {
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
