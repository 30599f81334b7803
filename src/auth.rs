// Over 400 lines on purpose: `Auth`, its wiring, and the sign-in core the use cases build on.
//! Auth logic: the use cases (register, login, authenticate, ...) as async functions over
//! the pool. Knows nothing of HTTP or GraphQL; fails with [`AuthError`] only.

pub mod account;
pub mod admin;
pub mod audit;
pub mod breach;
pub mod email_flows;
pub mod error;
pub mod input;
pub mod jwt;
pub mod mfa;
pub mod passkeys;
pub mod password;
pub mod refresh_token;
mod sessions;
pub mod sign_in_methods;
pub mod social;
pub mod step_up;
pub mod throttle;
pub mod token;
pub mod webhooks;

use std::{net::IpAddr, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use secrecy::ExposeSecret;
use tracing::{info, instrument};
use uuid::Uuid;

pub use crate::db::users::{Account, Role};
use audit::{Event, EventType};
pub use error::{AuthError, TokenProblem};
use input::{DisplayName, Email, Password};
use jwt::JwtKeys;
use mfa::MfaPolicy;
use password::PasswordHasher;
use step_up::{Assurance, Method};
use throttle::Throttle;
use token::OpaqueToken;

use crate::db::{
    self, DbConn, DbPool, ResultExt,
    sessions::{NewSession, Session},
    users::NewUser,
};
use crate::mail::Composer;

/// Longest user agent kept with a session.
pub(crate) const USER_AGENT_MAX: usize = 256;
/// Lifetime of a device token; each sign-in issues a new one.
pub const DEVICE_TOKEN_TTL: Duration = Duration::from_secs(180 * 24 * 3600);

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
    /// The device token the browser holds (its device cookie), unverified.
    pub device: Option<secrecy::SecretString>,
    /// The request id (`X-Request-Id`), recorded with audit events.
    pub request_id: Option<String>,
}

/// A freshly issued token pair with its session and user.
pub struct Issued {
    /// The signed-in user.
    pub user: Account,
    /// The session the pair belongs to.
    pub session_id: Uuid,
    /// The JWT access token.
    pub access_token: String,
    /// The opaque refresh token.
    pub refresh_token: OpaqueToken,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: i64,
}

