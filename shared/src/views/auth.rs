//! Accounts and tokens on the wire.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUser {
    /// 3–32 characters of `[A-Za-z0-9_.-]`, unique ignoring case.
    #[schema(example = "alice", pattern = r"^[A-Za-z0-9_.-]{3,32}$")]
    pub username: String,
    /// Unique ignoring case.
    #[schema(
        example = "alice@example.com",
        format = Email,
        pattern = r"^[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$",
        max_length = 254
    )]
    pub email: String,
    /// 8–256 characters.
    #[schema(
        example = "correct horse battery staple",
        min_length = 8,
        max_length = 256
    )]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginForm {
    /// Username or email.
    #[schema(example = "alice")]
    pub username: String,
    #[schema(example = "correct horse battery staple")]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    /// Always `bearer`.
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Lifetime of the access token in seconds.
    #[schema(example = 900)]
    pub expires_in: u64,
    /// Opaque; exchange it at `/api/auth/refresh`. Each use rotates it.
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}
