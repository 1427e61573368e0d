//! `/api/users`: profiles, search, presence.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::Result;
use crate::http::extract::{AuthUser, ClientIp, Json, JsonOrEmpty, Path, Query, TokenCaller};
use crate::http::pagination::{PageQuery, next_page_headers};
use crate::service::{auth, consent, presence, users};
use crate::state::AppState;
use crate::views::{AccountDeletion, ProfileUpdate, StatusUpdate, StatusView, UserView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/users", get(list_users))
        .route("/api/users/me", get(me))
        .route("/api/users/me/blocks", get(list_blocks))
        .route(
            "/api/users/{user_id}/block",
            post(block_user).delete(unblock_user),
        )
        .route(
            "/api/users/{user_id}",
            get(get_user).put(update_user).delete(delete_user),
        )
        .route(
            "/api/users/{user_id}/status",
            get(get_status).put(put_status),
        )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserSearch {
    /// Only users whose username starts with this, ignoring case.
    pub q: Option<String>,
}

/// `GET /api/users` — list or search users, by id, a page at a time.
#[utoipa::path(get, path = "/api/users", tag = "users", security(("bearer" = [])),
    params(UserSearch, PageQuery),
    responses(
        (status = 200, description = "A page of users; `X-Next-Cursor` names the next page when there is one", body = [UserView],
            headers(("x-next-cursor" = String, description = "Pass as `cursor` for the next page"))),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor, or `skip` over 10,000", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_users(
    _caller: AuthUser,
    State(state): State<AppState>,
    Query(search): Query<UserSearch>,
    Query(page): Query<PageQuery>,
) -> Result<impl IntoResponse> {
    let page = page.page()?;
    let (users, next) = users::list(&state.db, search.q.as_deref(), page).await?;
    Ok((next_page_headers(next), axum::Json(users)))
}

/// `GET /api/users/me` — the caller's own user, email included.
#[utoipa::path(get, path = "/api/users/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserView),
        (status = 401, description = "Missing or invalid token, or its session ended (`session_ended`)", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(
    TokenCaller(user): TokenCaller,
    State(state): State<AppState>,
) -> Result<axum::Json<UserView>> {
    auth::me(&state.db, user).await.map(axum::Json)
}

/// `GET /api/users/{user_id}` — one user's profile.
#[utoipa::path(get, path = "/api/users/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = i64, Path)),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_user(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(user_id): Path<i64>,
) -> Result<axum::Json<UserView>> {
    users::find(&state.db, caller, user_id)
        .await
        .map(axum::Json)
}

/// `PUT /api/users/{user_id}` — change one's own profile, and who may add one to groups
/// (`add_to_groups`). Changing the password or the email takes `current_password`; changing the
/// password ends every other session and closes their WebSockets.
#[utoipa::path(put, path = "/api/users/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = i64, Path)), request_body = ProfileUpdate,
    responses(
        (status = 200, description = "The updated user", body = UserView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user (`not_yourself`), or a wrong current password (`wrong_password`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username or email taken", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, or `current_password` missing for a new password or email", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many password attempts for this account or address; see Retry-After", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ))]
pub async fn update_user(
    caller: AuthUser,
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(user_id): Path<i64>,
    Json(body): Json<ProfileUpdate>,
) -> Result<axum::Json<UserView>> {
    let outcome =
        users::update(&state.db, &state.config.limits, &ip, caller, user_id, body).await?;
    Ok(axum::Json(state.push.deliver(outcome).await))
}

/// `DELETE /api/users/{user_id}` — delete one's own account, given `{current_password}`.
/// Sessions, connections (closed) and memberships go; messages stay, shown as from a deleted
/// account.
#[utoipa::path(delete, path = "/api/users/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = i64, Path)), request_body = AccountDeletion,
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user (`not_yourself`), or a wrong current password (`wrong_password`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`current_password` missing", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many password attempts for this account or address; see Retry-After", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ))]
pub async fn delete_user(
    caller: AuthUser,
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(user_id): Path<i64>,
    JsonOrEmpty(body): JsonOrEmpty<AccountDeletion>,
) -> Result<StatusCode> {
    let outcome =
        users::delete(&state.db, &state.config.limits, &ip, caller, user_id, body).await?;
    state.push.deliver(outcome).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/users/{user_id}/status` — presence: online while a WebSocket is open, unless the
/// user chose away or offline.
#[utoipa::path(get, path = "/api/users/{user_id}/status", tag = "users", security(("bearer" = [])),
    params(("user_id" = i64, Path)),
    responses(
        (status = 200, description = "The user's presence", body = StatusView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_status(
    _caller: AuthUser,
    State(state): State<AppState>,
    Path(user_id): Path<i64>,
) -> Result<axum::Json<StatusView>> {
    presence::get(&state.db, user_id).await.map(axum::Json)
}

/// `PUT /api/users/{user_id}/status` — choose one's presence.
#[utoipa::path(put, path = "/api/users/{user_id}/status", tag = "users", security(("bearer" = [])),
    params(("user_id" = i64, Path)), request_body = StatusUpdate,
    responses(
        (status = 200, description = "The resulting presence", body = StatusView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown status", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_status(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(user_id): Path<i64>,
    Json(body): Json<StatusUpdate>,
) -> Result<axum::Json<StatusView>> {
    let outcome = presence::set(&state.db, caller, user_id, body).await?;
    Ok(axum::Json(state.push.deliver(outcome).await))
}

/// `GET /api/users/me/blocks` — the users the caller blocked, by id, a page at a time.
#[utoipa::path(get, path = "/api/users/me/blocks", tag = "users", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of blocked users; `X-Next-Cursor` names the next page when there is one", body = [UserView],
            headers(("x-next-cursor" = String, description = "Pass as `cursor` for the next page"))),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor, or `skip` over 10,000", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_blocks(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(page): Query<PageQuery>,
) -> Result<impl IntoResponse> {
    let page = page.page()?;
    let (users, next) = consent::blocks(&state.db, caller, page).await?;
    Ok((next_page_headers(next), axum::Json(users)))
}

/// `POST /api/users/{user_id}/block` — block a user: they can no longer open a direct chat
/// with the caller, add the caller to a group, or reach the caller with typing. Blocking again
/// changes nothing.
#[utoipa::path(post, path = "/api/users/{user_id}/block", tag = "users", security(("bearer" = [])),
    params(("user_id" = i64, Path)),
    responses(
        (status = 204, description = "Blocked (or already blocked)"),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller themselves (`cannot_block_self`)", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn block_user(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(user_id): Path<i64>,
) -> Result<StatusCode> {
    consent::block(&state.db, caller, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/users/{user_id}/block` — lift a block; lifting one that is not there changes
/// nothing.
#[utoipa::path(delete, path = "/api/users/{user_id}/block", tag = "users", security(("bearer" = [])),
    params(("user_id" = i64, Path)),
    responses(
        (status = 204, description = "Not blocked (any more)"),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller themselves (`cannot_block_self`)", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn unblock_user(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(user_id): Path<i64>,
) -> Result<StatusCode> {
    consent::unblock(&state.db, caller, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
