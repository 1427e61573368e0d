//! Who may do what in a chat: the one way the use cases check membership and roles.

use sqlx::PgPool;

use crate::db;
use crate::db::messages::MessageRow;
use crate::domain::Role;
use crate::error::{Error, Result};

/// 404 for a chat that does not exist and for one the caller is not in alike.
pub fn chat_not_found() -> Error {
    Error::NotFound("chat not found")
}

/// The caller as a member of one chat. Having one proves the membership; its methods check
/// the role a change needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub chat_id: i64,
    pub user_id: i64,
    pub role: Role,
    pub is_group: bool,
}

impl Member {
    /// The caller's membership of `chat_id`; 404 unless they are a member.
    ///
    /// Every chat route checks membership here, but the send: its single statement checks it
    /// itself (see `db::messages::insert`).
    pub async fn load(db: &PgPool, chat_id: i64, user_id: i64) -> Result<Self> {
        let row = db::chats::find_for_member(db, chat_id, user_id)
            .await?
            .ok_or_else(chat_not_found)?;
        Ok(Self {
            chat_id,
            user_id,
            role: row.role,
            is_group: row.chat.is_group,
        })
    }

    /// An admin of a group; the only one who can rename it or change its members.
    pub fn is_group_admin(&self) -> bool {
        self.is_group && self.role == Role::Admin
    }

    /// 409 for a direct chat (it has no admins), 403 for a group member who is not admin.
    pub fn require_admin(&self, what: &'static str) -> Result<()> {
        if !self.is_group {
            return Err(Error::conflict(
                "direct_chat",
                "a direct chat has no name or admins, and its two members are fixed",
            ));
        }
        if self.role != Role::Admin {
            return Err(Error::Forbidden("not_admin", what));
        }
        Ok(())
    }

    /// A group's admin, or either member of a direct chat: who may delete the chat.
    pub fn require_owner(&self) -> Result<()> {
        if self.is_group && self.role != Role::Admin {
            return Err(Error::Forbidden(
                "not_admin",
                "only the group's admins can delete it",
            ));
        }
        Ok(())
    }

    /// 403 unless the member wrote `message`.
    pub fn require_author(&self, message: &MessageRow, what: &'static str) -> Result<()> {
        if message.user_id != Some(self.user_id) {
            return Err(Error::Forbidden("not_author", what));
        }
        Ok(())
    }

    /// 403 unless the member wrote `message` or is an admin of the group.
    pub fn require_author_or_admin(&self, message: &MessageRow, what: &'static str) -> Result<()> {
        if self.is_group_admin() {
            return Ok(());
        }
        self.require_author(message, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(role: Role, is_group: bool) -> Member {
        Member {
            chat_id: 1,
            user_id: 7,
            role,
            is_group,
        }
    }

    fn message(author: Option<i64>) -> MessageRow {
        let now = chrono::Utc::now();
        MessageRow {
            id: 1,
            chat_id: 1,
            seq: 1,
            user_id: author,
            username: None,
            content: String::new(),
            client_id: None,
            created_at: now,
            updated_at: now,
            edited_at: None,
            deleted_at: None,
        }
    }

    #[test]
    fn admin_rules_follow_the_chat_kind() {
        assert_eq!(
            member(Role::Member, false)
                .require_admin("x")
                .expect_err("direct")
                .status(),
            409
        );
        assert_eq!(
            member(Role::Member, true)
                .require_admin("x")
                .expect_err("member")
                .status(),
            403
        );
        assert!(member(Role::Admin, true).require_admin("x").is_ok());
        assert!(member(Role::Member, false).require_owner().is_ok());
        assert!(member(Role::Member, true).require_owner().is_err());
    }

    #[test]
    fn authors_and_group_admins_may_delete() {
        let theirs = message(Some(8));
        assert!(
            member(Role::Member, true)
                .require_author(&message(Some(7)), "x")
                .is_ok()
        );
        assert!(
            member(Role::Member, true)
                .require_author(&theirs, "x")
                .is_err()
        );
        assert!(
            member(Role::Admin, false)
                .require_author_or_admin(&theirs, "x")
                .is_err()
        );
        assert!(
            member(Role::Admin, true)
                .require_author_or_admin(&theirs, "x")
                .is_ok()
        );
        assert!(
            member(Role::Member, true)
                .require_author(&message(None), "x")
                .is_err()
        );
    }
}
