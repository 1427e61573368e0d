//! The function binaries as Lambda runs them: a minimal Runtime API served here on loopback, the
//! binaries started against it the way Lambda starts `bootstrap`, timed from exec to their first
//! poll for work (ready) and to their first answer, then kept busy to see their peak memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use blockchat_local::http::{EventSource, api_gateway_event};
use chrono::Utc;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};

use crate::Bench;
use crate::cpu::peak_rss;
use crate::load::{histogram, micros};

/// The function binaries, as `functions/<name>` and `template.yaml` name them.
pub const FUNCTIONS: [&str; 5] = ["auth", "users", "chats", "messages", "websocket"];
/// The baseline: a `lambda_runtime` function that answers `{}` with nothing to set up.
pub const HELLO: &str = "bench-hello";

/// `template.yaml`'s `MemorySize`.
const MEMORY_SIZE: &str = "256";
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
/// The role's access key the functions are given, as Lambda gives it in the environment.
const ACCESS_KEY_ID: &str = "ASIABENCHMARKONLY000";
/// The connection the `websocket` function is pinged on; its row is made for the benchmark.
const CONNECTION_ID: &str = "benchLambdaConn=";

const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// One invocation handed out through `GET …/invocation/next`.
struct Invocation {
    id: String,
    event: Bytes,
}

/// A post to the management API's `@connections/{id}`: its signature and frame.
struct Push {
    connection: String,
    authorization: Option<String>,
    body: Bytes,
}

/// What the function posted back.
struct Answer {
    at: Instant,
    id: String,
    ok: bool,
    body: Bytes,
}

struct RuntimeApi {
    invocations: Mutex<mpsc::Receiver<Invocation>>,
    polls: mpsc::UnboundedSender<Instant>,
    answers: mpsc::UnboundedSender<Answer>,
    pushes: mpsc::UnboundedSender<Push>,
    function: String,
}

