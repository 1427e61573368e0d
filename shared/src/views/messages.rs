//! Messages and read state on the wire.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::db::messages::MessageRow;
use crate::views::number::query_integer;

/// The author of a message, as shown beside it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Author {
    pub id: i64,
    pub username: String,
}

/// A message. Deleted messages stay as tombstones (`deleted: true`, empty `content`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: i64,
    pub chat_id: i64,
    /// `null` once the author's account is deleted.
    pub user_id: Option<i64>,
    /// Position in the chat: 1, 2, 3, … with no gaps.
    pub seq: i64,
    pub content: String,
    pub client_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    /// Every other member has read it.
    pub is_read: bool,
    /// `null` once the author's account is deleted.
    pub user: Option<Author>,
}

impl MessageView {
    pub fn new(row: MessageRow, is_read: bool) -> Self {
        let user = match (row.user_id, row.username) {
            (Some(id), Some(username)) => Some(Author { id, username }),
            _ => None,
        };
        Self {
            id: row.id,
            chat_id: row.chat_id,
            user_id: row.user_id,
            seq: row.seq,
            content: row.content,
            client_id: row.client_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
            edited_at: row.edited_at,
            deleted: row.deleted_at.is_some(),
            is_read,
            user,
        }
    }
}

/// Decides `is_read` for many messages from the members' read cursors in one pass: a message
/// is read when the lowest cursor among the *other* members has reached it.
pub struct ReadCursors {
    lowest: Option<(i64, i64)>,
    second: Option<i64>,
}

impl ReadCursors {
    /// `cursors` holds `(user_id, last_read_seq)` for every member.
    pub fn new(cursors: impl IntoIterator<Item = (i64, i64)>) -> Self {
        let mut lowest: Option<(i64, i64)> = None;
        let mut second: Option<i64> = None;
        for (user, seq) in cursors {
            match lowest {
                Some((_, low)) if seq >= low => {
                    second = Some(second.map_or(seq, |s| s.min(seq)));
                }
                _ => {
                    if let Some((_, low)) = lowest {
                        second = Some(second.map_or(low, |s| s.min(low)));
                    }
                    lowest = Some((user, seq));
                }
            }
        }
        Self { lowest, second }
    }

    pub fn is_read(&self, seq: i64, author: Option<i64>) -> bool {
        let others_low = match self.lowest {
            None => return true,
            Some((user, _)) if Some(user) == author => match self.second {
                None => return true,
                Some(s) => s,
            },
            Some((_, low)) => low,
        };
        others_low >= seq
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// Page size, 1–100 (default 50; larger values are capped at 100).
    #[serde(default, deserialize_with = "query_integer")]
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// Only messages with a smaller `seq`: alone, newest first (the next older page); with
    /// `after_seq`, the messages between the two, oldest first.
    #[serde(default, deserialize_with = "query_integer")]
    pub before_seq: Option<i64>,
    /// Oldest first, only messages with a larger `seq` (catching up after a reconnect).
    #[serde(default, deserialize_with = "query_integer")]
    #[param(minimum = 0)]
    pub after_seq: Option<i64>,
    /// Messages to skip, at most 10,000 (offset pagination, kept for older clients).
    #[serde(default, deserialize_with = "query_integer")]
    #[param(minimum = 0, maximum = 10000)]
    pub skip: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewMessage {
    /// 1–4,000 characters, not only white space, no NUL (`U+0000`); other control characters
    /// are kept as sent.
    #[schema(
        min_length = 1,
        max_length = 4000,
        pattern = r"^[^\x00]*[^\x00\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00]*$"
    )]
    pub content: String,
    /// 1–64 printable characters; a retry with the same value returns the first message.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub client_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MessageEdit {
    /// 1–4,000 characters, not only white space, no NUL (`U+0000`); other control characters
    /// are kept as sent.
    #[schema(
        min_length = 1,
        max_length = 4000,
        pattern = r"^[^\x00]*[^\x00\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00]*$"
    )]
    pub content: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadReceipt {
    pub user_id: i64,
    /// When the member's read cursor last moved, at or past this message.
    pub read_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadStatus {
    pub message_id: i64,
    /// Every member but the author has read it.
    pub is_read: bool,
    pub read_by: Vec<ReadReceipt>,
    pub unread_by: Vec<i64>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct MarkRead {
    /// Read up to and including this `seq`; left out, up to the newest message.
    #[schema(minimum = 0)]
    pub up_to_seq: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadCursorView {
    pub chat_id: i64,
    pub last_read_seq: i64,
    pub unread_count: i64,
}

#[cfg(test)]
mod tests {
    use super::ReadCursors;

    #[test]
    fn a_message_is_read_when_every_other_member_reached_it() {
        // alice (1) read up to 10, bob (2) up to 4, carol (3) up to 7.
        let cursors = ReadCursors::new([(1, 10), (2, 4), (3, 7)]);
        assert!(cursors.is_read(4, Some(1)));
        assert!(!cursors.is_read(5, Some(1)), "bob has not read 5");
        // Bob's own message 6: alice and carol have read it.
        assert!(cursors.is_read(6, Some(2)));
        assert!(!cursors.is_read(8, Some(2)), "carol has not read 8");
    }

    #[test]
    fn ties_at_the_lowest_cursor_still_count() {
        let cursors = ReadCursors::new([(1, 3), (2, 3)]);
        assert!(!cursors.is_read(4, Some(1)));
        assert!(cursors.is_read(3, Some(1)));
    }

    #[test]
    fn a_lone_member_or_a_deleted_author_is_handled() {
        assert!(ReadCursors::new([(1, 0)]).is_read(5, Some(1)));
        assert!(!ReadCursors::new([(1, 0)]).is_read(5, None));
    }
}
