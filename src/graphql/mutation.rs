//! `Mutation`: each resolver reads its input, calls one `auth` use case, converts.

use async_graphql::{Context, ID, MaybeUndefined, Object, Result};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{
    context::ContextExt,
    types::{
        AuthPayload, ChangePasswordInput, LoginInput, RegisterInput, ResetPasswordInput, UpdateProfileInput,
        User,
    },
};
use crate::{
    auth::{Issued, account::Change},
    request::{DEVICE_COOKIE, REFRESH_COOKIE},
};

const SET_COOKIE: &str = "set-cookie";

/// Write operations.
#[derive(Default)]
pub struct MutationRoot;

#[Object]
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
        let user_id = issued.user.id;
        let payload = deliver(ctx, issued, false);
        remember_device(ctx, user_id);
        Ok(payload)
    }

    /// Signs in with email and password.
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> Result<AuthPayload> {
        let client = &ctx.request().client;
        let issued = ctx
            .state()
            .auth
            .login(&input.email, &input.password, client)
            .await?;
        let user_id = issued.user.id;
        let payload = deliver(ctx, issued, false);
        remember_device(ctx, user_id);
        Ok(payload)
    }

    /// Exchanges a refresh token (the argument, or the refresh cookie when omitted) for
    /// a new pair in the same session.
    async fn refresh(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] refresh_token: Option<String>,
    ) -> Result<AuthPayload> {
        let (token, from_cookie) = refresh_token_of(ctx, refresh_token);
        let client = &ctx.request().client;
        match ctx.state().auth.refresh(token.as_deref(), client).await {
            Ok(issued) => Ok(deliver(ctx, issued, from_cookie)),
            Err(err) => {
                if from_cookie {
                    clear_cookie(ctx);
                }
                Err(err.into())
            }
        }
    }

    /// Ends the session of a refresh token (argument or cookie), or with
    /// `allSessions: true` every session of the signed-in user. True even for an
    /// unknown token.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] refresh_token: Option<String>,
        #[graphql(default = false)] all_sessions: bool,
    ) -> Result<bool> {
        let auth = &ctx.state().auth;
        let (token, from_cookie) = refresh_token_of(ctx, refresh_token);
        let client = &ctx.request().client;
        if all_sessions {
            auth.logout_everywhere(ctx.viewer().await?.user.id, client)
                .await?;
        } else if let Some(token) = token {
            auth.logout(&token, client).await?;
        } else if ctx.request().authorization.is_some() {
            // No refresh token at hand: end the session of the access token.
            let viewer = ctx.viewer().await?;
            auth.revoke_session(viewer.user.id, viewer.session_id, client)
                .await?;
        }
        if from_cookie || ctx.request().cookie_delivery {
            clear_cookie(ctx);
        }
        Ok(true)
    }

    /// Ends one of my own active sessions; false for anything else.
    async fn revoke_session(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let viewer = ctx.viewer().await?;
        let Ok(session_id) = Uuid::parse_str(&id) else {
            return Ok(false);
        };
        Ok(ctx
            .state()
            .auth
            .revoke_session(viewer.user.id, session_id, &ctx.request().client)
            .await?)
    }

    /// Changes my profile: an absent field is kept, `null` clears it.
    async fn update_profile(&self, ctx: &Context<'_>, input: UpdateProfileInput) -> Result<User> {
        let viewer = ctx.viewer().await?;
        let change = match &input.display_name {
            MaybeUndefined::Undefined => Change::Keep,
            MaybeUndefined::Null => Change::Clear,
            MaybeUndefined::Value(name) => Change::Set(name.as_str()),
        };
        let user = ctx.state().auth.update_profile(viewer, change).await?;
        Ok(User::own(user, viewer.session_id))
    }

    /// Changes my password: this session gets a new pair, every other session ends. With
    /// a second factor, it also needs a recent verification of it (`verifyMfa`).
    async fn change_password(&self, ctx: &Context<'_>, input: ChangePasswordInput) -> Result<AuthPayload> {
        let viewer = ctx.viewer().await?;
        let issued = ctx
            .state()
            .auth
            .change_password(
                viewer,
                &input.current_password,
                &input.new_password,
                &ctx.request().client,
            )
            .await?;
        let had_cookie = ctx.request().refresh_cookie.is_some();
        Ok(deliver(ctx, issued, had_cookie))
    }

    /// Mails the caller a new verification link (any older link stops working). Needs an
    /// access token; answers true and sends nothing when the address is already verified.
    async fn request_email_verification(&self, ctx: &Context<'_>) -> Result<bool> {
        let viewer = ctx.viewer().await?;
        let client = &ctx.request().client;
        Ok(ctx
            .state()
            .auth
            .request_email_verification(viewer, client)
            .await?)
    }

    /// Proves the account's email address with the token from a verification link.
    /// Each token works once.
    async fn verify_email(&self, ctx: &Context<'_>, #[graphql(secret)] token: String) -> Result<bool> {
        let client = &ctx.request().client;
        Ok(ctx.state().auth.verify_email(&token, client).await?)
    }

    /// Mails a password reset link, valid for one hour, if an account has this email.
    /// Always answers true: it never reveals whether the email is registered.
    async fn request_password_reset(&self, ctx: &Context<'_>, email: String) -> Result<bool> {
        let client = &ctx.request().client;
        Ok(ctx.state().auth.request_password_reset(&email, client).await?)
    }

    /// Sets a new password with the token from a reset link (once), signs the user out
    /// of every session and marks the email verified.
    async fn reset_password(&self, ctx: &Context<'_>, input: ResetPasswordInput) -> Result<bool> {
        Ok(ctx
            .state()
            .auth
            .reset_password(&input.token, &input.new_password, &ctx.request().client)
            .await?)
    }

    /// Deletes my account and everything that is mine; needs my password (and, with a
    /// second factor, a recent verification of it: `verifyMfa`).
    async fn delete_account(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] password: Option<String>,
    ) -> Result<bool> {
        let viewer = ctx.viewer().await?;
        let client = &ctx.request().client;
        ctx.state()
            .auth
            .delete_account(viewer, password.as_deref(), client)
            .await?;
        clear_cookie(ctx);
        Ok(true)
    }
}

