//! Sending, paging, editing and deleting messages, and read tracking, as a client sees them.

use std::collections::BTreeSet;

use crate::client::{User, assert_utc_timestamp, seqs};
use crate::common::TestApp;
use blockchat::db;
use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

fn id(value: &Value) -> i64 {
    value["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("an id in {value}"))
}

async fn stored_seqs(app: &TestApp, chat: i64) -> Vec<i64> {
    sqlx::query_scalar("SELECT seq FROM messages WHERE chat_id = $1 ORDER BY seq")
        .bind(chat)
        .fetch_all(&app.db.pool)
        .await
        .expect("stored seqs")
}

async fn stored_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&app.db.pool)
        .await
        .expect("count messages")
}

#[tokio::test]
async fn sent_messages_are_numbered_1_2_3_in_each_chat() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;

    let reply = app
        .post_as(
            &alice,
            &format!("/api/chats/{chat}/messages"),
            json!({"content": "hello"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let message = &reply.body;
    assert!(message["id"].is_i64());
    assert_eq!(message["chat_id"], chat);
    assert_eq!(message["user_id"], alice.id);
    assert_eq!(message["seq"], 1);
    assert_eq!(message["content"], "hello");
    assert!(message["client_id"].is_null());
    assert_utc_timestamp(&message["created_at"]);
    assert_utc_timestamp(&message["updated_at"]);
    assert!(message["edited_at"].is_null());
    assert_eq!(message["deleted"], false);
    assert_eq!(message["is_read"], false, "bob has not read it yet");
    assert_eq!(
        message["user"],
        json!({"id": alice.id, "username": "alice"})
    );

    assert_eq!(app.send(&bob, chat, "hi").await["seq"], 2);
    assert_eq!(app.send(&alice, chat, "how are you?").await["seq"], 3);
    let other = app.direct(&alice, &bob).await;
    assert_eq!(
        app.send(&bob, other, "elsewhere").await["seq"],
        1,
        "each chat counts from 1"
    );
    assert_eq!(app.send(&alice, chat, "back here").await["seq"], 4);
    assert_eq!(stored_seqs(&app, chat).await, [1, 2, 3, 4]);
}

#[tokio::test]
async fn content_is_1_to_4000_characters() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let path = format!("/api/chats/{chat}/messages");

    for content in [
        json!(""),
        json!("  \n\t "),
        json!("a".repeat(4001)),
        json!("é".repeat(4001)),
    ] {
        let reply = app
            .post_as(&alice, &path, json!({"content": content}))
            .await;
        reply.assert_problem(422, "validation_failed");
        assert_eq!(
            reply.body["errors"][0]["field"], "content",
            "{}",
            reply.body
        );
    }
    app.post_as(&alice, &path, json!({}))
        .await
        .assert_problem(422, "validation_failed");
    app.post_as(&alice, &path, json!({"content": 42}))
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(stored_count(&app).await, 0, "nothing refused was stored");

    let one = app.send(&alice, chat, "x").await;
    assert_eq!(one["seq"], 1, "refused sends use up no seq");
    // Characters, not bytes: 4,000 two-byte characters fit.
    let longest = "é".repeat(4000);
    let reply = app
        .post_as(&alice, &path, json!({"content": longest}))
        .await;
    assert_eq!(
        reply.status, 201,
        "exactly 4,000 characters is allowed: {}",
        reply.body["detail"]
    );
    assert_eq!(reply.body["content"], longest.as_str());
    let listed = app.messages(&bob, chat, "?limit=1").await;
    assert_eq!(listed[0]["content"], longest.as_str());
}

#[tokio::test]
async fn a_client_id_makes_a_send_idempotent() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let other_chat = app.direct(&alice, &bob).await;
    let path = format!("/api/chats/{chat}/messages");

    let first = app
        .post_as(
            &alice,
            &path,
            json!({"content": "once", "client_id": "c-1"}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["client_id"], "c-1");
    let retry = app
        .post_as(
            &alice,
            &path,
            json!({"content": "once", "client_id": "c-1"}),
        )
        .await;
    assert_eq!(retry.status, 200, "a retry answers 200: {}", retry.body);
    assert_eq!(retry.body["id"], first.body["id"]);
    assert_eq!(retry.body["seq"], 1);
    let changed = app
        .post_as(
            &alice,
            &path,
            json!({"content": "twice?", "client_id": "c-1"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(
        changed.body["content"], "once",
        "the first message is returned"
    );
    assert_eq!(stored_count(&app).await, 1, "a retry stores nothing new");
    assert_eq!(app.messages(&bob, chat, "").await.len(), 1);

    // The key belongs to one sender in one chat.
    let bobs = app
        .post_as(&bob, &path, json!({"content": "mine", "client_id": "c-1"}))
        .await;
    assert_eq!(
        bobs.status, 201,
        "another sender's c-1 is a new message: {}",
        bobs.body
    );
    assert_eq!(bobs.body["seq"], 2);
    let elsewhere = app
        .post_as(
            &alice,
            &format!("/api/chats/{other_chat}/messages"),
            json!({"content": "once", "client_id": "c-1"}),
        )
        .await;
    assert_eq!(
        elsewhere.status, 201,
        "the same key in another chat is new: {}",
        elsewhere.body
    );
    let next = app
        .post_as(
            &alice,
            &path,
            json!({"content": "next", "client_id": "c-2"}),
        )
        .await;
    assert_eq!(next.status, 201);
    assert_eq!(next.body["seq"], 3, "the retries used up no seq");

    app.post_as(
        &alice,
        &path,
        json!({"content": "x", "client_id": "k".repeat(65)}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.post_as(&alice, &path, json!({"content": "x", "client_id": ""}))
        .await
        .assert_problem(422, "validation_failed");
    let longest_key = app
        .post_as(
            &alice,
            &path,
            json!({"content": "x", "client_id": "k".repeat(64)}),
        )
        .await;
    assert_eq!(
        longest_key.status, 201,
        "64 characters is a client_id: {}",
        longest_key.body
    );
    assert_eq!(stored_count(&app).await, 5);
}

/// Gateway connections enough for every request of a race to hold one at once.
const RACE_SETTINGS: &[(&str, &str)] = &[("DB_MAX_CONNECTIONS", "16")];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_one_send_store_exactly_one_message() {
    let app = TestApp::spawn_with(RACE_SETTINGS).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let path = format!("/api/chats/{chat}/messages");

    // The test holds the chat row that every insert must update. Each retry looks for its
    // client_id, finds nothing, and waits at the insert; released together, one stores the
    // message and the nine others lose to the unique constraint, every run.
    let mut gate = app.db.pool.begin().await.expect("begin");
    db::chats::lock(&mut *gate, chat).await.expect("lock");
    let retries = (0..10).map(|_| {
        app.post_as(
            &alice,
            &path,
            json!({"content": "flaky network", "client_id": "retry-me"}),
        )
    });
    let release = async {
        app.db.until_waiting_for_locks(10).await;
        gate.commit().await.expect("commit");
    };
    let (replies, ()) = tokio::join!(join_all(retries), release);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "one stores it: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        9,
        "nine find it: {statuses:?}"
    );
    let first = &replies[0].body;
    for reply in &replies {
        assert_eq!(reply.body["id"], first["id"], "{}", reply.body);
        assert_eq!(reply.body["seq"], 1, "{}", reply.body);
        assert_eq!(reply.body["content"], "flaky network");
    }
    assert_eq!(stored_count(&app).await, 1);
    assert_eq!(stored_seqs(&app, chat).await, [1]);
    assert_eq!(
        app.send(&bob, chat, "next").await["seq"],
        2,
        "the losing retries left no gap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_sends_from_eight_clients_get_seq_1_to_200() {
    let app = TestApp::spawn_with(RACE_SETTINGS).await;
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(app.user(&format!("sender{i}")).await);
    }
    let others: Vec<&User> = users[1..].iter().collect();
    let chat = app.group(&users[0], "busy", &others).await;
    let path = format!("/api/chats/{chat}/messages");

    // Every send in flight at once: 8 users, 25 each.
    let sends = users.iter().flat_map(|user| {
        let path = &path;
        let app = &app;
        (0..25).map(move |n| async move {
            let content = format!("{} #{n}", user.username);
            (
                content.clone(),
                app.post_as(user, path, json!({"content": content})).await,
            )
        })
    });
    let replies = join_all(sends).await;
    let mut sent = BTreeSet::new();
    let mut answered_seqs = Vec::new();
    for (content, reply) in &replies {
        assert_eq!(reply.status, 201, "{content}: {}", reply.body);
        assert_eq!(reply.body["content"], content.as_str());
        answered_seqs.push(reply.body["seq"].as_i64().expect("seq"));
        sent.insert(content.clone());
    }
    answered_seqs.sort_unstable();
    let expected: Vec<i64> = (1..=200).collect();
    assert_eq!(answered_seqs, expected, "the answers hold 1..200 once each");

    // Catching up through the API, oldest first, a page at a time.
    let mut listed = Vec::new();
    let mut after = 0;
    loop {
        let page = app
            .messages(&users[3], chat, &format!("?after_seq={after}&limit=100"))
            .await;
        let Some(last) = page.last() else { break };
        after = last["seq"].as_i64().expect("seq");
        listed.extend(page);
        assert!(listed.len() <= 200, "more messages than were sent");
    }
    assert_eq!(seqs(&listed), expected, "no gap, no duplicate, in order");
    let contents: BTreeSet<String> = listed
        .iter()
        .map(|m| m["content"].as_str().expect("content").to_owned())
        .collect();
    assert_eq!(contents, sent, "every message was stored once");
    let message_ids: BTreeSet<i64> = listed.iter().map(id).collect();
    assert_eq!(message_ids.len(), 200);

    assert_eq!(
        stored_seqs(&app, chat).await,
        expected,
        "the database agrees"
    );
    let chat_view = app.chat_as(&users[0], chat).await;
    assert_eq!(chat_view["last_message"]["seq"], 200);
}

#[tokio::test]
async fn messages_list_newest_first_and_page_with_before_seq_after_seq_and_skip() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    for n in 1..=7 {
        app.send(
            if n % 2 == 0 { &bob } else { &alice },
            chat,
            &format!("message {n}"),
        )
        .await;
    }

    let all = app.messages(&bob, chat, "").await;
    assert_eq!(seqs(&all), [7, 6, 5, 4, 3, 2, 1], "newest first by default");
    assert_eq!(all[0]["content"], "message 7");
    assert_eq!(all[0]["user"]["username"], "alice");
    assert_eq!(seqs(&app.messages(&bob, chat, "?limit=3").await), [7, 6, 5]);
    assert_eq!(
        seqs(&app.messages(&bob, chat, "?limit=3&before_seq=5").await),
        [4, 3, 2]
    );
    assert_eq!(seqs(&app.messages(&bob, chat, "?before_seq=2").await), [1]);
    assert!(app.messages(&bob, chat, "?before_seq=1").await.is_empty());
    assert_eq!(
        seqs(&app.messages(&bob, chat, "?after_seq=2&limit=3").await),
        [3, 4, 5],
        "oldest first after a seq"
    );
    assert_eq!(
        seqs(&app.messages(&bob, chat, "?after_seq=0").await),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert!(app.messages(&bob, chat, "?after_seq=7").await.is_empty());
    assert_eq!(
        seqs(&app.messages(&bob, chat, "?skip=2&limit=2").await),
        [5, 4],
        "the seed's skip still works"
    );
    assert_eq!(
        seqs(&app.messages(&bob, chat, "?limit=1000").await).len(),
        7,
        "a large limit is capped, not refused"
    );

    let path = format!("/api/chats/{chat}/messages");
    for query in ["?limit=0", "?limit=abc", "?before_seq=x", "?skip=-1"] {
        app.get_as(&bob, &format!("{path}{query}"))
            .await
            .assert_problem(422, "validation_failed");
    }
}

#[tokio::test]
async fn a_list_is_capped_at_100_messages() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "busy", &[&bob]).await;
    let path = format!("/api/chats/{chat}/messages");
    let sends = (0..120).map(|n| app.post_as(&alice, &path, json!({"content": format!("n{n}")})));
    for reply in join_all(sends).await {
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    assert_eq!(
        app.messages(&alice, chat, "").await.len(),
        50,
        "50 by default"
    );
    let capped = app.messages(&alice, chat, "?limit=500").await;
    assert_eq!(capped.len(), 100, "at most 100");
    assert_eq!(capped[0]["seq"], 120);
}

#[tokio::test]
async fn authors_edit_their_own_messages() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let mine = app.send(&bob, chat, "teh typo").await;
    let other = app.send(&alice, chat, "alice's").await;
    let path = format!("/api/chats/{chat}/messages/{}", id(&mine));

    let edited = app
        .put_as(&bob, &path, json!({"content": "the typo"}))
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(edited.body["id"], mine["id"]);
    assert_eq!(edited.body["seq"], 1, "an edit keeps its place");
    assert_eq!(edited.body["content"], "the typo");
    assert_utc_timestamp(&edited.body["edited_at"]);
    assert_ne!(edited.body["updated_at"], mine["updated_at"]);
    assert_eq!(edited.body["created_at"], mine["created_at"]);
    let listed = app.messages(&alice, chat, "?after_seq=0").await;
    assert_eq!(listed[0]["content"], "the typo");
    assert!(listed[0]["edited_at"].is_string());
    assert!(
        listed[1]["edited_at"].is_null(),
        "other messages are not marked edited"
    );

    app.put_as(&alice, &path, json!({"content": "admin rewrite"}))
        .await
        .assert_problem(403, "not_author");
    app.put_as(
        &bob,
        &format!("/api/chats/{chat}/messages/{}", id(&other)),
        json!({"content": "x"}),
    )
    .await
    .assert_problem(403, "not_author");
    for content in [json!(""), json!("   "), json!("a".repeat(4001))] {
        app.put_as(&bob, &path, json!({"content": content}))
            .await
            .assert_problem(422, "validation_failed");
    }
    assert_eq!(
        app.messages(&alice, chat, "?after_seq=0").await[0]["content"],
        "the typo"
    );

    app.put_as(
        &bob,
        &format!("/api/chats/{chat}/messages/987654321"),
        json!({"content": "x"}),
    )
    .await
    .assert_problem(404, "not_found");
    // A message is reached through its own chat only.
    let elsewhere = app.group(&bob, "elsewhere", &[&alice]).await;
    app.put_as(
        &bob,
        &format!("/api/chats/{elsewhere}/messages/{}", id(&mine)),
        json!({"content": "x"}),
    )
    .await
    .assert_problem(404, "not_found");

    let deleted = app.delete_as(&bob, &path).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let reply = app
        .put_as(&bob, &path, json!({"content": "back from the dead"}))
        .await;
    reply.assert_problem(409, "message_deleted");
    let tomb = app.messages(&alice, chat, "?after_seq=0").await;
    assert_eq!(tomb[0]["content"], "");
    assert_eq!(tomb[0]["deleted"], true);
}

#[tokio::test]
async fn authors_and_group_admins_delete_messages_leaving_tombstones() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let chat = app.group(&alice, "team", &[&bob, &carol]).await;
    let from_alice = app.send(&alice, chat, "admin's words").await;
    let from_bob = app.send(&bob, chat, "bob's words").await;
    let from_carol = app.send(&carol, chat, "carol's words").await;
    let path = |m: &Value| format!("/api/chats/{chat}/messages/{}", id(m));

    app.delete_as(&bob, &path(&from_alice))
        .await
        .assert_problem(403, "not_author");
    app.delete_as(&bob, &path(&from_carol))
        .await
        .assert_problem(403, "not_author");
    let own = app.delete_as(&bob, &path(&from_bob)).await;
    assert_eq!(own.status, 204, "the author deletes: {}", own.body);
    let by_admin = app.delete_as(&alice, &path(&from_carol)).await;
    assert_eq!(
        by_admin.status, 204,
        "a group admin deletes anyone's: {}",
        by_admin.body
    );

    let listed = app.messages(&carol, chat, "?after_seq=0").await;
    assert_eq!(seqs(&listed), [1, 2, 3], "tombstones keep their place");
    assert_eq!(listed[0]["content"], "admin's words");
    assert_eq!(listed[0]["deleted"], false);
    for tomb in &listed[1..] {
        assert_eq!(tomb["deleted"], true, "{tomb}");
        assert_eq!(tomb["content"], "", "a tombstone has no content: {tomb}");
        assert!(tomb["id"].is_i64() && tomb["user_id"].is_i64(), "{tomb}");
    }
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT content FROM messages WHERE chat_id = $1 ORDER BY seq")
            .bind(chat)
            .fetch_all(&app.db.pool)
            .await
            .expect("contents");
    assert_eq!(
        stored,
        ["admin's words", "", ""],
        "the deleted text is gone from the database too"
    );
    assert_eq!(app.send(&alice, chat, "after").await["seq"], 4);

    // In a direct chat there are no admins: only the author deletes.
    let direct = app.direct(&alice, &bob).await;
    let bobs = app.send(&bob, direct, "in private").await;
    app.delete_as(
        &alice,
        &format!("/api/chats/{direct}/messages/{}", id(&bobs)),
    )
    .await
    .assert_problem(403, "not_author");
    app.delete_as(&alice, &format!("/api/chats/{chat}/messages/987654321"))
        .await
        .assert_problem(404, "not_found");
}

#[tokio::test]
async fn read_cursors_move_forward_only_and_drive_unread_counts() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    for n in 1..=5 {
        app.send(&alice, chat, &format!("m{n}")).await;
    }
    assert_eq!(app.chat_as(&bob, chat).await["unread_count"], 5);
    assert_eq!(
        app.chat_as(&alice, chat).await["unread_count"],
        0,
        "one's own messages are not unread"
    );

    let reply = app
        .mark_read(&bob, chat, Some(json!({"up_to_seq": 2})))
        .await;
    assert_eq!(
        reply,
        json!({"chat_id": chat, "last_read_seq": 2, "unread_count": 3})
    );
    assert_eq!(app.chat_as(&bob, chat).await["unread_count"], 3);

    let back = app
        .mark_read(&bob, chat, Some(json!({"up_to_seq": 1})))
        .await;
    assert_eq!(back["last_read_seq"], 2, "the cursor never moves back");
    assert_eq!(back["unread_count"], 3);
    assert_eq!(app.chat_as(&bob, chat).await["unread_count"], 3);

    let all = app.mark_read(&bob, chat, None).await;
    assert_eq!(
        all,
        json!({"chat_id": chat, "last_read_seq": 5, "unread_count": 0}),
        "no body reads everything"
    );
    assert_eq!(app.chat_as(&bob, chat).await["unread_count"], 0);

    app.send(&alice, chat, "m6").await;
    app.send(&alice, chat, "m7").await;
    assert_eq!(app.chat_as(&bob, chat).await["unread_count"], 2);
    let empty_object = app.mark_read(&bob, chat, Some(json!({}))).await;
    assert_eq!(
        empty_object["last_read_seq"], 7,
        "{{}} reads everything too"
    );
    assert_eq!(empty_object["unread_count"], 0);

    // Reading past the newest message reads what there is, and no more.
    let past = app
        .mark_read(&bob, chat, Some(json!({"up_to_seq": 99})))
        .await;
    assert_eq!(past["unread_count"], 0);
    assert!(past["last_read_seq"].as_i64().expect("seq") <= 7, "{past}");
    app.send(&alice, chat, "m8").await;
    assert_eq!(
        app.chat_as(&bob, chat).await["unread_count"],
        1,
        "a later message is unread"
    );

    let path = format!("/api/chats/{chat}/messages/read");
    app.put_as(&bob, &path, json!({"up_to_seq": -1}))
        .await
        .assert_problem(422, "validation_failed");
    app.put_as(&bob, &path, json!({"up_to_seq": "two"}))
        .await
        .assert_problem(422, "validation_failed");
}

#[tokio::test]
async fn read_status_lists_who_has_and_has_not_read_a_message() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let chat = app.group(&alice, "team", &[&bob, &carol]).await;
    let first = app.send(&alice, chat, "one").await;
    let second = app.send(&alice, chat, "two").await;
    let status_of = |m: &Value| format!("/api/chats/{chat}/messages/{}/read-status", id(m));

    let unread = app.get_as(&alice, &status_of(&first)).await;
    assert_eq!(unread.status, 200, "{}", unread.body);
    assert_eq!(unread.body["message_id"], first["id"]);
    assert_eq!(unread.body["is_read"], false);
    assert_eq!(
        unread.body["read_by"],
        json!([]),
        "the author is not listed"
    );
    let mut waiting: Vec<i64> = unread.body["unread_by"]
        .as_array()
        .expect("unread_by")
        .iter()
        .map(|u| u.as_i64().expect("id"))
        .collect();
    waiting.sort_unstable();
    assert_eq!(waiting, [bob.id, carol.id]);

    app.mark_read(&bob, chat, Some(json!({"up_to_seq": 1})))
        .await;
    let half = app.get_as(&carol, &status_of(&first)).await;
    assert_eq!(half.status, 200, "any member may ask: {}", half.body);
    assert_eq!(half.body["is_read"], false);
    let read_by = half.body["read_by"].as_array().expect("read_by");
    assert_eq!(read_by.len(), 1);
    assert_eq!(read_by[0]["user_id"], bob.id);
    assert_utc_timestamp(&read_by[0]["read_at"]);
    assert_eq!(half.body["unread_by"], json!([carol.id]));
    let second_status = app.get_as(&alice, &status_of(&second)).await;
    assert_eq!(second_status.body["read_by"], json!([]));

    app.mark_read(&carol, chat, None).await;
    let done = app.get_as(&alice, &status_of(&first)).await;
    assert_eq!(done.body["is_read"], true);
    assert_eq!(done.body["unread_by"], json!([]));
    assert_eq!(done.body["read_by"].as_array().expect("read_by").len(), 2);
    let second_status = app.get_as(&alice, &status_of(&second)).await;
    assert_eq!(second_status.body["unread_by"], json!([bob.id]));
    assert_eq!(second_status.body["read_by"][0]["user_id"], carol.id);

    app.get_as(
        &alice,
        &format!("/api/chats/{chat}/messages/987654321/read-status"),
    )
    .await
    .assert_problem(404, "not_found");
}

