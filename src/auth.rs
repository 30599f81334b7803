//! Auth logic: the use cases (register, login, authenticate, ...) as async functions over
//! the pool. Knows nothing of HTTP or GraphQL; fails with [`AuthError`] only.

pub mod account;
pub mod email_flows;
pub mod error;
pub mod input;
pub mod jwt;
pub mod mfa;
pub mod password;
pub mod refresh_token;
mod sessions;
pub mod step_up;
pub mod throttle;

use std::{net::IpAddr, sync::Arc, time::Duration};

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tracing::{info, instrument};
use uuid::Uuid;

pub use error::{AuthError, TokenProblem};
use input::{DisplayName, Email, Password};
use jwt::JwtKeys;
use mfa::MfaPolicy;
use password::PasswordHasher;
use refresh_token::PlainToken;
use step_up::{Assurance, Method};
use throttle::Throttle;

use crate::db::{
    self, DbConn, DbPool, ResultExt,
    sessions::{NewSession, Session},
    users::{NewUser, Role, User},
};
use crate::mail::Composer;

/// Longest user agent kept with a session.
const USER_AGENT_MAX: usize = 256;

/// Lifetimes of tokens and sessions.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Lifetime of each refresh token, so also a session's idle timeout.
    pub refresh_ttl: Duration,
    /// Absolute lifetime of a session.
    pub session_max_lifetime: Duration,
    /// How long a rotated refresh token still yields the same successor pair.
    pub refresh_grace: Duration,
}

/// Who is calling, as far as auth decisions care.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    /// The `User-Agent` header, kept with new sessions.
    pub user_agent: Option<String>,
    /// The client address (after trusted-proxy resolution).
    pub ip: Option<IpAddr>,
}

/// A freshly issued token pair with its session and user.
pub struct Issued {
    /// The signed-in user.
    pub user: User,
    /// The session the pair belongs to.
    pub session_id: Uuid,
    /// The JWT access token.
    pub access_token: String,
    /// The opaque refresh token.
    pub refresh_token: PlainToken,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: i64,
}

// Tokens stay out of Debug output: a stray `?issued` in a log line must not log anyone in.
impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("user", &self.user)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Viewer {
    /// The caller, read fresh from the database.
    pub user: User,
    /// The session of the access token.
    pub session_id: Uuid,
    /// How the token says its holder authenticated (`auth_time`, `amr`): what step-up
    /// is judged on. `None` for a token issued before tokens carried these claims.
    pub assurance: Option<Assurance>,
}

impl Viewer {
    /// May this caller see the private fields of `user_id`?
    pub fn may_read_private(&self, user_id: Uuid) -> bool {
        self.user.id == user_id || self.user.role == Role::Admin
    }
}

/// The auth service: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Auth {
    db: DbPool,
    keys: Arc<JwtKeys>,
    passwords: PasswordHasher,
    policy: Policy,
    throttle: Throttle,
    /// Renders the mails the email use cases queue (see `email_flows`).
    mail: Composer,
    /// Second factors and step-up (see `mfa`).
    mfa: MfaPolicy,
}

/// Everything [`Auth`] is made of, built once at start-up.
pub struct AuthParts {
    /// The connection pool.
    pub db: DbPool,
    /// Signing and verification keys.
    pub keys: Arc<JwtKeys>,
    /// The argon2 hasher with its bounded queue.
    pub passwords: PasswordHasher,
    /// Token and session lifetimes.
    pub policy: Policy,
    /// Attempt limits.
    pub throttle: crate::config::ThrottleConfig,
    /// Renders the mails the email use cases queue (links to `PUBLIC_URL`).
    pub mail: Composer,
    /// Second factors and step-up.
    pub mfa: MfaPolicy,
}

impl Auth {
    /// Wires the service from all its parts: there are no defaults to forget.
    pub fn new(parts: AuthParts) -> Self {
        let AuthParts {
            db,
            keys,
            passwords,
            policy,
            throttle,
            mail,
            mfa,
        } = parts;
        Self {
            throttle: Throttle::new(db.clone(), throttle),
            db,
            keys,
            passwords,
            policy,
            mail,
            mfa,
        }
    }

