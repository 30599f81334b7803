//! Second factors: checking a code, in the second step of a sign-in (`MFA_REQUIRED`, then
//! `verifyMfa` with its `mfaToken`) and in step-up for a signed-in session (`verifyMfa`
//! without one), and the step-up rule sensitive operations call. Managing the factors
//! (TOTP enrollment, removal, recovery codes, the reset) is in `factors`.
//!
//! Wrong codes count against the login throttle (per account, per account and address,
//! per address), counted before the check like a password, so no alias, batch or race
//! gets more guesses than a password would.

pub mod cipher;
mod factors;
pub mod totp;

pub use factors::TotpEnrollment;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tracing::{info, instrument};
use uuid::Uuid;

use super::{
    Auth, AuthError, ClientInfo, Issued, Viewer,
    audit::{Event, EventType},
    step_up::{self, Assurance, Method, Requirement},
    token::{OpaqueToken, TokenHash},
};
use crate::{config::MfaConfig, db};
use cipher::SecretCipher;

/// `extensions.factors` of `MFA_REQUIRED`: the kinds of code `verifyMfa` takes.
pub const FACTORS: [&str; 2] = ["TOTP", "RECOVERY_CODE"];
/// Recovery codes handed out at a time.
pub const RECOVERY_CODE_COUNT: usize = 10;

/// Second-factor settings and the key sealing TOTP secrets.
#[derive(Clone, Debug)]
pub struct MfaPolicy {
    /// AES-256-GCM under `MFA_ENCRYPTION_KEY`.
    pub cipher: Arc<SecretCipher>,
    /// `STEP_UP_MAX_AGE`.
    pub step_up_max_age: Duration,
    /// `MFA_TOKEN_TTL`.
    pub token_ttl: Duration,
    /// `TOTP_ISSUER`.
    pub totp_issuer: String,
}

impl MfaPolicy {
    /// The policy of `config` with `cipher`.
    pub fn new(config: &MfaConfig, cipher: SecretCipher) -> Self {
        Self {
            cipher: Arc::new(cipher),
            step_up_max_age: config.step_up_max_age,
            token_ttl: config.token_ttl,
            totp_issuer: config.totp_issuer.clone(),
        }
    }
}

/// A code as presented to `verifyMfa`: a TOTP code, or a recovery code (by its hash).
enum Code {
    Totp(String),
    Recovery([u8; 32]),
}

impl Code {
    /// Spaces and dashes are how apps and our recovery codes group digits: ignored.
    fn parse(raw: &str) -> Result<Self, AuthError> {
        let compact: String = raw.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        if compact.is_empty() {
            return Err(AuthError::input(
                "code",
                "enter the 6-digit code from your authenticator app, or a recovery code",
            ));
        }
        if compact.len() == usize::from(totp::DIGITS) && compact.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self::Totp(compact))
        } else {
            Ok(Self::Recovery(recovery_code_hash(&compact)))
        }
    }
}

/// SHA-256 of a normalised recovery code (lowercase, no separators).
fn recovery_code_hash(compact: &str) -> [u8; 32] {
    let normalised = format!("authgraph/recovery-code/v1\0{}", compact.to_ascii_lowercase());
    TokenHash::of(normalised.as_bytes()).to_array()
}

/// The row a factor's secret is sealed to: moving a sealed secret to another factor or
/// user makes it unreadable.
fn seal_context(factor_id: Uuid, user_id: Uuid) -> Vec<u8> {
    let mut context = b"authgraph/totp-secret/v1\0".to_vec();
    context.extend_from_slice(factor_id.as_bytes());
    context.extend_from_slice(user_id.as_bytes());
    context
}

fn unix_seconds(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp()).unwrap_or(0)
}

