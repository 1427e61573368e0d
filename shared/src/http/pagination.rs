//! `limit`, `cursor` and the seed's `skip` as query parameters, and the answers' paging
//! header; the checks themselves are `domain::Page`'s.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::domain::{Page, limit, skip_of};
use crate::error::Result;
use crate::service::Stored;
use crate::views::query_integer;

/// The response header that carries the cursor of the next page, when there is one.
pub const NEXT_CURSOR: HeaderName = HeaderName::from_static("x-next-cursor");

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–100 (default 50; larger values are capped at 100).
    #[serde(default, deserialize_with = "query_integer")]
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// The `X-Next-Cursor` of the previous page (an id); empty or left out: the first page.
    #[param(pattern = r"^[0-9]{0,19}$")]
    pub cursor: Option<String>,
    /// Items to skip, at most 10,000 (offset pagination, kept for older clients; prefer
    /// `cursor`).
    #[serde(default, deserialize_with = "query_integer")]
    #[param(minimum = 0, maximum = 10000)]
    pub skip: Option<i64>,
}

/// The paging of the chat list, whose cursor is a position in the order of activity.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChatPageQuery {
    /// Page size, 1–100 (default 50; larger values are capped at 100).
    #[serde(default, deserialize_with = "query_integer")]
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// The `X-Next-Cursor` of the previous page (`{micros}.{id}`); empty or left out: the
    /// first page.
    #[param(pattern = r"^([0-9]{1,19}\.[0-9]{1,19})?$")]
    pub cursor: Option<String>,
    /// Chats to skip, at most 10,000 (offset pagination, kept for older clients; prefer
    /// `cursor`).
    #[serde(default, deserialize_with = "query_integer")]
    #[param(minimum = 0, maximum = 10000)]
    pub skip: Option<i64>,
}

/// `limit` and `skip` alone, for short lists that have no cursor (a chat's members).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OffsetQuery {
    /// Page size, 1–100 (default 50; larger values are capped at 100).
    #[serde(default, deserialize_with = "query_integer")]
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// Items to skip, at most 10,000.
    #[serde(default, deserialize_with = "query_integer")]
    #[param(minimum = 0, maximum = 10000)]
    pub skip: Option<i64>,
}

impl OffsetQuery {
    /// The checked `(skip, limit)`.
    pub fn window(&self) -> Result<(i64, i64)> {
        Ok((skip_of(self.skip)?, limit(self.limit)?))
    }
}

impl PageQuery {
    pub fn page(&self) -> Result<Page> {
        Page::parse(self.limit, self.cursor.as_deref(), self.skip)
    }
}

/// Headers naming the next page, when there is one.
pub fn next_page_headers(next: Option<impl ToString>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(value) = next.and_then(|n| HeaderValue::from_str(&n.to_string()).ok()) {
        headers.insert(NEXT_CURSOR, value);
    }
    headers
}

/// 201 with what a call created, 200 with what it found stored already.
pub fn created_or_ok<T>(stored: Stored<T>) -> (StatusCode, axum::Json<T>) {
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(stored.item))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_cursors_are_refused() {
        let q = PageQuery {
            cursor: Some("abc".into()),
            ..Default::default()
        };
        assert_eq!(q.page().expect_err("bad cursor").status(), 422);
    }

    #[test]
    fn a_full_page_names_the_next() {
        assert_eq!(
            next_page_headers(Some(42))
                .get(NEXT_CURSOR)
                .map(|v| v.as_bytes()),
            Some(&b"42"[..])
        );
        assert!(next_page_headers(None::<i64>).is_empty());
    }
}
