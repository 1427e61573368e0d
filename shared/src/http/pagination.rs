//! `limit`, `cursor` and the seed's `skip`, shared by every list.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{Error, Result};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 100;

/// The response header that carries the cursor of the next page, when there is one.
pub const NEXT_CURSOR: HeaderName = HeaderName::from_static("x-next-cursor");

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–100 (default 50; larger values are capped at 100).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// The `X-Next-Cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items to skip (offset pagination, kept for older clients; prefer `cursor`).
    #[param(minimum = 0)]
    pub skip: Option<i64>,
}

/// A checked page request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub after: Option<i64>,
    pub skip: i64,
}

impl PageQuery {
    pub fn page(&self) -> Result<Page> {
        Ok(Page {
            limit: limit(self.limit)?,
            after: match self.cursor.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(c) => Some(c.parse::<i64>().map_err(|_| {
                    Error::validation("cursor", "is not a cursor this API gave out")
                })?),
            },
            skip: match self.skip {
                None => 0,
                Some(s) if s >= 0 => s,
                Some(_) => return Err(Error::validation("skip", "must not be negative")),
            },
        })
    }
}

/// Checks a `limit`: absent means 50, above 100 is capped at 100, below 1 is refused.
pub fn limit(raw: Option<i64>) -> Result<i64> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if n < 1 => Err(Error::validation("limit", "must be at least 1")),
        Some(n) => Ok(n.min(MAX_LIMIT)),
    }
}

/// Headers for a page of `len` items whose last item has key `last`: the next cursor when the
/// page is full.
pub fn next_page_headers(page: &Page, len: usize, last: Option<i64>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if len as i64 >= page.limit
        && let Some(last) = last
        && let Ok(value) = HeaderValue::from_str(&last.to_string())
    {
        headers.insert(NEXT_CURSOR, value);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_cap_and_refuse() {
        assert_eq!(limit(None).expect("default"), 50);
        assert_eq!(limit(Some(1000)).expect("capped"), 100);
        assert!(limit(Some(0)).is_err());
    }

    #[test]
    fn foreign_cursors_are_refused() {
        let q = PageQuery {
            cursor: Some("abc".into()),
            ..Default::default()
        };
        assert_eq!(q.page().expect_err("bad cursor").status(), 422);
    }
}
