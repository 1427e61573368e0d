//! Messages and read state: page, send, edit, delete, who read what, and marking read.

use sqlx::PgPool;

use crate::db;
use crate::db::messages::{MessageRow, Order, Sent};
use crate::domain::{Caller, ClientId, MessageBody, limit, skip_of};
use crate::error::{Checks, Error, Result};
use crate::service::access::{Member, chat_not_found};
use crate::service::{Audience, Outcome, Stored, sessions};
use crate::views::{
    Event, MessageQuery, MessageView, ReadCursorView, ReadCursors, ReadReceipt, ReadStatus,
};

fn message_not_found() -> Error {
    Error::NotFound("message not found")
}

fn message_deleted() -> Error {
    Error::conflict("message_deleted", "a deleted message cannot be edited")
}

/// The order a page runs in and the most rows it may hold: newest first (below `before_seq`),
/// or oldest first after `after_seq`; with both, the messages between them, oldest first.
/// `seq` is gap-free (messages leave only as tombstones, or with their chat), so at most
/// `before - after - 1` messages lie between the two, and an oldest-first page cut to that
/// many (less those skipped) ends below `before`.
fn window_of(q: &MessageQuery, skip: i64, limit: i64) -> Result<(Order, i64)> {
    match (q.before_seq, q.after_seq) {
        (_, Some(after)) if after < 0 => {
            Err(Error::validation("after_seq", "must not be negative"))
        }
        (Some(before), Some(after)) => {
            let between = before.saturating_sub(after).saturating_sub(1);
            let left = between.saturating_sub(skip).max(0);
            Ok((Order::OldestFirst { after }, limit.min(left)))
        }
        (None, Some(after)) => Ok((Order::OldestFirst { after }, limit)),
        (before, None) => Ok((Order::NewestFirst { before }, limit)),
    }
}

/// A page of a chat's messages, newest first, or oldest first after `after_seq` (up to
/// `before_seq` when both are given); members only.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id))]
pub async fn list(
    db: &PgPool,
    caller: Caller,
    chat_id: i64,
    q: MessageQuery,
) -> Result<Vec<MessageView>> {
    let skip = skip_of(q.skip)?;
    let (order, limit) = window_of(&q, skip, limit(q.limit)?)?;
    // The membership check and the read cursors go to the database side by side.
    let (_member, cursors) = tokio::try_join!(
        Member::load(db, chat_id, caller.id),
        db::members::cursors(db, chat_id),
    )?;
    let rows = db::messages::page(db, chat_id, order, skip, limit).await?;
    let read = ReadCursors::new(cursors.iter().map(|c| (c.user_id, c.last_read_seq)));
    Ok(rows
        .into_iter()
        .map(|m| {
            let is_read = read.is_read(m.seq, m.user_id);
            MessageView::new(m, is_read)
        })
        .collect())
}

async fn view_one(db: &PgPool, row: MessageRow) -> Result<MessageView> {
    let cursors = db::members::cursors(db, row.chat_id).await?;
    let read = ReadCursors::new(cursors.iter().map(|c| (c.user_id, c.last_read_seq)));
    let is_read = read.is_read(row.seq, row.user_id);
    Ok(MessageView::new(row, is_read))
}

/// An earlier send answered again: nothing new stored, nobody notified.
async fn retried(db: &PgPool, row: MessageRow) -> Result<Outcome<Stored<MessageView>>> {
    Ok(Outcome::quiet(Stored {
        item: view_one(db, row).await?,
        created: false,
    }))
}

/// Stores a message from the caller, idempotently on `client_id`: a retry returns the first
/// message and stores nothing. Shared by the HTTP send and the WebSocket `sendMessage`.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id))]
pub async fn send(
    db: &PgPool,
    caller: Caller,
    chat_id: i64,
    content: String,
    client_id: Option<String>,
) -> Result<Outcome<Stored<MessageView>>> {
    let mut checks = Checks::new();
    let content = checks.check(MessageBody::parse(content));
    let client_id = checks.check_some(client_id.map(ClientId::parse));
    checks.finish()?;
    let Some(content) = content else {
        return Err(Error::internal("a parsed field is missing"));
    };
    let client_id = client_id.as_ref().map(ClientId::as_str);
    if let Some(client_id) = client_id
        && let Some(existing) =
            db::messages::find_by_client_id(db, chat_id, caller.id, client_id).await?
    {
        // A retry answers from what is stored; its session is checked on its own.
        sessions::check(db, caller).await?;
        return retried(db, existing).await;
    }
    // The session check is folded into the insert (the caller's session must be live).
    let Some(session) = caller.session else {
        return Err(sessions::ended());
    };
    let sent = db::messages::insert(
        db,
        chat_id,
        caller.id,
        content.as_str(),
        client_id,
        Some(session),
    )
    .await?;
    let Some(sent) = sent else {
        // Only on the way out: say which of the two it was.
        sessions::check(db, caller).await?;
        return Err(chat_not_found());
    };
    match sent {
        Sent::Created {
            row,
            alone,
            audience,
            pos,
            members_moved,
        } => {
            let message = MessageView::new(row, alone);
            let event = Event::MessageCreated {
                chat_id,
                pos,
                message: message.clone(),
            };
            Ok(Outcome::quiet(Stored {
                item: message,
                created: true,
            })
            .notify(send_audience(chat_id, audience, members_moved), event))
        }
        Sent::Duplicate(row) => retried(db, row).await,
    }
}

