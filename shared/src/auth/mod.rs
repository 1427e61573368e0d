//! Passwords, access tokens and refresh tokens.
//!
//! Beside `db`, `views` and `domain`, below the service layer.

pub mod password;
pub mod refresh;
pub mod tokens;

use crate::error::{Error, Result};

/// The operating system could not provide random bytes.
#[derive(Debug, thiserror::Error)]
#[error("no random bytes from the operating system: {0}")]
struct NoRandomness(getrandom::Error);

/// Fills `buf` with random bytes from the operating system.
fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::internal(NoRandomness(e)))
}
