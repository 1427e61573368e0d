//! The local API Gateway for Block Chat.
//!
//! It serves the HTTP API the way API Gateway and Lambda do in AWS: each request becomes a
//! payload-2.0 event for the same router the endpoint group's function runs ([`http`]). Without a
//! database URL it brings its own PostgreSQL ([`postgres`]), keeping the data in the data folder.
//!
//! [`start`] is what the `blockchat-local` binary runs; tests call it on port 0.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine;
use blockchat::{AppState, Config};
use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod faults;
pub mod http;
pub mod postgres;
pub mod web;
pub mod websocket;

pub use faults::{FaultsError, PushFaultCounts, PushFaults};

use postgres::{Cluster, ClusterOptions};

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:3000";
pub const DEFAULT_WS_ADDR: &str = "127.0.0.1:3001";
pub const DEFAULT_DATA_DIR: &str = ".blockchat";

/// The database the gateway creates in its embedded cluster.
pub const DATABASE_NAME: &str = "blockchat";

/// Where, under the data folder, the embedded cluster and the generated signing secret live.
pub const POSTGRES_DIR: &str = "postgres";
pub const JWT_SECRET_FILE: &str = "jwt-secret";

/// One pool serves every endpoint group here, where AWS would run many small function instances,
/// so it gets more connections than the per-instance default.
const LOCAL_DB_MAX_CONNECTIONS: &str = "10";

/// How long a stop waits for HTTP requests in flight; those still running then are cut off.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stop waits for `$disconnect` of the WebSocket connections it closes.
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`start`] needs.
#[derive(Clone, Debug)]
pub struct Options {
    pub http_addr: SocketAddr,
    /// The WebSocket API and its `@connections` management endpoint.
    pub ws_addr: SocketAddr,
    /// Holds the embedded cluster and the generated JWT secret.
    pub data_dir: PathBuf,
    /// A server of your own; without one the embedded cluster is used.
    pub database_url: Option<String>,
    /// Overrides `JWT_SECRET` and the secret file.
    pub jwt_secret: Option<String>,
    /// Configuration values (as [`Config::from_lookup`] names them) layered over the environment.
    pub settings: BTreeMap<String, String>,
    /// Faults `@connections` injects into posts from the start; see
    /// [`RunningGateway::set_push_faults`].
    pub push_faults: PushFaults,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            ws_addr: SocketAddr::from(([127, 0, 0, 1], 3001)),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            database_url: None,
            jwt_secret: None,
            settings: BTreeMap::new(),
            push_faults: PushFaults::NONE,
        }
    }
}

/// A gateway that is serving; stop it with [`RunningGateway::shutdown`].
pub struct RunningGateway {
    http_addr: SocketAddr,
    ws_addr: SocketAddr,
    state: AppState,
    server: Option<JoinHandle<io::Result<()>>>,
    stop: Option<oneshot::Sender<()>>,
    ws_server: Option<JoinHandle<io::Result<()>>>,
    ws_stop: Option<oneshot::Sender<()>>,
    ws_api: websocket::WebSocketApi,
    purge: Option<JoinHandle<()>>,
    cluster: Option<Cluster>,
}

/// Brings up the database (the embedded cluster unless a URL is given), applies the migrations,
/// builds the application state and serves the HTTP API. Returns once the listener is bound.
pub async fn start(options: Options) -> anyhow::Result<RunningGateway> {
    let (cluster, database_url) = match &options.database_url {
        Some(url) => (None, url.clone()),
        None => {
            let cluster = start_embedded(&options.data_dir).await?;
            let url = cluster.url(DATABASE_NAME);
            (Some(cluster), url)
        }
    };
    match serve_database(&options, database_url).await {
        Ok(serving) => Ok(RunningGateway {
            http_addr: serving.http_addr,
            ws_addr: serving.ws_addr,
            state: serving.state,
            server: Some(serving.server),
            stop: Some(serving.stop),
            ws_server: Some(serving.ws_server),
            ws_stop: Some(serving.ws_stop),
            ws_api: serving.ws_api,
            purge: Some(serving.purge),
            cluster,
        }),
        Err(e) => {
            if let Some(cluster) = cluster {
                stop_cluster(cluster).await;
            }
            Err(e)
        }
    }
}

