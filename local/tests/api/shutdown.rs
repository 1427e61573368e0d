//! The `blockchat-local` program stopped by a signal, as a process manager (SIGTERM) or a
//! terminal (Ctrl-C, SIGINT) stops it: the request in flight is answered, sockets are told the
//! server is going away, `$disconnect` runs for them, and PostgreSQL shuts down cleanly.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use blockchat_local::postgres::{Binaries, Cluster, ClusterOptions};
use futures::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

use crate::client::PASSWORD;
use crate::common::{fresh_dir, remove_dir};

/// How long the gateway's `@connections` holds each post: the send below is in flight, in its
/// push, for at least this long.
const SLOW_POST: &str = "slow=1:3s";

/// The program, serving on free ports over its own data folder.
struct Program {
    child: Child,
    api: String,
    ws: String,
    /// Where its embedded cluster keeps its data.
    pg_data: PathBuf,
}

impl Program {
    async fn start(dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_blockchat-local"))
            .args(["--http", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(["--push-faults", SLOW_POST])
            .env_remove("DATABASE_URL")
            .env_remove("JWT_SECRET")
            .env_remove("BLOCKCHAT_PUSH_FAULTS")
            // The held post must be delivered, not given up.
            .env("PUSH_TIMEOUT_MS", "60000")
            .env("PUSH_POST_TIMEOUT_MS", "60000")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot run blockchat-local");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut api, mut ws, mut pg_data) = (None, None, None);
        let started = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await.expect("stdout") {
                if let Some(rest) = line.strip_prefix("Block Chat API on ") {
                    api = Some(rest.trim().to_owned());
                } else if let Some(rest) = line.strip_prefix("WebSocket API on ") {
                    ws = Some(
                        rest.trim()
                            .trim_end_matches("/?token=ACCESS_TOKEN")
                            .to_owned(),
                    );
                } else if let Some(rest) = line.strip_prefix("PostgreSQL data in ") {
                    pg_data = Some(PathBuf::from(rest.trim()));
                } else if line.starts_with("Press Ctrl-C") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(started, Ok(true), "blockchat-local did not start");
        // Its logs go on to stdout: keep reading, so that a full pipe never blocks it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            api: api.expect("the API's URL"),
            ws: ws.expect("the WebSocket API's URL"),
            pg_data: pg_data.expect("the cluster's folder"),
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("running") as i32;
        kill(Pid::from_raw(pid), signal).expect("signal");
    }
}

async fn post(url: String, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Registers and logs in `name`; returns its id and access token.
async fn account(api: &str, name: &str) -> (i64, String) {
    let (status, user) = post(
        format!("{api}/auth/register"),
        None,
        json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let (status, login) = post(
        format!("{api}/auth/login"),
        None,
        json!({"username": name, "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    (
        user["id"].as_i64().expect("id"),
        login["access_token"].as_str().expect("token").to_owned(),
    )
}

/// Frames until the server closes the socket: the JSON frames and the close code.
async fn until_closed(
    mut socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> (Vec<Value>, Option<u16>) {
    let mut frames = Vec::new();
    let read = async {
        while let Some(message) = socket.next().await {
            match message.expect("a clean close") {
                Message::Text(text) => frames.push(serde_json::from_str(&text).expect("JSON")),
                Message::Close(frame) => return frame.map(|f| u16::from(f.code)),
                _ => {}
            }
        }
        None
    };
    let code = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the socket was not closed");
    (frames, code)
}

/// `Database cluster state` as `pg_control` records it, when `pg_controldata` is installed
/// beside the server.
fn cluster_state(pg_data: &Path) -> Option<String> {
    let binaries = Binaries::find().expect("PostgreSQL binaries");
    let controldata = binaries.postgres.with_file_name("pg_controldata");
    if !controldata.is_file() {
        return None;
    }
    let output = std::process::Command::new(controldata)
        .arg("-D")
        .arg(pg_data)
        .env("LC_ALL", "C")
        .output()
        .expect("pg_controldata");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("Database cluster state:"))
        .map(|state| state.trim().to_owned())
}

async fn a_signal_stops_the_program_cleanly(signal: Signal) {
    let dir = fresh_dir(&format!("stop-on-{}", signal.as_str().to_lowercase()));
    let program = Program::start(&dir).await;
    let api = program.api.clone();
    let (_, alice) = account(&api, "alice").await;
    let (bob_id, bob) = account(&api, "bob").await;
    let (status, chat) = post(
        format!("{api}/chats"),
        Some(&alice),
        json!({"name": "team", "is_group_chat": true, "user_ids": [bob_id]}),
    )
    .await;
    assert_eq!(status, 201, "{chat}");
    let chat = chat["id"].as_i64().expect("chat id");
    let (bob_socket, _) = tokio_tungstenite::connect_async(format!("{}/?token={bob}", program.ws))
        .await
        .expect("bob connects");
    let postmaster = std::fs::read_to_string(program.pg_data.join("postmaster.pid"))
        .expect("a running cluster has a pid file");
    let postmaster: i32 = postmaster
        .lines()
        .next()
        .and_then(|pid| pid.trim().parse().ok())
        .expect("the postmaster's pid");

    // Alice's send is stored, then held in its push to Bob's socket when the signal comes.
    let send = tokio::spawn({
        let (api, alice) = (api.clone(), alice.clone());
        async move {
            post(
                format!("{api}/chats/{chat}/messages"),
                Some(&alice),
                json!({"content": "in flight"}),
            )
            .await
        }
    });
    let client = reqwest::Client::new();
    loop {
        let listed: Value = client
            .get(format!("{api}/chats/{chat}/messages"))
            .bearer_auth(&alice)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("JSON");
        if listed.as_array().is_some_and(|m| !m.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!send.is_finished(), "the send must still be in flight");
    program.signal(signal);

    let (status, sent) = send.await.expect("join");
    assert_eq!(status, 201, "the request in flight is answered: {sent}");
    let (frames, code) = until_closed(bob_socket).await;
    assert_eq!(code, Some(1001), "sockets are closed as going away");
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "message.created" && f["message"]["id"] == sent["id"]),
        "the push of the request in flight reached the socket before it closed: {frames:?}"
    );
    let mut child = program.child;
    let exit = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the program exits")
        .expect("wait");
    assert_eq!(exit.code(), Some(0), "{exit:?}");

    // PostgreSQL is gone, and shut down cleanly: its next start needs no recovery.
    assert!(!program.pg_data.join("postmaster.pid").exists());
    assert!(
        !Path::new(&format!("/proc/{postmaster}")).exists(),
        "the postmaster is still running"
    );
    if let Some(state) = cluster_state(&program.pg_data) {
        assert_eq!(state, "shut down");
    }
    let log = program.pg_data.join("postgres.log");
    let logged = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) as usize;
    let options = ClusterOptions::new(dir.join(blockchat_local::POSTGRES_DIR));
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(options))
        .await
        .expect("join")
        .expect("the cluster starts again");
    let restart_log = std::fs::read(&log).expect("the server's log");
    let restart_log = String::from_utf8_lossy(&restart_log[logged.min(restart_log.len())..]);
    assert!(
        restart_log.contains("database system was shut down"),
        "{restart_log}"
    );
    assert!(!restart_log.contains("recovery"), "{restart_log}");
    // `$disconnect` ran for Bob's socket: its row is gone.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&cluster.url(blockchat_local::DATABASE_NAME))
        .await
        .expect("connect");
    let connections: i64 = sqlx::query_scalar("SELECT count(*) FROM ws_connections")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(connections, 0);
    pool.close().await;
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .expect("join")
        .expect("stop");
    remove_dir(&dir);
}

#[tokio::test]
async fn sigterm_drains_requests_closes_sockets_as_going_away_and_stops_postgres() {
    a_signal_stops_the_program_cleanly(Signal::SIGTERM).await;
}

#[tokio::test]
async fn ctrl_c_stops_the_program_the_same_way() {
    a_signal_stops_the_program_cleanly(Signal::SIGINT).await;
}
