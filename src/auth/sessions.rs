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
    audit::{Event, EventType},
    refresh_token::{Successor, open_successor, seal_successor},
    step_up::Assurance,
    throttle::TokenCheck,
    token::OpaqueToken,
};
use crate::db::{
    self,
    refresh_tokens::{RefreshToken, Rotation},
    sessions::Session,
    users::Account,
};

/// What a refresh transaction decided; reuse is decided inside but reported after
/// commit, so the revocation it caused is kept.
enum Refreshed {
    Issued(Issued),
    Reused { session_id: Uuid, user_id: Uuid },
}

/// Whether a session still stands at `now`.
pub(super) fn live(session: &Session, now: DateTime<Utc>) -> bool {
    session.revoked_at.is_none() && session.expires_at > now && session.absolute_expires_at > now
}

/// What a presented refresh token earns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Unknown, expired, or of an ended session: `INVALID_TOKEN`.
    Refuse,
    /// The session's current token: rotate it.
    Rotate,
    /// Rotated within the grace window: answer the successor it already got (two tabs
    /// racing each other).
    Replay,
    /// Rotated before, outside the grace window (or its successor cannot be opened):
    /// the token leaked or was replayed, so the session ends (`TOKEN_REUSED`).
    RevokeSession,
}

/// The refresh rules, decided from the locked session, the token row, whether the
/// token's sealed successor opened, the time and the grace window.
fn decide(
    session: &Session,
    token: &RefreshToken,
    successor_opened: bool,
    now: DateTime<Utc>,
    grace: chrono::TimeDelta,
) -> Decision {
    if !live(session, now) {
        return Decision::Refuse;
    }
    match token.rotated_at {
        None if token.expires_at <= now => Decision::Refuse,
        None => Decision::Rotate,
        Some(rotated_at) if now - rotated_at <= grace && successor_opened => Decision::Replay,
        Some(_) => Decision::RevokeSession,
    }
}

/// How a session was authenticated, as its stored `amr` and `auth_time` say.
pub(super) fn assurance_of(session: &Session) -> Assurance {
    Assurance::from_parts(
        session.amr.iter().flatten().map(String::as_str),
        session.auth_time,
    )
}

impl Auth {
    /// Exchanges a refresh token for a new pair in the same session. A token already
    /// exchanged answers the same pair inside the grace window, and otherwise ends the
    /// session (`TOKEN_REUSED`).
    #[instrument(skip_all, fields(session.id, user.id))]
    pub async fn refresh(&self, presented: Option<&str>, client: &ClientInfo) -> Result<Issued, AuthError> {
        let presented = presented
            .map(OpaqueToken::presented)
            .ok_or(AuthError::InvalidToken)?;
        // Unusable tokens count against the address, and only they wait for it; good ones
        // cost one read, pipelined with the session lock.
        let check = self.throttle.token_check(client);
        let mut outcome = self.exchange(&presented, &check, client).await;
        if matches!(outcome, Err(AuthError::Unavailable)) {
            // Once more on a fresh connection (a failover closed the first): safe even if
            // the first try committed, since the retry then finds the token rotated
            // moments ago and answers the same sealed successor within the grace window.
            outcome = self.exchange(&presented, &check, client).await;
        }
        check.settle(outcome).await
    }

