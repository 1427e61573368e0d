//! A device of the soak: a client as the README tells clients to be. It keeps the state of its
//! chats (messages by `seq`, members' read cursors, the group's name) and, per chat, the
//! highest change position (`pos`) applied; it applies a change only past that position. A
//! live event past the next position, a reconnect and a chat joined send it through
//! `GET /api/sync` from its token; a chat joined is loaded (after the feed is followed to its
//! end, so that the load and the position it starts from are close).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use http::header::AUTHORIZATION;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::{ANSWER_TIMEOUT, Acked, Dice, FIRST_BACKOFF, Person, World, bump};

/// A sync that reads more pages than this has met a feed that does not end.
const MAX_PAGES: usize = 1000;

/// A message as a device keeps it.
#[derive(Clone, Debug)]
pub(super) struct Msg {
    pub id: i64,
    pub author: Option<i64>,
    pub client_id: Option<String>,
    pub content: String,
    pub deleted: bool,
}

impl Msg {
    /// A message of an event, a feed change or a page: its `seq` and what a device keeps.
    fn parse(m: &Value) -> Option<(i64, Self)> {
        let msg = Msg {
            id: m["id"].as_i64()?,
            author: m["user_id"].as_i64(),
            client_id: m["client_id"].as_str().map(str::to_owned),
            content: m["content"].as_str()?.to_owned(),
            deleted: m["deleted"].as_bool()?,
        };
        Some((m["seq"].as_i64()?, msg))
    }
}

/// A chat as a device keeps it.
#[derive(Clone, Debug, Default)]
pub(super) struct ChatState {
    pub name: String,
    pub is_group: bool,
    /// Every member's read cursor.
    pub cursors: BTreeMap<i64, i64>,
    pub messages: BTreeMap<i64, Msg>,
    /// The position of the `message.created` each message came with, when it came with one.
    created: HashMap<i64, i64>,
}

impl ChatState {
    fn last_seq(&self) -> i64 {
        self.messages.keys().next_back().copied().unwrap_or(0)
    }
}

/// Answers a request with its status and its JSON body (`null` when it has none).
pub(super) async fn request(
    world: &World,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = world
        .http
        .request(method.clone(), format!("{}{path}", world.api))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .timeout(ANSWER_TIMEOUT);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    world.status(&format!("{method} {path}"), status);
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// A GET: `None` on 404 (no such chat, or not a member), an error on anything but 200.
pub(super) async fn get(world: &World, token: &str, path: &str) -> anyhow::Result<Option<Value>> {
    let (status, body) = request(world, token, Method::GET, path, None).await?;
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    ensure!(status == StatusCode::OK, "GET {path} answered {status}");
    Ok(Some(body))
}

/// A chat as its members see it now: the chat, its members (with their cursors) and its
/// messages; `None` when the caller is not (or no longer) one of them.
pub(super) async fn load_chat(
    world: &World,
    token: &str,
    chat: i64,
) -> anyhow::Result<Option<ChatState>> {
    let Some(view) = get(world, token, &format!("/api/chats/{chat}")).await? else {
        return Ok(None);
    };
    let path = format!("/api/chats/{chat}/members?limit=100");
    let Some(members) = get(world, token, &path).await? else {
        return Ok(None);
    };
    let members = members.as_array().cloned().unwrap_or_default();
    ensure!(members.len() < 100, "chat {chat} has too many members");
    let mut state = ChatState {
        name: view["name"].as_str().unwrap_or_default().to_owned(),
        is_group: view["is_group_chat"].as_bool().unwrap_or_default(),
        cursors: members
            .iter()
            .filter_map(|m| Some((m["id"].as_i64()?, m["last_read_seq"].as_i64()?)))
            .collect(),
        ..ChatState::default()
    };
    let mut after = 0;
    loop {
        let path = format!("/api/chats/{chat}/messages?after_seq={after}&limit=100");
        let Some(page) = get(world, token, &path).await? else {
            return Ok(None);
        };
        let page = page.as_array().cloned().unwrap_or_default();
        for (seq, msg) in page.iter().filter_map(Msg::parse) {
            after = after.max(seq);
            if state.messages.insert(seq, msg).is_some() {
                bump(&world.counters.conflicts);
            }
        }
        if page.len() < 100 {
            return Ok(Some(state));
        }
    }
}

#[derive(Debug, Deserialize)]
struct SyncPage {
    changes: Vec<Value>,
    next: String,
    has_more: bool,
}

/// A sent message as its `ack` or its answer shows it.
#[derive(Debug, Deserialize)]
struct Held {
    id: i64,
}

/// Where a change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Live,
    Feed,
}

