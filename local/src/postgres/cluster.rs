//! A cluster's lifecycle: initialise the folder, start the server (or find it running), wait
//! until it is ready, stop it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use super::databases::create_database;
use super::lock::{FileLock, lock_path};
use super::placement::{self, ServiceUser};
use super::process::{
    children, command_tied_to_process, is_postgres, spawn_tied_to_process, stop_pid, wait_for_exit,
};
use super::{Binaries, DEFAULT_PORT, MAINTENANCE_DATABASE, POLL, PgError, SUPERUSER, io_err, sys};

/// Longest socket path the kernel accepts (`sun_path` is 108 bytes with its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

const LOG_FILE: &str = "postgres.log";
const PID_FILE: &str = "postmaster.pid";

/// How to start a [`Cluster`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub data_dir: PathBuf,
    pub port: u16,
    /// `None` searches for them in `search_dirs`.
    pub binaries: Option<Binaries>,
    /// Where to look for the binaries; `None` is [`search_dirs`].
    pub search_dirs: Option<Vec<PathBuf>>,
    /// Extra server settings, passed as `-c name=value`.
    pub settings: Vec<(String, String)>,
    /// A server already serving the folder is used as it is; with this set it is stopped and a
    /// server of our own started instead (for a process that must own the cluster it uses).
    pub replace_running: bool,
    /// Whether the data may live elsewhere when, as root, the `postgres` user cannot reach
    /// `data_dir` (see [`placement`]). On by default; off for a folder someone chose.
    pub movable: bool,
    pub start_timeout: Duration,
}

impl ClusterOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            port: DEFAULT_PORT,
            binaries: None,
            search_dirs: None,
            settings: Vec::new(),
            replace_running: false,
            movable: true,
            start_timeout: Duration::from_secs(60),
        }
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn binaries(mut self, binaries: Binaries) -> Self {
        self.binaries = Some(binaries);
        self
    }

    pub fn search_in(mut self, dirs: Vec<PathBuf>) -> Self {
        self.search_dirs = Some(dirs);
        self
    }

    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// A folder chosen by hand is used where it is, or not at all.
    pub fn fixed_location(mut self) -> Self {
        self.movable = false;
        self
    }

    pub fn replace_running(mut self, replace: bool) -> Self {
        self.replace_running = replace;
        self
    }

    /// Trades crash safety for speed: right for a throwaway cluster (tests), wrong for data
    /// anyone wants to keep through a power cut. A clean stop still keeps everything.
    pub fn ephemeral(self) -> Self {
        self.setting("fsync", "off")
            .setting("synchronous_commit", "off")
            .setting("full_page_writes", "off")
    }
}

/// A running PostgreSQL server over one data folder.
///
/// A server this handle started is stopped when the handle is dropped (or [`Cluster::stop`]ped)
/// and dies with the process in any case. A server that was already serving the folder (another
/// gateway on the same data) is used but left running.
#[derive(Debug)]
pub struct Cluster {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    pid: i32,
    child: Option<Child>,
}