struct Serving {
    http_addr: SocketAddr,
    ws_addr: SocketAddr,
    state: AppState,
    server: JoinHandle<io::Result<()>>,
    stop: oneshot::Sender<()>,
    ws_server: JoinHandle<io::Result<()>>,
    ws_stop: oneshot::Sender<()>,
    ws_api: websocket::WebSocketApi,
    purge: JoinHandle<()>,
}

async fn serve_database(options: &Options, database_url: String) -> anyhow::Result<Serving> {
    let jwt_secret = match &options.jwt_secret {
        Some(secret) => secret.clone(),
        None => match std::env::var("JWT_SECRET") {
            Ok(secret) if !secret.is_empty() => secret,
            _ => {
                let path = options.data_dir.join(JWT_SECRET_FILE);
                load_or_create_secret(&path)
                    .with_context(|| format!("cannot read or create {}", path.display()))?
            }
        },
    };
    // The WebSocket listener comes first: its address is the management endpoint that the
    // functions push to, part of their configuration.
    let ws_listener = TcpListener::bind(options.ws_addr)
        .await
        .with_context(|| format!("cannot listen on {}", options.ws_addr))?;
    let ws_addr = ws_listener.local_addr()?;
    let mut settings = options.settings.clone();
    settings
        .entry("WS_ENDPOINT".to_owned())
        .or_insert_with(|| format!("http://{ws_addr}"));
    let config = config(&settings, &database_url, &jwt_secret)?;

    let pool = config
        .pool_options()
        .connect(config.database_url.expose_secret())
        .await
        .context("cannot connect to the database")?;
    postgres::migrate(&pool)
        .await
        .context("cannot apply the migrations")?;
    let state = AppState::with_pool(config, pool);

    let listener = TcpListener::bind(options.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", options.http_addr))?;
    let http_addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let api = http::HttpApi::new(&state).with_web_client(web::WebClient::new(ws_addr));
    let server = tokio::spawn(http::serve(listener, api, async move {
        // A dropped sender stops the server as well as a sent signal.
        let _ = stopped.await;
    }));
    tracing::info!(%http_addr, "HTTP API listening");
    let (ws_stop, ws_stopped) = oneshot::channel::<()>();
    let ws_api = websocket::WebSocketApi::new(&state, ws_addr);
    if !options.push_faults.is_none() {
        ws_api.set_push_faults(options.push_faults);
    }
    let ws_server = tokio::spawn(websocket::serve(ws_listener, ws_api.clone(), async move {
        let _ = ws_stopped.await;
    }));
    tracing::info!(%ws_addr, "WebSocket API and @connections listening");
    let purge = tokio::spawn(purge_changes(state.clone()));
    Ok(Serving {
        http_addr,
        ws_addr,
        state,
        server,
        stop,
        ws_server,
        ws_stop,
        ws_api,
        purge,
    })
}

/// What the scheduled `maintenance` function does in AWS: deletes the change log's entries past
/// the retention, every `SYNC_PURGE_INTERVAL_SECS`, whether or not anyone is using the API.
async fn purge_changes(state: AppState) {
    let mut every = tokio::time::interval(state.config.limits.sync_purge_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) =
            blockchat::service::sync::purge(&state.db, state.config.limits.sync_retention).await
        {
            tracing::warn!(error = %e, "the change log purge failed; it runs again later");
        }
    }
}

