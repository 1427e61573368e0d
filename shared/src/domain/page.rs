//! Checked paging: `limit`, `skip` and the cursors this API hands out.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 100;
/// The largest `skip`: an offset makes the database walk and drop every skipped row, so deep
/// pages go through cursors instead.
pub const MAX_SKIP: i64 = 10_000;

/// A checked page request over a list keyed by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub after: Option<i64>,
    pub skip: i64,
}

impl Page {
    /// Checks the raw `limit`, `cursor` (an id) and `skip` of a request.
    pub fn parse(limit_raw: Option<i64>, cursor: Option<&str>, skip: Option<i64>) -> Result<Self> {
        Ok(Page {
            limit: limit(limit_raw)?,
            after: match cursor.map(str::trim) {
                None | Some("") => None,
                Some(c) => Some(c.parse::<i64>().map_err(|_| foreign_cursor())?),
            },
            skip: skip_of(skip)?,
        })
    }

    /// The cursor of the page after one of `len` items whose last item has key `last`, when
    /// the page is full.
    pub fn next(&self, len: usize, last: Option<i64>) -> Option<String> {
        last.filter(|_| len as i64 >= self.limit)
            .map(|id| id.to_string())
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

/// Checks a `skip`: absent means 0, negative or over [`MAX_SKIP`] is refused.
pub fn skip_of(raw: Option<i64>) -> Result<i64> {
    match raw {
        None => Ok(0),
        Some(s) if s < 0 => Err(Error::validation("skip", "must not be negative")),
        Some(s) if s > MAX_SKIP => Err(Error::validation(
            "skip",
            format!("must be at most {MAX_SKIP}; page further with `cursor`"),
        )),
        Some(s) => Ok(s),
    }
}

fn foreign_cursor() -> Error {
    Error::validation("cursor", "is not a cursor this API gave out")
}

/// The position in a list of chats ordered by activity: `"{micros}.{id}"` of the last chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatCursor {
    pub at: DateTime<Utc>,
    pub id: i64,
}

impl ChatCursor {
    pub fn parse(raw: Option<&str>) -> Result<Option<Self>> {
        let Some(raw) = raw.map(str::trim).filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        let (micros, id) = raw.split_once('.').ok_or_else(foreign_cursor)?;
        let micros: i64 = micros.parse().map_err(|_| foreign_cursor())?;
        let id: i64 = id.parse().map_err(|_| foreign_cursor())?;
        let at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(foreign_cursor)?;
        Ok(Some(Self { at, id }))
    }
}

impl std::fmt::Display for ChatCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.at.timestamp_micros(), self.id)
    }
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
    fn skips_are_bounded() {
        assert_eq!(skip_of(None).expect("default"), 0);
        assert_eq!(skip_of(Some(MAX_SKIP)).expect("at the cap"), MAX_SKIP);
        assert_eq!(skip_of(Some(MAX_SKIP + 1)).expect_err("over").status(), 422);
        assert!(skip_of(Some(-1)).is_err());
    }

    #[test]
    fn foreign_cursors_are_refused() {
        let err = Page::parse(None, Some("abc"), None).expect_err("bad cursor");
        assert_eq!(err.status(), 422);
        assert!(ChatCursor::parse(Some("12")).is_err());
    }

    #[test]
    fn chat_cursors_round_trip() {
        let at = DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).expect("time");
        let cursor = ChatCursor { at, id: 9 };
        let parsed = ChatCursor::parse(Some(&cursor.to_string())).expect("parses");
        assert_eq!(parsed, Some(cursor));
    }
}
