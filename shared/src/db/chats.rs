//! `chats`: direct and group conversations, with the per-chat message counter.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};

use crate::domain::{ChatCursor, Role};
use crate::error::Result;

#[derive(Clone, Debug, FromRow)]
pub struct ChatRow {
    pub id: i64,
    pub name: Option<String>,
    pub is_group: bool,
    pub created_by: Option<i64>,
    pub last_seq: i64,
    pub last_activity_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A chat as one member sees it: the chat plus their role and read cursor.
#[derive(Clone, Debug, FromRow)]
pub struct MemberChatRow {
    #[sqlx(flatten)]
    pub chat: ChatRow,
    pub role: Role,
    pub last_read_seq: i64,
}

const CHAT_COLUMNS: &str = "c.id, c.name, c.is_group, c.created_by, c.last_seq, c.last_activity_at, c.created_at, c.updated_at";

/// The key that makes a direct chat between two users unique, whoever created it.
pub fn direct_key(a: i64, b: i64) -> String {
    format!("{}:{}", a.min(b), a.max(b))
}

pub async fn insert_group(db: impl PgExecutor<'_>, name: &str, created_by: i64) -> Result<ChatRow> {
    let sql = format!(
        "INSERT INTO chats AS c (name, is_group, created_by) VALUES ($1, true, $2) RETURNING {CHAT_COLUMNS}"
    );
    Ok(sqlx::query_as(&sql)
        .bind(name)
        .bind(created_by)
        .fetch_one(db)
        .await?)
}

/// Inserts the direct chat for `key`, or returns `None` when it exists already. Concurrent
/// inserts of one key wait on the unique index, so exactly one of them creates the chat.
pub async fn insert_direct(
    db: impl PgExecutor<'_>,
    key: &str,
    created_by: i64,
) -> Result<Option<ChatRow>> {
    let sql = format!(
        "INSERT INTO chats AS c (is_group, created_by, direct_key) VALUES (false, $1, $2) \
         ON CONFLICT (direct_key) DO NOTHING RETURNING {CHAT_COLUMNS}"
    );
    Ok(sqlx::query_as(&sql)
        .bind(created_by)
        .bind(key)
        .fetch_optional(db)
        .await?)
}

pub async fn find_direct(db: impl PgExecutor<'_>, key: &str) -> Result<Option<ChatRow>> {
    let sql = format!("SELECT {CHAT_COLUMNS} FROM chats c WHERE c.direct_key = $1");
    Ok(sqlx::query_as(&sql).bind(key).fetch_optional(db).await?)
}

/// The chat if `user_id` is a member; `None` for absent and foreign chats alike.
pub async fn find_for_member(
    db: impl PgExecutor<'_>,
    chat_id: i64,
    user_id: i64,
) -> Result<Option<MemberChatRow>> {
    let sql = format!(
        "SELECT {CHAT_COLUMNS}, m.role, m.last_read_seq FROM chats c \
         JOIN chat_members m ON m.chat_id = c.id AND m.user_id = $2 WHERE c.id = $1"
    );
    Ok(sqlx::query_as(&sql)
        .bind(chat_id)
        .bind(user_id)
        .fetch_optional(db)
        .await?)
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
    let sql = format!(
        "SELECT {CHAT_COLUMNS}, m.role, m.last_read_seq FROM chat_members m \
         JOIN chats c ON c.id = m.chat_id \
         WHERE m.user_id = $1 \
           AND ($2::timestamptz IS NULL OR (c.last_activity_at, c.id) < ($2, $3)) \
         ORDER BY c.last_activity_at DESC, c.id DESC OFFSET $4 LIMIT $5"
    );
    Ok(sqlx::query_as(&sql)
        .bind(user_id)
        .bind(after.map(|a| a.at))
        .bind(after.map(|a| a.id))
        .bind(skip)
        .bind(limit)
        .fetch_all(db)
        .await?)
}

/// Locks the chat row for the rest of the transaction, so that membership changes to one chat
/// take turns (the member cap and the last-admin rule hold under concurrency).
pub async fn lock(db: impl PgExecutor<'_>, chat_id: i64) -> Result<()> {
    sqlx::query("SELECT 1 FROM chats WHERE id = $1 FOR UPDATE")
        .bind(chat_id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn rename(db: impl PgExecutor<'_>, chat_id: i64, name: &str) -> Result<()> {
    sqlx::query("UPDATE chats SET name = $2, updated_at = now() WHERE id = $1")
        .bind(chat_id)
        .bind(name)
        .execute(db)
        .await?;
    Ok(())
}

/// Marks a change to the chat itself (members, name) as activity.
pub async fn touch(db: impl PgExecutor<'_>, chat_id: i64) -> Result<()> {
    sqlx::query("UPDATE chats SET updated_at = now(), last_activity_at = now() WHERE id = $1")
        .bind(chat_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes the chat; members and messages cascade.
pub async fn delete(db: impl PgExecutor<'_>, chat_id: i64) -> Result<bool> {
    let done = sqlx::query("DELETE FROM chats WHERE id = $1")
        .bind(chat_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the group chats in which `user_id` is the only member (before the account goes).
pub async fn delete_groups_only_member(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "DELETE FROM chats c WHERE c.is_group AND c.id IN ( \
            SELECT m.chat_id FROM chat_members m WHERE m.user_id = $1) \
         AND NOT EXISTS (SELECT 1 FROM chat_members o WHERE o.chat_id = c.id AND o.user_id <> $1) \
         RETURNING c.id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}
