// Over 400 lines on purpose: four WebAuthn ceremonies over one relying party and store.
//! Passkeys: WebAuthn registration for a signed-in user (with step-up), sign-in with or
//! without an email (discoverable credentials), removal, and the relying party they are
//! bound to.
//!
//! A ceremony's state waits in PostgreSQL between its begin and finish mutations, so any
//! replica finishes what another began; it is taken (deleted) before it is checked, so
//! it finishes once, failed or not. A user-verified sign-in is two factors in one
//! (`amr` `hwk`/`swk` + `mfa`, `aal2`); one without user verification is one factor, so
//! a user with TOTP then gets `MFA_REQUIRED` as after a password.

use std::time::Duration;

use chrono::Utc;
use diesel_async::AsyncConnection;
use serde_json::{Map, Value};
use tracing::{info, instrument, warn};
use uuid::Uuid;
use webauthn_rs::prelude::{
    Credential, Passkey, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Webauthn,
    WebauthnBuilder, WebauthnError,
};
use webauthn_rs_core::{
    WebauthnCore,
    proto::{AllowCredentials, AuthenticationState, ResidentKeyRequirement, UserVerificationPolicy},
};

use super::{
    Auth, AuthError, ClientInfo, Issued, Viewer,
    audit::{Event, EventType},
    input::Email,
    sign_in_methods,
    step_up::{Assurance, Method, Requirement},
    throttle::{Limit, Subject},
};
use crate::{
    config::WebauthnConfig,
    db::{
        self, ResultExt,
        passkeys::{KIND_AUTHENTICATION, KIND_REGISTRATION, NewCeremony, NewPasskey},
    },
};

/// Longest passkey name, in characters.
const NAME_MAX: usize = 64;
/// Label of the keyed digest behind the decoy `allowCredentials`.
const DECOY_PURPOSE: &[u8] = b"authgraph/passkey-decoy/v1";

/// The relying party and the two verifiers built from it.
pub struct PasskeyPolicy {
    /// Registration (webauthn-rs's passkey rules: user verification required).
    webauthn: Webauthn,
    /// Sign-in, with user verification preferred: the result says whether it happened.
    core: WebauthnCore,
    challenge_ttl: Duration,
}

impl std::fmt::Debug for PasskeyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyPolicy")
            .field("challenge_ttl", &self.challenge_ttl)
            .finish_non_exhaustive()
    }
}

impl PasskeyPolicy {
    /// The relying party of `config`.
    pub fn new(config: &WebauthnConfig) -> anyhow::Result<Self> {
        let first = config
            .origins
            .first()
            .ok_or_else(|| anyhow::anyhow!("WEBAUTHN_ORIGINS is empty"))?;
        let mut builder = WebauthnBuilder::new(&config.rp_id, first)
            .map_err(|_| anyhow::anyhow!("WEBAUTHN_RP_ID is not a domain of WEBAUTHN_ORIGINS"))?
            .rp_name(&config.rp_name)
            .timeout(config.challenge_ttl);
        for origin in &config.origins[1..] {
            builder = builder.append_allowed_origin(origin);
        }
        let webauthn = builder
            .build()
            .map_err(|e| anyhow::anyhow!("WebAuthn relying party: {e}"))?;
        let core = WebauthnCore::new_unsafe_experts_only(
            &config.rp_name,
            &config.rp_id,
            config.origins.clone(),
            config.challenge_ttl,
            None,
            None,
        );
        Ok(Self {
            webauthn,
            core,
            challenge_ttl: config.challenge_ttl,
        })
    }
}

/// A begun ceremony: its id and the options the browser gets, as WebAuthn's JSON forms
/// (`PublicKeyCredentialCreationOptionsJSON` / `PublicKeyCredentialRequestOptionsJSON`).
#[derive(Debug)]
pub struct Challenge {
    /// The `challengeId` to finish it with.
    pub id: Uuid,
    /// The options, unwrapped (no `publicKey` around them).
    pub options: Map<String, Value>,
}

