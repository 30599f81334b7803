//! Account use cases: profile, password change, deletion.

use chrono::Utc;
use diesel_async::AsyncConnection;
use tracing::{info, instrument};

use super::{
    Auth, AuthError, ClientInfo, Issued, Viewer,
    input::{DisplayName, Email, Password},
    step_up::Requirement,
};
use crate::db::{self, users::User};

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
    ) -> Result<User, AuthError> {
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
        let new = Password::new_password(new, "newPassword")?;
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
                info!(other_sessions_ended = ended, "password changed");
                Ok(issued)
            })
            .await?;
        Ok(issued)
    }

    /// Deletes the caller's account and everything theirs, after checking the password
    /// (every account has one so far; one without would be deleted on step-up alone,
    /// [`Requirement::Passwordless`]).
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn delete_account(
        &self,
        viewer: &Viewer,
        password: Option<&str>,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let password = password
            .ok_or_else(|| AuthError::input("password", "enter your password to delete the account"))?;
        self.require_step_up(viewer, Requirement::PasswordConfirmed)
            .await?;
        self.confirm_password(viewer, password, client, "account deletion")
            .await?;
        let mut conn = self.conn().await?;
        db::users::delete(&mut conn, viewer.user.id).await?;
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
            .login(&Email::stored(&viewer.user.email), client)
            .await?;
        let stored = Some(viewer.user.password_hash.clone());
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