#[tokio::test]
async fn is_read_turns_true_once_every_other_member_has_read_a_message() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let chat = app.group(&alice, "team", &[&bob, &carol]).await;
    app.send(&alice, chat, "one").await;
    app.send(&bob, chat, "two").await;
    let is_read = |list: &[Value]| -> Vec<bool> {
        list.iter()
            .map(|m| m["is_read"].as_bool().expect("is_read"))
            .collect()
    };

    // Oldest first: [alice's 1, bob's 2]. Bob's send moved his cursor to 2.
    assert_eq!(
        is_read(&app.messages(&alice, chat, "?after_seq=0").await),
        [false, false]
    );
    app.mark_read(&carol, chat, Some(json!({"up_to_seq": 1})))
        .await;
    assert_eq!(
        is_read(&app.messages(&carol, chat, "?after_seq=0").await),
        [true, false],
        "bob and carol have read alice's; alice and carol have not both read bob's"
    );
    app.mark_read(&alice, chat, None).await;
    assert_eq!(
        is_read(&app.messages(&alice, chat, "?after_seq=0").await),
        [true, false],
        "carol has not read 2"
    );
    assert_eq!(
        app.chat_as(&bob, chat).await["last_message"]["is_read"],
        false
    );
    app.mark_read(&carol, chat, None).await;
    assert_eq!(
        is_read(&app.messages(&bob, chat, "?after_seq=0").await),
        [true, true]
    );
    assert_eq!(
        app.chat_as(&bob, chat).await["last_message"]["is_read"],
        true
    );

    // In a direct chat, the other one reading it is enough.
    let direct = app.direct(&alice, &bob).await;
    let sent = app.send(&alice, direct, "psst").await;
    assert_eq!(sent["is_read"], false);
    app.mark_read(&bob, direct, None).await;
    assert_eq!(app.messages(&alice, direct, "").await[0]["is_read"], true);
}

