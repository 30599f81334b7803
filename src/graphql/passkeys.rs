//! Passkey mutations (`beginPasskeyRegistration`, `finishPasskeyRegistration`,
//! `beginPasskeyLogin`, `finishPasskeyLogin`, `removePasskey`) and their types, merged
//! into `Mutation`. Options and credentials travel in the `JSON` scalar as objects.

use async_graphql::{Context, ID, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{context::ContextExt, mutation::deliver, types::AuthPayload};
use crate::{auth::passkeys::Challenge, db};

/// A WebAuthn object (options, credential) carried as is.
type JsonObject = Json<Map<String, Value>>;

/// The passkey part of `Mutation`.
#[derive(Default)]
pub struct PasskeyMutation;

#[Object]
impl PasskeyMutation {
    /// Begins registering a passkey for me. Needs a recent sign-in (with a second factor,
    /// a recent verification of it). Pass `options` to
    /// `PublicKeyCredential.parseCreationOptionsFromJSON`, then `navigator.credentials.create`.
    async fn begin_passkey_registration(&self, ctx: &Context<'_>) -> Result<PasskeyChallenge> {
        let viewer = ctx.viewer().await?;
        let challenge = ctx.state().auth.begin_passkey_registration(viewer).await?;
        Ok(challenge.into())
    }

    /// Finishes a registration with the new credential's `toJSON()`; `name` labels it in
    /// `me { passkeys }`. A credential that fails verification (wrong origin, RP id or
    /// challenge) is `INVALID_CREDENTIALS`; a bad, used or expired `challengeId` is
    /// `INVALID_TOKEN`.
    async fn finish_passkey_registration(
        &self,
        ctx: &Context<'_>,
        challenge_id: ID,
        credential: JsonObject,
        name: Option<String>,
    ) -> Result<Passkey> {
        let viewer = ctx.viewer().await?;
        let passkey = ctx
            .state()
            .auth
            .finish_passkey_registration(
                viewer,
                &challenge_id,
                credential.0,
                name.as_deref(),
                &ctx.request().client,
            )
            .await?;
        Ok(passkey.into())
    }

    /// Begins a passkey sign-in. With `email`, the options list that account's passkeys;
    /// without, any passkey the authenticator holds for this site (discoverable). Pass
    /// `options` to `PublicKeyCredential.parseRequestOptionsFromJSON`, then
    /// `navigator.credentials.get`.
    async fn begin_passkey_login(
        &self,
        ctx: &Context<'_>,
        email: Option<String>,
    ) -> Result<PasskeyChallenge> {
        let client = &ctx.request().client;
        let challenge = ctx
            .state()
            .auth
            .begin_passkey_login(email.as_deref(), client)
            .await?;
        Ok(challenge.into())
    }

    /// Finishes a passkey sign-in with the assertion's `toJSON()`. A user-verified
    /// passkey signs in with `acr` `aal2`; one without user verification, for an account
    /// with TOTP, answers `MFA_REQUIRED` (finish with `verifyMfa`).
    async fn finish_passkey_login(
        &self,
        ctx: &Context<'_>,
        challenge_id: ID,
        credential: JsonObject,
    ) -> Result<AuthPayload> {
        let client = &ctx.request().client;
        let issued = ctx
            .state()
            .auth
            .finish_passkey_login(&challenge_id, credential.0, client)
            .await?;
        Ok(deliver(ctx, issued, false))
    }

    /// Removes one of my passkeys. Needs a recent sign-in (or second-factor verification);
    /// `FORBIDDEN` if it is my last way to sign in; false if it is not mine.
    async fn remove_passkey(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let viewer = ctx.viewer().await?;
        Ok(ctx
            .state()
            .auth
            .remove_passkey(viewer, &id, &ctx.request().client)
            .await?)
    }
}

/// A begun passkey ceremony.
#[derive(SimpleObject)]
pub struct PasskeyChallenge {
    /// Finishes the ceremony, once, within `WEBAUTHN_CHALLENGE_TTL`.
    pub challenge_id: ID,
    /// `PublicKeyCredentialCreationOptionsJSON` or `PublicKeyCredentialRequestOptionsJSON`,
    /// not wrapped in `publicKey`.
    pub options: JsonObject,
}

impl From<Challenge> for PasskeyChallenge {
    fn from(challenge: Challenge) -> Self {
        Self {
            challenge_id: ID(challenge.id.to_string()),
            options: Json(challenge.options),
        }
    }
}

/// A registered passkey.
#[derive(SimpleObject)]
pub struct Passkey {
    /// Its id, for `removePasskey`.
    pub id: ID,
    /// The name given at registration.
    pub name: Option<String>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last signed in.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Whether the authenticator reported it backed up (synced) at its last use.
    pub backed_up: bool,
}

impl From<db::passkeys::Passkey> for Passkey {
    fn from(row: db::passkeys::Passkey) -> Self {
        Self {
            id: ID(row.id.to_string()),
            name: row.name,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            backed_up: row.backed_up,
        }
    }
}
