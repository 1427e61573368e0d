//! The databases the benchmark runs on, and what it seeds them with.
//!
//! Everything is made in SQL, straight: a million messages through the API would take longer
//! than the whole benchmark. The seed keeps the schema's own rules: `seq` gap-free per chat and
//! `chats.last_seq` equal to the newest `seq`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use blockchat::auth::password;
use blockchat::domain::Password;
use blockchat_local::postgres::{self, Cluster, ClusterOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// The two databases of a run, made afresh each time.
pub const MAIN_DATABASE: &str = "blockchat_bench";
pub const SMALL_DATABASE: &str = "blockchat_bench_small";

/// The password every seeded account shares (its hash is computed once).
pub const PASSWORD: &str = "bench-password-0123";

pub const SEND_CHATS: usize = 64;
pub const MAX_SEND_CLIENTS: usize = 64;
pub const LOGIN_USERS: usize = 8;
/// Messages in each chat of the million-row table other than the big one.
const FILLER_CHAT_MESSAGES: i64 = 1_000;
/// Messages in the chat the cold-start `messages` function lists.
const LAMBDA_CHAT_MESSAGES: i64 = 100;

/// A PostgreSQL server: the embedded cluster the benchmark started, or one given by URL.
pub enum Server {
    Embedded(Cluster),
    External(url::Url),
}

impl Server {
    /// Starts (or finds running) the benchmark's own cluster in `data_dir`. Commits stay
    /// durable (PostgreSQL's defaults): a chat service keeps what it acknowledged, so the
    /// database's limit is measured with the fsync it would really pay.
    pub async fn embedded(data_dir: &Path) -> anyhow::Result<Self> {
        let options = ClusterOptions::new(data_dir.join("postgres"));
        let cluster = tokio::task::spawn_blocking(move || Cluster::start(options))
            .await
            .context("the PostgreSQL start was interrupted")??;
        Ok(Self::Embedded(cluster))
    }

    pub fn external(url: &str) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url).context("DATABASE_URL is not a valid URL")?;
        Ok(Self::External(parsed))
    }

    /// The postmaster, when it is ours to meter.
    pub fn postmaster(&self) -> Option<i32> {
        match self {
            Server::Embedded(cluster) => Some(cluster.pid()),
            Server::External(_) => None,
        }
    }

    pub fn url(&self, database: &str) -> String {
        match self {
            Server::Embedded(cluster) => cluster.url(database),
            Server::External(base) => {
                let mut url = base.clone();
                url.set_path(&format!("/{database}"));
                url.to_string()
            }
        }
    }

    /// A connection for creating and dropping databases: the maintenance database of our own
    /// cluster, or the database the given URL names.
    async fn admin(&self) -> anyhow::Result<PgConnection> {
        match self {
            Server::Embedded(cluster) => Ok(cluster.connect_maintenance().await?),
            Server::External(base) => {
                let options: PgConnectOptions = base.as_str().parse()?;
                Ok(options.connect().await?)
            }
        }
    }

    /// Drops `database` if a previous run left it, creates it and applies the migrations.
    pub async fn fresh_database(&self, database: &str) -> anyhow::Result<PgPool> {
        let mut admin = self.admin().await.context("cannot reach PostgreSQL")?;
        postgres::drop_database(&mut admin, database).await?;
        postgres::create_database(&mut admin, database, None)
            .await
            .with_context(|| format!("cannot create the database {database}"))?;
        admin.close().await?;
        let pool = pool(&self.url(database), 4).await?;
        postgres::migrate(&pool).await?;
        Ok(pool)
    }

    pub async fn drop_database(&self, database: &str) -> anyhow::Result<()> {
        let mut admin = self.admin().await?;
        postgres::drop_database(&mut admin, database).await?;
        admin.close().await?;
        Ok(())
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        if let Server::Embedded(cluster) = self {
            tokio::task::spawn_blocking(move || cluster.stop())
                .await
                .context("the PostgreSQL stop was interrupted")??;
        }
        Ok(())
    }
}

pub async fn pool(url: &str, connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .context("cannot connect to the benchmark database")
}

/// How big the listing workload's tables are.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub total_messages: i64,
    pub big_chat_messages: i64,
    pub small_table_messages: i64,
}

