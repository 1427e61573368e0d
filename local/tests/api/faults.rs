//! Pushes against a management endpoint that misbehaves: the local `@connections` told to
//! throttle, fail or hold a share of posts, as API Gateway may. A send is stored and answered
//! whatever the endpoint does; members get each event once.

use std::time::{Duration, Instant};

use blockchat_local::PushFaults;
use serde_json::Value;

use crate::client::Socket;
use crate::common::TestApp;
use crate::realtime::connection_ids;

fn faults(spec: &str) -> PushFaults {
    spec.parse().expect("a valid fault specification")
}

/// The ids of the `message.created` events a socket gets until it has been quiet for a second
/// (other events, such as presence, are passed over).
async fn created_ids(socket: &mut Socket) -> Vec<i64> {
    let mut ids = Vec::new();
    while let Some(frame) = socket.next_within(Duration::from_secs(1)).await {
        if frame["type"] == "message.created" {
            ids.push(frame["message"]["id"].as_i64().expect("message id"));
        }
    }
    ids
}

fn id(message: &Value) -> i64 {
    message["id"].as_i64().expect("message id")
}

#[tokio::test]
async fn throttled_posts_are_retried_and_every_member_gets_each_message_once() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let chat = app.group(&alice, "team", &[&bob, &carol]).await;
    let mut sockets = vec![
        app.connect(&alice, None).await,
        app.connect(&bob, None).await,
        app.connect(&bob, Some(chat)).await,
        app.connect(&carol, None).await,
    ];
    for socket in &mut sockets {
        created_ids(socket).await;
    }

    app.gateway().set_push_faults(faults("throttle=0.25"));
    let mut sent = Vec::new();
    for n in 0..10 {
        sent.push(id(&app.send(&alice, chat, &format!("message {n}")).await));
    }

    for socket in &mut sockets {
        assert_eq!(
            created_ids(socket).await,
            sent,
            "each message once, in order"
        );
    }
    let injected = app.gateway().push_fault_counts();
    assert!(
        injected.throttled > 0,
        "no post was throttled: {injected:?}"
    );
    let pushed = app.gateway().push_totals();
    assert!(pushed.retried as u64 >= injected.throttled, "{pushed:?}");
    assert_eq!(pushed.failed, 0, "{pushed:?}");
}

#[tokio::test]
async fn with_every_post_failing_sends_still_answer_and_are_stored() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let mut bob_socket = app.connect(&bob, None).await;

    app.gateway().set_push_faults(faults("fail=1"));
    assert_eq!(app.gateway().push_faults(), faults("fail=1"));
    let mut sent = Vec::new();
    for content in ["one", "two", "three"] {
        sent.push(app.send(&alice, chat, content).await);
    }

    bob_socket.expect_quiet().await;
    let listed = app.messages(&bob, chat, "?after_seq=0").await;
    let contents: Vec<&str> = listed
        .iter()
        .map(|m| m["content"].as_str().expect("content"))
        .collect();
    assert_eq!(contents, ["one", "two", "three"]);
    // Each post was tried three times (a server error is retried twice), then given up.
    assert_eq!(app.gateway().push_fault_counts().failed, 3 * 3);
    let pushed = app.gateway().push_totals();
    assert_eq!((pushed.failed, pushed.retried), (3, 3 * 2), "{pushed:?}");
    // A failing endpoint is not a gone connection: Bob's stays, and hears again once it heals.
    assert_eq!(connection_ids(&app, bob.id).await.len(), 1);
    app.gateway().clear_push_faults();
    let after = app.send(&alice, chat, "healed").await;
    assert_eq!(
        bob_socket.expect("message.created").await["message"]["id"],
        after["id"]
    );
    assert_eq!(app.gateway().push_faults(), PushFaults::NONE);
}

#[tokio::test]
async fn a_gone_connection_is_deleted_while_posts_are_throttled() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let mut phone = app.connect(&bob, None).await;
    let laptop = app.connect(&bob, None).await;
    created_ids(&mut phone).await;
    let both = connection_ids(&app, bob.id).await;
    assert_eq!(both.len(), 2);
    // The laptop's connection is lost without a `$disconnect`: only a push can find out.
    let lost = both[1].clone();
    assert!(app.gateway().websocket_api().drop_without_disconnect(&lost));
    drop(laptop);

    app.gateway().set_push_faults(faults("throttle=0.25"));
    let sent = app.send(&alice, chat, "still there?").await;

    assert_eq!(created_ids(&mut phone).await, [id(&sent)]);
    let left = connection_ids(&app, bob.id).await;
    assert!(!left.contains(&lost), "the gone connection was deleted");
    assert_eq!(left.len(), 1);
    assert_eq!(app.gateway().push_totals().gone, 1);
}

#[tokio::test]
async fn a_slow_endpoint_cannot_hold_a_send_past_the_push_timeout() {
    // Each post may take 60 s, but all of a send's pushes only 1 s.
    let app = TestApp::spawn_with(&[
        ("PUSH_TIMEOUT_MS", "1000"),
        ("PUSH_POST_TIMEOUT_MS", "60000"),
    ])
    .await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    let _bob_socket = app.connect(&bob, None).await;
    app.gateway().set_push_faults(faults("slow=1:120s"));

    let started = Instant::now();
    let sent = app.send(&alice, chat, "no waiting").await;
    let took = started.elapsed();

    assert!(
        took < Duration::from_secs(20),
        "the send waited {took:?} for its push"
    );
    assert_eq!(app.gateway().push_fault_counts().slowed, 1);
    assert_eq!(app.gateway().push_totals().failed, 1);
    let listed = app.messages(&bob, chat, "").await;
    assert_eq!(listed[0]["id"], sent["id"]);
}
