//! The use cases, free of transport: what the API does, whichever way a request arrives.
//!
//! Each use case takes what it needs (the pool; for accounts also the token keys and the
//! configuration), the caller, and parsed or raw input, and returns an [`Outcome`]: its result
//! and the notifications it causes, each an [`Event`] for an [`Audience`]. A use case returns
//! only after its transaction committed; the transport hands the outcome to
//! `Push::deliver`, which pushes the notices and only then gives back the result to answer
//! with. So "push after commit, before the handler returns" holds by construction.
//!
//! Layers: transports (`http`, `realtime`) → `state` → `push` → `service` → `db`, `views`,
//! `domain`, `auth` → `config`, `error`. Access rules live in [`access`].

pub mod access;
pub mod attempts;
pub mod auth;
pub mod chats;
pub mod consent;
pub mod messages;
pub mod presence;
pub mod sessions;
pub mod sync;
pub mod users;

use crate::views::Event;

/// Who should receive an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every live connection that sees the chat, found when the notice is delivered.
    Chat(i64),
    /// The connections of one member that see the chat (unscoped, or scoped to it): for an
    /// event whose content depends on who receives it (a direct chat's name).
    Member { chat_id: i64, user_id: i64 },
    /// Like `Chat`, without the connections of one user (the typist).
    ChatExcept { chat_id: i64, user_id: i64 },
    /// Connections found before the change, while the members who lose the chat still
    /// belonged to it (or found by the change's own statement).
    Connections(Vec<String>),
    /// The unscoped connections of everyone who shares a chat with the user, but one
    /// connection (one still being opened cannot receive yet).
    Contacts {
        user_id: i64,
        except: Option<String>,
    },
}

/// An event and who should receive it.
#[derive(Clone, Debug)]
pub struct Notice {
    pub audience: Audience,
    pub event: Event,
}

/// A use case's result with the notices it causes and the connections it ends.
#[derive(Debug)]
#[must_use = "an outcome's notices must be delivered (Push::deliver) before answering"]
pub struct Outcome<T> {
    value: T,
    notices: Vec<Notice>,
    close: Vec<String>,
}

impl<T> Outcome<T> {
    /// A result that notifies nobody.
    pub fn quiet(value: T) -> Self {
        Self {
            value,
            notices: Vec::new(),
            close: Vec::new(),
        }
    }

    /// Adds a notice, delivered in the order added.
    pub fn notify(mut self, audience: Audience, event: Event) -> Self {
        self.notices.push(Notice { audience, event });
        self
    }

    /// Adds connections to close once the notices are delivered.
    pub fn close(mut self, connections: Vec<String>) -> Self {
        self.close.extend(connections);
        self
    }

    /// The result, to look at before delivery (a WebSocket ack answers ahead of the fan-out).
    pub fn value(&self) -> &T {
        &self.value
    }

    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// Taken apart by the deliverer only.
    pub(crate) fn into_parts(self) -> (T, Vec<Notice>, Vec<String>) {
        (self.value, self.notices, self.close)
    }
}

/// Something stored, or found stored already (an idempotent retry, an existing direct chat).
#[derive(Clone, Debug)]
pub struct Stored<T> {
    pub item: T,
    /// `true` when this call created it.
    pub created: bool,
}