impl Cluster {
    /// Initialises the folder on first use, starts the server and waits until it accepts
    /// connections. Blocking, and independent of any async runtime.
    pub fn start(options: ClusterOptions) -> Result<Self, PgError> {
        let binaries = match (&options.binaries, &options.search_dirs) {
            (Some(binaries), _) => binaries.clone(),
            (None, Some(dirs)) => Binaries::find_in(dirs.iter().cloned())?,
            (None, None) => Binaries::find()?,
        };
        let run_as = ServiceUser::for_this_process()?;
        let placement = placement::place(&options.data_dir, run_as, options.movable)?;
        let data_dir = placement.data_dir;
        if let Some((requested, blocked)) = &placement.moved_from {
            tracing::info!(
                "the `postgres` user cannot reach {} ({} is private to its owner): the cluster's \
                 data is in {}",
                requested.display(),
                blocked.display(),
                data_dir.display()
            );
        }

        // Two processes starting the same folder at once would both run initdb or both start a
        // server; the second one waits and then finds the first one's server.
        let _lock = FileLock::acquire(&lock_path(&data_dir))?;

        if let Some(user) = run_as {
            placement::prepare_for(&data_dir, user)?;
        }
        if !data_dir.join("PG_VERSION").exists() {
            initdb(&binaries, &data_dir, run_as)?;
        }

        if let Some(running) = running_server(&data_dir)? {
            if options.replace_running {
                tracing::info!(pid = running.pid, data_dir = %data_dir.display(), "stopping the server already running");
                stop_pid(running.pid, None)?;
            } else if running.status.as_deref() == Some("stopping") {
                wait_for_exit(running.pid, options.start_timeout);
            } else {
                let ready = wait_ready(&data_dir, None, running.pid, options.start_timeout)?;
                tracing::info!(pid = ready.pid, data_dir = %data_dir.display(), "using the PostgreSQL server already running");
                return Ok(Self {
                    socket_dir: ready.socket_dir.unwrap_or_else(|| data_dir.clone()),
                    port: ready.port.unwrap_or(options.port),
                    pid: ready.pid,
                    data_dir,
                    child: None,
                });
            }
            remove_stale_files(&data_dir, options.port);
        }

        let socket_dir = socket_dir_for(&data_dir, options.port, run_as)?;
        let log_path = data_dir.join(LOG_FILE);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(format!("cannot open {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io_err("cannot duplicate the log file handle"))?;

        let mut command = command_tied_to_process(&binaries.postgres, Signal::SIGINT);
        command
            .arg("-D")
            .arg(&data_dir)
            .arg("-k")
            .arg(&socket_dir)
            .arg("-p")
            .arg(options.port.to_string())
            .args(["-c", "listen_addresses="]);
        for (name, value) in &options.settings {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Out of the terminal's process group: Ctrl-C reaches the gateway, which stops the
            // server after the last request instead of under it.
            .process_group(0);
        if let Some(user) = run_as {
            command.uid(user.uid).gid(user.gid);
        }
        let mut child = spawn_tied_to_process(command).map_err(io_err(format!(
            "cannot run {}",
            binaries.postgres.display()
        )))?;
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);

        match wait_ready(&data_dir, Some(&mut child), pid, options.start_timeout) {
            Ok(_) => {
                tracing::info!(pid, data_dir = %data_dir.display(), "PostgreSQL started");
                Ok(Self {
                    data_dir,
                    socket_dir,
                    port: options.port,
                    pid,
                    child: Some(child),
                })
            }
            Err(e) => {
                let _ = stop_pid(pid, Some(&mut child));
                Err(e)
            }
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether this handle started the server (and so stops it).
    pub fn is_owned(&self) -> bool {
        self.child.is_some()
    }

    /// `postgres://postgres@localhost:PORT/DATABASE?host=SOCKET_DIR`, as sqlx and libpq read it.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost:{}/{}?host={}",
            self.port,
            percent_encode(database),
            percent_encode(&self.socket_dir.to_string_lossy()),
        )
    }

    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(self.port)
            .username(SUPERUSER)
            .database(database)
    }

    /// A connection to the maintenance database, for creating and dropping others.
    pub async fn connect_maintenance(&self) -> Result<PgConnection, sqlx::Error> {
        self.connect_options(MAINTENANCE_DATABASE).connect().await
    }

    /// Creates `database` unless it exists; `true` when it was created.
    pub async fn ensure_database(&self, database: &str) -> Result<bool, sqlx::Error> {
        let mut conn = self.connect_maintenance().await?;
        let created = create_database(&mut conn, database, None).await;
        let _ = conn.close().await;
        created
    }

    /// Suspends the server and every one of its processes (SIGSTOP to the postmaster, then to
    /// its children: each backend runs in a session of its own, out of the postmaster's
    /// process group): connections land in the socket's backlog and nothing answers, as with
    /// a database host that hangs or a network that drops packets. For fault tests;
    /// [`Cluster::thaw`] resumes it.
    pub fn freeze(&self) -> Result<(), PgError> {
        self.signal_all(Signal::SIGSTOP).map_err(io_err(format!(
            "cannot suspend PostgreSQL (PID {})",
            self.pid
        )))
    }

    /// Resumes a server [`Cluster::freeze`] suspended.
    pub fn thaw(&self) -> Result<(), PgError> {
        self.signal_all(Signal::SIGCONT).map_err(io_err(format!(
            "cannot resume PostgreSQL (PID {})",
            self.pid
        )))
    }

    /// The postmaster first, so that it forks no child that the signal would miss.
    fn signal_all(&self, signal: Signal) -> io::Result<()> {
        sys::signal(self.pid, signal)?;
        for child in children(self.pid) {
            match sys::signal(child, signal) {
                Err(e) if !sys::is_no_such_process(&e) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Stops the server if this handle started it: a fast shutdown (SIGINT to the postmaster),
    /// which ends open sessions and checkpoints, so the next start needs no recovery.
    pub fn stop(mut self) -> Result<(), PgError> {
        self.stop_owned()
    }

    fn stop_owned(&mut self) -> Result<(), PgError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // A suspended server would not hear the shutdown signal.
        let _ = self.signal_all(Signal::SIGCONT);
        let pid = read_pid_file(&self.data_dir)
            .ok()
            .flatten()
            .map(|f| f.pid)
            .filter(|pid| *pid == self.pid)
            .unwrap_or(self.pid);
        stop_pid(pid, Some(&mut child))?;
        tracing::info!(pid, data_dir = %self.data_dir.display(), "PostgreSQL stopped");
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop_owned() {
            tracing::warn!(error = %e, "could not stop PostgreSQL");
        }
    }
}

/// Percent-encodes everything but unreserved characters and `/`, for URL paths and query values.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn initdb(
    binaries: &Binaries,
    data_dir: &Path,
    run_as: Option<ServiceUser>,
) -> Result<(), PgError> {
    // C.UTF-8 gives lower() and upper() Unicode case rules, which the case-insensitive unique
    // usernames and emails rely on; not every system has that locale, so fall back to plain C.
    let locales: [&[&str]; 2] = [&["--locale", "C.UTF-8"], &["--no-locale"]];
    let mut failure = None;
    for locale in locales {
        let mut command = command_tied_to_process(&binaries.initdb, Signal::SIGTERM);
        command
            .arg("-D")
            .arg(data_dir)
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ])
            .args(locale)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(user) = run_as {
            command.uid(user.uid).gid(user.gid);
        }
        tracing::info!(data_dir = %data_dir.display(), "initialising a PostgreSQL cluster");
        let child = spawn_tied_to_process(command)
            .map_err(io_err(format!("cannot run {}", binaries.initdb.display())))?;
        let result = child
            .wait_with_output()
            .map_err(io_err(format!("cannot run {}", binaries.initdb.display())))?;
        if result.status.success() {
            return Ok(());
        }
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        let locale_refused = output.contains("locale");
        failure = Some(PgError::Initdb {
            data_dir: data_dir.to_owned(),
            status: result.status,
            output,
        });
        if !locale_refused {
            break;
        }
    }
    Err(failure.unwrap_or_else(|| PgError::Initdb {
        data_dir: data_dir.to_owned(),
        status: ExitStatus::default(),
        output: String::new(),
    }))
}