/// Who hears of a send. The insert lists the connections itself, which saves a query before
/// the push; but when members were added or removed while it waited for the chat's lock, its
/// list predates that change (a member removed just before the message would still get it), so
/// the connections are looked up again at delivery.
fn send_audience(chat_id: i64, listed: Vec<String>, members_moved: bool) -> Audience {
    if members_moved {
        tracing::debug!(
            chat_id,
            "members changed during the send; audience looked up again"
        );
        Audience::Chat(chat_id)
    } else {
        Audience::Connections(listed)
    }
}

/// Edits one's own live message.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id, message_id = message_id))]
pub async fn edit(
    db: &PgPool,
    caller: Caller,
    chat_id: i64,
    message_id: i64,
    content: String,
) -> Result<Outcome<MessageView>> {
    let member = Member::load(db, chat_id, caller.id).await?;
    let message = db::messages::find(db, chat_id, message_id)
        .await?
        .ok_or_else(message_not_found)?;
    member.require_author(&message, "only the author can edit a message")?;
    if message.deleted_at.is_some() {
        return Err(message_deleted());
    }
    let content = MessageBody::parse(content)?;
    let (row, pos) = db::messages::edit(db, message_id, content.as_str())
        .await?
        .ok_or_else(message_deleted)?;
    let view = view_one(db, row).await?;
    let event = Event::MessageUpdated {
        chat_id,
        pos,
        message: view.clone(),
    };
    Ok(Outcome::quiet(view).notify(Audience::Chat(chat_id), event))
}

/// Deletes a message (its author, or an admin of the group), leaving a tombstone in its place.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id, message_id = message_id))]
pub async fn delete(
    db: &PgPool,
    caller: Caller,
    chat_id: i64,
    message_id: i64,
) -> Result<Outcome<()>> {
    let member = Member::load(db, chat_id, caller.id).await?;
    let message = db::messages::find(db, chat_id, message_id)
        .await?
        .ok_or_else(message_not_found)?;
    member.require_author_or_admin(
        &message,
        "only the author or a group admin can delete a message",
    )?;
    let Some((row, pos)) = db::messages::tombstone(db, message_id).await? else {
        return Ok(Outcome::quiet(()));
    };
    let event = Event::MessageDeleted {
        chat_id,
        pos,
        message: view_one(db, row).await?,
    };
    Ok(Outcome::quiet(()).notify(Audience::Chat(chat_id), event))
}

/// Who among the other members has read a message, and who has not.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id, message_id = message_id))]
pub async fn read_status(
    db: &PgPool,
    caller: Caller,
    chat_id: i64,
    message_id: i64,
) -> Result<ReadStatus> {
    let (_member, cursors) = tokio::try_join!(
        Member::load(db, chat_id, caller.id),
        db::members::cursors(db, chat_id),
    )?;
    let message = db::messages::find(db, chat_id, message_id)
        .await?
        .ok_or_else(message_not_found)?;
    let mut read_by = Vec::new();
    let mut unread_by = Vec::new();
    for c in cursors
        .iter()
        .filter(|c| Some(c.user_id) != message.user_id)
    {
        if c.last_read_seq >= message.seq {
            read_by.push(ReadReceipt {
                user_id: c.user_id,
                read_at: c.last_read_at,
            });
        } else {
            unread_by.push(c.user_id);
        }
    }
    Ok(ReadStatus {
        message_id,
        is_read: unread_by.is_empty(),
        read_by,
        unread_by,
    })
}

/// Moves the caller's read cursor forward (never back); shared by HTTP and the WebSocket
/// `markRead`. Members hear of it only when it moved.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id))]
pub async fn mark_read(
    db: &PgPool,
    caller: Caller,
    chat_id: i64,
    up_to: Option<i64>,
) -> Result<Outcome<ReadCursorView>> {
    if up_to.is_some_and(|s| s < 0) {
        return Err(Error::validation("up_to_seq", "must not be negative"));
    }
    // Moving the cursor is the membership check: a non-member has no row to move.
    let mark = db::members::mark_read(db, chat_id, caller.id, up_to)
        .await?
        .ok_or_else(chat_not_found)?;
    let view = ReadCursorView {
        chat_id,
        last_read_seq: mark.last_read_seq,
        unread_count: (mark.last_seq - mark.last_read_seq).max(0),
    };
    let Some(pos) = mark.pos else {
        return Ok(Outcome::quiet(view));
    };
    let event = Event::MessageRead {
        chat_id,
        pos,
        user_id: caller.id,
        last_read_seq: mark.last_read_seq,
    };
    Ok(Outcome::quiet(view).notify(Audience::Chat(chat_id), event))
}
