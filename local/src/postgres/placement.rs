//! Where a cluster's data lives, and as whom the server runs.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user,
//! which must be able to reach its data folder. A project cloned into root's home (`/root` is
//! 0700 on Debian and in most containers) or into a `mktemp -d` folder is out of that user's
//! reach; rather than ask for a `chmod` on a private folder, the cluster then lives in a folder
//! of its own under `/var/lib/blockchat` (or `/var/tmp/blockchat`), named after the folder that
//! was asked for, so each clone keeps its own data from run to run. A folder chosen explicitly
//! (`--data-dir`) is never moved: it fails with a message that says what to change.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{PgError, SERVICE_USER, io_err, sys};

/// Where clusters go that the service user cannot reach where they were asked for, in order of
/// preference: `/var/lib` is for state that persists; `/var/tmp` survives reboots too.
pub const FALLBACK_ROOTS: [&str; 2] = ["/var/lib/blockchat", "/var/tmp/blockchat"];

/// The unprivileged user the server runs as when we are root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceUser {
    pub uid: u32,
    pub gid: u32,
}

impl ServiceUser {
    /// `None` when we are not root: the server then runs as ourselves.
    pub fn for_this_process() -> Result<Option<Self>, PgError> {
        if !sys::is_root() {
            return Ok(None);
        }
        let (uid, gid) = sys::user_ids(SERVICE_USER)
            .map_err(io_err(format!("cannot look up the `{SERVICE_USER}` user")))?
            .ok_or(PgError::NoServiceUser)?;
        Ok(Some(Self { uid, gid }))
    }

    /// Whether this user may pass through a folder with these owner ids and mode bits: the
    /// owner's bits apply to the owner, the group's to the group, the others' to the rest.
    fn can_search(self, owner: u32, group: u32, mode: u32) -> bool {
        let bit = if owner == self.uid {
            0o100
        } else if group == self.gid {
            0o010
        } else {
            0o001
        };
        mode & bit != 0
    }

    /// The first existing folder above `path` that this user cannot pass through.
    pub fn blocked_at(self, path: &Path) -> Option<PathBuf> {
        path.ancestors().skip(1).find_map(|ancestor| {
            let meta = fs::metadata(ancestor).ok()?;
            (!self.can_search(meta.uid(), meta.gid(), meta.mode())).then(|| ancestor.to_owned())
        })
    }
}

/// The data folder a cluster uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Absolute and resolved; exists.
    pub data_dir: PathBuf,
    /// Set when the folder asked for was out of the service user's reach: that folder, and the
    /// folder above it that blocked the way.
    pub moved_from: Option<(PathBuf, PathBuf)>,
}

/// Decides where the data for `requested` lives and creates that folder. Without a service user
/// (not root) it is `requested` itself; with one, it is `requested` when that user can reach it,
/// else — when `movable` — the folder [`fallback_data_dir`] names, else an
/// [`PgError::Unreachable`].
pub fn place(
    requested: &Path,
    user: Option<ServiceUser>,
    movable: bool,
) -> Result<Placement, PgError> {
    let absolute = std::path::absolute(requested)
        .map_err(io_err(format!("cannot resolve {}", requested.display())))?;
    let blocked = match user {
        None => None,
        Some(user) => user.blocked_at(&absolute),
    };
    let blocked = match blocked {
        Some(blocked) => blocked,
        None => {
            let data_dir = create_and_resolve(&absolute)?;
            // A symbolic link on the way may lead through a private folder after all.
            match user.and_then(|user| user.blocked_at(&data_dir)) {
                None => {
                    return Ok(Placement {
                        data_dir,
                        moved_from: None,
                    });
                }
                Some(blocked) => blocked,
            }
        }
    };
    let unreachable = || PgError::Unreachable {
        data_dir: absolute.clone(),
        blocked: blocked.clone(),
    };
    let Some(user) = user.filter(|_| movable) else {
        return Err(unreachable());
    };
    for root in FALLBACK_ROOTS {
        let candidate = fallback_data_dir(Path::new(root), &absolute);
        if prepare_root(Path::new(root)).is_err() || user.blocked_at(&candidate).is_some() {
            continue;
        }
        let data_dir = create_and_resolve(&candidate)?;
        return Ok(Placement {
            data_dir,
            moved_from: Some((absolute, blocked)),
        });
    }
    Err(unreachable())
}

/// Fails with [`PgError::Unreachable`] when we are root and the service user cannot reach
/// `data_dir`: for a folder chosen explicitly, which is never moved.
pub fn require_reachable(data_dir: &Path) -> Result<(), PgError> {
    let Some(user) = ServiceUser::for_this_process()? else {
        return Ok(());
    };
    let absolute = std::path::absolute(data_dir)
        .map_err(io_err(format!("cannot resolve {}", data_dir.display())))?;
    match user.blocked_at(&absolute) {
        None => Ok(()),
        Some(blocked) => Err(PgError::Unreachable {
            data_dir: absolute,
            blocked,
        }),
    }
}

/// `root/<name>`, the name made of `requested`'s path (its last 40 characters, readable) and a
/// hash of the whole path, so that it is the same on every run and differs between folders.
pub fn fallback_data_dir(root: &Path, requested: &Path) -> PathBuf {
    const READABLE: usize = 40;
    let path = requested.as_os_str().as_encoded_bytes();
    let readable: String = String::from_utf8_lossy(path)
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let skip = readable.chars().count().saturating_sub(READABLE);
    let tail: String = readable.chars().skip(skip).collect();
    root.join(format!(
        "{}-{:016x}",
        tail.trim_start_matches('-'),
        fnv1a(path)
    ))
}

