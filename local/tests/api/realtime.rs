//! Real time through the local WebSocket API: every change reaches every member's live
//! connections once, through the management API that the real SDK client posts to.

use crate::common::TestApp;
use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use serde_json::json;

/// The ids of `user_id`'s connection rows, oldest first.
pub(crate) async fn connection_ids(app: &TestApp, user_id: i64) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT connection_id FROM ws_connections WHERE user_id = $1 ORDER BY connected_at",
    )
    .bind(user_id)
    .fetch_all(&app.db.pool)
    .await
    .expect("connections")
}

#[tokio::test]
async fn messages_over_http_and_socket_reach_every_connection_once_in_order() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let mut alice_phone = app.connect(&alice, None).await;
    let mut alice_laptop = app.connect(&alice, None).await;
    let mut bob_socket = app.connect(&bob, None).await;
    // Bob's first connection makes him online to those who share a chat with him.
    for socket in [&mut alice_phone, &mut alice_laptop] {
        socket.expect_status(&bob, "online").await;
    }

    let sent = app.send(&bob, chat, "over http").await;
    let first = alice_phone.expect("message.created").await;
    assert_eq!(first["message"]["id"], sent["id"]);
    alice_phone
        .send(json!({"action": "sendMessage", "chat_id": chat, "content": "over the socket", "client_id": "c-1"}))
        .await;
    let ack = alice_phone.expect("ack").await;
    assert_eq!(ack["client_id"], "c-1");
    assert_eq!(ack["message"]["seq"], 2);

    for socket in [&mut alice_laptop, &mut bob_socket] {
        let first = socket.expect("message.created").await;
        assert_eq!(first["chat_id"], chat);
        assert_eq!(first["message"]["id"], sent["id"]);
        assert_eq!(first["message"]["content"], "over http");
    }
    for socket in [&mut alice_phone, &mut alice_laptop, &mut bob_socket] {
        let second = socket.expect("message.created").await;
        assert_eq!(second["message"]["seq"], 2);
        assert_eq!(second["message"]["content"], "over the socket");
        assert_eq!(second["message"]["user"]["username"], "alice");
        socket.expect_quiet().await;
    }
    // The socket send was stored exactly as an HTTP send.
    let listed = app
        .get_as(&bob, &format!("/api/chats/{chat}/messages"))
        .await;
    assert_eq!(listed.body[0]["content"], "over the socket");
    assert_eq!(listed.body[0]["client_id"], "c-1");
}

