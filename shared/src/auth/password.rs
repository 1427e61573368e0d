//! argon2id password hashing with OWASP's parameters, off the async workers, at most one hash
//! per core at a time, each in a memory area that is kept and reused.
//!
//! A hash needs 19 MiB. Allocated anew on whichever blocking thread runs it, that memory stays
//! with the allocator (one arena per thread), and under a burst of logins the process grows by
//! 19 MiB per blocking thread and keeps it. Here the number of hashes in flight is bounded by a
//! semaphore, and each takes one of the kept areas (at most one per permit), so the memory for
//! hashing is `cores × 19 MiB` whatever the load. More hashes than cores would only queue on the
//! CPU anyway.

use std::sync::{LazyLock, Mutex, PoisonError};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::domain::Password;
use crate::error::{Error, Result};

/// OWASP: argon2id, 19 MiB, two passes, one lane.
fn params() -> Params {
    // These constants are valid by construction; `Params::new` only refuses out-of-range values.
    Params::new(19 * 1024, 2, 1, None).unwrap_or_default()
}

/// The hashes allowed at once, and the memory areas kept between them.
struct Hashing {
    permits: Semaphore,
    areas: Mutex<Vec<Vec<Block>>>,
    /// Blocks per area: what the product's own parameters need.
    blocks: usize,
}

static HASHING: LazyLock<Hashing> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Hashing {
        permits: Semaphore::new(cores),
        areas: Mutex::new(Vec::with_capacity(cores)),
        blocks: params().block_count(),
    }
});

impl Hashing {
    /// Runs `work` on the blocking pool once a permit is free, with a kept memory area of at
    /// least `blocks` blocks (a hash with larger parameters than the product's gets one of its
    /// own, not kept).
    async fn run<T, F>(&'static self, blocks: usize, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut [Block]) -> T + Send + 'static,
    {
        let permit = self.permits.acquire().await.map_err(Error::internal)?;
        tokio::task::spawn_blocking(move || {
            // The permit goes with the hash, not with the request: a request that gives up
            // (its deadline passed) does not let another hash start beside this one.
            let _permit = permit;
            if blocks > self.blocks {
                return work(&mut vec![Block::default(); blocks]);
            }
            let kept = self.areas().pop();
            let mut area = kept.unwrap_or_else(|| vec![Block::default(); self.blocks]);
            let done = work(&mut area);
            self.areas().push(area);
            done
        })
        .await
        .map_err(Error::internal)
    }

    fn areas(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Block>>> {
        // A panic while holding the lock leaves a plain list of buffers: still usable.
        self.areas.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A hash of a password nobody has, verified when the account does not exist, so that a wrong
/// username costs the same time as a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let mut area = vec![Block::default(); params().block_count()];
    hash_with("an account that does not exist", &mut area).unwrap_or_default()
});

fn hash_with(password: &str, area: &mut [Block]) -> Result<String> {
    let mut salt = [0u8; 16];
    super::random_bytes(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(Error::internal)?;
    let params = params();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let mut raw_salt = [0u8; 16];
    let raw_salt = salt.decode_b64(&mut raw_salt).map_err(Error::internal)?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), raw_salt, &mut out, area)
        .map_err(Error::internal)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(Error::internal)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(Error::internal)?),
    };
    Ok(hash.to_string())
}

/// A stored hash, parsed: what verifying it takes.
struct Stored {
    argon2: Argon2<'static>,
    salt: Vec<u8>,
    expected: Output,
}

impl Stored {
    fn parse(hash: &str) -> Option<Self> {
        let parsed = PasswordHash::new(hash).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = parsed
            .version
            .map_or(Ok(Version::default()), Version::try_from);
        let params = Params::try_from(&parsed).ok()?;
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?.to_vec();
        Some(Self {
            argon2: Argon2::new(algorithm, version.ok()?, params),
            salt,
            expected: parsed.hash?,
        })
    }

    fn blocks(&self) -> usize {
        self.argon2.params().block_count()
    }

    fn matches(&self, password: &str, area: &mut [Block]) -> bool {
        let mut out = vec![0u8; self.expected.len()];
        self.argon2
            .hash_password_into_with_memory(password.as_bytes(), &self.salt, &mut out, area)
            .is_ok()
            // `Output`'s comparison takes the same time wherever the bytes differ.
            && Output::new(&out).is_ok_and(|computed| computed == self.expected)
    }
}

/// Hashes a new password.
pub async fn hash(password: &Password) -> Result<String> {
    let password = password.expose().to_owned();
    HASHING
        .run(HASHING.blocks, move |area| hash_with(&password, area))
        .await?
}

/// Verifies `password` against `hash`, or against a dummy hash when there is no account.
pub async fn verify(password: String, hash: Option<String>) -> Result<bool> {
    let stored = match hash.as_deref().map(Stored::parse) {
        // Not a hash this code wrote: nothing verifies against it.
        Some(None) => return Ok(false),
        Some(Some(stored)) => Some(stored),
        None => None,
    };
    let blocks = stored.as_ref().map_or(HASHING.blocks, Stored::blocks);
    HASHING
        .run(blocks, move |area| match stored {
            Some(stored) => stored.matches(&password, area),
            None => {
                if let Some(dummy) = Stored::parse(&DUMMY_HASH) {
                    dummy.matches(&password, area);
                }
                false
            }
        })
        .await
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
    async fn hashes_are_standard_phc_strings_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let password = Password::parse("correct horse battery".into()).expect("valid");
        let ours = hash(&password).await.expect("hash");
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok(),
            "the argon2 crate's own verifier accepts our hash"
        );
        // A hash as the argon2 crate's own API writes it (as accounts made before hold them).
        let salt = SaltString::encode_b64(b"sixteen byte slt").expect("salt");
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
            .hash_password(b"correct horse battery", &salt)
            .expect("hash")
            .to_string();
        assert!(
            verify("correct horse battery".into(), Some(theirs.clone()))
                .await
                .expect("verify")
        );
        assert!(!verify("wrong".into(), Some(theirs)).await.expect("verify"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_keeps_at_most_one_memory_area_per_core() {
        let password = Password::parse("correct horse battery".into()).expect("valid");
        let hashed = hash(&password).await.expect("hash");
        let burst = (0..24).map(|i| {
            let hashed = hashed.clone();
            tokio::spawn(async move {
                let guess = if i % 2 == 0 {
                    "correct horse battery"
                } else {
                    "nope"
                };
                verify(guess.into(), Some(hashed)).await.expect("verify") == (i % 2 == 0)
            })
        });
        for right in futures::future::join_all(burst).await {
            assert!(right.expect("joined"), "every verification answers right");
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let kept = HASHING.areas().len();
        assert!(
            (1..=cores).contains(&kept),
            "{kept} memory areas kept for {cores} cores"
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