#[tokio::test]
async fn a_message_from_a_non_member_or_without_a_token_is_refused() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let eve = app.user("eve").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let path = format!("/api/chats/{chat}/messages");
    app.post_as(&eve, &path, json!({"content": "let me in"}))
        .await
        .assert_problem(404, "not_found");
    app.call(Method::POST, &path, None, Some(json!({"content": "anon"})))
        .await
        .assert_problem(401, "missing_token");
    app.post_as(
        &alice,
        "/api/chats/987654321/messages",
        json!({"content": "void"}),
    )
    .await
    .assert_problem(404, "not_found");
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn a_former_member_cannot_send_even_as_a_retry() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let path = format!("/api/chats/{chat}/messages");
    let first = app
        .post_as(
            &bob,
            &path,
            json!({"content": "before", "client_id": "k-1"}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let removed = app
        .delete_as(&alice, &format!("/api/chats/{chat}/members/{}", bob.id))
        .await;
    assert_eq!(removed.status, 204, "{}", removed.body);

    app.post_as(&bob, &path, json!({"content": "after"}))
        .await
        .assert_problem(404, "not_found");
    // The chat is not the caller's any more, so it does not exist for them: a retry of an
    // earlier send is no exception.
    app.post_as(
        &bob,
        &path,
        json!({"content": "before", "client_id": "k-1"}),
    )
    .await
    .assert_problem(404, "not_found");
    assert_eq!(stored_count(&app).await, 1);
}

#[tokio::test]
async fn before_seq_with_after_seq_lists_the_messages_between_them_oldest_first() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    for n in 1..=7 {
        app.send(&alice, chat, &format!("message {n}")).await;
    }
    // A deleted message keeps its place: the window still counts it.
    let path = format!("/api/chats/{chat}/messages");
    let third = app.messages(&bob, chat, "?after_seq=2&limit=1").await;
    let reply = app
        .delete_as(&alice, &format!("{path}/{}", third[0]["id"]))
        .await;
    assert_eq!(reply.status, 204, "{}", reply.body);

    let between = app.messages(&bob, chat, "?after_seq=1&before_seq=6").await;
    assert_eq!(seqs(&between), [2, 3, 4, 5]);
    assert_eq!(between[1]["deleted"], true);
    assert_eq!(
        seqs(
            &app.messages(&bob, chat, "?before_seq=6&after_seq=1&limit=2")
                .await
        ),
        [2, 3]
    );
    assert_eq!(
        seqs(
            &app.messages(&bob, chat, "?after_seq=1&before_seq=6&skip=3")
                .await
        ),
        [5]
    );
    for empty in [
        "?after_seq=3&before_seq=4",
        "?after_seq=5&before_seq=2",
        "?after_seq=1&before_seq=6&skip=4",
    ] {
        assert!(app.messages(&bob, chat, empty).await.is_empty(), "{empty}");
    }
    assert_eq!(
        seqs(
            &app.messages(&bob, chat, "?after_seq=5&before_seq=1000")
                .await
        ),
        [6, 7]
    );
}

