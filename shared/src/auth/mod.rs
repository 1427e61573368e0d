//! Passwords, access tokens and refresh tokens.

pub mod password;
pub mod refresh;
pub mod tokens;
