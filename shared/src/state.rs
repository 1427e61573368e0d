//! The state every handler shares, built once per cold start: the composition root, just
//! below the transports. Use cases never see it; handlers pass them what they need from it.

use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::tokens::JwtKeys;
use crate::config::{Config, ConfigError};
use crate::push::{CredentialsSource, Push};
use crate::secrets::{self, SecretsError};

/// Cheap to clone: a pool handle and a few `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub keys: Arc<JwtKeys>,
    pub push: Arc<Push>,
    pub config: Arc<Config>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl AppState {
    /// Reads the configuration from the environment, with `JWT_SECRET` and `DATABASE_URL`
    /// taken from Secrets Manager where `JWT_SECRET_ARN` and `DATABASE_SECRET_ARN` are set
    /// (once, here, at cold start), and builds the state for AWS: the pool connects lazily and
    /// the management API client is built on the first push, so a cold start pays for either
    /// only when a request needs it; pushes use the function's own AWS credentials.
    pub async fn from_env() -> Result<Self, StateError> {
        let resolved = secrets::resolve_from_env().await?;
        let config =
            Config::from_lookup(|name| resolved.get(name).or_else(|| std::env::var(name).ok()))?;
        let db = Self::lazy_pool(&config)?;
        Ok(Self::build(config, db, CredentialsSource::Environment))
    }

    /// Builds the state for a local endpoint (no AWS credentials needed).
    pub fn new(config: Config) -> Result<Self, StateError> {
        let db = Self::lazy_pool(&config)?;
        Ok(Self::with_pool(config, db))
    }

    /// A pool over [`Config::database_options`], which refuses unverified TLS to a database
    /// that is not on this machine.
    fn lazy_pool(config: &Config) -> Result<PgPool, StateError> {
        let options = config.database_options()?;
        let db = config.pool_options().connect_lazy_with(options);
        Ok(db)
    }

    /// Builds the state over an existing pool, pushing to a local management endpoint (the
    /// local gateway and tests).
    pub fn with_pool(config: Config, db: PgPool) -> Self {
        Self::build(config, db, CredentialsSource::Local)
    }

    fn build(config: Config, db: PgPool, source: CredentialsSource) -> Self {
        Self {
            push: Arc::new(Push::new(db.clone(), &config, source)),
            keys: Arc::new(JwtKeys::new(&config)),
            db,
            config: Arc::new(config),
        }
    }
}
