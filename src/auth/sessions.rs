//! Session use cases: refresh-token rotation with reuse detection, logout, revocation.
//!
//! Every refresh of a session runs under a row lock on that session, so concurrent
//! refreshes queue in PostgreSQL and the rules hold across any number of replicas.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tracing::{info, instrument, warn};
use uuid::Uuid;

use super::{
    Auth, AuthError, ClientInfo, Issued,
    refresh_token::{PlainToken, Successor, open_successor, seal_successor},
    throttle::TokenCheck,
};
use crate::db::{self, refresh_tokens::Rotation, sessions::Session, users::User};

/// What a refresh transaction decided; reuse is decided inside but reported after
/// commit, so the revocation it caused is kept.
enum Refreshed {
    Issued(Issued),
    Reused { session_id: Uuid, user_id: Uuid },
}

fn live(session: &Session, now: DateTime<Utc>) -> bool {
    session.revoked_at.is_none() && session.expires_at > now && session.absolute_expires_at > now
}

impl Auth {
    /// Exchanges a refresh token for a new pair in the same session. A token already
    /// exchanged answers the same pair inside the grace window, and otherwise ends the
    /// session (`TOKEN_REUSED`).
    #[instrument(skip_all, fields(session.id, user.id))]
    pub async fn refresh(&self, presented: Option<&str>, client: &ClientInfo) -> Result<Issued, AuthError> {
        let presented = presented
            .map(PlainToken::presented)
            .ok_or(AuthError::InvalidToken)?;
        // Unusable tokens count against the address; good ones cost one read, pipelined
        // with the session lock.
        let check = self.throttle.token_check(client);
        let mut outcome = self.exchange(&presented, &check).await;
        if matches!(outcome, Err(AuthError::Unavailable)) {
            // Once more on a fresh connection (a failover closed the first): safe even if
            // the first try committed, since the retry then finds the token rotated
            // moments ago and answers the same sealed successor within the grace window.
            outcome = self.exchange(&presented, &check).await;
        }
        check.settle(&outcome).await;
        outcome
    }

    /// The body of [`Auth::refresh`], once the address may try.
    async fn exchange(&self, presented: &PlainToken, check: &TokenCheck) -> Result<Issued, AuthError> {
        let hash = presented.hash();
        let mut conn = self.conn().await?;
        let outcome = conn
            .transaction::<_, AuthError, _>(async |conn| {
                // Pipelined, one round trip: the address's wait, then the lock, then the
                // token. PostgreSQL runs the token read after the lock is granted, with a
                // fresh snapshot, so it sees a rotation that committed while this request
                // waited for the lock.
                let shared: &AsyncPgConnection = conn;
                let waiting = async {
                    match check.key() {
                        Some(key) => db::throttle::locked_until(shared, key).await,
                        None => Ok(None),
                    }
                };
                let (locked_until, session, found) = tokio::try_join!(
                    waiting,
                    db::sessions::lock_by_token(shared, &hash.0),
                    db::refresh_tokens::find_with_owner(shared, &hash.0),
                )?;
                check.admit(locked_until)?;
                let (Some(session), Some((token, user))) = (session, found) else {
                    return Err(AuthError::InvalidToken);
                };
                let now = Utc::now();
                if !live(&session, now) {
                    return Err(AuthError::InvalidToken);
                }
                let Some(rotated_at) = token.rotated_at else {
                    if token.expires_at <= now {
                        return Err(AuthError::InvalidToken);
                    }
                    return self
                        .rotate(conn, presented, &session, user, now)
                        .await
                        .map(Refreshed::Issued);
                };
                let grace =
                    chrono::TimeDelta::from_std(self.policy.refresh_grace).unwrap_or(chrono::TimeDelta::MAX);
                let in_grace = now - rotated_at <= grace;
                let successor = token
                    .successor_sealed
                    .as_deref()
                    .and_then(|s| open_successor(presented, s));
                match successor {
                    Some(successor) if in_grace => Ok(Refreshed::Issued(Issued {
                        user,
                        session_id: session.id,
                        access_token: successor.access_token,
                        refresh_token: PlainToken::presented(&successor.refresh_token),
                        expires_in: self.keys.ttl().as_secs(),
                        refresh_expires_in: successor.refresh_expires_in,
                    })),
                    _ => {
                        db::sessions::revoke(conn, session.id, "refresh_token_reused").await?;
                        Ok(Refreshed::Reused {
                            session_id: session.id,
                            user_id: session.user_id,
                        })
                    }
                }
            })
            .await?;
        match outcome {
            Refreshed::Issued(issued) => {
                let span = tracing::Span::current();
                span.record("session.id", tracing::field::display(issued.session_id));
                span.record("user.id", tracing::field::display(issued.user.id));
                Ok(issued)
            }
            Refreshed::Reused { session_id, user_id } => {
                crate::metrics::refresh_token_reused();
                warn!(session.id = %session_id, user.id = %user_id, "refresh token reused: session revoked");
                Err(AuthError::TokenReused)
            }
        }
    }

