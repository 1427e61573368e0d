//! The local gateway as a client sees it, and the embedded cluster under it.

use std::net::SocketAddr;

use crate::common::{TestApp, fresh_dir, remove_dir};
use blockchat_local::postgres::{Cluster, ClusterOptions, PgError};
use blockchat_local::{Options, postgres};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

#[tokio::test]
async fn unknown_route_under_api_is_a_problem_404() {
    let app = TestApp::spawn().await;

    let response = app.get("/api/no-such-route").await;

    assert_eq!(response.status(), 404);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(
        content_type.starts_with("application/problem+json"),
        "{content_type}"
    );
    assert!(response.headers().contains_key("apigw-requestid"));
}

#[tokio::test]
async fn register_through_the_gateway_is_201() {
    let app = TestApp::spawn().await;

    let response = app
        .post_json(
            "/api/auth/register",
            &json!({"username": "alice", "email": "alice@example.com", "password": "correct horse battery"}),
        )
        .await;

    assert_eq!(response.status(), 201, "{:?}", response.text().await);
}

#[tokio::test]
async fn each_test_has_a_database_of_its_own() {
    let first = TestApp::spawn().await;
    let second = TestApp::spawn().await;
    assert_ne!(first.db.name, second.db.name);

    sqlx::raw_sql("CREATE TABLE only_in_first (id int)")
        .execute(&first.db.pool)
        .await
        .expect("create");
    let seen: Option<String> = sqlx::query_scalar("SELECT to_regclass('only_in_first')::text")
        .fetch_one(&second.db.pool)
        .await
        .expect("query");
    assert_eq!(seen, None);
}

#[tokio::test]
async fn payloads_over_api_gateway_limit_are_refused_before_the_function() {
    let app = TestApp::spawn().await;

    let response = app
        .client
        .post(app.url("/api/auth/register"))
        .header("content-type", "application/json")
        .header("content-length", (10 * 1024 * 1024 + 1).to_string())
        .body(vec![b' '; 10 * 1024 * 1024 + 1])
        .send()
        .await
        .expect("request");

    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body, json!({"message": "Request Entity Too Large"}));
}

#[tokio::test]
async fn embedded_cluster_keeps_its_data_across_restarts() {
    let dir = fresh_dir("pg-restart");

    let first = start_cluster(ClusterOptions::new(&dir)).await;
    // Where the data is: `dir` itself, or a folder of its own when (as root) the `postgres` user
    // cannot reach `dir`.
    let data = first.data_dir().to_owned();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(first.connect_options(postgres::MAINTENANCE_DATABASE))
        .await
        .expect("connect");
    sqlx::raw_sql("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('still here')")
        .execute(&pool)
        .await
        .expect("write");
    pool.close().await;
    let first_pid = first.pid();
    tokio::task::spawn_blocking(move || first.stop())
        .await
        .expect("join")
        .expect("stop");
    assert!(
        !data.join("postmaster.pid").exists(),
        "a clean stop removes the pid file"
    );

    let second = start_cluster(ClusterOptions::new(&dir)).await;
    assert_ne!(second.pid(), first_pid);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&second.url(postgres::MAINTENANCE_DATABASE))
        .await
        .expect("connect by URL");
    let note: String = sqlx::query_scalar("SELECT note FROM kept")
        .fetch_one(&pool)
        .await
        .expect("the table survived");
    assert_eq!(note, "still here");
    pool.close().await;

    // A second start on a folder that is being served uses that server and leaves it running.
    let again = start_cluster(ClusterOptions::new(&dir)).await;
    assert!(!again.is_owned());
    assert_eq!(again.pid(), second.pid());
    drop(again);
    assert!(data.join("postmaster.pid").exists());

    tokio::task::spawn_blocking(move || second.stop())
        .await
        .expect("join")
        .expect("stop");
    remove_dir(&dir);
    remove_dir(&data);
}

