//! The change feed: every change of the caller's chats since a token, so that a client that was
//! away (or on another device) catches up on all of them, not only on new messages.
//!
//! A change's position within its chat (`pos`) is taken under the chat row's lock, so within a
//! chat positions follow commit order. Across chats the feed follows the writing transactions'
//! ids, and reads only what every transaction below the oldest one still running wrote: a
//! transaction that started early and commits late is still running when a reader passes its
//! neighbours, so it holds the reader's horizon back instead of being skipped.
//!
//! A token says what the client has: every change written by a transaction below `after_xid`,
//! and in the chats it names, every change up to the position it gives. A page delivers the
//! rest in transaction order, each chat's part complete up to its last change there, and the
//! next token moves `after_xid` as far as it can and names only the chats that need it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sqlx::PgPool;

use crate::db;
use crate::db::changes::ChangeRow;
use crate::domain::Caller;
use crate::error::{Error, Result};
use crate::views::{ChatSummary, Event, MessageView, SyncPage};

/// Page sizes: the default, and the most one page holds.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 500;

/// The most chats a token names; past it the page ends early (tokens stay short enough for a
/// query string).
const MAX_TOKEN_CHATS: usize = 200;

/// What a client has of the feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// When the token was issued, in seconds since the epoch.
    pub issued: i64,
    /// Every change written by a transaction below this one is delivered.
    pub after_xid: i64,
    /// Per chat: every change up to this position is delivered.
    pub seen: BTreeMap<i64, i64>,
}

impl Token {
    const VERSION: &'static str = "1";

    pub fn encode(&self) -> String {
        let mut text = format!("{}.{}.{}.", Self::VERSION, self.issued, self.after_xid);
        let seen: Vec<String> = self.seen.iter().map(|(c, p)| format!("{c}:{p}")).collect();
        text.push_str(&seen.join(","));
        URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(4, '.');
        if parts.next()? != Self::VERSION {
            return None;
        }
        let issued = parts.next()?.parse().ok()?;
        let after_xid = parts.next()?.parse().ok()?;
        let mut seen = BTreeMap::new();
        for pair in parts.next()?.split(',').filter(|p| !p.is_empty()) {
            let (chat, pos) = pair.split_once(':')?;
            seen.insert(chat.parse().ok()?, pos.parse().ok()?);
        }
        (seen.len() <= MAX_TOKEN_CHATS + MAX_LIMIT as usize).then_some(Self {
            issued,
            after_xid,
            seen,
        })
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn expired() -> Error {
    Error::Gone {
        code: "sync_expired",
        detail: "the token is older than the change log keeps changes; load the chats again and \
                 start over with GET /api/sync"
            .into(),
    }
}

/// The changes of the caller's chats after `since`; without it, the current token.
#[tracing::instrument(skip_all, fields(user_id = caller.id))]
pub async fn feed(
    db: &PgPool,
    retention: Duration,
    caller: Caller,
    since: Option<&str>,
    limit: i64,
) -> Result<SyncPage> {
    let now = now_secs();
    let Some(since) = since.filter(|s| !s.is_empty()) else {
        let token = Token {
            issued: now,
            after_xid: db::changes::horizon(db).await?,
            seen: BTreeMap::new(),
        };
        return Ok(SyncPage {
            changes: Vec::new(),
            next: token.encode(),
            has_more: false,
        });
    };
    let token = Token::decode(since)
        .ok_or_else(|| Error::validation("since", "is not a token from GET /api/sync"))?;
    if now.saturating_sub(token.issued) > retention.as_secs() as i64 {
        return Err(expired());
    }
    let (chats, pos): (Vec<i64>, Vec<i64>) = token.seen.iter().map(|(c, p)| (*c, *p)).unzip();
    let page = db::changes::page(db, caller.id, token.after_xid, &chats, &pos, limit).await?;
    let mut rows = page.rows;
    // The first `limit` rows are the page's head; the rest complete its chats.
    let full = rows.len() as i64 >= limit;
    let after_xid = match rows.get(limit as usize - 1) {
        Some(last) if full => last.xid.min(page.xmin),
        _ => page.xmin,
    }
    .max(token.after_xid);
    let mut seen = token.seen;
    for row in &rows {
        let top = seen.entry(row.chat_id).or_insert(0);
        *top = (*top).max(row.pos);
    }
    let (chats, pos): (Vec<i64>, Vec<i64>) = seen.iter().map(|(c, p)| (*c, *p)).unzip();
    let needed = if chats.is_empty() {
        Vec::new()
    } else {
        db::changes::still_needed(db, after_xid, &chats, &pos).await?
    };
    seen.retain(|chat, _| needed.contains(chat));
    if seen.len() > MAX_TOKEN_CHATS {
        tracing::warn!(chats = seen.len(), "sync token names many chats");
    }
    in_chat_order(&mut rows);
    let changes = render(db, caller.id, rows).await?;
    let next = Token {
        issued: now,
        after_xid,
        seen,
    };
    Ok(SyncPage {
        changes,
        next: next.encode(),
        has_more: full,
    })
}

/// Puts each chat's changes in position order, in the places the chat's changes hold in the
/// page (a transaction with a smaller id can have taken a chat's lock after a larger one).
fn in_chat_order(rows: &mut [ChangeRow]) {
    let mut slots: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        slots.entry(row.chat_id).or_default().push(i);
    }
    for indexes in slots.values().filter(|s| s.len() > 1) {
        let mut chat: Vec<ChangeRow> = indexes.iter().map(|&i| rows[i].clone()).collect();
        chat.sort_by_key(|r| r.pos);
        for (&i, row) in indexes.iter().zip(chat) {
            rows[i] = row;
        }
    }
}

/// The changes as events, each showing the current state of what it changed: messages as they
/// are now, chats as the viewer sees them now.
async fn render(db: &PgPool, viewer: i64, rows: Vec<ChangeRow>) -> Result<Vec<Event>> {
    let message_ids: Vec<i64> = rows.iter().filter_map(|r| r.message_id).collect();
    let mut messages: HashMap<i64, MessageView> = HashMap::new();
    if !message_ids.is_empty() {
        for (row, is_read) in db::messages::by_ids(db, &message_ids).await? {
            messages.insert(row.id, MessageView::new(row, is_read));
        }
    }
    let mut chats: HashMap<i64, Option<ChatSummary>> = HashMap::new();
    for row in rows.iter().filter(|r| {
        matches!(
            r.kind.as_str(),
            "chat.created" | "chat.updated" | "member.added"
        )
    }) {
        if let std::collections::hash_map::Entry::Vacant(slot) = chats.entry(row.chat_id) {
            slot.insert(crate::service::chats::summary_for(db, row.chat_id, viewer).await?);
        }
    }
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let (chat_id, pos) = (row.chat_id, row.pos);
        let message = || row.message_id.and_then(|id| messages.get(&id).cloned());
        let chat = || chats.get(&chat_id).cloned().flatten();
        let event = match row.kind.as_str() {
            "message.created" => message().map(|message| Event::MessageCreated {
                chat_id,
                pos,
                message,
            }),
            "message.updated" => message().map(|message| Event::MessageUpdated {
                chat_id,
                pos,
                message,
            }),
            "message.deleted" => message().map(|message| Event::MessageDeleted {
                chat_id,
                pos,
                message,
            }),
            "message.read" => {
                row.user_id
                    .zip(row.value)
                    .map(|(user_id, last_read_seq)| Event::MessageRead {
                        chat_id,
                        pos,
                        user_id,
                        last_read_seq,
                    })
            }
            "chat.created" => chat().map(|chat| Event::ChatCreated { chat_id, pos, chat }),
            "chat.updated" => chat().map(|chat| Event::ChatUpdated { chat_id, pos, chat }),
            "chat.deleted" => Some(Event::ChatDeleted { chat_id, pos }),
            "member.added" => chat().map(|chat| Event::MemberAdded {
                chat_id,
                pos,
                user_ids: row.user_ids.clone().unwrap_or_default(),
                chat,
            }),
            "member.removed" => row.user_id.map(|user_id| Event::MemberRemoved {
                chat_id,
                pos,
                user_id,
                new_admin: row.value,
            }),
            _ => None,
        };
        match event {
            Some(event) => events.push(event),
            // Gone with its chat, or a kind this version does not know: nothing to show.
            None => tracing::debug!(chat_id, pos, kind = %row.kind, "change not shown"),
        }
    }
    Ok(events)
}