/// What a device does besides sending and reading.
#[derive(Clone, Debug, Default)]
pub(super) struct Jobs {
    /// Chats it sends to: their members never change while it is one.
    pub send_to: Vec<i64>,
    /// Groups it renames now and then (it is their admin).
    pub renames: Vec<i64>,
    /// Groups whose members it changes, each with the users it adds and removes.
    pub churns: Vec<(i64, Vec<i64>)>,
    /// It makes small groups now and then, and deletes them a little later.
    pub makes_groups: bool,
}

/// One device: its tokens, its chats as it holds them, and what it does.
pub(super) struct Device {
    pub person: Person,
    pub name: String,
    pub token: String,
    /// The feed's token: where the next sync starts.
    pub since: String,
    pub chats: BTreeMap<i64, ChatState>,
    /// Per chat, the highest change position applied.
    applied: HashMap<i64, i64>,
    /// Per chat, the highest position the feed delivered: the feed never repeats one.
    fed: HashMap<i64, i64>,
    /// Chats joined and not loaded yet, with the highest position seen of each.
    pub joining: BTreeMap<i64, i64>,
    /// Chats joined that were gone for the user when loaded: the change that ended them is
    /// still to come, after the ones before it.
    leaving: HashSet<i64>,
    /// A change may be missing (a gap, a reconnect, a chat joined): a sync is owed.
    stale: bool,
    pub jobs: Jobs,
    /// Socket sends waiting for their `ack`: client id → (chat, content, sent at).
    pending: HashMap<String, (i64, String, Instant)>,
    sent: u64,
    /// Groups made, edits made: numbers for their names and contents.
    made: u64,
}

impl Device {
    pub fn new(person: Person, name: String, token: String, since: String, jobs: Jobs) -> Self {
        Self {
            person,
            name,
            token,
            since,
            chats: BTreeMap::new(),
            applied: HashMap::new(),
            fed: HashMap::new(),
            joining: BTreeMap::new(),
            leaving: HashSet::new(),
            // Its chats come through the feed, from a token taken before they were made.
            stale: true,
            jobs,
            pending: HashMap::new(),
            sent: 0,
            made: 0,
        }
    }

