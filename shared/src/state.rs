//! The state every handler shares, built once per cold start.

use std::sync::Arc;

use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::auth::tokens::JwtKeys;
use crate::config::{Config, ConfigError};

/// Cheap to clone: a pool handle and a few `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub keys: Arc<JwtKeys>,
    pub config: Arc<Config>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    DatabaseUrl(sqlx::Error),
}

impl AppState {
    /// Reads [`Config::from_env`] and builds the state. The pool connects lazily, so a cold
    /// start pays for the database only when the first request needs it.
    pub fn from_env() -> Result<Self, StateError> {
        Self::new(Config::from_env()?)
    }

    pub fn new(config: Config) -> Result<Self, StateError> {
        let options: PgConnectOptions = config
            .database_url
            .expose_secret()
            .parse()
            .map_err(StateError::DatabaseUrl)?;
        let db = PgPoolOptions::new()
            .max_connections(config.db_max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_lazy_with(options);
        Ok(Self::with_pool(config, db))
    }

    /// Builds the state over an existing pool (the local gateway and tests).
    pub fn with_pool(config: Config, db: PgPool) -> Self {
        Self {
            db,
            keys: Arc::new(JwtKeys::new(&config)),
            config: Arc::new(config),
        }
    }
}
