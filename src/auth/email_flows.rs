//! Email use cases: verification and password reset by single-use mailed tokens.
//!
//! Each mail is queued in the outbox inside the transaction of the change that causes it
//! (the token row), so a mail exists if and only if its token does; nothing here waits on
//! SMTP. Tokens are stored as SHA-256 hashes, and a newer token of a kind voids the older.

use std::time::Duration;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tokio::time::Instant;
use tracing::{info, instrument};
use uuid::Uuid;

use super::{
    Auth, AuthError, ClientInfo, Viewer,
    audit::{Event, EventType},
    input::Email,
    input::Password,
    token::OpaqueToken,
};
use crate::db::{self, email_tokens::Purpose};

/// Lifetime of an email verification token.
pub const VERIFY_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Lifetime of a password reset token.
pub const RESET_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// `requestPasswordReset` answers no sooner than this, whether the address is known (a
/// token and a mail are written) or not (nothing is), so its timing reveals nothing
/// (ASVS 6.3.8). Well above the cost of the writes.
const RESET_REQUEST_MIN_TIME: Duration = Duration::from_millis(250);

impl Auth {
    /// Issues a verification token for `user` and queues its mail, on `conn` (inside the
    /// caller's transaction).
    pub(super) async fn queue_verification(
        &self,
        conn: &AsyncPgConnection,
        user_id: Uuid,
        address: Option<&str>,
    ) -> Result<(), AuthError> {
        // An account made from a provider identity may have no address to verify.
        let Some(address) = address else {
            return Ok(());
        };
        let token = OpaqueToken::generate()?;
        let expires_at = Utc::now() + VERIFY_TOKEN_TTL;
        db::email_tokens::replace(
            conn,
            token.hash().as_bytes(),
            user_id,
            Purpose::VerifyEmail,
            address,
            expires_at,
        )
        .await?;
        let mail = self
            .mail
            .verification(user_id, address, token.expose(), VERIFY_TOKEN_TTL);
        db::outbox::insert(conn, &mail).await?;
        info!(user.id = %user_id, mail.id = %mail.id, "verification mail queued");
        Ok(())
    }

    /// Mails the caller a new verification link (voiding any older one); answers true
    /// and sends nothing when the address is already verified.
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn request_email_verification(
        &self,
        viewer: &Viewer,
        client: &ClientInfo,
    ) -> Result<bool, AuthError> {
        if viewer.user.email_verified_at.is_some() {
            info!("email already verified: no mail sent");
            return Ok(true);
        }
        let Some(address) = viewer.user.email.as_deref() else {
            return Err(AuthError::input(
                "email",
                "this account has no email address to verify",
            ));
        };
        let _counted = self
            .throttle
            .mail_request(&Email::stored(address), client)
            .await?;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AuthError, _>(async |conn| {
            self.queue_verification(conn, viewer.user.id, viewer.user.email.as_deref())
                .await
        })
        .await?;
        Ok(true)
    }

    /// Proves an address with a mailed verification token; the token works once.
    #[instrument(skip_all, fields(user.id))]
    pub async fn verify_email(&self, token: &str, client: &ClientInfo) -> Result<bool, AuthError> {
        let token = presented(token)?;
        let check = self.throttle.token(client).await?;
        let outcome = async {
            let mut conn = self.conn().await?;
            conn.transaction::<_, AuthError, _>(async |conn| {
                let (user_id, email) =
                    db::email_tokens::consume(conn, token.hash().as_bytes(), Purpose::VerifyEmail)
                        .await?
                        .ok_or(AuthError::InvalidToken)?;
                // The token proves the address it was mailed to, not a later one.
                if db::users::mark_email_verified(conn, user_id, &email).await? == 0 {
                    return Err(AuthError::InvalidToken);
                }
                self.audit(conn, Event::new(EventType::EmailVerified, Some(user_id)), client)
                    .await?;
                Ok(user_id)
            })
            .await
        }
        .await;
        let user_id = check.settle(outcome).await?;
        tracing::Span::current().record("user.id", tracing::field::display(user_id));
        info!("email verified");
        Ok(true)
    }

