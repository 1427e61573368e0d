//! The database goes away and comes back: requests are answered 503 `database_unavailable`
//! with `Retry-After` within their deadline, never a 500 and never a hang, and the gateway
//! serves again once the database is back, without a restart.
//!
//! Each test runs a cluster of its own (the shared test cluster must not be disturbed) and a
//! gateway over it with short timeouts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use blockchat_local::postgres::{Cluster, ClusterOptions};
use blockchat_local::{Options, RunningGateway};
use serde_json::{Value, json};
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::client::{PASSWORD, Reply, Socket, call_url, sign_up};
use crate::common::{TEST_JWT_SECRET, fresh_dir, remove_dir};

const DATABASE: &str = "blockchat";

/// A request waits this long for a connection before its 503.
const ACQUIRE_TIMEOUT_MS: &str = "500";
/// A request's whole deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);

/// Far beyond the deadline, far below a hang: an answer later than this fails the test.
const PROMPT: Duration = Duration::from_secs(5);
/// How long the database may take to serve again once it is back.
const RECOVERY: Duration = Duration::from_secs(10);

/// A gateway over a cluster of its own, which the test stops, freezes and brings back.
struct Outage {
    cluster: Option<Cluster>,
    options: ClusterOptions,
    dir: PathBuf,
    gateway: Option<RunningGateway>,
    client: reqwest::Client,
}

impl Outage {
    async fn start(name: &str) -> Self {
        let dir = fresh_dir(name);
        let options = ClusterOptions::new(&dir).ephemeral();
        let cluster = start_cluster(options.clone()).await;
        cluster
            .ensure_database(DATABASE)
            .await
            .expect("create the database");
        let settings = BTreeMap::from([
            ("DB_MAX_CONNECTIONS".to_owned(), "2".to_owned()),
            (
                "DB_ACQUIRE_TIMEOUT_MS".to_owned(),
                ACQUIRE_TIMEOUT_MS.to_owned(),
            ),
            (
                "REQUEST_TIMEOUT_MS".to_owned(),
                REQUEST_TIMEOUT.as_millis().to_string(),
            ),
        ]);
        let gateway = blockchat_local::start(Options {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ws_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.clone(),
            database_url: Some(cluster.url(DATABASE)),
            jwt_secret: Some(TEST_JWT_SECRET.to_owned()),
            settings,
            ..Options::default()
        })
        .await
        .expect("cannot start the gateway");
        Self {
            cluster: Some(cluster),
            options,
            dir,
            gateway: Some(gateway),
            client: reqwest::Client::new(),
        }
    }

    fn cluster(&self) -> &Cluster {
        self.cluster.as_ref().expect("the cluster is running")
    }

    fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("the gateway runs until drop")
    }

    /// A pool of the test's own on the gateway's database: one connection to hold a lock,
    /// one to watch the others.
    async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(self.cluster().connect_options(DATABASE))
            .await
            .expect("connect")
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>) -> Reply {
        self.send(method, path, token, None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let url = format!("http://{}{path}", self.gateway().http_addr());
        call_url(&self.client, method, url, token, body).await
    }

    /// Registers and logs in `username`; answers the access token.
    async fn sign_up(&self, username: &str) -> String {
        let base = format!("http://{}", self.gateway().http_addr());
        sign_up(&self.client, &base, username).await.token
    }

    async fn me(&self, token: &str) -> Reply {
        self.call(reqwest::Method::GET, "/api/auth/me", Some(token))
            .await
    }

    async fn health(&self) -> Reply {
        self.call(reqwest::Method::GET, "/api/health", None).await
    }

    /// Waits until `/api/auth/me` answers 200 again, and says how long that took.
    async fn until_served(&self, token: &str) -> Duration {
        let started = Instant::now();
        loop {
            let reply = self.me(token).await;
            if reply.status == 200 {
                return started.elapsed();
            }
            assert_unavailable(&reply);
            assert!(
                started.elapsed() < RECOVERY,
                "still {} after {RECOVERY:?}: {}",
                reply.status,
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop_cluster(&mut self) {
        let cluster = self.cluster.take().expect("the cluster is running");
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .expect("join")
            .expect("stop");
    }

    async fn restart_cluster(&mut self) {
        self.cluster = Some(start_cluster(self.options.clone()).await);
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        drop(self.gateway.take());
        if let Some(cluster) = self.cluster.take() {
            let data = cluster.data_dir().to_owned();
            let _ = cluster.thaw();
            let _ = cluster.stop();
            remove_dir(&data);
        }
        remove_dir(&self.dir);
    }
}

async fn start_cluster(options: ClusterOptions) -> Cluster {
    tokio::task::spawn_blocking(move || Cluster::start(options))
        .await
        .expect("join")
        .expect("start the cluster")
}

/// A 503 `database_unavailable` problem with a `Retry-After` of whole seconds.
#[track_caller]
fn assert_unavailable(reply: &Reply) {
    reply.assert_problem(503, "database_unavailable");
    let retry_after = reply
        .header("retry-after")
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "Retry-After: {retry_after:?}"
    );
}

/// Runs `request` and asserts that it answers within [`PROMPT`].
async fn promptly<F: std::future::Future<Output = Reply>>(request: F) -> Reply {
    let started = Instant::now();
    let reply = tokio::time::timeout(PROMPT, request)
        .await
        .unwrap_or_else(|_| panic!("no answer within {PROMPT:?}: the request hangs"));
    assert!(started.elapsed() < PROMPT);
    reply
}

#[tokio::test]
async fn health_is_ok_while_the_database_answers() {
    let outage = Outage::start("outage-health").await;
    let reply = outage.health().await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "ok");
    assert_eq!(reply.body["database"], "reachable");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn a_stopped_database_is_503_with_retry_after_until_it_is_back() {
    let mut outage = Outage::start("outage-stop").await;
    let token = outage.sign_up("alice").await;
    assert_eq!(outage.me(&token).await.status, 200);
    let ws_url = outage.gateway().ws_url();
    let mut socket = Socket::open(&ws_url, &token, None).await.expect("connect");

    outage.stop_cluster().await;

    assert_unavailable(&promptly(outage.me(&token)).await);
    assert_unavailable(&promptly(outage.health()).await);
    let login = promptly(outage.send(
        reqwest::Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "alice", "password": PASSWORD})),
    ))
    .await;
    assert_unavailable(&login);
    socket.send(json!({"action": "ping"})).await;
    let frame = socket.expect("error").await;
    assert_eq!(frame["code"], "database_unavailable", "{frame}");

    outage.restart_cluster().await;

    outage.until_served(&token).await;
    assert_eq!(outage.health().await.status, 200);
    socket.send(json!({"action": "ping"})).await;
    socket.expect("pong").await;
}

