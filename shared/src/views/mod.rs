//! The wire: every JSON shape the API reads or writes, over HTTP and over the WebSocket alike
//! (request bodies, `UserView`, `ChatView`, `MessageView`, the events and replies).
//!
//! Beside `db` and `domain`, below the service layer: views are built from `db` rows and never
//! import from a transport.

pub mod auth;
pub mod chats;
pub mod events;
pub mod health;
pub mod messages;
pub mod number;
pub mod sync;
pub mod users;

pub use auth::{LoginForm, NewUser, RefreshRequest, TokenPair};
pub use chats::{ChatSummary, ChatUpdate, ChatView, MemberList, MemberView, NewChat};
pub use events::{Event, MAX_FRAME_BYTES, Reply};
pub use health::Health;
pub use messages::{
    Author, MarkRead, MessageEdit, MessageQuery, MessageView, NewMessage, ReadCursorView,
    ReadCursors, ReadReceipt, ReadStatus,
};
pub use number::query_integer;
pub use sync::{SyncPage, SyncQuery};
pub use users::{AccountDeletion, ProfileUpdate, StatusUpdate, StatusView, UserView};
