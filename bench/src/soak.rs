//! The soak: users on two devices each chat in groups and direct chats for a while, over HTTP
//! and over the socket, dropping and reconnecting at random, while PostgreSQL is restarted
//! cleanly, then killed (crash recovery), and the management endpoint fails and throttles a
//! share of posts. Beside the sends, every kind of change happens now and then: edits and
//! deletions of earlier messages, read marks (over HTTP and the socket), renames, members
//! added to and removed from a few groups, small groups made and deleted.
//!
//! A device is a client as the README tells clients to be ([`device`]): one socket for every
//! event; each send carries a `client_id`, and one that times out or meets a 503 is sent again
//! with the same `client_id`; a socket send with no `ack` within a few seconds is sent again
//! over HTTP. It holds a sync token, taken before it held anything, and keeps its chats'
//! state (messages, members' read cursors, names, membership) from the changes it applies,
//! each once, by their position in their chat; every reconnect, every gap in a chat's
//! positions (a change lost with a failed post) and every chat joined send it through
//! `GET /api/sync`.
//!
//! At the end ([`check`]) it proves that nothing was lost or applied twice: every
//! acknowledged send is stored exactly once, and every device, after one last sync, holds its
//! user's chats exactly as a fresh load shows them: the same chats, names, members and read
//! cursors, and every message once, with its current content and deletion. The soak has its
//! own cluster (it restarts and kills it) and its own gateway.

mod check;
mod device;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use blockchat_local::postgres::{self, Cluster, ClusterOptions};
use blockchat_local::{Options, PushFaults, RunningGateway};
use http::StatusCode;
use http::header::AUTHORIZATION;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::on_gateway;
use device::{Device, Jobs};

const DATABASE: &str = "blockchat_soak";
const PASSWORD: &str = "soak-password-0123";
/// A send (or a reconnect) waits this long before it counts as timed out.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The wait before a retry grows from this, doubling, to a second.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// How big and how long a soak is.
#[derive(Clone, Copy, Debug)]
pub struct SoakPlan {
    pub duration: Duration,
    pub users: usize,
    pub groups: usize,
    pub directs: usize,
    /// Groups whose admin adds and removes members all along.
    pub churn_groups: usize,
    /// Each device sends about once per this interval.
    pub send_every: Duration,
}

/// One outage of PostgreSQL.
#[derive(Clone, Debug)]
pub struct Outage {
    pub kind: &'static str,
    /// From the stop (or the kill) until PostgreSQL accepts connections again.
    pub down: Duration,
    /// From PostgreSQL's return until the API answers again.
    pub recovered: Duration,
}

/// What a soak did and found.
#[derive(Clone, Debug, Default)]
pub struct SoakReport {
    pub duration: Duration,
    pub users: usize,
    pub devices: usize,
    pub chats: usize,
    pub acknowledged: u64,
    pub over_http: u64,
    pub over_socket: u64,
    /// Sends sent again with the same `client_id` (after a timeout, a 503 or a lost socket).
    pub retries: u64,
    /// Socket sends with no `ack` in time, sent again over HTTP.
    pub socket_timeouts: u64,
    pub reconnects: u64,
    /// Changes applied as they came over the socket, and those applied from the feed.
    pub live: u64,
    pub synced: u64,
    /// Syncs (each followed the feed to its end), and chats loaded on joining them.
    pub syncs: u64,
    pub loads: u64,
    /// Live changes past the next position of their chat.
    pub gaps: u64,
    pub answers_503: u64,
    /// The changes the workload made besides sends: edits, deletions, read marks, renames,
    /// members added and removed, groups made and deleted.
    pub edits: u64,
    pub deletes: u64,
    pub reads: u64,
    pub renames: u64,
    pub added: u64,
    pub removed: u64,
    pub created: u64,
    pub deleted: u64,
    /// Any other 5xx (a failure).
    pub unexpected: Vec<String>,
    pub outages: Vec<Outage>,
    pub push_faults: Duration,
    /// Acknowledged sends missing from the store, and anything a device misses or holds stale
    /// at the end: a chat, a message, an edit or a deletion, a read cursor, a name, a member.
    pub losses: u64,
    /// Sends stored more than once, messages a device holds twice or that are not stored, and
    /// changes the feed delivered twice.
    pub duplicates: u64,
    /// Changes of a chat a device's user was not in (a removed member got more of it).
    pub strays: u64,
    /// The first differences found, described.
    pub differences: Vec<String>,
    /// The chats compared at the end (a chat once per device), and the messages stored.
    pub compared: u64,
    pub stored: u64,
}