/// A finished sign-in: signed in, or a second factor still needed.
enum SignIn {
    Done(Box<Issued>),
    SecondFactor(super::token::OpaqueToken),
}

fn json_object<T: serde::Serialize>(value: &T) -> Result<Map<String, Value>, AuthError> {
    match serde_json::to_value(value).map_err(anyhow::Error::from)? {
        Value::Object(map) => Ok(map),
        _ => Err(anyhow::anyhow!("WebAuthn options are not an object").into()),
    }
}

fn parse_credential<T: serde::de::DeserializeOwned>(credential: Map<String, Value>) -> Result<T, AuthError> {
    serde_json::from_value(Value::Object(credential)).map_err(|_| {
        AuthError::input(
            "credential",
            "not a WebAuthn credential: pass what the browser's PublicKeyCredential.toJSON() returns",
        )
    })
}

fn challenge_id(raw: &str) -> Result<Uuid, AuthError> {
    Uuid::parse_str(raw.trim()).map_err(|_| AuthError::InvalidToken)
}

/// The stored ceremony state. One we wrote and cannot read is our bug (or a webauthn-rs
/// upgrade changed its format between begin and finish): internal, not the client's.
fn state_of<T: serde::de::DeserializeOwned>(state: &str) -> Result<T, AuthError> {
    serde_json::from_str(state)
        .map_err(|e| AuthError::Internal(anyhow::Error::from(e).context("passkey ceremony state")))
}

/// Why a registration or assertion was refused, for the person fixing their setup. The
/// origin and RP id cases are the common misconfigurations, so they are named.
fn refusal(err: &WebauthnError) -> AuthError {
    AuthError::PasskeyRefused(match err {
        WebauthnError::InvalidRPOrigin => {
            "the passkey ceremony ran on an origin this service does not accept: the page's origin must be one of WEBAUTHN_ORIGINS"
        }
        WebauthnError::InvalidRPIDHash => {
            "the passkey belongs to another relying party: the page must use this service's WEBAUTHN_RP_ID"
        }
        WebauthnError::MismatchedChallenge => "the credential answers another challenge: start again",
        WebauthnError::CredentialPossibleCompromise => {
            "this passkey's signature counter went back: it may have been cloned, so it is refused"
        }
        WebauthnError::UserNotVerified => "the authenticator did not verify the user (PIN or biometrics)",
        _ => "the passkey could not be verified",
    })
}

/// The decoy credential ids answered for an email without passkeys: one or two ids of a
/// common length, the same for the same email every time and on every replica.
fn decoys(cipher: &super::mfa::cipher::SecretCipher, email: &Email) -> Vec<AllowCredentials> {
    let seed = cipher.mac(DECOY_PURPOSE, email.as_str().as_bytes());
    let count = 1 + usize::from(seed[0] & 1);
    (0..count)
        .map(|i| {
            let len = [16, 32, 48][usize::from(seed[1 + i]) % 3];
            let mut id = Vec::with_capacity(64);
            for part in 0u8..2 {
                id.extend_from_slice(&cipher.mac(DECOY_PURPOSE, &[&seed[..], &[i as u8, part]].concat()));
            }
            id.truncate(len);
            AllowCredentials {
                type_: "public-key".into(),
                id,
                transports: None,
            }
        })
        .collect()
}

fn valid_name(name: Option<&str>) -> Result<Option<String>, AuthError> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(AuthError::input(
            "name",
            format!("a passkey name is at most {NAME_MAX} characters, without control characters"),
        ));
    }
    Ok(Some(name.to_owned()))
}

impl Auth {
    async fn store_ceremony(
        &self,
        kind: &str,
        user_id: Option<Uuid>,
        email_bound: bool,
        state: &str,
    ) -> Result<Uuid, AuthError> {
        let id = Uuid::new_v4();
        let expires_at = Utc::now() + self.passkeys.challenge_ttl;
        let mut conn = self.conn().await?;
        db::passkeys::insert_ceremony(
            &mut conn,
            &NewCeremony {
                id,
                kind,
                user_id,
                email_bound,
                state,
                expires_at,
            },
        )
        .await?;
        Ok(id)
    }

