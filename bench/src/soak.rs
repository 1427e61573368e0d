//! The soak: users on two devices each chat in groups and direct chats for a while, over HTTP
//! and over the socket, dropping and reconnecting at random, while PostgreSQL is restarted
//! cleanly, then killed (crash recovery), and the management endpoint fails and throttles a
//! share of posts. At the end it proves that nothing was lost or stored twice: every
//! acknowledged send is stored exactly once, and every device holds every message of its chats
//! exactly once, `seq` after `seq`, as a fresh load shows them.
//!
//! A device is a client as the README tells clients to be: one socket for every event; each send
//! carries a `client_id`, and one that times out or meets a 503 is sent again with the same
//! `client_id`; a socket send with no `ack` within a few seconds is sent again over HTTP; a gap in
//! a chat's `seq` (an event lost with a failed post) and every reconnect are caught up with
//! `after_seq`. The soak has its own cluster (it restarts and kills it) and its own gateway.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use blockchat_local::postgres::{self, Cluster, ClusterOptions};
use blockchat_local::{Options, PushFaults, RunningGateway};
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use http::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::on_gateway;

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
    /// Messages that arrived as live events, and those fetched with `after_seq`.
    pub live: u64,
    pub caught_up: u64,
    pub gaps: u64,
    pub answers_503: u64,
    /// Any other 5xx (a failure).
    pub unexpected: Vec<String>,
    pub outages: Vec<Outage>,
    pub push_faults: Duration,
    /// Acknowledged sends missing from the store, or held by no device that should have them.
    pub losses: u64,
    /// Sends stored more than once, and messages a device holds twice or out of order.
    pub duplicates: u64,
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
    caught_up: AtomicU64,
    gaps: AtomicU64,
    answers_503: AtomicU64,
    /// A message held twice with different ids, or one seq with two messages.
    conflicts: AtomicU64,
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

/// What every device shares.
struct World {
    api: String,
    ws: String,
    http: reqwest::Client,
    counters: Counters,
    acked: Mutex<Vec<Acked>>,
    unexpected: Mutex<Vec<String>>,
    send_every: Duration,
}