/// Deletes the changes older than `retention` (and a margin for transactions that were still
/// running when a token was issued), in batches; returns how many went.
pub async fn purge(db: &PgPool, retention: Duration) -> Result<u64> {
    const BATCH: i64 = 10_000;
    let cutoff = retention.as_secs() as i64 + 3600;
    let mut total = 0;
    loop {
        let done = db::changes::purge(db, cutoff, BATCH).await?;
        total += done;
        if done < BATCH as u64 {
            break;
        }
    }
    tracing::info!(deleted = total, "change log purged");
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_garbage() {
        let token = Token {
            issued: 1_764_000_000,
            after_xid: 1234,
            seen: BTreeMap::from([(7, 3), (9, 12)]),
        };
        assert_eq!(Token::decode(&token.encode()), Some(token));
        let empty = Token {
            issued: 1,
            after_xid: 2,
            seen: BTreeMap::new(),
        };
        assert_eq!(Token::decode(&empty.encode()), Some(empty));
        for bad in [
            "",
            "x",
            "MQ",
            "%%%",
            &URL_SAFE_NO_PAD.encode("2.1.2."),
            &URL_SAFE_NO_PAD.encode("1.a.2."),
        ] {
            assert_eq!(Token::decode(bad), None, "{bad:?}");
        }
    }

    fn row(chat_id: i64, pos: i64, xid: i64) -> ChangeRow {
        ChangeRow {
            id: xid,
            chat_id,
            pos,
            xid,
            kind: "message.created".into(),
            message_id: None,
            user_id: None,
            value: None,
            user_ids: None,
        }
    }

    #[test]
    fn each_chat_comes_in_position_order() {
        // Chat 1's position 6 was written by an older transaction than its position 5.
        let mut rows = vec![row(1, 6, 10), row(2, 1, 11), row(1, 5, 12), row(1, 7, 13)];
        in_chat_order(&mut rows);
        let order: Vec<(i64, i64)> = rows.iter().map(|r| (r.chat_id, r.pos)).collect();
        assert_eq!(order, vec![(1, 5), (2, 1), (1, 6), (1, 7)]);
    }
}