#[tokio::test]
async fn a_socket_retry_with_the_same_client_id_stores_one_message() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.direct(&alice, &bob).await;
    let mut socket = app.connect(&alice, None).await;
    let mut bob_socket = app.connect(&bob, None).await;
    socket.expect_status(&bob, "online").await;
    let frame =
        json!({"action": "sendMessage", "chat_id": chat, "content": "once", "client_id": "same"});
    socket.send(frame.clone()).await;
    let first = socket.expect("ack").await;
    // The sender's own connection gets the event too, like every other.
    assert_eq!(
        socket.expect("message.created").await["message"]["id"],
        first["message"]["id"]
    );
    socket.send(frame).await;
    let again = socket.expect("ack").await;
    assert_eq!(first["message"]["id"], again["message"]["id"]);
    socket.expect_quiet().await;
    bob_socket.expect("message.created").await;
    bob_socket.expect_quiet().await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn edits_deletes_reads_members_renames_and_typing_arrive_as_events() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let mut bob_socket = app.connect(&bob, None).await;
    let mut carol_socket = app.connect(&carol, None).await;

    let message = app.send(&alice, chat, "first").await;
    bob_socket.expect("message.created").await;
    let id = message["id"].as_i64().expect("id");

    app.put_as(
        &alice,
        &format!("/api/chats/{chat}/messages/{id}"),
        json!({"content": "edited"}),
    )
    .await;
    let updated = bob_socket.expect("message.updated").await;
    assert_eq!(updated["message"]["content"], "edited");
    assert!(updated["message"]["edited_at"].is_string());

    app.put_as(&bob, &format!("/api/chats/{chat}/messages/read"), json!({}))
        .await;
    let read = bob_socket.expect("message.read").await;
    assert_eq!(read["user_id"], bob.id);
    assert_eq!(read["last_read_seq"], 1);

    app.delete_as(&alice, &format!("/api/chats/{chat}/messages/{id}"))
        .await;
    let deleted = bob_socket.expect("message.deleted").await;
    assert_eq!(deleted["message"]["deleted"], true);
    assert_eq!(deleted["message"]["content"], "");

    app.put_as(
        &alice,
        &format!("/api/chats/{chat}"),
        json!({"name": "renamed"}),
    )
    .await;
    let renamed = bob_socket.expect("chat.updated").await;
    assert_eq!(renamed["chat"]["name"], "renamed");

    app.post_as(
        &alice,
        &format!("/api/chats/{chat}/members"),
        json!({"user_ids": [carol.id]}),
    )
    .await;
    let added = bob_socket.expect("member.added").await;
    assert_eq!(added["user_ids"], json!([carol.id]));
    let added = carol_socket.expect("member.added").await;
    assert_eq!(added["chat_id"], chat);

    let mut alice_socket = app.connect(&alice, None).await;
    for socket in [&mut bob_socket, &mut carol_socket] {
        socket.expect_status(&alice, "online").await;
    }
    bob_socket
        .send(json!({"action": "typing", "chat_id": chat}))
        .await;
    let typing = alice_socket.expect("typing").await;
    assert_eq!(typing["user_id"], bob.id);
    carol_socket.expect("typing").await;

    app.delete_as(&alice, &format!("/api/chats/{chat}/members/{}", carol.id))
        .await;
    let removed = carol_socket.expect("member.removed").await;
    assert_eq!(removed["user_id"], carol.id);
    let removed = bob_socket.expect("member.removed").await;
    assert_eq!(removed["user_id"], carol.id);
    // Typing is not echoed to the typist, and nothing else is pending.
    bob_socket.expect_quiet().await;

    app.delete_as(&alice, &format!("/api/chats/{chat}")).await;
    let gone = bob_socket.expect("chat.deleted").await;
    assert_eq!(gone["chat_id"], chat);
    carol_socket.expect_quiet().await;
}

#[tokio::test]
async fn a_new_chat_is_announced_to_its_members() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut bob_socket = app.connect(&bob, None).await;
    let chat = app.group(&alice, "new", &[&bob]).await;
    let created = bob_socket.expect("chat.created").await;
    assert_eq!(created["chat_id"], chat);
    assert_eq!(created["chat"]["name"], "new");
    assert_eq!(created["chat"]["user_ids"], json!([alice.id, bob.id]));
}

#[tokio::test]
async fn presence_follows_connections_and_choices() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.direct(&alice, &bob).await;
    let mut alice_socket = app.connect(&alice, None).await;
    let bob_socket = app.connect(&bob, None).await;

    let online = alice_socket.expect("user.status").await;
    assert_eq!(online["user_id"], bob.id);
    assert_eq!(online["status"], "online");
    let status = app
        .get_as(&alice, &format!("/api/users/{}/status", bob.id))
        .await;
    assert_eq!(status.body["status"], "online");

    app.put_as(
        &bob,
        &format!("/api/users/{}/status", bob.id),
        json!({"status": "away"}),
    )
    .await;
    let away = alice_socket.expect("user.status").await;
    assert_eq!(away["status"], "away");
    app.put_as(
        &bob,
        &format!("/api/users/{}/status", bob.id),
        json!({"status": "online"}),
    )
    .await;
    assert_eq!(alice_socket.expect("user.status").await["status"], "online");

    bob_socket.drop_abruptly();
    let offline = alice_socket.expect("user.status").await;
    assert_eq!(offline["user_id"], bob.id);
    assert_eq!(offline["status"], "offline");
    assert!(offline["last_seen"].is_string());
    assert!(connection_ids(&app, bob.id).await.is_empty());
}