/// A user the benchmark acts as.
#[derive(Clone, Debug)]
pub struct User {
    pub id: i64,
    pub username: String,
}

/// What the main database holds.
#[derive(Clone, Debug)]
pub struct Seeded {
    pub hash: String,
    pub reader: User,
    pub senders: Vec<User>,
    pub send_chats: Vec<i64>,
    pub login_users: Vec<User>,
    pub fanout_users: Vec<User>,
    pub fanout_chat: i64,
    pub big_chat: i64,
    pub lambda_user: User,
    pub lambda_chat: i64,
}

/// The small database: one chat, the whole table.
#[derive(Clone, Debug)]
pub struct SeededSmall {
    pub reader: User,
    pub chat: i64,
}

/// The one password hash every seeded account shares, made the way registration makes it.
pub async fn password_hash() -> anyhow::Result<String> {
    let password = Password::parse(PASSWORD.to_owned())?;
    Ok(password::hash(&password).await?)
}

async fn users(pool: &PgPool, prefix: &str, count: usize, hash: &str) -> anyhow::Result<Vec<User>> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "INSERT INTO users (username, email, password_hash) \
         SELECT $1 || g, $1 || g || '@bench.invalid', $3 FROM generate_series(1, $2) g \
         RETURNING id, username",
    )
    .bind(prefix)
    .bind(i64::try_from(count)?)
    .bind(hash)
    .fetch_all(pool)
    .await?;
    let mut users: Vec<User> = rows
        .into_iter()
        .map(|(id, username)| User { id, username })
        .collect();
    users.sort_by_key(|u| u.id);
    ensure!(
        users.len() == count,
        "created {} of {count} users",
        users.len()
    );
    Ok(users)
}

async fn group(pool: &PgPool, name: &str, created_by: i64) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO chats (name, is_group, created_by) VALUES ($1, true, $2) RETURNING id",
    )
    .bind(name)
    .bind(created_by)
    .fetch_one(pool)
    .await?)
}

async fn groups(
    pool: &PgPool,
    prefix: &str,
    count: usize,
    created_by: i64,
) -> anyhow::Result<Vec<i64>> {
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO chats (name, is_group, created_by) \
         SELECT $1 || g, true, $3 FROM generate_series(1, $2) g RETURNING id",
    )
    .bind(prefix)
    .bind(i64::try_from(count)?)
    .bind(created_by)
    .fetch_all(pool)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

async fn members(pool: &PgPool, chats: &[i64], users: &[i64]) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO chat_members (chat_id, user_id) \
         SELECT c, u FROM unnest($1::bigint[]) c, unnest($2::bigint[]) u",
    )
    .bind(chats)
    .bind(users)
    .execute(pool)
    .await?;
    Ok(())
}

/// Inserts `total` messages by `author`: `big` of them in `big_chat`, the rest spread evenly over
/// `fillers`. Rows are interleaved as time would interleave them (every `total / big`-th row
/// belongs to the big chat), so that the big chat's newest rows are not packed together on disk
/// as a bulk load would pack them.
async fn messages(
    pool: &PgPool,
    big_chat: i64,
    big: i64,
    fillers: &[i64],
    total: i64,
    author: i64,
) -> anyhow::Result<()> {
    let stride = total / big.max(1);
    if fillers.is_empty() {
        ensure!(total == big, "rows beyond the big chat need filler chats");
    } else {
        ensure!(
            stride * big == total && stride > 1,
            "{total} rows cannot interleave a chat of {big}"
        );
    }
    // For row g, not the big chat's: j = g - g/stride - 1 counts the rows before it that are
    // not, so (j mod fillers, j div fillers + 1) is a gap-free (chat, seq).
    sqlx::query(
        "INSERT INTO messages (chat_id, seq, user_id, content, created_at, updated_at) \
         SELECT CASE WHEN g % $2 = 0 THEN $1 \
                     ELSE ($3::bigint[])[(1 + (g - g / $2 - 1) % cardinality($3::bigint[]))::int] END, \
                CASE WHEN g % $2 = 0 THEN g / $2 \
                     ELSE (g - g / $2 - 1) / cardinality($3::bigint[]) + 1 END, \
                $5, 'message ' || g || ' ' || md5(g::text), t, t \
         FROM generate_series(1, $4::bigint) g, \
              LATERAL (SELECT now() - ($4 - g) * interval '1 second' AS t) ts",
    )
    .bind(big_chat)
    .bind(stride)
    .bind(fillers)
    .bind(total)
    .bind(author)
    .execute(pool)
    .await?;
    Ok(())
}

