//! `/api/health`: whether the service can serve, for load balancers and monitors.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;

use crate::db;
use crate::error::Result;
use crate::state::AppState;
use crate::views::Health;

/// `GET /api/health` — 200 while the database is reachable, 503 `database_unavailable` (with
/// `Retry-After`) otherwise. No token needed; never cached.
#[utoipa::path(get, path = "/api/health", tag = "health",
    responses(
        (status = 200, description = "The service and its database answer", body = Health),
        (status = 503, description = "The database cannot be reached (`database_unavailable`); see Retry-After", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ))]
pub async fn health(State(state): State<AppState>) -> Result<impl IntoResponse> {
    db::ping(&state.db).await?;
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(Health::OK),
    ))
}
