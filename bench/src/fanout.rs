//! Fan-out: one message to a group whose every member is connected over WebSocket.
//!
//! The workload is an ordinary send over HTTP; the handler pushes to every member's connection
//! through the `@connections` management endpoint before it answers, as the deployed function
//! does. The baseline posts the very same frame to the same connections through that endpoint
//! straight, with the same concurrency: what remains between the two is the product's own cost
//! (the connection lookup, the SDK's signing and retries, the event's serialisation).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use blockchat::db;
use blockchat::domain::Role;
use futures::StreamExt;
use http::StatusCode;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::Bench;
use crate::cpu::Usage;
use crate::load::{Spread, spread_ms};

/// The size of the group.
pub const MEMBERS: usize = 1_000;

/// How many sockets are being opened at once while connecting everyone.
const CONNECTING_AT_ONCE: usize = 32;

/// How long one round may take before the benchmark calls it lost.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

/// What the rounds send: the first one's frame, as members got it, is the baseline's template.
const CONTENT: &str = "fan-out ";
const FIRST: &str = "fan-out 0";

/// A frame arrived: its message's content, and when.
type Receipt = (String, Instant);

pub struct FanOut {
    pub members: usize,
    /// Connections per member: every one of them must receive every message.
    pub devices: usize,
    /// Connections in all.
    pub connections: usize,
    /// Send to the last member having it, over HTTP through the product.
    pub http: Vec<Duration>,
    /// The send's own answer (the push is done before it answers).
    pub answered: Vec<Duration>,
    /// The same frames posted straight to `@connections`.
    pub direct: Vec<Duration>,
    pub frame_bytes: usize,
    pub connect_time: Duration,
    /// CPU over each round, by component: where the product's extra time goes.
    pub http_cpu: Vec<Usage>,
    pub direct_cpu: Vec<Usage>,
}

impl FanOut {
    pub fn http_ms(&self) -> Spread {
        spread_ms(&self.http)
    }
    pub fn direct_ms(&self) -> Spread {
        spread_ms(&self.direct)
    }
    pub fn answered_ms(&self) -> Spread {
        spread_ms(&self.answered)
    }

    /// Median CPU per round, by component.
    pub fn cpu_ms(rounds: &[Usage]) -> RoundCpu {
        let pick = |f: &dyn Fn(&Usage) -> f64| {
            crate::load::median(&rounds.iter().map(f).collect::<Vec<_>>())
        };
        let postgres = rounds.iter().all(|u| u.postgres.is_some());
        RoundCpu {
            gateway_ms: pick(&|u| u.gateway.as_secs_f64() * 1000.0),
            client_ms: pick(&|u| u.client.as_secs_f64() * 1000.0),
            postgres_ms: postgres
                .then(|| pick(&|u| u.postgres.unwrap_or_default().as_secs_f64() * 1000.0)),
        }
    }
}

/// CPU over one fan-out round, in ms.
#[derive(Clone, Copy, Debug)]
pub struct RoundCpu {
    pub gateway_ms: f64,
    /// The members' sockets and the load generator (or the poster).
    pub client_ms: f64,
    /// `None` when PostgreSQL is not ours to meter.
    pub postgres_ms: Option<f64>,
}

struct Members {
    readers: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    receipts: mpsc::UnboundedReceiver<Receipt>,
    /// The first frame any member received, verbatim: the baseline posts copies of it.
    sample_frame: Arc<Mutex<Option<String>>>,
}

