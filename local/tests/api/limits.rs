//! Bounded answers and abuse limits: the chat list stays small whatever the groups' sizes,
//! offsets are capped, and typing floods, connection floods and frame floods are cut.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{User, ids};
use crate::common::TestApp;

/// Accounts made straight in the database (registering through the API hashes each
/// password); their ids, in order.
async fn seed_users(app: &TestApp, prefix: &str, count: i64) -> Vec<i64> {
    sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash)
         SELECT $1 || n, $1 || n || '@example.com', 'not-a-hash'
         FROM generate_series(1, $2) AS n ORDER BY n RETURNING id",
    )
    .bind(prefix)
    .bind(count)
    .fetch_all(&app.db.pool)
    .await
    .expect("seed users")
}

#[tokio::test]
async fn the_chat_list_stays_small_however_large_the_groups() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let crowd = seed_users(&app, "member", 59 * 5).await;
    let mut groups = Vec::new();
    for (n, members) in crowd.chunks(59).enumerate() {
        let reply = app
            .post_as(
                &alice,
                "/api/chats",
                json!({"name": format!("big {n}"), "user_ids": members}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        assert_eq!(reply.body["member_count"], 60);
        groups.push(reply.body["id"].as_i64().expect("id"));
    }
    let direct = app.direct(&alice, &bob).await;
    app.send(&bob, direct, "hello").await;
    app.send(&alice, groups[0], "hello all").await;

    let reply = app.get_as(&alice, "/api/chats").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let size = serde_json::to_vec(&reply.body).expect("json").len();
    assert!(size < 10 * 1024, "the chat list is {size} bytes");
    let chats = reply.body.as_array().expect("chats");
    assert_eq!(chats.len(), 6);
    for chat in chats {
        let users = chat["users"].as_array().expect("users");
        assert!(users.len() <= 3, "{} members embedded", users.len());
        if chat["id"] == direct {
            assert_eq!(chat["member_count"], 2);
            let names: Vec<&Value> = users.iter().map(|u| &u["username"]).collect();
            assert_eq!(
                names,
                [&json!("alice"), &json!("bob")],
                "both of a direct chat"
            );
        } else {
            assert_eq!(chat["member_count"], 60);
            assert_eq!(users[0]["id"], alice.id, "longest-standing first");
        }
    }
    // `is_read` of the newest message is the same as in the chat's own view: in the group
    // nobody else read it; in the direct chat Alice has not read Bob's.
    for chat in [groups[0], direct] {
        let listed = chats.iter().find(|c| c["id"] == chat).expect("listed");
        let own = app.chat_as(&alice, chat).await;
        assert_eq!(listed["last_message"]["is_read"], false);
        assert_eq!(
            listed["last_message"]["is_read"],
            own["last_message"]["is_read"]
        );
        assert_eq!(own["member_count"], listed["member_count"]);
    }
    app.mark_read(&alice, direct, None).await;
    let listed = app.get_as(&alice, "/api/chats").await;
    let direct_view = listed
        .body
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == direct))
        .expect("listed");
    assert_eq!(
        direct_view["last_message"]["is_read"], true,
        "{direct_view}"
    );

    // The chat's own view keeps every member, as before.
    assert_eq!(
        app.chat_as(&alice, groups[1]).await["users"]
            .as_array()
            .map(Vec::len),
        Some(60)
    );
}

#[tokio::test]
async fn a_chats_members_are_paged_for_members_only() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let outsider = app.user("outsider").await;
    let crowd = seed_users(&app, "member", 59).await;
    let reply = app
        .post_as(
            &alice,
            "/api/chats",
            json!({"name": "big", "user_ids": crowd}),
        )
        .await;
    let chat = reply.body["id"].as_i64().expect("id");

    let first = app
        .get_as(&alice, &format!("/api/chats/{chat}/members?limit=50"))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let first_ids = ids(&first.body);
    assert_eq!(first_ids.len(), 50);
    assert_eq!(first_ids[0], alice.id);
    assert_eq!(first.body[0]["role"], "admin");
    assert_eq!(first.body[1]["role"], "member");
    assert!(first.body[1]["joined_at"].is_string());
    assert!(first.body[1]["username"].is_string());
    let rest = app
        .get_as(
            &alice,
            &format!("/api/chats/{chat}/members?skip=50&limit=50"),
        )
        .await;
    let mut all = first_ids;
    all.extend(ids(&rest.body));
    let mut expected = vec![alice.id];
    expected.extend(&crowd);
    assert_eq!(all, expected);

    app.get_as(&outsider, &format!("/api/chats/{chat}/members"))
        .await
        .assert_problem(404, "not_found");
    app.get_as(&alice, &format!("/api/chats/{chat}/members?skip=10001"))
        .await
        .assert_problem(422, "validation_failed");
}