impl World {
    fn unexpected(&self, what: String) {
        if let Ok(mut list) = self.unexpected.lock()
            && list.len() < 20
        {
            list.push(what);
        }
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

#[derive(Debug, Deserialize)]
struct Held {
    id: i64,
    seq: i64,
    chat_id: i64,
}

#[derive(Debug, Deserialize)]
struct Stored {
    id: i64,
    seq: i64,
    user_id: Option<i64>,
    client_id: Option<String>,
}

/// A user as the soak knows them.
#[derive(Clone, Debug)]
struct Person {
    id: i64,
    username: String,
}

/// One device: its token, its chats and the messages it holds, by chat and `seq`.
struct Device {
    person: Person,
    name: String,
    token: String,
    chats: Vec<i64>,
    held: HashMap<i64, BTreeMap<i64, i64>>,
    /// Socket sends waiting for their `ack`: client id → (chat, content, sent at).
    pending: HashMap<String, (i64, String, Instant)>,
    sent: u64,
}

impl Device {
    /// Adds a message; answers whether it was new. A seq held with another id is a conflict.
    fn hold(&mut self, world: &World, message: &Held) -> bool {
        let chat = self.held.entry(message.chat_id).or_default();
        match chat.get(&message.seq) {
            Some(id) if *id == message.id => false,
            Some(_) => {
                bump(&world.counters.conflicts);
                false
            }
            None => {
                chat.insert(message.seq, message.id);
                true
            }
        }
    }

    /// The highest seq up to which the device holds every message of the chat.
    fn contiguous(&self, chat: i64) -> i64 {
        let mut top = 0;
        if let Some(held) = self.held.get(&chat) {
            for seq in held.keys() {
                if *seq != top + 1 {
                    break;
                }
                top = *seq;
            }
        }
        top
    }

    /// Fetches what the device misses of a chat with `after_seq`, page after page.
    async fn catch_up(&mut self, world: &World, chat: i64) -> anyhow::Result<()> {
        loop {
            let after = self.contiguous(chat);
            let url = format!(
                "{}/api/chats/{chat}/messages?after_seq={after}&limit=100",
                world.api
            );
            let response = world
                .http
                .get(&url)
                .header(AUTHORIZATION, format!("Bearer {}", self.token))
                .timeout(ANSWER_TIMEOUT)
                .send()
                .await?;
            let status = response.status();
            world.status("catch-up", status);
            ensure!(status == StatusCode::OK, "catch-up answered {status}");
            let page: Vec<Held> = response.json().await?;
            let full = page.len() == 100;
            for message in &page {
                if self.hold(world, message) {
                    bump(&world.counters.caught_up);
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Catches up on every chat, retrying through outages until `deadline`.
    async fn catch_up_all(&mut self, world: &World, deadline: Instant) -> anyhow::Result<()> {
        let chats = self.chats.clone();
        for chat in chats {
            let mut backoff = FIRST_BACKOFF;
            while let Err(e) = self.catch_up(world, chat).await {
                if Instant::now() > deadline {
                    return Err(
                        e.context(format!("{} could not catch up on chat {chat}", self.name))
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        Ok(())
    }

    /// Sends over HTTP until the API acknowledges it (the same `client_id` every time), or
    /// until `deadline`.
    async fn send_http(
        &mut self,
        world: &World,
        chat: i64,
        client_id: &str,
        content: &str,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        let url = format!("{}/api/chats/{chat}/messages", world.api);
        let body = json!({"content": content, "client_id": client_id});
        let mut backoff = FIRST_BACKOFF;
        let mut first = true;
        loop {
            if !first {
                bump(&world.counters.retries);
            }
            first = false;
            let answer = world
                .http
                .post(&url)
                .header(AUTHORIZATION, format!("Bearer {}", self.token))
                .json(&body)
                .timeout(ANSWER_TIMEOUT)
                .send()
                .await;
            match answer {
                Ok(response) => {
                    let status = response.status();
                    world.status("send", status);
                    if status == StatusCode::CREATED || status == StatusCode::OK {
                        let message: Held = response.json().await?;
                        self.acknowledged(world, chat, client_id, &message);
                        return Ok(());
                    }
                    if !status.is_server_error() {
                        bail!("a send was refused: {status}: {}", response.text().await?);
                    }
                }
                Err(e) if e.is_timeout() || e.is_connect() || e.is_request() => {}
                Err(e) => return Err(e.into()),
            }
            if Instant::now() > deadline {
                bail!("{} could not send {client_id} before the end", self.name);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    fn acknowledged(&mut self, world: &World, chat: i64, client_id: &str, message: &Held) {
        bump(&world.counters.acknowledged);
        self.hold(world, message);
        if let Ok(mut acked) = world.acked.lock() {
            acked.push(Acked {
                user_id: self.person.id,
                chat_id: chat,
                client_id: client_id.to_owned(),
                message_id: message.id,
            });
        }
    }

    /// One event from the socket: a message is held (a gap in its chat is caught up), an `ack`
    /// settles a pending send.
    async fn event(&mut self, world: &World, text: &str) {
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            return;
        };
        match event["type"].as_str() {
            Some("message.created") => {
                let Ok(message) = serde_json::from_value::<Held>(event["message"].clone()) else {
                    return;
                };
                let gap = message.seq > self.contiguous(message.chat_id) + 1;
                if self.hold(world, &message) {
                    bump(&world.counters.live);
                }
                if gap {
                    bump(&world.counters.gaps);
                    // Fetched now if the database answers; else at the next reconnect or the end.
                    let _ = self.catch_up(world, message.chat_id).await;
                }
            }
            Some("ack") => {
                let client_id = event["client_id"].as_str().unwrap_or_default().to_owned();
                let Ok(message) = serde_json::from_value::<Held>(event["message"].clone()) else {
                    return;
                };
                if let Some((chat, _, _)) = self.pending.remove(&client_id) {
                    bump(&world.counters.over_socket);
                    self.acknowledged(world, chat, &client_id, &message);
                }
            }
            _ => {}
        }
    }

    /// Socket sends with no `ack` in time go again over HTTP, with the same `client_id`.
    async fn settle_pending(
        &mut self,
        world: &World,
        all: bool,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        let late: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (_, _, at))| all || at.elapsed() > ANSWER_TIMEOUT)
            .map(|(id, _)| id.clone())
            .collect();
        for client_id in late {
            if let Some((chat, content, _)) = self.pending.remove(&client_id) {
                bump(&world.counters.socket_timeouts);
                bump(&world.counters.retries);
                self.send_http(world, chat, &client_id, &content, deadline)
                    .await?;
                bump(&world.counters.over_http);
            }
        }
        Ok(())
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(world: &World, device: &Device) -> Option<Socket> {
    let url = format!("{}/?token={}", world.ws, device.token);
    match tokio::time::timeout(ANSWER_TIMEOUT, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((socket, _))) => Some(socket),
        _ => None,
    }
}

/// A device's life: connect (catching up), then send now and then and read events, dropping
/// the socket at random; when `stop` turns, settle every send and catch up one last time.
async fn live(
    world: Arc<World>,
    mut device: Device,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> anyhow::Result<Device> {
    let mut dice = Dice::new();
    let mut socket: Option<Socket> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut next_send = Instant::now() + dice.between(Duration::ZERO, world.send_every);
    while !*stop.borrow() {
        let deadline = Instant::now() + grace;
        let Some(open) = socket.as_mut() else {
            match connect(&world, &device).await {
                Some(open) => {
                    socket = Some(open);
                    backoff = FIRST_BACKOFF;
                    // Whatever happened while away.
                    let _ = device.catch_up_all(&world, Instant::now()).await;
                }
                None => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
            continue;
        };
        let wait = next_send.saturating_duration_since(Instant::now());
        tokio::select! {
            frame = open.next() => match frame {
                Some(Ok(Message::Text(text))) => device.event(&world, &text).await,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    socket = None;
                    bump(&world.counters.reconnects);
                }
            },
            () = tokio::time::sleep(wait) => {
                next_send = Instant::now() + dice.between(world.send_every / 2, world.send_every * 3 / 2);
                if dice.chance(4) {
                    // The phone loses its network: sometimes closing, sometimes just gone.
                    if let Some(mut gone) = socket.take()
                        && dice.chance(50)
                    {
                        let _ = gone.close(None).await;
                    }
                    bump(&world.counters.reconnects);
                    tokio::time::sleep(dice.between(Duration::from_millis(100), Duration::from_secs(2))).await;
                    continue;
                }
                let chat = device.chats[dice.below(device.chats.len())];
                device.sent += 1;
                let client_id = format!("{}-{}", device.name, device.sent);
                let content = format!("{} says {}", device.name, device.sent);
                if dice.chance(50) {
                    device.send_http(&world, chat, &client_id, &content, deadline).await?;
                    bump(&world.counters.over_http);
                } else {
                    let frame = json!({"action": "sendMessage", "chat_id": chat, "content": content, "client_id": client_id});
                    device.pending.insert(client_id, (chat, content, Instant::now()));
                    if open.send(Message::text(frame.to_string())).await.is_err() {
                        socket = None;
                        bump(&world.counters.reconnects);
                    }
                }
                device.settle_pending(&world, false, deadline).await?;
            }
            _ = stop.changed() => {}
        }
    }
    let deadline = Instant::now() + grace;
    // Acks still on their way have a moment to come.
    if let Some(open) = socket.as_mut() {
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(until, open.next()).await {
            if let Message::Text(text) = frame {
                device.event(&world, &text).await;
            }
        }
        let _ = open.close(None).await;
    }
    device.settle_pending(&world, true, deadline).await?;
    Ok(device)
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
    let world = Arc::new(World {
        api: format!("http://{}", gateway.http_addr()),
        ws: gateway.ws_url(),
        http,
        counters: Counters::default(),
        acked: Mutex::new(Vec::new()),
        unexpected: Mutex::new(Vec::new()),
        send_every: plan.send_every,
    });

    // People, their chats and their devices, through the API.
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
            tokens.push(
                pair["access_token"]
                    .as_str()
                    .context("no token")?
                    .to_owned(),
            );
        }
    }
    let mut chats_of: Vec<Vec<i64>> = vec![Vec::new(); plan.users];
    for g in 0..plan.groups {
        let members: Vec<usize> = (0..plan.users)
            .filter(|u| u % plan.groups == g || (u / 5) % plan.groups == g)
            .collect();
        let Some(&owner) = members.first() else {
            continue;
        };
        let others: Vec<i64> = members[1..].iter().map(|u| people[*u].id).collect();
        let chat = call(
            &world,
            Some(&tokens[owner * 2]),
            "/api/chats",
            json!({"name": format!("group {g}"), "is_group_chat": true, "user_ids": others}),
        )
        .await?;
        let id = chat["id"].as_i64().context("a chat without an id")?;
        for u in members {
            chats_of[u].push(id);
        }
    }
    for d in 0..plan.directs.min(plan.users.saturating_sub(1)) {
        let (a, b) = (d, (d * 7 + 1) % plan.users);
        if a == b {
            continue;
        }
        let chat = call(
            &world,
            Some(&tokens[a * 2]),
            "/api/chats",
            json!({"is_group_chat": false, "user_ids": [people[b].id]}),
        )
        .await?;
        let id = chat["id"].as_i64().context("a chat without an id")?;
        for u in [a, b] {
            if !chats_of[u].contains(&id) {
                chats_of[u].push(id);
            }
        }
    }
    let chat_count = chats_of
        .iter()
        .flatten()
        .collect::<std::collections::BTreeSet<_>>()
        .len();

    let (stop_tx, stop) = watch::channel(false);
    let grace = Duration::from_secs(30);
    let mut devices = Vec::new();
    for (u, person) in people.iter().enumerate() {
        if chats_of[u].is_empty() {
            continue;
        }
        for d in 0..2 {
            let device = Device {
                person: person.clone(),
                name: format!("{}.{d}", person.username),
                token: tokens[u * 2 + d].clone(),
                chats: chats_of[u].clone(),
                held: HashMap::new(),
                pending: HashMap::new(),
                sent: 0,
            };
            devices.push(tokio::spawn(live(
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
    let probe = tokens[0].clone();
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
        settled.push(device.await??);
    }
    let duration = started.elapsed();

    // The end: every device catches up one last time, then all is compared with a fresh load.
    let deadline = Instant::now() + grace;
    for device in &mut settled {
        device.catch_up_all(&world, deadline).await?;
    }
    let mut report = check(&world, &settled, &chats_of, &people).await?;
    report.duration = duration;
    report.users = plan.users;
    report.devices = device_count;
    report.chats = chat_count;
    report.outages = outages;
    report.push_faults = push_faults;

    on_gateway(rt, move || gateway.shutdown()).await?;
    if let Some(cluster) = database.cluster.take() {
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
    }
    Ok(report)
}

/// Compares what was acknowledged and what the devices hold with a fresh load of every chat.
async fn check(
    world: &World,
    devices: &[Device],
    chats_of: &[Vec<i64>],
    people: &[Person],
) -> anyhow::Result<SoakReport> {
    let c = &world.counters;
    let mut report = SoakReport {
        acknowledged: c.acknowledged.load(Ordering::Relaxed),
        over_http: c.over_http.load(Ordering::Relaxed),
        over_socket: c.over_socket.load(Ordering::Relaxed),
        retries: c.retries.load(Ordering::Relaxed),
        socket_timeouts: c.socket_timeouts.load(Ordering::Relaxed),
        reconnects: c.reconnects.load(Ordering::Relaxed),
        live: c.live.load(Ordering::Relaxed),
        caught_up: c.caught_up.load(Ordering::Relaxed),
        gaps: c.gaps.load(Ordering::Relaxed),
        answers_503: c.answers_503.load(Ordering::Relaxed),
        duplicates: c.conflicts.load(Ordering::Relaxed),
        ..SoakReport::default()
    };
    report.unexpected = world
        .unexpected
        .lock()
        .map(|u| u.clone())
        .unwrap_or_default();

    // A fresh load of every chat, by one of its members.
    let mut fresh: HashMap<i64, BTreeMap<i64, Stored>> = HashMap::new();
    for (u, chats) in chats_of.iter().enumerate() {
        let Some(device) = devices.iter().find(|d| d.person.id == people[u].id) else {
            continue;
        };
        for chat in chats {
            if fresh.contains_key(chat) {
                continue;
            }
            let mut all = BTreeMap::new();
            let mut after = 0;
            loop {
                let response = world
                    .http
                    .get(format!(
                        "{}/api/chats/{chat}/messages?after_seq={after}&limit=100",
                        world.api
                    ))
                    .header(AUTHORIZATION, format!("Bearer {}", device.token))
                    .send()
                    .await?;
                ensure!(
                    response.status() == StatusCode::OK,
                    "the fresh load answered {}",
                    response.status()
                );
                let page: Vec<Stored> = response.json().await?;
                let full = page.len() == 100;
                for message in page {
                    after = after.max(message.seq);
                    if all.insert(message.seq, message).is_some() {
                        report.duplicates += 1;
                    }
                }
                if !full {
                    break;
                }
            }
            // `seq` runs 1, 2, 3 … without a gap.
            if all.keys().copied().ne(1..=i64::try_from(all.len())?) {
                report.losses += 1;
            }
            fresh.insert(*chat, all);
        }
    }
    report.stored = fresh.values().map(|m| m.len() as u64).sum();

    // Every acknowledged send stored once, under the id its answer gave.
    let mut by_client: HashMap<(i64, i64, String), u64> = HashMap::new();
    for (chat, messages) in &fresh {
        for message in messages.values() {
            if let (Some(user), Some(client)) = (message.user_id, &message.client_id) {
                *by_client.entry((user, *chat, client.clone())).or_default() += 1;
            }
        }
    }
    report.duplicates += by_client
        .values()
        .filter(|n| **n > 1)
        .map(|n| n - 1)
        .sum::<u64>();
    let ids: std::collections::HashSet<i64> = fresh
        .values()
        .flat_map(|m| m.values().map(|s| s.id))
        .collect();
    let acked = world.acked.lock().map(|a| a.clone()).unwrap_or_default();
    let mut seen: HashMap<(i64, i64, String), i64> = HashMap::new();
    for a in &acked {
        if !ids.contains(&a.message_id) {
            report.losses += 1;
        }
        let key = (a.user_id, a.chat_id, a.client_id.clone());
        match seen.get(&key) {
            // The same send acknowledged twice must name the same message.
            Some(id) if *id != a.message_id => report.duplicates += 1,
            _ => {
                seen.insert(key, a.message_id);
            }
        }
    }

    // Every device holds every message of its chats, once, as the fresh load has them.
    for device in devices {
        for chat in &device.chats {
            let Some(all) = fresh.get(chat) else { continue };
            let held = device.held.get(chat);
            for (seq, message) in all {
                match held.and_then(|h| h.get(seq)) {
                    Some(id) if *id == message.id => {}
                    Some(_) => report.duplicates += 1,
                    None => report.losses += 1,
                }
            }
            let extra = held.map_or(0, |h| h.keys().filter(|s| !all.contains_key(s)).count());
            report.duplicates += extra as u64;
        }
    }
    Ok(report)
}
