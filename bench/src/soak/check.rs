//! The end of a soak: what was acknowledged and what every device holds, beside a fresh load
//! of every user's chats.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;

use anyhow::ensure;

use super::device::{ChatState, Device, get, load_chat};
use super::{SoakReport, World};

/// The most differences the report lists (it counts them all).
const LISTED: usize = 20;

/// The ids of a user's chats.
async fn chat_list(world: &World, token: &str) -> anyhow::Result<BTreeSet<i64>> {
    let list = get(world, token, "/api/chats?limit=100").await?;
    let list = list.and_then(|l| l.as_array().cloned()).unwrap_or_default();
    ensure!(list.len() < 100, "a user has too many chats");
    Ok(list.iter().filter_map(|c| c["id"].as_i64()).collect())
}

/// The differences found, counted as losses (something missing or stale) or duplicates
/// (something held twice), the first few described.
#[derive(Default)]
struct Findings {
    losses: u64,
    duplicates: u64,
    listed: Vec<String>,
}

impl Findings {
    fn loss(&mut self, what: impl FnOnce() -> String) {
        self.losses += 1;
        self.note(what);
    }

    fn duplicate(&mut self, what: impl FnOnce() -> String) {
        self.duplicates += 1;
        self.note(what);
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.listed.len() < LISTED {
            self.listed.push(what());
        }
    }

    /// A device's chat beside the chat loaded afresh.
    fn compare(&mut self, device: &str, id: i64, held: &ChatState, fresh: &ChatState) {
        if fresh.is_group && held.name != fresh.name {
            self.loss(|| {
                format!(
                    "{device}: chat {id} named {:?}, not {:?}",
                    held.name, fresh.name
                )
            });
        }
        for (user, cursor) in &fresh.cursors {
            match held.cursors.get(user) {
                None => self.loss(|| format!("{device}: chat {id} misses member {user}")),
                Some(c) if c != cursor => self.loss(|| {
                    format!("{device}: chat {id}: member {user} read up to {c}, not {cursor}")
                }),
                Some(_) => {}
            }
        }
        for user in held
            .cursors
            .keys()
            .filter(|u| !fresh.cursors.contains_key(u))
        {
            self.loss(|| format!("{device}: chat {id} still lists member {user}"));
        }
        for (seq, message) in &fresh.messages {
            match held.messages.get(seq) {
                None => self.loss(|| format!("{device}: chat {id} misses seq {seq}")),
                Some(m) if m.id != message.id => self.duplicate(|| {
                    format!("{device}: chat {id} seq {seq} is message {}, not {}", m.id, message.id)
                }),
                Some(m) if m.content != message.content || m.deleted != message.deleted => self
                    .loss(|| {
                        format!(
                            "{device}: chat {id} seq {seq} is {:?} (deleted {}), not {:?} (deleted {})",
                            m.content, m.deleted, message.content, message.deleted
                        )
                    }),
                Some(_) => {}
            }
        }
        for seq in held
            .messages
            .keys()
            .filter(|s| !fresh.messages.contains_key(s))
        {
            self.duplicate(|| format!("{device}: chat {id} holds seq {seq}, which is not stored"));
        }
    }
}

