//! Chats on the wire.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::chats::MemberChatRow;
use crate::db::members::MemberRow;
use crate::db::messages::MessageRow;
use crate::domain::Role;
use crate::views::messages::{MessageView, ReadCursors};
use crate::views::users::UserView;

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
    #[schema(value_type = String)]
    pub role: Role,
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

/// A chat without the per-member fields (role, unread count), the same for every recipient.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ChatSummary {
    pub id: i64,
    pub name: Option<String>,
    pub is_group_chat: bool,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Member ids, longest-standing first (ids, not profiles, so that a 1,000-member group
    /// still fits one frame).
    pub user_ids: Vec<i64>,
}

impl From<&ChatView> for ChatSummary {
    fn from(chat: &ChatView) -> Self {
        Self {
            id: chat.id,
            name: chat.name.clone(),
            is_group_chat: chat.is_group_chat,
            created_by: chat.created_by,
            created_at: chat.created_at,
            updated_at: chat.updated_at,
            user_ids: chat.users.iter().map(|u| u.id).collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewChat {
    /// Required for a group (1–100 characters, not only white space); ignored for a direct chat.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: Option<String>,
    /// Left out: one other user makes a direct chat, more make a group.
    pub is_group_chat: Option<bool>,
    /// The other members (ids of existing users); the caller is always a member.
    #[serde(default)]
    #[schema(max_items = 999)]
    pub user_ids: Vec<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatUpdate {
    /// 1–100 characters, not only white space.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
}

/// `{"user_ids": [..]}`, or the bare array older clients send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MemberList {
    Object { user_ids: Vec<i64> },
    Bare(Vec<i64>),
}

impl MemberList {
    pub fn into_ids(self) -> Vec<i64> {
        match self {
            MemberList::Object { user_ids } | MemberList::Bare(user_ids) => user_ids,
        }
    }
}
