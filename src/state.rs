//! `AppState`: everything a request needs, built once at start-up and cheap to clone.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::{
    auth::{
        Auth, AuthParts, Policy,
        jwt::JwtKeys,
        mfa::{self, MfaPolicy},
        passkeys::PasskeyPolicy,
        password::PasswordHasher,
        social::Social,
    },
    config::Config,
    db,
    mail::Composer,
};

/// Shared by the router and the GraphQL schema. One `Arc`: every request clones the
/// state (axum extractors, middleware), and one reference count is all that costs.
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct App {
    /// The auth use cases.
    pub auth: Auth,
    /// The connection pool, for what is not a use case (probes, the mail worker).
    pub db: db::DbPool,
    /// The configuration the process started with.
    pub config: Arc<Config>,
    /// The live session events every open socket subscribes to (fed by
    /// [`crate::events::spawn_listener`]).
    pub events: Arc<crate::events::Hub>,
    /// What, besides the database answering, keeps this process from taking traffic.
    pub readiness: Arc<Readiness>,
}

/// Reasons `/readyz` answers 503 although the database answers: the schema is not
/// migrated yet (development start-up), or the process is shutting down.
#[derive(Debug, Default)]
pub struct Readiness {
    preparing: AtomicBool,
    draining: AtomicBool,
    /// The database failed the last check (so a change is logged once, not per probe).
    database_down: AtomicBool,
}

impl Readiness {
    /// Marks the database as still being created or migrated (or done, with `false`).
    pub fn set_preparing(&self, preparing: bool) {
        self.preparing.store(preparing, Ordering::Relaxed);
    }

    /// Marks the process as shutting down: load balancers should stop sending to it.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Records a readiness check's database answer, logging only changes.
    pub fn database_answered(&self, answered: bool) {
        let was_down = self.database_down.swap(!answered, Ordering::Relaxed);
        match (was_down, answered) {
            (false, false) => tracing::warn!("database unreachable: not ready"),
            (true, true) => tracing::info!("database reachable again: ready"),
            _ => {}
        }
    }

    /// Why this process should not take traffic, if it should not.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.draining.load(Ordering::Relaxed) {
            Some("shutting down")
        } else if self.preparing.load(Ordering::Relaxed) {
            Some("preparing the database")
        } else {
            None
        }
    }
}

impl AppState {
    /// Builds the state with the keys the configuration names (or development keys).
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let keys = crate::auth::jwt::load_keys(config.tokens.keys.as_ref(), &config.data_dir)?;
        let mfa_key = mfa::cipher::load_key(config.mfa.encryption_key.as_ref(), &config.data_dir)?;
        Self::build(config, keys, mfa_key)
    }

    /// Builds the state with the given signing keys, newest first. TOTP secrets are
    /// sealed with `MFA_ENCRYPTION_KEY` when configured, else with a key that lives as
    /// long as the process (nothing is written to `DATA_DIR`).
    pub fn with_keys(config: Config, keys: Vec<crate::auth::jwt::SigningKey>) -> anyhow::Result<Self> {
        let mfa_key = match &config.mfa.encryption_key {
            Some(key) => mfa::cipher::SecretCipher::from_base64(key.expose_secret())?,
            None => mfa::cipher::SecretCipher::ephemeral()?,
        };
        Self::build(config, keys, mfa_key)
    }

    fn build(
        config: Config,
        keys: Vec<crate::auth::jwt::SigningKey>,
        mfa_key: mfa::cipher::SecretCipher,
    ) -> anyhow::Result<Self> {
        let keys = JwtKeys::new(
            keys,
            &config.tokens.issuer,
            &config.tokens.audience,
            config.tokens.access_ttl,
        )
        .context("JWT_KEYS")?;
        let pool = db::pool(
            config.database.url.expose_secret(),
            config.database.pool_size,
            config.database.timeout,
        );
        let passwords = PasswordHasher::new(config.passwords.hash_concurrency)?;
        crate::auth::breach::install_tls_provider();
        let breach = config
            .passwords
            .breach_check_url
            .as_deref()
            .map(crate::auth::breach::BreachCheck::new)
            .transpose()?;
        let policy = Policy {
            refresh_ttl: config.tokens.refresh_ttl,
            session_max_lifetime: config.tokens.session_max_lifetime,
            refresh_grace: config.tokens.refresh_grace,
        };
        let auth = Auth::new(AuthParts {
            db: pool.clone(),
            keys: Arc::new(keys),
            passwords,
            policy,
            throttle: config.throttle.clone(),
            mail: Composer::new(&config.mail.public_url, &config.mail.from),
            mfa: MfaPolicy::new(&config.mfa, mfa_key),
            passkeys: PasskeyPolicy::new(&config.webauthn)?,
            breach,
        })
        .with_social(Social::new(&config.oauth).context("OAUTH_PROVIDERS")?)
        .with_webhooks(config.webhooks.clone());
        Ok(Self(Arc::new(App {
            auth,
            db: pool,
            config: Arc::new(config),
            events: Arc::default(),
            readiness: Arc::default(),
        })))
    }
}
