//! Load and memory: many HTTP clients at once, and what logging in leaves in memory, in the
//! local gateway's own process and in a function instance.
//!
//! Each login verifies an argon2id hash with 19 MiB of memory; the product keeps one memory area
//! per core and runs at most one hash per core, so a process's memory must not grow with the
//! number of logins or of clients. The gateway is the release `blockchat-local` binary, started
//! on its own over the benchmark's database, so that its memory is its own.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use http::StatusCode;
use http::header::AUTHORIZATION;

use crate::Bench;
use crate::cpu::{peak_rss, rss};
use crate::load::{Sample, closed_loop};
use crate::setup::{PASSWORD, User};

/// What the gateway's process came to over a run of logins.
pub struct GatewayLogins {
    pub logins: u64,
    pub clients: usize,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Resident memory once it serves, before the first login.
    pub rss_start: u64,
    /// The most it was resident at any time (VmHWM).
    pub peak_rss: u64,
    /// Resident at the end.
    pub rss_end: u64,
}

/// A free loopback port: bound, read and let go.
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?)
}

/// Starts `bin_dir/blockchat-local` over the benchmark's database, runs `logins` logins from
/// `clients` clients (each its own account, as many accounts as there are), and reads its memory.
pub async fn gateway_logins(
    bench: &Bench,
    bin_dir: &Path,
    logins: u64,
    clients: usize,
) -> anyhow::Result<GatewayLogins> {
    let (http, ws) = (free_port()?, free_port()?);
    // It reads its database from the environment; the folder would only hold a secret file.
    let data_dir = std::env::temp_dir().join(format!("blockchat-bench-{}", std::process::id()));
    let mut child = tokio::process::Command::new(bin_dir.join("blockchat-local"))
        .args(["--http", &http.to_string(), "--ws", &ws.to_string()])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("DATABASE_URL", &bench.database_url)
        .env("JWT_SECRET", &bench.jwt_secret)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start blockchat-local (built with the functions)")?;
    let pid = child.id().context("blockchat-local exited at once")?;
    let base = format!("http://{http}");
    let started = Instant::now();
    loop {
        let ready = bench
            .http
            .get(format!("{base}/api/openapi.json"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("blockchat-local did not serve within a minute");
        }
        if let Some(status) = child.try_wait()? {
            bail!("blockchat-local exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_start = rss(pid).context("cannot read the gateway's memory")?;

    let users: Arc<Vec<User>> = Arc::new(bench.seeded.login_users.clone());
    let url = Arc::new(format!("{base}/api/auth/login"));
    let left = Arc::new(AtomicU64::new(logins));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, url, users) = (bench.http.clone(), url.clone(), users.clone());
            let (left, errors, first_error) = (left.clone(), errors.clone(), first_error.clone());
            tokio::spawn(async move {
                let user = &users[c % users.len()];
                let body = serde_json::json!({"username": user.username, "password": PASSWORD});
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let failed = match client.post(url.as_str()).json(&body).send().await {
                        Ok(r) if r.status() == StatusCode::OK => {
                            r.bytes().await.err().map(|e| e.to_string())
                        }
                        Ok(r) => Some(format!("answered {}", r.status())),
                        Err(e) => Some(e.to_string()),
                    };
                    if let Some(failed) = failed {
                        errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut first) = first_error.lock() {
                            first.get_or_insert(failed);
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    let peak = peak_rss(pid).context("cannot read the gateway's memory")?;
    let rss_end = rss(pid).context("cannot read the gateway's memory")?;
    nix_interrupt(pid);
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        child.kill().await?;
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    let errors = errors.load(Ordering::Relaxed);
    let first_error = first_error.lock().ok().and_then(|f| f.clone());
    Ok(GatewayLogins {
        logins,
        clients,
        errors,
        first_error,
        elapsed,
        rss_start,
        peak_rss: peak,
        rss_end,
    })
}

/// Asks a process to stop as Ctrl-C would.
fn nix_interrupt(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGINT,
        );
    }
}

/// `GET /api/auth/me` from `clients` clients at once, each with a token of its own account
/// (accounts reused round robin): every request must be answered 200.
pub async fn many_clients(bench: &Bench, clients: usize) -> anyhow::Result<Sample> {
    let url = Arc::new(format!("{}/api/auth/me", bench.api));
    let senders = &bench.seeded.senders;
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..clients)
            .map(|c| {
                Ok(format!(
                    "Bearer {}",
                    bench.token(senders[c % senders.len()].id)?
                ))
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let client = bench.http.clone();
    closed_loop(clients, bench.plan.window, &bench.meter, move |c, _| {
        let request = client.get(url.as_str()).header(AUTHORIZATION, &tokens[c]);
        async move {
            let response = request.send().await?;
            let status = response.status();
            response.bytes().await?;
            anyhow::ensure!(status == StatusCode::OK, "answered {status}");
            Ok(())
        }
    })
    .await
}
