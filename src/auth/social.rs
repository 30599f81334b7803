// Over 400 lines on purpose: one OAuth flow end to end (start, complete, link, unlink).
//! Social sign-in: `startOAuth` sends the browser to a provider, `completeOAuth` turns its
//! callback into a session, deliberate linking and `unlinkIdentity`, and the one list of
//! a user's sign-in methods that keeps the last one from being removed.
//!
//! A flow's `state` is stored (hashed) in PostgreSQL with our PKCE verifier, the nonce,
//! the redirect URI and the client's own PKCE challenge; it is taken exactly once, and
//! only the client holding the matching `codeVerifier` completes it, so neither a leaked
//! callback URL nor a login-CSRF callback signs anyone in.

pub mod providers;

use std::{sync::Arc, time::Duration};

use base64::Engine;
use chrono::Utc;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tracing::{info, instrument};
use uuid::Uuid;

use super::{
    Auth, AuthError, ClientInfo, Issued, Viewer,
    audit::{Event, EventType},
    input::{DisplayName, Email},
    step_up::{Assurance, Method, Requirement},
    token::{OpaqueToken, TokenHash},
};
use crate::{
    config::OAuthConfig,
    db::{
        self,
        identities::{Identity, NewIdentity},
        oauth_states::OAuthState,
        users::Account,
    },
};
use providers::{ProviderIdentity, Providers};

/// Social sign-in as configured: providers, redirect allow-list, flow lifetime.
#[derive(Debug)]
pub struct Social {
    providers: Providers,
    redirect_uris: Vec<String>,
    state_ttl: Duration,
}

impl Social {
    /// The social sign-in of `config` (no provider is contacted yet).
    pub fn new(config: &OAuthConfig) -> anyhow::Result<Self> {
        Ok(Self {
            providers: Providers::new(config)?,
            redirect_uris: config.redirect_uris.clone(),
            state_ttl: config.state_ttl,
        })
    }
}

/// A configured provider as `oauthProviders` lists it.
#[derive(Clone, Debug)]
pub struct ProviderInfo {
    /// The id `startOAuth` takes.
    pub id: String,
    /// The display name.
    pub name: String,
}

/// RFC 7636 4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An S256 challenge: base64url (no padding) of 32 bytes.
fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(challenge)
            .is_ok_and(|bytes| bytes.len() == 32)
}

/// `BASE64URL(SHA-256(verifier))`, as RFC 7636 computes S256.
fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(TokenHash::of(verifier.as_bytes()).as_bytes())
}

/// How a sign-in found its account.
enum Resolved {
    /// The identity was linked already.
    Known(Account),
    /// Linked now to the account its trusted, verified email belongs to.
    Linked(Account),
    /// A new account was made for it.
    Created(Account),
}

impl Auth {
    /// Wires social sign-in.
    pub fn with_social(mut self, social: Social) -> Self {
        self.social = Some(Arc::new(social));
        self
    }

    fn social(&self) -> Result<&Social, AuthError> {
        self.social.as_deref().ok_or_else(unknown_provider)
    }

    /// The configured providers, in configuration order.
    pub fn oauth_providers(&self) -> Vec<ProviderInfo> {
        self.social.as_deref().map_or_else(Vec::new, |social| {
            social
                .providers
                .all()
                .iter()
                .map(|p| ProviderInfo {
                    id: p.id().to_owned(),
                    name: p.name().to_owned(),
                })
                .collect()
        })
    }