#[tokio::test]
async fn a_scoped_connection_sees_only_its_chat() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let one = app.group(&alice, "one", &[&bob]).await;
    let two = app.group(&alice, "two", &[&bob]).await;
    let mut scoped = app.connect(&bob, Some(one)).await;
    let mut everything = app.connect(&bob, None).await;

    app.send(&alice, two, "in two").await;
    app.send(&alice, one, "in one").await;
    let event = scoped.expect("message.created").await;
    assert_eq!(event["chat_id"], one);
    scoped.expect_quiet().await;
    assert_eq!(everything.expect("message.created").await["chat_id"], two);
    assert_eq!(everything.expect("message.created").await["chat_id"], one);

    // Frames on a scoped connection default to its chat.
    scoped
        .send(json!({"action": "sendMessage", "content": "from the scope"}))
        .await;
    assert_eq!(scoped.expect("ack").await["message"]["chat_id"], one);
    assert_eq!(
        scoped.expect("message.created").await["message"]["content"],
        "from the scope"
    );
    scoped
        .send(json!({"action": "typing", "chat_id": two}))
        .await;
    assert_eq!(scoped.expect("error").await["code"], "out_of_scope");
}

#[tokio::test]
async fn bad_tokens_and_foreign_chats_are_refused_at_connect() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let chat = app.group(&alice, "private", &[&bob]).await;
    assert_eq!(app.try_connect("not-a-token", None).await.err(), Some(401));
    assert_eq!(app.try_connect("", None).await.err(), Some(401));
    assert_eq!(
        app.try_connect(&carol.token, Some(chat)).await.err(),
        Some(403)
    );
    assert_eq!(
        app.try_connect(&carol.token, Some(999_999)).await.err(),
        Some(403)
    );
    assert!(connection_ids(&app, carol.id).await.is_empty());
    assert!(app.try_connect(&bob.token, Some(chat)).await.is_ok());
}

#[tokio::test]
async fn bad_frames_get_an_error_and_the_connection_stays_open() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let mut socket = app.connect(&alice, None).await;
    socket.send(json!({"action": "dance"})).await;
    assert_eq!(socket.expect("error").await["code"], "unknown_action");
    socket.send(json!("just a string")).await;
    assert_eq!(socket.expect("error").await["code"], "unknown_action");
    socket
        .send(json!({"action": "sendMessage", "chat_id": 12345, "content": "hi"}))
        .await;
    let refused = socket.expect("error").await;
    assert_eq!(refused["code"], "not_found");
    assert!(refused.get("client_id").is_none(), "{refused}");
    // A refused send names its client_id, so the client knows which send to retry.
    socket
        .send(
            json!({"action": "sendMessage", "chat_id": 12345, "content": "hi", "client_id": "k-9"}),
        )
        .await;
    let refused = socket.expect("error").await;
    assert_eq!(refused["code"], "not_found");
    assert_eq!(refused["client_id"], "k-9");
    socket
        .send(json!({"action": "sendMessage", "chat_id": 1}))
        .await;
    assert_eq!(socket.expect("error").await["code"], "invalid_frame");
    socket.send(json!({"action": "ping"})).await;
    assert_eq!(socket.expect("pong").await, json!({"type": "pong"}));
}

#[tokio::test]
async fn an_abruptly_closed_socket_is_forgotten_and_others_still_receive() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let mut alice_socket = app.connect(&alice, None).await;
    let bob_socket = app.connect(&bob, None).await;
    alice_socket.expect_status(&bob, "online").await;
    assert_eq!(connection_ids(&app, bob.id).await.len(), 1);

    bob_socket.drop_abruptly();
    alice_socket.expect_status(&bob, "offline").await;
    // API Gateway's $disconnect is best effort: a row may outlive its socket. One is made here
    // by hand, as if that had happened, after the socket the gateway saw close.
    sqlx::query(
        "INSERT INTO ws_connections (connection_id, user_id) VALUES ('LostDisconnect=', $1)",
    )
    .bind(bob.id)
    .execute(&app.db.pool)
    .await
    .expect("insert");

    app.send(&alice, chat, "still delivered").await;
    assert_eq!(
        alice_socket.expect("message.created").await["message"]["content"],
        "still delivered"
    );
    // $disconnect deleted the real socket's row; the push met 410 Gone for the other.
    assert!(connection_ids(&app, bob.id).await.is_empty());
}