    /// The body of [`Auth::refresh`], once the address may try.
    async fn exchange(
        &self,
        presented: &OpaqueToken,
        check: &TokenCheck,
        client: &ClientInfo,
    ) -> Result<Issued, AuthError> {
        let hash = presented.hash();
        let mut conn = self.conn().await?;
        let outcome = db::pipelined::transaction(&mut conn, async |tx| {
            // With the BEGIN, one round trip: the token, its session and owner, locked,
            // and the address's wait. Once the lock is granted PostgreSQL reads the
            // locked rows again, so a rotation that committed while this request waited
            // is seen.
            let found = tx
                .opening(async |shared: &AsyncPgConnection| {
                    db::refresh_tokens::lock_for_rotation(shared, hash.as_bytes(), check.key()).await
                })
                .await?;
            let Some(db::refresh_tokens::ForRotation {
                session,
                token,
                owner: user,
                locked_until,
            }) = found
            else {
                // An unknown token: the address's wait decides whether it is refused.
                if let Some(key) = check.key() {
                    check.note_wait(db::throttle::locked_until(tx.conn()?, key).await?);
                }
                return Err(AuthError::InvalidToken);
            };
            check.note_wait(locked_until);
            let now = Utc::now();
            let grace =
                chrono::TimeDelta::from_std(self.policy.refresh_grace).unwrap_or(chrono::TimeDelta::MAX);
            // Read and opened only for a token rotated before: the rare path pays a round
            // trip and the decryption.
            let successor = match token.rotated_at {
                Some(_) => db::refresh_tokens::sealed_successor(tx.conn()?, &token)
                    .await?
                    .and_then(|sealed| open_successor(presented, &sealed)),
                None => None,
            };
            let decision = decide(&session, &token, successor.is_some(), now, grace);
            match (decision, successor) {
                (Decision::Rotate, _) => self
                    .rotate(tx, presented, &session, user, now)
                    .await
                    .map(Refreshed::Issued),
                (Decision::Replay, Some(successor)) => Ok(Refreshed::Issued(Issued {
                    user,
                    session_id: session.id,
                    access_token: successor.access_token,
                    refresh_token: OpaqueToken::presented(&successor.refresh_token),
                    expires_in: self.keys.ttl().as_secs(),
                    refresh_expires_in: successor.refresh_expires_in,
                })),
                (Decision::Replay | Decision::RevokeSession, _) => {
                    let conn = tx.conn()?;
                    db::sessions::revoke(conn, session.id, "refresh_token_reused").await?;
                    let event =
                        Event::new(EventType::RefreshReused, Some(session.user_id)).session(session.id);
                    self.audit(conn, event, client).await?;
                    Ok(Refreshed::Reused {
                        session_id: session.id,
                        user_id: session.user_id,
                    })
                }
                (Decision::Refuse, _) => Err(AuthError::InvalidToken),
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
    /// Its writes go out with the COMMIT.
    async fn rotate(
        &self,
        tx: &mut db::pipelined::Pipelined<'_>,
        parent: &OpaqueToken,
        session: &Session,
        user: Account,
        now: DateTime<Utc>,
    ) -> Result<Issued, AuthError> {
        let expires = (now + self.policy.refresh_ttl).min(session.absolute_expires_at);
        let refresh_token = OpaqueToken::generate()?;
        let access_token = self
            .keys
            .issue(user.id, session.id, user.role, &assurance_of(session), now)?;
        let refresh_expires_in = (expires - now).num_seconds();
        let sealed = seal_successor(
            parent,
            &Successor {
                refresh_token: refresh_token.expose().to_owned(),
                access_token: access_token.clone(),
                refresh_expires_in,
            },
        )?;
        let (parent_hash, child_hash) = (parent.hash(), refresh_token.hash());
        let rotation = Rotation {
            session_id: session.id,
            parent_hash: parent_hash.as_bytes(),
            successor_sealed: &sealed,
            child_hash: child_hash.as_bytes(),
            child_expires_at: expires,
            at: now,
            grace_cutoff: now - self.policy.refresh_grace,
        };
        tx.closing(async |shared: &AsyncPgConnection| {
            db::refresh_tokens::record_rotation(shared, &rotation).await
        })
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

    /// Gives a live, locked session a new pair claiming `assurance` (password change,
    /// step-up): its other refresh tokens stop working, as unknown rather than "reused",
    /// since a tab still holding one is no sign of theft. The user is read fresh.
    pub(super) async fn reissue(
        &self,
        conn: &mut AsyncPgConnection,
        session: &Session,
        assurance: &Assurance,
        now: DateTime<Utc>,
    ) -> Result<Issued, AuthError> {
        if *assurance != assurance_of(session) {
            db::sessions::set_assurance(
                conn,
                session.id,
                &assurance.amr_strings(),
                assurance.acr(),
                assurance.auth_time,
            )
            .await?;
        }
        db::refresh_tokens::delete_for_session(conn, session.id).await?;
        let (refresh_token, expires) = self
            .issue_refresh_token(conn, session.id, session.absolute_expires_at, now)
            .await?;
        db::sessions::touch(conn, session.id, now, expires).await?;
        let user = db::users::find(conn, session.user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let access_token = self.keys.issue(user.id, session.id, user.role, assurance, now)?;
        Ok(Issued {
            user,
            session_id: session.id,
            access_token,
            refresh_token,
            expires_in: self.keys.ttl().as_secs(),
            refresh_expires_in: (expires - now).num_seconds(),
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
    ) -> Result<(OpaqueToken, DateTime<Utc>), AuthError> {
        let expires = (now + self.policy.refresh_ttl).min(absolute_expires_at);
        let token = OpaqueToken::generate()?;
        db::refresh_tokens::insert(conn, token.hash().as_bytes(), session_id, expires).await?;
        Ok((token, expires))
    }

    /// Ends the session of a refresh token. Unknown tokens succeed too: logging out
    /// must never tell a caller whether a token existed.
    #[instrument(skip_all, fields(session.id))]
    pub async fn logout(&self, presented: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let hash = OpaqueToken::presented(presented).hash();
        let mut conn = self.conn().await?;
        let ended = conn
            .transaction::<_, AuthError, _>(async |conn| {
                let Some(token) = db::refresh_tokens::find(conn, hash.as_bytes()).await? else {
                    return Ok(None);
                };
                let Some(session) = db::sessions::lock(conn, token.session_id).await? else {
                    return Ok(None);
                };
                if !db::sessions::revoke(conn, session.id, "logout").await? {
                    return Ok(None);
                }
                let event = Event::new(EventType::SessionRevoked, Some(session.user_id))
                    .session(session.id)
                    .with("reason", "logout");
                self.audit(conn, event, client).await?;
                Ok(Some(session.id))
            })
            .await?;
        if let Some(session_id) = ended {
            info!(session.id = %session_id, "session ended by logout");
        }
        Ok(())
    }

    /// Ends every session of a user; answers how many were live.
    #[instrument(skip_all, fields(user.id = %user_id))]
    pub async fn logout_everywhere(&self, user_id: Uuid, client: &ClientInfo) -> Result<usize, AuthError> {
        let mut conn = self.conn().await?;
        let ended = conn
            .transaction::<_, AuthError, _>(async |conn| {
                let ended = db::sessions::revoke_all_for_user(conn, user_id, "logout_all").await?;
                if ended > 0 {
                    let event = Event::new(EventType::SessionRevoked, Some(user_id))
                        .with("reason", "logout_all")
                        .with("sessionsEnded", ended);
                    self.audit(conn, event, client).await?;
                }
                Ok(ended)
            })
            .await?;
        info!(sessions = ended, "all sessions ended by logout");
        Ok(ended)
    }

    /// Ends one of the caller's own live sessions; false for anything else, so the
    /// answer reveals nothing about other users' sessions.
    #[instrument(skip_all, fields(user.id = %user_id, session.id = %session_id))]
    pub async fn revoke_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        client: &ClientInfo,
    ) -> Result<bool, AuthError> {
        let mut conn = self.conn().await?;
        let revoked = conn
            .transaction::<_, AuthError, _>(async |conn| {
                let revoked = db::sessions::revoke_owned(conn, session_id, user_id, "revoked").await?;
                if revoked {
                    let event = Event::new(EventType::SessionRevoked, Some(user_id))
                        .session(session_id)
                        .with("reason", "revoked");
                    self.audit(conn, event, client).await?;
                }
                Ok(revoked)
            })
            .await?;
        if revoked {
            info!("session revoked by its owner");
        }
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests;