/// `rounds` sends to the group, every member connected `devices` times.
pub async fn run(bench: &Bench, rounds: usize, devices: usize) -> anyhow::Result<FanOut> {
    let users = &bench.seeded.fanout_users;
    // A group of its own each run; its members join only once they are all connected.
    let chat = db::chats::insert_group(&bench.pool, "fan-out", users[0].id)
        .await?
        .id;
    let started = Instant::now();
    let mut members = connect(bench, devices).await?;
    let connect_time = started.elapsed();
    // Joining after connecting: a member who connects announces their presence to everyone they
    // share a chat with, and 1,000 members joining one by one would announce half a million times.
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    db::members::add(&bench.pool, chat, &ids, Role::Member).await?;
    let connections = db::connections::for_chat(&bench.pool, chat).await?;
    ensure!(
        connections.len() == users.len() * devices,
        "{} of {} connections are open",
        connections.len(),
        users.len() * devices
    );

    let result = rounds_of(bench, &mut members, chat, &connections, rounds).await;

    // Gone first, so that the members leaving announce it to nobody.
    db::chats::delete(&bench.pool, chat).await?;
    let _ = members.stop.send(true);
    for reader in members.readers {
        if tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .is_err()
        {
            bail!("a member's socket did not close");
        }
    }
    let mut outcome = result?;
    outcome.connect_time = connect_time;
    outcome.devices = devices;
    Ok(outcome)
}

async fn connect(bench: &Bench, devices: usize) -> anyhow::Result<Members> {
    let (stop, stopped) = watch::channel(false);
    let (receipts_tx, receipts) = mpsc::unbounded_channel::<Receipt>();
    let sample_frame = Arc::new(Mutex::new(None));
    let urls: Vec<String> = bench
        .seeded
        .fanout_users
        .iter()
        .map(|u| Ok(format!("{}/?token={}", bench.ws_url, bench.token(u.id)?)))
        .collect::<anyhow::Result<Vec<String>>>()?
        .into_iter()
        .flat_map(|url| std::iter::repeat_n(url, devices))
        .collect();
    let sockets: Vec<_> = futures::stream::iter(urls)
        .map(|url| async move { tokio_tungstenite::connect_async(url).await })
        .buffer_unordered(CONNECTING_AT_ONCE)
        .collect()
        .await;
    let mut readers = Vec::with_capacity(sockets.len());
    for socket in sockets {
        let (mut socket, _) = socket.context("a member could not connect")?;
        let mut stopped = stopped.clone();
        let receipts = receipts_tx.clone();
        let sample_frame = sample_frame.clone();
        readers.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    next = socket.next() => match next {
                        Some(Ok(Message::Text(text))) => {
                            let at = Instant::now();
                            if let Some(content) = created_content(&text) {
                                if let Ok(mut sample) = sample_frame.lock() {
                                    sample.get_or_insert_with(|| text.to_string());
                                }
                                let _ = receipts.send((content, at));
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                    _ = stopped.changed() => {
                        let _ = socket.close(None).await;
                        // Read on until the server's close comes back, as a client would.
                        while let Ok(Some(Ok(_))) =
                            tokio::time::timeout(Duration::from_secs(2), socket.next()).await
                        {}
                        break;
                    }
                }
            }
        }));
    }
    Ok(Members {
        readers,
        stop,
        receipts,
        sample_frame,
    })
}

/// The content of a `message.created` event.
fn created_content(frame: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Event {
        #[serde(rename = "type")]
        kind: String,
        message: Option<Message>,
    }
    #[derive(serde::Deserialize)]
    struct Message {
        content: String,
    }
    let event: Event = serde_json::from_str(frame).ok()?;
    (event.kind == "message.created").then_some(event.message?.content)
}