/// A counter per kind of thing the devices do.
#[derive(Default)]
struct Counters {
    acknowledged: AtomicU64,
    over_http: AtomicU64,
    over_socket: AtomicU64,
    retries: AtomicU64,
    socket_timeouts: AtomicU64,
    reconnects: AtomicU64,
    live: AtomicU64,
    synced: AtomicU64,
    syncs: AtomicU64,
    loads: AtomicU64,
    gaps: AtomicU64,
    answers_503: AtomicU64,
    edits: AtomicU64,
    deletes: AtomicU64,
    reads: AtomicU64,
    renames: AtomicU64,
    added: AtomicU64,
    removed: AtomicU64,
    created: AtomicU64,
    deleted: AtomicU64,
    strays: AtomicU64,
    /// A message held twice with different ids, one seq with two messages, or one message
    /// created by two changes.
    conflicts: AtomicU64,
    /// Changes the feed delivered again.
    repeats: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A send the API acknowledged.
#[derive(Clone, Debug)]
struct Acked {
    user_id: i64,
    chat_id: i64,
    client_id: String,
    message_id: i64,
}

/// Keeps the first few descriptions of what went wrong.
fn keep(list: &Mutex<Vec<String>>, what: String) {
    if let Ok(mut list) = list.lock()
        && list.len() < 20
    {
        list.push(what);
    }
}

/// What every device shares.
struct World {
    api: String,
    ws: String,
    http: reqwest::Client,
    counters: Counters,
    acked: Mutex<Vec<Acked>>,
    unexpected: Mutex<Vec<String>>,
    /// Changes of chats a device's user was not in, the first few described.
    strays: Mutex<Vec<String>>,
    send_every: Duration,
    /// Every user's id.
    people: Vec<i64>,
}

impl World {
    fn unexpected(&self, what: String) {
        keep(&self.unexpected, what);
    }

    fn stray(&self, what: String) {
        bump(&self.counters.strays);
        keep(&self.strays, what);
    }

