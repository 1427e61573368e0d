//! `chat_members`: who is in a chat, their role, and their read cursor.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use super::users::UserRow;
use crate::domain::{Role, Status};
use crate::error::Result;

/// A member with their public profile, for chat views.
#[derive(Clone, Debug)]
pub struct MemberRow {
    pub chat_id: i64,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    pub last_read_seq: i64,
    pub last_read_at: Option<DateTime<Utc>>,
    pub user: UserRow,
}

/// A member with their profile, as the statements below answer it.
macro_rules! member_row {
    ($row:expr) => {{
        let row = $row;
        MemberRow {
            chat_id: row.chat_id,
            role: row.role,
            joined_at: row.joined_at,
            last_read_seq: row.last_read_seq,
            last_read_at: row.last_read_at,
            user: UserRow {
                id: row.id,
                username: row.username,
                email: row.email,
                display_name: row.display_name,
                status: row.status,
                last_seen: row.last_seen,
                created_at: row.created_at,
            },
        }
    }};
}

/// A member's read cursor.
#[derive(Clone, Copy, Debug)]
pub struct Cursor {
    pub user_id: i64,
    pub last_read_seq: i64,
    pub last_read_at: Option<DateTime<Utc>>,
}

/// The members of each chat in `chat_ids`, oldest member first.
pub async fn for_chats(db: impl PgExecutor<'_>, chat_ids: &[i64]) -> Result<Vec<MemberRow>> {
    let rows = sqlx::query!(
        r#"SELECT m.chat_id, m.role AS "role: Role", m.joined_at, m.last_read_seq, m.last_read_at,
             u.id, u.username, u.email, u.display_name, u.last_seen, u.created_at,
             CASE WHEN NOT EXISTS (SELECT 1 FROM ws_connections c WHERE c.user_id = u.id)
                  THEN 'offline'
                  WHEN u.status_choice = 'auto' THEN 'online'
                  ELSE u.status_choice END AS "status!: Status"
           FROM chat_members m JOIN users u ON u.id = m.user_id
           WHERE m.chat_id = ANY($1) ORDER BY m.chat_id, m.joined_at, m.user_id"#,
        chat_ids,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|row| member_row!(row)).collect())
}

/// A page of the members of each chat in `chat_ids`, longest-standing first: `limit` after
/// the first `skip` of each. One chat's page for the members route, the first few of many
/// chats for the chat list's previews, however large the chats.
pub async fn pages(
    db: impl PgExecutor<'_>,
    chat_ids: &[i64],
    skip: i64,
    limit: i64,
) -> Result<Vec<MemberRow>> {
    let rows = sqlx::query!(
        r#"SELECT p.chat_id AS "chat_id!", p.role AS "role!: Role", p.joined_at AS "joined_at!",
             p.last_read_seq AS "last_read_seq!", p.last_read_at, u.id, u.username, u.email,
             u.display_name, u.last_seen, u.created_at,
             CASE WHEN NOT EXISTS (SELECT 1 FROM ws_connections c WHERE c.user_id = u.id)
                  THEN 'offline'
                  WHEN u.status_choice = 'auto' THEN 'online'
                  ELSE u.status_choice END AS "status!: Status"
           FROM unnest($1::bigint[]) AS ids (chat_id)
           CROSS JOIN LATERAL (
               SELECT m.chat_id, m.user_id, m.role, m.joined_at, m.last_read_seq, m.last_read_at
               FROM chat_members m WHERE m.chat_id = ids.chat_id
               ORDER BY m.joined_at, m.user_id OFFSET $2 LIMIT $3) p
           JOIN users u ON u.id = p.user_id
           ORDER BY p.chat_id, p.joined_at, p.user_id"#,
        chat_ids,
        skip,
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|row| member_row!(row)).collect())
}

/// What the chat list says of each chat's members without listing them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberStats {
    pub chat_id: i64,
    pub member_count: i64,
    /// Every member but its author has read the chat's newest message.
    pub newest_read: bool,
}

/// Member counts, and whether the newest message is read by all, of each chat in `chat_ids`.
pub async fn stats(db: impl PgExecutor<'_>, chat_ids: &[i64]) -> Result<Vec<MemberStats>> {
    Ok(sqlx::query_as!(
        MemberStats,
        r#"SELECT c.id AS chat_id, count(*) AS "member_count!",
             COALESCE(bool_and(m.last_read_seq >= c.last_seq
                               OR COALESCE(m.user_id = msg.user_id, false)), true)
                 AS "newest_read!"
           FROM chats c
           JOIN chat_members m ON m.chat_id = c.id
           LEFT JOIN messages msg ON msg.chat_id = c.id AND msg.seq = c.last_seq
           WHERE c.id = ANY($1)
           GROUP BY c.id"#,
        chat_ids,
    )
    .fetch_all(db)
    .await?)
}

/// Every member's read cursor in one chat.
pub async fn cursors(db: impl PgExecutor<'_>, chat_id: i64) -> Result<Vec<Cursor>> {
    Ok(sqlx::query_as!(
        Cursor,
        "SELECT user_id, last_read_seq, last_read_at FROM chat_members WHERE chat_id = $1
         ORDER BY user_id",
        chat_id,
    )
    .fetch_all(db)
    .await?)
}

pub async fn user_ids(db: impl PgExecutor<'_>, chat_id: i64) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar!(
        "SELECT user_id FROM chat_members WHERE chat_id = $1",
        chat_id
    )
    .fetch_all(db)
    .await?)
}