    /// Begins registering a passkey for the caller. Needs step-up, as every new sign-in
    /// method does; the caller's passkeys are excluded (no second copy on one device).
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn begin_passkey_registration(&self, viewer: &Viewer) -> Result<Challenge, AuthError> {
        let policy = &self.passkeys;
        self.require_step_up(viewer, Requirement::SignInMethod).await?;
        let user = &viewer.user;
        let existing = {
            let mut conn = self.conn().await?;
            db::passkeys::list(&mut conn, user.id).await?
        };
        let exclude = existing.into_iter().map(|p| p.credential_id).collect();
        // The account's name in the authenticator's list: its email, or for an account
        // without one (social sign-in), its display name or id.
        let id_label = user.id.to_string();
        let name = user
            .email
            .as_deref()
            .or(user.display_name.as_deref())
            .unwrap_or(&id_label);
        let display = user.display_name.as_deref().unwrap_or(name);
        let (mut options, state) = policy
            .webauthn
            .start_passkey_registration(user.id, name, display, Some(exclude))
            .map_err(|e| anyhow::anyhow!("starting a passkey registration: {e}"))?;
        // Ask for a discoverable credential, so `beginPasskeyLogin` without an email finds
        // it (webauthn-rs leaves residency to the authenticator, which then makes none).
        if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
            selection.resident_key = Some(ResidentKeyRequirement::Preferred);
        }
        let state = serde_json::to_string(&state).map_err(anyhow::Error::from)?;
        let id = self
            .store_ceremony(KIND_REGISTRATION, Some(user.id), false, &state)
            .await?;
        info!(ceremony.id = %id, "passkey registration begun");
        Ok(Challenge {
            id,
            options: json_object(&options.public_key)?,
        })
    }

    /// Finishes a registration the caller began: verifies the browser's credential against
    /// the stored challenge, origin and RP id, and stores the passkey.
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn finish_passkey_registration(
        &self,
        viewer: &Viewer,
        challenge: &str,
        credential: Map<String, Value>,
        name: Option<&str>,
        client: &ClientInfo,
    ) -> Result<db::passkeys::Passkey, AuthError> {
        let policy = &self.passkeys;
        let id = challenge_id(challenge)?;
        let credential: RegisterPublicKeyCredential = parse_credential(credential)?;
        let name = valid_name(name)?;
        self.require_step_up(viewer, Requirement::SignInMethod).await?;
        let user_id = viewer.user.id;
        let mut conn = self.conn().await?;
        let ceremony = db::passkeys::take_live_of(&mut conn, id, KIND_REGISTRATION, user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let state: PasskeyRegistration = state_of(&ceremony.state)?;
        let passkey: Passkey = policy
            .webauthn
            .finish_passkey_registration(&credential, &state)
            .map_err(|e| {
                info!(error = %e, "passkey registration refused");
                refusal(&e)
            })?;
        let credential = Credential::from(passkey);
        let json = serde_json::to_string(&credential).map_err(anyhow::Error::from)?;
        let new = NewPasskey {
            id: Uuid::new_v4(),
            user_id,
            credential_id: &credential.cred_id,
            credential: &json,
            name: name.as_deref(),
            sign_count: i64::from(credential.counter),
            backup_eligible: credential.backup_eligible,
            backed_up: credential.backup_state,
        };
        let session_id = viewer.session_id;
        let stored = conn
            .transaction::<_, AuthError, _>(async |conn| {
                let stored = db::passkeys::insert(conn, &new)
                    .await
                    .on_constraint("passkeys_credential_id_key", || {
                        AuthError::PasskeyRefused("this passkey is already registered")
                    })?;
                self.audit(
                    conn,
                    Event::new(EventType::PasskeyAdded, Some(user_id))
                        .session(session_id)
                        .with("passkey", stored.id.to_string()),
                    client,
                )
                .await?;
                Ok(stored)
            })
            .await?;
        info!(passkey.id = %stored.id, backup_eligible = stored.backup_eligible, "passkey added");
        Ok(stored)
    }

    /// Begins a passkey sign-in. With an email: that account's passkeys, or, for an
    /// unknown email or one without passkeys, stable decoys, so the answer reveals
    /// nothing; counted like a login. Without: any discoverable credential.
    #[instrument(skip_all)]
    pub async fn begin_passkey_login(
        &self,
        email: Option<&str>,
        client: &ClientInfo,
    ) -> Result<Challenge, AuthError> {
        let policy = &self.passkeys;
        let email = email
            .filter(|e| !e.trim().is_empty())
            .map(|e| Email::parse(e, "email"))
            .transpose()?;
        let (user_id, credentials) = match &email {
            Some(email) => {
                // Counted like a password attempt; a successful finish clears it.
                let attempt = self.throttle.login(email, client, None).await?;
                drop(attempt);
                let mut conn = self.conn().await?;
                match db::users::find_by_email(&mut conn, email.as_str()).await? {
                    Some(user) => (Some(user.id), db::passkeys::list(&mut conn, user.id).await?),
                    None => (None, Vec::new()),
                }
            }
            None => (None, Vec::new()),
        };
        let credentials: Vec<Credential> = credentials
            .iter()
            .map(|p| serde_json::from_str(&p.credential))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::Error::from(e).context("stored passkey"))?;
        let has_passkeys = !credentials.is_empty();
        let builder = policy
            .core
            .new_challenge_authenticate_builder(credentials, Some(UserVerificationPolicy::Preferred))
            .map_err(|e| anyhow::anyhow!("starting a passkey sign-in: {e}"))?;
        let (mut options, state) = policy
            .core
            .generate_challenge_authenticate(builder)
            .map_err(|e| anyhow::anyhow!("starting a passkey sign-in: {e}"))?;
        let allowed = &mut options.public_key.allow_credentials;
        match &email {
            Some(email) if !has_passkeys => *allowed = decoys(&self.mfa.cipher, email),
            // Decoys carry no transports, so real entries carry none either.
            _ => allowed.iter_mut().for_each(|c| c.transports = None),
        }
        let state = serde_json::to_string(&state).map_err(anyhow::Error::from)?;
        let id = self
            .store_ceremony(
                KIND_AUTHENTICATION,
                user_id.filter(|_| has_passkeys),
                email.is_some(),
                &state,
            )
            .await?;
        Ok(Challenge {
            id,
            options: json_object(&options.public_key)?,
        })
    }

    /// Finishes a passkey sign-in: checks the assertion against the stored challenge and
    /// the credential's public key, origin, RP id and signature counter, then opens a
    /// session (or answers `MFA_REQUIRED`: no user verification and a TOTP factor).
    #[instrument(skip_all, fields(user.id))]
    pub async fn finish_passkey_login(
        &self,
        challenge: &str,
        credential: Map<String, Value>,
        client: &ClientInfo,
    ) -> Result<Issued, AuthError> {
        let policy = &self.passkeys;
        let credential: PublicKeyCredential = parse_credential(credential)?;
        let check = self.throttle.token(client).await?;
        let taken = async {
            let id = challenge_id(challenge)?;
            let mut conn = self.conn().await?;
            db::passkeys::take_live(&mut conn, id, KIND_AUTHENTICATION)
                .await?
                .ok_or(AuthError::InvalidToken)
        }
        .await;
        let ceremony = check.settle(taken).await?;
        // Sign-ins begun with an email were counted then; discoverable ones count here.
        let address_attempt = match (ceremony.email_bound, client.ip) {
            (false, Some(ip)) => Some(
                self.throttle
                    .attempt(&[(Limit::LoginAddress, Subject::Address(ip))])
                    .await?,
            ),
            _ => None,
        };
        let state: AuthenticationState = state_of(&ceremony.state)?;
        let mut conn = self.conn().await?;
        let outcome = conn
            .transaction::<_, AuthError, _>(async |conn| {
                let raw_id = credential.get_credential_id();
                let Some(stored) = db::passkeys::lock_by_credential_id(conn, raw_id).await? else {
                    info!("passkey sign-in refused: unknown credential");
                    return Err(AuthError::PasskeyRefused("this passkey is not registered here"));
                };
                tracing::Span::current().record("user.id", tracing::field::display(stored.user_id));
                let owner_ok = if ceremony.email_bound {
                    ceremony.user_id == Some(stored.user_id)
                } else {
                    // Discoverable: the authenticator names its user, who must own it.
                    credential.get_user_unique_id() == Some(stored.user_id.as_bytes().as_slice())
                };
                if !owner_ok {
                    warn!(passkey.id = %stored.id, "passkey sign-in refused: the credential belongs to another account");
                    return Err(AuthError::PasskeyRefused(
                        "this passkey does not belong to the account signing in",
                    ));
                }
                let mut cred: Credential = serde_json::from_str(&stored.credential)
                    .map_err(|e| anyhow::Error::from(e).context("stored passkey"))?;
                cred.counter = u32::try_from(stored.sign_count).unwrap_or(u32::MAX);
                // webauthn-rs-core refuses any assertion without user verification for a
                // credential registered with it; API.md instead counts one as a single
                // factor (MFA_REQUIRED for TOTP users), so the check sees no registration
                // policy and the result says whether the user was verified.
                let mut checked = cred.clone();
                checked.registration_policy = UserVerificationPolicy::Discouraged_DO_NOT_USE;
                checked.user_verified = false;
                let result = policy
                    .core
                    .authenticate_single_credential(&credential, &state, &checked)
                    .map_err(|e| {
                        if matches!(e, WebauthnError::CredentialPossibleCompromise) {
                            warn!(
                                passkey.id = %stored.id,
                                stored_counter = stored.sign_count,
                                "passkey refused: its signature counter went back (a cloned authenticator?)"
                            );
                        } else {
                            info!(passkey.id = %stored.id, error = %e, "passkey sign-in refused");
                        }
                        refusal(&e)
                    })?;
                let now = Utc::now();
                cred.counter = cred.counter.max(result.counter());
                cred.backup_state = result.backup_state();
                cred.backup_eligible = result.backup_eligible();
                let json = serde_json::to_string(&cred).map_err(anyhow::Error::from)?;
                db::passkeys::record_use(
                    conn,
                    stored.id,
                    &json,
                    i64::from(cred.counter),
                    result.backup_state(),
                    now,
                )
                .await?;
                let user = db::users::find(conn, stored.user_id)
                    .await?
                    .ok_or(AuthError::PasskeyRefused("this passkey is not registered here"))?;
                let method = if result.backup_eligible() {
                    Method::Swk
                } else {
                    Method::Hwk
                };
                if result.user_verified() {
                    let assurance = Assurance::new(&[method, Method::Mfa], now);
                    return Ok(SignIn::Done(Box::new(
                        self.open_session(conn, user, client, &assurance).await?,
                    )));
                }
                if db::factors::has_active(conn, user.id).await? {
                    let token = self.start_mfa_challenge(conn, user.id, &[method]).await?;
                    return Ok(SignIn::SecondFactor(token));
                }
                let assurance = Assurance::new(&[method], now);
                Ok(SignIn::Done(Box::new(
                    self.open_session(conn, user, client, &assurance).await?,
                )))
            })
            .await;
        drop(conn);
        match outcome? {
            SignIn::Done(issued) => {
                if let Some(attempt) = address_attempt {
                    attempt.succeeded().await;
                }
                self.throttle
                    .clear_login(&super::account_key(&issued.user), client)
                    .await;
                info!(session.id = %issued.session_id, "login succeeded with a passkey");
                Ok(*issued)
            }
            SignIn::SecondFactor(mfa_token) => {
                info!("passkey accepted without user verification: second factor required");
                Err(AuthError::MfaRequired {
                    mfa_token,
                    factors: super::mfa::FACTORS.to_vec(),
                })
            }
        }
    }

    /// Removes one of the caller's passkeys (step-up needed). Refused with `FORBIDDEN`
    /// when it is the caller's last way to sign in; false if it is not theirs.
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn remove_passkey(
        &self,
        viewer: &Viewer,
        id: &str,
        client: &ClientInfo,
    ) -> Result<bool, AuthError> {
        let Ok(id) = Uuid::parse_str(id.trim()) else {
            return Ok(false);
        };
        self.require_step_up(viewer, Requirement::SignInMethod).await?;
        let user_id = viewer.user.id;
        let mut conn = self.conn().await?;
        let removed = conn
            .transaction::<_, AuthError, _>(async |conn| {
                // Locks the user first: two removals at once cannot both see a method left.
                let Some(user) = db::passkeys::lock_owner(conn, user_id).await? else {
                    return Ok(false);
                };
                if !db::passkeys::delete_owned(conn, id, user_id).await? {
                    return Ok(false);
                }
                if sign_in_methods::of(conn, &user).await?.count() == 0 {
                    info!(passkey.id = %id, "passkey removal refused: it is the last way to sign in");
                    return Err(AuthError::Forbidden);
                }
                self.audit(
                    conn,
                    Event::new(EventType::PasskeyRemoved, Some(user_id))
                        .session(viewer.session_id)
                        .with("passkey", id.to_string()),
                    client,
                )
                .await?;
                Ok(true)
            })
            .await?;
        if removed {
            info!(passkey.id = %id, "passkey removed");
        }
        Ok(removed)
    }

    /// A user's passkeys, oldest first.
    pub async fn passkeys_of(&self, user_id: Uuid) -> Result<Vec<db::passkeys::Passkey>, AuthError> {
        let mut conn = self.conn().await?;
        Ok(db::passkeys::list(&mut conn, user_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoys_are_stable_per_email_and_differ_between_emails() {
        let cipher = super::super::mfa::cipher::SecretCipher::new(&[7u8; 32]).unwrap();
        let a = Email::parse("a@example.com", "email").unwrap();
        let b = Email::parse("b@example.com", "email").unwrap();
        let ids = |e: &Email| decoys(&cipher, e).into_iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&a));
        assert_ne!(ids(&a), ids(&b));
        for id in ids(&a).into_iter().chain(ids(&b)) {
            assert!([16, 32, 48].contains(&id.len()), "{}", id.len());
        }
        let other = super::super::mfa::cipher::SecretCipher::new(&[8u8; 32]).unwrap();
        assert_ne!(
            ids(&a),
            decoys(&other, &a).into_iter().map(|c| c.id).collect::<Vec<_>>()
        );
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(valid_name(Some("  Laptop ")).unwrap().as_deref(), Some("Laptop"));
        assert_eq!(valid_name(Some("   ")).unwrap(), None);
        assert!(matches!(
            valid_name(Some(&"x".repeat(65))),
            Err(AuthError::InvalidInput { field: "name", .. })
        ));
    }

    #[test]
    fn origin_and_rp_id_refusals_say_what_to_fix() {
        let origin = refusal(&WebauthnError::InvalidRPOrigin).to_string();
        assert!(origin.contains("WEBAUTHN_ORIGINS"), "{origin}");
        let rp = refusal(&WebauthnError::InvalidRPIDHash).to_string();
        assert!(rp.contains("WEBAUTHN_RP_ID"), "{rp}");
    }

    #[test]
    fn the_default_relying_party_builds() {
        let policy = PasskeyPolicy::new(&WebauthnConfig::default()).unwrap();
        assert_eq!(policy.challenge_ttl, Duration::from_secs(300));
    }
}