/// A Runtime API for one function process.
struct Served {
    addr: SocketAddr,
    invocations: mpsc::Sender<Invocation>,
    polls: mpsc::UnboundedReceiver<Instant>,
    answers: mpsc::UnboundedReceiver<Answer>,
    pushes: mpsc::UnboundedReceiver<Push>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(function: &str) -> anyhow::Result<Served> {
    let (invocations_tx, invocations_rx) = mpsc::channel(1);
    let (polls_tx, polls) = mpsc::unbounded_channel();
    let (answers_tx, answers) = mpsc::unbounded_channel();
    let (pushes_tx, pushes) = mpsc::unbounded_channel();
    let api = Arc::new(RuntimeApi {
        invocations: Mutex::new(invocations_rx),
        polls: polls_tx,
        answers: answers_tx,
        pushes: pushes_tx,
        function: function.to_owned(),
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(|s: State<Arc<RuntimeApi>>, p: Path<String>, b: Bytes| answered(s, p, b, true)),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(|s: State<Arc<RuntimeApi>>, p: Path<String>, b: Bytes| answered(s, p, b, false)),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        // The functions' pushes (the websocket function's pong) land here and succeed, as
        // they would at API Gateway for a live connection.
        .route("/@connections/{id}", post(pushed))
        .with_state(api);
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Served {
        addr,
        invocations: invocations_tx,
        polls,
        answers,
        pushes,
        server,
    })
}

async fn pushed(
    State(api): State<Arc<RuntimeApi>>,
    Path(connection): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = api.pushes.send(Push {
        connection,
        authorization,
        body,
    });
    StatusCode::OK
}

/// The `websocket` function answers a ping with a pong posted to the connection through the
/// management API, signed with the role's credentials from the environment: a benchmark of a
/// function that cannot push would measure the wrong thing.
fn check_pong(served: &mut Served) -> anyhow::Result<()> {
    let push = served
        .pushes
        .try_recv()
        .context("the websocket function answered the ping without posting a pong")?;
    ensure!(
        push.connection == CONNECTION_ID,
        "the pong went to {}",
        push.connection
    );
    let signed = format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/");
    ensure!(
        push.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with(&signed)),
        "the pong was not signed with the environment's credentials: {:?}",
        push.authorization
    );
    let frame: Value = serde_json::from_slice(&push.body).context("the pong is not JSON")?;
    ensure!(
        frame["type"] == "pong",
        "the ping was answered with {frame}"
    );
    Ok(())
}

async fn next(State(api): State<Arc<RuntimeApi>>) -> Response {
    let _ = api.polls.send(Instant::now());
    let Some(invocation) = api.invocations.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = Utc::now().timestamp_millis() + 15_000;
    let mut headers = HeaderMap::new();
    let arn = format!(
        "arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}",
        api.function
    );
    for (name, value) in [
        ("lambda-runtime-aws-request-id", invocation.id),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        ("lambda-runtime-invoked-function-arn", arn),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    (headers, invocation.event).into_response()
}

async fn answered(
    State(api): State<Arc<RuntimeApi>>,
    Path(id): Path<String>,
    body: Bytes,
    ok: bool,
) -> StatusCode {
    let _ = api.answers.send(Answer {
        at: Instant::now(),
        id,
        ok,
        body,
    });
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<Arc<RuntimeApi>>, body: Bytes) -> StatusCode {
    let _ = api.answers.send(Answer {
        at: Instant::now(),
        id: "init".to_owned(),
        ok: false,
        body,
    });
    StatusCode::ACCEPTED
}

/// How the benchmark starts a function, and what it asks of it.
pub struct Setup {
    pub bin_dir: PathBuf,
    pub database_url: String,
    pub jwt_secret: String,
    /// The event each function gets: one that needs the database.
    events: Vec<(String, Bytes)>,
    /// Who the login events log in.
    login_username: String,
}

impl Setup {
    pub async fn new(bench: &Bench, bin_dir: &std::path::Path) -> anyhow::Result<Self> {
        let user = &bench.seeded.lambda_user;
        let chat = bench.seeded.lambda_chat;
        let token = bench.token(user.id)?;
        // The connection of the token's session, as `$connect` stores it: a frame of a
        // connection without a live session is refused.
        let session = bench.session(user.id)?;
        blockchat::db::connections::insert(&bench.pool, CONNECTION_ID, user.id, session, None)
            .await?
            .context("the benchmark's session has ended")?;
        let mut events = Vec::new();
        for function in FUNCTIONS {
            let event = match function {
                "auth" => http_event("/api/auth/me", &token)?,
                "users" => http_event("/api/users/me", &token)?,
                "chats" => http_event(&format!("/api/chats/{chat}"), &token)?,
                "messages" => http_event(&format!("/api/chats/{chat}/messages?limit=50"), &token)?,
                _ => ping_event(),
            };
            events.push((function.to_owned(), Bytes::from(event.to_string())));
        }
        events.push((HELLO.to_owned(), Bytes::from_static(b"{}")));
        Ok(Self {
            bin_dir: bin_dir.to_owned(),
            database_url: bench.database_url.clone(),
            jwt_secret: bench.jwt_secret.clone(),
            events,
            login_username: user.username.clone(),
        })
    }

    fn event(&self, function: &str) -> anyhow::Result<Bytes> {
        self.events
            .iter()
            .find(|(f, _)| f == function)
            .map(|(_, e)| e.clone())
            .with_context(|| format!("no event for {function}"))
    }

    /// Starts `function` against the Runtime API at `api`, with the environment Lambda gives
    /// and the configuration `template.yaml` gives.
    fn spawn(&self, function: &str, api: SocketAddr) -> anyhow::Result<tokio::process::Child> {
        let path = self.bin_dir.join(function);
        let mut command = tokio::process::Command::new(&path);
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_SIZE)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            // Lambda hands a function its role's credentials in the environment; these reach
            // nothing, and with the metadata service off nothing looks further.
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", "bench-only-not-a-secret")
            .env("AWS_SESSION_TOKEN", "bench-only")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("TZ", ":UTC")
            .env("DATABASE_URL", &self.database_url)
            .env("JWT_SECRET", &self.jwt_secret)
            .stdin(Stdio::null())
            // Lambda reads the logs from a pipe; formatting them is the function's cost, where
            // they go is not.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if function != HELLO {
            // As template.yaml: every function reaches the WebSocket API's management endpoint.
            command.env("WS_ENDPOINT", format!("http://{api}"));
        }
        command
            .spawn()
            .with_context(|| format!("cannot run {}", path.display()))
    }
}

fn http_event(path_and_query: &str, token: &str) -> anyhow::Result<Value> {
    let request = http::Request::get(path_and_query)
        .header("authorization", format!("Bearer {token}"))
        .body(())?;
    event_of(request, b"")
}

/// `POST /api/auth/login` with the user's name and the seeded password, as JSON.
fn login_event(username: &str) -> anyhow::Result<Value> {
    let body = json!({"username": username, "password": crate::setup::PASSWORD}).to_string();
    let request = http::Request::post("/api/auth/login")
        .header("content-type", "application/json")
        .body(())?;
    event_of(request, body.as_bytes())
}

