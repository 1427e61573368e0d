//! `/api/auth`: register, log in, refresh, log out, and who am I.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::error::Result;
use crate::http::extract::{AuthUser, ClientIp, Json, JsonOrForm};
use crate::service::auth;
use crate::state::AppState;
use crate::views::{LoginForm, NewUser, RefreshRequest, TokenPair, UserView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh_tokens))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me))
}

/// `POST /api/auth/register` — create an account.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = NewUser,
    responses(
        (status = 201, description = "The new account", body = UserView),
        (status = 400, description = "Malformed JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username or email taken", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn register(
    State(state): State<AppState>,
    Json(body): Json<NewUser>,
) -> Result<impl IntoResponse> {
    let user = auth::register(&state.db, body).await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// `POST /api/auth/login` — exchange a username (or email) and password for tokens.
///
/// Takes the OAuth2 password form (`application/x-www-form-urlencoded`) or the same fields as
/// JSON. Repeated failures for one account or from one address are answered with 429.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth",
    request_body(content(
        (LoginForm = "application/json"),
        (LoginForm = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Tokens", body = TokenPair),
        (status = 401, description = "Wrong username or password", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failures; see Retry-After", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonOrForm(form): JsonOrForm<LoginForm>,
) -> Result<axum::Json<TokenPair>> {
    let pair = auth::login(&state.db, &state.keys, &state.config, &ip, form).await?;
    Ok(axum::Json(pair))
}

/// `POST /api/auth/refresh` — rotate a refresh token into a new pair.
///
/// A token works once. Presenting one that was already rotated revokes its whole family: a
/// stolen token stops working for the thief and the victim alike.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair", body = TokenPair),
        (status = 401, description = "Unknown, expired, revoked or reused token", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh_tokens(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<axum::Json<TokenPair>> {
    let pair = auth::refresh(&state.db, &state.keys, &state.config, &body.refresh_token).await?;
    Ok(axum::Json(pair))
}

/// `POST /api/auth/logout` — revoke the session of a refresh token. Unknown tokens are
/// accepted too: the outcome, no usable session, is the same.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "The session is revoked")))]
pub async fn logout(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<StatusCode> {
    auth::logout(&state.db, &body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/auth/me` — the caller's own user, email included.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(user: AuthUser, State(state): State<AppState>) -> Result<axum::Json<UserView>> {
    auth::me(&state.db, user).await.map(axum::Json)
}