/// The chats a user belongs to.
pub async fn chats_of(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar!(
        "SELECT chat_id FROM chat_members WHERE user_id = $1",
        user_id
    )
    .fetch_all(db)
    .await?)
}

pub async fn count(db: impl PgExecutor<'_>, chat_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM chat_members WHERE chat_id = $1"#,
        chat_id,
    )
    .fetch_one(db)
    .await?)
}

/// Adds the users that are not members yet; returns those added. New members start with every
/// earlier message read, so joining a busy group does not flood them with unread counts.
pub async fn add(
    db: impl PgExecutor<'_>,
    chat_id: i64,
    user_ids: &[i64],
    role: Role,
) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar!(
        "INSERT INTO chat_members (chat_id, user_id, role, last_read_seq)
         SELECT $1, u, $3, (SELECT last_seq FROM chats WHERE id = $1)
         FROM unnest($2::bigint[]) AS u
         ON CONFLICT (chat_id, user_id) DO NOTHING RETURNING user_id",
        chat_id,
        user_ids,
        role.as_str(),
    )
    .fetch_all(db)
    .await?)
}

/// Records a member's `typing` unless they had one forwarded within `interval`: `None` for a
/// non-member, `Some(true)` when this one is to be forwarded, `Some(false)` when it is dropped.
/// Concurrent frames take turns on the member's row, so one of a burst goes through.
pub async fn typing(
    db: impl PgExecutor<'_>,
    chat_id: i64,
    user_id: i64,
    interval: Duration,
) -> Result<Option<bool>> {
    Ok(sqlx::query_scalar!(
        r#"WITH m AS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2),
                u AS (UPDATE chat_members SET typing_at = now()
                      WHERE chat_id = $1 AND user_id = $2
                        AND (typing_at IS NULL
                             OR typing_at <= now() - $3 * interval '1 millisecond')
                      RETURNING 1)
           SELECT EXISTS (SELECT 1 FROM u) AS "forwarded!" FROM m"#,
        chat_id,
        user_id,
        interval.as_secs_f64() * 1000.0,
    )
    .fetch_optional(db)
    .await?)
}

/// Removes a member; `false` when they were not one.
pub async fn remove(db: impl PgExecutor<'_>, chat_id: i64, user_id: i64) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM chat_members WHERE chat_id = $1 AND user_id = $2",
        chat_id,
        user_id,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// When a group has members but no admin, its longest-standing member becomes admin.
pub async fn ensure_admin(db: impl PgExecutor<'_>, chat_id: i64) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar!(
        "UPDATE chat_members SET role = 'admin'
         WHERE chat_id = $1
           AND NOT EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND role = 'admin')
           AND user_id = (SELECT user_id FROM chat_members WHERE chat_id = $1
                          ORDER BY joined_at, user_id LIMIT 1)
         RETURNING user_id",
        chat_id,
    )
    .fetch_optional(db)
    .await?)
}

/// The group chats in which `user_id` is the only admin and others remain.
pub async fn groups_where_sole_admin(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar!(
        "SELECT m.chat_id FROM chat_members m JOIN chats c ON c.id = m.chat_id
         WHERE m.user_id = $1 AND m.role = 'admin' AND c.is_group
           AND NOT EXISTS (SELECT 1 FROM chat_members a WHERE a.chat_id = m.chat_id
                           AND a.role = 'admin' AND a.user_id <> $1)
           AND EXISTS (SELECT 1 FROM chat_members o
                       WHERE o.chat_id = m.chat_id AND o.user_id <> $1)",
        user_id,
    )
    .fetch_all(db)
    .await?)
}

/// Moves the read cursor forward to `up_to` (at most the chat's newest message); never back.
/// Returns the cursor and the chat's newest `seq`, or `None` for a non-member.
pub async fn mark_read(
    db: impl PgExecutor<'_>,
    chat_id: i64,
    user_id: i64,
    up_to: Option<i64>,
) -> Result<Option<ReadMark>> {
    // The chat's row is locked first (as a send locks it): the cursor and the change's position
    // move together, and only when the cursor moves.
    let row = sqlx::query!(
        r#"WITH c AS (SELECT last_seq, LEAST(COALESCE($3, last_seq), last_seq) AS target
                      FROM chats WHERE id = $1 FOR UPDATE),
                u AS (UPDATE chat_members m SET last_read_seq = c.target, last_read_at = now()
                      FROM c WHERE m.chat_id = $1 AND m.user_id = $2
                        AND m.last_read_seq < c.target
                      RETURNING m.last_read_seq),
                p AS (UPDATE chats SET last_pos = last_pos + 1 FROM u
                      WHERE chats.id = $1 RETURNING chats.last_pos),
                l AS (INSERT INTO changes (chat_id, pos, kind, user_id, value)
                      SELECT $1, p.last_pos, 'message.read', $2, u.last_read_seq FROM p, u)
           SELECT COALESCE(u.last_read_seq, m.last_read_seq) AS "last_read_seq!",
                  c.last_seq AS "last_seq!", p.last_pos AS "pos?"
           FROM chat_members m CROSS JOIN c LEFT JOIN u ON true LEFT JOIN p ON true
           WHERE m.chat_id = $1 AND m.user_id = $2"#,
        chat_id,
        user_id,
        up_to,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| ReadMark {
        last_read_seq: row.last_read_seq,
        last_seq: row.last_seq,
        pos: row.pos,
    }))
}

/// Where a member's read cursor stands after [`mark_read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadMark {
    pub last_read_seq: i64,
    /// The chat's newest `seq`.
    pub last_seq: i64,
    /// The change's position when the cursor moved.
    pub pos: Option<i64>,
}
