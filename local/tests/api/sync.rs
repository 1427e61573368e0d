//! The change feed: a client that was away catches up on every kind of change through
//! `GET /api/sync` and ends where a fresh load would put it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::User;
use crate::common::TestApp;

/// A message as a client keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    id: i64,
    author: Option<i64>,
    content: String,
    deleted: bool,
}

/// A chat as a client keeps it: its members' read cursors and its messages by `seq`.
#[derive(Clone, Debug, Default)]
struct ChatState {
    name: String,
    is_group: bool,
    cursors: BTreeMap<i64, i64>,
    messages: BTreeMap<i64, Msg>,
}

impl ChatState {
    fn last_seq(&self) -> i64 {
        self.messages.keys().next_back().copied().unwrap_or(0)
    }
}

/// What a user sees of a chat, to compare a client's state with a fresh load's.
#[derive(Debug, PartialEq, Eq)]
struct ChatShown {
    /// Groups only: a direct chat is named after the other member's profile.
    name: Option<String>,
    members: BTreeSet<i64>,
    my_cursor: i64,
    unread: i64,
    /// `(seq, id, content, deleted, read by every other member)`.
    messages: Vec<(i64, i64, String, bool, bool)>,
}

/// A client's state: its chats, and the highest change position applied per chat.
#[derive(Debug, Default)]
struct Client {
    me: i64,
    chats: BTreeMap<i64, ChatState>,
    applied: HashMap<i64, i64>,
}

impl Client {
    /// Everything the user sees, read through the public API, as a client starting fresh.
    async fn load(app: &TestApp, user: &User) -> Self {
        let mut client = Client {
            me: user.id,
            ..Client::default()
        };
        let chats = app.get_as(user, "/api/chats?limit=100").await;
        assert_eq!(chats.status, 200, "{}", chats.body);
        for chat in chats.body.as_array().expect("chats") {
            let id = chat["id"].as_i64().expect("id");
            client.chats.insert(id, load_chat(app, user, chat).await);
            // Its messages and members were read after it: changes up to here are in them.
            client.applied.insert(id, last_pos(chat));
        }
        client
    }

    /// Applies one change (from the feed or the socket); `false` when it was applied already.
    async fn apply(&mut self, app: &TestApp, user: &User, change: &Value) -> bool {
        let chat_id = change["chat_id"].as_i64().expect("chat_id");
        let pos = change["pos"].as_i64().expect("every change has a pos");
        let applied = self.applied.entry(chat_id).or_insert(0);
        if pos <= *applied {
            return false;
        }
        *applied = pos;
        let kind = change["type"].as_str().expect("type");
        match kind {
            "message.created" | "message.updated" | "message.deleted" => {
                let m = &change["message"];
                let Some(chat) = self.chats.get_mut(&chat_id) else {
                    panic!("{kind} for a chat the client does not have: {change}");
                };
                let seq = m["seq"].as_i64().expect("seq");
                let author = m["user_id"].as_i64();
                chat.messages.insert(
                    seq,
                    Msg {
                        id: m["id"].as_i64().expect("id"),
                        author,
                        content: m["content"].as_str().expect("content").to_owned(),
                        deleted: m["deleted"].as_bool().expect("deleted"),
                    },
                );
                // A member's send reads everything up to it.
                if kind == "message.created"
                    && let Some(cursor) = author.and_then(|a| chat.cursors.get_mut(&a))
                {
                    *cursor = (*cursor).max(seq);
                }
            }
            "message.read" => {
                let chat = self.chats.get_mut(&chat_id).expect("chat of a read");
                let reader = change["user_id"].as_i64().expect("user_id");
                let seq = change["last_read_seq"].as_i64().expect("last_read_seq");
                if let Some(cursor) = chat.cursors.get_mut(&reader) {
                    *cursor = (*cursor).max(seq);
                }
            }
            "chat.created" => {
                let summary = &change["chat"];
                let cursors = summary["user_ids"]
                    .as_array()
                    .expect("user_ids")
                    .iter()
                    .map(|u| (u.as_i64().expect("user id"), 0))
                    .collect();
                self.chats.insert(
                    chat_id,
                    ChatState {
                        name: summary["name"].as_str().expect("name").to_owned(),
                        is_group: summary["is_group_chat"].as_bool().expect("is_group_chat"),
                        cursors,
                        messages: BTreeMap::new(),
                    },
                );
            }
            "chat.updated" => {
                let chat = self.chats.get_mut(&chat_id).expect("renamed chat");
                chat.name = change["chat"]["name"].as_str().expect("name").to_owned();
            }
            "chat.deleted" => {
                self.chats.remove(&chat_id);
            }
            "member.added" => {
                let added: Vec<i64> = change["user_ids"]
                    .as_array()
                    .expect("user_ids")
                    .iter()
                    .map(|u| u.as_i64().expect("user id"))
                    .collect();
                if added.contains(&self.me) && !self.chats.contains_key(&chat_id) {
                    // A chat the client joins: its history comes from the messages API.
                    let chat = app.chat_as(user, chat_id).await;
                    self.chats
                        .insert(chat_id, load_chat(app, user, &chat).await);
                    self.applied.insert(chat_id, last_pos(&chat).max(pos));
                } else if let Some(chat) = self.chats.get_mut(&chat_id) {
                    // New members start with everything before them read.
                    let last_seq = chat.last_seq();
                    for id in added {
                        chat.cursors.entry(id).or_insert(last_seq);
                    }
                }
            }
            "member.removed" => {
                let gone = change["user_id"].as_i64().expect("user_id");
                if gone == self.me {
                    self.chats.remove(&chat_id);
                } else if let Some(chat) = self.chats.get_mut(&chat_id) {
                    chat.cursors.remove(&gone);
                }
            }
            other => panic!("unexpected change type {other}: {change}"),
        }
        true
    }

