//! Second-factor mutations (`enrollTotp`, `confirmTotp`, `verifyMfa`, `removeFactor`,
//! `regenerateRecoveryCodes`) and their types, merged into `Mutation`.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use super::{context::ContextExt, mutation::deliver, types::AuthPayload};
use crate::db;

/// The second-factor part of `Mutation`.
#[derive(Default)]
pub struct MfaMutation;

#[Object]
impl MfaMutation {
    /// Starts a TOTP enrollment: the secret, its otpauth URI and a QR code, shown once.
    /// Needs a recent sign-in (with a second factor, a recent verification of it). The
    /// factor works once `confirmTotp` got a valid code.
    async fn enroll_totp(&self, ctx: &Context<'_>) -> Result<TotpEnrollment> {
        let viewer = ctx.viewer().await?;
        let enrollment = ctx.state().auth.enroll_totp(viewer).await?;
        Ok(TotpEnrollment {
            factor_id: ID(enrollment.factor_id.to_string()),
            secret: enrollment.secret().to_owned(),
            otpauth_uri: enrollment.otpauth_uri().to_owned(),
            qr_code_svg: enrollment.qr_code_svg,
        })
    }

    /// Activates an enrolled TOTP factor with a code from the app. The first factor
    /// answers 10 recovery codes, shown only now, and ends every other session; later
    /// confirmations answer `[]`.
    async fn confirm_totp(
        &self,
        ctx: &Context<'_>,
        factor_id: ID,
        #[graphql(secret)] code: String,
    ) -> Result<Vec<String>> {
        let viewer = ctx.viewer().await?;
        Ok(ctx.state().auth.confirm_totp(viewer, &factor_id, &code).await?)
    }

    /// A TOTP code or a recovery code. With the `mfaToken` of an `MFA_REQUIRED` error it
    /// completes that sign-in (no access token needed); without it, with an access
    /// token, it is step-up: the same session (`sid`) gets a new pair with a fresh
    /// `auth_time` and `acr` `aal2`.
    async fn verify_mfa(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] mfa_token: Option<String>,
        #[graphql(secret)] code: String,
    ) -> Result<AuthPayload> {
        let auth = &ctx.state().auth;
        let client = &ctx.request().client;
        match mfa_token {
            Some(token) => {
                let issued = auth.complete_mfa_sign_in(&token, &code, client).await?;
                Ok(deliver(ctx, issued, false))
            }
            None => {
                let issued = auth.step_up(ctx.viewer().await?, &code, client).await?;
                let had_cookie = ctx.request().refresh_cookie.is_some();
                Ok(deliver(ctx, issued, had_cookie))
            }
        }
    }

    /// Removes one of my factors; removing the last one also deletes my recovery codes.
    /// Needs a recent second-factor verification. False if it is not one of mine.
    async fn remove_factor(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let viewer = ctx.viewer().await?;
        Ok(ctx.state().auth.remove_factor(viewer, &id).await?)
    }

    /// Replaces my recovery codes with 10 new ones, shown only now. Needs a recent
    /// second-factor verification.
    async fn regenerate_recovery_codes(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        let viewer = ctx.viewer().await?;
        Ok(ctx.state().auth.regenerate_recovery_codes(viewer).await?)
    }
}

/// A TOTP factor waiting for `confirmTotp`.
#[derive(SimpleObject)]
pub struct TotpEnrollment {
    /// The factor to confirm.
    pub factor_id: ID,
    /// The secret in base32, for typing into an authenticator app.
    pub secret: String,
    /// `otpauth://totp/...`: what the QR code holds.
    pub otpauth_uri: String,
    /// The otpauth URI as a QR code, an SVG document.
    pub qr_code_svg: String,
}

/// An active second factor.
#[derive(SimpleObject)]
pub struct MfaFactor {
    /// Its id, for `removeFactor`.
    pub id: ID,
    /// `TOTP`.
    pub kind: String,
    /// When it was enrolled.
    pub created_at: DateTime<Utc>,
    /// When a code of it was last accepted.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<db::factors::Factor> for MfaFactor {
    fn from(row: db::factors::Factor) -> Self {
        Self {
            id: ID(row.id.to_string()),
            kind: row.kind,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
        }
    }
}
