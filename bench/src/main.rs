//! `blockchat-bench`: Block Chat's hot paths measured beside their physical limits.
//!
//! It starts the local gateway in this process over a database of its own, loads it over
//! loopback, runs each workload in turns with its baseline (so that a noisy machine moves both
//! alike), prints one table and writes it, with the machine and a note per workload, to
//! `BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p blockchat-bench              # the full run, several minutes
//! cargo run --release -p blockchat-bench -- --quick   # under two minutes, for CI
//! ```

mod cpu;
mod fanout;
mod http;
mod lambda;
mod load;
mod memory;
mod report;
mod session;
mod setup;
mod soak;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine;
use blockchat::auth::tokens::JwtKeys;
use blockchat_local::{Options, RunningGateway};
use clap::Parser;
use sqlx::PgPool;
use tokio::runtime::Handle;

use crate::cpu::Meter;
use crate::load::Window;
use crate::report::Report;
use crate::setup::{Seeded, SeededSmall, Server, Sizes};

/// Measures Block Chat's hot paths against their physical limits and writes BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "blockchat-bench", version, about)]
struct Cli {
    /// One short run of each workload on smaller tables: under two minutes, for CI.
    #[arg(long)]
    quick: bool,

    /// Where to write the report [default: BENCHMARKS.md at the workspace root].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Use the function binaries as they are instead of building them first.
    #[arg(long)]
    no_build: bool,

    /// Run only these workloads (send, hot, list, me, login, load, fanout, soak, lambda), for
    /// profiling one; the report is then printed, and written only where --out says.
    #[arg(long, value_name = "WORKLOAD", value_delimiter = ',')]
    only: Vec<String>,

    /// A PostgreSQL server to use instead of the embedded one (two databases are created on it,
    /// and dropped again).
    #[arg(long, value_name = "URL", env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

/// How much of everything a run does.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub quick: bool,
    /// Runs of each workload and of its baseline; each figure is the median over them.
    pub runs: usize,
    pub window: Window,
    pub fanout_rounds: usize,
    pub cold_starts: usize,
    pub warm_requests: usize,
    /// Logins into the local gateway's own process, and into one `auth` instance, before their
    /// memory is read.
    pub gateway_logins: u64,
    pub function_logins: usize,
    /// HTTP clients at once in the load workload.
    pub many_clients: usize,
    pub soak: soak::SoakPlan,
    pub sizes: Sizes,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                runs: 1,
                window: Window {
                    warmup: Duration::from_millis(300),
                    measure: Duration::from_millis(1500),
                },
                fanout_rounds: 5,
                cold_starts: 3,
                warm_requests: 2_000,
                gateway_logins: 500,
                function_logins: 100,
                many_clients: 1_000,
                soak: soak::SoakPlan {
                    duration: Duration::from_secs(20),
                    users: 40,
                    groups: 8,
                    directs: 10,
                    churn_groups: 2,
                    send_every: Duration::from_secs(1),
                },
                sizes: Sizes {
                    total_messages: 200_000,
                    big_chat_messages: 100_000,
                    small_table_messages: 1_000,
                },
            }
        } else {
            Self {
                quick,
                runs: 5,
                window: Window {
                    warmup: Duration::from_secs(1),
                    measure: Duration::from_secs(5),
                },
                fanout_rounds: 30,
                cold_starts: 10,
                warm_requests: 10_000,
                gateway_logins: 10_000,
                function_logins: 1_000,
                many_clients: 1_000,
                soak: soak::SoakPlan {
                    duration: Duration::from_secs(180),
                    users: 100,
                    groups: 20,
                    directs: 30,
                    churn_groups: 4,
                    send_every: Duration::from_secs(2),
                },
                sizes: Sizes {
                    total_messages: 1_000_000,
                    big_chat_messages: 100_000,
                    small_table_messages: 1_000,
                },
            }
        }
    }
}