    /// Follows the feed from `since` to its end, `limit` changes a page; applies every change
    /// and returns the pages and the last token.
    async fn sync(
        &mut self,
        app: &TestApp,
        user: &User,
        since: &str,
        limit: u32,
    ) -> (Vec<Vec<Value>>, String) {
        let mut token = since.to_owned();
        let mut pages = Vec::new();
        for _ in 0..500 {
            let page = app
                .get_as(user, &format!("/api/sync?since={token}&limit={limit}"))
                .await;
            assert_eq!(page.status, 200, "{}", page.body);
            let changes = page.body["changes"].as_array().expect("changes").clone();
            for change in &changes {
                self.apply(app, user, change).await;
            }
            pages.push(changes);
            token = page.body["next"].as_str().expect("next").to_owned();
            if !page.body["has_more"].as_bool().expect("has_more") {
                return (pages, token);
            }
        }
        panic!("the feed never ended");
    }

    /// What the user sees: per chat, its members, read state and messages.
    fn shown(&self) -> BTreeMap<i64, ChatShown> {
        self.chats
            .iter()
            .map(|(id, chat)| {
                let my_cursor = chat.cursors.get(&self.me).copied().unwrap_or(0);
                let messages = chat
                    .messages
                    .iter()
                    .map(|(seq, m)| {
                        let read = chat
                            .cursors
                            .iter()
                            .filter(|(user, _)| Some(**user) != m.author)
                            .all(|(_, cursor)| cursor >= seq);
                        (*seq, m.id, m.content.clone(), m.deleted, read)
                    })
                    .collect();
                let shown = ChatShown {
                    name: chat.is_group.then(|| chat.name.clone()),
                    members: chat.cursors.keys().copied().collect(),
                    my_cursor,
                    unread: (chat.last_seq() - my_cursor).max(0),
                    messages,
                };
                (*id, shown)
            })
            .collect()
    }
}

/// The position of a chat's newest change when it was read.
fn last_pos(chat: &Value) -> i64 {
    chat["last_pos"].as_i64().expect("a chat has last_pos")
}

