//! Consent: blocks, who may add whom to groups, and names that cannot pose as others.

use serde_json::json;

use crate::client::{User, ids};
use crate::common::TestApp;

async fn block(app: &TestApp, blocker: &User, blocked: &User) {
    let reply = app
        .post_as(
            blocker,
            &format!("/api/users/{}/block", blocked.id),
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 204, "block: {}", reply.body);
}

#[tokio::test]
async fn blocks_are_listed_idempotent_and_lifted() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;

    block(&app, &alice, &carol).await;
    block(&app, &alice, &bob).await;
    block(&app, &alice, &bob).await;
    let listed = app.get_as(&alice, "/api/users/me/blocks").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(ids(&listed.body), vec![bob.id, carol.id]);
    assert!(listed.body[0].get("email").is_none(), "{}", listed.body);

    let first = app.get_as(&alice, "/api/users/me/blocks?limit=1").await;
    assert_eq!(ids(&first.body), vec![bob.id]);
    let cursor = first
        .header("x-next-cursor")
        .expect("a next page")
        .to_owned();
    let second = app
        .get_as(
            &alice,
            &format!("/api/users/me/blocks?limit=1&cursor={cursor}"),
        )
        .await;
    assert_eq!(ids(&second.body), vec![carol.id]);
    // Bob's own list is his alone.
    assert_eq!(
        ids(&app.get_as(&bob, "/api/users/me/blocks").await.body),
        Vec::<i64>::new()
    );

    for _ in 0..2 {
        let reply = app
            .delete_as(&alice, &format!("/api/users/{}/block", bob.id))
            .await;
        assert_eq!(reply.status, 204, "unblock: {}", reply.body);
    }
    let listed = app.get_as(&alice, "/api/users/me/blocks").await;
    assert_eq!(ids(&listed.body), vec![carol.id]);

    app.post_as(&alice, "/api/users/987654321/block", json!({}))
        .await
        .assert_problem(404, "not_found");
    app.post_as(&alice, &format!("/api/users/{}/block", alice.id), json!({}))
        .await
        .assert_problem(403, "cannot_block_self");
    app.delete_as(&alice, &format!("/api/users/{}/block", alice.id))
        .await
        .assert_problem(403, "cannot_block_self");
}