/// What every workload needs: the servers' addresses, a client, the seeded data.
pub struct Bench {
    pub plan: Plan,
    pub cores: usize,
    pub meter: Meter,
    /// One keep-alive client for every HTTP request the benchmark makes.
    pub http: reqwest::Client,
    /// `http://ADDR` of the gateway over the big database.
    pub api: String,
    /// `http://ADDR` of the gateway over the small one.
    pub small_api: String,
    /// The bare axum route the `GET /api/auth/me` baseline asks.
    pub static_url: String,
    /// `ws://ADDR` of the WebSocket API; `ws_http` is the same listener for `@connections`.
    pub ws_url: String,
    pub ws_http: String,
    /// A pool on the big database as large as the gateway's, for the baselines and for set-up.
    pub pool: PgPool,
    pub keys: Arc<JwtKeys>,
    /// A live session of every seeded user of the big database, by user id: access tokens name
    /// one, and the gateway checks it on every request.
    pub sessions: BTreeMap<i64, i64>,
    pub seeded: Seeded,
    pub small: SeededSmall,
    pub small_token: String,
    pub push_concurrency: usize,
    pub gateway_connections: u32,
    /// The database came from `DATABASE_URL`: not ours to meter or to vouch for.
    pub external_database: bool,
    pub database_url: String,
    pub jwt_secret: String,
}

impl Bench {
    /// The live session of a seeded user of the big database.
    pub fn session(&self, user_id: i64) -> anyhow::Result<i64> {
        self.sessions
            .get(&user_id)
            .copied()
            .with_context(|| format!("user {user_id} has no session"))
    }

    /// An access token as the gateway issues them, signed with the same key, of the user's
    /// session.
    pub fn token(&self, user_id: i64) -> anyhow::Result<String> {
        Ok(self
            .keys
            .issue_access(user_id, Some(self.session(user_id)?))?)
    }
}

/// Starts a session (a day long) for every user of a database, by user id.
async fn start_sessions(pool: &PgPool) -> anyhow::Result<BTreeMap<i64, i64>> {
    let sessions = blockchat::seed::sessions(pool, Duration::from_secs(86_400))
        .await
        .context("cannot start the benchmark's sessions")?;
    Ok(sessions.into_iter().collect())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        blockchat::telemetry::init();
    }
    match run_with_runtimes(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The gateway and the load generator each get a runtime (and threads) of their own: the CPU
/// each one uses can then be told apart, and neither steals the other's worker threads.
fn run_with_runtimes(cli: Cli) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // 1,000 WebSocket members are 2,000 sockets in this process, beyond many default limits.
    let files = rlimit::increase_nofile_limit(u64::MAX).context("cannot raise RLIMIT_NOFILE")?;
    if files < 8_192 {
        eprintln!("warning: only {files} file descriptors; the fan-out may fail");
    }
    let gateway = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name(cpu::GATEWAY_THREAD)
        .enable_all()
        .build()?;
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("client")
        .enable_all()
        .build()?;
    let result = client.block_on(run(cli, cores, gateway.handle().clone()));
    client.shutdown_timeout(Duration::from_secs(5));
    gateway.shutdown_timeout(Duration::from_secs(5));
    result
}

fn progress(what: &str) {
    eprintln!("· {what}");
}

/// The folder the running binary is in (`target/release`), where its siblings are.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("this program has no folder")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 48];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

