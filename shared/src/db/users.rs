//! `users`: accounts, profiles and chosen presence.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::domain::{GroupAdds, Status, StatusChoice};
use crate::error::{Error, OnConstraint, Result};

/// A user as others see them, with presence derived from live connections.
#[derive(Clone, Debug)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub display_name: Option<String>,
    pub status: Status,
    pub last_seen: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

// Every statement that answers a `UserRow` selects the same columns. `status` is `online` only
// while a connection lives and the user has not chosen otherwise:
//
//     u.id, u.username, u.email, u.display_name, u.last_seen, u.created_at,
//     CASE WHEN NOT EXISTS (SELECT 1 FROM ws_connections c WHERE c.user_id = u.id) THEN 'offline'
//          WHEN u.status_choice = 'auto' THEN 'online'
//          ELSE u.status_choice END AS "status!: Status"
//
// (`sqlx::query_as!` takes one string literal, so the list is written out in each; the compiler
// checks every copy against the schema.)

fn taken(e: Result<UserRow, sqlx::Error>) -> Result<UserRow> {
    e.on_constraint("users_username_key", || {
        Error::conflict("username_taken", "that username is already taken")
    })
    .on_constraint("users_email_key", || {
        Error::conflict("email_taken", "that email address is already registered")
    })
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    username: &str,
    email: &str,
    password_hash: &str,
) -> Result<UserRow> {
    taken(
        sqlx::query_as!(
            UserRow,
            r#"INSERT INTO users AS u (username, email, password_hash) VALUES ($1, $2, $3)
               RETURNING u.id, u.username, u.email, u.display_name, u.last_seen, u.created_at,
                 CASE WHEN NOT EXISTS (SELECT 1 FROM ws_connections c WHERE c.user_id = u.id)
                      THEN 'offline'
                      WHEN u.status_choice = 'auto' THEN 'online'
                      ELSE u.status_choice END AS "status!: Status""#,
            username,
            email,
            password_hash,
        )
        .fetch_one(db)
        .await,
    )
}

pub async fn find(db: impl PgExecutor<'_>, id: i64) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as!(
        UserRow,
        r#"SELECT u.id, u.username, u.email, u.display_name, u.last_seen, u.created_at,
             CASE WHEN NOT EXISTS (SELECT 1 FROM ws_connections c WHERE c.user_id = u.id)
                  THEN 'offline'
                  WHEN u.status_choice = 'auto' THEN 'online'
                  ELSE u.status_choice END AS "status!: Status"
           FROM users u WHERE u.id = $1"#,
        id,
    )
    .fetch_optional(db)
    .await?)
}

/// The user with the settings only they see: `(row, add_to_groups)`. With `session`, this is
/// `/me`'s read with the session check folded in (the session by primary key, in the same
/// statement): `None` once that session ended, as once the account went.
pub async fn find_own(
    db: impl PgExecutor<'_>,
    id: i64,
    session: Option<i64>,
) -> Result<Option<(UserRow, GroupAdds)>> {
    let row = sqlx::query!(
        r#"SELECT u.id, u.username, u.email, u.display_name, u.last_seen, u.created_at,
             CASE WHEN NOT EXISTS (SELECT 1 FROM ws_connections c WHERE c.user_id = u.id)
                  THEN 'offline'
                  WHEN u.status_choice = 'auto' THEN 'online'
                  ELSE u.status_choice END AS "status!: Status",
             u.add_to_groups AS "add_to_groups: GroupAdds"
           FROM users u
           WHERE u.id = $1
             AND ($2::bigint IS NULL
                  OR EXISTS (SELECT 1 FROM sessions s
                             WHERE s.id = $2 AND s.user_id = u.id AND s.revoked_at IS NULL
                               AND s.expires_at > now()))"#,
        id,
        session,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| {
        let user = UserRow {
            id: row.id,
            username: row.username,
            email: row.email,
            display_name: row.display_name,
            status: row.status,
            last_seen: row.last_seen,
            created_at: row.created_at,
        };
        (user, row.add_to_groups)
    }))
}

