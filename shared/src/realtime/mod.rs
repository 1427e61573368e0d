//! The real-time transport: the WebSocket API's route handler. A frame is parsed, handed to
//! the same use case the HTTP route calls, and its notices are delivered through
//! [`crate::push`] before the handler returns.
//!
//! A transport, like `http`, and independent of it: nothing here imports from `http`.

pub mod websocket;

/// The pusher, under the path it has always had here.
pub use crate::push;
