//! The API's integration tests, one binary for every area, in layers:
//!
//! - `router`: the routers' extractors and rejections through `oneshot`, with no database;
//! - `db`: the `blockchat::db` functions on a fresh database of each test's own;
//! - the rest, end to end: the local gateway on port 0 over a fresh database (`common`), used
//!   as clients would, over HTTP and WebSocket (`client`); `permissions` is the table of who
//!   may call which chat and message route; `faults` pushes through a misbehaving
//!   `@connections`; `shutdown` runs the `blockchat-local` program and stops it by signal;
//! - `outage`: a gateway over a cluster of its own, which is stopped, frozen and brought back.

mod client;
mod common;

mod auth;
mod chats;
mod consent;
mod db;
mod faults;
mod gateway;
mod limits;
mod messages;
mod outage;
mod permissions;
mod realtime;
mod router;
mod sessions;
mod shutdown;
mod sync;
mod users;