    /// The attempt limits, for use cases that count attempts.
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// The signing and verification keys.
    pub fn keys(&self) -> &JwtKeys {
        &self.keys
    }

    /// The password hasher (for its queue metrics).
    pub fn passwords(&self) -> &PasswordHasher {
        &self.passwords
    }

    async fn conn(&self) -> Result<DbConn<'_>, AuthError> {
        let started = std::time::Instant::now();
        let conn = self.db.get().await;
        crate::metrics::db_pool_wait(started.elapsed());
        Ok(conn?)
    }

    /// Creates an account and signs it in.
    #[instrument(skip_all, fields(user.id))]
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        display_name: Option<&str>,
        client: &ClientInfo,
    ) -> Result<Issued, AuthError> {
        let email = Email::parse(email, "email")?;
        let password = Password::new_password(password, "password")?;
        let display_name = display_name.map(DisplayName::parse).transpose()?;
        let _counted = self.throttle.register(client).await?;
        // Hash before taking a connection: a connection is never held across argon2.
        let password_hash = self.passwords.hash(password).await?;

        // A connection lost before COMMIT (a failover) leaves nothing behind, so the
        // transaction runs once more on a fresh connection; after COMMIT was sent the
        // account may exist, and a second try would answer EMAIL_TAKEN, so it does not.
        let mut retried = false;
        let issued = loop {
            let point = db::CommitPoint::default();
            let result = self
                .register_once(&point, &email, &password_hash, display_name.as_ref(), client)
                .await;
            match result {
                Err(AuthError::Unavailable) if !retried && !point.reached() => retried = true,
                other => break other?,
            }
        };
        tracing::Span::current().record("user.id", tracing::field::display(issued.user.id));
        info!(session.id = %issued.session_id, "user registered");
        Ok(issued)
    }

    /// One try of [`Auth::register`]'s transaction.
    async fn register_once(
        &self,
        point: &db::CommitPoint,
        email: &Email,
        password_hash: &str,
        display_name: Option<&DisplayName>,
        client: &ClientInfo,
    ) -> Result<Issued, AuthError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, AuthError, _>(async |conn| {
            let result = async {
                let new = NewUser {
                    email: email.as_str(),
                    password_hash,
                    display_name: display_name.map(DisplayName::as_str),
                };
                let user = db::users::insert(conn, &new)
                    .await
                    .on_constraint("users_email_key", || AuthError::EmailTaken)?;
                // Queued in this transaction: the mail exists if and only if the account does.
                self.queue_verification(conn, &user).await?;
                self.open_session(conn, user, client, &Assurance::password(Utc::now()))
                    .await
            }
            .await;
            point.reach(result)
        })
        .await
    }

    /// Checks credentials and opens a session. Unknown email and wrong password fail
    /// alike, at the same cost.
    #[instrument(skip_all, fields(user.id))]
    pub async fn login(&self, email: &str, password: &str, client: &ClientInfo) -> Result<Issued, AuthError> {
        let result = self.try_login(email, password, client).await;
        crate::metrics::login(match &result {
            Ok(_) => "success",
            Err(AuthError::InvalidCredentials) => "invalid_credentials",
            Err(AuthError::InvalidInput { .. }) => "invalid_input",
            Err(AuthError::RateLimited { .. }) => "rate_limited",
            Err(AuthError::MfaRequired { .. }) => "mfa_required",
            Err(AuthError::Unavailable) => "unavailable",
            Err(_) => "error",
        });
        result
    }

    async fn try_login(&self, email: &str, password: &str, client: &ClientInfo) -> Result<Issued, AuthError> {
        let email = Email::parse(email, "email")?;
        let password = Password::candidate(password);
        // Counted before the check, so no alias, batch or race gets more checks.
        let attempt = self.throttle.login(&email, client).await?;
        let user = {
            let mut conn = self.conn().await?;
            db::users::find_by_email(&mut conn, email.as_str()).await?
        };
        let matched = self
            .passwords
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        let user = match user {
            Some(user) if matched => user,
            other => {
                if let Some(user) = other {
                    tracing::Span::current().record("user.id", tracing::field::display(user.id));
                }
                info!("login failed: invalid credentials");
                return Err(AuthError::InvalidCredentials);
            }
        };
        tracing::Span::current().record("user.id", tracing::field::display(user.id));
        {
            let mut conn = self.conn().await?;
            if db::factors::has_active(&mut conn, user.id).await? {
                // The attempt stays counted until the second factor clears it: were the right
                // password to clear the count, each one would buy a fresh round of code guesses.
                drop(attempt);
                let mfa_token = self
                    .start_mfa_challenge(&mut conn, user.id, &[Method::Pwd])
                    .await?;
                info!("password accepted: second factor required");
                return Err(AuthError::MfaRequired {
                    mfa_token,
                    factors: mfa::FACTORS.to_vec(),
                });
            }
        }
        attempt.succeeded().await;
        let mut conn = self.conn().await?;
        let issued = conn
            .transaction::<_, AuthError, _>(async |conn| {
                self.open_session(conn, user, client, &Assurance::password(Utc::now()))
                    .await
            })
            .await?;
        info!(session.id = %issued.session_id, "login succeeded");
        Ok(issued)
    }

    /// Starts a session for `user`, authenticated as `assurance` says, and issues its
    /// first token pair.
    async fn open_session(
        &self,
        conn: &mut AsyncPgConnection,
        user: User,
        client: &ClientInfo,
        assurance: &Assurance,
    ) -> Result<Issued, AuthError> {
        let now = Utc::now();
        let absolute = now + self.policy.session_max_lifetime;
        let expires = (now + self.policy.refresh_ttl).min(absolute);
        let user_agent = client
            .user_agent
            .as_deref()
            .map(|ua| truncate(ua, USER_AGENT_MAX));
        let session = db::sessions::insert(
            conn,
            &NewSession {
                user_id: user.id,
                user_agent,
                created_at: now,
                last_used_at: now,
                expires_at: expires,
                absolute_expires_at: absolute,
                amr: assurance.amr_strings(),
                acr: assurance.acr(),
                auth_time: assurance.auth_time,
            },
        )
        .await?;
        let (refresh_token, expires) = self.issue_refresh_token(conn, session.id, absolute, now).await?;
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

    /// Turns an `Authorization` header value into the caller: a valid access token of a
    /// live session, whose user is read fresh (role changes apply at once).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Viewer, AuthError> {
        let header = authorization.ok_or(AuthError::Unauthenticated(TokenProblem::Missing))?;
        let token = bearer_token(header).ok_or(AuthError::Unauthenticated(TokenProblem::Malformed))?;
        let claims = self.keys.verify(token).map_err(AuthError::Unauthenticated)?;
        let mut conn = self.conn().await?;
        let user = db::sessions::find_live_owner(&mut conn, claims.sid, claims.sub)
            .await?
            .ok_or(AuthError::Unauthenticated(TokenProblem::Revoked))?;
        Ok(Viewer {
            user,
            session_id: claims.sid,
            assurance: claims.assurance(),
        })
    }

    /// Users by id, in one query; unknown ids are absent.
    pub async fn find_users(&self, ids: &[Uuid]) -> Result<Vec<User>, AuthError> {
        let mut conn = self.conn().await?;
        Ok(db::users::find_many(&mut conn, ids).await?)
    }

    /// The live sessions of a user.
    pub async fn sessions_of(&self, user_id: Uuid) -> Result<Vec<Session>, AuthError> {
        let mut conn = self.conn().await?;
        Ok(db::sessions::list_live(&mut conn, user_id).await?)
    }

    /// Sets a user's role by email (operator command); answers whether the user exists.
    pub async fn set_role(&self, email: &str, role: Role) -> Result<bool, AuthError> {
        let email = Email::parse(email, "email")?;
        let mut conn = self.conn().await?;
        let changed = db::users::set_role(&mut conn, email.as_str(), role).await? > 0;
        Ok(changed)
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 9110).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ')).then_some(token)
}

fn truncate(s: &str, max_chars: usize) -> &str {
    s.char_indices().nth(max_chars).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_required_and_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("abc"), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer a b"), None);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 2), "éé");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
