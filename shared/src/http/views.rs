//! The shapes of chats and messages on the wire, shared by HTTP answers and real-time events.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::chats::MemberChatRow;
use crate::db::members::MemberRow;
use crate::db::messages::MessageRow;
use crate::http::users::UserView;

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

/// A chat as the caller sees it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ChatView {
    pub id: i64,
    /// The group's name; `null` for a direct chat.
    pub name: Option<String>,
    pub is_group_chat: bool,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Members, longest-standing first.
    pub users: Vec<UserView>,
    /// Messages the caller has not read.
    pub unread_count: i64,
    pub last_message: Option<MessageView>,
    /// The caller's role: `admin` or `member`.
    pub role: String,
    /// The caller's read cursor.
    pub last_read_seq: i64,
    /// The newest message's `seq` (0 when there is none).
    pub last_seq: i64,
}

impl ChatView {
    /// Builds the view from the caller's row, the chat's members, and its newest message.
    pub fn new(row: MemberChatRow, members: Vec<MemberRow>, last: Option<MessageRow>) -> Self {
        let cursors = ReadCursors::new(members.iter().map(|m| (m.user.id, m.last_read_seq)));
        let last_message = last.map(|m| {
            let read = cursors.is_read(m.seq, m.user_id);
            MessageView::new(m, read)
        });
        let chat = row.chat;
        Self {
            id: chat.id,
            name: chat.name,
            is_group_chat: chat.is_group,
            created_by: chat.created_by,
            created_at: chat.created_at,
            updated_at: chat.updated_at,
            users: members
                .into_iter()
                .map(|m| UserView::public(m.user))
                .collect(),
            unread_count: (chat.last_seq - row.last_read_seq).max(0),
            last_message,
            role: row.role,
            last_read_seq: row.last_read_seq,
            last_seq: chat.last_seq,
        }
    }
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
