//! Users and presence on the wire.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::users::UserRow;
use crate::domain::{GroupAdds, Status};

/// A user. `email` appears only in the caller's own user.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UserView {
    #[schema(example = 1)]
    pub id: i64,
    #[schema(example = "alice")]
    pub username: String,
    /// The name to show; the username until the user sets one.
    #[schema(example = "Alice")]
    pub display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
    pub status: Status,
    /// Only in the caller's own user: who may add them to groups (`everyone`, `contacts`:
    /// people who share a chat with them, `nobody`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_to_groups: Option<GroupAdds>,
}

impl UserView {
    /// The user as others see them.
    pub fn public(row: UserRow) -> Self {
        Self {
            id: row.id,
            display_name: row.display_name.unwrap_or_else(|| row.username.clone()),
            username: row.username,
            email: None,
            created_at: row.created_at,
            last_seen: row.last_seen,
            status: row.status,
            add_to_groups: None,
        }
    }

    /// The caller's own user, with their email and privacy setting.
    pub fn own(row: UserRow, add_to_groups: GroupAdds) -> Self {
        let email = row.email.clone();
        UserView {
            email: Some(email),
            add_to_groups: Some(add_to_groups),
            ..UserView::public(row)
        }
    }
}

/// Any subset of the fields; a new `password` needs `current_password`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// 3–32 characters of `[A-Za-z0-9_.-]`, unique ignoring case.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{3,32}$")]
    pub username: Option<String>,
    #[schema(
        format = Email,
        pattern = r"^[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$",
        max_length = 254
    )]
    pub email: Option<String>,
    /// 1–64 characters, not only white space.
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    pub display_name: Option<String>,
    /// 8–256 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub password: Option<String>,
    /// Required with `password` or `email`. Wrong: 403 `wrong_password`; checked under the
    /// account's login budget (429 with `Retry-After` once spent).
    pub current_password: Option<String>,
    /// Who may add the user to groups: `everyone` (the default), `contacts` (people who
    /// already share a chat with them) or `nobody`.
    pub add_to_groups: Option<GroupAdds>,
}

/// The body of `DELETE /api/users/{user_id}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountDeletion {
    /// Required. Wrong: 403 `wrong_password`; checked under the account's login budget.
    #[schema(value_type = String, required = true)]
    pub current_password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    pub user_id: i64,
    pub status: Status,
    pub last_seen: Option<DateTime<Utc>>,
}

impl From<UserRow> for StatusView {
    fn from(row: UserRow) -> Self {
        Self {
            user_id: row.id,
            status: row.status,
            last_seen: row.last_seen,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusUpdate {
    /// `online` clears an earlier choice; `away` and `offline` (invisible) hold until changed.
    pub status: Status,
}