#[tokio::test]
async fn integral_numbers_are_integers_in_bodies_and_query_strings() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    for n in 1..=4 {
        app.send(&alice, chat, &format!("message {n}")).await;
    }

    let cursor = app
        .mark_read(&bob, chat, Some(json!({"up_to_seq": 2.0})))
        .await;
    assert_eq!(cursor["last_read_seq"], 2);
    assert_eq!(cursor["unread_count"], 2);
    let read = format!("/api/chats/{chat}/messages/read");
    for bad in [json!({"up_to_seq": 3.5}), json!({"up_to_seq": "3"})] {
        app.put_as(&bob, &read, bad)
            .await
            .assert_problem(422, "validation_failed");
    }
    assert_eq!(
        app.chat_as(&bob, chat).await["last_read_seq"],
        2,
        "a refused mark changes nothing"
    );

    assert_eq!(
        seqs(&app.messages(&bob, chat, "?limit=2.0&before_seq=4.0").await),
        [3, 2]
    );
    assert_eq!(
        seqs(&app.messages(&bob, chat, "?after_seq=1.00&skip=1.0").await),
        [3, 4]
    );
    let path = format!("/api/chats/{chat}/messages");
    for query in ["?limit=2.5", "?after_seq=1e", "?skip=0.1"] {
        app.get_as(&bob, &format!("{path}{query}"))
            .await
            .assert_problem(422, "validation_failed");
    }

    let carol = app.user("carol").await;
    let added = app
        .post_as(
            &alice,
            &format!("/api/chats/{chat}/members"),
            json!({"user_ids": [carol.id as f64]}),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.body["member_count"], 3);
}
