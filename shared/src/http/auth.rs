//! `/api/auth`: register, log in, refresh, log out, and who am I.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{password, refresh};
use crate::db;
use crate::domain::{Email, Password, Username};
use crate::error::{Error, Result};
use crate::extract::{AuthUser, ClientIp, Json, JsonOrForm};
use crate::http::users::{UserView, own_user};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh_tokens))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me))
        .route("/api/openapi.json", get(crate::openapi::serve))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUser {
    /// 3–32 characters of `[A-Za-z0-9_.-]`, unique ignoring case.
    #[schema(example = "alice", pattern = r"^[A-Za-z0-9_.-]{3,32}$")]
    pub username: String,
    /// Unique ignoring case.
    #[schema(
        example = "alice@example.com",
        pattern = r"^[^@\s]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$",
        max_length = 254
    )]
    pub email: String,
    /// 8–256 characters.
    #[schema(
        example = "correct horse battery staple",
        min_length = 8,
        max_length = 256
    )]
    pub password: String,
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
    let mut errors = Vec::new();
    let username = Username::parse(body.username)
        .map_err(|e| errors.push(e))
        .ok();
    let email = Email::parse(body.email).map_err(|e| errors.push(e)).ok();
    let password = Password::parse(body.password)
        .map_err(|e| errors.push(e))
        .ok();
    let (Some(username), Some(email), Some(password)) = (username, email, password) else {
        return Err(merge_validation(errors));
    };
    let hash = password::hash(&password).await?;
    let user = db::users::insert(&state.db, username.as_str(), email.as_str(), &hash).await?;
    tracing::info!(user_id = user.id, "registered");
    Ok((StatusCode::CREATED, axum::Json(own_user(user))))
}

/// Folds several 422s into one that lists every field.
pub(crate) fn merge_validation(errors: Vec<Error>) -> Error {
    let mut fields = Vec::new();
    for e in errors {
        match e {
            Error::Validation(f) => fields.extend(f),
            other => return other,
        }
    }
    Error::Validation(fields)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginForm {
    /// Username or email.
    #[schema(example = "alice")]
    pub username: String,
    #[schema(example = "correct horse battery staple")]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    /// Always `bearer`.
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Lifetime of the access token in seconds.
    #[schema(example = 900)]
    pub expires_in: u64,
    /// Opaque; exchange it at `/api/auth/refresh`. Each use rotates it.
    pub refresh_token: String,
}

async fn issue_pair(state: &AppState, user_id: i64, family: Option<i64>) -> Result<TokenPair> {
    let refresh_token = refresh::generate()?;
    let expires_at = Utc::now()
        + chrono::Duration::from_std(state.config.refresh_token_ttl).map_err(Error::internal)?;
    let family = db::refresh_tokens::insert(
        &state.db,
        user_id,
        family,
        &refresh::hash(&refresh_token),
        expires_at,
    )
    .await?;
    Ok(TokenPair {
        access_token: state.keys.issue_access(user_id, Some(family))?,
        token_type: "bearer",
        expires_in: state.keys.ttl_secs(),
        refresh_token,
    })
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
    let limits = &state.config.limits;
    let login = form.username.trim().to_lowercase();
    // No account is named like this (emails stop at 254 bytes; text cannot hold NUL): such a
    // login fails like any other, without reaching a query or a rate-limit key.
    let plausible = !login.is_empty() && login.len() <= 254 && !login.contains('\0');
    let login = if plausible { login } else { String::new() };
    let account_key = format!("account:{login}");
    let address_key = format!("address:{ip}");
    for (key, max) in [
        (&account_key, limits.login_failures_per_account),
        (&address_key, limits.login_failures_per_address),
    ] {
        if let Some(retry_after) =
            db::login_failures::locked_for(&state.db, key, max, limits.login_window).await?
        {
            tracing::warn!(retry_after, "login refused: too many failures");
            return Err(Error::TooManyRequests { retry_after });
        }
    }
    let account = match plausible {
        true => db::users::credentials(&state.db, &login).await?,
        false => None,
    };
    let (user_id, hash) = match account {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    let ok = password::verify(form.password, hash).await?;
    let Some(user_id) = user_id.filter(|_| ok) else {
        db::login_failures::record(&state.db, &account_key, limits.login_window).await?;
        db::login_failures::record(&state.db, &address_key, limits.login_window).await?;
        tracing::info!("login failed");
        return Err(Error::Unauthorized(
            "invalid_credentials",
            "incorrect username or password",
        ));
    };
    db::login_failures::clear(&state.db, &account_key).await?;
    db::users::touch_last_seen(&state.db, user_id).await?;
    tracing::info!(user_id, "logged in");
    Ok(axum::Json(issue_pair(&state, user_id, None).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

fn invalid_refresh() -> Error {
    Error::Unauthorized("invalid_refresh_token", "the refresh token is not valid")
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
    let hash = refresh::hash(body.refresh_token.trim());
    let mut tx = state.db.begin().await?;
    let Some(row) = db::refresh_tokens::find_for_update(&mut tx, &hash).await? else {
        return Err(invalid_refresh());
    };
    if row.revoked_at.is_some() {
        return Err(invalid_refresh());
    }
    if row.replaced_at.is_some() {
        db::refresh_tokens::revoke_family(&mut *tx, row.family_id).await?;
        tx.commit().await?;
        tracing::warn!(
            user_id = row.user_id,
            family = row.family_id,
            "refresh token reused; session revoked"
        );
        return Err(Error::Unauthorized(
            "refresh_token_reused",
            "the refresh token was already used; the session has been revoked",
        ));
    }
    if row.expires_at <= Utc::now() {
        return Err(Error::Unauthorized(
            "refresh_token_expired",
            "the refresh token has expired",
        ));
    }
    db::refresh_tokens::mark_replaced(&mut *tx, row.id).await?;
    tx.commit().await?;
    Ok(axum::Json(
        issue_pair(&state, row.user_id, Some(row.family_id)).await?,
    ))
}

/// `POST /api/auth/logout` — revoke the session of a refresh token. Unknown tokens are
/// accepted too: the outcome, no usable session, is the same.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "The session is revoked")))]
pub async fn logout(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<StatusCode> {
    let hash = refresh::hash(body.refresh_token.trim());
    if let Some(family) = db::refresh_tokens::find_family(&state.db, &hash).await? {
        db::refresh_tokens::revoke_family(&state.db, family).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/auth/me` — the caller's own user, email included.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(user: AuthUser, State(state): State<AppState>) -> Result<axum::Json<UserView>> {
    crate::http::users::load_own(&state, user)
        .await
        .map(axum::Json)
}