    /// Counts an answer's status: 503 is expected during outages, other 5xx never.
    fn status(&self, what: &str, status: StatusCode) {
        if status == StatusCode::SERVICE_UNAVAILABLE {
            bump(&self.counters.answers_503);
        } else if status.is_server_error() {
            self.unexpected(format!("{what}: {status}"));
        }
    }
}

/// A tiny xorshift generator: the soak needs variety, not cryptography.
struct Dice(u64);

impl Dice {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Self(u64::from_le_bytes(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }

    /// A duration between `low` and `high`.
    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_millis().max(1) as u64;
        low + Duration::from_millis(self.next() % span)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A user as the soak knows them.
#[derive(Clone, Debug)]
struct Person {
    id: i64,
    username: String,
}

/// PostgreSQL as the soak holds it: stopped, killed and started again.
struct Database {
    options: ClusterOptions,
    cluster: Option<Cluster>,
}

impl Database {
    async fn start(options: ClusterOptions) -> anyhow::Result<Cluster> {
        tokio::task::spawn_blocking(move || Cluster::start(options))
            .await
            .context("the PostgreSQL start was interrupted")?
            .context("PostgreSQL did not start")
    }

    /// A clean restart: a fast shutdown, a pause, a start.
    async fn restart(&mut self, pause: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        if let Some(cluster) = self.cluster.take() {
            tokio::task::spawn_blocking(move || cluster.stop()).await??;
        }
        tokio::time::sleep(pause).await;
        self.cluster = Some(Self::start(self.options.clone()).await?);
        Ok(started.elapsed())
    }

    /// A crash: the postmaster and every backend killed at once, a pause, a start (which
    /// recovers from the write-ahead log).
    async fn crash(&mut self, pause: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        if let Some(cluster) = &self.cluster {
            kill_tree(cluster.pid());
        }
        // The handle's stop finds the server dead.
        if let Some(cluster) = self.cluster.take() {
            let _ = tokio::task::spawn_blocking(move || cluster.stop()).await?;
        }
        tokio::time::sleep(pause).await;
        self.cluster = Some(Self::start(self.options.clone()).await?);
        Ok(started.elapsed())
    }
}

/// SIGKILL to a process and all its children.
fn kill_tree(pid: i32) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let children: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect();
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    for child in children {
        let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
    }
}

/// Waits until the API answers a read again; answers how long that took.
async fn recovery(world: &World, token: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let answer = world
            .http
            .get(format!("{}/api/auth/me", world.api))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .timeout(ANSWER_TIMEOUT)
            .send()
            .await;
        if let Ok(response) = answer {
            let status = response.status();
            world.status("probe", status);
            if status == StatusCode::OK {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the API did not answer within a minute of PostgreSQL's return");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(
    world: &World,
    token: Option<&str>,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let mut request = world.http.post(format!("{}{path}", world.api)).json(&body);
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = request.send().await?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    ensure!(status.is_success(), "{path} answered {status}: {value}");
    Ok(value)
}

/// The chats the setup makes, and what it gives each user to do.
struct Setup<'a> {
    world: &'a World,
    people: &'a [Person],
    /// Each device's access token and sync token, two per user.
    tokens: &'a [(String, String)],
    jobs: Vec<Jobs>,
    chats: BTreeSet<i64>,
}

impl Setup<'_> {
    /// Makes a group of `members` (indexes into `people`) with `owner` as its admin, who
    /// renames it now and then.
    async fn group(
        &mut self,
        owner: usize,
        name: String,
        members: &[usize],
    ) -> anyhow::Result<i64> {
        let others: Vec<i64> = members.iter().map(|u| self.people[*u].id).collect();
        let chat = call(
            self.world,
            Some(&self.tokens[owner * 2].0),
            "/api/chats",
            json!({"name": name, "is_group_chat": true, "user_ids": others}),
        )
        .await?;
        let id = chat["id"].as_i64().context("a chat without an id")?;
        self.jobs[owner].renames.push(id);
        self.chats.insert(id);
        Ok(id)
    }
}

/// Runs a soak on its own cluster in `data_dir` and its own gateway on `rt`.
pub async fn run(
    plan: SoakPlan,
    data_dir: &Path,
    rt: &Handle,
    http: reqwest::Client,
) -> anyhow::Result<SoakReport> {
    let options = ClusterOptions::new(data_dir.join("soak-postgres")).port(5433);
    let cluster = Database::start(options.clone()).await?;
    {
        let mut admin = cluster.connect_maintenance().await?;
        postgres::drop_database(&mut admin, DATABASE).await?;
        postgres::create_database(&mut admin, DATABASE, None).await?;
    }
    let database_url = cluster.url(DATABASE);
    let mut database = Database {
        options,
        cluster: Some(cluster),
    };
    let gateway_dir = data_dir.join("soak-gateway");
    let gateway_options = Options {
        http_addr: ([127, 0, 0, 1], 0).into(),
        ws_addr: ([127, 0, 0, 1], 0).into(),
        data_dir: gateway_dir,
        database_url: Some(database_url),
        jwt_secret: Some(crate::random_secret()?),
        // Every device of the soak comes from loopback: one address registers them all.
        settings: BTreeMap::from([("REGISTRATIONS_PER_ADDRESS".to_owned(), "100000".to_owned())]),
        ..Options::default()
    };
    let gateway: RunningGateway =
        on_gateway(rt, move || blockchat_local::start(gateway_options)).await?;
    let mut world = World {
        api: format!("http://{}", gateway.http_addr()),
        ws: gateway.ws_url(),
        http,
        counters: Counters::default(),
        acked: Mutex::new(Vec::new()),
        unexpected: Mutex::new(Vec::new()),
        strays: Mutex::new(Vec::new()),
        send_every: plan.send_every,
        people: Vec::new(),
    };

    // People, their devices and their chats, through the API.
    let mut people = Vec::with_capacity(plan.users);
    for n in 0..plan.users {
        let username = format!("soak{n}");
        let user = call(
            &world,
            None,
            "/api/auth/register",
            json!({"username": username, "email": format!("{username}@soak.invalid"), "password": PASSWORD}),
        )
        .await?;
        people.push(Person {
            id: user["id"].as_i64().context("a user without an id")?,
            username,
        });
    }
    world.people = people.iter().map(|p| p.id).collect();
    // Each device's sync token is taken before its user is in any chat: all its chats come
    // to it as changes.
    let mut tokens = Vec::with_capacity(plan.users * 2);
    for person in &people {
        for _ in 0..2 {
            let pair = call(
                &world,
                None,
                "/api/auth/login",
                json!({"username": person.username, "password": PASSWORD}),
            )
            .await?;
            let token = pair["access_token"]
                .as_str()
                .context("no token")?
                .to_owned();
            let (status, feed) =
                device::request(&world, &token, Method::GET, "/api/sync", None).await?;
            ensure!(status == StatusCode::OK, "sync answered {status}: {feed}");
            let since = feed["next"].as_str().context("no sync token")?.to_owned();
            tokens.push((token, since));
        }
    }
    let mut setup = Setup {
        world: &world,
        people: &people,
        tokens: &tokens,
        jobs: vec![Jobs::default(); plan.users],
        chats: BTreeSet::new(),
    };
    for g in 0..plan.groups {
        let members: Vec<usize> = (0..plan.users)
            .filter(|u| u % plan.groups == g || (u / 5) % plan.groups == g)
            .collect();
        let Some((&owner, others)) = members.split_first() else {
            continue;
        };
        let id = setup.group(owner, format!("group {g}"), others).await?;
        for u in members {
            setup.jobs[u].send_to.push(id);
        }
    }
    // In a churn group only the owner sends: the others come and go.
    for k in 0..plan.churn_groups {
        let owner = (k * 11 + 2) % plan.users;
        let pool: Vec<usize> = (0..6)
            .map(|j| (owner + 3 + j * 7) % plan.users)
            .filter(|u| *u != owner)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let id = setup
            .group(owner, format!("churn {k}"), &pool[..pool.len() / 2])
            .await?;
        let jobs = &mut setup.jobs[owner];
        jobs.send_to.push(id);
        jobs.churns
            .push((id, pool.iter().map(|u| people[*u].id).collect()));
    }
    for d in 0..plan.directs.min(plan.users.saturating_sub(1)) {
        let (a, b) = (d, (d * 7 + 1) % plan.users);
        if a == b {
            continue;
        }
        let chat = call(
            &world,
            Some(&tokens[a * 2].0),
            "/api/chats",
            json!({"is_group_chat": false, "user_ids": [people[b].id]}),
        )
        .await?;
        let id = chat["id"].as_i64().context("a chat without an id")?;
        setup.chats.insert(id);
        for u in [a, b] {
            if !setup.jobs[u].send_to.contains(&id) {
                setup.jobs[u].send_to.push(id);
            }
        }
    }
    let Setup { jobs, chats, .. } = setup;

    let world = Arc::new(world);
    let (stop_tx, stop) = watch::channel(false);
    let grace = Duration::from_secs(30);
    let mut devices = Vec::new();
    for (u, person) in people.iter().enumerate() {
        if jobs[u].send_to.is_empty() {
            continue;
        }
        for d in 0..2 {
            let (token, since) = tokens[u * 2 + d].clone();
            let mut jobs = jobs[u].clone();
            // The first device does what must not be done twice at once.
            if d == 0 {
                jobs.makes_groups = u % 4 == 1;
            } else {
                jobs.churns.clear();
            }
            let name = format!("{}.{d}", person.username);
            let device = Device::new(person.clone(), name, token, since, jobs);
            devices.push(tokio::spawn(device::live(
                world.clone(),
                device,
                stop.clone(),
                grace,
            )));
        }
    }
    let device_count = devices.len();

    // The faults, on a schedule over the run.
    let started = Instant::now();
    let at = |share: f64| started + plan.duration.mul_f64(share);
    let probe = tokens[0].0.clone();
    let mut outages = Vec::new();
    tokio::time::sleep_until(at(0.15).into()).await;
    gateway.set_push_faults("fail=0.1,throttle=0.2,slow=0.05:200ms".parse::<PushFaults>()?);
    tokio::time::sleep_until(at(0.35).into()).await;
    gateway.set_push_faults(PushFaults::NONE);
    let push_faults = at(0.35) - at(0.15);
    tokio::time::sleep_until(at(0.45).into()).await;
    let down = database.restart(Duration::from_secs(1)).await?;
    let recovered = recovery(&world, &probe).await?;
    outages.push(Outage {
        kind: "clean restart",
        down,
        recovered,
    });
    tokio::time::sleep_until(at(0.7).into()).await;
    let down = database.crash(Duration::from_secs(1)).await?;
    let recovered = recovery(&world, &probe).await?;
    outages.push(Outage {
        kind: "crash (SIGKILL)",
        down,
        recovered,
    });
    tokio::time::sleep_until(at(1.0).into()).await;
    let _ = stop_tx.send(true);
    let mut settled = Vec::with_capacity(device_count);
    for device in devices {
        let device = tokio::time::timeout(grace * 2, device)
            .await
            .context("a device did not stop")??;
        settled.push(device?);
    }
    let duration = started.elapsed();

    // The end: once requests that timed out on their side are done on the server's, every
    // device syncs one last time, then all is compared with a fresh load.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deadline = Instant::now() + grace;
    for device in &mut settled {
        device.catch_up(&world, deadline).await?;
    }
    let mut report = check::check(&world, &settled).await?;
    report.duration = duration;
    report.users = plan.users;
    report.devices = device_count;
    report.chats = chats.len();
    report.outages = outages;
    report.push_faults = push_faults;

    on_gateway(rt, move || gateway.shutdown()).await?;
    if let Some(cluster) = database.cluster.take() {
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
    }
    Ok(report)
}
