//! `/api/chats/{chat_id}/messages`: send, page, edit, delete, and read tracking.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::db;
use crate::db::messages::{Order, Sent};
use crate::domain::{ClientId, MessageBody};
use crate::error::{Error, Result};
use crate::extract::{AuthUser, Json, Path, Query};
use crate::http::chats::{chat_not_found, membership};
use crate::http::pagination::limit;
use crate::http::views::{MessageView, ReadCursors};
use crate::realtime::Event;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/chats/{chat_id}/messages",
            get(list_messages).post(send_message),
        )
        .route("/api/chats/{chat_id}/messages/read", put(mark_read))
        .route(
            "/api/chats/{chat_id}/messages/{message_id}",
            put(edit_message).delete(delete_message),
        )
        .route(
            "/api/chats/{chat_id}/messages/{message_id}/read-status",
            get(read_status),
        )
}

fn message_not_found() -> Error {
    Error::NotFound("message not found")
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// Page size, 1–100 (default 50; larger values are capped at 100).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// Newest first, only messages with a smaller `seq` (the next older page).
    pub before_seq: Option<i64>,
    /// Oldest first, only messages with a larger `seq` (catching up after a reconnect).
    /// Not together with `before_seq`.
    #[param(minimum = 0)]
    pub after_seq: Option<i64>,
    /// Messages to skip (offset pagination, kept for older clients).
    #[param(minimum = 0)]
    pub skip: Option<i64>,
}

