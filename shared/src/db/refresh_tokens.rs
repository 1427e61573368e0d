//! `refresh_tokens`: hashed, rotated on use, each belonging to a session.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::Result;

#[derive(Clone, Debug)]
pub struct RefreshTokenRow {
    pub id: i64,
    pub session_id: i64,
    pub expires_at: DateTime<Utc>,
    pub replaced_at: Option<DateTime<Utc>>,
}

/// Stores a token of a session.
pub async fn insert(
    db: impl PgExecutor<'_>,
    user_id: i64,
    session_id: i64,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO refresh_tokens (user_id, session_id, token_hash, expires_at)
         VALUES ($1, $2, $3, $4)",
        user_id,
        session_id,
        token_hash,
        expires_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Finds a token by hash. Read after its session is locked, so it shows the last rotation.
pub async fn find(db: impl PgExecutor<'_>, token_hash: &[u8]) -> Result<Option<RefreshTokenRow>> {
    Ok(sqlx::query_as!(
        RefreshTokenRow,
        "SELECT id, session_id, expires_at, replaced_at FROM refresh_tokens WHERE token_hash = $1",
        token_hash,
    )
    .fetch_optional(db)
    .await?)
}

/// The session a token belongs to, whatever its state.
pub async fn session_of(db: impl PgExecutor<'_>, token_hash: &[u8]) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar!(
        "SELECT session_id FROM refresh_tokens WHERE token_hash = $1",
        token_hash,
    )
    .fetch_optional(db)
    .await?)
}

pub async fn mark_replaced(db: impl PgExecutor<'_>, id: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE refresh_tokens SET replaced_at = now() WHERE id = $1",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}
