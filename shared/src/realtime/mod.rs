//! Real time: the events that go on the wire, the fan-out through the API Gateway management
//! API, and the handler of the WebSocket API's routes.

pub mod events;
pub mod push;
pub mod websocket;

pub use events::Event;
pub use push::Push;
