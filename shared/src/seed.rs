//! Bulk seeding, for the benchmark (feature `seed`): accounts, groups and millions of messages
//! in a few statements, where the API would take longer than the whole benchmark.
//!
//! Each function keeps the schema's rules as the product's own writes keep them, so that a
//! seeded database is one the product could have made: `seq` gap-free per chat, `chats.last_seq`
//! equal to its newest `seq` (set by the same statement that inserts the messages), and no read
//! cursor ahead of its chat. [`census`] counts what breaks them.
//!
//! The statements are compile-checked like the product's (`cargo sqlx prepare --workspace`
//! builds the benchmark, and so this module); `VACUUM`, which cannot be prepared, is not.

use sqlx::PgExecutor;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("seeding failed")]
    Database(#[from] sqlx::Error),
    #[error("{count} is not a row count")]
    Count { count: usize },
    #[error("created {created} of {wanted} accounts")]
    Accounts { created: usize, wanted: usize },
    #[error("{total} rows cannot interleave a chat of {chat} over {fillers} other chats")]
    Interleave {
        total: i64,
        chat: i64,
        fillers: usize,
    },
}

/// A seeded account.
#[derive(Clone, Debug)]
pub struct User {
    pub id: i64,
    pub username: String,
}

fn rows(count: usize) -> Result<i64> {
    i64::try_from(count).map_err(|_| Error::Count { count })
}

/// `count` accounts named `{prefix}1` … `{prefix}{count}` (mail `…@bench.invalid`), sharing one
/// password hash; in order of id.
pub async fn users(
    db: impl PgExecutor<'_>,
    prefix: &str,
    count: usize,
    password_hash: &str,
) -> Result<Vec<User>> {
    let mut users = sqlx::query_as!(
        User,
        "INSERT INTO users (username, email, password_hash)
         SELECT $1 || g, $1 || g || '@bench.invalid', $3 FROM generate_series(1, $2::bigint) g
         RETURNING id, username",
        prefix,
        rows(count)?,
        password_hash,
    )
    .fetch_all(db)
    .await?;
    users.sort_by_key(|u| u.id);
    if users.len() != count {
        return Err(Error::Accounts {
            created: users.len(),
            wanted: count,
        });
    }
    Ok(users)
}

/// `count` empty groups named `{prefix}1` … `{prefix}{count}`; their ids, ascending.
pub async fn groups(
    db: impl PgExecutor<'_>,
    prefix: &str,
    count: usize,
    created_by: i64,
) -> Result<Vec<i64>> {
    let mut ids = sqlx::query_scalar!(
        "INSERT INTO chats (name, is_group, created_by)
         SELECT $1 || g, true, $3 FROM generate_series(1, $2::bigint) g RETURNING id",
        prefix,
        rows(count)?,
        created_by,
    )
    .fetch_all(db)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

/// Makes every user a member of every chat, with the role a join gives and, as a join does,
/// every message so far read.
pub async fn members(db: impl PgExecutor<'_>, chat_ids: &[i64], user_ids: &[i64]) -> Result<()> {
    sqlx::query!(
        "INSERT INTO chat_members (chat_id, user_id, last_read_seq)
         SELECT c.id, u, c.last_seq FROM chats c, unnest($2::bigint[]) u
         WHERE c.id = ANY($1)",
        chat_ids,
        user_ids,
    )
    .execute(db)
    .await?;
    Ok(())
}

// Every statement below that adds messages ends by setting the counter of each chat the
// inserted rows (`ins`, with `chat_id` and `seq`) went to, so that the rows and the counters
// cannot disagree:
//
//     UPDATE chats c SET last_seq = m.last, last_activity_at = now()
//     FROM (SELECT chat_id, max(seq) AS last FROM ins GROUP BY chat_id) m WHERE c.id = m.chat_id

/// What [`interleaved_messages`] writes.
#[derive(Clone, Copy, Debug)]
pub struct Interleaved<'a> {
    /// The chat of interest, and how many messages it gets.
    pub chat: i64,
    pub chat_messages: i64,
    /// The chats that get the other rows, spread evenly.
    pub fillers: &'a [i64],
    /// Rows in all.
    pub total: i64,
    pub author: i64,
}

