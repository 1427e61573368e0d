//! An embedded PostgreSQL cluster, so that the gateway and the tests need nothing but the server
//! binaries of a PostgreSQL installation.
//!
//! The cluster listens on a Unix socket only (no TCP port to collide with another server), keeps
//! its data between runs, and dies with the process that started it. PostgreSQL refuses to run as
//! root; when we are root, the server runs as the `postgres` system user.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::{ConnectOptions, Connection};

/// The superuser `initdb` creates; trust authentication on the private socket needs no password.
pub const SUPERUSER: &str = "postgres";

/// The port only names the socket file (`.s.PGSQL.<port>`) in the cluster's own socket folder, so
/// the usual one cannot collide with another server.
pub const DEFAULT_PORT: u16 = 5432;

/// The database every cluster has, used to create and drop the others.
pub const MAINTENANCE_DATABASE: &str = "postgres";

/// Where Debian and Ubuntu put the server binaries, one folder per major version.
pub const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

const INSTALL_HINT: &str = "install the PostgreSQL server (Debian/Ubuntu: `apt-get install \
     postgresql`; Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql`), or \
     give a running server with --database-url";

/// The system user the server runs as when we are root.
const SERVICE_USER: &str = "postgres";

/// Longest socket path the kernel accepts (`sun_path` is 108 bytes with its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

const LOG_FILE: &str = "postgres.log";
const PID_FILE: &str = "postmaster.pid";
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "no PostgreSQL server binaries (`initdb` and `postgres` side by side) in {searched}; \
         {INSTALL_HINT}"
    )]
    BinariesNotFound { searched: String },
    #[error(
        "PostgreSQL refuses to run as root and there is no `{SERVICE_USER}` system user to run it \
         as; create one (`useradd --system --user-group {SERVICE_USER}`) or run as an ordinary user"
    )]
    NoServiceUser,
    #[error(
        "the `{SERVICE_USER}` user cannot reach {data_dir}: {blocked} is not searchable by it \
         (`chmod o+x {blocked}`, or choose a data folder elsewhere)"
    )]
    Unreachable { data_dir: PathBuf, blocked: PathBuf },
    #[error("initdb for {data_dir} failed ({status}):\n{output}")]
    Initdb {
        data_dir: PathBuf,
        status: ExitStatus,
        output: String,
    },
    #[error(
        "the PostgreSQL server for {data_dir} exited while starting ({status}); {log} ends with:\n{tail}"
    )]
    Exited {
        data_dir: PathBuf,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("the PostgreSQL server for {data_dir} was not ready after {waited:?}; see {log}")]
    StartTimeout {
        data_dir: PathBuf,
        waited: Duration,
        log: PathBuf,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> PgError {
    move |source| PgError::Io {
        context: context.into(),
        source,
    }
}

/// The server binaries of one PostgreSQL installation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binaries {
    pub initdb: PathBuf,
    pub postgres: PathBuf,
}

impl Binaries {
    /// Looks on `PATH`, then under `/usr/lib/postgresql/*/bin`, newest version first.
    pub fn find() -> Result<Self, PgError> {
        Self::find_in(search_dirs())
    }

    /// Looks in `dirs`, in order, for a folder that holds both `initdb` and `postgres` (taking
    /// them from one folder keeps their versions in step).
    pub fn find_in(dirs: impl IntoIterator<Item = PathBuf>) -> Result<Self, PgError> {
        let mut searched = Vec::new();
        for dir in dirs {
            let initdb = dir.join("initdb");
            let postgres = dir.join("postgres");
            if is_executable(&initdb) && is_executable(&postgres) {
                return Ok(Self { initdb, postgres });
            }
            searched.push(dir.display().to_string());
        }
        let searched = if searched.is_empty() {
            "no folder (PATH is empty and there is no /usr/lib/postgresql)".to_owned()
        } else {
            searched.join(", ")
        };
        Err(PgError::BinariesNotFound { searched })
    }
}

