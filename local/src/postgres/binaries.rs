//! Finding a PostgreSQL installation's server binaries.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{PgError, VERSIONED_ROOT};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