    /// Mails a password reset link to the account with this address, if there is one.
    /// Answers true either way, in the same time, so it reveals nothing.
    #[instrument(skip_all, fields(user.id))]
    pub async fn request_password_reset(&self, email: &str, client: &ClientInfo) -> Result<bool, AuthError> {
        let started = Instant::now();
        let email = Email::parse(email, "email")?;
        // Counted per address string, known or not: a refusal reveals nothing either.
        let _counted = self.throttle.mail_request(&email, client).await?;
        let queued = self.queue_password_reset(&email).await;
        tokio::time::sleep_until(started + RESET_REQUEST_MIN_TIME).await;
        queued.map(|()| true)
    }

    async fn queue_password_reset(&self, email: &Email) -> Result<(), AuthError> {
        // Drawn for unknown addresses too: both paths do the same work until the writes.
        let token = OpaqueToken::generate()?;
        let mut conn = self.conn().await?;
        conn.transaction::<_, AuthError, _>(async |conn| {
            let Some(user) = db::users::find_by_email(conn, email.as_str()).await? else {
                info!("password reset requested for an unknown address: no mail sent");
                return Ok(());
            };
            tracing::Span::current().record("user.id", tracing::field::display(user.id));
            let expires_at = Utc::now() + RESET_TOKEN_TTL;
            db::email_tokens::replace(
                conn,
                token.hash().as_bytes(),
                user.id,
                Purpose::ResetPassword,
                email.as_str(),
                expires_at,
            )
            .await?;
            let mail = self
                .mail
                .password_reset(user.id, email.as_str(), token.expose(), RESET_TOKEN_TTL);
            db::outbox::insert(conn, &mail).await?;
            info!(mail.id = %mail.id, "password reset mail queued");
            Ok(())
        })
        .await
    }

    /// Sets a new password with a mailed reset token (once), ends every session of the
    /// user and marks the address verified: the mail reached it.
    #[instrument(skip_all, fields(user.id))]
    pub async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
        client: &ClientInfo,
    ) -> Result<bool, AuthError> {
        let token = presented(token)?;
        let password = Password::new_password(new_password, "newPassword")?;
        let check = self.throttle.token(client).await?;
        let outcome = async {
            let hash = token.hash();
            // A cheap look first, so a wrong token costs no password hash; the token is used
            // up atomically below, where a concurrent reset with it loses.
            {
                let mut conn = self.conn().await?;
                if !db::email_tokens::is_live(&mut conn, hash.as_bytes(), Purpose::ResetPassword).await? {
                    return Err(AuthError::InvalidToken);
                }
            }
            // Only for a live token: junk tokens must not make us call the range service.
            self.not_breached(&password, "newPassword").await?;
            // Hash before taking a connection: a connection is never held across argon2.
            let password_hash = self.passwords.hash(password).await?;
            let mut conn = self.conn().await?;
            conn.transaction::<_, AuthError, _>(async |conn| {
                let (user_id, email) =
                    db::email_tokens::consume(conn, hash.as_bytes(), Purpose::ResetPassword)
                        .await?
                        .ok_or(AuthError::InvalidToken)?;
                db::users::set_password_hash(conn, user_id, &password_hash).await?;
                db::users::mark_email_verified(conn, user_id, &email).await?;
                // Verified now: a pending verification link has nothing left to prove.
                db::email_tokens::delete_for_user(conn, user_id, Purpose::VerifyEmail).await?;
                let revoked = db::sessions::revoke_all_for_user(conn, user_id, "password_reset").await?;
                let event =
                    Event::new(EventType::PasswordReset, Some(user_id)).with("sessionsEnded", revoked);
                self.audit(conn, event, client).await?;
                Ok((user_id, revoked))
            })
            .await
        }
        .await;
        let (user_id, revoked) = check.settle(outcome).await?;
        tracing::Span::current().record("user.id", tracing::field::display(user_id));
        info!(sessions.revoked = revoked, "password reset");
        Ok(true)
    }
}

/// A token as a client presented it; blank is an input error on `token`.
fn presented(token: &str) -> Result<OpaqueToken, AuthError> {
    if token.trim().is_empty() {
        return Err(AuthError::input("token", "token is required"));
    }
    Ok(OpaqueToken::presented(token))
}
