//! The databases the benchmark runs on, and what it seeds them with.
//!
//! Everything is made by the library's bulk seeding (`blockchat::seed`): a million messages
//! through the API would take longer than the whole benchmark. The seed keeps the schema's own
//! rules (`seq` gap-free per chat, `chats.last_seq` equal to the newest `seq`), and the benchmark
//! checks them before it measures.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use blockchat::auth::password;
use blockchat::db;
use blockchat::domain::Password;
use blockchat::seed::{self, Interleaved};
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
pub use blockchat::seed::User;

/// What the main database holds.
#[derive(Clone, Debug)]
pub struct Seeded {
    pub hash: String,
    pub reader: User,
    pub senders: Vec<User>,
    pub send_chats: Vec<i64>,
    pub login_users: Vec<User>,
    pub fanout_users: Vec<User>,
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

/// Checks the seeded database against the rules the seed keeps, and then settles it.
async fn verify_and_settle(pool: &PgPool, messages: i64) -> anyhow::Result<()> {
    let census = seed::census(pool).await?;
    ensure!(
        census.chats_out_of_step == 0,
        "{} seeded chats have gaps in seq",
        census.chats_out_of_step
    );
    ensure!(
        census.cursors_ahead == 0,
        "{} seeded read cursors are past their chat's newest message",
        census.cursors_ahead
    );
    ensure!(
        census.messages == messages,
        "seeded {} messages",
        census.messages
    );
    seed::settle(pool).await?;
    Ok(())
}

pub async fn seed_main(pool: &PgPool, sizes: Sizes, hash: &str) -> anyhow::Result<Seeded> {
    let staff = seed::users(pool, "bench_", 2, hash).await?;
    let (author, reader) = (staff[0].clone(), staff[1].clone());
    let senders = seed::users(pool, "sender_", MAX_SEND_CLIENTS, hash).await?;
    let login_users = seed::users(pool, "login_", LOGIN_USERS, hash).await?;
    let fanout_users = seed::users(pool, "member_", crate::fanout::MEMBERS, hash).await?;
    let lambda_user = seed::users(pool, "lambda_", 1, hash).await?.remove(0);

    let send_chats = seed::groups(pool, "send ", SEND_CHATS, author.id).await?;
    let sender_ids: Vec<i64> = senders.iter().map(|u| u.id).collect();
    seed::members(pool, &send_chats, &sender_ids).await?;

    let big_chat = db::chats::insert_group(pool, "big", author.id).await?.id;
    seed::members(pool, &[big_chat], &[author.id, reader.id]).await?;
    let filler_count = (sizes.total_messages - sizes.big_chat_messages) / FILLER_CHAT_MESSAGES;
    let fillers = seed::groups(pool, "filler ", usize::try_from(filler_count)?, author.id).await?;
    seed::members(pool, &fillers, &[author.id]).await?;
    seed::interleaved_messages(
        pool,
        Interleaved {
            chat: big_chat,
            chat_messages: sizes.big_chat_messages,
            fillers: &fillers,
            total: sizes.total_messages,
            author: author.id,
        },
    )
    .await?;

    let lambda_chat = db::chats::insert_group(pool, "lambda", lambda_user.id)
        .await?
        .id;
    seed::members(pool, &[lambda_chat], &[lambda_user.id]).await?;
    seed::chat_with_messages(pool, lambda_chat, lambda_user.id, LAMBDA_CHAT_MESSAGES).await?;

    verify_and_settle(pool, sizes.total_messages + LAMBDA_CHAT_MESSAGES).await?;
    Ok(Seeded {
        hash: hash.to_owned(),
        reader,
        senders,
        send_chats,
        login_users,
        fanout_users,
        big_chat,
        lambda_user,
        lambda_chat,
    })
}

pub async fn seed_small(pool: &PgPool, sizes: Sizes, hash: &str) -> anyhow::Result<SeededSmall> {
    let staff = seed::users(pool, "bench_", 2, hash).await?;
    let chat = db::chats::insert_group(pool, "small", staff[0].id)
        .await?
        .id;
    seed::members(pool, &[chat], &[staff[0].id, staff[1].id]).await?;
    let n = sizes.small_table_messages;
    seed::interleaved_messages(
        pool,
        Interleaved {
            chat,
            chat_messages: n,
            fillers: &[],
            total: n,
            author: staff[0].id,
        },
    )
    .await?;
    verify_and_settle(pool, n).await?;
    Ok(SeededSmall {
        reader: staff[1].clone(),
        chat,
    })
}

#[cfg(test)]
mod tests {
    use blockchat::db;
    use blockchat::db::messages::{Order, Sent};
    use blockchat::seed::{self, Census, Interleaved};
    use blockchat_local::postgres::{Cluster, ClusterOptions};

