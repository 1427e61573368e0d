//! `login_failures`: counters behind login rate limiting, shared by every function instance.

use std::time::Duration;

use sqlx::PgExecutor;

use crate::error::Result;

/// Seconds until `key` may try again, if it has used up `max` failures in the current window.
pub async fn locked_for(
    db: impl PgExecutor<'_>,
    key: &str,
    max: i32,
    window: Duration,
) -> Result<Option<u64>> {
    let secs: Option<f64> = sqlx::query_scalar!(
        r#"SELECT EXTRACT(EPOCH FROM (window_start + make_interval(secs => $3) - now()))::float8
               AS "secs!"
           FROM login_failures
           WHERE key = $1 AND failures >= $2 AND window_start + make_interval(secs => $3) > now()"#,
        key,
        max,
        window.as_secs_f64(),
    )
    .fetch_optional(db)
    .await?;
    Ok(secs.map(|s| s.ceil().max(1.0) as u64))
}

/// Counts one failure; a window that has passed starts over.
pub async fn record(db: impl PgExecutor<'_>, key: &str, window: Duration) -> Result<()> {
    sqlx::query!(
        "INSERT INTO login_failures AS f (key, failures, window_start) VALUES ($1, 1, now())
         ON CONFLICT (key) DO UPDATE SET
           failures = CASE WHEN f.window_start + make_interval(secs => $2) > now()
                           THEN f.failures + 1 ELSE 1 END,
           window_start = CASE WHEN f.window_start + make_interval(secs => $2) > now()
                               THEN f.window_start ELSE now() END",
        key,
        window.as_secs_f64(),
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn clear(db: impl PgExecutor<'_>, key: &str) -> Result<()> {
    sqlx::query!("DELETE FROM login_failures WHERE key = $1", key)
        .execute(db)
        .await?;
    Ok(())
}
