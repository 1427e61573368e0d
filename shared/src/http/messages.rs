//! `/api/chats/{chat_id}/messages`: send, page, edit, delete, and read tracking.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};

use crate::error::Result;
use crate::http::extract::{AuthUser, Json, Path, Query, TokenCaller, parse_json};
use crate::http::pagination::created_or_ok;
use crate::service::messages;
use crate::state::AppState;
use crate::views::{
    MarkRead, MessageEdit, MessageQuery, MessageView, NewMessage, ReadCursorView, ReadStatus,
};

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
    messages::list(&state.db, user, chat_id, q)
        .await
        .map(axum::Json)
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
    // The session is checked by the send's own insert.
    TokenCaller(user): TokenCaller,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
    Json(body): Json<NewMessage>,
) -> Result<impl IntoResponse> {
    let outcome = messages::send(&state.db, user, chat_id, body.content, body.client_id).await?;
    Ok(created_or_ok(state.push.deliver(outcome).await))
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
    let outcome = messages::edit(&state.db, user, chat_id, message_id, body.content).await?;
    Ok(axum::Json(state.push.deliver(outcome).await))
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
    let outcome = messages::delete(&state.db, user, chat_id, message_id).await?;
    state.push.deliver(outcome).await;
    Ok(StatusCode::NO_CONTENT)
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
    messages::read_status(&state.db, user, chat_id, message_id)
        .await
        .map(axum::Json)
}

/// `PUT /api/chats/{chat_id}/messages/read` — mark messages read. The cursor never moves back.
#[utoipa::path(put, path = "/api/chats/{chat_id}/messages/read", tag = "messages", security(("bearer" = [])),
    params(("chat_id" = i64, Path)), request_body(content = Option<MarkRead>, description = "Optional: `{}` or no body reads everything"),
    responses(
        (status = 200, description = "The caller's read cursor", body = ReadCursorView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A negative or fractional `up_to_seq` (an integral number such as `5.0` is read as `5`)", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn mark_read(
    user: AuthUser,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<axum::Json<ReadCursorView>> {
    // No body, or `{}`, or `null`: read everything.
    let body: MarkRead = if body.iter().all(u8::is_ascii_whitespace) {
        MarkRead::default()
    } else {
        parse_json::<Option<MarkRead>>(&body)?.unwrap_or_default()
    };
    let outcome = messages::mark_read(&state.db, user, chat_id, body.up_to_seq).await?;
    Ok(axum::Json(state.push.deliver(outcome).await))
}
