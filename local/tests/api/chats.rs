//! Direct chats, groups and their members, as a client sees them. Who may call which route is
//! in `permissions`.

use crate::client::{User, assert_utc_timestamp, ids};
use crate::common::TestApp;
use blockchat::db;
use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

fn usernames(chat: &Value) -> Vec<&str> {
    chat["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["username"].as_str().expect("username"))
        .collect()
}

async fn chat_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM chats")
        .fetch_one(&app.db.pool)
        .await
        .expect("count chats")
}

#[tokio::test]
async fn a_new_group_shows_its_members_and_its_creator_is_admin() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;

    let reply = app
        .post_as(
            &alice,
            "/api/chats",
            json!({"name": "team", "is_group_chat": true, "user_ids": [bob.id, carol.id]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let chat = &reply.body;
    assert!(chat["id"].is_i64());
    assert_eq!(chat["name"], "team");
    assert_eq!(chat["is_group_chat"], true);
    assert_eq!(chat["created_by"], alice.id);
    assert_utc_timestamp(&chat["created_at"]);
    assert_utc_timestamp(&chat["updated_at"]);
    assert_eq!(usernames(chat), ["alice", "bob", "carol"]);
    for user in chat["users"].as_array().expect("users") {
        assert!(user["id"].is_i64(), "{user}");
        assert!(
            user.get("email").is_none(),
            "members' email stays private: {user}"
        );
        assert!(user.get("password_hash").is_none(), "{user}");
    }
    assert_eq!(chat["unread_count"], 0);
    assert!(chat["last_message"].is_null());
    assert_eq!(chat["role"], "admin", "the creator is admin");

    let id = chat["id"].as_i64().expect("id");
    let as_bob = app.chat_as(&bob, id).await;
    assert_eq!(as_bob["role"], "member");
    assert_eq!(as_bob["name"], "team");
    assert_eq!(usernames(&as_bob), ["alice", "bob", "carol"]);
}

#[tokio::test]
async fn chats_are_listed_most_recent_activity_first_with_unread_counts_and_last_messages() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let first = app.group(&alice, "first", &[&bob]).await;
    let direct = app.direct(&alice, &carol).await;
    let last = app.group(&bob, "last", &[&alice]).await;
    let _not_alices = app.group(&bob, "bob and dave", &[&dave]).await;

    let list = app.get_as(&alice, "/api/chats").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(ids(&list.body), [last, direct, first], "newest chat first");

    app.send(&bob, first, "news in the first chat").await;
    app.send(&bob, first, "more news").await;
    let list = app.get_as(&alice, "/api/chats").await;
    assert_eq!(
        ids(&list.body),
        [first, last, direct],
        "a message moves its chat to the top"
    );
    let top = &list.body[0];
    assert_eq!(top["unread_count"], 2);
    assert_eq!(top["last_message"]["content"], "more news");
    assert_eq!(top["last_message"]["seq"], 2);
    assert_eq!(top["last_message"]["user"]["username"], "bob");
    assert_eq!(top["role"], "admin");
    assert_eq!(usernames(top), ["alice", "bob"]);
    let in_last = &list.body[1];
    assert_eq!(in_last["role"], "member");
    assert_eq!(in_last["unread_count"], 0);
    assert!(in_last["last_message"].is_null());

    app.send(&carol, direct, "hi alice").await;
    let list = app.get_as(&alice, "/api/chats").await;
    assert_eq!(ids(&list.body), [direct, first, last]);
    assert_eq!(list.body[0]["unread_count"], 1);
    assert_eq!(list.body[0]["last_message"]["content"], "hi alice");
    assert_eq!(usernames(&list.body[0]), ["alice", "carol"]);

    // The sender has nothing unread in the chat they just wrote to.
    let bobs = app.get_as(&bob, "/api/chats").await;
    let bobs_first = bobs
        .body
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["id"] == first)
        .expect("first");
    assert_eq!(bobs_first["unread_count"], 0);
}