async fn run(cli: Cli, cores: usize, gateway_rt: Handle) -> anyhow::Result<()> {
    let started = Instant::now();
    let plan = Plan::new(cli.quick);
    let workspace = workspace_root();
    let bin_dir = bin_dir()?;
    let profile = match bin_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => "release".to_owned(),
    };
    if profile != "release" {
        eprintln!("warning: a {profile} build; figures mean little without --release");
    }
    let built = if cli.no_build {
        None
    } else {
        progress(&format!("building the functions ({profile})"));
        Some(lambda::build(&workspace, &profile)?)
    };
    let unbuilt = built.as_ref().map_or_else(Vec::new, |b| b.failed.clone());
    let measuring = Instant::now();

    let data_dir = bin_dir
        .parent()
        .map_or_else(|| PathBuf::from("bench-data"), |t| t.join("bench-data"));
    let server = match &cli.database_url {
        Some(url) if !url.is_empty() => Server::external(url)?,
        _ => {
            progress(&format!("starting PostgreSQL in {}", data_dir.display()));
            Server::embedded(&data_dir).await?
        }
    };
    let setting = Setting {
        plan,
        only: cli.only.clone(),
        cores,
        data_dir,
        bin_dir,
        unbuilt,
    };
    let outcome = measure(&setting, &server, &gateway_rt).await;
    let cleaned = async {
        server.drop_database(setup::MAIN_DATABASE).await?;
        server.drop_database(setup::SMALL_DATABASE).await?;
        server.stop().await
    }
    .await;
    let mut report = outcome?;
    cleaned?;

    report.build_time = built.map(|b| b.time);
    report.measure_time = measuring.elapsed();
    report.total_time = started.elapsed();
    report.sam = lambda::sam_sizes(&workspace);
    println!("{}", report.table());
    // The soak is a check as much as a figure: what it finds fails the run (after the report).
    let soak_failure = report.soak_failure();
    if let Some(failure) = &soak_failure {
        eprintln!("the soak failed: {failure}");
    }
    let out = match cli.out {
        Some(out) => out,
        None if cli.only.is_empty() => workspace.join("BENCHMARKS.md"),
        None => {
            return soak_failure.map_or(Ok(()), |f| Err(anyhow::anyhow!("the soak failed: {f}")));
        }
    };
    std::fs::write(&out, report.markdown())
        .with_context(|| format!("cannot write {}", out.display()))?;
    let building = report.build_time.map_or_else(String::new, |b| {
        format!(", {:.0} s of it building the functions", b.as_secs_f64())
    });
    eprintln!(
        "wrote {} ({:.0} s measuring, {:.0} s in all{building})",
        out.display(),
        report.measure_time.as_secs_f64(),
        report.total_time.as_secs_f64()
    );
    soak_failure.map_or(Ok(()), |f| Err(anyhow::anyhow!("the soak failed: {f}")))
}

/// Starts a gateway on the gateway's runtime, on loopback ports of its own.
async fn start_gateway(
    rt: &Handle,
    database_url: String,
    data_dir: &Path,
    jwt_secret: &str,
) -> anyhow::Result<RunningGateway> {
    let options = Options {
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ws_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_owned(),
        database_url: Some(database_url),
        jwt_secret: Some(jwt_secret.to_owned()),
        settings: BTreeMap::from([
            // Tokens minted at the start must outlive a full run.
            ("ACCESS_TOKEN_TTL_SECS".to_owned(), "14400".to_owned()),
            // The warm WebSocket rows send thousands of frames on one connection as fast as
            // they are answered: the per-connection frame budget is still counted on every
            // frame, in the same statement, but set beyond what a run sends.
            ("WS_FRAMES_PER_WINDOW".to_owned(), "1000000000".to_owned()),
        ]),
        ..Options::default()
    };
    on_gateway(rt, move || blockchat_local::start(options)).await
}

/// Runs a future on the gateway's runtime, made on a thread of its own: the gateway's start and
/// stop futures are not `Send` (they hold borrows across awaits), so they cannot be spawned, but
/// they can be driven by `block_on` where they are made. What they spawn runs on the runtime.
async fn on_gateway<F, Fut, T>(rt: &Handle, make: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
    T: Send + 'static,
{
    let rt = rt.clone();
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("{}-main", cpu::GATEWAY_THREAD))
        .spawn(move || {
            let _ = done.send(rt.block_on(make()));
        })?;
    result.await.context("the gateway's thread was lost")?
}

/// A bare axum route answering a constant, served the way the gateway serves: the floor under
/// any request the gateway answers.
async fn start_static(rt: &Handle) -> anyhow::Result<SocketAddr> {
    let listener = rt
        .spawn(tokio::net::TcpListener::bind(SocketAddr::from((
            [127, 0, 0, 1],
            0,
        ))))
        .await??;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/static",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"ok": true})) }),
    );
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// What a run is asked to do, and where things are.
struct Setting {
    plan: Plan,
    /// Workloads to run; empty for all.
    only: Vec<String>,
    cores: usize,
    data_dir: PathBuf,
    bin_dir: PathBuf,
    /// Binaries that did not build, with why.
    unbuilt: Vec<(String, String)>,
}

