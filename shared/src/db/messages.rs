//! `messages`: per-chat gap-free `seq`, idempotent sends, edits and tombstones.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct MessageRow {
    pub id: i64,
    pub chat_id: i64,
    pub seq: i64,
    pub user_id: Option<i64>,
    /// The author's username; `None` once the account is deleted.
    pub username: Option<String>,
    pub content: String,
    pub client_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

// Every statement that answers a `MessageRow` selects the same columns, with the author's
// username joined in (`None` once the account is gone). `sqlx::query_as!` takes one string
// literal, so the list is written out in each; the compiler checks every copy. The `!`/`?`
// suffixes state each column's nullability where PostgreSQL cannot tell it through a CTE or
// an outer join.

/// A [`MessageRow`] from a record of a statement that selects its columns (see above).
macro_rules! message_row {
    ($r:expr) => {
        MessageRow {
            id: $r.id,
            chat_id: $r.chat_id,
            seq: $r.seq,
            user_id: $r.user_id,
            username: $r.username,
            content: $r.content,
            client_id: $r.client_id,
            created_at: $r.created_at,
            updated_at: $r.updated_at,
            edited_at: $r.edited_at,
            deleted_at: $r.deleted_at,
        }
    };
}

/// What a send produced.
pub enum Sent {
    /// Stored; `alone` when the sender is the chat's only member (so it is read already);
    /// `audience`: the connections that see the chat, to push the message to.
    Created {
        row: MessageRow,
        alone: bool,
        audience: Vec<String>,
        /// The change's position in the chat.
        pos: i64,
        /// Members were added or removed while the send waited for the chat's lock: the
        /// statement's snapshot, and so `audience`, predates that change.
        members_moved: bool,
    },
    /// The same sender already sent this `client_id` in this chat.
    Duplicate(MessageRow),
}

/// Stores a message in one statement: takes the next `seq` and change position from the chat
/// row (sends to one chat serialize there; other chats are not touched), inserts, logs the
/// change, and moves the sender's read cursor to it. A failure rolls it all back, so `seq` and
/// the positions have no gaps. The same statement lists the
/// connections to push the message to, which saves the send a second round trip. `None`: not
/// a member, or (with `session`) that session is not live.
///
/// Membership is checked here, by the `EXISTS` that guards the counter's update, and not by
/// `service::access::Member::load` as on every other chat route: a separate check would cost
/// the hottest path a second round trip, and inside the statement it cannot race a removal.
pub async fn insert(
    db: impl PgExecutor<'_> + Copy,
    chat_id: i64,
    user_id: i64,
    content: &str,
    client_id: Option<&str>,
    session: Option<i64>,
) -> Result<Option<Sent>> {
    // The audience is `connections::for_chat`'s query, as a subquery; the caller's session check
    // rides on the membership check (the session by primary key), so a send makes one round trip.
    let result = sqlx::query!(
        r#"WITH s AS (
               UPDATE chats SET last_seq = last_seq + 1, last_pos = last_pos + 1,
                                last_activity_at = now()
               WHERE id = $1
                 AND EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2)
                 AND ($5::bigint IS NULL
                      OR EXISTS (SELECT 1 FROM sessions WHERE id = $5 AND user_id = $2
                                   AND revoked_at IS NULL AND expires_at > now()))
               RETURNING last_seq, last_pos, members_pos),
           m AS (
               INSERT INTO messages (chat_id, seq, user_id, content, client_id)
               SELECT $1, s.last_seq, $2, $3, $4 FROM s RETURNING *),
           l AS (
               INSERT INTO changes (chat_id, pos, kind, message_id)
               SELECT $1, s.last_pos, 'message.created', m.id FROM s, m),
           r AS (
               UPDATE chat_members SET last_read_seq = m.seq, last_read_at = now()
               FROM m WHERE chat_members.chat_id = $1 AND chat_members.user_id = $2)
           SELECT m.id AS "id!", m.chat_id AS "chat_id!", m.seq AS "seq!", m.user_id AS "user_id?",
               u.username AS "username?", m.content AS "content!", m.client_id AS "client_id?",
               m.created_at AS "created_at!", m.updated_at AS "updated_at!",
               m.edited_at AS "edited_at?", m.deleted_at AS "deleted_at?",
               NOT EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id <> $2)
                   AS "alone!",
               ARRAY(SELECT wc.connection_id FROM chat_members cm
                     JOIN ws_connections wc ON wc.user_id = cm.user_id
                     WHERE cm.chat_id = $1 AND (wc.chat_id IS NULL OR wc.chat_id = $1))
                   AS "audience!",
               s.last_pos AS "pos!",
               s.members_pos <> (SELECT c.members_pos FROM chats c WHERE c.id = $1)
                   AS "members_moved!"
           FROM m JOIN users u ON u.id = m.user_id, s"#,
        chat_id,
        user_id,
        content,
        client_id,
        session,
    )
    .fetch_optional(db)
    .await;
    match result {
        Ok(inserted) => Ok(inserted.map(|i| Sent::Created {
            row: message_row!(i),
            alone: i.alone,
            audience: i.audience,
            pos: i.pos,
            members_moved: i.members_moved,
        })),
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("messages_client_id_key") => {
            // A concurrent retry of the same send won the race: answer with its message.
            let Some(client_id) = client_id else {
                return Err(Error::internal("client_id conflict without a client_id"));
            };
            Ok(find_by_client_id(db, chat_id, user_id, client_id)
                .await?
                .map(Sent::Duplicate))
        }
        Err(e) => Err(e.into()),
    }
}