    /// Issues the successor of `parent` and seals it under `parent` for the grace window.
    async fn rotate(
        &self,
        conn: &mut AsyncPgConnection,
        parent: &PlainToken,
        session: &Session,
        user: User,
        now: DateTime<Utc>,
    ) -> Result<Issued, AuthError> {
        let expires = (now + self.policy.refresh_ttl).min(session.absolute_expires_at);
        let refresh_token = PlainToken::generate()?;
        let access_token = self.keys.issue(user.id, session.id, user.role, now)?;
        let refresh_expires_in = (expires - now).num_seconds();
        let sealed = seal_successor(
            parent,
            &Successor {
                refresh_token: refresh_token.expose().to_owned(),
                access_token: access_token.clone(),
                refresh_expires_in,
            },
        )?;
        db::refresh_tokens::record_rotation(
            conn,
            &Rotation {
                session_id: session.id,
                parent_hash: &parent.hash().0,
                successor_sealed: &sealed,
                child_hash: &refresh_token.hash().0,
                child_expires_at: expires,
                at: now,
                grace_cutoff: now - self.policy.refresh_grace,
            },
        )
        .await?;
        Ok(Issued {
            user,
            session_id: session.id,
            access_token,
            refresh_token,
            expires_in: self.keys.ttl().as_secs(),
            refresh_expires_in,
        })
    }

    /// Stores a new refresh token for a session: it lives `refresh_ttl`, never past
    /// the session's absolute end.
    pub(super) async fn issue_refresh_token(
        &self,
        conn: &mut AsyncPgConnection,
        session_id: Uuid,
        absolute_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(PlainToken, DateTime<Utc>), AuthError> {
        let expires = (now + self.policy.refresh_ttl).min(absolute_expires_at);
        let token = PlainToken::generate()?;
        db::refresh_tokens::insert(conn, &token.hash().0, session_id, expires).await?;
        Ok((token, expires))
    }

    /// Ends the session of a refresh token. Unknown tokens succeed too: logging out
    /// must never tell a caller whether a token existed.
    #[instrument(skip_all, fields(session.id))]
    pub async fn logout(&self, presented: &str) -> Result<(), AuthError> {
        let hash = PlainToken::presented(presented).hash();
        let mut conn = self.conn().await?;
        if let Some(token) = db::refresh_tokens::find(&mut conn, &hash.0).await?
            && db::sessions::revoke(&mut conn, token.session_id, "logout").await?
        {
            info!(session.id = %token.session_id, "session ended by logout");
        }
        Ok(())
    }

    /// Ends every session of a user; answers how many were live.
    #[instrument(skip_all, fields(user.id = %user_id))]
    pub async fn logout_everywhere(&self, user_id: Uuid) -> Result<usize, AuthError> {
        let mut conn = self.conn().await?;
        let ended = db::sessions::revoke_all_for_user(&mut conn, user_id, "logout_all").await?;
        info!(sessions = ended, "all sessions ended by logout");
        Ok(ended)
    }

    /// Ends one of the caller's own live sessions; false for anything else, so the
    /// answer reveals nothing about other users' sessions.
    #[instrument(skip_all, fields(user.id = %user_id, session.id = %session_id))]
    pub async fn revoke_session(&self, user_id: Uuid, session_id: Uuid) -> Result<bool, AuthError> {
        let mut conn = self.conn().await?;
        let revoked = db::sessions::revoke_owned(&mut conn, session_id, user_id, "revoked").await?;
        if revoked {
            info!("session revoked by its owner");
        }
        Ok(revoked)
    }
}
