//! Account use cases: profile, password change, deletion.

use anyhow::Context;
use chrono::Utc;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tracing::{info, instrument, warn};

use super::{
    Auth, AuthError, ClientInfo, Issued, Viewer,
    audit::{Event, EventType},
    input::{DisplayName, Email, Password},
    step_up::Requirement,
};
use crate::db::{self, users::Account};

/// A requested change to a nullable field: leave it, clear it, or set it.
#[derive(Debug)]
pub enum Change<T> {
    /// The field was absent: keep the current value.
    Keep,
    /// The field was `null`: clear it.
    Clear,
    /// A new value.
    Set(T),
}

impl Auth {
    /// Updates the caller's profile.
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn update_profile(
        &self,
        viewer: &Viewer,
        display_name: Change<&str>,
    ) -> Result<Account, AuthError> {
        let display_name = match display_name {
            Change::Keep => return Ok(viewer.user.clone()),
            Change::Clear => None,
            Change::Set(raw) => Some(DisplayName::parse(raw)?),
        };
        let mut conn = self.conn().await?;
        let user = db::users::set_display_name(
            &mut conn,
            viewer.user.id,
            display_name.as_ref().map(DisplayName::as_str),
        )
        .await?;
        Ok(user)
    }

    /// Changes the caller's password: the current session gets a new pair (same `sid`),
    /// every other session ends (ASVS 7.4.3).
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn change_password(
        &self,
        viewer: &Viewer,
        current: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<Issued, AuthError> {
        let new = self.new_password(new, "newPassword").await?;
        // Before the password check: a refusal here costs no guess.
        self.require_step_up(viewer, Requirement::PasswordConfirmed)
            .await?;
        self.confirm_password(viewer, current, client, "password change")
            .await?;
        let hash = self.passwords.hash(new).await?;
        let (user_id, session_id) = (viewer.user.id, viewer.session_id);
        let mut conn = self.conn().await?;
        let issued = conn
            .transaction::<_, AuthError, _>(async |conn| {
                db::users::set_password_hash(conn, user_id, &hash).await?;
                let ended =
                    db::sessions::revoke_all_except(conn, user_id, session_id, "password_change").await?;
                let session = db::sessions::lock(conn, session_id)
                    .await?
                    .ok_or(AuthError::InvalidToken)?;
                // The session keeps how it was authenticated: a password change is no sign-in.
                let assurance = super::sessions::assurance_of(&session);
                let issued = self.reissue(conn, &session, &assurance, Utc::now()).await?;
                let event = Event::new(EventType::PasswordChanged, Some(user_id))
                    .session(session_id)
                    .with("otherSessionsEnded", ended);
                self.audit(conn, event, client).await?;
                info!(other_sessions_ended = ended, "password changed");
                Ok(issued)
            })
            .await?;
        Ok(issued)
    }

    /// Deletes the caller's account and everything theirs, after checking the password;
    /// an account without one (social sign-in only) is deleted on step-up alone
    /// ([`Requirement::Passwordless`]).
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn delete_account(
        &self,
        viewer: &Viewer,
        password: Option<&str>,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        if !viewer.user.has_password {
            self.require_step_up(viewer, Requirement::Passwordless).await?;
        } else {
            let password = password
                .ok_or_else(|| AuthError::input("password", "enter your password to delete the account"))?;
            self.require_step_up(viewer, Requirement::PasswordConfirmed)
                .await?;
            self.confirm_password(viewer, password, client, "account deletion")
                .await?;
        }
        let (user_id, session_id) = (viewer.user.id, viewer.session_id);
        let mut conn = self.conn().await?;
        conn.transaction::<_, AuthError, _>(async |conn| {
            // Recorded first, so the `user.deleted` webhook can still read the address.
            // Neither the audit row nor the delivery has a foreign key to users: both
            // outlive the account, and both commit with the deletion or not at all.
            let event = Event::new(EventType::UserDeleted, Some(user_id)).session(session_id);
            self.audit(conn, event, client).await?;
            db::users::delete(conn, user_id).await?;
            Ok(())
        })
        .await?;
        info!("account deleted");
        Ok(())
    }

    /// Checks the caller's own password before a sensitive change. It is guessed like a
    /// login (a stolen access token must not buy unlimited guesses): the same counters.
    async fn confirm_password(
        &self,
        viewer: &Viewer,
        password: &str,
        client: &ClientInfo,
        action: &'static str,
    ) -> Result<(), AuthError> {
        let attempt = self
            .throttle
            .login(
                &super::account_key(&viewer.user),
                client,
                self.device_of(client, viewer.user.id),
            )
            .await?;
        // No password: the dummy hash runs, and the answer is a wrong password's.
        let stored = {
            let mut conn = self.conn().await?;
            db::users::password_hash(&mut conn, viewer.user.id).await?
        };
        if !self
            .passwords
            .verify(Password::candidate(password), stored)
            .await?
        {
            info!(action, "refused: wrong current password");
            return Err(AuthError::InvalidCredentials);
        }
        attempt.succeeded().await;
        Ok(())
    }
}

/// What [`normalise_stored_emails`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Normalised {
    /// Rows rewritten into the canonical spelling.
    pub rewritten: usize,
    /// Rows left as they are: another account already holds the canonical spelling.
    pub duplicates: usize,
    /// Rows left as they are: the stored address is refused by today's rules.
    pub invalid: usize,
}

/// Brings emails stored before Unicode normalisation (NFKC local part, UTS #46 domain)
/// into the canonical spelling [`Email::parse`] gives, so logins and resets, which look
/// addresses up by that spelling, find them. Runs after the SQL migrations (SQL has no
/// UTS #46), and is cheap to repeat: only rows with non-ASCII text are read, since an
/// ASCII address was already canonical. Two accounts whose addresses turn out to be one
/// cannot be merged by a machine: the one holding the canonical spelling keeps it, the
/// other keeps its old spelling (which no sign-in can reach any more) and is logged by
/// id for an operator, as is an address today's rules refuse.
pub async fn normalise_stored_emails(url: &str) -> anyhow::Result<Normalised> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .context("connecting to normalise stored emails")?;
    let mut done = Normalised::default();
    for (id, stored) in db::users::with_non_ascii_email(&mut conn).await? {
        let canonical = match Email::parse(&stored, "email") {
            Ok(email) if email.as_str() == stored => continue,
            Ok(email) => email,
            Err(_) => {
                warn!(user.id = %id, "stored email is refused by the address rules: left as it is");
                done.invalid += 1;
                continue;
            }
        };
        match db::users::set_email(&mut conn, id, canonical.as_str()).await {
            Ok(_) => done.rewritten += 1,
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                let holder = db::users::find_by_email(&mut conn, canonical.as_str()).await?;
                warn!(
                    user.id = %id,
                    holder.id = ?holder.map(|u| u.id),
                    "another account already holds this email in its canonical spelling: left as it is, merge or delete one"
                );
                done.duplicates += 1;
            }
            Err(e) => return Err(e).context("rewriting a stored email"),
        }
    }
    if done != Normalised::default() {
        info!(
            rewritten = done.rewritten,
            duplicates = done.duplicates,
            invalid = done.invalid,
            "stored emails normalised"
        );
    }
    Ok(done)
}
