//! Second factors: TOTP enrollment and confirmation, recovery codes, the second step of a
//! sign-in (`MFA_REQUIRED`, then `verifyMfa` with its `mfaToken`), step-up for a signed-in
//! session (`verifyMfa` without one), the step-up rule sensitive operations call, and the
//! operator reset.
//!
//! Wrong codes count against the login throttle (per account, per account and address,
//! per address), counted before the check like a password, so no alias, batch or race
//! gets more guesses than a password would.

pub mod cipher;
pub mod totp;

use std::{sync::Arc, time::Duration};

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use secrecy::{ExposeSecret, SecretString};
use tracing::{info, instrument, warn};
use uuid::Uuid;

use super::{
    Auth, AuthError, ClientInfo, Issued, Viewer,
    audit::{Event, EventType},
    input::Email,
    token::{OpaqueToken, TokenHash},
    step_up::{self, Assurance, Method, Requirement},
};
use crate::{config::MfaConfig, db};
use cipher::SecretCipher;

/// `extensions.factors` of `MFA_REQUIRED`: the kinds of code `verifyMfa` takes.
pub const FACTORS: [&str; 2] = ["TOTP", "RECOVERY_CODE"];
/// Recovery codes handed out at a time.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Random bytes in a recovery code: 80 bits, 16 base32 characters.
const RECOVERY_CODE_BYTES: usize = 10;

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

/// A TOTP factor waiting for `confirmTotp`: what the user copies or scans, shown once.
pub struct TotpEnrollment {
    /// The factor to confirm.
    pub factor_id: Uuid,
    /// The secret in base32.
    pub secret: SecretString,
    /// `otpauth://totp/...`, carrying the secret.
    pub otpauth_uri: SecretString,
    /// The URI as a QR code in SVG.
    pub qr_code_svg: String,
}

impl std::fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpEnrollment")
            .field("factor_id", &self.factor_id)
            .finish_non_exhaustive()
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