/// A session just written, before its access token is signed.
struct OpenedSession {
    id: Uuid,
    refresh_token: OpaqueToken,
    assurance: Assurance,
    opened_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
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
    pub user: Account,
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
    /// The passkey relying party (see `passkeys`).
    passkeys: Arc<passkeys::PasskeyPolicy>,
    /// The breached-password range API, when configured.
    breach: Option<breach::BreachCheck>,
    /// Social sign-in providers (see `social`); none until wired.
    social: Option<Arc<social::Social>>,
    /// Webhook subscriptions (see `webhooks`); none when `WEBHOOK_ENDPOINTS` is unset.
    webhooks: Option<Arc<crate::config::WebhookConfig>>,
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
    /// The passkey relying party.
    pub passkeys: passkeys::PasskeyPolicy,
    /// The breached-password range API (`PASSWORDS_BREACH_CHECK_URL`), if any.
    pub breach: Option<breach::BreachCheck>,
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
            passkeys,
            breach,
        } = parts;
        Self {
            throttle: Throttle::new(db.clone(), throttle),
            db,
            keys,
            passwords,
            policy,
            mail,
            mfa,
            passkeys: Arc::new(passkeys),
            breach,
            social: None,
            webhooks: None,
        }
    }

    /// A new password: the policy of [`Password::new_password`] (length, common
    /// passwords and their variants), then, when configured, the breached-password range
    /// API, which fails open.
    pub(crate) async fn new_password(&self, raw: &str, field: &'static str) -> Result<Password, AuthError> {
        let password = Password::new_password(raw, field)?;
        self.not_breached(&password, field).await?;
        Ok(password)
    }

    async fn not_breached(&self, password: &Password, field: &'static str) -> Result<(), AuthError> {
        let Some(breach) = &self.breach else {
            return Ok(());
        };
        match breach.breached(password).await {
            None => Ok(()),
            Some(_) => {
                info!("new password refused: it appears in known data breaches");
                Err(AuthError::input(
                    field,
                    "this password is too easy to guess: it appears in known data breaches, so \
                     attackers try it first. Try a few unrelated words instead.",
                ))
            }
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
        let password = self.new_password(password, "password").await?;
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
        db::pipelined::transaction(&mut conn, async |tx| {
            let result = async {
                let (user_id, session_id) = (Uuid::new_v4(), Uuid::new_v4());
                let new = NewUser {
                    id: user_id,
                    email: email.as_str(),
                    password_hash,
                    display_name: display_name.map(DisplayName::as_str),
                };
                let event = Event::new(EventType::UserCreated, Some(user_id)).session(session_id);
                let (kind, row) = audit::audit_row(event, client);
                let assurance = Assurance::password(Utc::now());
                // Every write of the registration in one round trip with the BEGIN (ids
                // chosen here): PostgreSQL runs them in order, so the user exists before
                // the rows that refer to it, and a taken email fails first. The
                // verification mail is queued in this transaction: it exists if and only
                // if the account does. The COMMIT waits for the outcome, which
                // `CommitPoint` needs to know whether a retry is safe.
                let (user, opened) = tx
                    .opening(async |shared: &AsyncPgConnection| {
                        let (user, verification, opened, audited) = tokio::join!(
                            async {
                                db::users::insert(shared, &new)
                                    .await
                                    .on_constraint("users_email_key", || AuthError::EmailTaken)
                            },
                            self.queue_verification(shared, user_id, Some(email.as_str())),
                            self.write_session(shared, session_id, user_id, client, &assurance),
                            db::audit::insert(shared, &row),
                        );
                        // Every result, then the first failure in statement order: once
                        // one fails the rest fail too ("transaction aborted"), and the
                        // first one says why (`EMAIL_TAKEN`) whichever answer arrived first.
                        let user = user?;
                        verification?;
                        let opened = opened?;
                        audited?;
                        Ok::<_, AuthError>((user, opened))
                    })
                    .await?;
                self.queue_webhooks(tx.conn()?, kind, &row).await?;
                self.issue_pair(user, opened)
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
        // Counted before the check, so no alias, batch or race gets more checks. Without
        // a device cookie the count does not depend on the account, so it goes out with
        // the account lookup, pipelined on one connection (released before the hash).
        let (found, counted) = if client.device.is_none() {
            let conn = self.conn().await?;
            let (found, counted) = tokio::join!(
                db::users::find_for_sign_in(&conn, email.as_str()),
                self.throttle.count_login(&conn, &email, client, None),
            );
            (found?, Some(counted?))
        } else {
            let conn = self.conn().await?;
            (db::users::find_for_sign_in(&conn, email.as_str()).await?, None)
        };
        let (user, password_hash, has_factor) = match found {
            Some((user, password_hash, has_factor)) => (Some(user), password_hash, has_factor),
            None => (None, None, false),
        };
        // Known before the count is judged, so a lockout line names the account too.
        if let Some(user) = &user {
            tracing::Span::current().record("user.id", tracing::field::display(user.id));
        }
        let attempt = match counted {
            Some(counted) => counted.judge()?,
            None => {
                let device = user.as_ref().and_then(|u| self.device_of(client, u.id));
                self.throttle.login(&email, client, device).await?
            }
        };
        let matched = self
            .passwords
            // An account without a password verifies against the dummy hash: the same
            // cost and the same answer as a wrong password.
            .verify(password, password_hash)
            .await?;
        let user = match user {
            Some(user) if matched => user,
            other => {
                let user_id = other.map(|user| user.id);
                if let Some(user_id) = user_id {
                    tracing::Span::current().record("user.id", tracing::field::display(user_id));
                }
                info!("login failed: invalid credentials");
                // Unknown accounts are recorded too (no user, no address of theirs): a
                // credential-stuffing run shows in the log even when every email misses.
                let locked = attempt.locked_account();
                self.audit_alone(
                    Event::new(EventType::LoginFailed, user_id).with(
                        "reason",
                        if user_id.is_some() {
                            "invalid_password"
                        } else {
                            "unknown_account"
                        },
                    ),
                    client,
                )
                .await;
                if locked && user_id.is_some() {
                    self.audit_alone(Event::new(EventType::LoginLocked, user_id), client)
                        .await;
                }
                return Err(AuthError::InvalidCredentials);
            }
        };
        // Only now, after the password: the code reveals nothing to someone without it.
        // With a factor, the second step answers it instead (API.md).
        if user.disabled_at.is_some() && !has_factor {
            self.audit_alone(
                Event::new(EventType::LoginFailed, Some(user.id)).with("reason", "account_disabled"),
                client,
            )
            .await;
            info!("login refused: account disabled");
            return Err(AuthError::AccountDisabled);
        }
        if has_factor {
            // The attempt stays counted until the second factor clears it: were the right
            // password to clear the count, each one would buy a fresh round of code guesses.
            drop(attempt);
            let mut conn = self.conn().await?;
            let mfa_token = self
                .start_mfa_challenge(&mut conn, user.id, &[Method::Pwd])
                .await?;
            info!("password accepted: second factor required");
            return Err(AuthError::MfaRequired {
                mfa_token,
                factors: mfa::FACTORS.to_vec(),
            });
        }
        let session_id = Uuid::new_v4();
        let event = Event::new(EventType::LoginSucceeded, Some(user.id))
            .session(session_id)
            .with("method", "password");
        let (kind, row) = audit::audit_row(event, client);
        let assurance = Assurance::password(Utc::now());
        // Every write of the sign-in in one round trip with the BEGIN, and with the
        // COMMIT too unless a webhook wants the event: the counts are cleared if and only
        // if the session exists.
        let writes = async |shared: &AsyncPgConnection| {
            attempt
                .settle_in(shared, async {
                    tokio::try_join!(
                        self.write_session(shared, session_id, user.id, client, &assurance),
                        async { Ok(db::audit::insert(shared, &row).await?) },
                    )
                })
                .await
        };
        let mut conn = self.conn().await?;
        let (opened, ()) = db::pipelined::transaction(&mut conn, async |tx| {
            if !self.webhooks_send(kind) {
                return tx.whole(writes).await;
            }
            let written = tx.opening(writes).await?;
            self.queue_webhooks(tx.conn()?, kind, &row).await?;
            Ok(written)
        })
        .await?;
        let issued = self.issue_pair(user, opened)?;
        info!(session.id = %issued.session_id, "login succeeded");
        Ok(issued)
    }

    /// The id of the device token the client holds, if it is valid and was issued for
    /// `user_id` (for another account it counts for nothing): password and code checks
    /// on that account are then counted per device instead of per address.
    pub(crate) fn device_of(&self, client: &ClientInfo, user_id: Uuid) -> Option<Uuid> {
        let token = client.device.as_ref()?;
        let device = self.keys.verify_device(token.expose_secret())?;
        (device.user_id == user_id).then_some(device.id)
    }

    /// A device token for a browser that has just completed a sign-in to `user_id`
    /// (OWASP's device cookie): its later logins to that account are counted on their
    /// own instead of on the address. Only after a complete sign-in (with a second
    /// factor, once the account has one). `None` if signing fails, which only costs the
    /// browser that convenience.
    pub fn device_token(&self, user_id: Uuid) -> Option<String> {
        self.keys
            .issue_device(user_id, Utc::now(), DEVICE_TOKEN_TTL)
            .inspect_err(|e| tracing::warn!(error = %e, "could not sign a device token"))
            .ok()
    }

    /// Starts a session for `user`, authenticated as `assurance` says, and issues its
    /// first token pair.
    async fn open_session(
        &self,
        conn: &AsyncPgConnection,
        user: Account,
        client: &ClientInfo,
        assurance: &Assurance,
    ) -> Result<Issued, AuthError> {
        self.open_session_as(conn, Uuid::new_v4(), user, client, assurance)
            .await
    }

    /// [`Auth::open_session`] with the session's id chosen by the caller, which records
    /// it (the audit row) in the same round trip.
    async fn open_session_as(
        &self,
        conn: &AsyncPgConnection,
        session_id: Uuid,
        user: Account,
        client: &ClientInfo,
        assurance: &Assurance,
    ) -> Result<Issued, AuthError> {
        let opened = self
            .write_session(conn, session_id, user.id, client, assurance)
            .await?;
        self.issue_pair(user, opened)
    }

    /// Writes a new session of `user_id` and its first refresh token: the database half
    /// of [`Auth::open_session`], which needs only the user's id, so a registration can
    /// send it in the round trip that creates the user.
    async fn write_session(
        &self,
        conn: &AsyncPgConnection,
        session_id: Uuid,
        user_id: Uuid,
        client: &ClientInfo,
        assurance: &Assurance,
    ) -> Result<OpenedSession, AuthError> {
        let now = Utc::now();
        let absolute = now + self.policy.session_max_lifetime;
        let expires = (now + self.policy.refresh_ttl).min(absolute);
        let user_agent = client
            .user_agent
            .as_deref()
            .map(|ua| truncate(ua, USER_AGENT_MAX));
        let refresh_token = OpaqueToken::generate()?;
        db::sessions::open(
            conn,
            &NewSession {
                id: session_id,
                user_id,
                user_agent,
                created_at: now,
                last_used_at: now,
                expires_at: expires,
                absolute_expires_at: absolute,
                amr: assurance.amr_strings(),
                acr: assurance.acr(),
                auth_time: assurance.auth_time,
            },
            refresh_token.hash().as_bytes(),
            expires,
        )
        .await?;
        Ok(OpenedSession {
            id: session_id,
            refresh_token,
            assurance: assurance.clone(),
            opened_at: now,
            expires_at: expires,
        })
    }

    /// Signs the access token of a session just written and hands out the pair.
    fn issue_pair(&self, user: Account, opened: OpenedSession) -> Result<Issued, AuthError> {
        let now = opened.opened_at;
        let access_token = self
            .keys
            .issue(user.id, opened.id, user.role, &opened.assurance, now)?;
        Ok(Issued {
            user,
            session_id: opened.id,
            access_token,
            refresh_token: opened.refresh_token,
            expires_in: self.keys.ttl().as_secs(),
            refresh_expires_in: (opened.expires_at - now).num_seconds(),
        })
    }

    /// Turns an `Authorization` header value into the caller: a valid access token of a
    /// live session, whose user is read fresh (role changes apply at once).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Viewer, AuthError> {
        let header = authorization.ok_or(AuthError::Unauthenticated(TokenProblem::Missing))?;
        let token = bearer_token(header).ok_or(AuthError::Unauthenticated(TokenProblem::Malformed))?;
        let claims = self.keys.verify(token).map_err(AuthError::Unauthenticated)?;
        let conn = self.conn().await?;
        let user = db::sessions::find_live_owner(&conn, claims.sid, claims.sub)
            .await?
            .ok_or(AuthError::Unauthenticated(TokenProblem::Revoked))?;
        Ok(Viewer {
            user,
            session_id: claims.sid,
            assurance: claims.assurance(),
        })
    }

    /// Users by id, in one query; unknown ids are absent.
    pub async fn find_users(&self, ids: &[Uuid]) -> Result<Vec<Account>, AuthError> {
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
        conn.transaction::<_, AuthError, _>(async |conn| {
            let Some(user) = db::users::find_by_email(conn, email.as_str()).await? else {
                return Ok(false);
            };
            db::users::set_role(conn, email.as_str(), role).await?;
            if user.role != role {
                let event = Event::new(EventType::RoleChanged, Some(user.id))
                    .by(None)
                    .with("from", user.role.as_str())
                    .with("to", role.as_str())
                    .with("by", "operator");
                self.audit(conn, event, &ClientInfo::default()).await?;
            }
            Ok(true)
        })
        .await
    }
}

/// The key a user's sign-in attempts are counted under: the email, or for an account
/// without one its id (which never looks like an address, so never shares a counter).
pub(crate) fn account_key(user: &Account) -> Email {
    match &user.email {
        Some(email) => Email::stored(email),
        None => Email::stored(&format!("user:{}", user.id)),
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 9110).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ')).then_some(token)
}

pub(crate) fn truncate(s: &str, max_chars: usize) -> &str {
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
