//! Chats on the wire.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::chats::MemberChatRow;
use crate::db::members::MemberRow;
use crate::domain::Role;
use crate::views::messages::MessageView;
use crate::views::users::UserView;

/// What a direct chat is called when the other member's account is gone and no name was given.
pub const DELETED_ACCOUNT: &str = "Deleted account";

/// A chat's name as `viewer` sees it: the name it was given (always, for a group); for a direct
/// chat without one, the other member's display name, or [`DELETED_ACCOUNT`] once that
/// member's account is gone. `members` must hold all of a direct chat's members.
pub fn name_for(given: Option<&str>, members: &[UserView], viewer: i64) -> String {
    match given {
        Some(name) => name.to_owned(),
        None => members
            .iter()
            .find(|u| u.id != viewer)
            .map_or_else(|| DELETED_ACCOUNT.to_owned(), |u| u.display_name.clone()),
    }
}

/// A chat as the caller sees it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ChatView {
    pub id: i64,
    /// Never null: the group's name; for a direct chat, the name given at its creation, else
    /// the other member's display name as the caller sees it (`Deleted account` once that
    /// account is gone).
    #[schema(example = "Project Falcon")]
    pub name: String,
    pub is_group_chat: bool,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Members, longest-standing first: all of them in `GET /api/chats/{chat_id}` and the
    /// answers to changes; in the chat list (`GET /api/chats`) only the first few (all of a
    /// direct chat's), with `GET /api/chats/{chat_id}/members` paging through the rest.
    pub users: Vec<UserView>,
    /// How many members the chat has, whether `users` lists them all or not.
    pub member_count: i64,
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
    /// The position (`pos`) of the chat's newest change when this answer was read: a client
    /// that then loads the chat's messages and members can start from it, applying only changes
    /// with a higher `pos`.
    pub last_pos: i64,
}

impl ChatView {
    /// Builds the view `viewer` gets from their row, the members to show (all, or the first
    /// few of `member_count`; all of a direct chat's), and the newest message.
    pub fn new(
        viewer: i64,
        row: MemberChatRow,
        members: Vec<MemberRow>,
        member_count: i64,
        last_message: Option<MessageView>,
    ) -> Self {
        let chat = row.chat;
        let users: Vec<UserView> = members
            .into_iter()
            .map(|m| UserView::public(m.user))
            .collect();
        Self {
            id: chat.id,
            name: name_for(chat.name.as_deref(), &users, viewer),
            is_group_chat: chat.is_group,
            created_by: chat.created_by,
            created_at: chat.created_at,
            updated_at: chat.updated_at,
            users,
            member_count,
            unread_count: (chat.last_seq - row.last_read_seq).max(0),
            last_message,
            role: row.role,
            last_read_seq: row.last_read_seq,
            last_seq: chat.last_seq,
            last_pos: chat.last_pos,
        }
    }
}

/// A member of a chat: the user, their role and when they joined.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MemberView {
    #[serde(flatten)]
    pub user: UserView,
    /// `admin` or `member`.
    #[schema(value_type = String)]
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    /// The member's read cursor: they have read every message up to this `seq`.
    pub last_read_seq: i64,
}

impl From<MemberRow> for MemberView {
    fn from(row: MemberRow) -> Self {
        Self {
            user: UserView::public(row.user),
            role: row.role,
            joined_at: row.joined_at,
            last_read_seq: row.last_read_seq,
        }
    }
}

/// A chat without the per-member fields (role, unread count). Its `name` is the recipient's
/// view of it, as in [`ChatView`]: a direct chat's differs per member.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ChatSummary {
    pub id: i64,
    /// Never null; see `ChatView.name`.
    pub name: String,
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
    Object {
        /// The users to add, 1–1,000 ids.
        #[schema(min_items = 1, max_items = 1000)]
        user_ids: Vec<i64>,
    },
    /// The same ids as a bare array (1–1,000 of them; the bound is set in the OpenAPI
    /// document, which cannot take it here).
    Bare(Vec<i64>),
}

impl MemberList {
    pub fn into_ids(self) -> Vec<i64> {
        match self {
            MemberList::Object { user_ids } | MemberList::Bare(user_ids) => user_ids,
        }
    }
}
