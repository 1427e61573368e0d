//! An embedded PostgreSQL cluster, so that the gateway and the tests need nothing but the server
//! binaries of a PostgreSQL installation.
//!
//! The cluster listens on a Unix socket only (no TCP port to collide with another server), keeps
//! its data between runs, and dies with the process that started it. PostgreSQL refuses to run as
//! root; when we are root, the server runs as the `postgres` system user, and the data goes where
//! that user can reach it.
//!
//! - [`cluster`]: the cluster's lifecycle (initdb, start, find a running server, stop);
//! - [`placement`]: where the data lives and which user owns it;
//! - [`process`]: the server's child processes, tied to ours, and their signals;
//! - [`binaries`]: finding `initdb` and `postgres`;
//! - [`databases`]: creating, copying and dropping databases, and the migrations;
//! - `sys`: the operating-system calls std lacks, through `nix`'s safe wrappers.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

pub mod binaries;
pub mod cluster;
pub mod databases;
pub mod lock;
pub mod placement;
pub mod process;
mod sys;

pub use binaries::{Binaries, search_dirs, versioned_dirs};
pub use cluster::{Cluster, ClusterOptions};
pub use databases::{create_database, databases_with_prefix, drop_database, migrate, quote_ident};
pub use lock::FileLock;
pub use placement::{fallback_data_dir, require_reachable};

/// The superuser `initdb` creates; trust authentication on the private socket needs no password.
pub const SUPERUSER: &str = "postgres";

/// The port only names the socket file (`.s.PGSQL.<port>`) in the cluster's own socket folder, so
/// the usual one cannot collide with another server.
pub const DEFAULT_PORT: u16 = 5432;

/// The database every cluster has, used to create and drop the others.
pub const MAINTENANCE_DATABASE: &str = "postgres";

/// Where Debian and Ubuntu put the server binaries, one folder per major version.
pub const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

pub(crate) const INSTALL_HINT: &str = "install the PostgreSQL server (Debian/Ubuntu: `apt-get install \
     postgresql`; Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql`), or \
     give a running server with --database-url";

/// The system user the server runs as when we are root.
pub(crate) const SERVICE_USER: &str = "postgres";

/// How often the waits look again.
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

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> PgError {
    move |source| PgError::Io {
        context: context.into(),
        source,
    }
}