    use super::*;

    const MAIN: &str = "blockchat_bench_test";
    const SMALL: &str = "blockchat_bench_test_small";

    /// A throwaway cluster of the tests' own, beside the benchmark's data in the target folder.
    async fn server() -> Server {
        let dir = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("bench-test-data")))
            .expect("the test binary is in target/<profile>/deps");
        let options = ClusterOptions::new(dir.join("postgres"))
            .ephemeral()
            .replace_running(true);
        let cluster = tokio::task::spawn_blocking(move || Cluster::start(options))
            .await
            .expect("join")
            .expect("cannot start PostgreSQL");
        Server::Embedded(cluster)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seeding_keeps_seq_gap_free_and_the_product_carries_on_from_it() {
        let server = server().await;
        let sizes = Sizes {
            total_messages: 4_000,
            big_chat_messages: 1_000,
            small_table_messages: 100,
        };
        let pool = server.fresh_database(MAIN).await.expect("main database");
        let seeded = seed_main(&pool, sizes, "not-a-hash").await.expect("seed");
        assert_eq!(
            seed::census(&pool).await.expect("census"),
            Census {
                messages: 4_000 + LAMBDA_CHAT_MESSAGES,
                chats_out_of_step: 0,
                cursors_ahead: 0,
            }
        );
        let big = db::chats::find_for_member(&pool, seeded.big_chat, seeded.reader.id)
            .await
            .expect("find")
            .expect("the reader is a member");
        assert_eq!((big.chat.last_seq, big.last_read_seq), (1_000, 0));

        // The newest page is the big chat's newest seqs, newest first in time too.
        let page = db::messages::page(
            &pool,
            seeded.big_chat,
            Order::NewestFirst { before: None },
            0,
            50,
        )
        .await
        .expect("page");
        let seqs: Vec<i64> = page.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (951..=1_000).rev().collect::<Vec<_>>());
        assert!(page.windows(2).all(|w| w[0].created_at > w[1].created_at));

        // A send through the product takes the next seq.
        let author = page[0].user_id.expect("an author");
        let sent =
            db::messages::insert(&pool, seeded.big_chat, author, "after the seed", None, None)
                .await
                .expect("send")
                .expect("the author is a member");
        let Sent::Created { row, .. } = sent else {
            panic!("a fresh send is no duplicate");
        };
        assert_eq!(row.seq, 1_001);
        let census = seed::census(&pool).await.expect("census");
        assert_eq!((census.chats_out_of_step, census.cursors_ahead), (0, 0));

        // A chat that has messages cannot be seeded again: its seqs would collide.
        let again =
            seed::chat_with_messages(&pool, seeded.lambda_chat, seeded.lambda_user.id, 5).await;
        assert!(matches!(again, Err(seed::Error::Database(_))), "{again:?}");
        let uneven = seed::interleaved_messages(
            &pool,
            Interleaved {
                chat: seeded.big_chat,
                chat_messages: 3,
                fillers: &seeded.send_chats,
                total: 10,
                author,
            },
        )
        .await;
        assert!(
            matches!(uneven, Err(seed::Error::Interleave { .. })),
            "{uneven:?}"
        );
        pool.close().await;

        let pool = server.fresh_database(SMALL).await.expect("small database");
        let small = seed_small(&pool, sizes, "not-a-hash").await.expect("seed");
        let chat = db::chats::find_for_member(&pool, small.chat, small.reader.id)
            .await
            .expect("find")
            .expect("the reader is a member");
        assert_eq!(chat.chat.last_seq, 100);
        pool.close().await;

        server.drop_database(MAIN).await.expect("drop");
        server.drop_database(SMALL).await.expect("drop");
        server.stop().await.expect("stop");
    }
}
