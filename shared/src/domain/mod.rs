//! Values that parse at the edge: once constructed, they are known to be valid.

mod text;

pub use text::{ChatName, ClientId, DisplayName, Email, MessageBody, Password, Username};

/// Presence a user may choose; `online` is never chosen, it is observed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Away,
    Offline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Away => "away",
            Status::Offline => "offline",
        }
    }
}
