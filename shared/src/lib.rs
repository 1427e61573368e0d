//! Block Chat: a real-time chat API for AWS Lambda.
//!
//! This crate is the whole product: configuration, the domain types, the database access (every
//! SQL statement lives in [`db`]), the HTTP routers that each Lambda function serves
//! ([`http::app`]), and the real-time push over the API Gateway management API. The functions
//! under `functions/` and the local gateway only adapt transport.

pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod extract;
pub mod http;
pub mod openapi;
pub mod realtime;
#[cfg(feature = "seed")]
pub mod seed;
pub mod state;
pub mod telemetry;

pub use config::Config;
pub use error::{Error, Result};
pub use state::AppState;

/// Migrations, embedded at build time; applied by the local gateway, the tests and the
/// `migrate` command of the deployment docs, never on a function's cold start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