    /// A change the user takes part in from now on: a chat made with them, or their addition.
    fn joins(&self, change: &Value) -> bool {
        match change["type"].as_str() {
            Some("chat.created") => true,
            Some("member.added") => change["user_ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|id| id.as_i64() == Some(self.person.id))),
            _ => false,
        }
    }

    /// Applies a change by the position rule; a change already applied is passed over.
    fn apply(&mut self, world: &World, change: &Value, via: Via) {
        let (Some(chat_id), Some(pos)) = (change["chat_id"].as_i64(), change["pos"].as_i64())
        else {
            return;
        };
        if via == Via::Feed {
            let fed = self.fed.entry(chat_id).or_insert(0);
            if pos <= *fed {
                bump(&world.counters.repeats);
            }
            *fed = (*fed).max(pos);
        }
        let applied = self.applied.entry(chat_id).or_insert(0);
        if pos <= *applied {
            return;
        }
        *applied = pos;
        bump(match via {
            Via::Live => &world.counters.live,
            Via::Feed => &world.counters.synced,
        });
        let me = self.person.id;
        let kind = change["type"].as_str().unwrap_or_default();
        let ends = kind == "chat.deleted"
            || (kind == "member.removed" && change["user_id"].as_i64() == Some(me));
        if ends {
            self.chats.remove(&chat_id);
            self.joining.remove(&chat_id);
            self.leaving.remove(&chat_id);
            return;
        }
        if self.joins(change) {
            // Its history comes from the messages API, once the feed is followed to its end.
            self.chats.remove(&chat_id);
            self.leaving.remove(&chat_id);
            self.joining.insert(chat_id, pos);
            self.stale = true;
            return;
        }
        if let Some(top) = self.joining.get_mut(&chat_id) {
            *top = pos;
            return;
        }
        let Some(chat) = self.chats.get_mut(&chat_id) else {
            if !self.leaving.contains(&chat_id) {
                world.stray(format!("{} got {kind} {pos} of chat {chat_id}", self.name));
            }
            return;
        };
        match kind {
            "message.created" | "message.updated" | "message.deleted" => {
                let Some((seq, msg)) = Msg::parse(&change["message"]) else {
                    return;
                };
                if chat
                    .messages
                    .get(&seq)
                    .is_some_and(|held| held.id != msg.id)
                {
                    bump(&world.counters.conflicts);
                }
                if kind == "message.created" {
                    // One message, created by two changes.
                    if chat.created.insert(seq, pos).is_some() {
                        bump(&world.counters.conflicts);
                    }
                    // A member's send reads everything up to it.
                    if let Some(cursor) = msg.author.and_then(|a| chat.cursors.get_mut(&a)) {
                        *cursor = (*cursor).max(seq);
                    }
                }
                chat.messages.insert(seq, msg);
            }
            "message.read" => {
                let reader = change["user_id"].as_i64().unwrap_or_default();
                let seq = change["last_read_seq"].as_i64().unwrap_or_default();
                if let Some(cursor) = chat.cursors.get_mut(&reader) {
                    *cursor = (*cursor).max(seq);
                }
            }
            "chat.updated" => {
                chat.name = change["chat"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
            "member.added" => {
                // New members start with everything before them read.
                let last_seq = chat.last_seq();
                for id in change["user_ids"].as_array().into_iter().flatten() {
                    if let Some(id) = id.as_i64() {
                        chat.cursors.entry(id).or_insert(last_seq);
                    }
                }
            }
            "member.removed" => {
                if let Some(gone) = change["user_id"].as_i64() {
                    chat.cursors.remove(&gone);
                }
            }
            _ => {}
        }
    }

    /// Follows the feed from the device's token to its end, then loads the chats it joined.
    async fn sync(&mut self, world: &World) -> anyhow::Result<()> {
        bump(&world.counters.syncs);
        for _ in 0..MAX_PAGES {
            let path = format!("/api/sync?since={}&limit=100", self.since);
            let (status, body) = request(world, &self.token, Method::GET, &path, None).await?;
            ensure!(status == StatusCode::OK, "sync answered {status}: {body}");
            let page: SyncPage = serde_json::from_value(body)?;
            for change in &page.changes {
                self.apply(world, change, Via::Feed);
            }
            self.since = page.next;
            if !page.has_more {
                return self.load_joined(world).await;
            }
        }
        bail!(
            "{}: the feed did not end after {MAX_PAGES} pages",
            self.name
        )
    }

    /// Loads the chats joined, now that the feed is followed to its end.
    async fn load_joined(&mut self, world: &World) -> anyhow::Result<()> {
        let joined: Vec<i64> = self.joining.keys().copied().collect();
        for chat in joined {
            match load_chat(world, &self.token, chat).await? {
                Some(state) => {
                    self.chats.insert(chat, state);
                }
                None => {
                    self.leaving.insert(chat);
                }
            }
            self.joining.remove(&chat);
            bump(&world.counters.loads);
        }
        self.stale = false;
        Ok(())
    }

    /// Syncs, retrying through outages until `deadline`.
    pub async fn catch_up(&mut self, world: &World, deadline: Instant) -> anyhow::Result<()> {
        let mut backoff = FIRST_BACKOFF;
        while let Err(e) = self.sync(world).await {
            if Instant::now() > deadline {
                return Err(e.context(format!("{} could not sync", self.name)));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
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
        if let Ok(mut acked) = world.acked.lock() {
            acked.push(Acked {
                user_id: self.person.id,
                chat_id: chat,
                client_id: client_id.to_owned(),
                message_id: message.id,
            });
        }
    }

    /// One frame from the socket: an `ack` settles a pending send; a change is applied if it
    /// is the next of its chat, and one past the next makes the device owe a sync.
    fn event(&mut self, world: &World, text: &str) {
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if event["type"] == "ack" {
            let client_id = event["client_id"].as_str().unwrap_or_default().to_owned();
            let Ok(message) = serde_json::from_value::<Held>(event["message"].clone()) else {
                return;
            };
            if let Some((chat, _, _)) = self.pending.remove(&client_id) {
                bump(&world.counters.over_socket);
                self.acknowledged(world, chat, &client_id, &message);
            }
            return;
        }
        let (Some(chat), Some(pos)) = (event["chat_id"].as_i64(), event["pos"].as_i64()) else {
            return;
        };
        let applied = self.applied.get(&chat).copied().unwrap_or(0);
        if pos > applied + 1 {
            // Something before it is missing; the feed has it all, this change included.
            if !self.joins(&event) {
                bump(&world.counters.gaps);
            }
            self.stale = true;
        } else {
            self.apply(world, &event, Via::Live);
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

    /// A request of the workload, counted in `done` when it succeeds. Done or not, whatever
    /// it changed reaches the devices as changes.
    async fn act(
        &self,
        world: &World,
        (method, path): (Method, String),
        body: Option<Value>,
        done: &AtomicU64,
    ) {
        let answer = request(world, &self.token, method, &path, body).await;
        if answer.is_ok_and(|(status, _)| status.is_success()) {
            bump(done);
        }
    }

    /// One of the user's own messages the device holds, not deleted.
    fn own_message(&self, dice: &mut Dice) -> Option<(i64, i64)> {
        let own: Vec<(i64, i64)> = self
            .chats
            .iter()
            .flat_map(|(chat, state)| {
                state
                    .messages
                    .values()
                    .filter(|m| m.author == Some(self.person.id) && !m.deleted)
                    .map(|m| (*chat, m.id))
            })
            .collect();
        own.get(dice.below(own.len())).copied()
    }

    /// Now and then, beside a send: a read mark (over HTTP or the socket), an edit or a delete
    /// of an earlier message of the user, a rename, a member added or removed, a small group
    /// made or deleted. Answers `false` when the socket failed.
    async fn change_something(
        &mut self,
        world: &World,
        dice: &mut Dice,
        socket: &mut Socket,
    ) -> bool {
        let c = &world.counters;
        match dice.below(100) {
            0..8 => {
                let chats: Vec<i64> = self.chats.keys().copied().collect();
                let Some(&chat) = chats.get(dice.below(chats.len())) else {
                    return true;
                };
                let up_to = self.chats[&chat].last_seq();
                if dice.chance(50) {
                    let frame = json!({"action": "markRead", "chat_id": chat, "up_to_seq": up_to});
                    bump(&c.reads);
                    let sent = socket.send(Message::text(frame.to_string()));
                    return tokio::time::timeout(ANSWER_TIMEOUT, sent)
                        .await
                        .is_ok_and(|sent| sent.is_ok());
                }
                let path = format!("/api/chats/{chat}/messages/read");
                let body = json!({"up_to_seq": up_to});
                self.act(world, (Method::PUT, path), Some(body), &c.reads)
                    .await;
            }
            8..12 => {
                if let Some((chat, id)) = self.own_message(dice) {
                    self.made += 1;
                    let content = format!("{} edits it ({})", self.name, self.made);
                    let path = format!("/api/chats/{chat}/messages/{id}");
                    let body = json!({"content": content});
                    self.act(world, (Method::PUT, path), Some(body), &c.edits)
                        .await;
                }
            }
            12..14 => {
                if let Some((chat, id)) = self.own_message(dice) {
                    let path = format!("/api/chats/{chat}/messages/{id}");
                    self.act(world, (Method::DELETE, path), None, &c.deletes)
                        .await;
                }
            }
            14..17 => {
                if let Some(&chat) = self.jobs.renames.get(dice.below(self.jobs.renames.len())) {
                    self.made += 1;
                    let name = format!("{}'s group, take {}", self.name, self.made);
                    let path = format!("/api/chats/{chat}");
                    let body = json!({"name": name});
                    self.act(world, (Method::PUT, path), Some(body), &c.renames)
                        .await;
                }
            }
            17..57 => {
                let Some((chat, pool)) = self.jobs.churns.get(dice.below(self.jobs.churns.len()))
                else {
                    return true;
                };
                let Some(&user) = pool.get(dice.below(pool.len())) else {
                    return true;
                };
                let Some(state) = self.chats.get(chat) else {
                    return true;
                };
                if state.cursors.contains_key(&user) {
                    let path = format!("/api/chats/{chat}/members/{user}");
                    self.act(world, (Method::DELETE, path), None, &c.removed)
                        .await;
                } else {
                    let path = format!("/api/chats/{chat}/members");
                    let body = json!({"user_ids": [user]});
                    self.act(world, (Method::POST, path), Some(body), &c.added)
                        .await;
                }
            }
            57..64 if self.jobs.makes_groups => {
                self.made += 1;
                let others: Vec<i64> = (0..2)
                    .map(|_| world.people[dice.below(world.people.len())])
                    .filter(|id| *id != self.person.id)
                    .collect();
                let body = json!({
                    "name": format!("{}{}", self.brief_prefix(), self.made),
                    "is_group_chat": true,
                    "user_ids": others,
                });
                let path = "/api/chats".to_owned();
                self.act(world, (Method::POST, path), Some(body), &c.created)
                    .await;
            }
            64..84 if self.jobs.makes_groups => {
                let prefix = self.brief_prefix();
                let brief: Vec<i64> = self
                    .chats
                    .iter()
                    .filter(|(_, chat)| chat.name.starts_with(&prefix))
                    .map(|(id, _)| *id)
                    .collect();
                if let Some(chat) = brief.get(dice.below(brief.len())) {
                    let path = format!("/api/chats/{chat}");
                    self.act(world, (Method::DELETE, path), None, &c.deleted)
                        .await;
                }
            }
            _ => {}
        }
        true
    }

    /// How the small groups the device makes are named.
    fn brief_prefix(&self) -> String {
        format!("brief {} #", self.name)
    }
}

pub(super) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(world: &World, device: &Device) -> Option<Socket> {
    let url = format!("{}/?token={}", world.ws, device.token);
    match tokio::time::timeout(ANSWER_TIMEOUT, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((socket, _))) => Some(socket),
        _ => None,
    }
}

/// A device's life: connect (and sync), then send now and then, change something else now
/// and then, and read events, dropping the socket at random; when `stop` turns, settle every
/// send.
pub(super) async fn live(
    world: Arc<World>,
    mut device: Device,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> anyhow::Result<Device> {
    let mut dice = Dice::new();
    let mut socket: Option<Socket> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut sync_backoff = FIRST_BACKOFF;
    let mut next_sync = Instant::now();
    let mut next_send = Instant::now() + dice.between(Duration::ZERO, world.send_every);
    while !*stop.borrow() {
        let deadline = Instant::now() + grace;
        let Some(open) = socket.as_mut() else {
            match connect(&world, &device).await {
                Some(open) => {
                    socket = Some(open);
                    backoff = FIRST_BACKOFF;
                    // Whatever happened while away.
                    device.stale = true;
                    next_sync = Instant::now();
                }
                None => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
            continue;
        };
        if device.stale && Instant::now() >= next_sync {
            if device.sync(&world).await.is_ok() {
                sync_backoff = FIRST_BACKOFF;
            } else {
                // Again after a while (the database is away), and at the end.
                next_sync = Instant::now() + sync_backoff;
                sync_backoff = (sync_backoff * 2).min(Duration::from_secs(1));
            }
            continue;
        }
        let wait = next_send.saturating_duration_since(Instant::now());
        let owed = device.stale;
        tokio::select! {
            frame = open.next() => match frame {
                Some(Ok(Message::Text(text))) => device.event(&world, &text),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    socket = None;
                    bump(&world.counters.reconnects);
                }
            },
            () = tokio::time::sleep_until(next_sync.into()), if owed => {}
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
                let send_to = &device.jobs.send_to;
                let chat = send_to[dice.below(send_to.len())];
                device.sent += 1;
                let client_id = format!("{}-{}", device.name, device.sent);
                let content = format!("{} says {}", device.name, device.sent);
                let mut alive = true;
                if dice.chance(50) {
                    device.send_http(&world, chat, &client_id, &content, deadline).await?;
                    bump(&world.counters.over_http);
                } else {
                    let frame = json!({"action": "sendMessage", "chat_id": chat, "content": content, "client_id": client_id});
                    device.pending.insert(client_id, (chat, content, Instant::now()));
                    alive = open.send(Message::text(frame.to_string())).await.is_ok();
                }
                if alive {
                    alive = device.change_something(&world, &mut dice, open).await;
                }
                if !alive {
                    socket = None;
                    bump(&world.counters.reconnects);
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
                device.event(&world, &text);
            }
        }
        let _ = open.close(None).await;
    }
    device.settle_pending(&world, true, deadline).await?;
    Ok(device)
}
