//! `user_blocks` and the consent rules that read it: who blocked whom, and whom a user may add
//! to a group.

use sqlx::PgExecutor;

use super::users::UserRow;
use crate::domain::Status;
use crate::error::Result;

/// Records that `blocker` blocked `blocked`; `false` when it was so already.
pub async fn insert(db: impl PgExecutor<'_>, blocker: i64, blocked: i64) -> Result<bool> {
    let done = sqlx::query!(
        "INSERT INTO user_blocks (blocker_id, blocked_id) VALUES ($1, $2)
         ON CONFLICT (blocker_id, blocked_id) DO NOTHING",
        blocker,
        blocked,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Lifts a block; `false` when there was none.
pub async fn delete(db: impl PgExecutor<'_>, blocker: i64, blocked: i64) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM user_blocks WHERE blocker_id = $1 AND blocked_id = $2",
        blocker,
        blocked,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether `blocker` blocked `blocked`.
pub async fn exists(db: impl PgExecutor<'_>, blocker: i64, blocked: i64) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM user_blocks WHERE blocker_id = $1 AND blocked_id = $2)
           AS "exists!""#,
        blocker,
        blocked,
    )
    .fetch_one(db)
    .await?)
}

/// One page of the users `blocker` blocked, by id.
pub async fn list(
    db: impl PgExecutor<'_>,
    blocker: i64,
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
           FROM user_blocks b JOIN users u ON u.id = b.blocked_id
           WHERE b.blocker_id = $1 AND ($2::bigint IS NULL OR b.blocked_id > $2)
           ORDER BY b.blocked_id OFFSET $3 LIMIT $4"#,
        blocker,
        after_id,
        skip,
        limit,
    )
    .fetch_all(db)
    .await?)
}

/// A user who does not let `adder` add them to a group, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusedAdd {
    pub user_id: i64,
    /// They blocked the adder (otherwise their `add_to_groups` setting leaves the adder out).
    pub blocked: bool,
}

/// Which of `user_ids` refuse to be added to a group by `adder`: those who blocked the adder,
/// those who let nobody add them, and those who let only contacts add them and share no chat
/// with the adder. Members of `chat_id` already are not being added and are left out.
pub async fn refused_adds(
    db: impl PgExecutor<'_>,
    adder: i64,
    user_ids: &[i64],
    chat_id: Option<i64>,
) -> Result<Vec<RefusedAdd>> {
    Ok(sqlx::query_as!(
        RefusedAdd,
        r#"SELECT u.id AS user_id, r.blocked AS "blocked!"
           FROM users u
           CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM user_blocks b
                                              WHERE b.blocker_id = u.id AND b.blocked_id = $1)
                               AS blocked) r
           WHERE u.id = ANY($2) AND u.id <> $1
             AND NOT EXISTS (SELECT 1 FROM chat_members cm
                             WHERE cm.chat_id = $3 AND cm.user_id = u.id)
             AND (r.blocked
                  OR u.add_to_groups = 'nobody'
                  OR (u.add_to_groups = 'contacts' AND NOT EXISTS (
                        SELECT 1 FROM chat_members mine
                        JOIN chat_members theirs ON theirs.chat_id = mine.chat_id
                        WHERE mine.user_id = $1 AND theirs.user_id = u.id)))
           ORDER BY u.id"#,
        adder,
        user_ids,
        chat_id,
    )
    .fetch_all(db)
    .await?)
}