/// Starts (or finds running) the cluster in `DATA_DIR/postgres` and makes sure the gateway's
/// database exists.
pub async fn start_embedded(data_dir: &Path) -> anyhow::Result<Cluster> {
    let options = ClusterOptions::new(data_dir.join(POSTGRES_DIR));
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(options))
        .await
        .context("the PostgreSQL start was interrupted")??;
    if let Err(e) = cluster.ensure_database(DATABASE_NAME).await {
        stop_cluster(cluster).await;
        return Err(e).context(format!("cannot create the `{DATABASE_NAME}` database"));
    }
    Ok(cluster)
}

async fn stop_cluster(cluster: Cluster) {
    match tokio::task::spawn_blocking(move || cluster.stop()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not stop PostgreSQL"),
        Err(e) => tracing::warn!(error = %e, "could not stop PostgreSQL"),
    }
}

/// Applies the migrations to the database at `url`; answers the newest version applied.
pub async fn migrate_url(url: &str) -> anyhow::Result<i64> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(15))
        .connect(url)
        .await
        .context("cannot connect to the database")?;
    postgres::migrate(&pool)
        .await
        .context("cannot apply the migrations")?;
    let version: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&pool)
            .await
            .context("cannot read the applied migrations")?;
    pool.close().await;
    Ok(version.unwrap_or(0))
}

/// The product's configuration: `database_url` and `jwt_secret`, then `settings`, then the
/// environment, then the gateway's own defaults.
pub fn config(
    settings: &BTreeMap<String, String>,
    database_url: &str,
    jwt_secret: &str,
) -> anyhow::Result<Config> {
    Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(database_url.to_owned()),
        "JWT_SECRET" => Some(jwt_secret.to_owned()),
        _ => settings
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .or_else(|| local_default(name)),
    })
    .context("invalid configuration")
}

fn local_default(name: &str) -> Option<String> {
    match name {
        "DB_MAX_CONNECTIONS" => Some(LOCAL_DB_MAX_CONNECTIONS.to_owned()),
        _ => None,
    }
}

/// Reads the signing secret kept at `path`, or makes one (48 random bytes, base64) readable by
/// the owner only. The file appears complete or not at all, even with two gateways starting at
/// once: it is written aside and linked into place.
pub fn load_or_create_secret(path: &Path) -> io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(secret) if !secret.trim().is_empty() => return Ok(secret.trim().to_owned()),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the secret file is empty; delete it to have a new secret made",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut bytes = [0u8; 48];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    let secret = base64::engine::general_purpose::STANDARD.encode(bytes);

    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".{}.tmp", std::process::id()));
    let aside = PathBuf::from(aside);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&aside)?;
        file.write_all(secret.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::hard_link(&aside, path)
    })();
    let _ = std::fs::remove_file(&aside);
    match written {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a JWT signing secret");
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(path)?.trim().to_owned())
        }
        Err(e) => Err(e),
    }
}

impl RunningGateway {
    /// The address the HTTP API is bound to (the real port when asked for port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The address of the WebSocket API and its management endpoint.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// `ws://ADDR`, where clients connect.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }

    /// `http://ADDR/`, the web client.
    pub fn web_url(&self) -> String {
        format!("http://{}/", self.http_addr)
    }

