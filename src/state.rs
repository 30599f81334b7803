//! `AppState`: everything a request needs, built once at start-up and cheap to clone.

use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::{
    auth::{Auth, Policy, jwt::JwtKeys, password::PasswordHasher},
    config::Config,
    db,
    mail::Composer,
};

/// Shared by the router and the GraphQL schema.
#[derive(Clone)]
pub struct AppState {
    /// The auth use cases.
    pub auth: Auth,
    /// The configuration the process started with.
    pub config: Arc<Config>,
}

impl AppState {
    /// Builds the state with the keys the configuration names (or development keys).
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let keys = crate::auth::jwt::load_keys(config.jwt_keys.as_ref(), &config.data_dir)?;
        Self::with_keys(config, keys)
    }

    /// Builds the state with the given signing keys, newest first.
    pub fn with_keys(config: Config, keys: Vec<crate::auth::jwt::SigningKey>) -> anyhow::Result<Self> {
        let keys = JwtKeys::new(
            keys,
            &config.jwt_issuer,
            &config.jwt_audience,
            config.access_token_ttl,
        )
        .context("JWT_KEYS")?;
        let pool = db::pool(
            config.database_url.expose_secret(),
            config.database_pool_size,
            config.database_timeout,
        );
        let passwords = PasswordHasher::new(config.password_hash_concurrency)?;
        let policy = Policy {
            refresh_ttl: config.refresh_token_ttl,
            session_max_lifetime: config.session_max_lifetime,
            refresh_grace: config.refresh_grace,
        };
        Ok(Self {
            auth: Auth::new(pool, Arc::new(keys), passwords, policy)
                .with_mail(Composer::new(&config.public_url, &config.email_from))
                .with_throttle(config.throttle.clone()),
            config: Arc::new(config),
        })
    }
}
