//! The server's events, as clients receive them: `{"type": "...", "chat_id": ..., ...}`, and
//! the replies to a connection's own frames.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Status;
use crate::views::chats::ChatSummary;
use crate::views::messages::MessageView;

/// API Gateway refuses WebSocket frames over 128 KiB.
pub const MAX_FRAME_BYTES: usize = 128 * 1024;

/// Every change of a chat (messages, read cursors, members, the chat itself) carries `pos`: its
/// position in the chat, 1, 2, 3, ... without gaps and in the order the changes happened. A
/// client keeps the highest `pos` it applied per chat (a loaded chat's `last_pos` to start
/// with) and applies a live event only when its `pos` is the next one. Events of one chat can
/// arrive out of order (their pushes run concurrently) and a failed push loses one, so an event
/// further ahead is left alone and `GET /api/sync` brings it with the one before it. `typing`
/// and `user.status` are not changes and have no `pos`.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "message.created")]
    MessageCreated {
        chat_id: i64,
        pos: i64,
        message: MessageView,
    },
    #[serde(rename = "message.updated")]
    MessageUpdated {
        chat_id: i64,
        pos: i64,
        message: MessageView,
    },
    #[serde(rename = "message.deleted")]
    MessageDeleted {
        chat_id: i64,
        pos: i64,
        message: MessageView,
    },
    /// A member's read cursor moved.
    #[serde(rename = "message.read")]
    MessageRead {
        chat_id: i64,
        pos: i64,
        user_id: i64,
        last_read_seq: i64,
    },
    #[serde(rename = "chat.created")]
    ChatCreated {
        chat_id: i64,
        pos: i64,
        chat: ChatSummary,
    },
    #[serde(rename = "chat.updated")]
    ChatUpdated {
        chat_id: i64,
        pos: i64,
        chat: ChatSummary,
    },
    #[serde(rename = "chat.deleted")]
    ChatDeleted { chat_id: i64, pos: i64 },
    #[serde(rename = "member.added")]
    MemberAdded {
        chat_id: i64,
        pos: i64,
        user_ids: Vec<i64>,
        chat: ChatSummary,
    },
    #[serde(rename = "member.removed")]
    MemberRemoved {
        chat_id: i64,
        pos: i64,
        user_id: i64,
        /// Set when the removal made this member admin (the last admin left).
        new_admin: Option<i64>,
    },
    #[serde(rename = "typing")]
    Typing { chat_id: i64, user_id: i64 },
    #[serde(rename = "user.status")]
    UserStatus {
        user_id: i64,
        status: Status,
        last_seen: Option<DateTime<Utc>>,
    },
}

impl Event {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Frames sent to one connection in answer to its own frame.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Reply {
    Ack {
        client_id: Option<String>,
        message: Box<MessageView>,
    },
    Pong,
    Error {
        code: String,
        detail: String,
        /// The `client_id` of the `sendMessage` that failed, so that a client can tell which of
        /// its sends to retry (over HTTP, say); absent for other frames.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
}

impl Reply {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_type_and_chat() {
        let json = serde_json::to_value(Event::Typing {
            chat_id: 3,
            user_id: 9,
        })
        .expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"type": "typing", "chat_id": 3, "user_id": 9})
        );
        let json = serde_json::to_value(Event::MessageRead {
            chat_id: 3,
            pos: 4,
            user_id: 9,
            last_read_seq: 12,
        })
        .expect("serializes");
        assert_eq!(json["type"], "message.read");
        assert_eq!(json["last_read_seq"], 12);
        assert_eq!(json["pos"], 4);
    }

    #[test]
    fn replies_are_tagged_in_lowercase() {
        let json = serde_json::to_value(Reply::Pong).expect("serializes");
        assert_eq!(json, serde_json::json!({"type": "pong"}));
        let json = serde_json::to_value(Reply::Error {
            code: "unknown_action".into(),
            detail: "x".into(),
            client_id: None,
        })
        .expect("serializes");
        assert_eq!(json["type"], "error");
        assert_eq!(json["code"], "unknown_action");
    }
}
