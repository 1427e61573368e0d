//! The few operating-system calls std does not offer, through `nix`'s safe wrappers.

use std::fs::File;
use std::io;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{self, Signal};
use nix::unistd::{Pid, User};

/// Whether this process runs as root (effective user id 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The uid and gid of a user, or `None` if there is no such user.
pub fn user_ids(name: &str) -> io::Result<Option<(u32, u32)>> {
    let user = User::from_name(name).map_err(io::Error::from)?;
    Ok(user.map(|user| (user.uid.as_raw(), user.gid.as_raw())))
}

/// Sends `signal` to one process (never a group: `pid` must be positive).
pub fn signal(pid: i32, signal: Signal) -> io::Result<()> {
    kill(pid, Some(signal))
}

/// Whether a process with this id exists (one of another user's counts).
pub fn is_alive(pid: i32) -> bool {
    match kill(pid, None) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(Errno::EPERM as i32),
    }
}

/// Whether an error says the process is already gone.
pub fn is_no_such_process(error: &io::Error) -> bool {
    error.raw_os_error() == Some(Errno::ESRCH as i32)
}

fn kill(pid: i32, signal: Option<Signal>) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::from(Errno::ESRCH));
    }
    signal::kill(Pid::from_raw(pid), signal).map_err(io::Error::from)
}

/// An exclusive `flock` on `file`, waiting for it; released when the returned value is dropped.
pub fn lock_exclusive(mut file: File) -> io::Result<Flock<File>> {
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Ok(lock),
            Err((returned, Errno::EINTR)) => file = returned,
            Err((_, errno)) => return Err(io::Error::from(errno)),
        }
    }
}
