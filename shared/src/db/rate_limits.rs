//! `rate_limits`: attempts counted per key before they are tried, shared by every function
//! instance. Keys are stored as SHA-256 hashes with a fixed prefix, never as typed.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::PgExecutor;

use crate::error::Result;

/// What the table keeps for a key such as `account:42` or `address:198.51.100.7`.
pub fn hashed(key: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(b"blockchat rate limit v1\0");
    hasher.update(key.as_bytes());
    hasher.finalize().to_vec()
}

/// One key's count after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count {
    pub hits: i32,
    /// Seconds until the key's window ends.
    pub retry_after: u64,
}

/// Counts one attempt under each key (hashed), each in its own window, in one statement, and
/// answers each key's count in the order given: the atomic increment is what lets parallel
/// attempts see each other. A window that has passed starts over. A few expired rows of other
/// keys are purged on the way.
pub async fn hit(db: impl PgExecutor<'_>, keys: &[(Vec<u8>, Duration)]) -> Result<Vec<Count>> {
    let hashes: Vec<Vec<u8>> = keys.iter().map(|(k, _)| k.clone()).collect();
    let windows: Vec<f64> = keys.iter().map(|(_, w)| w.as_secs_f64()).collect();
    let rows = sqlx::query!(
        r#"WITH purge AS (
               DELETE FROM rate_limits WHERE key IN (
                   SELECT key FROM rate_limits
                   WHERE expires_at < now() AND key <> ALL($1::bytea[])
                   LIMIT 20 FOR UPDATE SKIP LOCKED)
           )
           INSERT INTO rate_limits AS r (key, hits, expires_at)
           SELECT k, 1, now() + make_interval(secs => w)
           FROM unnest($1::bytea[], $2::float8[]) AS t(k, w)
           ON CONFLICT (key) DO UPDATE SET
             hits = CASE WHEN r.expires_at > now() THEN r.hits + 1 ELSE 1 END,
             expires_at = CASE WHEN r.expires_at > now() THEN r.expires_at
                               ELSE excluded.expires_at END
           RETURNING r.key, r.hits,
             EXTRACT(EPOCH FROM (r.expires_at - now()))::float8 AS "secs!""#,
        &hashes,
        &windows,
    )
    .fetch_all(db)
    .await?;
    Ok(hashes
        .iter()
        .map(|hash| {
            rows.iter().find(|row| &row.key == hash).map_or(
                Count {
                    hits: 0,
                    retry_after: 0,
                },
                |row| Count {
                    hits: row.hits,
                    retry_after: row.secs.ceil().max(1.0) as u64,
                },
            )
        })
        .collect())
}

/// Takes back one attempt of each key: an attempt that succeeded does not count against the
/// budget of failures.
pub async fn undo(db: impl PgExecutor<'_>, keys: &[Vec<u8>]) -> Result<()> {
    sqlx::query!(
        "UPDATE rate_limits SET hits = hits - 1 WHERE key = ANY($1) AND hits > 0",
        keys,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets a key (an account whose owner proved the password).
pub async fn clear(db: impl PgExecutor<'_>, key: &[u8]) -> Result<()> {
    sqlx::query!("DELETE FROM rate_limits WHERE key = $1", key)
        .execute(db)
        .await?;
    Ok(())
}