#[tokio::test]
async fn a_frozen_database_is_503_within_the_deadline_not_a_hang() {
    let outage = Outage::start("outage-freeze").await;
    let token = outage.sign_up("alice").await;
    let created = outage
        .send(
            reqwest::Method::POST,
            "/api/chats",
            Some(&token),
            Some(json!({"name": "room", "user_ids": []})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let chat = created.body["id"].as_i64().expect("chat id");
    let ws_url = outage.gateway().ws_url();
    let mut socket = Socket::open(&ws_url, &token, None).await.expect("connect");

    // A send that is in flight, on a connection of its own, when the database stops answering:
    // it waits on the chat's row, which the test holds.
    let pool = outage.pool().await;
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query("SELECT id FROM chats WHERE id = $1 FOR UPDATE")
        .bind(chat)
        .execute(&mut *holder)
        .await
        .expect("lock the chat");
    let in_flight = {
        let client = outage.client.clone();
        let url = format!(
            "http://{}/api/chats/{chat}/messages",
            outage.gateway().http_addr()
        );
        let token = token.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let body = json!({"content": "hello", "client_id": "c-1"});
            let reply = call_url(
                &client,
                reqwest::Method::POST,
                url,
                Some(&token),
                Some(body),
            );
            let reply = reply.await;
            (started.elapsed(), reply)
        })
    };
    until_waiting_for_a_lock(&pool).await;

    outage.cluster().freeze().expect("freeze");

    let (took, reply) = tokio::time::timeout(PROMPT, in_flight)
        .await
        .expect("the send in flight hangs")
        .expect("join");
    assert_unavailable(&reply);
    assert!(took < PROMPT, "{took:?}");
    assert_unavailable(&promptly(outage.me(&token)).await);
    assert_unavailable(&promptly(outage.health()).await);
    socket.send(json!({"action": "ping"})).await;
    let frame = socket.expect("error").await;
    assert_eq!(frame["code"], "database_unavailable", "{frame}");

    outage.cluster().thaw().expect("thaw");
    holder.rollback().await.expect("release the chat");

    outage.until_served(&token).await;
    // The abandoned send may have gone through once the lock was released; its `client_id`
    // makes the retry safe either way: one message.
    let retried = outage
        .send(
            reqwest::Method::POST,
            &format!("/api/chats/{chat}/messages"),
            Some(&token),
            Some(json!({"content": "hello", "client_id": "c-1"})),
        )
        .await;
    assert!(
        retried.status == 201 || retried.status == 200,
        "{}",
        retried.body
    );
    let messages = outage
        .call(
            reqwest::Method::GET,
            &format!("/api/chats/{chat}/messages"),
            Some(&token),
        )
        .await;
    assert_eq!(messages.status, 200, "{}", messages.body);
    assert_eq!(messages.body.as_array().map(Vec::len), Some(1));
    assert_eq!(outage.health().await.status, 200);
    pool.close().await;
}

/// Returns once a session of the database waits for a lock.
async fn until_waiting_for_a_lock(pool: &PgPool) {
    for _ in 0..250 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the send never waited for the chat's lock");
}
