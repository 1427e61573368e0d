//! `/api/sync`: the change feed of the caller's chats.

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::error::{Error, Result};
use crate::http::extract::{AuthUser, Query};
use crate::service::sync::{self, DEFAULT_LIMIT, MAX_LIMIT};
use crate::state::AppState;
use crate::views::{SyncPage, SyncQuery};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/sync", get(feed))
}

/// `GET /api/sync` — every change of the caller's chats since a token: messages created,
/// edited and deleted, read cursors, members added and removed, chats created, renamed and
/// deleted, the caller's own changes from other devices included.
///
/// Take a token (no `since`) before loading the chats, and start each loaded chat from its
/// `last_pos`. On every reconnect, and when a live event skips a position, ask with the last
/// `next` until `has_more` is false, applying each change whose `pos` is above the highest
/// applied for its chat; between syncs, apply a live event only when its `pos` is the next one
/// for its chat (events can arrive out of order; the feed brings any that skip). A token older
/// than the change log's retention (30 days unless configured) is answered 410
/// `sync_expired`: load the chats again and start over.
#[utoipa::path(get, path = "/api/sync", tag = "sync", security(("bearer" = [])),
    params(SyncQuery),
    responses(
        (status = 200, description = "A page of changes and the token to continue from", body = SyncPage),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 410, description = "`sync_expired`: the token is older than the change log's retention; load the chats again", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a token from this endpoint, or a bad limit", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn feed(
    user: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<SyncQuery>,
) -> Result<axum::Json<SyncPage>> {
    let limit = match query.limit {
        None => DEFAULT_LIMIT,
        Some(n) if n < 1 => return Err(Error::validation("limit", "must be at least 1")),
        Some(n) => n.min(MAX_LIMIT),
    };
    let retention = state.config.limits.sync_retention;
    sync::feed(&state.db, retention, user, query.since.as_deref(), limit)
        .await
        .map(axum::Json)
}
