//! `chats`: direct and group conversations, with the per-chat message counter.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::domain::{ChatCursor, Role};
use crate::error::Result;

#[derive(Clone, Debug)]
pub struct ChatRow {
    pub id: i64,
    pub name: Option<String>,
    pub is_group: bool,
    pub created_by: Option<i64>,
    pub last_seq: i64,
    /// The position of the chat's newest change (`changes.pos`).
    pub last_pos: i64,
    pub last_activity_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A chat as one member sees it: the chat plus their role and read cursor.
#[derive(Clone, Debug)]
pub struct MemberChatRow {
    pub chat: ChatRow,
    pub role: Role,
    pub last_read_seq: i64,
}

/// A chat with its member's role and cursor, as the statements below answer it.
macro_rules! member_chat_row {
    ($row:expr) => {{
        let row = $row;
        MemberChatRow {
            chat: ChatRow {
                id: row.id,
                name: row.name,
                is_group: row.is_group,
                created_by: row.created_by,
                last_seq: row.last_seq,
                last_pos: row.last_pos,
                last_activity_at: row.last_activity_at,
                created_at: row.created_at,
                updated_at: row.updated_at,
            },
            role: row.role,
            last_read_seq: row.last_read_seq,
        }
    }};
}

/// The key that makes a direct chat between two users unique, whoever created it.
pub fn direct_key(a: i64, b: i64) -> String {
    format!("{}:{}", a.min(b), a.max(b))
}

pub async fn insert_group(db: impl PgExecutor<'_>, name: &str, created_by: i64) -> Result<ChatRow> {
    Ok(sqlx::query_as!(
        ChatRow,
        "INSERT INTO chats AS c (name, is_group, created_by) VALUES ($1, true, $2)
         RETURNING c.id, c.name, c.is_group, c.created_by, c.last_seq, c.last_pos, c.last_activity_at,
                   c.created_at, c.updated_at",
        name,
        created_by,
    )
    .fetch_one(db)
    .await?)
}

/// Inserts the direct chat for `key`, named `name` if given, or returns `None` when it exists
/// already. Concurrent inserts of one key wait on the unique index, so exactly one of them
/// creates the chat.
pub async fn insert_direct(
    db: impl PgExecutor<'_>,
    key: &str,
    name: Option<&str>,
    created_by: i64,
) -> Result<Option<ChatRow>> {
    Ok(sqlx::query_as!(
        ChatRow,
        "INSERT INTO chats AS c (name, is_group, created_by, direct_key)
         VALUES ($3, false, $1, $2)
         ON CONFLICT (direct_key) DO NOTHING
         RETURNING c.id, c.name, c.is_group, c.created_by, c.last_seq, c.last_pos, c.last_activity_at,
                   c.created_at, c.updated_at",
        created_by,
        key,
        name,
    )
    .fetch_optional(db)
    .await?)
}

pub async fn find_direct(db: impl PgExecutor<'_>, key: &str) -> Result<Option<ChatRow>> {
    Ok(sqlx::query_as!(
        ChatRow,
        "SELECT c.id, c.name, c.is_group, c.created_by, c.last_seq, c.last_pos, c.last_activity_at,
                c.created_at, c.updated_at
         FROM chats c WHERE c.direct_key = $1",
        key,
    )
    .fetch_optional(db)
    .await?)
}

/// The chat if `user_id` is a member; `None` for absent and foreign chats alike.
pub async fn find_for_member(
    db: impl PgExecutor<'_>,
    chat_id: i64,
    user_id: i64,
) -> Result<Option<MemberChatRow>> {
    let row = sqlx::query!(
        r#"SELECT c.id, c.name, c.is_group, c.created_by, c.last_seq, c.last_pos, c.last_activity_at,
                  c.created_at, c.updated_at, m.role AS "role: Role", m.last_read_seq
           FROM chats c
           JOIN chat_members m ON m.chat_id = c.id AND m.user_id = $2 WHERE c.id = $1"#,
        chat_id,
        user_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| member_chat_row!(row)))
}

/// One page of a user's chats, most recent activity first; `after` is the position of the
/// previous page's last chat.
pub async fn list_for_member(
    db: impl PgExecutor<'_>,
    user_id: i64,
    after: Option<ChatCursor>,
    skip: i64,
    limit: i64,
) -> Result<Vec<MemberChatRow>> {
    let rows = sqlx::query!(
        r#"SELECT c.id, c.name, c.is_group, c.created_by, c.last_seq, c.last_pos, c.last_activity_at,
                  c.created_at, c.updated_at, m.role AS "role: Role", m.last_read_seq
           FROM chat_members m
           JOIN chats c ON c.id = m.chat_id
           WHERE m.user_id = $1
             AND ($2::timestamptz IS NULL OR (c.last_activity_at, c.id) < ($2, $3::bigint))
           ORDER BY c.last_activity_at DESC, c.id DESC OFFSET $4 LIMIT $5"#,
        user_id,
        after.map(|a| a.at),
        after.map(|a| a.id),
        skip,
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|row| member_chat_row!(row)).collect())
}

/// Locks the chat row for the rest of the transaction, so that membership changes to one chat
/// take turns (the member cap and the last-admin rule hold under concurrency).
pub async fn lock(db: impl PgExecutor<'_>, chat_id: i64) -> Result<()> {
    sqlx::query!(
        "SELECT 1 AS locked FROM chats WHERE id = $1 FOR UPDATE",
        chat_id
    )
    .fetch_optional(db)
    .await?;
    Ok(())
}

pub async fn rename(db: impl PgExecutor<'_>, chat_id: i64, name: &str) -> Result<()> {
    sqlx::query!(
        "UPDATE chats SET name = $2, updated_at = now() WHERE id = $1",
        chat_id,
        name,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a change to the chat itself (members, name) as activity.
pub async fn touch(db: impl PgExecutor<'_>, chat_id: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE chats SET updated_at = now(), last_activity_at = now() WHERE id = $1",
        chat_id,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes the chat; members and messages cascade.
pub async fn delete(db: impl PgExecutor<'_>, chat_id: i64) -> Result<bool> {
    let done = sqlx::query!("DELETE FROM chats WHERE id = $1", chat_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the group chats in which `user_id` is the only member (before the account goes).
pub async fn delete_groups_only_member(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar!(
        "DELETE FROM chats c WHERE c.is_group AND c.id IN (
            SELECT m.chat_id FROM chat_members m WHERE m.user_id = $1)
         AND NOT EXISTS (SELECT 1 FROM chat_members o WHERE o.chat_id = c.id AND o.user_id <> $1)
         RETURNING c.id",
        user_id,
    )
    .fetch_all(db)
    .await?)
}
