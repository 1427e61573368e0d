//! The change feed on the wire: `GET /api/sync`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::views::events::Event;
use crate::views::number::query_integer;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// The `next` of an earlier answer; left out: no changes, only the current token (take it
    /// before loading the chats, then follow it).
    #[param(max_length = 16384, pattern = r"^[A-Za-z0-9_-]*$")]
    pub since: Option<String>,
    /// Changes per page, 1–500 (default 100; larger values are capped at 500). A page can hold
    /// a few more, to finish a chat's changes up to its last one there.
    #[serde(default, deserialize_with = "query_integer")]
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// A page of the feed.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SyncPage {
    /// The changes, each as its WebSocket event (with its `pos`), showing what it changed as it
    /// is now: each chat's in `pos` order; chats interleaved in the order they changed.
    pub changes: Vec<Event>,
    /// Where to continue: pass it as `since` (now, while `has_more`, or on the next
    /// reconnect). Opaque.
    pub next: String,
    /// More changes are waiting: ask again at once with `next`.
    pub has_more: bool,
}