/// `GET /api/chats/{chat_id}/messages` — a page of messages; members only.
#[utoipa::path(get, path = "/api/chats/{chat_id}/messages", tag = "messages", security(("bearer" = [])),
    params(("chat_id" = i64, Path), MessageQuery),
    responses(
        (status = 200, description = "Newest first, or oldest first with `after_seq`", body = [MessageView]),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad paging parameters", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_messages(
    user: AuthUser,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
    Query(q): Query<MessageQuery>,
) -> Result<axum::Json<Vec<MessageView>>> {
    let limit = limit(q.limit)?;
    let skip = q.skip.unwrap_or(0);
    if skip < 0 {
        return Err(Error::validation("skip", "must not be negative"));
    }
    let order = match (q.before_seq, q.after_seq) {
        (Some(_), Some(_)) => {
            return Err(Error::validation(
                "after_seq",
                "cannot be combined with before_seq",
            ));
        }
        (_, Some(after)) if after < 0 => {
            return Err(Error::validation("after_seq", "must not be negative"));
        }
        (_, Some(after)) => Order::OldestFirst { after },
        (before, None) => Order::NewestFirst { before },
    };
    let cursors = db::members::cursors(&state.db, chat_id).await?;
    if !cursors.iter().any(|c| c.user_id == user.id) {
        return Err(chat_not_found());
    }
    let rows = db::messages::page(&state.db, chat_id, order, skip, limit).await?;
    let read = ReadCursors::new(cursors.iter().map(|c| (c.user_id, c.last_read_seq)));
    Ok(axum::Json(
        rows.into_iter()
            .map(|m| {
                let is_read = read.is_read(m.seq, m.user_id);
                MessageView::new(m, is_read)
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewMessage {
    /// 1–4,000 characters, not only white space.
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    pub content: String,
    /// 1–64 printable characters; a retry with the same value returns the first message.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f]+$")]
    pub client_id: Option<String>,
}

/// A send, after parsing: shared by HTTP and the WebSocket `sendMessage` action.
pub struct SendOutcome {
    pub message: MessageView,
    pub created: bool,
    /// When created: the connections to push it to, found by the insert itself.
    pub audience: Vec<String>,
}

/// Stores a message from `user_id` in `chat_id`, idempotently on `client_id`.
pub async fn send(
    state: &AppState,
    user_id: i64,
    chat_id: i64,
    content: String,
    client_id: Option<String>,
) -> Result<SendOutcome> {
    let content = MessageBody::parse(content);
    let client_id = client_id.map(ClientId::parse).transpose();
    let (content, client_id) = match (content, client_id) {
        (Ok(c), Ok(id)) => (c, id),
        (Err(a), Err(b)) => return Err(crate::http::auth::merge_validation(vec![a, b])),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let client_id = client_id.as_ref().map(ClientId::as_str);
    if let Some(client_id) = client_id
        && let Some(existing) =
            db::messages::find_by_client_id(&state.db, chat_id, user_id, client_id).await?
    {
        return Ok(SendOutcome {
            message: view_one(state, existing).await?,
            created: false,
            audience: Vec::new(),
        });
    }
    let sent = db::messages::insert(&state.db, chat_id, user_id, content.as_str(), client_id)
        .await?
        .ok_or_else(chat_not_found)?;
    Ok(match sent {
        Sent::Created {
            row,
            alone,
            audience,
        } => SendOutcome {
            message: MessageView::new(row, alone),
            created: true,
            audience,
        },
        Sent::Duplicate(row) => SendOutcome {
            message: view_one(state, row).await?,
            created: false,
            audience: Vec::new(),
        },
    })
}

async fn view_one(state: &AppState, row: db::messages::MessageRow) -> Result<MessageView> {
    let cursors = db::members::cursors(&state.db, row.chat_id).await?;
    let read = ReadCursors::new(cursors.iter().map(|c| (c.user_id, c.last_read_seq)));
    let is_read = read.is_read(row.seq, row.user_id);
    Ok(MessageView::new(row, is_read))
}

/// `POST /api/chats/{chat_id}/messages` — send a message; members only.
#[utoipa::path(post, path = "/api/chats/{chat_id}/messages", tag = "messages", security(("bearer" = [])),
    params(("chat_id" = i64, Path)), request_body = NewMessage,
    responses(
        (status = 201, description = "Stored", body = MessageView),
        (status = 200, description = "A retry of an earlier send with the same client_id; nothing new stored", body = MessageView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Empty or too long content, or a bad client_id", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn send_message(
    user: AuthUser,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
    Json(body): Json<NewMessage>,
) -> Result<impl IntoResponse> {
    let outcome = send(&state, user.id, chat_id, body.content, body.client_id).await?;
    if outcome.created {
        let event = Event::MessageCreated {
            chat_id,
            message: outcome.message.clone(),
        };
        state.push.to_connections(&outcome.audience, &event).await;
    }
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(outcome.message)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MessageEdit {
    /// 1–4,000 characters, not only white space.
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    pub content: String,
}

/// `PUT /api/chats/{chat_id}/messages/{message_id}` — edit one's own message.
#[utoipa::path(put, path = "/api/chats/{chat_id}/messages/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("chat_id" = i64, Path), ("message_id" = i64, Path)), request_body = MessageEdit,
    responses(
        (status = 200, description = "The edited message", body = MessageView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the author", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat or message, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The message was deleted", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Empty or too long content", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn edit_message(
    user: AuthUser,
    State(state): State<AppState>,
    Path((chat_id, message_id)): Path<(i64, i64)>,
    Json(body): Json<MessageEdit>,
) -> Result<axum::Json<MessageView>> {
    membership(&state, chat_id, user.id).await?;
    let message = db::messages::find(&state.db, chat_id, message_id)
        .await?
        .ok_or_else(message_not_found)?;
    if message.user_id != Some(user.id) {
        return Err(Error::Forbidden(
            "not_author",
            "only the author can edit a message",
        ));
    }
    if message.deleted_at.is_some() {
        return Err(Error::conflict(
            "message_deleted",
            "a deleted message cannot be edited",
        ));
    }
    let content = MessageBody::parse(body.content)?;
    let row = db::messages::edit(&state.db, message_id, content.as_str())
        .await?
        .ok_or_else(|| Error::conflict("message_deleted", "a deleted message cannot be edited"))?;
    let view = view_one(&state, row).await?;
    let event = Event::MessageUpdated {
        chat_id,
        message: view.clone(),
    };
    state.push.to_chat(chat_id, &event).await;
    Ok(axum::Json(view))
}

/// `DELETE /api/chats/{chat_id}/messages/{message_id}` — delete a message: its author, or an
/// admin of the group. A tombstone keeps its place in the chat.
#[utoipa::path(delete, path = "/api/chats/{chat_id}/messages/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("chat_id" = i64, Path), ("message_id" = i64, Path)),
    responses(
        (status = 204, description = "Deleted (or already deleted)"),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither the author nor a group admin", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat or message, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_message(
    user: AuthUser,
    State(state): State<AppState>,
    Path((chat_id, message_id)): Path<(i64, i64)>,
) -> Result<StatusCode> {
    let member = membership(&state, chat_id, user.id).await?;
    let message = db::messages::find(&state.db, chat_id, message_id)
        .await?
        .ok_or_else(message_not_found)?;
    let is_admin = member.chat.is_group && member.role == "admin";
    if message.user_id != Some(user.id) && !is_admin {
        return Err(Error::Forbidden(
            "not_author",
            "only the author or a group admin can delete a message",
        ));
    }
    if let Some(row) = db::messages::tombstone(&state.db, message_id).await? {
        let event = Event::MessageDeleted {
            chat_id,
            message: view_one(&state, row).await?,
        };
        state.push.to_chat(chat_id, &event).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadReceipt {
    pub user_id: i64,
    /// When the member's read cursor last moved, at or past this message.
    pub read_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadStatus {
    pub message_id: i64,
    /// Every member but the author has read it.
    pub is_read: bool,
    pub read_by: Vec<ReadReceipt>,
    pub unread_by: Vec<i64>,
}

/// `GET /api/chats/{chat_id}/messages/{message_id}/read-status` — who has read a message.
#[utoipa::path(get, path = "/api/chats/{chat_id}/messages/{message_id}/read-status", tag = "messages", security(("bearer" = [])),
    params(("chat_id" = i64, Path), ("message_id" = i64, Path)),
    responses(
        (status = 200, description = "Readers and non-readers among the other members", body = ReadStatus),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat or message, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn read_status(
    user: AuthUser,
    State(state): State<AppState>,
    Path((chat_id, message_id)): Path<(i64, i64)>,
) -> Result<axum::Json<ReadStatus>> {
    let cursors = db::members::cursors(&state.db, chat_id).await?;
    if !cursors.iter().any(|c| c.user_id == user.id) {
        return Err(chat_not_found());
    }
    let message = db::messages::find(&state.db, chat_id, message_id)
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
    Ok(axum::Json(ReadStatus {
        message_id,
        is_read: unread_by.is_empty(),
        read_by,
        unread_by,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct MarkRead {
    /// Read up to and including this `seq`; left out, up to the newest message.
    #[schema(minimum = 0)]
    pub up_to_seq: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadCursorView {
    pub chat_id: i64,
    pub last_read_seq: i64,
    pub unread_count: i64,
}

/// The outcome of moving a read cursor: the view, and whether it moved.
pub struct MarkedRead {
    pub view: ReadCursorView,
    pub moved: bool,
}

/// Moves `user_id`'s read cursor in `chat_id`; shared by HTTP and the WebSocket `markRead`.
pub async fn mark(
    state: &AppState,
    user_id: i64,
    chat_id: i64,
    up_to: Option<i64>,
) -> Result<MarkedRead> {
    if up_to.is_some_and(|s| s < 0) {
        return Err(Error::validation("up_to_seq", "must not be negative"));
    }
    let (last_read_seq, last_seq, moved) =
        db::members::mark_read(&state.db, chat_id, user_id, up_to)
            .await?
            .ok_or_else(chat_not_found)?;
    Ok(MarkedRead {
        view: ReadCursorView {
            chat_id,
            last_read_seq,
            unread_count: (last_seq - last_read_seq).max(0),
        },
        moved,
    })
}

/// `PUT /api/chats/{chat_id}/messages/read` — mark messages read. The cursor never moves back.
#[utoipa::path(put, path = "/api/chats/{chat_id}/messages/read", tag = "messages", security(("bearer" = [])),
    params(("chat_id" = i64, Path)), request_body(content = Option<MarkRead>, description = "Optional: `{}` or no body reads everything"),
    responses(
        (status = 200, description = "The caller's read cursor", body = ReadCursorView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A negative seq", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn mark_read(
    user: AuthUser,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<axum::Json<ReadCursorView>> {
    let body: MarkRead = if body.iter().all(u8::is_ascii_whitespace) {
        MarkRead::default()
    } else {
        crate::extract::parse_json::<Option<MarkRead>>(&body)?.unwrap_or_default()
    };
    let marked = mark(&state, user.id, chat_id, body.up_to_seq).await?;
    if marked.moved {
        let event = Event::MessageRead {
            chat_id,
            user_id: user.id,
            last_read_seq: marked.view.last_read_seq,
        };
        state.push.to_chat(chat_id, &event).await;
    }
    Ok(axum::Json(marked.view))
}