    /// Starts a flow: stores its state and answers the provider's authorization URL.
    /// With `link`, `viewer` (the caller's token, which must pass step-up) is the account
    /// the identity will be linked to, and only that user's token completes it.
    #[instrument(skip_all, fields(provider))]
    pub async fn start_oauth(
        &self,
        viewer: Option<&Viewer>,
        provider: &str,
        redirect_uri: &str,
        code_challenge: &str,
    ) -> Result<String, AuthError> {
        let social = self.social()?;
        let provider = social
            .providers
            .get(provider.trim())
            .ok_or_else(unknown_provider)?;
        tracing::Span::current().record("provider", provider.id());
        if !social.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err(AuthError::input(
                "redirectUri",
                "this redirect URI is not allowed: it must equal one of OAUTH_REDIRECT_URIS exactly",
            ));
        }
        if !valid_challenge(code_challenge) {
            return Err(AuthError::input(
                "codeChallenge",
                "the code challenge must be the S256 challenge of your code verifier: base64url without padding, 43 characters",
            ));
        }
        if let Some(viewer) = viewer {
            self.require_step_up(viewer, Requirement::SignInMethod).await?;
        }
        let state = OpaqueToken::generate()?;
        let nonce = OpaqueToken::generate()?;
        let authorization = social
            .providers
            .authorize(provider, redirect_uri, state.expose(), nonce.expose())
            .await?;
        let now = Utc::now();
        let row = OAuthState {
            state_hash: state.hash().as_bytes().to_vec(),
            provider: provider.id().to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            client_challenge: code_challenge.to_owned(),
            pkce_verifier: authorization.pkce_verifier,
            nonce: nonce.expose().to_owned(),
            link_user_id: viewer.map(|v| v.user.id),
            created_at: now,
            expires_at: now + social.state_ttl,
        };
        let mut conn = self.conn().await?;
        db::oauth_states::insert(&mut conn, &row).await?;
        info!(link = viewer.is_some(), "social sign-in started");
        Ok(authorization.url)
    }

    /// Completes a flow from the provider's callback (`code`, `state`) and the client's
    /// `code_verifier`. A sign-in answers a new session (`amr` `["fed"]`), or
    /// `MFA_REQUIRED` for a user with a second factor; a link (the flow was started with
    /// `link`) needs `viewer` to be that same user, and answers a new pair of the caller's
    /// session.
    #[instrument(skip_all, fields(provider, user.id))]
    pub async fn complete_oauth(
        &self,
        viewer: Result<&Viewer, AuthError>,
        code: &str,
        state: &str,
        code_verifier: &str,
        client: &ClientInfo,
    ) -> Result<Issued, AuthError> {
        let social = self.social()?;
        if code.trim().is_empty() {
            return Err(AuthError::input(
                "code",
                "the provider's `code` parameter is required",
            ));
        }
        if !valid_verifier(code_verifier) {
            return Err(AuthError::input(
                "codeVerifier",
                "the code verifier must be 43 to 128 characters of letters, digits, `-`, `.`, `_` and `~`",
            ));
        }
        if state.trim().is_empty() {
            return Err(AuthError::InvalidToken);
        }
        // An unusable state counts against the address like any unusable token.
        let check = self.throttle.token(client).await?;
        let taken = async {
            let mut conn = self.conn().await?;
            let flow =
                db::oauth_states::take_live(&mut conn, OpaqueToken::presented(state).hash().as_bytes())
                    .await?
                    .ok_or(AuthError::InvalidToken)?;
            // Taken either way: a wrong verifier used the state up.
            if s256(code_verifier) != flow.client_challenge {
                info!("social sign-in refused: code verifier does not match");
                return Err(AuthError::InvalidToken);
            }
            Ok(flow)
        }
        .await;
        let flow = check.settle(taken).await?;
        tracing::Span::current().record("provider", flow.provider.as_str());
        let link_to = match flow.link_user_id {
            None => None,
            Some(user_id) => {
                let viewer = viewer?;
                if viewer.user.id != user_id {
                    info!("link refused: completed with another user's token");
                    return Err(AuthError::Forbidden);
                }
                Some(viewer)
            }
        };
        let provider = social
            .providers
            .get(&flow.provider)
            .ok_or(AuthError::InvalidToken)?;
        let identity = social
            .providers
            .identify(
                provider,
                &flow.redirect_uri,
                code,
                &flow.pkce_verifier,
                &flow.nonce,
            )
            .await?;
        match link_to {
            Some(viewer) => self.link(viewer, provider.id(), &identity, client).await,
            None => {
                self.sign_in_with(provider.id(), provider.trusts_email(), &identity, client)
                    .await
            }
        }
    }

    /// Links `identity` to the caller and reissues the caller's session.
    async fn link(
        &self,
        viewer: &Viewer,
        provider: &str,
        identity: &ProviderIdentity,
        client: &ClientInfo,
    ) -> Result<Issued, AuthError> {
        let (user_id, session_id) = (viewer.user.id, viewer.session_id);
        tracing::Span::current().record("user.id", tracing::field::display(user_id));
        let email = provider_email(identity);
        let mut conn = self.conn().await?;
        let issued = conn
            .transaction::<_, AuthError, _>(async |conn| {
                match db::identities::find(conn, provider, &identity.subject).await? {
                    Some(existing) if existing.user_id != user_id => {
                        info!("link refused: identity belongs to another account");
                        return Err(AuthError::Forbidden);
                    }
                    Some(_) => {}
                    None => {
                        self.insert_identity(
                            conn,
                            user_id,
                            provider,
                            &identity.subject,
                            email.as_ref(),
                            client,
                        )
                        .await?;
                    }
                }
                let now = Utc::now();
                let session = db::sessions::lock(conn, session_id)
                    .await?
                    .filter(|s| super::sessions::live(s, now))
                    .ok_or(AuthError::Unauthenticated(super::TokenProblem::Revoked))?;
                let assurance = super::sessions::assurance_of(&session);
                self.reissue(conn, &session, &assurance, now).await
            })
            .await?;
        info!("identity linked");
        Ok(issued)
    }

    /// Links a provider identity to `user_id` and records it (`identity.linked`), in the
    /// caller's transaction.
    async fn insert_identity(
        &self,
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        provider: &str,
        subject: &str,
        email: Option<&Email>,
        client: &ClientInfo,
    ) -> Result<Identity, AuthError> {
        let identity = db::identities::insert(
            conn,
            &NewIdentity {
                id: Uuid::new_v4(),
                user_id,
                provider,
                subject,
                email: email.map(Email::as_str),
            },
        )
        .await?;
        self.audit(
            conn,
            Event::new(EventType::IdentityLinked, Some(user_id))
                .with("provider", provider)
                .with("identity", identity.id.to_string()),
            client,
        )
        .await?;
        Ok(identity)
    }

    /// Signs in with a provider identity: its account, the account its trusted and
    /// verified email belongs to (if that account's email is verified too), or a new one.
    async fn sign_in_with(
        &self,
        provider: &str,
        trust_email: bool,
        identity: &ProviderIdentity,
        client: &ClientInfo,
    ) -> Result<Issued, AuthError> {
        let email = provider_email(identity);
        let trusted = trust_email && identity.email_verified && email.is_some();
        let display_name = identity.name.as_deref().and_then(|n| DisplayName::parse(n).ok());
        let mut conn = self.conn().await?;
        // Two first sign-ins of one identity race on the unique (provider, subject): the
        // loser runs again and finds the winner's link.
        let mut tries = 0;
        let resolved = loop {
            tries += 1;
            let attempt = conn
                .transaction::<_, AuthError, _>(async |conn| {
                    if let Some(linked) = db::identities::find(conn, provider, &identity.subject).await? {
                        let user = db::users::find(conn, linked.user_id)
                            .await?
                            .ok_or(AuthError::InvalidToken)?;
                        return Ok(Resolved::Known(user));
                    }
                    if let Some(address) = &email
                        && let Some(existing) = db::users::find_by_email(conn, address.as_str()).await?
                    {
                        if trusted && existing.email_verified_at.is_some() {
                            self.insert_identity(
                                conn,
                                existing.id,
                                provider,
                                &identity.subject,
                                email.as_ref(),
                                client,
                            )
                            .await?;
                            return Ok(Resolved::Linked(existing));
                        }
                        return Err(AuthError::LinkRequired {
                            provider: provider.to_owned(),
                        });
                    }
                    // An untrusted or unverified address never occupies an account.
                    let user = db::users::insert_social(
                        conn,
                        trusted.then(|| email.as_ref().map(Email::as_str)).flatten(),
                        display_name.as_ref().map(DisplayName::as_str),
                    )
                    .await?;
                    self.insert_identity(conn, user.id, provider, &identity.subject, email.as_ref(), client)
                        .await?;
                    Ok(Resolved::Created(user))
                })
                .await;
            match attempt {
                Err(AuthError::Internal(err)) if tries < 2 && is_race(&err) => continue,
                other => break other?,
            }
        };
        let user = match resolved {
            Resolved::Known(user) => user,
            Resolved::Linked(user) => {
                info!(user.id = %user.id, "identity linked by verified email");
                user
            }
            Resolved::Created(user) => {
                info!(user.id = %user.id, "user registered through a provider");
                user
            }
        };
        tracing::Span::current().record("user.id", tracing::field::display(user.id));
        if db::factors::has_active(&mut conn, user.id).await? {
            let mfa_token = self
                .start_mfa_challenge(&mut conn, user.id, &[Method::Fed])
                .await?;
            info!("provider sign-in accepted: second factor required");
            return Err(AuthError::MfaRequired {
                mfa_token,
                factors: super::mfa::FACTORS.to_vec(),
            });
        }
        let issued = conn
            .transaction::<_, AuthError, _>(async |conn| {
                self.open_session(conn, user, client, &Assurance::new(&[Method::Fed], Utc::now()))
                    .await
            })
            .await?;
        info!(session.id = %issued.session_id, "login succeeded through a provider");
        Ok(issued)
    }

    /// The caller's linked identities.
    pub async fn identities_of(&self, user_id: Uuid) -> Result<Vec<Identity>, AuthError> {
        let mut conn = self.conn().await?;
        Ok(db::identities::list(&mut conn, user_id).await?)
    }

    /// Unlinks one of the caller's identities (step-up applies). Refused with
    /// `FORBIDDEN` when it is the caller's last way to sign in; false for an id that is
    /// not one of the caller's identities.
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn unlink_identity(
        &self,
        viewer: &Viewer,
        id: &str,
        client: &ClientInfo,
    ) -> Result<bool, AuthError> {
        self.require_step_up(viewer, Requirement::SignInMethod).await?;
        let Ok(id) = Uuid::parse_str(id.trim()) else {
            return Ok(false);
        };
        let user_id = viewer.user.id;
        let mut conn = self.conn().await?;
        let removed = conn
            .transaction::<_, AuthError, _>(async |conn| {
                // The row lock serialises removals: two unlinks at once cannot remove
                // the last two ways in.
                let user = db::users::lock(conn, user_id)
                    .await?
                    .ok_or(AuthError::Unauthenticated(super::TokenProblem::Revoked))?;
                let owned = db::identities::list(conn, user_id).await?;
                if !owned.iter().any(|i| i.id == id) {
                    return Ok(false);
                }
                if super::sign_in_methods::of(conn, &user).await?.count() <= 1 {
                    info!("unlink refused: last way to sign in");
                    return Err(AuthError::Forbidden);
                }
                if !db::identities::delete(conn, id, user_id).await? {
                    return Ok(false);
                }
                self.audit(
                    conn,
                    Event::new(EventType::IdentityUnlinked, Some(user_id))
                        .session(viewer.session_id)
                        .with("identity", id.to_string()),
                    client,
                )
                .await?;
                Ok(true)
            })
            .await?;
        if removed {
            info!(identity.id = %id, "identity unlinked");
        }
        Ok(removed)
    }
}

fn unknown_provider() -> AuthError {
    AuthError::input("provider", "no sign-in provider has this id: see oauthProviders")
}

/// The provider's email, normalised as ours are; one we could not accept is none.
fn provider_email(identity: &ProviderIdentity) -> Option<Email> {
    identity
        .email
        .as_deref()
        .and_then(|raw| Email::parse(raw, "email").ok())
}

/// A unique violation from a concurrent first sign-in (identity or email taken meanwhile).
fn is_race(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<DieselError>(),
            Some(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _))
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(valid_verifier(verifier));
        assert_eq!(s256(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(valid_challenge(&s256(verifier)));
    }

    #[test]
    fn malformed_verifiers_and_challenges_are_refused() {
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
        assert!(!valid_challenge("plain-challenge"));
        assert!(!valid_challenge(&"=".repeat(43)));
    }
}