/// Ten new recovery codes (`xxxx-xxxx-xxxx-xxxx`, base32) and their hashes.
fn new_recovery_codes() -> anyhow::Result<(Vec<String>, Vec<[u8; 32]>)> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    let mut hashes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    for _ in 0..RECOVERY_CODE_COUNT {
        let mut bytes = [0u8; RECOVERY_CODE_BYTES];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow!("system random source"))?;
        let bits = bytes.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
        let chars: String = (0..16)
            .rev()
            .map(|i| char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize]))
            .collect();
        hashes.push(recovery_code_hash(&chars));
        codes.push(format!(
            "{}-{}-{}-{}",
            &chars[..4],
            &chars[4..8],
            &chars[8..12],
            &chars[12..]
        ));
    }
    Ok((codes, hashes))
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

    /// Starts a TOTP enrollment: a new secret, pending until [`Auth::confirm_totp`].
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn enroll_totp(&self, viewer: &Viewer) -> Result<TotpEnrollment, AuthError> {
        self.require_step_up(viewer, Requirement::SignInMethod).await?;
        let user = &viewer.user;
        let secret = totp::generate_secret();
        let factor_id = Uuid::new_v4();
        let sealed = self.mfa.cipher.seal(&secret, &seal_context(factor_id, user.id))?;
        // The label authenticator apps show: the email, or for an account without one
        // its display name or id.
        let label = match (&user.email, &user.display_name) {
            (Some(email), _) => email.clone(),
            (None, Some(name)) => name.clone(),
            (None, None) => user.id.to_string(),
        };
        let uri = totp::otpauth_uri(&secret, &self.mfa.totp_issuer, &label)?;
        let qr_code_svg = totp::qr_svg(&uri)?;
        let mut conn = self.conn().await?;
        db::factors::insert_pending(
            &mut conn,
            &db::factors::NewFactor {
                id: factor_id,
                user_id: user.id,
                kind: db::factors::KIND_TOTP,
                secret_sealed: &sealed,
            },
        )
        .await?;
        info!(factor.id = %factor_id, "TOTP enrollment started");
        Ok(TotpEnrollment {
            factor_id,
            secret: SecretString::from(totp::base32(&secret)),
            otpauth_uri: SecretString::from(uri),
            qr_code_svg,
        })
    }

    /// Activates a pending TOTP factor with a valid code. The user's first factor also
    /// answers 10 new recovery codes (shown once), ends every other session and raises
    /// this one to `aal2` (the code was a second factor, verified now); any later
    /// confirmation answers `[]`.
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn confirm_totp(
        &self,
        viewer: &Viewer,
        factor_id: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<Vec<String>, AuthError> {
        let no_factor = || {
            AuthError::input(
                "factorId",
                "no pending factor has this id: start again with enrollTotp",
            )
        };
        let factor_id = Uuid::parse_str(factor_id.trim()).map_err(|_| no_factor())?;
        let Code::Totp(code) = Code::parse(code)? else {
            return Err(AuthError::InvalidCode);
        };
        self.require_step_up(viewer, Requirement::SignInMethod).await?;
        let (user_id, session_id) = (viewer.user.id, viewer.session_id);
        let mut conn = self.conn().await?;
        let (codes, ended) = conn
            .transaction::<_, AuthError, _>(async |conn| {
                let factor = db::factors::lock_owned(conn, factor_id, user_id)
                    .await?
                    .ok_or_else(no_factor)?;
                let now = Utc::now();
                let step = self
                    .matching_step(&factor, &code, now)?
                    .ok_or(AuthError::InvalidCode)?;
                if factor.confirmed_at.is_some() {
                    db::factors::record_use(conn, factor.id, step, now).await?;
                    return Ok((Vec::new(), 0));
                }
                let first = !db::factors::has_active(conn, user_id).await?;
                db::factors::confirm(conn, factor.id, step, now).await?;
                let event = Event::new(EventType::MfaEnrolled, Some(user_id))
                    .session(session_id)
                    .with("factorId", factor.id.to_string())
                    .with("kind", "TOTP");
                self.audit(conn, event, client).await?;
                if !first {
                    return Ok((Vec::new(), 0));
                }
                let (codes, hashes) = new_recovery_codes()?;
                db::factors::replace_recovery_codes(conn, user_id, &hashes).await?;
                let ended =
                    db::sessions::revoke_all_except(conn, user_id, session_id, "mfa_enrolled").await?;
                if let Some(session) = db::sessions::lock(conn, session_id).await? {
                    let assurance = super::sessions::assurance_of(&session).with_second_factor(now);
                    db::sessions::set_assurance(
                        conn,
                        session_id,
                        &assurance.amr_strings(),
                        assurance.acr(),
                        now,
                    )
                    .await?;
                }
                Ok((codes, ended))
            })
            .await?;
        if codes.is_empty() {
            info!(factor.id = %factor_id, "TOTP factor confirmed");
        } else {
            info!(factor.id = %factor_id, other_sessions_ended = ended, "first factor confirmed: MFA on");
        }
        Ok(codes)
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

    /// Removes one factor of the caller; removing the last active one also deletes the
    /// recovery codes. False for an id that is not one of the caller's factors.
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn remove_factor(
        &self,
        viewer: &Viewer,
        factor_id: &str,
        client: &ClientInfo,
    ) -> Result<bool, AuthError> {
        let Ok(factor_id) = Uuid::parse_str(factor_id.trim()) else {
            return Ok(false);
        };
        self.require_step_up(viewer, Requirement::SignInMethod).await?;
        let user_id = viewer.user.id;
        let mut conn = self.conn().await?;
        let (removed, mfa_off) = conn
            .transaction::<_, AuthError, _>(async |conn| {
                if !db::factors::delete_owned(conn, factor_id, user_id).await? {
                    return Ok((false, false));
                }
                let mfa_off = !db::factors::has_active(conn, user_id).await?;
                if mfa_off {
                    db::factors::delete_recovery_codes(conn, user_id).await?;
                    db::mfa_challenges::delete_for_user(conn, user_id).await?;
                }
                let event = Event::new(EventType::MfaRemoved, Some(user_id))
                    .session(viewer.session_id)
                    .with("factorId", factor_id.to_string())
                    .with("mfaOff", mfa_off);
                self.audit(conn, event, client).await?;
                Ok((true, mfa_off))
            })
            .await?;
        if removed {
            info!(factor.id = %factor_id, mfa_off, "factor removed");
        }
        Ok(removed)
    }

    /// Replaces the caller's recovery codes with 10 new ones, shown once.
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn regenerate_recovery_codes(&self, viewer: &Viewer) -> Result<Vec<String>, AuthError> {
        self.require_step_up(viewer, Requirement::SignInMethod).await?;
        let user_id = viewer.user.id;
        let (codes, hashes) = new_recovery_codes()?;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AuthError, _>(async |conn| {
            // Recovery codes stand in for a factor: without one they would sign in nobody.
            if !db::factors::has_active(conn, user_id).await? {
                return Err(AuthError::Forbidden);
            }
            db::factors::replace_recovery_codes(conn, user_id, &hashes).await?;
            Ok(())
        })
        .await?;
        info!("recovery codes regenerated");
        Ok(codes)
    }

    /// A user's active factors, oldest first.
    pub async fn factors_of(&self, user_id: Uuid) -> Result<Vec<db::factors::Factor>, AuthError> {
        let mut conn = self.conn().await?;
        Ok(db::factors::list_active(&mut conn, user_id).await?)
    }

    /// How many unused recovery codes a user has.
    pub async fn recovery_codes_left(&self, user_id: Uuid) -> Result<i64, AuthError> {
        let mut conn = self.conn().await?;
        Ok(db::factors::recovery_codes_left(&mut conn, user_id).await?)
    }

    /// Removes every factor and recovery code of a user by email (operator command, for
    /// a user who lost both); `None` when no user has that email. Sessions stay: the
    /// user signs in with the password alone next time.
    #[instrument(skip_all, fields(user.id))]
    pub async fn reset_mfa(&self, email: &str) -> Result<Option<usize>, AuthError> {
        let email = Email::parse(email, "email")?;
        let mut conn = self.conn().await?;
        let outcome = conn
            .transaction::<_, AuthError, _>(async |conn| {
                let Some(user) = db::users::find_by_email(conn, email.as_str()).await? else {
                    return Ok(None);
                };
                let (factors, codes) = self
                    .clear_factors(conn, user.id, None, &ClientInfo::default())
                    .await?;
                Ok(Some((user.id, factors, codes)))
            })
            .await?;
        let Some((user_id, factors, codes)) = outcome else {
            return Ok(None);
        };
        tracing::Span::current().record("user.id", tracing::field::display(user_id));
        warn!(
            factors.removed = factors,
            recovery_codes.removed = codes,
            actor = "operator",
            "MFA reset: every factor and recovery code removed"
        );
        Ok(Some(factors))
    }

    /// Removes every factor, recovery code and pending second step of `user_id` inside
    /// the caller's transaction, and records `mfa.reset` by `actor` (an admin; `None`: an
    /// operator command). Answers how many factors and codes went.
    pub(crate) async fn clear_factors(
        &self,
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        actor: Option<Uuid>,
        client: &ClientInfo,
    ) -> Result<(usize, usize), AuthError> {
        let factors = db::factors::delete_all(conn, user_id).await?;
        let codes = db::factors::delete_recovery_codes(conn, user_id).await?;
        db::mfa_challenges::delete_for_user(conn, user_id).await?;
        let event = Event::new(EventType::MfaReset, Some(user_id))
            .by(actor)
            .with("factorsRemoved", factors)
            .with("by", if actor.is_some() { "admin" } else { "operator" });
        self.audit(conn, event, client).await?;
        Ok((factors, codes))
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

impl TotpEnrollment {
    /// The base32 secret, for the enrolling user only.
    pub fn secret(&self) -> &str {
        self.secret.expose_secret()
    }

    /// The otpauth URI, for the enrolling user only.
    pub fn otpauth_uri(&self) -> &str {
        self.otpauth_uri.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_told_apart_by_shape() {
        assert!(matches!(Code::parse("123456"), Ok(Code::Totp(c)) if c == "123456"));
        assert!(matches!(Code::parse(" 123 456 "), Ok(Code::Totp(c)) if c == "123456"));
        assert!(matches!(Code::parse("12345"), Ok(Code::Recovery(_))));
        assert!(matches!(
            Code::parse("  "),
            Err(AuthError::InvalidInput { field: "code", .. })
        ));
    }

    #[test]
    fn recovery_codes_are_random_and_typed_loosely() {
        let (codes, hashes) = new_recovery_codes().unwrap();
        assert_eq!((codes.len(), hashes.len()), (10, 10));
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
        for (code, hash) in codes.iter().zip(&hashes) {
            assert_eq!(code.len(), 19, "{code}");
            assert!(
                code.chars()
                    .all(|c| c == '-' || c.is_ascii_lowercase() || ('2'..='7').contains(&c))
            );
            for typed in [code.clone(), code.to_uppercase(), code.replace('-', " ")] {
                assert!(
                    matches!(Code::parse(&typed), Ok(Code::Recovery(h)) if h == *hash),
                    "{typed}"
                );
            }
        }
    }
}