fn step_value(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

impl Auth {
    /// The second-factor settings.
    pub fn mfa(&self) -> &MfaPolicy {
        &self.mfa
    }

    /// The step-up rule of API.md for `viewer`'s token: refuses with
    /// `INSUFFICIENT_USER_AUTHENTICATION` unless the token's `auth_time` is within
    /// `STEP_UP_MAX_AGE` and, for a user with an active factor, its `amr` holds `mfa`.
    /// Every sensitive operation calls this one function.
    pub async fn require_step_up(&self, viewer: &Viewer, requirement: Requirement) -> Result<(), AuthError> {
        let has_factor = {
            let mut conn = self.conn().await?;
            db::factors::has_active(&mut conn, viewer.user.id).await?
        };
        let judged = step_up::check(
            viewer.assurance.as_ref(),
            has_factor,
            requirement,
            self.mfa.step_up_max_age,
            Utc::now(),
        );
        if judged.is_err() {
            info!(
                ?requirement,
                second_factor = has_factor,
                "refused: step-up needed"
            );
        }
        judged
    }

    /// Starts a sign-in's second step for a user whose first step (`first_step`, e.g.
    /// `[Pwd]`) succeeded: stores the challenge and answers its single-use token.
    pub(crate) async fn start_mfa_challenge(
        &self,
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        first_step: &[Method],
    ) -> Result<OpaqueToken, AuthError> {
        let token = OpaqueToken::generate()?;
        let amr: Vec<String> = first_step.iter().map(|m| m.as_str().to_owned()).collect();
        let expires_at = Utc::now() + self.mfa.token_ttl;
        db::mfa_challenges::insert(conn, token.hash().as_bytes(), user_id, &amr, expires_at).await?;
        Ok(token)
    }

    /// Completes a sign-in that answered `MFA_REQUIRED`: a TOTP or recovery code for the
    /// `mfaToken`'s user opens the session (`amr` gains `otp` and `mfa`, `acr` `aal2`) and
    /// uses the token up. A wrong code leaves the token usable until it expires.
    #[instrument(skip_all, fields(user.id))]
    pub async fn complete_mfa_sign_in(
        &self,
        mfa_token: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<Issued, AuthError> {
        let code = Code::parse(code)?;
        if mfa_token.trim().is_empty() {
            return Err(AuthError::InvalidToken);
        }
        let hash = OpaqueToken::presented(mfa_token).hash();
        // An unusable mfaToken counts against the address like any unusable token.
        let check = self.throttle.token(client).await?;
        let found = async {
            let mut conn = self.conn().await?;
            let Some(challenge) = db::mfa_challenges::find_live(&mut conn, hash.as_bytes()).await? else {
                return Err(AuthError::InvalidToken);
            };
            db::users::find(&mut conn, challenge.user_id)
                .await?
                .ok_or(AuthError::InvalidToken)
        }
        .await;
        let user = check.settle(found).await?;
        tracing::Span::current().record("user.id", tracing::field::display(user.id));
        let device = self.device_of(client, user.id);
        let attempt = self
            .throttle
            .login(&super::account_key(&user), client, device)
            .await?;
        let user_id = user.id;
        let mut conn = self.conn().await?;
        let outcome = conn
            .transaction::<_, AuthError, _>(async |conn| {
                let challenge = db::mfa_challenges::lock_live(conn, hash.as_bytes())
                    .await?
                    .ok_or(AuthError::InvalidToken)?;
                let now = Utc::now();
                self.use_code(conn, user.id, &code, now).await?;
                // Only now, after both factors: the code reveals nothing without them.
                // Rolling back keeps the code and the mfaToken as they were.
                if db::users::find(conn, user.id)
                    .await?
                    .is_none_or(|u| u.disabled_at.is_some())
                {
                    return Err(AuthError::AccountDisabled);
                }
                db::mfa_challenges::delete(conn, hash.as_bytes()).await?;
                let first_step =
                    Assurance::from_parts(challenge.amr.iter().flatten().map(String::as_str), now);
                let user_id = user.id;
                let issued = self
                    .open_session(conn, user, client, &first_step.with_second_factor(now))
                    .await?;
                let event = Event::new(EventType::LoginSucceeded, Some(user_id))
                    .session(issued.session_id)
                    .with("method", "password+mfa");
                self.audit(conn, event, client).await?;
                Ok(issued)
            })
            .await;
        // A connection is never held while the throttle takes its own.
        drop(conn);
        match outcome {
            Ok(issued) => {
                attempt.succeeded().await;
                info!(session.id = %issued.session_id, "login succeeded with a second factor");
                Ok(issued)
            }
            Err(err) => {
                match err {
                    AuthError::InvalidCode => {
                        info!("second factor refused: invalid code");
                        let event = Event::new(EventType::MfaFailed, Some(user_id)).with("during", "sign_in");
                        self.audit_alone(event, client).await;
                    }
                    AuthError::AccountDisabled => {
                        info!("sign-in refused: account disabled");
                        let event = Event::new(EventType::LoginFailed, Some(user_id))
                            .with("reason", "account_disabled");
                        self.audit_alone(event, client).await;
                    }
                    _ => {}
                }
                Err(err)
            }
        }
    }

    /// Step-up for a signed-in session: a valid code gives the same session a new pair
    /// with a fresh `auth_time` (`amr` gains `otp` and `mfa`). The session's other
    /// refresh tokens stop working, as after a password change.
    #[instrument(skip_all, fields(user.id = %viewer.user.id, session.id = %viewer.session_id))]
    pub async fn step_up(
        &self,
        viewer: &Viewer,
        code: &str,
        client: &ClientInfo,
    ) -> Result<Issued, AuthError> {
        let code = Code::parse(code)?;
        {
            let mut conn = self.conn().await?;
            if !db::factors::has_active(&mut conn, viewer.user.id).await? {
                return Err(AuthError::input(
                    "code",
                    "this account has no second factor to verify: set one up with enrollTotp",
                ));
            }
        }
        let device = self.device_of(client, viewer.user.id);
        let attempt = self
            .throttle
            .login(&super::account_key(&viewer.user), client, device)
            .await?;
        let (user_id, session_id) = (viewer.user.id, viewer.session_id);
        let mut conn = self.conn().await?;
        let outcome = conn
            .transaction::<_, AuthError, _>(async |conn| {
                let now = Utc::now();
                let session = db::sessions::lock(conn, session_id)
                    .await?
                    .filter(|s| super::sessions::live(s, now))
                    .ok_or(AuthError::Unauthenticated(super::TokenProblem::Revoked))?;
                self.use_code(conn, user_id, &code, now).await?;
                let assurance = super::sessions::assurance_of(&session).with_second_factor(now);
                self.reissue(conn, &session, &assurance, now).await
            })
            .await;
        drop(conn);
        match outcome {
            Ok(issued) => {
                attempt.succeeded().await;
                info!("step-up succeeded");
                Ok(issued)
            }
            Err(err) => {
                if matches!(err, AuthError::InvalidCode) {
                    info!("step-up refused: invalid code");
                    let event = Event::new(EventType::MfaFailed, Some(user_id))
                        .session(session_id)
                        .with("during", "step_up");
                    self.audit_alone(event, client).await;
                }
                Err(err)
            }
        }
    }

    /// Uses a code of `user_id` inside the caller's transaction: a TOTP code of an active
    /// factor at a step after that factor's last one, or an unused recovery code.
    async fn use_code(
        &self,
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        code: &Code,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        match code {
            Code::Totp(code) => {
                for factor in db::factors::lock_active(conn, user_id).await? {
                    if let Some(step) = self.matching_step(&factor, code, now)? {
                        db::factors::record_use(conn, factor.id, step, now).await?;
                        return Ok(());
                    }
                }
                Err(AuthError::InvalidCode)
            }
            Code::Recovery(hash) => {
                if db::factors::use_recovery_code(conn, user_id, hash).await? {
                    info!("recovery code used");
                    Ok(())
                } else {
                    Err(AuthError::InvalidCode)
                }
            }
        }
    }

    /// The step `code` matches for `factor` at `now`, unless that step was already used.
    fn matching_step(
        &self,
        factor: &db::factors::Factor,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, AuthError> {
        let secret = self
            .mfa
            .cipher
            .open(&factor.secret_sealed, &seal_context(factor.id, factor.user_id))?;
        let step = totp::check(&secret, code, unix_seconds(now))?.map(step_value);
        Ok(step.filter(|step| factor.last_used_step.is_none_or(|last| *step > last)))
    }
}