/// The socket goes in the data folder unless its path would be too long for the kernel; then in
/// a folder of its own under the temporary folder. Either way a later run finds it in
/// `postmaster.pid`.
fn socket_dir_for(
    data_dir: &Path,
    port: u16,
    run_as: Option<ServiceUser>,
) -> Result<PathBuf, PgError> {
    let socket_name = format!(".s.PGSQL.{port}");
    if data_dir.join(&socket_name).as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(data_dir.to_owned());
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    let dir = std::env::temp_dir().join(format!("blockchat-pg-{:016x}", hasher.finish()));
    fs::create_dir_all(&dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    if let Some(user) = run_as {
        placement::prepare_for(&dir, user)?;
    }
    Ok(dir)
}

/// What `postmaster.pid` says: the PID, the data folder, the start time, the port, the socket
/// folder, the listen address, the shared memory key and the status.
#[derive(Debug)]
struct PidFile {
    pid: i32,
    port: Option<u16>,
    socket_dir: Option<PathBuf>,
    status: Option<String>,
}

fn read_pid_file(data_dir: &Path) -> io::Result<Option<PidFile>> {
    let text = match fs::read_to_string(data_dir.join(PID_FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let lines: Vec<&str> = text.lines().collect();
    let pid = lines
        .first()
        .and_then(|l| l.trim().parse::<i32>().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no PID in postmaster.pid"))?;
    Ok(Some(PidFile {
        pid,
        port: lines.get(3).and_then(|l| l.trim().parse().ok()),
        socket_dir: lines
            .get(4)
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .map(PathBuf::from),
        status: lines.get(7).map(|l| l.trim().to_owned()),
    }))
}

/// A live postmaster serving `data_dir`, if any; a pid file left by a server that is gone is
/// removed (the PID may since belong to an unrelated process, which would make PostgreSQL
/// refuse to start).
fn running_server(data_dir: &Path) -> Result<Option<PidFile>, PgError> {
    let file = match read_pid_file(data_dir) {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            remove_pid_file(data_dir)?;
            return Ok(None);
        }
        Err(e) => return Err(io_err(format!("cannot read {PID_FILE}"))(e)),
    };
    if sys::is_alive(file.pid) && is_postgres(file.pid) {
        return Ok(Some(file));
    }
    tracing::info!(
        pid = file.pid,
        "removing the pid file of a PostgreSQL server that is gone"
    );
    remove_pid_file(data_dir)?;
    Ok(None)
}

fn remove_pid_file(data_dir: &Path) -> Result<(), PgError> {
    match fs::remove_file(data_dir.join(PID_FILE)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("cannot remove the stale {PID_FILE}"))(e)),
    }
}

/// The socket's lock file names the PID too; a stale one would stop the new server likewise.
fn remove_stale_files(data_dir: &Path, port: u16) {
    let _ = fs::remove_file(data_dir.join(PID_FILE));
    let _ = fs::remove_file(data_dir.join(format!(".s.PGSQL.{port}.lock")));
}

fn wait_ready(
    data_dir: &Path,
    mut child: Option<&mut Child>,
    pid: i32,
    timeout: Duration,
) -> Result<PidFile, PgError> {
    let started = Instant::now();
    let log = data_dir.join(LOG_FILE);
    loop {
        let exited = match child.as_deref_mut() {
            Some(child) => child
                .try_wait()
                .map_err(io_err("cannot watch the PostgreSQL server"))?
                .map(|status| status.to_string()),
            None => (!sys::is_alive(pid)).then(|| "it is gone".to_owned()),
        };
        if let Some(status) = exited {
            return Err(PgError::Exited {
                data_dir: data_dir.to_owned(),
                status,
                tail: log_tail(&log),
                log,
            });
        }
        if let Ok(Some(file)) = read_pid_file(data_dir) {
            let socket = file
                .socket_dir
                .clone()
                .unwrap_or_else(|| data_dir.to_owned())
                .join(format!(".s.PGSQL.{}", file.port.unwrap_or(DEFAULT_PORT)));
            if file.pid == pid && file.status.as_deref() == Some("ready") && socket.exists() {
                return Ok(file);
            }
        }
        if started.elapsed() > timeout {
            return Err(PgError::StartTimeout {
                data_dir: data_dir.to_owned(),
                waited: timeout,
                log,
            });
        }
        std::thread::sleep(POLL);
    }
}

fn log_tail(path: &Path) -> String {
    const TAIL: u64 = 2048;
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_point_sqlx_at_the_socket_folder() {
        let cluster = Cluster {
            data_dir: PathBuf::from("/data/pg"),
            socket_dir: PathBuf::from("/data/my pg"),
            port: 5432,
            pid: 0,
            child: None,
        };
        assert_eq!(
            cluster.url("blockchat"),
            "postgres://postgres@localhost:5432/blockchat?host=/data/my%20pg"
        );
        let options: PgConnectOptions = cluster.url("blockchat").parse().expect("valid URL");
        assert_eq!(
            options.get_socket().map(PathBuf::as_path),
            Some(Path::new("/data/my pg"))
        );
        assert_eq!(options.get_database(), Some("blockchat"));
    }

    /// A clone under a folder only root may enter (root's home, a `mktemp -d` folder): the
    /// cluster starts, serves and keeps its place across restarts without any permission being
    /// changed; the same folder chosen explicitly is refused with the reason.
    #[test]
    fn a_cluster_asked_for_under_a_private_folder_starts_where_it_can_run() {
        use std::os::unix::fs::PermissionsExt;

        let private =
            std::env::temp_dir().join(format!("blockchat-private-clone-{}", std::process::id()));
        let _ = fs::remove_dir_all(&private);
        fs::create_dir_all(&private).expect("create");
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).expect("chmod");
        let requested = private.join("clone/target/tmp/pg");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");

        let cluster = Cluster::start(ClusterOptions::new(&requested).ephemeral()).expect("starts");
        let as_root = sys::is_root();
        assert_eq!(!cluster.data_dir().starts_with(&private), as_root);
        let answer: i32 = runtime
            .block_on(async {
                let mut conn = cluster.connect_maintenance().await?;
                sqlx::query_scalar("SELECT 41 + 1")
                    .fetch_one(&mut conn)
                    .await
            })
            .expect("the server answers");
        assert_eq!(answer, 42);
        let data_dir = cluster.data_dir().to_owned();
        cluster.stop().expect("stops");

        let again = Cluster::start(ClusterOptions::new(&requested).ephemeral()).expect("restarts");
        assert_eq!(again.data_dir(), data_dir, "the data stays in one place");
        again.stop().expect("stops");

        let chosen = Cluster::start(ClusterOptions::new(&requested).fixed_location());
        if as_root {
            let message = chosen.expect_err("refused").to_string();
            assert!(message.contains("is not searchable"), "{message}");
            assert!(
                message.contains(&private.display().to_string()),
                "{message}"
            );
        } else {
            chosen.expect("runs as ourselves").stop().expect("stops");
        }
        let _ = fs::remove_dir_all(&data_dir);
        let _ = fs::remove_file(lock_path(&data_dir));
        let _ = fs::remove_dir_all(&private);
    }
}