/// A chat of the chat list (or `GET /api/chats/{id}`), with its members' cursors and messages.
async fn load_chat(app: &TestApp, user: &User, chat: &Value) -> ChatState {
    let id = chat["id"].as_i64().expect("id");
    let members = app
        .get_as(user, &format!("/api/chats/{id}/members?limit=100"))
        .await;
    assert_eq!(members.status, 200, "{}", members.body);
    let cursors = members
        .body
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let id = m["id"].as_i64().expect("member id");
            (id, m["last_read_seq"].as_i64().expect("last_read_seq"))
        })
        .collect();
    let messages = app
        .messages(user, id, "?limit=100")
        .await
        .into_iter()
        .map(|m| {
            let msg = Msg {
                id: m["id"].as_i64().expect("id"),
                author: m["user_id"].as_i64(),
                content: m["content"].as_str().expect("content").to_owned(),
                deleted: m["deleted"].as_bool().expect("deleted"),
            };
            (m["seq"].as_i64().expect("seq"), msg)
        })
        .collect();
    ChatState {
        name: chat["name"].as_str().expect("name").to_owned(),
        is_group: chat["is_group_chat"].as_bool().expect("is_group_chat"),
        cursors,
        messages,
    }
}

/// What the server says of read state and unread counts, beside what a client derives.
async fn assert_server_agrees(app: &TestApp, user: &User, client: &Client) {
    let shown = client.shown();
    let chats = app.get_as(user, "/api/chats?limit=100").await;
    let listed: BTreeMap<i64, &Value> = chats
        .body
        .as_array()
        .expect("chats")
        .iter()
        .map(|c| (c["id"].as_i64().expect("id"), c))
        .collect();
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        shown.keys().collect::<Vec<_>>(),
        "the client's chats are the chat list"
    );
    for (id, chat) in &shown {
        let listed = listed[id];
        assert_eq!(listed["unread_count"], chat.unread, "unread count of {id}");
        assert_eq!(listed["last_read_seq"], chat.my_cursor, "cursor in {id}");
        let messages = app.messages(user, *id, "?limit=100").await;
        let server: Vec<(i64, bool)> = messages
            .iter()
            .map(|m| (m["seq"].as_i64().expect("seq"), m["is_read"] == true))
            .collect();
        let derived: Vec<(i64, bool)> = chat
            .messages
            .iter()
            .map(|(seq, _, _, _, read)| (*seq, *read))
            .rev()
            .collect();
        assert_eq!(derived, server, "read marks of {id}");
    }
}

async fn token(app: &TestApp, user: &User) -> String {
    let reply = app.get_as(user, "/api/sync").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["changes"], json!([]));
    assert_eq!(reply.body["has_more"], false);
    reply.body["next"].as_str().expect("next").to_owned()
}