/// The refresh token of a request: the argument wins over the cookie.
fn refresh_token_of(ctx: &Context<'_>, argument: Option<String>) -> (Option<String>, bool) {
    match argument {
        Some(token) => (Some(token), false),
        None => match &ctx.request().refresh_cookie {
            Some(cookie) => (Some(cookie.expose_secret().to_owned()), true),
            None => (None, false),
        },
    }
}

fn cookie(ctx: &Context<'_>, value: &str, max_age: i64) -> String {
    let config = &ctx.state().config;
    format!(
        "{REFRESH_COOKIE}={value}; HttpOnly; Secure; SameSite={}; Path={}; Max-Age={max_age}",
        config.cookies.same_site.as_str(),
        config.cookies.path,
    )
}

/// Sets the device cookie after a complete sign-in (see `auth::throttle`): with the
/// refresh cookie's path and SameSite, so it reaches `login` and nothing else.
pub(super) fn remember_device(ctx: &Context<'_>, user_id: Uuid) {
    let Some(token) = ctx.state().auth.device_token(user_id) else {
        return;
    };
    let config = &ctx.state().config;
    ctx.append_http_header(
        SET_COOKIE,
        format!(
            "{DEVICE_COOKIE}={token}; HttpOnly; Secure; SameSite={}; Path={}; Max-Age={}",
            config.cookies.same_site.as_str(),
            config.cookies.path,
            crate::auth::DEVICE_TOKEN_TTL.as_secs(),
        ),
    );
}

fn clear_cookie(ctx: &Context<'_>) {
    ctx.append_http_header(SET_COOKIE, cookie(ctx, "", 0));
}

/// Hands a new token pair to the client: the refresh token in the body, or as an
/// HttpOnly cookie when the request asked for cookie delivery (or came with the cookie).
pub(super) fn deliver(ctx: &Context<'_>, issued: Issued, as_cookie: bool) -> AuthPayload {
    // The request's later log lines (the operation summary) name the signed-in user.
    tracing::Span::current().record("user.id", tracing::field::display(issued.user.id));
    let user = User::issued(&issued);
    let refresh_token = if as_cookie || ctx.request().cookie_delivery {
        let value = cookie(ctx, issued.refresh_token.expose(), issued.refresh_expires_in);
        ctx.append_http_header(SET_COOKIE, value);
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