/// Waits until `expected` members hold `content`; answers when the last one got it.
async fn last_receipt(
    receipts: &mut mpsc::UnboundedReceiver<Receipt>,
    content: &str,
    expected: usize,
) -> anyhow::Result<Instant> {
    let mut got = 0;
    let mut last: Option<Instant> = None;
    let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
    while got < expected {
        match tokio::time::timeout_at(deadline, receipts.recv()).await {
            Ok(Some((c, at))) if c == content => {
                got += 1;
                last = Some(last.map_or(at, |l| l.max(at)));
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("the members' sockets are gone"),
            Err(_) => bail!("only {got} of {expected} members received {content:?}"),
        }
    }
    last.context("no member received anything")
}

async fn rounds_of(
    bench: &Bench,
    members: &mut Members,
    chat: i64,
    connections: &[String],
    rounds: usize,
) -> anyhow::Result<FanOut> {
    let n = connections.len();
    let sender = &bench.seeded.fanout_users[0];
    let url = format!("{}/api/chats/{chat}/messages", bench.api);
    let auth = format!("Bearer {}", bench.token(sender.id)?);
    let posts: Vec<String> = connections
        .iter()
        .map(|id| format!("{}/@connections/{}", bench.ws_http, path_segment(id)))
        .collect();
    let mut outcome = FanOut {
        members: bench.seeded.fanout_users.len(),
        devices: 1,
        connections: n,
        http: Vec::new(),
        answered: Vec::new(),
        direct: Vec::new(),
        frame_bytes: 0,
        connect_time: Duration::ZERO,
        http_cpu: Vec::new(),
        direct_cpu: Vec::new(),
    };
    // One round first that counts for nothing: it warms the pools and yields the frame that the
    // baseline posts.
    for round in 0..=rounds {
        let content = format!("{CONTENT}{round}");
        let before = bench.meter.snapshot();
        let started = Instant::now();
        let response = bench
            .http
            .post(&url)
            .header(AUTHORIZATION, &auth)
            .header(CONTENT_TYPE, "application/json")
            .body(serde_json::json!({ "content": content }).to_string())
            .send()
            .await?;
        let answered = started.elapsed();
        let status = response.status();
        ensure!(
            status == StatusCode::CREATED,
            "the send was answered {status}: {}",
            response.text().await?
        );
        let last = last_receipt(&mut members.receipts, &content, n).await?;
        let usage = bench.meter.snapshot().since(&before);
        if round > 0 {
            outcome.http.push(last - started);
            outcome.answered.push(answered);
            outcome.http_cpu.push(usage);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;

        let frame = members
            .sample_frame
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .context("no frame to copy")?;
        // The same frame with a content of the same length, so that both move the same bytes.
        let direct = format!("{:<width$}", format!("direct {round}"), width = FIRST.len());
        let frame = frame.replacen(&format!("\"{FIRST}\""), &format!("\"{direct}\""), 1);
        outcome.frame_bytes = frame.len();
        let before = bench.meter.snapshot();
        let started = Instant::now();
        post_all(bench, &posts, frame).await?;
        let last = last_receipt(&mut members.receipts, &direct, n).await?;
        let usage = bench.meter.snapshot().since(&before);
        if round > 0 {
            outcome.direct.push(last - started);
            outcome.direct_cpu.push(usage);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(outcome)
}

/// Posts `frame` to every connection, `push_concurrency` at a time, as the product's push does.
async fn post_all(bench: &Bench, posts: &[String], frame: String) -> anyhow::Result<()> {
    let frame = bytes::Bytes::from(frame);
    let statuses: Vec<anyhow::Result<StatusCode>> = futures::stream::iter(posts)
        .map(|url| {
            let request = bench.http.post(url).body(frame.clone());
            async move {
                let response = request.send().await?;
                let status = response.status();
                response.bytes().await?;
                Ok(status)
            }
        })
        .buffer_unordered(bench.push_concurrency)
        .collect()
        .await;
    let mut failed: HashMap<String, usize> = HashMap::new();
    for status in statuses {
        match status {
            Ok(StatusCode::OK) => {}
            Ok(other) => *failed.entry(other.to_string()).or_default() += 1,
            Err(e) => *failed.entry(format!("{e:#}")).or_default() += 1,
        }
    }
    ensure!(failed.is_empty(), "posts failed: {failed:?}");
    Ok(())
}

/// A connection id as one path segment (API Gateway's ids are base64, with `/`, `+` and `=`).
fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len() * 3);
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
