//! A file lock that serialises the processes sharing one data folder.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;

use super::{PgError, io_err, sys};

/// An exclusive advisory lock (`flock`) on a file, held until dropped.
#[derive(Debug)]
pub struct FileLock {
    _lock: Flock<File>,
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
        let lock =
            sys::lock_exclusive(file).map_err(io_err(format!("cannot lock {}", path.display())))?;
        Ok(Self { _lock: lock })
    }
}

/// Beside the data folder, not in it: initdb wants an empty folder.
pub(crate) fn lock_path(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.file_name().map(OsString::from).unwrap_or_default();
    name.push(".lock");
    data_dir.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_sits_beside_the_data_folder() {
        assert_eq!(
            lock_path(Path::new("/x/.blockchat/postgres")),
            Path::new("/x/.blockchat/postgres.lock")
        );
    }
}