#[tokio::test]
async fn chats_page_with_limit_and_the_next_cursor_header() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut made = Vec::new();
    for name in ["one", "two", "three", "four"] {
        made.push(app.group(&alice, name, &[&bob]).await);
    }
    made.reverse();
    let all = app.get_as(&alice, "/api/chats").await;
    assert_eq!(ids(&all.body), made);
    assert!(
        all.header("x-next-cursor").is_none(),
        "a partial page has no next: {:?}",
        all.headers
    );

    let mut seen = Vec::new();
    let mut path = "/api/chats?limit=1".to_owned();
    for _ in 0..10 {
        let page = app.get_as(&alice, &path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let page_ids = ids(&page.body);
        assert!(page_ids.len() <= 1, "limit=1 gave {page_ids:?}");
        seen.extend(page_ids);
        match page.header("x-next-cursor") {
            Some(cursor) => path = format!("/api/chats?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, made, "the cursor walks every chat once, in order");

    let first = app.get_as(&alice, "/api/chats?limit=1").await;
    assert_eq!(ids(&first.body), [made[0]]);
    assert!(
        first.header("x-next-cursor").is_some(),
        "a full page names the next"
    );
    let skipped = app.get_as(&alice, "/api/chats?skip=2&limit=1").await;
    assert_eq!(ids(&skipped.body), [made[2]], "the seed's skip still works");

    app.get_as(&alice, "/api/chats?limit=0")
        .await
        .assert_problem(422, "validation_failed");
    app.get_as(&alice, "/api/chats?cursor=zzz")
        .await
        .assert_problem(422, "validation_failed");
}

#[tokio::test]
async fn the_collection_route_answers_with_a_trailing_slash() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let created = app
        .post_as(
            &alice,
            "/api/chats/",
            json!({"name": "slashed", "user_ids": [bob.id], "is_group_chat": true}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let list = app.get_as(&alice, "/api/chats/").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(ids(&list.body), [created.body["id"].as_i64().expect("id")]);
    let page = app.get_as(&alice, "/api/chats/?limit=1").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.header("x-next-cursor").is_some());
}

#[tokio::test]
async fn a_direct_chat_has_exactly_one_other_user() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    for user_ids in [json!([bob.id, carol.id]), json!([]), json!([alice.id])] {
        app.post_as(
            &alice,
            "/api/chats",
            json!({"is_group_chat": false, "user_ids": user_ids}),
        )
        .await
        .assert_problem(422, "validation_failed");
    }
    assert_eq!(chat_rows(&app).await, 0, "nothing was created");

    let reply = app
        .post_as(
            &alice,
            "/api/chats",
            json!({"is_group_chat": false, "user_ids": [bob.id]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["is_group_chat"], false);
    assert_eq!(usernames(&reply.body), ["alice", "bob"]);
    assert!(
        ["admin", "member"].contains(&reply.body["role"].as_str().expect("role")),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn asking_again_for_a_direct_chat_returns_the_same_one_from_either_side() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let first = app
        .post_as(&alice, "/api/chats", json!({"user_ids": [bob.id]}))
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let id = first.body["id"].as_i64().expect("id");

    let again = app
        .post_as(&alice, "/api/chats", json!({"user_ids": [bob.id]}))
        .await;
    assert_eq!(
        again.status, 200,
        "an existing direct chat is returned, not made again: {}",
        again.body
    );
    assert_eq!(again.body["id"], id);
    let from_bob = app
        .post_as(
            &bob,
            "/api/chats",
            json!({"is_group_chat": false, "user_ids": [alice.id]}),
        )
        .await;
    assert_eq!(from_bob.status, 200, "{}", from_bob.body);
    assert_eq!(from_bob.body["id"], id);
    assert_eq!(usernames(&from_bob.body), ["alice", "bob"]);
    assert_eq!(chat_rows(&app).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_for_one_direct_chat_from_both_sides_make_exactly_one() {
    let app = TestApp::spawn_with(&[("DB_MAX_CONNECTIONS", "16")]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    // The test inserts the pair's chat without committing: every request's insert waits on it.
    // Rolled back once all eight wait, they race for the pair's key together, every run.
    let mut gate = app.db.pool.begin().await.expect("begin");
    db::chats::insert_direct(
        &mut *gate,
        &db::chats::direct_key(alice.id, bob.id),
        None,
        alice.id,
    )
    .await
    .expect("insert")
    .expect("a chat");
    let requests = (0..8).map(|i| {
        let (me, other) = if i % 2 == 0 {
            (&alice, &bob)
        } else {
            (&bob, &alice)
        };
        app.post_as(me, "/api/chats", json!({"user_ids": [other.id]}))
    });
    let release = async {
        app.db.until_waiting_for_locks(8).await;
        gate.rollback().await.expect("rollback");
    };
    let (replies, ()) = tokio::join!(join_all(requests), release);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "one creates it: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        7,
        "the rest find it: {statuses:?}"
    );
    let id = &replies[0].body["id"];
    for reply in &replies {
        assert_eq!(
            &reply.body["id"], id,
            "every request sees the one chat: {}",
            reply.body
        );
        // Whoever won is listed first (longest-standing); both are there.
        let mut members = usernames(&reply.body);
        members.sort_unstable();
        assert_eq!(members, ["alice", "bob"]);
    }

    let chats: i64 = sqlx::query_scalar("SELECT count(*) FROM chats WHERE NOT is_group")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(chats, 1, "one direct chat in the database");
    let members: Vec<i64> = sqlx::query_scalar("SELECT user_id FROM chat_members ORDER BY user_id")
        .fetch_all(&app.db.pool)
        .await
        .expect("members");
    assert_eq!(members, [alice.id, bob.id]);
}

#[tokio::test]
async fn leaving_out_is_group_chat_lets_the_members_decide() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    // Seed clients send only `name` and `user_ids`.
    let direct = app
        .post_as(
            &alice,
            "/api/chats",
            json!({"name": "ignored", "user_ids": [bob.id]}),
        )
        .await;
    assert_eq!(direct.status, 201, "{}", direct.body);
    assert_eq!(
        direct.body["is_group_chat"], false,
        "one other user makes a direct chat"
    );
    let group = app
        .post_as(
            &alice,
            "/api/chats",
            json!({"name": "trio", "user_ids": [bob.id, carol.id]}),
        )
        .await;
    assert_eq!(group.status, 201, "{}", group.body);
    assert_eq!(group.body["is_group_chat"], true, "more make a group");
    let pair_group = app
        .post_as(
            &alice,
            "/api/chats",
            json!({"name": "pair", "is_group_chat": true, "user_ids": [bob.id]}),
        )
        .await;
    assert_eq!(
        pair_group.status, 201,
        "asked for, a group of two: {}",
        pair_group.body
    );
    assert_eq!(pair_group.body["is_group_chat"], true);
    assert_eq!(pair_group.body["name"], "pair");
    assert_eq!(group.body["role"], "admin");
    assert_eq!(usernames(&group.body), ["alice", "bob", "carol"]);
}

#[tokio::test]
async fn a_group_needs_a_name_of_1_to_100_characters() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let bodies = [
        json!({"is_group_chat": true, "user_ids": [bob.id]}),
        json!({"user_ids": [bob.id, carol.id]}),
        json!({"name": "", "is_group_chat": true, "user_ids": [bob.id]}),
        json!({"name": "   ", "is_group_chat": true, "user_ids": [bob.id]}),
        json!({"name": "x".repeat(101), "is_group_chat": true, "user_ids": [bob.id]}),
    ];
    for body in bodies {
        let reply = app.post_as(&alice, "/api/chats", body.clone()).await;
        reply.assert_problem(422, "validation_failed");
        let fields: Vec<&str> = reply.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("422 lists its fields: {}", reply.body))
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert_eq!(fields, ["name"], "for {body}: {}", reply.body);
    }
    assert_eq!(chat_rows(&app).await, 0);
    let longest = app
        .post_as(
            &alice,
            "/api/chats",
            json!({"name": "é".repeat(100), "is_group_chat": true, "user_ids": [bob.id]}),
        )
        .await;
    assert_eq!(
        longest.status, 201,
        "100 characters is a name: {}",
        longest.body
    );
}

#[tokio::test]
async fn unknown_user_ids_are_refused_and_named() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let reply = app
        .post_as(
            &alice,
            "/api/chats",
            json!({"name": "ghosts", "user_ids": [bob.id, 987_654_321, 987_654_322]}),
        )
        .await;
    reply.assert_problem(422, "validation_failed");
    let text = reply.body.to_string();
    assert!(
        text.contains("987654321") && text.contains("987654322"),
        "the unknown ids are named: {text}"
    );
    assert_eq!(reply.body["errors"][0]["field"], "user_ids", "{text}");
    let direct = app
        .post_as(&alice, "/api/chats", json!({"user_ids": [987_654_321]}))
        .await;
    direct.assert_problem(422, "validation_failed");
    assert!(
        direct.body.to_string().contains("987654321"),
        "{}",
        direct.body
    );
    assert_eq!(chat_rows(&app).await, 0, "nothing was created");

    let chat = app.group(&alice, "real", &[&bob]).await;
    let add = app
        .post_as(
            &alice,
            &format!("/api/chats/{chat}/members"),
            json!({"user_ids": [987_654_323]}),
        )
        .await;
    add.assert_problem(422, "validation_failed");
    assert!(add.body.to_string().contains("987654323"), "{}", add.body);
}

/// Adds `count` accounts straight to the database (registering through the API hashes a
/// password each time); returns their ids.
async fn bulk_users(app: &TestApp, count: i64) -> Vec<i64> {
    sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash) \
         SELECT 'bulk' || g, 'bulk' || g || '@example.com', 'not a hash' FROM generate_series(1, $1) g \
         RETURNING id",
    )
    .bind(count)
    .fetch_all(&app.db.pool)
    .await
    .expect("bulk users")
}

#[tokio::test]
async fn a_chat_has_at_most_1000_members() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut others = bulk_users(&app, 999).await;

    let full = app
        .post_as(
            &alice,
            "/api/chats",
            json!({"name": "full house", "user_ids": others}),
        )
        .await;
    assert_eq!(
        full.status, 201,
        "1,000 members with the creator: {}",
        full.body["detail"]
    );
    assert_eq!(full.body["users"].as_array().expect("users").len(), 1000);
    let chat = full.body["id"].as_i64().expect("id");

    others.push(bob.id);
    app.post_as(
        &alice,
        "/api/chats",
        json!({"name": "too many", "user_ids": others}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.post_as(
        &alice,
        &format!("/api/chats/{chat}/members"),
        json!({"user_ids": [bob.id]}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_members WHERE chat_id = $1")
        .bind(chat)
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(members, 1000, "a refused addition adds no one");
    assert_eq!(chat_rows(&app).await, 1);
}

#[tokio::test]
async fn a_chat_is_shown_to_its_members_only() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let eve = app.user("eve").await;
    let chat = app.group(&alice, "private", &[&bob]).await;
    let reply = app.get_as(&bob, &format!("/api/chats/{chat}")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["id"], chat);
    app.get_as(&eve, &format!("/api/chats/{chat}"))
        .await
        .assert_problem(404, "not_found");
    app.get_as(&alice, "/api/chats/987654321")
        .await
        .assert_problem(404, "not_found");
    assert!(ids(&app.get_as(&eve, "/api/chats").await.body).is_empty());
}

#[tokio::test]
async fn admins_rename_a_group_and_no_one_renames_a_direct_chat() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "old name", &[&bob]).await;
    let before = app.chat_as(&alice, chat).await;

    let renamed = app
        .put_as(
            &alice,
            &format!("/api/chats/{chat}"),
            json!({"name": "new name"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["name"], "new name");
    assert_ne!(
        renamed.body["updated_at"], before["updated_at"],
        "a rename updates updated_at"
    );
    assert_eq!(app.chat_as(&bob, chat).await["name"], "new name");

    app.put_as(
        &bob,
        &format!("/api/chats/{chat}"),
        json!({"name": "bob's"}),
    )
    .await
    .assert_problem(403, "not_admin");
    app.put_as(&alice, &format!("/api/chats/{chat}"), json!({"name": ""}))
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(app.chat_as(&alice, chat).await["name"], "new name");

    let direct = app.direct(&alice, &bob).await;
    let reply = app
        .put_as(
            &alice,
            &format!("/api/chats/{direct}"),
            json!({"name": "us"}),
        )
        .await;
    assert_eq!(
        reply.status, 409,
        "a direct chat has no name to change: {}",
        reply.body
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(app.chat_as(&alice, direct).await["name"], "bob");
}

async fn messages_in(app: &TestApp, chat: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE chat_id = $1")
        .bind(chat)
        .fetch_one(&app.db.pool)
        .await
        .expect("count messages")
}

#[tokio::test]
async fn group_admins_delete_a_group_and_its_messages_go_too() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "doomed", &[&bob]).await;
    app.send(&alice, chat, "one").await;
    app.send(&bob, chat, "two").await;

    app.delete_as(&bob, &format!("/api/chats/{chat}"))
        .await
        .assert_problem(403, "not_admin");
    assert_eq!(messages_in(&app, chat).await, 2);

    let reply = app.delete_as(&alice, &format!("/api/chats/{chat}")).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    app.get_as(&alice, &format!("/api/chats/{chat}"))
        .await
        .assert_problem(404, "not_found");
    app.get_as(&bob, &format!("/api/chats/{chat}/messages"))
        .await
        .assert_problem(404, "not_found");
    assert!(ids(&app.get_as(&bob, "/api/chats").await.body).is_empty());
    assert_eq!(
        messages_in(&app, chat).await,
        0,
        "the messages went with the chat"
    );
}

#[tokio::test]
async fn either_member_deletes_a_direct_chat() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.direct(&alice, &bob).await;
    app.send(&alice, chat, "hello").await;
    let reply = app.delete_as(&bob, &format!("/api/chats/{chat}")).await;
    assert_eq!(
        reply.status, 204,
        "the member who did not start it may delete it: {}",
        reply.body
    );
    app.get_as(&alice, &format!("/api/chats/{chat}"))
        .await
        .assert_problem(404, "not_found");
    assert_eq!(messages_in(&app, chat).await, 0);

    let again = app.direct(&bob, &alice).await;
    assert_ne!(again, chat, "a new direct chat can be started afterwards");
    let reply = app.delete_as(&bob, &format!("/api/chats/{again}")).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
}

#[tokio::test]
async fn admins_add_members_with_an_object_or_a_bare_array() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let chat = app.group(&alice, "growing", &[&bob]).await;
    let path = format!("/api/chats/{chat}/members");

    let reply = app
        .post_as(&alice, &path, json!({"user_ids": [carol.id]}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["id"], chat, "the answer is the chat");
    assert_eq!(usernames(&reply.body), ["alice", "bob", "carol"]);
    let bare = app.post_as(&alice, &path, json!([dave.id])).await;
    assert_eq!(
        bare.status, 200,
        "a bare array, as the seed took: {}",
        bare.body
    );
    assert_eq!(usernames(&bare.body), ["alice", "bob", "carol", "dave"]);
    let carols = app.chat_as(&carol, chat).await;
    assert_eq!(carols["role"], "member");
    let again = app.post_as(&alice, &path, json!([carol.id])).await;
    assert_eq!(
        again.status, 200,
        "adding a member again changes nothing: {}",
        again.body
    );
    assert_eq!(usernames(&again.body), ["alice", "bob", "carol", "dave"]);

    let eve = app.user("eve").await;
    app.post_as(&bob, &path, json!({"user_ids": [eve.id]}))
        .await
        .assert_problem(403, "not_admin");
    app.get_as(&eve, &format!("/api/chats/{chat}"))
        .await
        .assert_problem(404, "not_found");

    let direct = app.direct(&alice, &bob).await;
    let reply = app
        .post_as(
            &alice,
            &format!("/api/chats/{direct}/members"),
            json!({"user_ids": [carol.id]}),
        )
        .await;
    assert_eq!(
        reply.status, 409,
        "a direct chat has exactly two members: {}",
        reply.body
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        usernames(&app.chat_as(&alice, direct).await),
        ["alice", "bob"]
    );
}

#[tokio::test]
async fn admins_remove_anyone_and_members_remove_only_themselves() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let chat = app.group(&alice, "club", &[&bob, &carol, &dave]).await;
    let member = |user: &User| format!("/api/chats/{chat}/members/{}", user.id);

    app.delete_as(&bob, &member(&carol))
        .await
        .assert_problem(403, "not_admin");
    assert_eq!(
        usernames(&app.chat_as(&alice, chat).await),
        ["alice", "bob", "carol", "dave"]
    );

    let removed = app.delete_as(&alice, &member(&carol)).await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    app.get_as(&carol, &format!("/api/chats/{chat}"))
        .await
        .assert_problem(404, "not_found");
    app.post_as(
        &carol,
        &format!("/api/chats/{chat}/messages"),
        json!({"content": "still here?"}),
    )
    .await
    .assert_problem(404, "not_found");

    let left = app.delete_as(&bob, &member(&bob)).await;
    assert_eq!(left.status, 204, "a member leaves: {}", left.body);
    app.get_as(&bob, &format!("/api/chats/{chat}"))
        .await
        .assert_problem(404, "not_found");
    assert_eq!(
        usernames(&app.chat_as(&alice, chat).await),
        ["alice", "dave"]
    );
    assert_eq!(
        app.chat_as(&alice, chat).await["role"],
        "admin",
        "alice stays admin"
    );

    app.delete_as(&alice, &member(&carol))
        .await
        .assert_problem(404, "not_found");
}