/// Inserts `total` messages by `author` into chats that have none yet: `chat_messages` of them
/// in `chat`, the rest spread evenly over `fillers`; the chats' counters in the same statement.
/// Rows are interleaved as time would interleave them (every `total / chat_messages`-th row
/// belongs to `chat`, each a second after the one before, the newest now), so that the chat's
/// newest rows are not packed together on disk as a bulk load would pack them. A chat that has
/// messages already fails on `messages_chat_seq_key`.
pub async fn interleaved_messages(db: impl PgExecutor<'_>, seed: Interleaved<'_>) -> Result<()> {
    let Interleaved {
        chat,
        chat_messages,
        fillers,
        total,
        author,
    } = seed;
    let stride = total / chat_messages.max(1);
    let fits = if fillers.is_empty() {
        total == chat_messages
    } else {
        stride * chat_messages == total && stride > 1
    };
    if !fits {
        return Err(Error::Interleave {
            total,
            chat: chat_messages,
            fillers: fillers.len(),
        });
    }
    // For row g, not the chat's: j = g - g/stride - 1 counts the rows before it that are not,
    // so (j mod fillers, j div fillers + 1) is a gap-free (chat, seq).
    sqlx::query!(
        "WITH ins AS (
             INSERT INTO messages (chat_id, seq, user_id, content, created_at, updated_at)
             SELECT CASE WHEN g % $2::bigint = 0 THEN $1::bigint
                         ELSE ($3::bigint[])[(1 + (g - g / $2 - 1)
                                                  % cardinality($3::bigint[]))::int] END,
                    CASE WHEN g % $2 = 0 THEN g / $2
                         ELSE (g - g / $2 - 1) / cardinality($3::bigint[]) + 1 END,
                    $5::bigint, 'message ' || g || ' ' || md5(g::text), t, t
             FROM generate_series(1, $4::bigint) g,
                  LATERAL (SELECT now() - ($4 - g) * interval '1 second' AS t) ts
             RETURNING chat_id, seq)
         UPDATE chats c SET last_seq = m.last, last_activity_at = now()
         FROM (SELECT chat_id, max(seq) AS last FROM ins GROUP BY chat_id) m
         WHERE c.id = m.chat_id",
        chat,
        stride,
        fillers,
        total,
        author,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Inserts `count` messages by `author` into a chat that has none yet, all sent now, and sets
/// its counter in the same statement.
pub async fn chat_with_messages(
    db: impl PgExecutor<'_>,
    chat: i64,
    author: i64,
    count: i64,
) -> Result<()> {
    sqlx::query!(
        "WITH ins AS (
             INSERT INTO messages (chat_id, seq, user_id, content)
             SELECT $1::bigint, g, $2::bigint, 'message ' || g
             FROM generate_series(1, $3::bigint) g
             RETURNING chat_id, seq)
         UPDATE chats c SET last_seq = m.last, last_activity_at = now()
         FROM (SELECT chat_id, max(seq) AS last FROM ins GROUP BY chat_id) m
         WHERE c.id = m.chat_id",
        chat,
        author,
        count,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// What a database holds, and how much of it breaks the rules seeding keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Census {
    pub messages: i64,
    /// Chats whose `last_seq` is not their message count: a gap, or a counter out of step.
    pub chats_out_of_step: i64,
    /// Members whose read cursor is past their chat's newest message.
    pub cursors_ahead: i64,
}

/// A live session of `lifetime` for every account: `(user_id, session_id)`, as a login would
/// start them.
pub async fn sessions(
    db: impl PgExecutor<'_>,
    lifetime: std::time::Duration,
) -> Result<Vec<(i64, i64)>> {
    let seconds = lifetime.as_secs_f64();
    let rows = sqlx::query!(
        "INSERT INTO sessions (user_id, expires_at)
         SELECT id, now() + $1 * interval '1 second' FROM users RETURNING user_id, id",
        seconds,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.user_id, r.id)).collect())
}

/// Counts the messages and what breaks the seeding rules. Since `(chat_id, seq)` is unique and
/// `seq` positive, a chat whose count, newest `seq` and `last_seq` agree has `seq` 1 … n.
pub async fn census(db: impl PgExecutor<'_>) -> Result<Census> {
    Ok(sqlx::query_as!(
        Census,
        r#"WITH m AS (SELECT chat_id, count(*) AS n, max(seq) AS top
                      FROM messages GROUP BY chat_id)
           SELECT (SELECT coalesce(sum(n), 0)::bigint FROM m) AS "messages!",
                  (SELECT count(*) FROM chats c LEFT JOIN m ON m.chat_id = c.id
                   WHERE c.last_seq <> coalesce(m.n, 0) OR c.last_seq <> coalesce(m.top, 0))
                      AS "chats_out_of_step!",
                  (SELECT count(*) FROM chat_members cm JOIN chats c ON c.id = cm.chat_id
                   WHERE cm.last_read_seq > c.last_seq) AS "cursors_ahead!""#,
    )
    .fetch_one(db)
    .await?)
}

/// Leaves the product's tables as a long-running database would have them: statistics current
/// and the visibility map set, so that no autovacuum starts in the middle of a measurement.
/// `VACUUM` runs outside a transaction: give it a pool or a connection.
pub async fn settle(db: impl PgExecutor<'_>) -> Result<()> {
    sqlx::raw_sql("VACUUM (ANALYZE) users, chats, chat_members, messages")
        .execute(db)
        .await?;
    Ok(())
}
