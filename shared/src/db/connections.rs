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

/// Stores a connection of a live session; answers whether it is the user's first live one, or
/// `None` when the session has ended (nothing is stored then). The session row is share-locked,
/// so a revocation either waits for this insert and then closes the connection, or is seen by it.
pub async fn insert(
    db: impl PgExecutor<'_>,
    connection_id: &str,
    user_id: i64,
    session_id: i64,
    chat_id: Option<i64>,
) -> Result<Option<bool>> {
    Ok(sqlx::query_scalar!(
        r#"WITH live AS (SELECT id FROM sessions
                         WHERE id = $4 AND user_id = $2 AND revoked_at IS NULL
                           AND expires_at > now()
                         FOR SHARE),
                first AS (SELECT NOT EXISTS (SELECT 1 FROM ws_connections WHERE user_id = $2) AS f),
                ins AS (INSERT INTO ws_connections (connection_id, user_id, chat_id, session_id)
                        SELECT $1, $2, $3, id FROM live
                        ON CONFLICT (connection_id) DO UPDATE SET user_id = $2, chat_id = $3,
                            session_id = excluded.session_id, last_seen_at = now())
           SELECT f AS "first!" FROM first WHERE EXISTS (SELECT 1 FROM live)"#,
        connection_id,
        user_id,
        chat_id,
        session_id,
    )
    .fetch_optional(db)
    .await?)
}

/// A connection as a frame finds it: `live` is false once its session has ended (or it has
/// none), and then the frame is neither counted nor its `last_seen_at` touched.
#[derive(Clone, Debug)]
pub struct FrameConnection {
    pub connection: ConnectionRow,
    pub session_id: Option<i64>,
    pub live: bool,
}

/// The connection a frame came on, with its session's state, counting the frame (a new window of
/// `window` starts when the last one is over). The session check and the frame count of every
/// frame are folded into the lookup the frame makes anyway: one statement, rows by primary key.
pub async fn find(
    db: impl PgExecutor<'_>,
    connection_id: &str,
    window: Duration,
) -> Result<Option<FrameConnection>> {
    let window_ms = window.as_secs_f64() * 1000.0;
    let row = sqlx::query!(
        r#"WITH c AS (
               SELECT c.connection_id, c.user_id, c.chat_id, c.connected_at, c.session_id,
                      c.frames, c.frames_since,
                      COALESCE(s.revoked_at IS NULL AND s.expires_at > now(), false) AS live
               FROM ws_connections c LEFT JOIN sessions s ON s.id = c.session_id
               WHERE c.connection_id = $1),
           counted AS (
               UPDATE ws_connections w SET last_seen_at = now(),
                   frames = CASE WHEN w.frames_since <= now() - $2 * interval '1 millisecond'
                                 THEN 1 ELSE w.frames + 1 END,
                   frames_since = CASE WHEN w.frames_since <= now() - $2 * interval '1 millisecond'
                                       THEN now() ELSE w.frames_since END
               WHERE w.connection_id = (SELECT connection_id FROM c WHERE live)
               RETURNING w.frames)
           SELECT c.connection_id AS "connection_id!", c.user_id AS "user_id!", c.chat_id,
                  c.connected_at AS "connected_at!", c.session_id, c.live AS "live!",
                  COALESCE((SELECT frames FROM counted), c.frames) AS "frames!"
           FROM c"#,
        connection_id,
        window_ms,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| FrameConnection {
        connection: ConnectionRow {
            connection_id: row.connection_id,
            user_id: row.user_id,
            chat_id: row.chat_id,
            connected_at: row.connected_at,
            frames: row.frames,
        },
        session_id: row.session_id,
        live: row.live,
    }))
}

/// Forgets the connections of ended sessions; answers their ids, to close at API Gateway.
pub async fn delete_of_sessions(
    db: impl PgExecutor<'_>,
    session_ids: &[i64],
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar!(
        "DELETE FROM ws_connections WHERE session_id = ANY($1) RETURNING connection_id",
        session_ids,
    )
    .fetch_all(db)
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

/// Deletes a connection API Gateway called gone, unless it was stored within `opening` (its
/// `$connect` may still be running, and API Gateway calls such a connection gone too); answers
/// whether it was deleted.
pub async fn delete_gone(
    db: impl PgExecutor<'_>,
    connection_id: &str,
    opening: Duration,
) -> Result<bool> {
    let opening_ms = opening.as_secs_f64() * 1000.0;
    let deleted = sqlx::query!(
        "DELETE FROM ws_connections
         WHERE connection_id = $1 AND connected_at <= now() - $2 * interval '1 millisecond'",
        connection_id,
        opening_ms,
    )
    .execute(db)
    .await?;
    Ok(deleted.rows_affected() > 0)
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

/// The connections of one member that see a chat's events: theirs, unscoped or scoped to it.
pub async fn for_member(
    db: impl PgExecutor<'_>,
    chat_id: i64,
    user_id: i64,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar!(
        "SELECT wc.connection_id FROM chat_members cm
         JOIN ws_connections wc ON wc.user_id = cm.user_id
         WHERE cm.chat_id = $1 AND cm.user_id = $2 AND (wc.chat_id IS NULL OR wc.chat_id = $1)",
        chat_id,
        user_id,
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