/// The sender's earlier message with this `client_id`, while they are still a member.
pub async fn find_by_client_id(
    db: impl PgExecutor<'_>,
    chat_id: i64,
    user_id: i64,
    client_id: &str,
) -> Result<Option<MessageRow>> {
    Ok(sqlx::query_as!(
        MessageRow,
        r#"SELECT m.id AS "id!", m.chat_id AS "chat_id!", m.seq AS "seq!", m.user_id AS "user_id?",
                  u.username AS "username?", m.content AS "content!", m.client_id AS "client_id?",
                  m.created_at AS "created_at!", m.updated_at AS "updated_at!",
                  m.edited_at AS "edited_at?", m.deleted_at AS "deleted_at?"
           FROM messages m LEFT JOIN users u ON u.id = m.user_id
           WHERE m.chat_id = $1 AND m.user_id = $2 AND m.client_id = $3
             AND EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2)"#,
        chat_id,
        user_id,
        client_id,
    )
    .fetch_optional(db)
    .await?)
}

pub async fn find(
    db: impl PgExecutor<'_>,
    chat_id: i64,
    message_id: i64,
) -> Result<Option<MessageRow>> {
    Ok(sqlx::query_as!(
        MessageRow,
        r#"SELECT m.id AS "id!", m.chat_id AS "chat_id!", m.seq AS "seq!", m.user_id AS "user_id?",
                  u.username AS "username?", m.content AS "content!", m.client_id AS "client_id?",
                  m.created_at AS "created_at!", m.updated_at AS "updated_at!",
                  m.edited_at AS "edited_at?", m.deleted_at AS "deleted_at?"
           FROM messages m LEFT JOIN users u ON u.id = m.user_id
           WHERE m.chat_id = $1 AND m.id = $2"#,
        chat_id,
        message_id,
    )
    .fetch_optional(db)
    .await?)
}

/// Which way a page of messages runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Newest first, optionally only `seq < before`.
    NewestFirst { before: Option<i64> },
    /// Oldest first from `seq > after` (catching up after a reconnect).
    OldestFirst { after: i64 },
}

/// One page, walked on the `(chat_id, seq)` index.
pub async fn page(
    db: impl PgExecutor<'_>,
    chat_id: i64,
    order: Order,
    skip: i64,
    limit: i64,
) -> Result<Vec<MessageRow>> {
    // One statement per direction: each walks the index its own way.
    let rows = match order {
        Order::NewestFirst { before } => {
            sqlx::query_as!(
                MessageRow,
                r#"SELECT m.id AS "id!", m.chat_id AS "chat_id!", m.seq AS "seq!", m.user_id AS "user_id?",
                  u.username AS "username?", m.content AS "content!", m.client_id AS "client_id?",
                  m.created_at AS "created_at!", m.updated_at AS "updated_at!",
                  m.edited_at AS "edited_at?", m.deleted_at AS "deleted_at?"
                   FROM messages m LEFT JOIN users u ON u.id = m.user_id
                   WHERE m.chat_id = $1 AND ($2::bigint IS NULL OR m.seq < $2)
                   ORDER BY m.seq DESC OFFSET $3 LIMIT $4"#,
                chat_id,
                before,
                skip,
                limit,
            )
            .fetch_all(db)
            .await?
        }
        Order::OldestFirst { after } => {
            sqlx::query_as!(
                MessageRow,
                r#"SELECT m.id AS "id!", m.chat_id AS "chat_id!", m.seq AS "seq!", m.user_id AS "user_id?",
                  u.username AS "username?", m.content AS "content!", m.client_id AS "client_id?",
                  m.created_at AS "created_at!", m.updated_at AS "updated_at!",
                  m.edited_at AS "edited_at?", m.deleted_at AS "deleted_at?"
                   FROM messages m LEFT JOIN users u ON u.id = m.user_id
                   WHERE m.chat_id = $1 AND m.seq > $2
                   ORDER BY m.seq ASC OFFSET $3 LIMIT $4"#,
                chat_id,
                after,
                skip,
                limit,
            )
            .fetch_all(db)
            .await?
        }
    };
    Ok(rows)
}