#[tokio::test]
async fn the_management_endpoint_answers_the_real_sdk_client() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let mut socket = app.connect(&alice, None).await;
    let id = connection_ids(&app, alice.id)
        .await
        .pop()
        .expect("a connection");

    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(blockchat::realtime::push::http_client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(format!("http://{}", app.gateway().ws_addr()))
        .build();
    let sdk = aws_sdk_apigatewaymanagement::Client::from_conf(config);

    sdk.post_to_connection()
        .connection_id(&id)
        .data(Blob::new(br#"{"type":"hello"}"#.to_vec()))
        .send()
        .await
        .expect("post to a live connection");
    assert_eq!(socket.expect("hello").await, json!({"type": "hello"}));

    let described = sdk
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("get");
    assert!(described.connected_at().is_some());
    assert_eq!(
        described.identity().and_then(|i| i.source_ip()),
        Some("127.0.0.1")
    );

    let too_big = sdk
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(vec![b'x'; 129 * 1024]))
        .send()
        .await
        .expect_err("over 128 KiB");
    assert_eq!(
        too_big.as_service_error().and_then(|e| e.code()),
        Some("PayloadTooLargeException")
    );

    sdk.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("delete");
    assert!(socket.closed().await, "DELETE closes the socket");
    let gone = sdk
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(b"late".to_vec()))
        .send()
        .await
        .expect_err("the connection is gone");
    let service = gone.into_service_error();
    assert!(service.is_gone_exception(), "{service:?}");
    // $disconnect ran, so the row is gone too.
    for _ in 0..50 {
        if connection_ids(&app, alice.id).await.is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the connection row outlived DELETE @connections");
}

#[tokio::test]
async fn browsers_can_send_the_token_as_a_subprotocol_and_get_one_echoed() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let mut request = app.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("bearer, {}", alice.token).parse().expect("header"),
    );
    let (_socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("a token in Sec-WebSocket-Protocol is accepted");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("bearer"),
        "the server must name one of the offered protocols"
    );
    assert_eq!(connection_ids(&app, alice.id).await.len(), 1);

    let mut request = app.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", alice.token).parse().expect("header"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("an Authorization header is accepted");
}

#[tokio::test]
async fn connections_past_api_gateways_two_hour_limit_are_swept() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.direct(&alice, &bob).await;
    sqlx::query(
        "INSERT INTO ws_connections (connection_id, user_id, connected_at) \
         VALUES ('StaleConnection=', $1, now() - interval '3 hours')",
    )
    .bind(bob.id)
    .execute(&app.db.pool)
    .await
    .expect("insert");
    let status = app
        .get_as(&alice, &format!("/api/users/{}/status", bob.id))
        .await;
    assert_eq!(
        status.body["status"], "online",
        "a stale row still looks live"
    );

    let _alice_socket = app.connect(&alice, None).await;
    assert!(connection_ids(&app, bob.id).await.is_empty());
    let status = app
        .get_as(&alice, &format!("/api/users/{}/status", bob.id))
        .await;
    assert_eq!(status.body["status"], "offline");
}

#[tokio::test]
async fn a_user_who_shares_no_chat_with_another_sees_none_of_their_presence() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    app.direct(&alice, &bob).await;
    // Carol has a chat, with Dave only.
    app.direct(&carol, &dave).await;
    let mut alice_socket = app.connect(&alice, None).await;
    let mut carol_socket = app.connect(&carol, None).await;

    let bob_socket = app.connect(&bob, None).await;
    alice_socket.expect_status(&bob, "online").await;
    app.put_as(
        &bob,
        &format!("/api/users/{}/status", bob.id),
        json!({"status": "away"}),
    )
    .await;
    alice_socket.expect_status(&bob, "away").await;
    bob_socket.drop_abruptly();
    alice_socket.expect_status(&bob, "offline").await;

    // Carol's socket is live, and heard nothing of Bob.
    carol_socket.send(json!({"action": "ping"})).await;
    assert_eq!(carol_socket.expect("pong").await, json!({"type": "pong"}));
    carol_socket.expect_quiet().await;
    // Her own contact is still told of her.
    let _dave_socket = app.connect(&dave, None).await;
    carol_socket.expect_status(&dave, "online").await;
    alice_socket.expect_quiet().await;
}

