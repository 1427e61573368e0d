//! `/api/users`: profiles, search, presence.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::password;
use crate::db;
use crate::db::users::{ProfileChange, UserRow};
use crate::domain::{DisplayName, Email, Password, Status, Username};
use crate::error::{Error, Result};
use crate::extract::{AuthUser, Json, Path, Query};
use crate::http::auth::merge_validation;
use crate::http::pagination::{PageQuery, next_page_headers};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/users", get(list_users))
        .route("/api/users/me", get(me))
        .route(
            "/api/users/{user_id}",
            get(get_user).put(update_user).delete(delete_user),
        )
        .route(
            "/api/users/{user_id}/status",
            get(get_status).put(put_status),
        )
}

/// A user. `email` appears only in the caller's own user.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UserView {
    #[schema(example = 1)]
    pub id: i64,
    #[schema(example = "alice")]
    pub username: String,
    /// The name to show; the username until the user sets one.
    #[schema(example = "Alice")]
    pub display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
    pub status: Status,
}

fn status_of(raw: &str) -> Status {
    match raw {
        "online" => Status::Online,
        "away" => Status::Away,
        _ => Status::Offline,
    }
}

impl UserView {
    pub fn public(row: UserRow) -> Self {
        Self {
            id: row.id,
            display_name: row.display_name.unwrap_or_else(|| row.username.clone()),
            username: row.username,
            email: None,
            created_at: row.created_at,
            last_seen: row.last_seen,
            status: status_of(&row.status),
        }
    }
}

pub fn own_user(row: UserRow) -> UserView {
    let email = row.email.clone();
    UserView {
        email: Some(email),
        ..UserView::public(row)
    }
}

/// The caller's own row; a token for an account deleted since is no longer valid.
pub async fn load_own(state: &AppState, user: AuthUser) -> Result<UserView> {
    db::users::find(&state.db, user.id)
        .await?
        .map(own_user)
        .ok_or(Error::Unauthorized(
            "account_deleted",
            "this account no longer exists",
        ))
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
        (status = 422, description = "Bad limit or cursor", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_users(
    _user: AuthUser,
    State(state): State<AppState>,
    Query(search): Query<UserSearch>,
    Query(page): Query<PageQuery>,
) -> Result<impl IntoResponse> {
    let page = page.page()?;
    let q = search.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 32 || q.contains('\0')) {
        return Err(Error::validation(
            "q",
            "must be at most 32 characters, without NUL",
        ));
    }
    let rows = db::users::list(&state.db, q, page.after, page.skip, page.limit).await?;
    let headers = next_page_headers(&page, rows.len(), rows.last().map(|r| r.id));
    let users: Vec<UserView> = rows.into_iter().map(UserView::public).collect();
    Ok((headers, axum::Json(users)))
}

/// `GET /api/users/me` — the caller's own user, email included.
#[utoipa::path(get, path = "/api/users/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(user: AuthUser, State(state): State<AppState>) -> Result<axum::Json<UserView>> {
    load_own(&state, user).await.map(axum::Json)
}

async fn find_visible(state: &AppState, caller: AuthUser, id: i64) -> Result<UserView> {
    let row = db::users::find(&state.db, id)
        .await?
        .ok_or(Error::NotFound("user not found"))?;
    Ok(if id == caller.id {
        own_user(row)
    } else {
        UserView::public(row)
    })
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
    find_visible(&state, caller, user_id).await.map(axum::Json)
}

/// Any subset of the fields; a new `password` needs `current_password`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// 3–32 characters of `[A-Za-z0-9_.-]`, unique ignoring case.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{3,32}$")]
    pub username: Option<String>,
    #[schema(
        pattern = r"^[^@\s]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$",
        max_length = 254
    )]
    pub email: Option<String>,
    /// 1–64 characters, not only white space.
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    pub display_name: Option<String>,
    /// 8–256 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub password: Option<String>,
    /// Required with `password`.
    pub current_password: Option<String>,
}

fn only_self(caller: AuthUser, user_id: i64, what: &'static str) -> Result<()> {
    if caller.id != user_id {
        return Err(Error::Forbidden("not_yourself", what));
    }
    Ok(())
}