/// Records who may add the user to groups.
pub async fn set_add_to_groups(db: impl PgExecutor<'_>, id: i64, value: GroupAdds) -> Result<()> {
    sqlx::query!(
        "UPDATE users SET add_to_groups = $2, updated_at = now() WHERE id = $1",
        id,
        value.as_str(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Which of `ids` exist, for validating member lists.
pub async fn existing_ids(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<Vec<i64>> {
    Ok(
        sqlx::query_scalar!("SELECT id FROM users WHERE id = ANY($1)", ids)
            .fetch_all(db)
            .await?,
    )
}

/// One page of users ordered by id, optionally only those whose username starts with `prefix`.
pub async fn list(
    db: impl PgExecutor<'_>,
    prefix: Option<&str>,
    after_id: Option<i64>,
    skip: i64,
    limit: i64,
) -> Result<Vec<UserRow>> {
    Ok(sqlx::query_as!(
        UserRow,
        r#"SELECT u.id, u.username, u.email, u.display_name, u.last_seen, u.created_at,
             CASE WHEN NOT EXISTS (SELECT 1 FROM ws_connections c WHERE c.user_id = u.id)
                  THEN 'offline'
                  WHEN u.status_choice = 'auto' THEN 'online'
                  ELSE u.status_choice END AS "status!: Status"
           FROM users u
           WHERE ($1::text IS NULL OR lower(u.username) LIKE lower($1) ESCAPE '\')
             AND ($2::bigint IS NULL OR u.id > $2)
           ORDER BY u.id OFFSET $3 LIMIT $4"#,
        prefix.map(super::like_prefix),
        after_id,
        skip,
        limit,
    )
    .fetch_all(db)
    .await?)
}

/// The account a login names, by username or email, ignoring case: `(id, password_hash)`.
pub async fn credentials(db: impl PgExecutor<'_>, login: &str) -> Result<Option<(i64, String)>> {
    let row = sqlx::query!(
        "SELECT id, password_hash FROM users
         WHERE lower(username) = lower($1) OR lower(email) = lower($1) LIMIT 1",
        login,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| (row.id, row.password_hash)))
}

pub async fn password_hash(db: impl PgExecutor<'_>, id: i64) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar!("SELECT password_hash FROM users WHERE id = $1", id)
            .fetch_optional(db)
            .await?,
    )
}

/// The changes a profile update may carry; `None` leaves a column as it is.
#[derive(Debug, Default)]
pub struct ProfileChange<'a> {
    pub username: Option<&'a str>,
    pub email: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub password_hash: Option<&'a str>,
}

pub async fn update(
    db: impl PgExecutor<'_>,
    id: i64,
    change: ProfileChange<'_>,
) -> Result<Option<UserRow>> {
    let result = sqlx::query_as!(
        UserRow,
        r#"UPDATE users AS u SET
              username = COALESCE($2, u.username),
              email = COALESCE($3, u.email),
              display_name = COALESCE($4, u.display_name),
              password_hash = COALESCE($5, u.password_hash),
              updated_at = now()
           WHERE u.id = $1
           RETURNING u.id, u.username, u.email, u.display_name, u.last_seen, u.created_at,
             CASE WHEN NOT EXISTS (SELECT 1 FROM ws_connections c WHERE c.user_id = u.id)
                  THEN 'offline'
                  WHEN u.status_choice = 'auto' THEN 'online'
                  ELSE u.status_choice END AS "status!: Status""#,
        id,
        change.username,
        change.email,
        change.display_name,
        change.password_hash,
    )
    .fetch_optional(db)
    .await;
    match result {
        Ok(row) => Ok(row),
        Err(e) => taken(Err(e)).map(Some),
    }
}

/// Records the user's chosen presence.
pub async fn set_status_choice(
    db: impl PgExecutor<'_>,
    id: i64,
    choice: StatusChoice,
) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as!(
        UserRow,
        r#"UPDATE users AS u SET status_choice = $2, updated_at = now() WHERE u.id = $1
           RETURNING u.id, u.username, u.email, u.display_name, u.last_seen, u.created_at,
             CASE WHEN NOT EXISTS (SELECT 1 FROM ws_connections c WHERE c.user_id = u.id)
                  THEN 'offline'
                  WHEN u.status_choice = 'auto' THEN 'online'
                  ELSE u.status_choice END AS "status!: Status""#,
        id,
        choice.as_str(),
    )
    .fetch_optional(db)
    .await?)
}

pub async fn touch_last_seen(db: impl PgExecutor<'_>, id: i64) -> Result<()> {
    sqlx::query!("UPDATE users SET last_seen = now() WHERE id = $1", id)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes the account; sessions, connections and memberships cascade, messages keep a NULL
/// author.
pub async fn delete(db: impl PgExecutor<'_>, id: i64) -> Result<bool> {
    let done = sqlx::query!("DELETE FROM users WHERE id = $1", id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}