#[tokio::test]
async fn when_the_last_admin_leaves_the_longest_standing_member_becomes_admin() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    // Carol's account is older than Bob's, but Bob joined the group first.
    let carol = app.user("carol").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "succession", &[&bob]).await;
    let added = app
        .post_as(
            &alice,
            &format!("/api/chats/{chat}/members"),
            json!([carol.id]),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);

    let left = app
        .delete_as(&alice, &format!("/api/chats/{chat}/members/{}", alice.id))
        .await;
    assert_eq!(left.status, 204, "{}", left.body);
    assert_eq!(
        app.chat_as(&bob, chat).await["role"],
        "admin",
        "bob has been here longest"
    );
    assert_eq!(app.chat_as(&carol, chat).await["role"], "member");
    let renamed = app
        .put_as(
            &bob,
            &format!("/api/chats/{chat}"),
            json!({"name": "bob's now"}),
        )
        .await;
    assert_eq!(
        renamed.status, 200,
        "the new admin acts as one: {}",
        renamed.body
    );
}

#[tokio::test]
async fn when_the_last_member_leaves_the_chat_goes() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "fading", &[&bob]).await;
    app.send(&bob, chat, "bye").await;

    let reply = app
        .delete_as(&bob, &format!("/api/chats/{chat}/members/{}", bob.id))
        .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(chat_rows(&app).await, 1);
    let reply = app
        .delete_as(&alice, &format!("/api/chats/{chat}/members/{}", alice.id))
        .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    app.get_as(&alice, &format!("/api/chats/{chat}"))
        .await
        .assert_problem(404, "not_found");
    assert_eq!(
        chat_rows(&app).await,
        0,
        "the chat went with its last member"
    );
    assert_eq!(messages_in(&app, chat).await, 0);
}