/// Sets every chat's counter to its newest message, as sends would have.
async fn counters(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE chats c SET last_seq = m.last, last_activity_at = now() \
         FROM (SELECT chat_id, max(seq) AS last FROM messages GROUP BY chat_id) m \
         WHERE c.id = m.chat_id",
    )
    .execute(pool)
    .await?;
    let broken: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM chats c WHERE c.last_seq <> \
             (SELECT count(*) FROM messages m WHERE m.chat_id = c.id)",
    )
    .fetch_one(pool)
    .await?;
    if broken > 0 {
        bail!("{broken} seeded chats have gaps in seq");
    }
    Ok(())
}

/// Leaves the tables as a long-running database would have them: statistics current and the
/// visibility map set, so that no autovacuum starts in the middle of a measurement.
async fn settle(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql("VACUUM (ANALYZE) users, chats, chat_members, messages")
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn seed_main(pool: &PgPool, sizes: Sizes, hash: &str) -> anyhow::Result<Seeded> {
    let staff = users(pool, "bench_", 2, hash).await?;
    let (author, reader) = (staff[0].clone(), staff[1].clone());
    let senders = users(pool, "sender_", MAX_SEND_CLIENTS, hash).await?;
    let login_users = users(pool, "login_", LOGIN_USERS, hash).await?;
    let fanout_users = users(pool, "member_", crate::fanout::MEMBERS, hash).await?;
    let lambda_user = users(pool, "lambda_", 1, hash).await?.remove(0);

    let send_chats = groups(pool, "send ", SEND_CHATS, author.id).await?;
    let sender_ids: Vec<i64> = senders.iter().map(|u| u.id).collect();
    members(pool, &send_chats, &sender_ids).await?;

    let big_chat = group(pool, "big", author.id).await?;
    members(pool, &[big_chat], &[author.id, reader.id]).await?;
    let filler_count = (sizes.total_messages - sizes.big_chat_messages) / FILLER_CHAT_MESSAGES;
    let fillers = groups(pool, "filler ", usize::try_from(filler_count)?, author.id).await?;
    members(pool, &fillers, &[author.id]).await?;
    messages(
        pool,
        big_chat,
        sizes.big_chat_messages,
        &fillers,
        sizes.total_messages,
        author.id,
    )
    .await?;

    let lambda_chat = group(pool, "lambda", lambda_user.id).await?;
    members(pool, &[lambda_chat], &[lambda_user.id]).await?;
    sqlx::query(
        "INSERT INTO messages (chat_id, seq, user_id, content) \
         SELECT $1, g, $2, 'message ' || g FROM generate_series(1, $3::bigint) g",
    )
    .bind(lambda_chat)
    .bind(lambda_user.id)
    .bind(LAMBDA_CHAT_MESSAGES)
    .execute(pool)
    .await?;

    // Its members join only once they are all connected (see `fanout`).
    let fanout_chat = group(pool, "fan-out", fanout_users[0].id).await?;

    counters(pool).await?;
    settle(pool).await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(pool)
        .await?;
    ensure!(
        total == sizes.total_messages + LAMBDA_CHAT_MESSAGES,
        "seeded {total} messages"
    );
    Ok(Seeded {
        hash: hash.to_owned(),
        reader,
        senders,
        send_chats,
        login_users,
        fanout_users,
        fanout_chat,
        big_chat,
        lambda_user,
        lambda_chat,
    })
}

pub async fn seed_small(pool: &PgPool, sizes: Sizes, hash: &str) -> anyhow::Result<SeededSmall> {
    let staff = users(pool, "bench_", 2, hash).await?;
    let chat = group(pool, "small", staff[0].id).await?;
    members(pool, &[chat], &[staff[0].id, staff[1].id]).await?;
    let n = sizes.small_table_messages;
    messages(pool, chat, n, &[], n, staff[0].id).await?;
    counters(pool).await?;
    settle(pool).await?;
    Ok(SeededSmall {
        reader: staff[1].clone(),
        chat,
    })
}