/// `PUT /api/users/{user_id}` — change one's own profile. Changing the password ends every
/// other session.
#[utoipa::path(put, path = "/api/users/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = i64, Path)), request_body = ProfileUpdate,
    responses(
        (status = 200, description = "The updated user", body = UserView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user, or a wrong current password", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username or email taken", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_user(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(user_id): Path<i64>,
    Json(body): Json<ProfileUpdate>,
) -> Result<axum::Json<UserView>> {
    if db::users::find(&state.db, user_id).await?.is_none() {
        return Err(Error::NotFound("user not found"));
    }
    only_self(caller, user_id, "you can only change your own profile")?;
    let mut errors = Vec::new();
    let username = body
        .username
        .map(Username::parse)
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let email = body
        .email
        .map(Email::parse)
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let display_name = body
        .display_name
        .map(DisplayName::parse)
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let new_password = body
        .password
        .map(Password::parse)
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    if new_password.is_some() && body.current_password.is_none() {
        errors.push(Error::validation(
            "current_password",
            "is required to change the password",
        ));
    }
    if !errors.is_empty() {
        return Err(merge_validation(errors));
    }
    let new_hash = match (&new_password, body.current_password) {
        (Some(new_password), Some(current)) => {
            let stored = db::users::password_hash(&state.db, user_id).await?;
            if !password::verify(current, stored).await? {
                return Err(Error::Forbidden(
                    "wrong_password",
                    "the current password is not correct",
                ));
            }
            Some(password::hash(new_password).await?)
        }
        _ => None,
    };
    let mut tx = state.db.begin().await?;
    let change = ProfileChange {
        username: username.as_ref().map(Username::as_str),
        email: email.as_ref().map(Email::as_str),
        display_name: display_name.as_ref().map(DisplayName::as_str),
        password_hash: new_hash.as_deref(),
    };
    let row = db::users::update(&mut *tx, user_id, change)
        .await?
        .ok_or(Error::NotFound("user not found"))?;
    if new_hash.is_some() {
        db::refresh_tokens::revoke_user_except(&mut *tx, user_id, caller.session).await?;
    }
    tx.commit().await?;
    Ok(axum::Json(own_user(row)))
}

/// `DELETE /api/users/{user_id}` — delete one's own account. Sessions, connections and
/// memberships go; messages stay, shown as from a deleted account.
#[utoipa::path(delete, path = "/api/users/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = i64, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_user(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(user_id): Path<i64>,
) -> Result<StatusCode> {
    if db::users::find(&state.db, user_id).await?.is_none() {
        return Err(Error::NotFound("user not found"));
    }
    only_self(caller, user_id, "you can only delete your own account")?;
    let connections = db::connections::of_user(&state.db, user_id).await?;
    let chats = db::members::chats_of(&state.db, user_id).await?;
    let mut tx = state.db.begin().await?;
    // Leave every group the way a member would: admin passes on, empty groups go.
    for chat_id in db::members::groups_where_sole_admin(&mut *tx, user_id).await? {
        crate::http::chats::remove_from_group(&mut tx, chat_id, user_id).await?;
    }
    db::chats::delete_groups_only_member(&mut *tx, user_id).await?;
    db::users::delete(&mut *tx, user_id).await?;
    tx.commit().await?;
    tracing::info!(user_id, "account deleted");
    state.push.close(&connections).await;
    for chat_id in chats {
        let event = crate::realtime::Event::MemberRemoved {
            chat_id,
            user_id,
            new_admin: None,
        };
        state.push.to_chat(chat_id, &event).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    pub user_id: i64,
    pub status: Status,
    pub last_seen: Option<DateTime<Utc>>,
}

impl From<UserRow> for StatusView {
    fn from(row: UserRow) -> Self {
        Self {
            user_id: row.id,
            status: status_of(&row.status),
            last_seen: row.last_seen,
        }
    }
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
    let row = db::users::find(&state.db, user_id)
        .await?
        .ok_or(Error::NotFound("user not found"))?;
    Ok(axum::Json(row.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusUpdate {
    /// `online` clears an earlier choice; `away` and `offline` (invisible) hold until changed.
    pub status: Status,
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
    if db::users::find(&state.db, user_id).await?.is_none() {
        return Err(Error::NotFound("user not found"));
    }
    only_self(caller, user_id, "you can only set your own status")?;
    let choice = match body.status {
        Status::Online => "auto",
        Status::Away => "away",
        Status::Offline => "offline",
    };
    let row = db::users::set_status_choice(&state.db, user_id, choice)
        .await?
        .ok_or(Error::NotFound("user not found"))?;
    let view = StatusView::from(row);
    let event = crate::realtime::Event::UserStatus {
        user_id,
        status: view.status,
        last_seen: view.last_seen,
    };
    state.push.to_contacts(user_id, None, &event).await;
    Ok(axum::Json(view))
}