/// Sends `body` as it is, with a JSON content type.
async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: String,
) -> crate::client::Reply {
    let response = app
        .client
        .request(method, app.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request failed");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    crate::client::Reply {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn chat_and_message_routes_answer_bad_requests_with_problems() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let message = app.send(&alice, chat, "hello").await["id"]
        .as_i64()
        .expect("id");

    raw(
        &app,
        Method::POST,
        "/api/chats",
        &alice.token,
        "{not json".into(),
    )
    .await
    .assert_problem(400, "malformed_json");
    raw(
        &app,
        Method::POST,
        &format!("/api/chats/{chat}/messages"),
        &alice.token,
        "{\"content\": ".into(),
    )
    .await
    .assert_problem(400, "malformed_json");
    raw(
        &app,
        Method::PUT,
        &format!("/api/chats/{chat}/messages/read"),
        &alice.token,
        "[1,".into(),
    )
    .await
    .assert_problem(400, "malformed_json");
    let huge = json!({"content": "a".repeat(70 * 1024)}).to_string();
    raw(
        &app,
        Method::POST,
        &format!("/api/chats/{chat}/messages"),
        &alice.token,
        huge,
    )
    .await
    .assert_problem(413, "payload_too_large");
    for body in [
        json!({"user_ids": "bob"}),
        json!({"user_ids": ["x"]}),
        json!({"name": 5, "user_ids": [bob.id]}),
    ] {
        app.post_as(&alice, "/api/chats", body)
            .await
            .assert_problem(422, "validation_failed");
    }
    app.get_as(&alice, "/api/chats/abc")
        .await
        .assert_problem(422, "validation_failed");
    app.get_as(
        &alice,
        &format!("/api/chats/{chat}/messages/abc/read-status"),
    )
    .await
    .assert_problem(422, "validation_failed");

    for (method, path) in [
        (Method::PATCH, format!("/api/chats/{chat}")),
        (Method::DELETE, "/api/chats".to_owned()),
        (Method::PUT, format!("/api/chats/{chat}/members")),
        (Method::DELETE, format!("/api/chats/{chat}/messages")),
        (Method::POST, format!("/api/chats/{chat}/messages/read")),
        (
            Method::POST,
            format!("/api/chats/{chat}/messages/{message}"),
        ),
    ] {
        let reply = app
            .call(method.clone(), &path, Some(&alice.token), None)
            .await;
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
        reply.assert_problem(405, "method_not_allowed");
    }
    app.get_as(&alice, &format!("/api/chats/{chat}/nothing-here"))
        .await
        .assert_problem(404, "not_found");
    app.get_as(
        &alice,
        &format!("/api/chats/{chat}/messages/{message}/nothing"),
    )
    .await
    .assert_problem(404, "not_found");
    assert_eq!(
        app.messages(&bob, chat, "").await.len(),
        1,
        "nothing refused was stored"
    );
}

#[tokio::test]
async fn a_page_of_chats_holds_50_by_default_and_100_at_most() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let creates = (0..101).map(|n| {
        app.post_as(
            &alice,
            "/api/chats",
            json!({"name": format!("group {n}"), "is_group_chat": true, "user_ids": [bob.id]}),
        )
    });
    for reply in join_all(creates).await {
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let default = app.get_as(&bob, "/api/chats").await;
    assert_eq!(ids(&default.body).len(), 50, "50 by default");
    assert!(default.header("x-next-cursor").is_some());
    let most = app.get_as(&bob, "/api/chats?limit=1000").await;
    assert_eq!(
        most.status, 200,
        "a large limit is capped, not refused: {}",
        most.body
    );
    assert_eq!(ids(&most.body).len(), 100, "at most 100");
    let cursor = most
        .header("x-next-cursor")
        .expect("one more page")
        .to_owned();
    let rest = app
        .get_as(&bob, &format!("/api/chats?limit=100&cursor={cursor}"))
        .await;
    assert_eq!(ids(&rest.body).len(), 1);
    assert!(rest.header("x-next-cursor").is_none());
}

/// The `name` of the chat `chat` in `user`'s chat list.
async fn listed_name(app: &TestApp, user: &User, chat: i64) -> Value {
    let list = app.get_as(user, "/api/chats").await;
    assert_eq!(list.status, 200, "{}", list.body);
    list.body
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["id"] == chat)
        .map(|c| c["name"].clone())
        .unwrap_or_else(|| panic!("chat {chat} is not in {}'s list", user.username))
}

