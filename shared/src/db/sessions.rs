//! `sessions`: one per login, ended by logout, a password change, a refresh-token replay or its
//! absolute expiry. Access tokens, refresh tokens and connections name their session.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use crate::error::Result;

#[derive(Clone, Debug)]
pub struct SessionRow {
    pub id: i64,
    pub user_id: i64,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Starts a session for a login; returns its id.
pub async fn insert(
    db: impl PgExecutor<'_>,
    user_id: i64,
    expires_at: DateTime<Utc>,
) -> Result<i64> {
    Ok(sqlx::query_scalar!(
        "INSERT INTO sessions (user_id, expires_at) VALUES ($1, $2) RETURNING id",
        user_id,
        expires_at,
    )
    .fetch_one(db)
    .await?)
}

/// Whether the session is the user's and neither revoked nor expired: one primary-key lookup,
/// the check every authenticated request makes that has no query of its own to fold it into.
pub async fn is_live(db: impl PgExecutor<'_>, id: i64, user_id: i64) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND user_id = $2
                          AND revoked_at IS NULL AND expires_at > now()) AS "live!""#,
        id,
        user_id,
    )
    .fetch_one(db)
    .await?)
}

/// Locks the session a refresh token belongs to, so that refreshes of one session take turns.
pub async fn lock_by_refresh_token(
    db: &mut PgConnection,
    token_hash: &[u8],
) -> Result<Option<SessionRow>> {
    Ok(sqlx::query_as!(
        SessionRow,
        "SELECT id, user_id, expires_at, revoked_at FROM sessions
         WHERE id = (SELECT session_id FROM refresh_tokens WHERE token_hash = $1)
         FOR UPDATE",
        token_hash,
    )
    .fetch_optional(db)
    .await?)
}

pub async fn touch_refreshed(db: impl PgExecutor<'_>, id: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE sessions SET last_refreshed_at = now() WHERE id = $1",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Ends one session; answers whether it was live until now.
pub async fn revoke(db: impl PgExecutor<'_>, id: i64) -> Result<bool> {
    let done = sqlx::query!(
        "UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends every session of a user but `keep` (the one changing the password).
pub async fn revoke_others(
    db: impl PgExecutor<'_>,
    user_id: i64,
    keep: Option<i64>,
) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar!(
        "UPDATE sessions SET revoked_at = now()
         WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2
         RETURNING id",
        user_id,
        keep,
    )
    .fetch_all(db)
    .await?)
}
