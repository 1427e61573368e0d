//! `/api/auth`: register, log in, refresh, log out, and who am I.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::error::Result;
use crate::http::extract::{ClientIp, Json, JsonOrForm, TokenCaller};
use crate::service::{auth, sessions};
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

/// An answer that carries tokens: never stored by a cache on the way (RFC 6749 §5.1).
fn tokens(pair: TokenPair) -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        axum::Json(pair),
    )
}

/// `POST /api/auth/register` — create an account. Registrations are limited per client address.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = NewUser,
    responses(
        (status = 201, description = "The new account", body = UserView),
        (status = 400, description = "Malformed JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username or email taken", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many registrations from this address; see Retry-After (`too_many_requests`)", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ))]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<NewUser>,
) -> Result<impl IntoResponse> {
    let user = auth::register(&state.db, &state.config, &ip, body).await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// `POST /api/auth/login` — exchange a username (or email) and password for tokens.
///
/// Takes the OAuth2 password form (`application/x-www-form-urlencoded` or
/// `multipart/form-data`, as FastAPI's form reads it; other form fields such as `grant_type`
/// and `scope` are ignored) or the same fields as JSON. Each login starts a session of its own; the access token names it (`sid`). Attempts
/// are counted per account and per address before the password is checked; once a budget of
/// failures is spent the answer is 429. The answer carries `Cache-Control: no-store`.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth",
    request_body(content(
        (LoginForm = "application/json"),
        (LoginForm = "application/x-www-form-urlencoded"),
        (LoginForm = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "Tokens", body = TokenPair,
            headers(("cache-control" = String, description = "`no-store`"))),
        (status = 400, description = "Malformed JSON (`malformed_json`) or multipart body (`malformed_multipart`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong username or password", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failures; see Retry-After", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonOrForm(form): JsonOrForm<LoginForm>,
) -> Result<impl IntoResponse> {
    let pair = auth::login(&state.db, &state.keys, &state.config, &ip, form).await?;
    Ok(tokens(pair))
}

/// `POST /api/auth/refresh` — rotate a refresh token into a new pair.
///
/// A token works once. Presenting one that was already rotated ends its session: its tokens
/// stop working for the thief and the victim alike, and its WebSockets are closed. A session
/// ends at the latest `SESSION_TTL_SECS` after its login, however often it is refreshed. The
/// answer carries `Cache-Control: no-store`.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair", body = TokenPair,
            headers(("cache-control" = String, description = "`no-store`"))),
        (status = 401, description = "Unknown, expired or revoked token (`invalid_refresh_token`, `refresh_token_expired`), a reused one (`refresh_token_reused`: the session is ended), or a session past its lifetime (`session_expired`)", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh_tokens(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<impl IntoResponse> {
    let outcome =
        sessions::refresh(&state.db, &state.keys, &state.config, &body.refresh_token).await?;
    let pair = state.push.deliver(outcome).await?;
    Ok(tokens(pair))
}

/// `POST /api/auth/logout` — end the session of a refresh token: from this answer on, its
/// access tokens are refused (401 `session_ended`) and its WebSockets are closed. Unknown tokens
/// are accepted too: the outcome, no usable session, is the same.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "The session is ended")))]
pub async fn logout(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<StatusCode> {
    let outcome = sessions::logout(&state.db, &body.refresh_token).await?;
    state.push.deliver(outcome).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/auth/me` — the caller's own user, email included.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
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
