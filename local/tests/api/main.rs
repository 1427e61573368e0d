//! The API's integration tests, one binary for every area. The end-to-end tests start the local
//! gateway on port 0 over a fresh database (`common`) and act as clients would, over HTTP and
//! WebSocket (`client`).

mod client;
mod common;

mod auth;
mod chats;
mod gateway;
mod messages;
mod realtime;
mod users;