/// FNV-1a: stable across builds and platforms, unlike std's `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The shared root is root's, readable and searchable by all; each cluster's own folder under it
/// is then given to the service user.
fn prepare_root(root: &Path) -> Result<(), PgError> {
    fs::create_dir_all(root).map_err(io_err(format!("cannot create {}", root.display())))?;
    let meta = fs::metadata(root).map_err(io_err(format!("cannot read {}", root.display())))?;
    if meta.mode() & 0o005 != 0o005 {
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))
            .map_err(io_err(format!("cannot open up {}", root.display())))?;
    }
    Ok(())
}

fn create_and_resolve(dir: &Path) -> Result<PathBuf, PgError> {
    fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    fs::canonicalize(dir).map_err(io_err(format!("cannot resolve {}", dir.display())))
}

/// The server checks that it owns its data folder and that no one else can read it.
pub(crate) fn prepare_for(data_dir: &Path, user: ServiceUser) -> Result<(), PgError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const USER: ServiceUser = ServiceUser { uid: 101, gid: 102 };

    #[test]
    fn a_folder_is_searchable_through_owner_group_or_other_bits() {
        assert!(USER.can_search(101, 0, 0o700));
        assert!(!USER.can_search(0, 0, 0o700));
        assert!(USER.can_search(0, 102, 0o710));
        assert!(!USER.can_search(0, 0, 0o770));
        assert!(!USER.can_search(0, 102, 0o701));
        assert!(USER.can_search(0, 0, 0o701));
        assert!(USER.can_search(0, 0, 0o755));
        assert!(!USER.can_search(101, 0, 0o655));
    }

    #[test]
    fn a_fallback_folder_is_named_after_the_folder_asked_for_and_stays_the_same() {
        let root = Path::new("/var/lib/blockchat");
        let gateway = fallback_data_dir(root, Path::new("/root/blockchat/.blockchat/postgres"));
        assert_eq!(
            gateway,
            fallback_data_dir(root, Path::new("/root/blockchat/.blockchat/postgres"))
        );
        let name = gateway
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 name");
        assert!(
            name.starts_with("root-blockchat-.blockchat-postgres-"),
            "{name}"
        );
        assert_eq!(gateway.parent(), Some(root));

        // Another clone, or a path that reads the same once escaped, gets a folder of its own.
        let other = fallback_data_dir(root, Path::new("/root/blockchat2/.blockchat/postgres"));
        let lookalike = fallback_data_dir(root, Path::new("/root/blockchat-.blockchat/postgres"));
        assert_ne!(gateway, other);
        assert_ne!(gateway, lookalike);

        // Deep paths keep their readable tail and a short name: the socket lives in the folder,
        // and the kernel limits a socket's path to 107 bytes.
        let deep = fallback_data_dir(root, &Path::new("/root").join("very-long-".repeat(30)));
        let deep_name = deep.file_name().and_then(|n| n.to_str()).expect("UTF-8");
        assert!(deep_name.len() <= 40 + 1 + 16, "{deep_name}");
        assert!(deep.join(".s.PGSQL.5432").as_os_str().len() <= 107);
    }

    #[test]
    fn without_a_service_user_the_folder_asked_for_is_used() {
        let dir = scratch("as-is");
        let requested = dir.join("a/b/pg");
        let placement = place(&requested, None, true).expect("placed");
        assert_eq!(
            placement.data_dir,
            fs::canonicalize(&requested).expect("made")
        );
        assert_eq!(placement.moved_from, None);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A folder only its owner may enter, as root's home is; the placement decisions that depend
    /// on it need root (to be able to act for the service user) and that user.
    #[test]
    fn a_private_parent_moves_the_data_unless_the_folder_was_chosen() {
        let Some(user) = ServiceUser::for_this_process().expect("look-up") else {
            // Not root: the server runs as ourselves and reaches whatever we reach.
            let private = scratch("private-unprivileged");
            fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).expect("chmod");
            let requested = private.join("clone/.blockchat/postgres");
            let placement = place(&requested, None, false).expect("placed");
            assert!(
                placement
                    .data_dir
                    .starts_with(fs::canonicalize(&private).expect("made"))
            );
            let _ = fs::remove_dir_all(&private);
            return;
        };
        let private = scratch("private");
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).expect("chmod");
        let requested = private.join("clone/.blockchat/postgres");
        assert_eq!(
            user.blocked_at(&requested),
            Some(fs::canonicalize(&private).expect("made"))
        );

        let moved = place(&requested, Some(user), true).expect("moved");
        let (from, blocked) = moved.moved_from.clone().expect("a move");
        assert_eq!(from, requested);
        assert_eq!(blocked, fs::canonicalize(&private).expect("made"));
        assert!(
            FALLBACK_ROOTS
                .iter()
                .any(|root| moved.data_dir.starts_with(root)),
            "{}",
            moved.data_dir.display()
        );
        assert_eq!(user.blocked_at(&moved.data_dir), None);
        assert!(
            !requested.exists(),
            "nothing is made where it cannot be used"
        );
        assert_eq!(place(&requested, Some(user), true).expect("again"), moved);

        match place(&requested, Some(user), false) {
            Err(PgError::Unreachable { blocked, .. }) => {
                assert_eq!(blocked, fs::canonicalize(&private).expect("made"));
            }
            other => panic!("a chosen folder must not move: {other:?}"),
        }
        let _ = fs::remove_dir_all(&moved.data_dir);
        let _ = fs::remove_dir_all(&private);
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("blockchat-placement-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create");
        dir
    }
}