#[tokio::test]
async fn a_blocked_user_cannot_open_a_direct_chat_with_the_blocker() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let mallory = app.user("mallory").await;
    block(&app, &alice, &mallory).await;

    let reply = app
        .post_as(&mallory, "/api/chats", json!({"user_ids": [alice.id]}))
        .await;
    reply.assert_problem(403, "blocked");
    assert_eq!(reply.body["user_ids"], json!([alice.id]));
    let alice_chats = app.get_as(&alice, "/api/chats").await;
    assert_eq!(
        ids(&alice_chats.body),
        Vec::<i64>::new(),
        "no chat was made"
    );

    // Lifted, the chat can be opened.
    app.delete_as(&alice, &format!("/api/users/{}/block", mallory.id))
        .await;
    let reply = app
        .post_as(&mallory, "/api/chats", json!({"user_ids": [alice.id]}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[tokio::test]
async fn a_blocked_user_cannot_add_the_blocker_to_a_group() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mallory = app.user("mallory").await;
    block(&app, &alice, &mallory).await;

    let reply = app
        .post_as(
            &mallory,
            "/api/chats",
            json!({"name": "trap", "user_ids": [bob.id, alice.id]}),
        )
        .await;
    reply.assert_problem(403, "blocked");
    assert_eq!(reply.body["user_ids"], json!([alice.id]));
    assert_eq!(
        ids(&app.get_as(&bob, "/api/chats").await.body),
        Vec::<i64>::new()
    );

    let chat = app.group(&mallory, "later", &[&bob]).await;
    let reply = app
        .post_as(
            &mallory,
            &format!("/api/chats/{chat}/members"),
            json!({"user_ids": [alice.id]}),
        )
        .await;
    reply.assert_problem(403, "blocked");
    assert_eq!(
        ids(&app.get_as(&alice, "/api/chats").await.body),
        Vec::<i64>::new()
    );
    // Others are still added.
    let carol = app.user("carol").await;
    let reply = app
        .post_as(
            &mallory,
            &format!("/api/chats/{chat}/members"),
            json!([carol.id]),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn typing_from_a_blocked_user_does_not_reach_the_blocker() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mallory = app.user("mallory").await;
    let chat = app.group(&bob, "shared", &[&alice, &mallory]).await;
    block(&app, &alice, &mallory).await;
    let mut mallory_socket = app.connect(&mallory, Some(chat)).await;
    let mut alice_socket = app.connect(&alice, None).await;
    let mut bob_socket = app.connect(&bob, None).await;
    alice_socket.expect_status(&bob, "online").await;

    mallory_socket
        .send(json!({"action": "typing", "chat_id": chat}))
        .await;
    let typing = bob_socket.expect("typing").await;
    assert_eq!(typing["user_id"], mallory.id);
    alice_socket.expect_quiet().await;

    // Bob's typing still reaches Alice.
    bob_socket
        .send(json!({"action": "typing", "chat_id": chat}))
        .await;
    assert_eq!(alice_socket.expect("typing").await["user_id"], bob.id);
}

#[tokio::test]
async fn privacy_decides_who_may_add_a_user_to_groups() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let friend = app.user("friend").await;
    let stranger = app.user("stranger").await;
    let direct = app.direct(&alice, &friend).await;

    let me = app.get_as(&alice, "/api/users/me").await;
    assert_eq!(me.body["add_to_groups"], "everyone", "{}", me.body);
    let public = app
        .get_as(&friend, &format!("/api/users/{}", alice.id))
        .await;
    assert!(
        public.body.get("add_to_groups").is_none(),
        "{}",
        public.body
    );

    let set = app
        .put_as(
            &alice,
            &format!("/api/users/{}", alice.id),
            json!({"add_to_groups": "contacts"}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["add_to_groups"], "contacts");
    assert_eq!(
        app.get_as(&alice, "/api/auth/me").await.body["add_to_groups"],
        "contacts"
    );

    // A stranger shares no chat with Alice: the whole request is refused, naming her.
    let reply = app
        .post_as(
            &stranger,
            "/api/chats",
            json!({"name": "spam", "user_ids": [friend.id, alice.id]}),
        )
        .await;
    reply.assert_problem(403, "not_allowed_to_add");
    assert_eq!(reply.body["user_ids"], json!([alice.id]));
    assert_eq!(
        ids(&app.get_as(&friend, "/api/chats").await.body),
        vec![direct],
        "no group was made"
    );
    let chat = app.group(&stranger, "spam", &[&friend]).await;
    app.post_as(
        &stranger,
        &format!("/api/chats/{chat}/members"),
        json!([alice.id]),
    )
    .await
    .assert_problem(403, "not_allowed_to_add");
    // A contact may.
    let group = app.group(&friend, "friends", &[&alice]).await;

    let set = app
        .put_as(
            &alice,
            &format!("/api/users/{}", alice.id),
            json!({"add_to_groups": "nobody"}),
        )
        .await;
    assert_eq!(set.body["add_to_groups"], "nobody", "{}", set.body);
    app.post_as(
        &friend,
        "/api/chats",
        json!({"name": "again", "is_group_chat": true, "user_ids": [alice.id]}),
    )
    .await
    .assert_problem(403, "not_allowed_to_add");
    // Re-adding a member changes nothing and is not a refusal; a direct chat is not a group.
    let again = app
        .post_as(
            &friend,
            &format!("/api/chats/{group}/members"),
            json!([alice.id]),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    let direct = app
        .post_as(&stranger, "/api/chats", json!({"user_ids": [alice.id]}))
        .await;
    assert_eq!(direct.status, 201, "{}", direct.body);

    app.put_as(
        &alice,
        &format!("/api/users/{}", alice.id),
        json!({"add_to_groups": "friends"}),
    )
    .await
    .assert_problem(422, "validation_failed");
}

#[tokio::test]
async fn names_with_bidi_controls_or_zero_width_characters_are_422() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    for bad in [
        "ad\u{202e}nim",
        "ad\u{200b}min",
        "\u{2066}admin\u{2069}",
        "ad\u{feff}min",
    ] {
        app.put_as(
            &alice,
            &format!("/api/users/{}", alice.id),
            json!({"display_name": bad}),
        )
        .await
        .assert_problem(422, "validation_failed");
        app.put_as(
            &alice,
            &format!("/api/users/{}", alice.id),
            json!({"username": bad}),
        )
        .await
        .assert_problem(422, "validation_failed");
        app.post_as(
            &alice,
            "/api/auth/register",
            json!({"username": bad, "email": "x@example.com", "password": "long enough pw"}),
        )
        .await
        .assert_problem(422, "validation_failed");
        app.post_as(
            &alice,
            "/api/chats",
            json!({"name": bad, "is_group_chat": true, "user_ids": [bob.id]}),
        )
        .await
        .assert_problem(422, "validation_failed");
    }
    let chat = app.group(&alice, "fine", &[&bob]).await;
    app.put_as(
        &alice,
        &format!("/api/chats/{chat}"),
        json!({"name": "ad\u{202e}nim"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let kept = app
        .put_as(
            &alice,
            &format!("/api/users/{}", alice.id),
            json!({"display_name": "Zoë 🙂"}),
        )
        .await;
    assert_eq!(kept.body["display_name"], "Zoë 🙂", "{}", kept.body);
}

#[tokio::test]
async fn the_openapi_document_describes_blocks_privacy_and_member_pages() {
    let app = TestApp::spawn().await;
    let doc = app
        .call(reqwest::Method::GET, "/api/openapi.json", None, None)
        .await
        .body;
    let paths = &doc["paths"];
    assert!(
        paths["/api/users/me/blocks"]["get"].is_object(),
        "blocks list"
    );
    assert!(
        paths["/api/users/{user_id}/block"]["post"].is_object(),
        "block"
    );
    assert!(
        paths["/api/users/{user_id}/block"]["delete"].is_object(),
        "unblock"
    );
    assert!(
        paths["/api/chats/{chat_id}/members"]["get"].is_object(),
        "members"
    );
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["Problem"]["properties"]["user_ids"].is_object());
    assert!(schemas["ChatView"]["properties"]["member_count"].is_object());
    assert!(schemas["UserView"]["properties"]["add_to_groups"].is_object());
    assert!(schemas["ProfileUpdate"]["properties"]["add_to_groups"].is_object());
    let member = schemas["MemberView"].to_string();
    for field in ["role", "joined_at", "UserView"] {
        assert!(member.contains(field), "MemberView lacks {field}: {member}");
    }
    let forbidden = paths["/api/chats"]["post"]["responses"]["403"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(forbidden.contains("not_allowed_to_add"), "{forbidden}");
}