/// The newest message of each chat, found through `chats.last_seq`.
pub async fn latest_of(db: impl PgExecutor<'_>, chat_ids: &[i64]) -> Result<Vec<MessageRow>> {
    Ok(sqlx::query_as!(
        MessageRow,
        r#"SELECT m.id AS "id!", m.chat_id AS "chat_id!", m.seq AS "seq!", m.user_id AS "user_id?",
                  u.username AS "username?", m.content AS "content!", m.client_id AS "client_id?",
                  m.created_at AS "created_at!", m.updated_at AS "updated_at!",
                  m.edited_at AS "edited_at?", m.deleted_at AS "deleted_at?"
           FROM chats c
           JOIN messages m ON m.chat_id = c.id AND m.seq = c.last_seq
           LEFT JOIN users u ON u.id = m.user_id WHERE c.id = ANY($1)"#,
        chat_ids,
    )
    .fetch_all(db)
    .await?)
}

/// Replaces the content of a live message and logs the change; with the change's position.
/// The chat's row is locked first, as a send and a chat's deletion lock it.
pub async fn edit(
    db: impl PgExecutor<'_>,
    message_id: i64,
    content: &str,
) -> Result<Option<(MessageRow, i64)>> {
    let row = sqlx::query!(
        r#"WITH c AS (SELECT id FROM chats
                      WHERE id = (SELECT chat_id FROM messages WHERE id = $1) FOR UPDATE),
                m AS (UPDATE messages SET content = $2, edited_at = now(), updated_at = now() FROM c
                      WHERE messages.id = $1 AND messages.chat_id = c.id
                        AND messages.deleted_at IS NULL
                      RETURNING messages.*),
                p AS (UPDATE chats SET last_pos = last_pos + 1 FROM m
                      WHERE chats.id = m.chat_id RETURNING chats.last_pos),
                l AS (INSERT INTO changes (chat_id, pos, kind, message_id)
                      SELECT m.chat_id, p.last_pos, 'message.updated', m.id FROM m, p)
           SELECT m.id AS "id!", m.chat_id AS "chat_id!", m.seq AS "seq!", m.user_id AS "user_id?",
                  u.username AS "username?", m.content AS "content!", m.client_id AS "client_id?",
                  m.created_at AS "created_at!", m.updated_at AS "updated_at!",
                  m.edited_at AS "edited_at?", m.deleted_at AS "deleted_at?",
                  p.last_pos AS "pos!"
           FROM m CROSS JOIN p LEFT JOIN users u ON u.id = m.user_id"#,
        message_id,
        content,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (message_row!(r), r.pos)))
}

/// Leaves a tombstone: the row and its `seq` stay, the content goes. Logs the change; with the
/// change's position.
pub async fn tombstone(
    db: impl PgExecutor<'_>,
    message_id: i64,
) -> Result<Option<(MessageRow, i64)>> {
    let row = sqlx::query!(
        r#"WITH c AS (SELECT id FROM chats
                      WHERE id = (SELECT chat_id FROM messages WHERE id = $1) FOR UPDATE),
                m AS (UPDATE messages SET content = '', deleted_at = now(), updated_at = now() FROM c
                      WHERE messages.id = $1 AND messages.chat_id = c.id
                        AND messages.deleted_at IS NULL
                      RETURNING messages.*),
                p AS (UPDATE chats SET last_pos = last_pos + 1 FROM m
                      WHERE chats.id = m.chat_id RETURNING chats.last_pos),
                l AS (INSERT INTO changes (chat_id, pos, kind, message_id)
                      SELECT m.chat_id, p.last_pos, 'message.deleted', m.id FROM m, p)
           SELECT m.id AS "id!", m.chat_id AS "chat_id!", m.seq AS "seq!", m.user_id AS "user_id?",
                  u.username AS "username?", m.content AS "content!", m.client_id AS "client_id?",
                  m.created_at AS "created_at!", m.updated_at AS "updated_at!",
                  m.edited_at AS "edited_at?", m.deleted_at AS "deleted_at?",
                  p.last_pos AS "pos!"
           FROM m CROSS JOIN p LEFT JOIN users u ON u.id = m.user_id"#,
        message_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (message_row!(r), r.pos)))
}

/// The messages with these ids, as they are now, with whether every other member has read each
/// (the sync feed shows a message's current state).
pub async fn by_ids(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<Vec<(MessageRow, bool)>> {
    let rows = sqlx::query!(
        r#"SELECT m.id AS "id!", m.chat_id AS "chat_id!", m.seq AS "seq!", m.user_id AS "user_id?",
                  u.username AS "username?", m.content AS "content!", m.client_id AS "client_id?",
                  m.created_at AS "created_at!", m.updated_at AS "updated_at!",
                  m.edited_at AS "edited_at?", m.deleted_at AS "deleted_at?",
                  NOT EXISTS (SELECT 1 FROM chat_members cm
                              WHERE cm.chat_id = m.chat_id AND cm.user_id IS DISTINCT FROM m.user_id
                                AND cm.last_read_seq < m.seq) AS "is_read!"
           FROM messages m LEFT JOIN users u ON u.id = m.user_id
           WHERE m.id = ANY($1)"#,
        ids,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (message_row!(r), r.is_read))
        .collect())
}