#[tokio::test]
async fn a_connection_whose_disconnect_never_came_is_deleted_when_a_push_meets_410() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let chat = app.group(&alice, "team", &[&bob, &carol]).await;
    let mut alice_socket = app.connect(&alice, None).await;
    let mut carol_socket = app.connect(&carol, None).await;
    alice_socket.expect_status(&carol, "online").await;
    let mut bob_socket = app.connect(&bob, None).await;
    for socket in [&mut alice_socket, &mut carol_socket] {
        socket.expect_status(&bob, "online").await;
    }
    let bobs = connection_ids(&app, bob.id).await;
    assert_eq!(bobs.len(), 1);

    // The gateway loses the connection and never runs $disconnect for it.
    assert!(
        app.gateway()
            .websocket_api()
            .drop_without_disconnect(&bobs[0])
    );
    assert!(bob_socket.closed().await, "bob's socket is gone");
    // Nobody was told Bob went offline, and his row is still there.
    alice_socket.expect_quiet().await;
    assert_eq!(connection_ids(&app, bob.id).await, bobs);

    app.send(&alice, chat, "anyone there?").await;
    for socket in [&mut alice_socket, &mut carol_socket] {
        let event = socket.expect("message.created").await;
        assert_eq!(event["message"]["content"], "anyone there?");
    }
    // The push met 410 Gone at @connections for Bob's and deleted the row before answering.
    assert!(connection_ids(&app, bob.id).await.is_empty());
    let status = app
        .get_as(&alice, &format!("/api/users/{}/status", bob.id))
        .await;
    assert_eq!(status.body["status"], "offline");
    app.send(&carol, chat, "still here").await;
    assert_eq!(
        alice_socket.expect("message.created").await["message"]["content"],
        "still here"
    );
}

/// API Gateway calls a connection gone (410) until its `$connect` has returned, so a 410 for a
/// connection stored moments ago must not delete it: another device of the user opening at the
/// same moment would otherwise lose the row of one that is about to be live.
#[tokio::test]
async fn a_410_for_a_connection_that_may_still_be_opening_keeps_it() {
    let app = TestApp::spawn_with(&[("WS_CONNECT_WINDOW_MS", "30000")]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let mut alice_socket = app.connect(&alice, None).await;
    let bob_socket = app.connect(&bob, None).await;
    alice_socket.expect_status(&bob, "online").await;
    let bobs = connection_ids(&app, bob.id).await;
    assert_eq!(bobs.len(), 1);
    // The gateway does not know the connection (as API Gateway during `$connect`).
    assert!(
        app.gateway()
            .websocket_api()
            .drop_without_disconnect(&bobs[0])
    );
    drop(bob_socket);

    app.send(&alice, chat, "hello").await;
    assert_eq!(
        alice_socket.expect("message.created").await["message"]["content"],
        "hello"
    );
    assert_eq!(
        connection_ids(&app, bob.id).await,
        bobs,
        "a connection within the window is kept on 410"
    );
}

/// Alice, the admin of a group with Bob and Carol, goes by a DELETE of the path that `going`
/// makes of the chat and her id (with her password, which deleting the account takes and leaving
/// ignores). Carol must hear Bob named the new admin, Bob having joined first.
async fn the_admin_goes_and_member_removed_names_the_new_admin(going: fn(i64, i64) -> String) {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let chat = app.group(&alice, "team", &[&bob, &carol]).await;
    let mut carol_socket = app.connect(&carol, None).await;

    let gone = app
        .call(
            reqwest::Method::DELETE,
            &going(chat, alice.id),
            Some(&alice.token),
            Some(json!({"current_password": crate::client::PASSWORD})),
        )
        .await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    let removed = carol_socket.expect("member.removed").await;
    assert_eq!(removed["chat_id"], chat);
    assert_eq!(removed["user_id"], alice.id);
    assert_eq!(removed["new_admin"], bob.id, "{removed}");
    assert_eq!(app.chat_as(&bob, chat).await["role"], "admin");
    carol_socket.expect_quiet().await;
}

#[tokio::test]
async fn when_the_admin_leaves_member_removed_names_the_new_admin() {
    the_admin_goes_and_member_removed_names_the_new_admin(|chat, alice| {
        format!("/api/chats/{chat}/members/{alice}")
    })
    .await;
}

/// As when the admin leaves: deleting the account hands the role over the same way.
#[tokio::test]
async fn when_the_admin_deletes_their_account_member_removed_names_the_new_admin() {
    the_admin_goes_and_member_removed_names_the_new_admin(|_, alice| format!("/api/users/{alice}"))
        .await;
}
