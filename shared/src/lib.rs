//! Block Chat: a real-time chat API for AWS Lambda.
//!
//! This crate is the whole product. Its modules form layers, each importing only from the
//! layers below it (a unit test, `layering`, reads the sources and holds them to that):
//!
//! 1. transports: [`http`] (one axum router per endpoint group, [`http::app`]) and
//!    [`realtime`] (the WebSocket API's handler); neither imports the other;
//! 2. [`state`]: what the handlers share, built once per cold start;
//! 3. [`push`]: delivers the notices of a use case through the API Gateway management API;
//!    [`secrets`]: reads the deployment's secrets from Secrets Manager at cold start;
//! 4. [`service`]: the use cases, free of transport, and the access rules;
//! 5. [`db`] (every SQL statement), [`views`] (every wire shape), [`domain`] (parsed values
//!    and enums), [`auth`] (passwords and tokens);
//! 6. [`config`], [`error`], [`telemetry`].
//!
//! The functions under `functions/` and the local gateway only adapt transport.

pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod push;
pub mod realtime;
pub mod secrets;
#[cfg(feature = "seed")]
pub mod seed;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod views;

#[cfg(test)]
mod layering;

pub use config::Config;
pub use error::{Error, Result};
pub use state::AppState;

/// Migrations, embedded at build time; applied by the local gateway, the tests and the
/// `migrate` command of the deployment docs, never on a function's cold start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
