//! argon2id password hashing with OWASP's parameters, off the async workers.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::domain::Password;
use crate::error::{Error, Result};

/// OWASP: argon2id, 19 MiB, two passes, one lane.
fn argon2() -> Argon2<'static> {
    // These constants are valid by construction; `Params::new` only refuses out-of-range values.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A hash of a password nobody has, verified when the account does not exist, so that a wrong
/// username costs the same time as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_blocking("an account that does not exist").unwrap_or_default());

fn hash_blocking(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    super::random_bytes(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(Error::internal)?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(Error::internal)
}

fn verify_blocking(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Hashes on the blocking pool: a hash takes tens of milliseconds of CPU.
pub async fn hash(password: &Password) -> Result<String> {
    let password = password.expose().to_owned();
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(Error::internal)?
}

/// Verifies `password` against `hash`, or against a dummy hash when there is no account.
pub async fn verify(password: String, hash: Option<String>) -> Result<bool> {
    tokio::task::spawn_blocking(move || match hash {
        Some(hash) => verify_blocking(&password, &hash),
        None => {
            verify_blocking(&password, &DUMMY_HASH);
            false
        }
    })
    .await
    .map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_nothing_else() {
        let password = Password::parse("correct horse battery".into()).expect("valid");
        let hashed = hash(&password).await.expect("hash");
        assert!(
            hashed.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hashed}"
        );
        assert!(
            verify("correct horse battery".into(), Some(hashed.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !verify("correct horse batterY".into(), Some(hashed))
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn two_hashes_of_one_password_differ() {
        let password = Password::parse("correct horse battery".into()).expect("valid");
        let a = hash(&password).await.expect("hash");
        let b = hash(&password).await.expect("hash");
        assert_ne!(a, b, "salts must be random");
    }

    #[tokio::test]
    async fn unknown_account_never_verifies() {
        assert!(
            !verify("anything at all".into(), None)
                .await
                .expect("verify")
        );
        assert!(
            !verify("x".into(), Some("not a hash".into()))
                .await
                .expect("verify")
        );
    }
}
