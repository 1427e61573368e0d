//! Attempts at a secret (logins, current-password checks) and registrations, counted before
//! they are tried, so that parallel guesses see each other: at most the limit are ever tried.

use std::time::Duration;

use sqlx::PgPool;

use crate::config::Limits;
use crate::db;
use crate::error::{Error, Result};

/// The budget key of an account: username and email, and the current-password checks of a
/// signed-in session, share it.
pub(crate) fn account_key(user_id: i64) -> String {
    format!("account:{user_id}")
}

/// The budget key of a login that names no account.
pub(crate) fn unknown_login_key(login: &str) -> String {
    format!("login:{login}")
}

fn address_key(ip: &str) -> String {
    format!("address:{ip}")
}

/// An attempt at a password, counted under its account and its client address.
#[must_use = "a successful attempt must be taken back with `succeeded`"]
pub(crate) struct PasswordAttempt {
    account: Vec<u8>,
    address: Vec<u8>,
}

/// Counts an attempt for `account` (a key of [`account_key`] or [`unknown_login_key`]) from
/// `ip`; 429 with the seconds to wait when either budget is spent, before the password is looked at.
pub(crate) async fn password(
    db: &PgPool,
    limits: &Limits,
    account: &str,
    ip: &str,
) -> Result<PasswordAttempt> {
    let attempt = PasswordAttempt {
        account: db::rate_limits::hashed(account),
        address: db::rate_limits::hashed(&address_key(ip)),
    };
    let counts = db::rate_limits::hit(
        db,
        &[
            (attempt.account.clone(), limits.login_window),
            (attempt.address.clone(), limits.login_window),
        ],
    )
    .await?;
    let maxima = [
        limits.login_failures_per_account,
        limits.login_failures_per_address,
    ];
    refuse_over(&counts, &maxima)?;
    Ok(attempt)
}

impl PasswordAttempt {
    /// The password was right: the account's failures are forgotten and the address's count
    /// takes this attempt back. A wrong password leaves both counted.
    pub(crate) async fn succeeded(self, db: &PgPool) -> Result<()> {
        db::rate_limits::clear(db, &self.account).await?;
        db::rate_limits::undo(db, &[self.address]).await
    }
}

/// Counts a registration from `ip`; 429 once the address's budget for the window is spent.
pub(crate) async fn registration(db: &PgPool, limits: &Limits, ip: &str) -> Result<()> {
    let key = db::rate_limits::hashed(&format!("register:{ip}"));
    let window: Duration = limits.registration_window;
    let counts = db::rate_limits::hit(db, &[(key, window)]).await?;
    refuse_over(&counts, &[limits.registrations_per_address])
}

fn refuse_over(counts: &[db::rate_limits::Count], maxima: &[i32]) -> Result<()> {
    let retry_after = counts
        .iter()
        .zip(maxima)
        .filter(|(count, max)| count.hits > **max)
        .map(|(count, _)| count.retry_after)
        .max();
    match retry_after {
        Some(retry_after) => {
            tracing::warn!(retry_after, "attempt refused: too many");
            Err(Error::TooManyRequests { retry_after })
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::rate_limits::Count;

    #[test]
    fn the_longest_wait_of_the_spent_budgets_is_answered() {
        let counts = [
            Count {
                hits: 11,
                retry_after: 30,
            },
            Count {
                hits: 101,
                retry_after: 60,
            },
        ];
        match refuse_over(&counts, &[10, 100]) {
            Err(Error::TooManyRequests { retry_after }) => assert_eq!(retry_after, 60),
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(refuse_over(&counts, &[11, 101]).is_ok());
    }

    #[test]
    fn keys_are_not_stored_as_typed() {
        let key = account_key(42);
        let hashed = db::rate_limits::hashed(&key);
        assert_eq!(hashed.len(), 32);
        assert!(!hashed.windows(key.len()).any(|w| w == key.as_bytes()));
        assert_ne!(hashed, db::rate_limits::hashed(&account_key(43)));
    }
}
