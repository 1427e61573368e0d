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
            after: match cursor {
                None | Some("") => None,
                Some(c) => Some(cursor_number(c)?),
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

/// A number within a cursor: 1–19 ASCII digits (the documented pattern). One beyond every
/// id or time reads as the largest, past everything.
fn cursor_number(text: &str) -> Result<i64> {
    if !(1..=19).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(foreign_cursor());
    }
    let n: u64 = text.parse().map_err(|_| foreign_cursor())?;
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The position in a list of chats ordered by activity: `"{micros}.{id}"` of the last chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatCursor {
    pub at: DateTime<Utc>,
    pub id: i64,
}

impl ChatCursor {
    pub fn parse(raw: Option<&str>) -> Result<Option<Self>> {
        let Some(raw) = raw.filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        let (micros, id) = raw.split_once('.').ok_or_else(foreign_cursor)?;
        let micros = cursor_number(micros)?;
        let id = cursor_number(id)?;
        let at = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC);
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
        for shape in [" 12", "-12", "+12", "1e3", "12345678901234567890"] {
            assert!(Page::parse(None, Some(shape), None).is_err(), "{shape:?}");
        }
        for shape in ["1.2.3", "-1.2", "1.", ".2", " 1.2"] {
            assert!(ChatCursor::parse(Some(shape)).is_err(), "{shape:?}");
        }
    }

    #[test]
    fn cursors_of_the_documented_shape_beyond_every_row_read_as_the_end() {
        let page = Page::parse(None, Some("9999999999999999999"), None).expect("19 digits");
        assert_eq!(page.after, Some(i64::MAX));
        let far = ChatCursor::parse(Some("9999999999999999999.9999999999999999999"))
            .expect("parses")
            .expect("a cursor");
        assert_eq!((far.at, far.id), (DateTime::<Utc>::MAX_UTC, i64::MAX));
    }

    #[test]
    fn chat_cursors_round_trip() {
        let at = DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).expect("time");
        let cursor = ChatCursor { at, id: 9 };
        let parsed = ChatCursor::parse(Some(&cursor.to_string())).expect("parses");
        assert_eq!(parsed, Some(cursor));
    }
}