/// The folders [`Binaries::find`] searches: `PATH`, then [`versioned_dirs`] of
/// [`VERSIONED_ROOT`].
pub fn search_dirs() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    dirs.extend(versioned_dirs(Path::new(VERSIONED_ROOT)));
    dirs
}

/// `root/<version>/bin` for each version folder under `root`, newest first.
pub fn versioned_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u64>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let key = name
                .split('.')
                .map(|part| part.parse::<u64>().ok())
                .collect::<Option<Vec<_>>>()?;
            Some((key, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

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
        fs::create_dir_all(&options.data_dir).map_err(io_err(format!(
            "cannot create {}",
            options.data_dir.display()
        )))?;
        let data_dir = fs::canonicalize(&options.data_dir).map_err(io_err(format!(
            "cannot resolve {}",
            options.data_dir.display()
        )))?;

        // Two processes starting the same folder at once would both run initdb or both start a
        // server; the second one waits and then finds the first one's server.
        let _lock = FileLock::acquire(&lock_path(&data_dir))?;

        let run_as = service_user(&data_dir)?;
        if let Some(user) = run_as {
            prepare_for(&data_dir, user)?;
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

        let mut command = Command::new(&binaries.postgres);
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
        let mut child = spawn_tied_to_process(command, libc::SIGINT).map_err(io_err(format!(
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

    /// Stops the server if this handle started it: a fast shutdown (SIGINT to the postmaster),
    /// which ends open sessions and checkpoints, so the next start needs no recovery.
    pub fn stop(mut self) -> Result<(), PgError> {
        self.stop_owned()
    }

    fn stop_owned(&mut self) -> Result<(), PgError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
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

/// Creates `name` (optionally as a copy of `template`) unless it exists; `true` when created.
pub async fn create_database(
    conn: &mut PgConnection,
    name: &str,
    template: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_some() {
        return Ok(false);
    }
    let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
    if let Some(template) = template {
        sql.push_str(" TEMPLATE ");
        sql.push_str(&quote_ident(template));
    }
    match sqlx::raw_sql(&sql).execute(&mut *conn).await {
        Ok(_) => Ok(true),
        // Someone else created it between our look and our create.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Drops `name` if it exists, ending any sessions still connected to it.
pub async fn drop_database(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    sqlx::raw_sql(&sql).execute(&mut *conn).await?;
    Ok(())
}

/// The databases whose names start with `prefix`.
pub async fn databases_with_prefix(
    conn: &mut PgConnection,
    prefix: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1 ORDER BY datname",
    )
    .bind(prefix)
    .fetch_all(&mut *conn)
    .await
}

/// Applies the product's migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    blockchat::MIGRATOR.run(pool).await
}

/// An SQL identifier, quoted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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

/// An exclusive advisory lock (`flock`) on a file, held until dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Waits for the lock, creating the file if needed.
    pub fn acquire(path: &Path) -> Result<Self, PgError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err(format!("cannot open {}", path.display())))?;
        sys::lock_exclusive(&file).map_err(io_err(format!("cannot lock {}", path.display())))?;
        Ok(Self { _file: file })
    }
}

/// Beside the data folder, not in it: initdb wants an empty folder.
fn lock_path(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.file_name().map(OsString::from).unwrap_or_default();
    name.push(".lock");
    data_dir.with_file_name(name)
}

#[derive(Clone, Copy, Debug)]
struct ServiceUser {
    uid: u32,
    gid: u32,
}

fn service_user(data_dir: &Path) -> Result<Option<ServiceUser>, PgError> {
    if !sys::is_root() {
        return Ok(None);
    }
    let (uid, gid) = sys::user_ids(SERVICE_USER)
        .map_err(io_err(format!("cannot look up the `{SERVICE_USER}` user")))?
        .ok_or(PgError::NoServiceUser)?;
    let user = ServiceUser { uid, gid };
    for ancestor in data_dir.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.mode();
        let searchable = (meta.uid() == uid && mode & 0o100 != 0)
            || (meta.gid() == gid && mode & 0o010 != 0)
            || mode & 0o001 != 0;
        if !searchable {
            return Err(PgError::Unreachable {
                data_dir: data_dir.to_owned(),
                blocked: ancestor.to_owned(),
            });
        }
    }
    Ok(Some(user))
}

/// The server checks that it owns its data folder and that no one else can read it.
fn prepare_for(data_dir: &Path, user: ServiceUser) -> Result<(), PgError> {
    let meta =
        fs::metadata(data_dir).map_err(io_err(format!("cannot read {}", data_dir.display())))?;
    if meta.uid() != user.uid || meta.gid() != user.gid {
        std::os::unix::fs::chown(data_dir, Some(user.uid), Some(user.gid)).map_err(io_err(
            format!("cannot give {} to `{SERVICE_USER}`", data_dir.display()),
        ))?;
    }
    if !matches!(meta.mode() & 0o777, 0o700 | 0o750) {
        fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("cannot restrict {}", data_dir.display())))?;
    }
    Ok(())
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
        let mut command = Command::new(&binaries.initdb);
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
        let child = spawn_tied_to_process(command, libc::SIGTERM)
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
        prepare_for(&dir, user)?;
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

fn is_postgres(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => matches!(comm.trim(), "postgres" | "postmaster"),
        // Without /proc there is no telling; a live PID is taken at its word.
        Err(_) => !Path::new("/proc/self").exists(),
    }
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

/// Fast shutdown, and an immediate one if that takes too long.
fn stop_pid(pid: i32, child: Option<&mut Child>) -> Result<(), PgError> {
    const FAST: Duration = Duration::from_secs(30);
    match sys::signal(pid, libc::SIGINT) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
        Err(e) => return Err(io_err(format!("cannot signal PostgreSQL (PID {pid})"))(e)),
    }
    match child {
        Some(child) => {
            let started = Instant::now();
            loop {
                if child
                    .try_wait()
                    .map_err(io_err("cannot watch the PostgreSQL server"))?
                    .is_some()
                {
                    return Ok(());
                }
                if started.elapsed() > FAST {
                    let _ = sys::signal(pid, libc::SIGQUIT);
                    child
                        .wait()
                        .map_err(io_err("cannot watch the PostgreSQL server"))?;
                    return Ok(());
                }
                std::thread::sleep(POLL);
            }
        }
        None => {
            if !wait_for_exit(pid, FAST) {
                let _ = sys::signal(pid, libc::SIGQUIT);
                wait_for_exit(pid, Duration::from_secs(5));
            }
            Ok(())
        }
    }
}