/// Compares what was acknowledged and what the devices hold with a fresh load of every
/// user's chats: the chat list, each chat's members with their cursors, its messages.
pub(super) async fn check(world: &World, devices: &[Device]) -> anyhow::Result<SoakReport> {
    let c = &world.counters;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let mut report = SoakReport {
        acknowledged: load(&c.acknowledged),
        over_http: load(&c.over_http),
        over_socket: load(&c.over_socket),
        retries: load(&c.retries),
        socket_timeouts: load(&c.socket_timeouts),
        reconnects: load(&c.reconnects),
        live: load(&c.live),
        synced: load(&c.synced),
        syncs: load(&c.syncs),
        loads: load(&c.loads),
        gaps: load(&c.gaps),
        answers_503: load(&c.answers_503),
        edits: load(&c.edits),
        deletes: load(&c.deletes),
        reads: load(&c.reads),
        renames: load(&c.renames),
        added: load(&c.added),
        removed: load(&c.removed),
        created: load(&c.created),
        deleted: load(&c.deleted),
        strays: load(&c.strays),
        duplicates: load(&c.conflicts) + load(&c.repeats),
        ..SoakReport::default()
    };
    report.unexpected = world
        .unexpected
        .lock()
        .map(|u| u.clone())
        .unwrap_or_default();

    // A fresh load of every user's chat list, and of every chat in them.
    let mut lists: HashMap<i64, BTreeSet<i64>> = HashMap::new();
    let mut fresh: BTreeMap<i64, ChatState> = BTreeMap::new();
    for device in devices {
        if lists.contains_key(&device.person.id) {
            continue;
        }
        let list = chat_list(world, &device.token).await?;
        for chat in &list {
            if !fresh.contains_key(chat) {
                let state = load_chat(world, &device.token, *chat).await?;
                let state = state.ok_or_else(|| anyhow::anyhow!("chat {chat} went away"))?;
                fresh.insert(*chat, state);
            }
        }
        lists.insert(device.person.id, list);
    }
    let mut findings = Findings::default();
    for stray in world.strays.lock().map(|s| s.clone()).unwrap_or_default() {
        findings.note(|| stray);
    }
    for (id, chat) in &fresh {
        // `seq` runs 1, 2, 3 … without a gap.
        if chat
            .messages
            .keys()
            .copied()
            .ne(1..=i64::try_from(chat.messages.len())?)
        {
            findings.loss(|| format!("chat {id}: its seqs have a gap"));
        }
    }
    report.stored = fresh.values().map(|m| m.messages.len() as u64).sum();

    // Every acknowledged send stored once, under the id its answer gave.
    let mut by_client: HashMap<(i64, i64, &str), u64> = HashMap::new();
    for (chat, state) in &fresh {
        for message in state.messages.values() {
            if let (Some(user), Some(client)) = (message.author, &message.client_id) {
                *by_client.entry((user, *chat, client.as_str())).or_default() += 1;
            }
        }
    }
    for ((user, chat, client), n) in by_client.iter().filter(|(_, n)| **n > 1) {
        findings.duplicate(|| format!("{client} of user {user} stored {n} times in chat {chat}"));
    }
    let ids: HashSet<i64> = fresh
        .values()
        .flat_map(|m| m.messages.values().map(|s| s.id))
        .collect();
    let acked = world.acked.lock().map(|a| a.clone()).unwrap_or_default();
    let mut seen: HashMap<(i64, i64, String), i64> = HashMap::new();
    for a in &acked {
        if !ids.contains(&a.message_id) {
            findings.loss(|| format!("acknowledged {} is not stored", a.client_id));
        }
        let key = (a.user_id, a.chat_id, a.client_id.clone());
        match seen.get(&key) {
            // The same send acknowledged twice must name the same message.
            Some(id) if *id != a.message_id => {
                findings.duplicate(|| format!("{} acknowledged as two messages", a.client_id));
            }
            _ => {
                seen.insert(key, a.message_id);
            }
        }
    }

    // Every device holds its user's chats as the fresh load shows them, and no other.
    for device in devices {
        let name = device.name.as_str();
        let list = &lists[&device.person.id];
        for chat in list {
            match device.chats.get(chat) {
                Some(held) => findings.compare(name, *chat, held, &fresh[chat]),
                None => findings.loss(|| format!("{name} misses chat {chat}")),
            }
            report.compared += 1;
        }
        for chat in device.chats.keys().filter(|c| !list.contains(c)) {
            findings.loss(|| format!("{name} still holds chat {chat}"));
        }
    }
    report.losses += findings.losses;
    report.duplicates += findings.duplicates;
    report.differences = findings.listed;
    Ok(report)
}
