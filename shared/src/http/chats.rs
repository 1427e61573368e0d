//! `/api/chats`: direct and group chats and their members.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};

use crate::domain::{ChatCursor, limit, skip_of};
use crate::error::Result;
use crate::http::extract::{AuthUser, Json, Path, Query};
use crate::http::pagination::{ChatPageQuery, OffsetQuery, created_or_ok, next_page_headers};
use crate::service::chats;
use crate::state::AppState;
use crate::views::{ChatUpdate, ChatView, MemberList, MemberView, NewChat};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/chats", get(list_chats).post(create_chat))
        .route(
            "/api/chats/{chat_id}",
            get(get_chat).put(rename_chat).delete(delete_chat),
        )
        .route(
            "/api/chats/{chat_id}/members",
            get(list_members).post(add_members),
        )
        .route(
            "/api/chats/{chat_id}/members/{user_id}",
            delete(remove_member),
        )
}

/// `GET /api/chats` — the caller's chats, most recent activity first, each with its first
/// few members and `member_count`.
#[utoipa::path(get, path = "/api/chats", tag = "chats", security(("bearer" = [])),
    params(ChatPageQuery),
    responses(
        (status = 200, description = "A page of chats; `X-Next-Cursor` names the next page when there is one", body = [ChatView],
            headers(("x-next-cursor" = String, description = "Pass as `cursor` for the next page"))),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor, or `skip` over 10,000", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_chats(
    user: AuthUser,
    State(state): State<AppState>,
    Query(page): Query<ChatPageQuery>,
) -> Result<impl IntoResponse> {
    let limit = limit(page.limit)?;
    let after = ChatCursor::parse(page.cursor.as_deref())?;
    let skip = skip_of(page.skip)?;
    let (chats, next) = chats::list(&state.db, user, after, skip, limit).await?;
    Ok((next_page_headers(next), axum::Json(chats)))
}

/// `POST /api/chats` — start a direct chat or a group.
///
/// Asking for a direct chat that exists returns it with 200; the database makes sure that a
/// pair of users has one direct chat, even under concurrent requests.
#[utoipa::path(post, path = "/api/chats", tag = "chats", security(("bearer" = [])),
    request_body = NewChat,
    responses(
        (status = 201, description = "The new chat", body = ChatView),
        (status = 200, description = "The existing direct chat", body = ChatView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`blocked`: the other user of a direct chat, or someone to add to a group, blocked the caller; `not_allowed_to_add`: someone's `add_to_groups` setting leaves the caller out. The whole request is refused; `user_ids` names them", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing name, wrong member count, or unknown user ids", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_chat(
    user: AuthUser,
    State(state): State<AppState>,
    Json(body): Json<NewChat>,
) -> Result<impl IntoResponse> {
    let outcome = chats::create(&state.db, user, body).await?;
    Ok(created_or_ok(state.push.deliver(outcome).await))
}

/// `GET /api/chats/{chat_id}` — one chat; members only.
#[utoipa::path(get, path = "/api/chats/{chat_id}", tag = "chats", security(("bearer" = [])),
    params(("chat_id" = i64, Path)),
    responses(
        (status = 200, description = "The chat", body = ChatView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_chat(
    user: AuthUser,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
) -> Result<axum::Json<ChatView>> {
    chats::get(&state.db, user, chat_id).await.map(axum::Json)
}

/// `PUT /api/chats/{chat_id}` — rename a group; its admins only.
#[utoipa::path(put, path = "/api/chats/{chat_id}", tag = "chats", security(("bearer" = [])),
    params(("chat_id" = i64, Path)), request_body = ChatUpdate,
    responses(
        (status = 200, description = "The renamed chat", body = ChatView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A direct chat", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn rename_chat(
    user: AuthUser,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
    Json(body): Json<ChatUpdate>,
) -> Result<axum::Json<ChatView>> {
    let outcome = chats::rename(&state.db, user, chat_id, body).await?;
    Ok(axum::Json(state.push.deliver(outcome).await))
}

/// `DELETE /api/chats/{chat_id}` — delete a chat and its messages: a group's admins, or
/// either member of a direct chat.
#[utoipa::path(delete, path = "/api/chats/{chat_id}", tag = "chats", security(("bearer" = [])),
    params(("chat_id" = i64, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin of the group", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_chat(
    user: AuthUser,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
) -> Result<StatusCode> {
    let outcome = chats::delete(&state.db, user, chat_id).await?;
    state.push.deliver(outcome).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/chats/{chat_id}/members` — a page of the chat's members, longest-standing first;
/// members only.
#[utoipa::path(get, path = "/api/chats/{chat_id}/members", tag = "chats", security(("bearer" = [])),
    params(("chat_id" = i64, Path), OffsetQuery),
    responses(
        (status = 200, description = "A page of members", body = [MemberView]),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit, or `skip` over 10,000", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_members(
    user: AuthUser,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
    Query(page): Query<OffsetQuery>,
) -> Result<axum::Json<Vec<MemberView>>> {
    let (skip, limit) = page.window()?;
    chats::members(&state.db, user, chat_id, skip, limit)
        .await
        .map(axum::Json)
}

/// `POST /api/chats/{chat_id}/members` — add members to a group; its admins only. Users who
/// are members already are left as they are.
#[utoipa::path(post, path = "/api/chats/{chat_id}/members", tag = "chats", security(("bearer" = [])),
    params(("chat_id" = i64, Path)), request_body = MemberList,
    responses(
        (status = 200, description = "The chat with its members", body = ChatView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`not_admin`: not an admin; `blocked` or `not_allowed_to_add`: someone to add blocked the caller or does not let them add them (the whole request is refused; `user_ids` names them)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A direct chat", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown user ids, or over 1,000 members", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_members(
    user: AuthUser,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
    Json(body): Json<MemberList>,
) -> Result<axum::Json<ChatView>> {
    let outcome = chats::add_members(&state.db, user, chat_id, body).await?;
    Ok(axum::Json(state.push.deliver(outcome).await))
}

/// `DELETE /api/chats/{chat_id}/members/{user_id}` — an admin removes a member, or a member
/// leaves. The last admin to leave hands admin to the longest-standing member; the last member
/// to leave deletes the chat.
#[utoipa::path(delete, path = "/api/chats/{chat_id}/members/{user_id}", tag = "chats", security(("bearer" = [])),
    params(("chat_id" = i64, Path), ("user_id" = i64, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, and not leaving", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat or member", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A direct chat", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_member(
    user: AuthUser,
    State(state): State<AppState>,
    Path((chat_id, member_id)): Path<(i64, i64)>,
) -> Result<StatusCode> {
    let outcome = chats::remove_member(&state.db, user, chat_id, member_id).await?;
    state.push.deliver(outcome).await;
    Ok(StatusCode::NO_CONTENT)
}
