//! The server's processes: started tied to ours, signalled, waited for.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{POLL, PgError, io_err, sys};

/// Fast shutdown, and an immediate one if that takes too long.
pub fn stop_pid(pid: i32, child: Option<&mut Child>) -> Result<(), PgError> {
    const FAST: Duration = Duration::from_secs(30);
    match sys::signal(pid, Signal::SIGINT) {
        Ok(()) => {}
        Err(e) if sys::is_no_such_process(&e) => {}
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
                    let _ = sys::signal(pid, Signal::SIGQUIT);
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
                let _ = sys::signal(pid, Signal::SIGQUIT);
                wait_for_exit(pid, Duration::from_secs(5));
            }
            Ok(())
        }
    }
}

/// For a process that is not our child; `true` once it is gone.
pub fn wait_for_exit(pid: i32, timeout: Duration) -> bool {
    let started = Instant::now();
    while sys::is_alive(pid) {
        if started.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// A command that runs `program` so that it receives `signal` when this process ends, however it
/// ends (a crash or SIGKILL included): util-linux's `setpriv --pdeathsig` sets the parent-death
/// signal and then becomes `program`, so no code of ours runs between fork and exec. Spawn it
/// with [`spawn_tied_to_process`]. Without `setpriv` the program is run directly, and outlives
/// a crash of ours (the next start finds it running and uses it).
pub fn command_tied_to_process(program: &Path, signal: Signal) -> Command {
    match setpriv() {
        Some(setpriv) => {
            let mut command = Command::new(setpriv);
            command
                .arg("--pdeathsig")
                .arg(signal.as_str().trim_start_matches("SIG"))
                .arg("--")
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn setpriv() -> Option<&'static Path> {
    static SETPRIV: OnceLock<Option<PathBuf>> = OnceLock::new();
    SETPRIV
        .get_or_init(|| {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let found = std::env::split_paths(&path)
                .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
                .map(|dir| dir.join("setpriv"))
                .find(|candidate| candidate.is_file());
            if found.is_none() {
                tracing::warn!(
                    "no `setpriv` (util-linux): PostgreSQL will outlive this process if it crashes"
                );
            }
            found
        })
        .as_deref()
}

/// Spawns a command made by [`command_tied_to_process`].
///
/// The kernel sends the parent-death signal when the *thread* that forked the child exits, not
/// the process; a child forked from a short-lived thread (a test's runtime, a blocking-pool
/// worker) would be signalled as soon as that thread ends. So every such child is forked from
/// one thread that lives as long as the process.
pub fn spawn_tied_to_process(command: Command) -> io::Result<Child> {
    struct Job {
        command: Command,
        reply: mpsc::Sender<io::Result<Child>>,
    }
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

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

/// Whether a live PID is a PostgreSQL server (and not a process that took over a stale PID).
pub fn is_postgres(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => matches!(comm.trim(), "postgres" | "postmaster"),
        // Without /proc there is no telling; a live PID is taken at its word.
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

/// The processes whose parent is `pid` (Linux: read from `/proc`; elsewhere none are found).
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|candidate| parent_of(*candidate) == Some(pid))
        .collect()
}

/// The parent's PID from `/proc/PID/stat`, whose fourth field it is; the second (the command
/// name, in parentheses) may hold spaces, so the fields are counted after its closing `)`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}