#[tokio::test]
async fn offsets_over_ten_thousand_are_422_everywhere() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.direct(&alice, &bob).await;
    for path in [
        "/api/users?skip=1000000000".to_owned(),
        "/api/chats?skip=10001".to_owned(),
        format!("/api/chats/{chat}/messages?skip=1000000000"),
        "/api/users/me/blocks?skip=10001".to_owned(),
    ] {
        let reply = app.get_as(&alice, &path).await;
        reply.assert_problem(422, "validation_failed");
        assert_eq!(
            reply.body["errors"][0]["field"], "skip",
            "{path}: {}",
            reply.body
        );
    }
    for path in [
        "/api/users?skip=10000".to_owned(),
        format!("/api/chats/{chat}/messages?skip=10000"),
    ] {
        assert_eq!(app.get_as(&alice, &path).await.status, 200, "{path}");
    }
}

/// Frames of type `kind` that arrive within `wait`.
async fn count_frames(socket: &mut crate::client::Socket, kind: &str, wait: Duration) -> usize {
    let end = Instant::now() + wait;
    let mut count = 0;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match socket.next_within(left).await {
            Some(frame) if frame["type"] == kind => count += 1,
            Some(frame) => panic!("unexpected frame {frame}"),
            None => break,
        }
    }
    count
}

#[tokio::test]
async fn a_typing_flood_reaches_the_other_member_once_or_twice() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.direct(&alice, &bob).await;
    let mut bob_socket = app.connect(&bob, None).await;
    let mut alice_socket = app.connect(&alice, Some(chat)).await;
    bob_socket.expect_status(&alice, "online").await;

    let start = Instant::now();
    for _ in 0..30 {
        alice_socket
            .send(json!({"action": "typing", "chat_id": chat}))
            .await;
    }
    let sent_in = start.elapsed();
    let received = count_frames(&mut bob_socket, "typing", Duration::from_millis(1500)).await;
    assert!(
        (1..=2).contains(&received),
        "30 typing frames (sent in {sent_in:?}) reached bob {received} times"
    );
    // Extras are dropped silently: no error frames for the typist.
    alice_socket.expect_quiet().await;
}

#[tokio::test]
async fn an_eleventh_connection_closes_the_oldest() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let mut sockets = Vec::new();
    for _ in 0..10 {
        sockets.push(app.connect(&alice, None).await);
    }
    let live = |app: &TestApp, user: &User| {
        let pool = app.db.pool.clone();
        let id = user.id;
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ws_connections WHERE user_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    assert_eq!(live(&app, &alice).await, 10);
    sockets[0].expect_quiet().await;

    let mut newest = app.connect(&alice, None).await;
    assert!(
        sockets[0].closed().await,
        "the oldest connection stays open"
    );
    assert_eq!(live(&app, &alice).await, 10);
    sockets[1].expect_quiet().await;
    newest.send(json!({"action": "ping"})).await;
    newest.expect("pong").await;
}

#[tokio::test]
async fn a_frame_flood_gets_one_rate_limited_error_and_the_socket_stays_open() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let mut socket = app.connect(&alice, None).await;
    for _ in 0..130 {
        socket.send(json!({"action": "ping"})).await;
    }
    let mut pongs = 0;
    let mut errors = Vec::new();
    while let Some(frame) = socket.next_within(Duration::from_millis(1500)).await {
        match frame["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => errors.push(frame),
            _ => panic!("unexpected frame {frame}"),
        }
    }
    assert_eq!(pongs, 100, "frames answered within the budget");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["code"], "rate_limited", "{}", errors[0]);
    assert!(errors[0]["detail"].is_string());
}
