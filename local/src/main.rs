//! `blockchat-local`: the Block Chat API on this machine, as API Gateway and Lambda serve it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use blockchat_local::{
    DEFAULT_DATA_DIR, DEFAULT_HTTP_ADDR, DEFAULT_WS_ADDR, Options, POSTGRES_DIR, PushFaults,
    postgres,
};
use clap::Parser;

/// Serves the Block Chat API locally: every request goes through the same payload-2.0 event and
/// the same routers as in AWS. Without --database-url, PostgreSQL runs embedded, its data kept in
/// the data folder.
#[derive(Debug, Parser)]
#[command(name = "blockchat-local", version, about)]
struct Cli {
    /// Address of the HTTP API.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_HTTP_ADDR, value_parser = socket_addr)]
    http: SocketAddr,

    /// Address of the WebSocket API and its @connections management endpoint.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_WS_ADDR, value_parser = socket_addr)]
    ws: SocketAddr,

    /// Folder for the embedded PostgreSQL cluster and the generated JWT secret [default:
    /// .blockchat]. Run as root, the cluster goes under /var/lib/blockchat when the `postgres`
    /// user cannot reach the default folder; a folder given here is used where it is, or not at
    /// all.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Use this PostgreSQL server instead of the embedded one (migrations are applied to it).
    #[arg(
        long,
        value_name = "URL",
        env = "DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    database_url: Option<String>,

    /// Make @connections fail, throttle or hold a share of the posts it gets, e.g.
    /// `fail=0.1,throttle=0.2,slow=0.1:300ms`: 10% answered 500, 20% answered 429
    /// (TooManyRequestsException), 10% held for 300 ms first. Shares are from 0 to 1.
    #[arg(
        long,
        value_name = "SPEC",
        env = "BLOCKCHAT_PUSH_FAULTS",
        default_value = "none",
        value_parser = push_faults
    )]
    push_faults: PushFaults,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Apply the migrations to --database-url (a deployed database) and exit.
    Migrate,
}

fn push_faults(value: &str) -> Result<PushFaults, String> {
    value.parse().map_err(|e| format!("{e}"))
}

/// Host names too (`localhost:3000`), not only numeric addresses.
fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .to_socket_addrs()
        .map_err(|e| format!("{value}: {e}"))?
        .next()
        .ok_or_else(|| format!("{value} resolves to no address"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    blockchat::telemetry::init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Migrate) = cli.command {
        let url = cli
            .database_url
            .filter(|url| !url.is_empty())
            .ok_or_else(|| anyhow::anyhow!("migrate needs --database-url or DATABASE_URL"))?;
        let applied = blockchat_local::migrate_url(&url).await?;
        println!("migrations applied; the schema is at version {applied}");
        return Ok(());
    }
    let database_url = cli.database_url.filter(|url| !url.is_empty());
    if let (Some(data_dir), None) = (&cli.data_dir, &database_url) {
        postgres::require_reachable(&data_dir.join(POSTGRES_DIR))?;
    }
    let options = Options {
        http_addr: cli.http,
        ws_addr: cli.ws,
        data_dir: cli
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        database_url,
        push_faults: cli.push_faults,
        ..Options::default()
    };
    let gateway = blockchat_local::start(options).await?;
    if let Some(cluster) = gateway.cluster() {
        println!("PostgreSQL data in {}", cluster.data_dir().display());
        println!(
            "Database URL {}",
            cluster.url(blockchat_local::DATABASE_NAME)
        );
    }
    println!("Web client on {}", gateway.web_url());
    println!("Block Chat API on {}", gateway.api_url());
    println!("WebSocket API on {}/?token=ACCESS_TOKEN", gateway.ws_url());
    println!(
        "Management API on http://{}/@connections/{{connectionId}}",
        gateway.ws_addr()
    );
    println!("OpenAPI at {}", gateway.openapi_url());
    if !cli.push_faults.is_none() {
        println!("Push faults at @connections: {}", cli.push_faults);
    }
    println!("Press Ctrl-C to stop.");
    gateway.run_until(stop_signal()).await
}

/// Ctrl-C, or SIGTERM from a process manager.
async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("stopping");
}