#[tokio::test]
async fn a_pid_file_left_by_a_dead_server_does_not_block_the_start() {
    let dir = fresh_dir("pg-stale");
    let cluster = start_cluster(ClusterOptions::new(&dir).ephemeral()).await;
    let data = cluster.data_dir().to_owned();
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .expect("join")
        .expect("stop");
    // What a server killed outright leaves: its pid file, naming a process that is gone.
    std::fs::write(
        data.join("postmaster.pid"),
        format!(
            "{}\n{}\n0\n5432\n{}\n\n0 0\nready   \n",
            i32::MAX - 1,
            data.display(),
            data.display()
        ),
    )
    .expect("write");

    let cluster = start_cluster(ClusterOptions::new(&dir).ephemeral()).await;
    assert!(cluster.is_owned());
    assert_eq!(cluster.data_dir(), data);

    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .expect("join")
        .expect("stop");
    remove_dir(&dir);
    remove_dir(&data);
}

#[tokio::test]
async fn missing_server_binaries_say_what_to_install() {
    let dir = fresh_dir("no-binaries");
    let empty = dir.join("bin");
    std::fs::create_dir_all(&empty).expect("create");

    let error = Cluster::start(ClusterOptions::new(dir.join("pg")).search_in(vec![empty.clone()]))
        .expect_err("there is nothing to run");

    assert!(
        matches!(error, PgError::BinariesNotFound { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("apt-get install postgresql"), "{message}");
    assert!(message.contains(&empty.display().to_string()), "{message}");
    remove_dir(&dir);
}

#[tokio::test]
async fn the_gateway_brings_its_own_database_and_secret() {
    let dir = fresh_dir("gateway-embedded");

    let gateway = blockchat_local::start(Options {
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ws_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.clone(),
        database_url: None,
        jwt_secret: None,
        ..Options::default()
    })
    .await
    .expect("start");

    let cluster_dir = dir.join(blockchat_local::POSTGRES_DIR);
    assert!(gateway.cluster().is_some_and(Cluster::is_owned));
    if std::env::var_os("JWT_SECRET").is_none() {
        assert!(dir.join(blockchat_local::JWT_SECRET_FILE).exists());
    }
    let response = reqwest::get(format!("{}/no-such-route", gateway.api_url()))
        .await
        .expect("request");
    assert_eq!(response.status(), 404);

    gateway.shutdown().await.expect("shutdown");
    assert!(
        !cluster_dir.join("postmaster.pid").exists(),
        "the cluster stops with the gateway"
    );
    remove_dir(&dir);
}

async fn start_cluster(options: ClusterOptions) -> Cluster {
    tokio::task::spawn_blocking(move || Cluster::start(options))
        .await
        .expect("join")
        .expect("start")
}

#[tokio::test]
async fn browsers_get_the_cors_answers_the_template_configures() {
    let app = TestApp::spawn().await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/chats"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), 204);
    let header = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("access-control-allow-origin").as_deref(), Some("*"));
    assert!(header("access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert!(header("access-control-allow-headers").is_some_and(|h| h.contains("authorization")));

    let answer = app
        .client
        .get(app.url("/api/openapi.json"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("request");
    assert_eq!(
        answer
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
}

#[tokio::test]
async fn the_web_client_is_served_at_the_root_beside_the_api() {
    let app = TestApp::spawn().await;

    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert!(page.headers().contains_key("content-security-policy"));
    let etag = page.headers()["etag"].clone();
    assert!(page.text().await.expect("body").contains("js/main.js"));

    let again = app
        .client
        .get(app.url("/"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), 304, "an unchanged file is not sent again");

    let script = app.get("/js/main.js").await;
    assert_eq!(script.status(), 200);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );

    let config: Value = app.get("/config.json").await.json().await.expect("JSON");
    assert_eq!(config["apiBase"], "/api");
    assert_eq!(
        config["wsUrl"],
        format!("ws://{}", app.gateway().ws_addr()),
        "the client connects to this gateway's WebSocket API"
    );

    assert_eq!(app.get("/no-such-file.js").await.status(), 404);
    let posted = app.post_json("/index.html", &json!({})).await;
    assert_eq!(posted.status(), 405);
    // The API's own answers are untouched.
    let unknown = app.get("/api/no-such-route").await;
    assert_eq!(unknown.status(), 404);
    assert!(
        unknown.headers()["content-type"]
            .to_str()
            .expect("ASCII")
            .starts_with("application/problem+json")
    );
}
