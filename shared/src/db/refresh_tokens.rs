//! `refresh_tokens`: hashed, rotated on use, revoked by family.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use crate::error::Result;

#[derive(Clone, Debug)]
pub struct RefreshTokenRow {
    pub id: i64,
    pub user_id: i64,
    pub family_id: i64,
    pub expires_at: DateTime<Utc>,
    pub replaced_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Stores a token; `family_id = None` starts a new family (a new login). Returns the family.
pub async fn insert(
    db: impl PgExecutor<'_>,
    user_id: i64,
    family_id: Option<i64>,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<i64> {
    Ok(sqlx::query_scalar!(
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)
         VALUES ($1, COALESCE($2, nextval('refresh_token_families')), $3, $4)
         RETURNING family_id",
        user_id,
        family_id,
        token_hash,
        expires_at,
    )
    .fetch_one(db)
    .await?)
}

/// Finds a token by hash and locks it, so two refreshes of one token cannot both rotate it.
pub async fn find_for_update(
    db: &mut PgConnection,
    token_hash: &[u8],
) -> Result<Option<RefreshTokenRow>> {
    Ok(sqlx::query_as!(
        RefreshTokenRow,
        "SELECT id, user_id, family_id, expires_at, replaced_at, revoked_at
         FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
        token_hash,
    )
    .fetch_optional(db)
    .await?)
}

pub async fn find_family(db: impl PgExecutor<'_>, token_hash: &[u8]) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar!(
        "SELECT family_id FROM refresh_tokens WHERE token_hash = $1",
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

pub async fn revoke_family(db: impl PgExecutor<'_>, family_id: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        family_id,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Ends every session of a user but `keep_family` (the one changing the password).
pub async fn revoke_user_except(
    db: impl PgExecutor<'_>,
    user_id: i64,
    keep_family: Option<i64>,
) -> Result<()> {
    sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = now()
         WHERE user_id = $1 AND revoked_at IS NULL AND family_id IS DISTINCT FROM $2",
        user_id,
        keep_family,
    )
    .execute(db)
    .await?;
    Ok(())
}