/// For a process that is not our child; `true` once it is gone.
fn wait_for_exit(pid: i32, timeout: Duration) -> bool {
    let started = Instant::now();
    while sys::is_alive(pid) {
        if started.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// Spawns `command` so that it receives `signal` when this process ends, however it ends.
///
/// The kernel sends the parent-death signal when the *thread* that forked the child exits, not
/// the process; a child forked from a short-lived thread (a test's runtime, a blocking-pool
/// worker) would be signalled as soon as that thread ends. So every such child is forked from
/// one thread that lives as long as the process.
fn spawn_tied_to_process(mut command: Command, signal: libc::c_int) -> io::Result<Child> {
    struct Job {
        command: Command,
        reply: mpsc::Sender<io::Result<Child>>,
    }
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

    sys::die_with_parent(&mut command, signal);
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("postgres-spawner".into())
            .spawn(move || {
                for mut job in inbox {
                    let _ = job.reply.send(job.command.spawn());
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the thread that spawns PostgreSQL");
        }
        Mutex::new(jobs)
    });
    let (reply, answer) = mpsc::channel();
    let sent = spawner
        .lock()
        .map_err(|_| io::Error::other("the PostgreSQL spawner is poisoned"))?
        .send(Job { command, reply });
    if sent.is_err() {
        return Err(io::Error::other("the PostgreSQL spawner thread is gone"));
    }
    answer
        .recv()
        .map_err(|_| io::Error::other("the PostgreSQL spawner thread is gone"))?
}

/// The few system calls std does not offer.
mod sys {
    use std::ffi::CString;
    use std::fs::File;
    use std::io;
    use std::mem::MaybeUninit;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    pub fn is_root() -> bool {
        // SAFETY: geteuid(2) takes nothing, touches no memory of ours and cannot fail.
        #[allow(unsafe_code)]
        let euid = unsafe { libc::geteuid() };
        euid == 0
    }

    /// The uid and gid of a user, or `None` if there is no such user.
    pub fn user_ids(name: &str) -> io::Result<Option<(u32, u32)>> {
        let name = CString::new(name)?;
        let mut buf: Vec<libc::c_char> = vec![0; 4096];
        loop {
            let mut pwd = MaybeUninit::<libc::passwd>::uninit();
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: `name` is NUL-terminated; `pwd`, `buf` (with its true length) and `found`
            // are live storage of this frame, which getpwnam_r writes within and nowhere else.
            #[allow(unsafe_code)]
            let rc = unsafe {
                libc::getpwnam_r(
                    name.as_ptr(),
                    pwd.as_mut_ptr(),
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut found,
                )
            };
            if rc == libc::ERANGE && buf.len() < 1 << 20 {
                buf.resize(buf.len() * 4, 0);
                continue;
            }
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            if found.is_null() {
                return Ok(None);
            }
            // SAFETY: on success with a non-null result, getpwnam_r has filled in `pwd`.
            #[allow(unsafe_code)]
            let pwd = unsafe { pwd.assume_init() };
            return Ok(Some((pwd.pw_uid, pwd.pw_gid)));
        }
    }

    /// Sends `signal` to one process (never a group: `pid` must be positive).
    pub fn signal(pid: i32, signal: libc::c_int) -> io::Result<()> {
        if pid <= 0 {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn is_alive(pid: i32) -> bool {
        match signal(pid, 0) {
            Ok(()) => true,
            Err(e) => e.raw_os_error() == Some(libc::EPERM),
        }
    }

    pub fn lock_exclusive(file: &File) -> io::Result<()> {
        loop {
            // SAFETY: flock(2) on a descriptor that `file` keeps open for the whole call.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Has the kernel send `signal` to the child when the thread that forks it ends.
    pub fn die_with_parent(command: &mut Command, signal: libc::c_int) {
        let parent = i32::try_from(std::process::id()).unwrap_or(0);
        let signal = libc::c_ulong::try_from(signal).unwrap_or(libc::SIGKILL as libc::c_ulong);
        // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
        // calls are allowed: prctl(2) and getppid(2) are, and the closure neither allocates nor
        // takes a lock.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // Had the parent ended between fork and prctl, no signal would ever come.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
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

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("test_1"), "\"test_1\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn versioned_folders_come_newest_first() {
        let root = std::env::temp_dir().join(format!("blockchat-versions-{}", std::process::id()));
        for v in ["9.6", "15", "16", "12", "notes"] {
            fs::create_dir_all(root.join(v).join("bin")).expect("create");
        }
        let dirs = versioned_dirs(&root);
        let names: Vec<String> = dirs
            .iter()
            .filter_map(|d| d.parent()?.file_name()?.to_str().map(str::to_owned))
            .collect();
        assert_eq!(names, ["16", "15", "12", "9.6"]);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn the_lock_sits_beside_the_data_folder() {
        assert_eq!(
            lock_path(Path::new("/x/.blockchat/postgres")),
            Path::new("/x/.blockchat/postgres.lock")
        );
    }
}
