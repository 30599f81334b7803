//! Social sign-in: `startOAuth`, `completeOAuth`, `unlinkIdentity` (merged into
//! `Mutation`), `oauthProviders` (on `Query`) and the `OAuthProvider`, `OAuthStart` and
//! `Identity` types.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use super::{context::ContextExt, mutation::deliver, types::AuthPayload};
use crate::{auth::social::ProviderInfo, db};

/// The social sign-in part of `Mutation`.
#[derive(Default)]
pub struct SocialMutation;

#[Object]
impl SocialMutation {
    /// Starts a sign-in with a provider of `oauthProviders`: send the browser to
    /// `authorizationUrl`; the provider redirects to `redirectUri` (one of
    /// `OAUTH_REDIRECT_URIS`, exactly) with `code` and `state` for `completeOAuth`.
    /// `codeChallenge` is your own PKCE S256 challenge: only the holder of its verifier
    /// completes the flow. `link: true` links the provider to the signed-in caller
    /// instead (needs an access token and a recent sign-in or step-up).
    #[graphql(name = "startOAuth")]
    async fn start_oauth(
        &self,
        ctx: &Context<'_>,
        provider: String,
        redirect_uri: String,
        code_challenge: String,
        #[graphql(default = false)] link: bool,
    ) -> Result<OAuthStart> {
        let viewer = if link { Some(ctx.viewer().await?) } else { None };
        let authorization_url = ctx
            .state()
            .auth
            .start_oauth(viewer, &provider, &redirect_uri, &code_challenge)
            .await?;
        Ok(OAuthStart { authorization_url })
    }

    /// Completes a flow with the provider's `code` and `state` and your PKCE
    /// `codeVerifier`: tokens (`amr` `["fed"]`), or `MFA_REQUIRED` for an account with a
    /// second factor, or `LINK_REQUIRED` when the provider's email belongs to an account
    /// that may not be linked automatically. A link flow needs the same user's token.
    #[graphql(name = "completeOAuth")]
    async fn complete_oauth(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] code: String,
        #[graphql(secret)] state: String,
        #[graphql(secret)] code_verifier: String,
    ) -> Result<AuthPayload> {
        let auth = &ctx.state().auth;
        let client = &ctx.request().client;
        // The token matters only to a link flow, which checks it; a sign-in ignores a
        // stale header.
        let viewer = ctx.viewer().await;
        let caller_session = viewer.as_ref().ok().map(|v| v.session_id);
        let issued = auth
            .complete_oauth(viewer, &code, &state, &code_verifier, client)
            .await?;
        // A link reissues the caller's session: a cookie client keeps its cookie.
        let as_cookie = caller_session == Some(issued.session_id) && ctx.request().refresh_cookie.is_some();
        Ok(deliver(ctx, issued, as_cookie))
    }

    /// Unlinks one of my identities. Needs a recent sign-in (or step-up); refused with
    /// `FORBIDDEN` when it is my last way to sign in. False if it is not one of mine.
    async fn unlink_identity(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let viewer = ctx.viewer().await?;
        Ok(ctx
            .state()
            .auth
            .unlink_identity(viewer, &id, &ctx.request().client)
            .await?)
    }
}

/// A configured social sign-in provider.
#[derive(SimpleObject)]
#[graphql(name = "OAuthProvider")]
pub struct OAuthProvider {
    /// The id `startOAuth` takes.
    pub id: String,
    /// The name to show on its button.
    pub name: String,
}

impl From<ProviderInfo> for OAuthProvider {
    fn from(info: ProviderInfo) -> Self {
        Self {
            id: info.id,
            name: info.name,
        }
    }
}

/// Where to send the browser.
#[derive(SimpleObject)]
#[graphql(name = "OAuthStart")]
pub struct OAuthStart {
    /// The provider's authorization URL (state, nonce and PKCE included).
    pub authorization_url: String,
}

/// A provider identity linked to the account.
#[derive(SimpleObject)]
pub struct Identity {
    /// Its id, for `unlinkIdentity`.
    pub id: ID,
    /// The provider id.
    pub provider: String,
    /// The email the provider reported when it was linked.
    pub email: Option<String>,
    /// When it was linked.
    pub linked_at: DateTime<Utc>,
}

impl From<db::identities::Identity> for Identity {
    fn from(row: db::identities::Identity) -> Self {
        Self {
            id: ID(row.id.to_string()),
            provider: row.provider,
            email: row.email,
            linked_at: row.linked_at,
        }
    }
}

/// `oauthProviders`, for `Query`.
pub fn providers(ctx: &Context<'_>) -> Vec<OAuthProvider> {
    ctx.state()
        .auth
        .oauth_providers()
        .into_iter()
        .map(OAuthProvider::from)
        .collect()
}