#[tokio::test]
async fn a_direct_chat_is_named_after_the_other_member_in_each_members_view() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let renamed = app
        .put_as(
            &bob,
            &format!("/api/users/{}", bob.id),
            json!({"display_name": "Bobby B"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let mut alice_socket = app.connect(&alice, None).await;
    let mut bob_socket = app.connect(&bob, None).await;

    let created = app
        .post_as(&alice, "/api/chats", json!({"user_ids": [bob.id]}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["name"], "Bobby B");
    let chat = created.body["id"].as_i64().expect("id");

    assert_eq!(app.chat_as(&alice, chat).await["name"], "Bobby B");
    assert_eq!(app.chat_as(&bob, chat).await["name"], "alice");
    assert_eq!(listed_name(&app, &alice, chat).await, "Bobby B");
    assert_eq!(listed_name(&app, &bob, chat).await, "alice");

    // Each member hears of the chat once, under the name they see it by.
    let to_alice = alice_socket.expect("chat.created").await;
    assert_eq!(to_alice["chat_id"], chat);
    assert_eq!(to_alice["chat"]["name"], "Bobby B");
    let to_bob = bob_socket.expect("chat.created").await;
    assert_eq!(to_bob["chat"]["name"], "alice");
    assert_eq!(to_bob["chat"]["user_ids"], json!([alice.id, bob.id]));
    alice_socket.expect_quiet().await;
    bob_socket.expect_quiet().await;

    // Asking again returns the chat as it is, still named for the asker.
    let again = app
        .post_as(&bob, "/api/chats", json!({"user_ids": [alice.id]}))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["name"], "alice");
}

#[tokio::test]
async fn a_direct_chat_given_a_name_shows_that_name_to_both_members() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut bob_socket = app.connect(&bob, None).await;

    let refused = app
        .post_as(
            &alice,
            "/api/chats",
            json!({"name": "evil\u{202E}name", "user_ids": [bob.id]}),
        )
        .await;
    refused.assert_problem(422, "validation_failed");
    assert_eq!(chat_rows(&app).await, 0, "a refused chat stores nothing");

    let created = app
        .post_as(
            &alice,
            "/api/chats",
            json!({"name": "Lunch plans", "user_ids": [bob.id]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["is_group_chat"], false);
    assert_eq!(created.body["name"], "Lunch plans");
    let chat = created.body["id"].as_i64().expect("id");
    for user in [&alice, &bob] {
        assert_eq!(app.chat_as(user, chat).await["name"], "Lunch plans");
        assert_eq!(listed_name(&app, user, chat).await, "Lunch plans");
    }
    let event = bob_socket.expect("chat.created").await;
    assert_eq!(event["chat"]["name"], "Lunch plans");

    // A blank name is no name: the chat is named after the other member.
    let carol = app.user("carol").await;
    let unnamed = app
        .post_as(
            &carol,
            "/api/chats",
            json!({"name": "  ", "user_ids": [alice.id]}),
        )
        .await;
    assert_eq!(unnamed.status, 201, "{}", unnamed.body);
    assert_eq!(unnamed.body["name"], "alice");
}

#[tokio::test]
async fn a_direct_chat_whose_other_member_is_gone_is_named_deleted_account() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.direct(&alice, &bob).await;
    app.send(&bob, chat, "bye").await;

    let deleted = app.delete_account(&bob).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);

    let seen = app.chat_as(&alice, chat).await;
    assert_eq!(seen["name"], "Deleted account");
    assert_eq!(listed_name(&app, &alice, chat).await, "Deleted account");
}

#[tokio::test]
async fn cursors_must_have_the_documented_shape_and_one_past_the_end_lists_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.group(&alice, "team", &[&bob]).await;

    for cursor in ["12", "%201.2", "-1.2", "1.2.3", "1.x"] {
        app.get_as(&alice, &format!("/api/chats?cursor={cursor}"))
            .await
            .assert_problem(422, "validation_failed");
    }
    for cursor in ["%2012", "-5", "%2B5", "1.5", "12345678901234567890"] {
        app.get_as(&alice, &format!("/api/users?cursor={cursor}"))
            .await
            .assert_problem(422, "validation_failed");
    }
    let far = app
        .get_as(
            &alice,
            "/api/chats?cursor=9999999999999999999.9999999999999999999",
        )
        .await;
    assert_eq!(far.status, 200, "{}", far.body);
    assert_eq!(far.body.as_array().map(Vec::len), Some(1), "{}", far.body);
    let past = app
        .get_as(&alice, "/api/users?cursor=9999999999999999999")
        .await;
    assert_eq!(past.status, 200, "{}", past.body);
    assert_eq!(past.body, serde_json::json!([]));
    let first = app.get_as(&alice, "/api/users?cursor=").await;
    assert_eq!(
        first.body.as_array().map(Vec::len),
        Some(2),
        "{}",
        first.body
    );
}
