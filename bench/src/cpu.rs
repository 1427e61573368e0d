//! Where the CPU went during a run: the load generator, the gateway and PostgreSQL.
//!
//! On two shared cores a latency figure alone cannot say why it is what it is; CPU time per
//! request, split by component, can. The gateway runs on a runtime of its own whose threads carry
//! [`GATEWAY_THREAD`] in their name, so the kernel's per-thread accounting tells it apart from the
//! load generator in the same process. PostgreSQL's share is the postmaster and its children.

use std::fs;
use std::time::{Duration, Instant};

/// The name of every thread of the gateway's runtime (workers and blocking pool alike).
pub const GATEWAY_THREAD: &str = "gateway";

/// CPU time spent over a stretch of wall time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub wall: Duration,
    pub client: Duration,
    pub gateway: Duration,
    /// `None` when the database is not a child of ours to look at (`DATABASE_URL`).
    pub postgres: Option<Duration>,
    /// The share of all cores busy with anything, ours or not, 0–1 (from `/proc/stat`).
    pub machine: Option<f64>,
}

impl Usage {
    /// The share of the cores that other processes used: the machine is shared, and what they
    /// take is not there for the workload.
    pub fn others(&self, cores: usize) -> Option<f64> {
        self.machine.map(|m| (m - self.busy(cores)).max(0.0))
    }

    /// The share of the machine's cores that this workload's parts kept busy, 0–1.
    pub fn busy(&self, cores: usize) -> f64 {
        let total = self.client + self.gateway + self.postgres.unwrap_or_default();
        let capacity = self.wall.as_secs_f64() * cores.max(1) as f64;
        if capacity > 0.0 {
            total.as_secs_f64() / capacity
        } else {
            0.0
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    at: Instant,
    client_ns: u64,
    gateway_ns: u64,
    postgres_ns: Option<u64>,
    /// (busy, total) clock ticks of all cores since boot.
    machine: Option<(u64, u64)>,
}

impl Snapshot {
    pub fn since(&self, earlier: &Snapshot) -> Usage {
        Usage {
            wall: self.at.saturating_duration_since(earlier.at),
            client: Duration::from_nanos(self.client_ns.saturating_sub(earlier.client_ns)),
            gateway: Duration::from_nanos(self.gateway_ns.saturating_sub(earlier.gateway_ns)),
            postgres: match (self.postgres_ns, earlier.postgres_ns) {
                (Some(now), Some(then)) => Some(Duration::from_nanos(now.saturating_sub(then))),
                _ => None,
            },
            machine: match (self.machine, earlier.machine) {
                (Some((busy, total)), Some((busy0, total0))) if total > total0 => {
                    Some(busy.saturating_sub(busy0) as f64 / (total - total0) as f64)
                }
                _ => None,
            },
        }
    }
}

/// Reads CPU time from `/proc`.
#[derive(Clone, Copy, Debug)]
pub struct Meter {
    postmaster: Option<i32>,
}

impl Meter {
    pub fn new(postmaster: Option<i32>) -> Self {
        Self { postmaster }
    }

    pub fn snapshot(&self) -> Snapshot {
        let (client_ns, gateway_ns) = own_threads();
        Snapshot {
            at: Instant::now(),
            client_ns,
            gateway_ns,
            postgres_ns: self.postmaster.map(server_processes),
            machine: machine_ticks(),
        }
    }
}

/// All cores' busy and total ticks, from the first line of `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    // Idle and waiting for I/O are the 4th and 5th; guest time is counted in user already.
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    let guest: u64 = ticks.iter().skip(8).sum();
    Some((total - idle - guest, total - guest))
}

/// Nanoseconds on CPU: the first field of `schedstat`, finer than the clock ticks of `stat`.
fn schedstat_ns(path: &str) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn own_threads() -> (u64, u64) {
    let (mut client, mut gateway) = (0, 0);
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    for task in tasks.filter_map(Result::ok) {
        let tid = task.file_name().to_string_lossy().into_owned();
        let name = fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap_or_default();
        let ns = schedstat_ns(&format!("/proc/self/task/{tid}/schedstat"));
        if name.trim_end().starts_with(GATEWAY_THREAD) {
            gateway += ns;
        } else {
            client += ns;
        }
    }
    (client, gateway)
}

/// The postmaster and its children (backends, WAL writer, checkpointer, autovacuum).
fn server_processes(postmaster: i32) -> u64 {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid == postmaster || parent_of(pid) == Some(postmaster))
        .map(|pid| schedstat_ns(&format!("/proc/{pid}/schedstat")))
        .sum()
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after its last `)` do not.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident set (`VmHWM`) of a process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmHWM:")
}

/// A process's resident memory now, in bytes.
pub fn rss(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
