//! End-to-end test support: the gateway on port 0 over a database of its own.
//!
//! One embedded cluster serves every test of a process. Test processes take turns on it (a file
//! lock), so each one owns the cluster it uses and may clear what earlier runs left behind. A
//! template database holds the migrated schema; each test gets a copy, a few milliseconds' work.
//! A test of the database alone takes just the copy ([`TestDatabase::create`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use blockchat_local::postgres::{self, Cluster, ClusterOptions, FileLock};
use blockchat_local::{Options, RunningGateway};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

/// Signs the tokens of every test gateway.
pub const TEST_JWT_SECRET: &str = "test-only-secret-0123456789abcdef0123456789abcdef";

pub const TEMPLATE_DATABASE: &str = "blockchat_template";
pub const TEST_DATABASE_PREFIX: &str = "test_";

/// Where test clusters keep their data: under the target folder, so `cargo clean` takes it.
pub fn test_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

struct SharedCluster {
    cluster: Cluster,
    _turn: FileLock,
}

static SHARED: OnceLock<SharedCluster> = OnceLock::new();
static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);

/// The process's cluster, started on first use. Each `#[tokio::test]` has a runtime of its own,
/// so the cluster is set up on a thread of its own with a runtime that lives only for that.
fn shared() -> &'static SharedCluster {
    SHARED.get_or_init(|| {
        std::thread::spawn(set_up_cluster)
            .join()
            .expect("the cluster set-up panicked")
    })
}

fn set_up_cluster() -> SharedCluster {
    let dir = test_dir();
    std::fs::create_dir_all(&dir).expect("cannot create the test folder");
    let turn = FileLock::acquire(&dir.join("pg-tests.lock")).expect("cannot lock the test cluster");
    let cluster = Cluster::start(
        ClusterOptions::new(dir.join("pg"))
            .ephemeral()
            .replace_running(true),
    )
    .expect("cannot start the test cluster");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(prepare_template(&cluster))
        .expect("cannot prepare the template database");
    SharedCluster {
        cluster,
        _turn: turn,
    }
}

/// Clears the databases earlier runs left and builds the template afresh, so that it always has
/// the migrations of this build.
async fn prepare_template(cluster: &Cluster) -> anyhow::Result<()> {
    let mut admin = cluster.connect_maintenance().await?;
    for name in postgres::databases_with_prefix(&mut admin, TEST_DATABASE_PREFIX).await? {
        postgres::drop_database(&mut admin, &name).await?;
    }
    postgres::drop_database(&mut admin, TEMPLATE_DATABASE).await?;
    postgres::create_database(&mut admin, TEMPLATE_DATABASE, None).await?;
    admin.close().await?;

    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(cluster.connect_options(TEMPLATE_DATABASE))
        .await?;
    postgres::migrate(&pool).await?;
    // A template with a session open cannot be copied.
    pool.close().await;
    Ok(())
}

/// A fresh copy of the migrated database, dropped with this value.
pub struct TestDatabase {
    pub name: String,
    /// On this database, for arranging and checking what the API cannot show.
    pub pool: PgPool,
}

impl TestDatabase {
    /// A copy of the template with a pool of `max_connections` on it.
    pub async fn create(max_connections: u32) -> Self {
        let cluster = &shared().cluster;
        let name = format!(
            "{TEST_DATABASE_PREFIX}{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = cluster
            .connect_maintenance()
            .await
            .expect("cannot connect to the test cluster");
        postgres::create_database(&mut admin, &name, Some(TEMPLATE_DATABASE))
            .await
            .expect("cannot copy the template database");
        let _ = admin.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(cluster.connect_options(&name))
            .await
            .expect("cannot connect to the test database");
        Self { name, pool }
    }

    /// Returns once `count` sessions on this database wait for a lock (that the test holds), so
    /// that what they do next happens while all of them are in flight.
    pub async fn until_waiting_for_locks(&self, count: i64) {
        let mut waiting = 0;
        for _ in 0..500 {
            waiting = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&self.pool)
            .await
            .expect("pg_stat_activity");
            if waiting >= count {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("{waiting} sessions wait for a lock after 10 s, not {count}");
    }

    /// The URL a server of the product connects with.
    pub fn url(&self) -> String {
        shared().cluster.url(&self.name)
    }
}

impl Drop for TestDatabase {
    /// The test's runtime is busy dropping us, so the drop runs on a thread with a small runtime
    /// of its own; `FORCE` ends the sessions still open.
    fn drop(&mut self) {
        let Some(shared) = SHARED.get() else { return };
        let admin = shared
            .cluster
            .connect_options(postgres::MAINTENANCE_DATABASE);
        let database = self.name.clone();
        let _ = std::thread::spawn(move || drop_database(admin, &database)).join();
    }
}

/// The gateway, serving one test over a fresh copy of the migrated database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// The gateway's database; `db.pool` arranges and checks what the API cannot show.
    pub db: TestDatabase,
    gateway: Option<RunningGateway>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// With configuration values (`ACCESS_TOKEN_TTL_SECS`, `LOGIN_FAILURES_PER_ACCOUNT`, ...)
    /// layered over the test defaults.
    pub async fn spawn_with(settings: &[(&str, &str)]) -> Self {
        // `RUST_LOG=info cargo test …` shows the gateway's logs.
        if std::env::var_os("RUST_LOG").is_some() {
            blockchat::telemetry::init();
        }
        let db = TestDatabase::create(2).await;
        // Every test client registers from 127.0.0.1; the registration limit has a test of its own.
        let mut options_settings = BTreeMap::from([
            ("DB_MAX_CONNECTIONS".to_owned(), "4".to_owned()),
            ("REGISTRATIONS_PER_ADDRESS".to_owned(), "100000".to_owned()),
            // Tests drop connections behind the gateway's back and expect the next push to
            // forget them at once; the window for connections still opening has a test of its own.
            ("WS_CONNECT_WINDOW_MS".to_owned(), "0".to_owned()),
        ]);
        options_settings.extend(
            settings
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        let gateway = blockchat_local::start(Options {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ws_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: test_dir(),
            database_url: Some(db.url()),
            jwt_secret: Some(TEST_JWT_SECRET.to_owned()),
            settings: options_settings,
            ..Options::default()
        })
        .await
        .expect("cannot start the gateway");
        Self {
            addr: gateway.http_addr(),
            client: reqwest::Client::new(),
            db,
            gateway: Some(gateway),
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("the gateway runs until drop")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request failed")
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request failed")
    }
}

impl Drop for TestApp {
    /// The gateway stops before its database goes (with the `db` field, after this).
    fn drop(&mut self) {
        drop(self.gateway.take());
    }
}

fn drop_database(admin: PgConnectOptions, database: &str) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
            let _ = postgres::drop_database(&mut conn, database).await;
            let _ = conn.close().await;
        }
    });
}

/// A folder of its own under the test folder, emptied first.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = test_dir().join(format!("{name}-{}", std::process::id()));
    remove_dir(&dir);
    dir
}

/// Removes `dir` and the start lock a cluster keeps beside it.
pub fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let mut lock = dir.as_os_str().to_owned();
    lock.push(".lock");
    let _ = std::fs::remove_file(PathBuf::from(lock));
}