fn event_of(request: http::Request<()>, body: &[u8]) -> anyhow::Result<Value> {
    let (mut parts, ()) = request.into_parts();
    parts.headers.insert(
        "host",
        HeaderValue::from_static("bench.execute-api.us-east-1.amazonaws.com"),
    );
    parts
        .headers
        .insert("user-agent", HeaderValue::from_static("blockchat-bench"));
    Ok(api_gateway_event(
        &parts,
        body,
        &EventSource {
            client: SocketAddr::from(([127, 0, 0, 1], 40000)),
            port: 443,
            request_id: "bench-request",
            trace_id: "Root=1-00000000-000000000000000000000000",
            time: Utc::now(),
        },
    ))
}

fn ping_event() -> Value {
    let now = Utc::now().timestamp_millis();
    json!({
        "requestContext": {
            "routeKey": "$default",
            "eventType": "MESSAGE",
            "messageDirection": "IN",
            "extendedRequestId": "bench",
            "requestTime": Utc::now().format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "stage": "prod",
            "connectedAt": now,
            "requestTimeEpoch": now,
            "requestId": "bench",
            "domainName": "bench.execute-api.us-east-1.amazonaws.com",
            "connectionId": CONNECTION_ID,
            "apiId": "bench",
            "accountId": ACCOUNT,
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": "{\"action\":\"ping\"}",
        "isBase64Encoded": false,
    })
}

/// One cold start: exec to the first poll, and to the first answer.
#[derive(Clone, Copy, Debug)]
pub struct ColdStart {
    pub ready: Duration,
    pub answered: Duration,
}

async fn wait_answer(served: &mut Served, id: &str, function: &str) -> anyhow::Result<Instant> {
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, served.answers.recv())
        .await
        .with_context(|| format!("{function} did not answer"))?
        .with_context(|| format!("{function}: the Runtime API stopped"))?;
    ensure!(
        answer.ok && answer.id == id,
        "{function} failed ({}): {}",
        answer.id,
        String::from_utf8_lossy(&answer.body)
    );
    if function != HELLO {
        let response: Value = serde_json::from_slice(&answer.body)?;
        ensure!(
            response["statusCode"] == 200,
            "{function} answered {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok(answer.at)
}

async fn invoke(
    served: &mut Served,
    function: &str,
    n: u64,
    event: &Bytes,
) -> anyhow::Result<Instant> {
    let id = format!("{function}-{n}");
    served
        .invocations
        .send(Invocation {
            id: id.clone(),
            event: event.clone(),
        })
        .await
        .context("the Runtime API stopped")?;
    wait_answer(served, &id, function).await
}

/// Starts `function` cold `runs` times, one process after another.
pub async fn cold_starts(
    setup: &Setup,
    function: &str,
    runs: usize,
) -> anyhow::Result<Vec<ColdStart>> {
    let event = setup.event(function)?;
    let mut starts = Vec::with_capacity(runs);
    for run in 0..runs {
        let mut served = serve(function).await?;
        let exec = Instant::now();
        let mut child = setup.spawn(function, served.addr)?;
        let polled = tokio::time::timeout(ANSWER_TIMEOUT, served.polls.recv()).await;
        let ready = match polled {
            Ok(Some(at)) => at - exec,
            _ => {
                let status = child.try_wait()?;
                bail!("{function} never polled for work (exit status {status:?})");
            }
        };
        let answered = invoke(&mut served, function, run as u64, &event).await? - exec;
        child.kill().await?;
        if function == "websocket" {
            check_pong(&mut served)?;
        }
        starts.push(ColdStart { ready, answered });
    }
    Ok(starts)
}

/// A warm function's figures: peak memory after `requests` invocations, and their latency.
#[derive(Clone, Copy, Debug)]
pub struct Warm {
    pub requests: usize,
    pub peak_rss: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

pub async fn warm(setup: &Setup, function: &str, requests: usize) -> anyhow::Result<Warm> {
    warm_with(setup, function, setup.event(function)?, requests).await
}

/// `requests` logins of the benchmark's Lambda user into one `auth` instance.
pub async fn warm_logins(setup: &Setup, requests: usize) -> anyhow::Result<Warm> {
    let event = login_event(&setup.login_username)?;
    warm_with(setup, "auth", Bytes::from(event.to_string()), requests).await
}

async fn warm_with(
    setup: &Setup,
    function: &str,
    event: Bytes,
    requests: usize,
) -> anyhow::Result<Warm> {
    let mut served = serve(function).await?;
    let mut child = setup.spawn(function, served.addr)?;
    let pid = child.id().context("the function exited at once")?;
    let mut latency = histogram()?;
    for n in 0..requests {
        let sent = Instant::now();
        let answered = invoke(&mut served, function, n as u64, &event).await?;
        latency.saturating_record(micros(answered - sent));
    }
    let peak = peak_rss(pid).context("cannot read the function's memory")?;
    child.kill().await?;
    Ok(Warm {
        requests,
        peak_rss: peak,
        p50_us: latency.value_at_quantile(0.5),
        p99_us: latency.value_at_quantile(0.99),
    })
}

/// Sizes of the binaries as `cargo build` left them.
pub fn binary_size(bin_dir: &std::path::Path, function: &str) -> Option<u64> {
    std::fs::metadata(bin_dir.join(function))
        .ok()
        .map(|m| m.len())
}

/// One section of an ELF file.
#[derive(Clone, Debug)]
pub struct Section {
    pub name: String,
    pub size: u64,
}

/// The sizes of an ELF file's largest sections (`.text`, `.rodata`, unwind tables …), to say
/// what a binary's bytes are.
pub fn sections(path: &std::path::Path) -> Option<Vec<Section>> {
    let elf = std::fs::read(path).ok()?;
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    // 64-bit little-endian ELF only, which is what Lambda runs.
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let table = usize::try_from(u64_at(0x28)?).ok()?;
    let entry = usize::from(u16_at(0x3A)?);
    let count = usize::from(u16_at(0x3C)?);
    let names = usize::from(u16_at(0x3E)?);
    let header = |i: usize| table + i * entry;
    let names_at = usize::try_from(u64_at(header(names) + 0x18)?).ok()?;
    let mut sections = Vec::with_capacity(count);
    for i in 0..count {
        let name_at = names_at + usize::try_from(u32_at(header(i))?).ok()?;
        let name = elf.get(name_at..)?.split(|b| *b == 0).next()?;
        let size = u64_at(header(i) + 0x20)?;
        sections.push(Section {
            name: String::from_utf8_lossy(name).into_owned(),
            size,
        });
    }
    sections.sort_by_key(|s| std::cmp::Reverse(s.size));
    Some(sections)
}

/// A function's `bootstrap` as `sam build` left it.
#[derive(Clone, Debug)]
pub struct SamBootstrap {
    pub function: String,
    pub size: u64,
    pub built: std::time::SystemTime,
}

/// Sizes of the `bootstrap` files of a `sam build`, by function, when there is one.
pub fn sam_sizes(workspace: &std::path::Path) -> Vec<SamBootstrap> {
    let Ok(entries) = std::fs::read_dir(workspace.join(".aws-sam/build")) else {
        return Vec::new();
    };
    let mut sizes = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(function) = name.strip_suffix("Function") else {
            continue;
        };
        if let Ok(meta) = std::fs::metadata(entry.path().join("bootstrap")) {
            let built = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            sizes.push(SamBootstrap {
                function: function.to_lowercase(),
                size: meta.len(),
                built,
            });
        }
    }
    sizes
}

/// What building the binaries came to.
pub struct Built {
    pub time: Duration,
    /// Binaries that did not build, with the compiler's first error: their rows say so rather
    /// than measure a stale binary.
    pub failed: Vec<(String, String)>,
}

/// Builds the function binaries and the baseline with the profile this program was built with,
/// so that they are current and built the same way. One that does not build does not stop the
/// others (`--keep-going`).
pub fn build(workspace: &std::path::Path, profile: &str) -> anyhow::Result<Built> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let mut command = std::process::Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--quiet", "--keep-going", "--profile", profile]);
    for function in FUNCTIONS {
        command.args(["-p", function]);
    }
    // `--bins` of the benchmark's own package brings the baseline; the benchmark itself is
    // current already. The local gateway's binary runs on its own for the memory workloads.
    command.args(["-p", "blockchat-bench", "-p", "blockchat-local", "--bins"]);
    let output = command.output().context("cannot run cargo")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    let failed = failed_binaries(&stderr);
    ensure!(
        output.status.success() || !failed.is_empty(),
        "cargo build failed ({})",
        output.status
    );
    Ok(Built {
        time: started.elapsed(),
        failed,
    })
}

/// The binaries cargo could not compile, each with the first error it printed.
fn failed_binaries(stderr: &str) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    let mut first_error: Option<&str> = None;
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("error: could not compile `") {
            let name = rest.split('`').next().unwrap_or_default().to_owned();
            let cause = first_error
                .take()
                .unwrap_or("see the build output")
                .to_owned();
            failed.push((name, cause));
        } else if let Some(message) = line.strip_prefix("error") {
            first_error.get_or_insert(
                message
                    .trim_start_matches(|c| c != ':')
                    .trim_start_matches(':')
                    .trim(),
            );
        }
    }
    failed
}
