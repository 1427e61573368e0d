//! Values that parse at the edge (once constructed, they are known to be valid), the enums the
//! schema constrains, and the caller of a use case.
//!
//! Beside `db`, `views` and `auth`, below the service layer; it imports only `error`.

mod page;
mod text;

pub use page::{ChatCursor, DEFAULT_LIMIT, MAX_LIMIT, MAX_SKIP, Page, limit, skip_of};
pub use text::{
    ChatName, ClientId, DisplayName, Email, MessageBody, Password, Username, is_hidden,
};

/// Whoever a use case acts for, as an access token proved them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub id: i64,
    /// The session (refresh-token family) the access token belongs to.
    pub session: Option<i64>,
}

/// An enum read from a `text` column whose CHECK constraint lists the same words, and written
/// as those words on the wire: serde, utoipa and sqlx see one spelling, and `as_str` gives it.
///
/// Bound as `as_str()`: a parameter of a type sqlx declares by name would cost each new
/// connection a round trip to look the type up.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            serde::Serialize,
            serde::Deserialize,
            utoipa::ToSchema,
            sqlx::Type,
        )]
        #[serde(rename_all = "lowercase")]
        #[sqlx(type_name = "text", rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }
    };
}

text_enum! {
    /// Presence a user may choose; `online` is never chosen, it is observed.
    Status { Online = "online", Away = "away", Offline = "offline" }
}

text_enum! {
    /// What a user chose (`users.status_choice`): `auto` shows them online while connected.
    StatusChoice { Auto = "auto", Away = "away", Offline = "offline" }
}

text_enum! {
    /// A member's role in a chat (`chat_members.role`).
    Role { Admin = "admin", Member = "member" }
}

text_enum! {
    /// Who may add a user to a group (`users.add_to_groups`): anyone, only people who already
    /// share a chat with them, or nobody.
    GroupAdds { Everyone = "everyone", Contacts = "contacts", Nobody = "nobody" }
}

impl Default for GroupAdds {
    /// The column's default: a new account may be added by anyone.
    fn default() -> Self {
        GroupAdds::Everyone
    }
}

impl From<Status> for StatusChoice {
    /// Asking to be `online` clears an earlier choice.
    fn from(status: Status) -> Self {
        match status {
            Status::Online => StatusChoice::Auto,
            Status::Away => StatusChoice::Away,
            Status::Offline => StatusChoice::Offline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_speak_the_schemas_words() {
        for status in [Status::Online, Status::Away, Status::Offline] {
            let json = serde_json::to_value(status).ok();
            assert_eq!(json, Some(status.as_str().into()));
        }
        assert_eq!(serde_json::to_value(Role::Admin).ok(), Some("admin".into()));
        assert_eq!(Role::Member.as_str(), "member");
        assert_eq!(serde_json::to_value(Status::Away).ok(), Some("away".into()));
        assert_eq!(StatusChoice::from(Status::Online).as_str(), "auto");
        assert_eq!(StatusChoice::from(Status::Offline), StatusChoice::Offline);
    }
}