#[tokio::test]
async fn a_client_that_was_away_catches_up_on_every_kind_of_change() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let team = app.group(&alice, "team", &[&bob, &carol]).await;
    let direct = app.direct(&alice, &bob).await;
    let doomed = app.group(&bob, "doomed", &[&alice]).await;
    let m1 = app.send(&bob, team, "one").await;
    app.send(&bob, team, "two").await;
    app.send(&carol, team, "three").await;
    app.send(&alice, direct, "hi bob").await;
    app.mark_read(&alice, team, Some(json!({"up_to_seq": 2})))
        .await;
    // Carol and dave's own chat, which alice never sees.
    let private = app.direct(&carol, &dave).await;
    app.send(&carol, private, "not for alice").await;

    // Alice's client: a token first, then a full load.
    let since = token(&app, &alice).await;
    let mut client = Client::load(&app, &alice).await;
    assert_eq!(client.chats.len(), 3);

    // While she is away:
    let m4 = app.send(&bob, team, "four").await;
    let m5 = app.send(&bob, team, "five").await;
    app.send(&carol, team, "six").await;
    let edit = app
        .put_as(
            &bob,
            &format!("/api/chats/{team}/messages/{}", m4["id"]),
            json!({"content": "four, edited"}),
        )
        .await;
    assert_eq!(edit.status, 200, "{}", edit.body);
    let edit = app
        .put_as(
            &bob,
            &format!("/api/chats/{team}/messages/{}", m1["id"]),
            json!({"content": "one, edited"}),
        )
        .await;
    assert_eq!(edit.status, 200, "{}", edit.body);
    let gone = app
        .delete_as(&bob, &format!("/api/chats/{team}/messages/{}", m5["id"]))
        .await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    app.mark_read(&carol, team, None).await;
    app.mark_read(&bob, team, Some(json!({"up_to_seq": 4})))
        .await;
    // Her other device reads and writes too.
    app.mark_read(&alice, team, Some(json!({"up_to_seq": 5})))
        .await;
    app.send(&alice, direct, "from my phone").await;
    let added = app
        .post_as(
            &alice,
            &format!("/api/chats/{team}/members"),
            json!({"user_ids": [dave.id]}),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    app.send(&dave, team, "dave here").await;
    let removed = app
        .delete_as(&alice, &format!("/api/chats/{team}/members/{}", carol.id))
        .await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    let renamed = app
        .put_as(
            &alice,
            &format!("/api/chats/{team}"),
            json!({"name": "team two"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    // A new group with her, and a group she is added to later (its history comes with it).
    let fresh = app.group(&carol, "fresh", &[&alice]).await;
    app.send(&carol, fresh, "welcome").await;
    let later = app.group(&carol, "later", &[&dave]).await;
    app.send(&carol, later, "before alice").await;
    app.send(&dave, later, "still before").await;
    let joined = app
        .post_as(
            &carol,
            &format!("/api/chats/{later}/members"),
            json!({"user_ids": [alice.id]}),
        )
        .await;
    assert_eq!(joined.status, 200, "{}", joined.body);
    app.send(&carol, later, "after alice").await;
    // A group she is removed from, and one that is deleted.
    let brief = app.group(&bob, "brief", &[&alice]).await;
    app.send(&bob, brief, "soon gone").await;
    let kicked = app
        .delete_as(&bob, &format!("/api/chats/{brief}/members/{}", alice.id))
        .await;
    assert_eq!(kicked.status, 204, "{}", kicked.body);
    let deleted = app.delete_as(&bob, &format!("/api/chats/{doomed}")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);

    // She comes back: small pages, to cross page boundaries.
    let (pages, next) = client.sync(&app, &alice, &since, 3).await;
    let changes: Vec<&Value> = pages.iter().flatten().collect();
    let kinds: BTreeSet<&str> = changes
        .iter()
        .map(|c| c["type"].as_str().expect("type"))
        .collect();
    for kind in [
        "message.created",
        "message.updated",
        "message.deleted",
        "message.read",
        "chat.created",
        "chat.updated",
        "chat.deleted",
        "member.added",
        "member.removed",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {changes:#?}");
    }
    assert!(
        changes.iter().all(|c| c["chat_id"] != private),
        "changes of chats she is not in stay out of her feed"
    );
    // Per chat, positions come in order, once each.
    let mut last: HashMap<i64, i64> = HashMap::new();
    for change in &changes {
        let chat = change["chat_id"].as_i64().expect("chat_id");
        let pos = change["pos"].as_i64().expect("pos");
        let before = last.insert(chat, pos).unwrap_or(0);
        assert!(pos > before, "positions of chat {chat} go up: {changes:#?}");
    }
    // The removal is the last thing she sees of that chat.
    let of_brief: Vec<&&Value> = changes.iter().filter(|c| c["chat_id"] == brief).collect();
    let end = of_brief.last().expect("changes of the chat she left");
    assert_eq!(end["type"], "member.removed");
    assert_eq!(end["user_id"], alice.id);

    let fresh_load = Client::load(&app, &alice).await;
    assert_eq!(
        client.shown(),
        fresh_load.shown(),
        "synced state = fresh load"
    );
    assert!(client.chats.contains_key(&fresh) && client.chats.contains_key(&later));
    assert!(!client.chats.contains_key(&brief) && !client.chats.contains_key(&doomed));
    assert_eq!(client.chats[&team].name, "team two");
    assert_eq!(
        client.chats[&later].messages.len(),
        3,
        "a joined chat's history is loaded"
    );
    assert_server_agrees(&app, &alice, &client).await;

    // Applying the same pages again changes nothing.
    let before = client.shown();
    for change in pages.iter().flatten() {
        assert!(!client.apply(&app, &alice, change).await, "{change}");
    }
    assert_eq!(client.shown(), before);

    // Nothing new: the feed is empty, and its token stays usable.
    let again = app.get_as(&alice, &format!("/api/sync?since={next}")).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["changes"], json!([]));
    assert_eq!(again.body["has_more"], false);
    let newest = app.send(&bob, team, "after the sync").await;
    let next_page = app.get_as(&alice, &format!("/api/sync?since={next}")).await;
    let changes = next_page.body["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{}", next_page.body);
    assert_eq!(changes[0]["message"]["id"], newest["id"]);
}

#[tokio::test]
async fn live_events_carry_the_position_the_feed_continues_from() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.direct(&alice, &bob).await;
    let since = token(&app, &alice).await;
    let mut socket = app.connect(&alice, None).await;
    let sent = app.send(&bob, chat, "live").await;
    let event = socket.expect("message.created").await;
    assert_eq!(event["message"]["id"], sent["id"]);
    let live_pos = event["pos"].as_i64().expect("live events carry pos");
    app.mark_read(&alice, chat, None).await;
    let read = socket.expect("message.read").await;
    assert_eq!(read["pos"], live_pos + 1, "positions have no gaps");

    // The feed has the same changes at the same positions.
    let page = app
        .get_as(&alice, &format!("/api/sync?since={since}"))
        .await;
    let changes = page.body["changes"].as_array().expect("changes");
    let positions: Vec<(&str, i64)> = changes
        .iter()
        .map(|c| {
            (
                c["type"].as_str().expect("type"),
                c["pos"].as_i64().expect("pos"),
            )
        })
        .collect();
    assert_eq!(
        positions,
        vec![
            ("message.created", live_pos),
            ("message.read", live_pos + 1)
        ]
    );
    // The feed shows the message as it is now: read since the live event went out.
    assert_eq!(changes[0]["message"]["id"], event["message"]["id"]);
    assert_eq!(changes[0]["message"]["content"], "live");
    assert_eq!(event["message"]["is_read"], false);
    assert_eq!(changes[0]["message"]["is_read"], true);
}

#[tokio::test]
async fn bad_tokens_and_limits_are_refused() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    for query in [
        "since=not-a-token",
        "since=MS4yLjM",
        "limit=0",
        "limit=-3",
        "limit=x",
    ] {
        let reply = app.get_as(&alice, &format!("/api/sync?{query}")).await;
        assert!(
            reply.status == 422 || reply.status == 400,
            "{query}: {} {}",
            reply.status,
            reply.body
        );
    }
    let anonymous = app.get("/api/sync").await;
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn a_token_older_than_the_retention_is_gone() {
    let app = TestApp::spawn_with(&[("SYNC_RETENTION_SECS", "1")]).await;
    let alice = app.user("alice").await;
    let since = token(&app, &alice).await;
    let fresh = app
        .get_as(&alice, &format!("/api/sync?since={since}"))
        .await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let old = app
        .get_as(&alice, &format!("/api/sync?since={since}"))
        .await;
    old.assert_problem(410, "sync_expired");
}

/// The changes logged for `chat`.
async fn logged(app: &TestApp, chat: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM changes WHERE chat_id = $1")
        .bind(chat)
        .fetch_one(&app.db.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn the_gateway_purges_changes_past_the_retention() {
    let app = TestApp::spawn_with(&[("SYNC_PURGE_INTERVAL_SECS", "1")]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let old = app.direct(&alice, &bob).await;
    let recent = app.group(&alice, "recent", &[&bob]).await;
    for chat in [old, recent] {
        app.send(&alice, chat, "hello").await;
    }
    assert_eq!(
        logged(&app, old).await,
        2,
        "chat.created and message.created"
    );
    // The direct chat's changes are past the 30 days' retention (and its margin).
    sqlx::query("UPDATE changes SET created_at = now() - interval '31 days' WHERE chat_id = $1")
        .bind(old)
        .execute(&app.db.pool)
        .await
        .expect("age the changes");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while logged(&app, old).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the purge did not run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(logged(&app, recent).await, 2, "recent changes stay");
    // The chat itself and its messages are untouched.
    assert_eq!(app.messages(&alice, old, "").await.len(), 1);
}

/// The changes of one feed call from `since`: `(chat, pos, content of the message)`.
async fn feed_from(
    app: &TestApp,
    user: &User,
    since: &str,
    limit: u32,
) -> (Vec<(i64, i64, String)>, String) {
    let page = app
        .get_as(user, &format!("/api/sync?since={since}&limit={limit}"))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let changes = page.body["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["chat_id"].as_i64().expect("chat_id"),
                c["pos"].as_i64().expect("pos"),
                c["message"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    (
        changes,
        page.body["next"].as_str().expect("next").to_owned(),
    )
}

/// A transaction that has taken its id, as one does with its first write.
async fn transaction_with_an_id(app: &TestApp) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = app.db.pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *tx)
        .await
        .expect("take a transaction id");
    tx
}

#[tokio::test]
async fn a_change_that_commits_late_is_not_passed_over() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let with_bob = app.direct(&alice, &bob).await;
    let with_carol = app.direct(&alice, &carol).await;
    let hello = app.send(&carol, with_carol, "hello").await;
    let hello = hello["id"].as_i64().expect("id");
    let since = token(&app, &alice).await;

    // A transaction starts first and writes last: carol's edit, held open.
    let mut late = transaction_with_an_id(&app).await;
    app.send(&bob, with_bob, "early").await;
    let (seen, next) = feed_from(&app, &alice, &since, 100).await;
    assert_eq!(seen, vec![(with_bob, 2, "early".to_owned())]);
    blockchat::db::messages::edit(&mut *late, hello, "late")
        .await
        .expect("edit")
        .expect("the message is live");
    late.commit().await.expect("commit");

    // The reader went past bob's change, which was written after carol's transaction began;
    // carol's change still comes, once.
    let (seen, next) = feed_from(&app, &alice, &next, 100).await;
    assert_eq!(seen, vec![(with_carol, 3, "late".to_owned())]);
    let (seen, _) = feed_from(&app, &alice, &next, 100).await;
    assert_eq!(seen, vec![], "nothing twice");
}

#[tokio::test]
async fn a_chats_changes_come_in_position_order_even_when_transactions_cross() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.direct(&alice, &bob).await;
    let hello = app.send(&alice, chat, "hello").await;
    let hello = hello["id"].as_i64().expect("id");
    let since = token(&app, &alice).await;

    // The older transaction takes the chat's lock after the younger one: its change has the
    // higher position but the smaller transaction id.
    let mut older = transaction_with_an_id(&app).await;
    app.send(&bob, chat, "first").await;
    blockchat::db::messages::edit(&mut *older, hello, "second")
        .await
        .expect("edit")
        .expect("the message is live");
    older.commit().await.expect("commit");

    // One change a page: the page still holds both, in position order, and the next has none.
    let (seen, next) = feed_from(&app, &alice, &since, 1).await;
    assert_eq!(
        seen,
        vec![
            (chat, 3, "first".to_owned()),
            (chat, 4, "second".to_owned())
        ]
    );
    let (seen, _) = feed_from(&app, &alice, &next, 1).await;
    assert_eq!(seen, vec![], "nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_while_a_send_waits_for_the_chat_does_not_get_the_message() {
    use blockchat::db::changes::{Fields, Kind};

    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let chat = app.group(&alice, "team", &[&bob, &carol]).await;
    let mut carol_socket = app.connect(&carol, None).await;
    let mut bob_socket = app.connect(&bob, None).await;
    carol_socket.expect_status(&bob, "online").await;

    // Carol's removal holds the chat's lock while bob's send starts and waits for it.
    let mut removal = app.db.pool.begin().await.expect("begin");
    blockchat::db::chats::lock(&mut *removal, chat)
        .await
        .expect("lock");
    blockchat::db::members::remove(&mut *removal, chat, carol.id)
        .await
        .expect("remove");
    let fields = Fields {
        user_id: Some(carol.id),
        audience: &[carol.id],
        ..Fields::default()
    };
    blockchat::db::changes::record(&mut *removal, chat, Kind::MemberRemoved, fields)
        .await
        .expect("record")
        .expect("the chat");
    let send = app.send(&bob, chat, "after carol left");
    let release = async {
        app.db.until_waiting_for_locks(1).await;
        removal.commit().await.expect("commit");
    };
    let (sent, ()) = tokio::join!(send, release);

    // Bob hears of his message; carol, no longer a member, does not.
    let event = bob_socket.expect("message.created").await;
    assert_eq!(event["message"]["id"], sent["id"]);
    assert_eq!(event["pos"], 3, "after the removal at 2");
    carol_socket.expect_quiet().await;
}
