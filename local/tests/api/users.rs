//! Profiles, search and presence, as a client sees them.

use crate::client::PASSWORD;
use crate::common::TestApp;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn users_can_be_listed_searched_and_paged() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    for name in ["bob", "bobby", "Bora", "carol"] {
        app.user(name).await;
    }
    let all = app.get_as(&alice, "/api/users").await;
    assert_eq!(all.status, 200);
    assert_eq!(all.body.as_array().expect("array").len(), 5);
    assert!(
        all.body[1].get("email").is_none(),
        "others' email stays private"
    );

    let bo = app.get_as(&alice, "/api/users/?q=BO").await;
    let names: Vec<&str> = bo
        .body
        .as_array()
        .expect("array")
        .iter()
        .map(|u| u["username"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["bob", "bobby", "Bora"]);

    let first = app.get_as(&alice, "/api/users?limit=2").await;
    assert_eq!(first.body.as_array().expect("array").len(), 2);
    let cursor = first
        .header("x-next-cursor")
        .expect("a full page names the next")
        .to_owned();
    let second = app
        .get_as(&alice, &format!("/api/users?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(second.body[0]["username"], "bobby");
    let skipped = app.get_as(&alice, "/api/users?skip=4").await;
    assert_eq!(skipped.body[0]["username"], "carol");

    app.get_as(&alice, "/api/users?limit=0")
        .await
        .assert_problem(422, "validation_failed");
    app.get_as(&alice, "/api/users?cursor=zzz")
        .await
        .assert_problem(422, "validation_failed");
    app.call(Method::GET, "/api/users", None, None)
        .await
        .assert_problem(401, "missing_token");
}

#[tokio::test]
async fn a_user_is_visible_by_id_and_absent_ids_are_404() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let reply = app.get_as(&alice, &format!("/api/users/{}", bob.id)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["username"], "bob");
    assert!(reply.body.get("email").is_none());
    app.get_as(&alice, "/api/users/999999")
        .await
        .assert_problem(404, "not_found");
    app.get_as(&alice, "/api/users/abc")
        .await
        .assert_problem(422, "validation_failed");
}

#[tokio::test]
async fn users_change_their_own_profile_only() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let reply = app
        .put_as(
            &alice,
            &format!("/api/users/{}", alice.id),
            json!({"display_name": "Alice A.", "username": "alice_a"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["display_name"], "Alice A.");
    assert_eq!(reply.body["username"], "alice_a");

    app.put_as(
        &bob,
        &format!("/api/users/{}", alice.id),
        json!({"display_name": "hacked"}),
    )
    .await
    .assert_problem(403, "not_yourself");
    app.delete_as(&bob, &format!("/api/users/{}", alice.id))
        .await
        .assert_problem(403, "not_yourself");
    app.put_as(
        &alice,
        &format!("/api/users/{}", alice.id),
        json!({"username": "BOB"}),
    )
    .await
    .assert_problem(409, "username_taken");
    app.put_as(
        &alice,
        &format!("/api/users/{}", alice.id),
        json!({"email": "nope"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let me = app.get_as(&alice, "/api/auth/me").await;
    assert_eq!(me.body["display_name"], "Alice A.");
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_other_sessions() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let other_session = app.login("alice", PASSWORD).await;
    let other_refresh = other_session.body["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let path = format!("/api/users/{}", alice.id);

    app.put_as(&alice, &path, json!({"password": "a brand new password"}))
        .await
        .assert_problem(422, "validation_failed");
    app.put_as(
        &alice,
        &path,
        json!({"password": "a brand new password", "current_password": "wrong one"}),
    )
    .await
    .assert_problem(403, "wrong_password");
    let ok = app
        .put_as(
            &alice,
            &path,
            json!({"password": "a brand new password", "current_password": PASSWORD}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    let old = app.login("alice", PASSWORD).await;
    old.assert_problem(401, "invalid_credentials");
    let new = app.login("alice", "a brand new password").await;
    assert_eq!(new.status, 200);
    // The other session's refresh token is revoked; this session's survives.
    let other = app
        .call(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": other_refresh})),
        )
        .await;
    other.assert_problem(401, "invalid_refresh_token");
    let mine = app
        .call(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": alice.refresh_token})),
        )
        .await;
    assert_eq!(mine.status, 200, "{}", mine.body);
}

#[tokio::test]
async fn deleting_an_account_keeps_its_messages_as_from_a_deleted_account() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.group(&alice, "team", &[&bob]).await;
    app.send(&bob, chat, "hello from bob").await;

    let reply = app.delete_account(&bob).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    app.get_as(&bob, "/api/auth/me")
        .await
        .assert_problem(401, "account_deleted");
    app.get_as(&alice, &format!("/api/users/{}", bob.id))
        .await
        .assert_problem(404, "not_found");
    let login = app.login("bob", PASSWORD).await;
    login.assert_problem(401, "invalid_credentials");

    let messages = app
        .get_as(&alice, &format!("/api/chats/{chat}/messages"))
        .await;
    assert_eq!(messages.body[0]["content"], "hello from bob");
    assert!(messages.body[0]["user_id"].is_null());
    assert!(messages.body[0]["user"].is_null());
    let chat_view = app.get_as(&alice, &format!("/api/chats/{chat}")).await;
    assert_eq!(chat_view.body["users"].as_array().expect("users").len(), 1);
}

#[tokio::test]
async fn status_can_be_read_and_chosen() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let path = format!("/api/users/{}/status", alice.id);
    let reply = app.get_as(&bob, &path).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["user_id"], alice.id);
    assert_eq!(reply.body["status"], "offline", "no live connection");
    assert!(
        reply.body["last_seen"].as_str().is_some(),
        "logging in is being seen"
    );

    let set = app.put_as(&alice, &path, json!({"status": "away"})).await;
    assert_eq!(set.status, 200, "{}", set.body);
    app.put_as(&bob, &path, json!({"status": "away"}))
        .await
        .assert_problem(403, "not_yourself");
    app.put_as(&alice, &path, json!({"status": "sleeping"}))
        .await
        .assert_problem(422, "validation_failed");
    let choice: String = sqlx::query_scalar("SELECT status_choice FROM users WHERE id = $1")
        .bind(alice.id)
        .fetch_one(&app.db.pool)
        .await
        .expect("row");
    assert_eq!(choice, "away");
}