async fn measure(
    setting: &Setting,
    server: &Server,
    gateway_rt: &Handle,
) -> anyhow::Result<Report> {
    let Setting {
        plan,
        cores,
        data_dir,
        ..
    } = setting;
    let (plan, cores) = (*plan, *cores);
    let jwt_secret = random_secret()?;
    let hash = setup::password_hash().await?;

    let sizes = plan.sizes;
    let seeding = Instant::now();
    progress(&format!(
        "seeding {} messages (a chat of {}) and a table of {}",
        report::thousands(sizes.total_messages as f64),
        report::thousands(sizes.big_chat_messages as f64),
        report::thousands(sizes.small_table_messages as f64),
    ));
    let main_pool = server.fresh_database(setup::MAIN_DATABASE).await?;
    let seeded = setup::seed_main(&main_pool, sizes, &hash).await?;
    main_pool.close().await;
    let small_pool = server.fresh_database(setup::SMALL_DATABASE).await?;
    let small = setup::seed_small(&small_pool, sizes, &hash).await?;
    small_pool.close().await;
    let seed_time = seeding.elapsed();

    let database_url = server.url(setup::MAIN_DATABASE);
    let gateway = start_gateway(gateway_rt, database_url.clone(), data_dir, &jwt_secret).await?;
    let small_gateway = start_gateway(
        gateway_rt,
        server.url(setup::SMALL_DATABASE),
        data_dir,
        &jwt_secret,
    )
    .await?;
    let static_addr = start_static(gateway_rt).await?;
    let state = gateway.state();
    let gateway_connections = state.config.db_max_connections;
    let pool = setup::pool(&database_url, gateway_connections).await?;
    let postgres_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await?;
    let sessions = start_sessions(&pool).await?;
    let small_session = {
        let small_pool = setup::pool(&server.url(setup::SMALL_DATABASE), 1).await?;
        let sessions = start_sessions(&small_pool).await?;
        small_pool.close().await;
        sessions
            .get(&small.reader.id)
            .copied()
            .context("the small database's reader has no session")?
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?;
    let bench = Bench {
        plan,
        cores,
        meter: Meter::new(server.postmaster()),
        http,
        api: format!("http://{}", gateway.http_addr()),
        small_api: format!("http://{}", small_gateway.http_addr()),
        static_url: format!("http://{static_addr}/static"),
        ws_url: gateway.ws_url(),
        ws_http: format!("http://{}", gateway.ws_addr()),
        pool,
        keys: state.keys.clone(),
        sessions,
        small_token: small_gateway
            .state()
            .keys
            .issue_access(small.reader.id, Some(small_session))?,
        seeded,
        small,
        push_concurrency: state.config.limits.push_concurrency,
        gateway_connections,
        external_database: server.postmaster().is_none(),
        database_url,
        jwt_secret,
    };
    let mut report = Report::new(&bench, postgres_version, seed_time);
    let outcome = workloads(&bench, setting, gateway_rt, &mut report).await;

    for gateway in [gateway, small_gateway] {
        on_gateway(gateway_rt, move || gateway.shutdown()).await?;
    }
    bench.pool.close().await;
    outcome?;
    Ok(report)
}

async fn workloads(
    bench: &Bench,
    setting: &Setting,
    gateway_rt: &Handle,
    report: &mut Report,
) -> anyhow::Result<()> {
    let Setting {
        only,
        bin_dir,
        unbuilt,
        ..
    } = setting;
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let chats = setup::SEND_CHATS;
    for clients in [16, 64].into_iter().filter(|_| want("send")) {
        progress(&format!("send over HTTP, {chats} chats, {clients} clients"));
        let (sent, straight) = http::send(bench, clients, chats).await?;
        report.send(clients, sent, straight);
    }
    if want("send") {
        progress("the session check on a send's statements, 16 clients");
        let (checked, unchecked) = session::send(bench, 16).await?;
        report.session_send(16, checked, unchecked);
        progress("the change log on a send's statement, 16 clients");
        let (logged, unlogged) = session::send_log(bench, 16).await?;
        report.send_log(16, logged, unlogged);
    }
    if want("hot") {
        progress("send, one hot chat, 16 clients");
        let (sent, straight) = http::send(bench, 16, 1).await?;
        report.hot(16, sent, straight);
    }
    if want("list") {
        progress("list the newest 50 messages");
        let (big, small) = http::list(bench, 16).await?;
        report.list(16, big, small);
    }
    if want("me") {
        progress("GET /api/auth/me");
        let (me, constant) = http::me(bench, 16, bench.plan.window).await?;
        let (me_alone, constant_alone) = http::me_alone(bench).await?;
        let (read, unchecked) = session::me_read(bench, 16).await?;
        report.session_me(16, read.clone(), unchecked);
        report.me(16, me, constant, read, &me_alone, &constant_alone);
    }
    if want("login") {
        progress("login");
        let (logins, hashes) = http::login(bench).await?;
        let oversubscribed = http::login_oversubscribed(bench).await?;
        report.login(logins, hashes, &oversubscribed);
    }
    if want("load") {
        let clients = bench.plan.many_clients;
        progress(&format!("GET /api/auth/me, {clients} clients at once"));
        let many = memory::many_clients(bench, clients).await?;
        report.many_clients(clients, &many);
        let logins = bench.plan.gateway_logins;
        progress(&format!(
            "blockchat-local's memory over {} logins",
            report::thousands(logins as f64)
        ));
        if bin_dir.join("blockchat-local").is_file() {
            let gateway = memory::gateway_logins(bench, bin_dir, logins, 16).await?;
            report.gateway_logins(gateway);
        } else {
            report.unbuilt("blockchat-local", "no binary (run without --no-build)");
        }
    }
    if want("fanout") {
        progress(&format!("fan-out to {} connected members", fanout::MEMBERS));
        let fanned = fanout::run(bench, bench.plan.fanout_rounds, 1).await?;
        report.fanout(fanned);
        progress(&format!(
            "fan-out to {} members with 2 devices each",
            fanout::MEMBERS
        ));
        let rounds = bench.plan.fanout_rounds.min(5);
        let devices = fanout::run(bench, rounds, 2).await?;
        report.fanout_devices(devices);
    }
    if want("soak") {
        let plan = bench.plan.soak;
        progress(&format!(
            "soak: {} users on 2 devices for {} s, PostgreSQL restarted and killed, pushes failing",
            plan.users,
            plan.duration.as_secs()
        ));
        let soaked = soak::run(plan, &setting.data_dir, gateway_rt, bench.http.clone()).await?;
        report.soak(soaked);
    }
    if !want("lambda") {
        return Ok(());
    }

    let lambda_setup = lambda::Setup::new(bench, bin_dir).await?;
    let mut functions: Vec<&str> = Vec::new();
    for function in lambda::FUNCTIONS.into_iter().chain([lambda::HELLO]) {
        let package = if function == lambda::HELLO {
            "blockchat-bench"
        } else {
            function
        };
        if let Some((_, cause)) = unbuilt.iter().find(|(p, _)| p == package) {
            report.unbuilt(function, cause);
        } else if !bin_dir.join(function).is_file() {
            report.unbuilt(function, "no binary (run without --no-build)");
        } else {
            functions.push(function);
        }
    }
    for function in &functions {
        progress(&format!("cold start: {function}"));
        let starts = lambda::cold_starts(&lambda_setup, function, bench.plan.cold_starts).await?;
        report.cold_start(function, starts);
    }
    if let Some(function) = functions.iter().find(|f| **f != lambda::HELLO) {
        report.sections(function, lambda::sections(&bin_dir.join(function)));
    }
    for function in &functions {
        progress(&format!(
            "{function}: {} requests",
            report::thousands(bench.plan.warm_requests as f64)
        ));
        let warm = lambda::warm(&lambda_setup, function, bench.plan.warm_requests).await?;
        report.warm(function, warm, lambda::binary_size(bin_dir, function));
    }
    if functions.contains(&"auth") {
        let logins = bench.plan.function_logins;
        progress(&format!(
            "auth: {} logins",
            report::thousands(logins as f64)
        ));
        let warm = lambda::warm_logins(&lambda_setup, logins).await?;
        report.function_logins(warm);
    }
    Ok(())
}
