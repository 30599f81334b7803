//! Managing a user's second factors: TOTP enrollment and confirmation, removal, recovery
//! codes, the listings, and the reset by an operator or an admin. Checking a code (the
//! second step of a sign-in, step-up) is the parent module's job.

use anyhow::anyhow;
use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use secrecy::{ExposeSecret, SecretString};
use tracing::{info, instrument, warn};
use uuid::Uuid;

use super::{Code, RECOVERY_CODE_COUNT, recovery_code_hash, seal_context, totp};
use crate::{
    auth::{
        Auth, AuthError, ClientInfo, Viewer,
        audit::{Event, EventType},
        input::Email,
        step_up::Requirement,
    },
    db,
};

/// Random bytes in a recovery code: 80 bits, 16 base32 characters.
const RECOVERY_CODE_BYTES: usize = 10;

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

impl Auth {
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
                    let assurance = crate::auth::sessions::assurance_of(&session).with_second_factor(now);
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
