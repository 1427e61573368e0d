//! `ws_connections`: live WebSocket connections, and who should receive what.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::Result;

#[derive(Clone, Debug)]
pub struct ConnectionRow {
    pub connection_id: String,
    pub user_id: i64,
    pub chat_id: Option<i64>,
    pub connected_at: DateTime<Utc>,
    /// Frames received in the current window, this one included.
    pub frames: i32,
}

/// Stores a connection; answers whether it is the user's first live one.
pub async fn insert(
    db: impl PgExecutor<'_>,
    connection_id: &str,
    user_id: i64,
    chat_id: Option<i64>,
) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"WITH first AS (SELECT NOT EXISTS (SELECT 1 FROM ws_connections WHERE user_id = $2) AS f),
                ins AS (INSERT INTO ws_connections (connection_id, user_id, chat_id)
                        VALUES ($1, $2, $3)
                        ON CONFLICT (connection_id) DO UPDATE SET user_id = $2, chat_id = $3,
                            last_seen_at = now())
           SELECT f AS "first!" FROM first"#,
        connection_id,
        user_id,
        chat_id,
    )
    .fetch_one(db)
    .await?)
}

/// The connection a frame came on, counting the frame: a new window of `window` starts when
/// the last one is over. Runs for every frame, so the count costs no extra round trip.
pub async fn find(
    db: impl PgExecutor<'_>,
    connection_id: &str,
    window: Duration,
) -> Result<Option<ConnectionRow>> {
    let window_ms = window.as_secs_f64() * 1000.0;
    Ok(sqlx::query_as!(
        ConnectionRow,
        "UPDATE ws_connections SET last_seen_at = now(),
             frames = CASE WHEN frames_since <= now() - $2 * interval '1 millisecond'
                           THEN 1 ELSE frames + 1 END,
             frames_since = CASE WHEN frames_since <= now() - $2 * interval '1 millisecond'
                                 THEN now() ELSE frames_since END
         WHERE connection_id = $1
         RETURNING connection_id, user_id, chat_id, connected_at, frames",
        connection_id,
        window_ms,
    )
    .fetch_optional(db)
    .await?)
}

/// Keeps the user's `keep` newest connections, `connection_id` (just opened) among them, and
/// deletes the others; returns those deleted, to close at API Gateway.
pub async fn evict_oldest(
    db: impl PgExecutor<'_>,
    user_id: i64,
    connection_id: &str,
    keep: i64,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar!(
        "DELETE FROM ws_connections WHERE connection_id IN (
             SELECT connection_id FROM ws_connections
             WHERE user_id = $1 AND connection_id <> $2
             ORDER BY connected_at DESC, last_seen_at DESC OFFSET $3)
         RETURNING connection_id",
        user_id,
        connection_id,
        (keep - 1).max(0),
    )
    .fetch_all(db)
    .await?)
}

/// Deletes a connection; answers `(user_id, was their last)` when it existed.
pub async fn delete(db: impl PgExecutor<'_>, connection_id: &str) -> Result<Option<(i64, bool)>> {
    let row = sqlx::query!(
        r#"WITH d AS (DELETE FROM ws_connections WHERE connection_id = $1 RETURNING user_id)
           SELECT d.user_id AS "user_id!",
                  NOT EXISTS (SELECT 1 FROM ws_connections c
                              WHERE c.user_id = d.user_id AND c.connection_id <> $1) AS "last!"
           FROM d"#,
        connection_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| (row.user_id, row.last)))
}

/// Connections that see a chat's events: members' unscoped connections and those scoped to it.
/// The send's statement (`messages::insert`) lists the same audience in a subquery of its own.
pub async fn for_chat(db: impl PgExecutor<'_>, chat_id: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar!(
        "SELECT wc.connection_id FROM chat_members cm
         JOIN ws_connections wc ON wc.user_id = cm.user_id
         WHERE cm.chat_id = $1 AND (wc.chat_id IS NULL OR wc.chat_id = $1)",
        chat_id,
    )
    .fetch_all(db)
    .await?)
}

/// Like [`for_chat`], without the connections of `except_user` and of the members who blocked
/// them: the audience of what a member does (typing).
pub async fn for_chat_except(
    db: impl PgExecutor<'_>,
    chat_id: i64,
    except_user: i64,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar!(
        "SELECT c.connection_id FROM chat_members m
         JOIN ws_connections c ON c.user_id = m.user_id
         WHERE m.chat_id = $1 AND m.user_id <> $2 AND (c.chat_id IS NULL OR c.chat_id = $1)
           AND NOT EXISTS (SELECT 1 FROM user_blocks b
                           WHERE b.blocker_id = m.user_id AND b.blocked_id = $2)",
        chat_id,
        except_user,
    )
    .fetch_all(db)
    .await?)
}

/// Unscoped connections of everyone who shares a chat with `user_id` (and of the user), but
/// `except` (a connection still being opened cannot receive yet).
pub async fn for_contacts(
    db: impl PgExecutor<'_>,
    user_id: i64,
    except: Option<&str>,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar!(
        "SELECT c.connection_id FROM ws_connections c WHERE c.chat_id IS NULL AND c.user_id IN (
             SELECT o.user_id FROM chat_members mine
             JOIN chat_members o ON o.chat_id = mine.chat_id WHERE mine.user_id = $1
             UNION SELECT $1)
         AND c.connection_id IS DISTINCT FROM $2",
        user_id,
        except,
    )
    .fetch_all(db)
    .await?)
}

/// Every connection of a user (to close them when the account goes).
pub async fn of_user(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar!(
        "SELECT connection_id FROM ws_connections WHERE user_id = $1",
        user_id,
    )
    .fetch_all(db)
    .await?)
}

/// Connections of one user scoped to one chat (closed when they leave it).
pub async fn scoped(db: impl PgExecutor<'_>, user_id: i64, chat_id: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar!(
        "SELECT connection_id FROM ws_connections WHERE user_id = $1 AND chat_id = $2",
        user_id,
        chat_id,
    )
    .fetch_all(db)
    .await?)
}

/// Every connection scoped to one chat.
pub async fn scoped_to(db: impl PgExecutor<'_>, chat_id: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar!(
        "SELECT connection_id FROM ws_connections WHERE chat_id = $1",
        chat_id,
    )
    .fetch_all(db)
    .await?)
}

/// Forgets connections older than API Gateway's two-hour limit, whose `$disconnect` never came.
/// Returns the users who had them.
pub async fn sweep_stale(db: impl PgExecutor<'_>) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar!(
        "DELETE FROM ws_connections WHERE connected_at < now() - interval '2 hours'
         RETURNING user_id",
    )
    .fetch_all(db)
    .await?)
}