    /// `http://ADDR/api`
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.http_addr)
    }

    pub fn openapi_url(&self) -> String {
        format!("{}/openapi.json", self.api_url())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The WebSocket API, for what only a test should do to it
    /// ([`websocket::WebSocketApi::drop_without_disconnect`]).
    pub fn websocket_api(&self) -> &websocket::WebSocketApi {
        &self.ws_api
    }

    /// Makes `@connections` answer a share of the posts it gets from now on with a server
    /// error (500) or a throttle (429 `TooManyRequestsException`), or hold them for a while,
    /// as [`PushFaults`] says; it replaces the faults in force. The product's pushes retry,
    /// give up and count as they would against API Gateway.
    pub fn set_push_faults(&self, faults: PushFaults) {
        self.ws_api.set_push_faults(faults);
    }

    /// Turns the push faults off: every post is handled as usual from now on.
    pub fn clear_push_faults(&self) {
        self.ws_api.set_push_faults(PushFaults::NONE);
    }

    /// The push faults in force.
    pub fn push_faults(&self) -> PushFaults {
        self.ws_api.push_faults()
    }

    /// What `@connections` did to the posts it got since the start: how many, and how many
    /// it failed, throttled and held.
    pub fn push_fault_counts(&self) -> PushFaultCounts {
        self.ws_api.push_fault_counts()
    }

    /// What the product's pushes did since the start (delivered, gone, failed, retried), as
    /// its pusher counts them.
    pub fn push_totals(&self) -> blockchat::push::PushReport {
        self.state.push.totals()
    }

    /// The embedded cluster, when the gateway runs one.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Serves until `signal` resolves or the server fails, then stops.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let failed = match self.server.as_mut() {
            Some(server) => {
                tokio::select! {
                    ended = server => Some(ended),
                    () = signal => None,
                }
            }
            None => None,
        };
        if let Some(ended) = failed {
            self.server = None;
            let result = match ended {
                Ok(Ok(())) => Err(anyhow::anyhow!("the HTTP server stopped")),
                Ok(Err(e)) => Err(e).context("the HTTP server failed"),
                Err(e) => Err(e).context("the HTTP server failed"),
            };
            self.shutdown().await?;
            return result;
        }
        self.shutdown().await
    }

    /// Stops as API Gateway and a database would: takes no new HTTP requests or WebSocket
    /// connections; lets the HTTP requests in flight finish (for up to [`DRAIN_TIMEOUT`]; their
    /// pushes still reach the open sockets); closes every WebSocket with 1001 (going away) and
    /// runs `$disconnect` for each (waiting up to [`DISCONNECT_TIMEOUT`]); closes the pool; and
    /// stops the embedded cluster if the gateway started it (a fast shutdown, waited for).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.ws_api.refuse_new_connections();
        if let Some(purge) = self.purge.take() {
            purge.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take() {
            match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the HTTP server failed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP server failed"),
                Err(_) => {
                    tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; cut off");
                    server.abort();
                }
            }
        }
        let open = self
            .ws_api
            .close_all(websocket::GOING_AWAY, DISCONNECT_TIMEOUT)
            .await;
        if open > 0 {
            tracing::warn!(
                open,
                "WebSocket connections without $disconnect after {DISCONNECT_TIMEOUT:?}"
            );
        }
        if let Some(stop) = self.ws_stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.ws_server.take()
            && tokio::time::timeout(Duration::from_secs(2), &mut server)
                .await
                .is_err()
        {
            tracing::debug!("management connections still open at stop");
            server.abort();
        }
        self.state.db.close().await;
        if let Some(cluster) = self.cluster.take() {
            tokio::task::spawn_blocking(move || cluster.stop())
                .await
                .context("the PostgreSQL stop was interrupted")??;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        // Without a shutdown, the server still stops taking requests; a cluster still stops
        // (blocking) when its handle drops.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.ws_stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.ws_server.take() {
            server.abort();
        }
        if let Some(purge) = self.purge.take() {
            purge.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_secret_is_made_once_and_kept_private() {
        let dir = std::env::temp_dir().join(format!("blockchat-secret-{}", std::process::id()));
        let path = dir.join(JWT_SECRET_FILE);
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_create_secret(&path).expect("created");
        let second = load_or_create_secret(&path).expect("read back");
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn explicit_values_win_over_settings_and_the_environment() {
        let mut settings = BTreeMap::new();
        settings.insert("JWT_ISSUER".to_owned(), "local-test".to_owned());
        settings.insert("DATABASE_URL".to_owned(), "postgres://ignored".to_owned());
        let config = config(
            &settings,
            "postgres://postgres@localhost/x",
            "0123456789abcdef0123456789abcdef",
        )
        .expect("valid");
        assert_eq!(
            config.database_url.expose_secret(),
            "postgres://postgres@localhost/x"
        );
        assert_eq!(config.jwt_issuer, "local-test");
    }
}
