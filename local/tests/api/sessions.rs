//! Sessions and the limits on guessing, as an attacker would try them: parallel guesses, a
//! token kept after logout or a password change, replayed refresh tokens, a flood of sign-ups.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{PASSWORD, Reply, User};
use crate::common::TestApp;

/// The statuses of many answers, counted.
fn tally(replies: &[Reply]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for reply in replies {
        *counts.entry(reply.status).or_default() += 1;
    }
    counts
}

/// Every answer is `allowed` or a 429 with a `Retry-After` of whole seconds within the window;
/// at most `limit` were `allowed`, and the others were refused.
#[track_caller]
fn at_most_limit_tried(replies: &[Reply], allowed: u16, limit: usize) {
    let counts = tally(replies);
    let tried = counts.get(&allowed).copied().unwrap_or(0);
    let refused = counts.get(&429).copied().unwrap_or(0);
    assert!(
        tried <= limit,
        "{tried} tried, the limit is {limit}: {counts:?}"
    );
    assert_eq!(tried + refused, replies.len(), "{counts:?}");
    for reply in replies.iter().filter(|r| r.status == 429) {
        reply.assert_problem(429, "too_many_requests");
        let secs: u64 = reply
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=900).contains(&secs), "{secs}");
    }
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

fn access_token(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// A second session of `user`, as another device would log in.
async fn another_session(app: &TestApp, user: &User) -> User {
    let login = app.login(&user.username, PASSWORD).await;
    User {
        token: access_token(&login),
        refresh_token: login.body["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned(),
        ..user.clone()
    }
}

/// The token is refused everywhere: `/me` (whose check is folded into its read) and routes
/// that check the session by itself.
async fn refused_everywhere(app: &TestApp, user: &User) {
    for path in ["/api/auth/me", "/api/users/me", "/api/chats", "/api/users"] {
        let reply = app.get_as(user, path).await;
        reply.assert_problem(401, "session_ended");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    }
    app.post_as(user, "/api/chats", json!({"user_ids": []}))
        .await
        .assert_problem(401, "session_ended");
    assert_eq!(
        app.try_connect(&user.token, None).await.err(),
        Some(401),
        "no new socket either"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_passwords_meet_429_after_the_limit() {
    let app = TestApp::spawn_with(&[("LOGIN_FAILURES_PER_ACCOUNT", "5")]).await;
    app.user("alice").await;
    let guesses = (0..40).map(|i| {
        // Username and email share the account's budget.
        let login = if i % 2 == 0 {
            "alice"
        } else {
            "ALICE@example.com"
        };
        app.login(login, "not the password")
    });
    let replies = futures::future::join_all(guesses).await;
    at_most_limit_tried(&replies, 401, 5);
    assert!(
        tally(&replies).get(&429).copied().unwrap_or(0) >= 35,
        "{:?}",
        tally(&replies)
    );
    // The right password waits out the window too.
    app.login("alice", PASSWORD)
        .await
        .assert_problem(429, "too_many_requests");
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT key FROM rate_limits")
        .fetch_all(&app.db.pool)
        .await
        .expect("keys");
    assert!(!stored.is_empty());
    for key in stored {
        let text = String::from_utf8_lossy(&key);
        assert!(
            key.len() == 32 && !text.contains("alice") && !text.contains("127.0.0.1"),
            "keys are stored hashed, not as typed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_current_password_guesses_meet_429_after_the_limit() {
    let app = TestApp::spawn_with(&[("LOGIN_FAILURES_PER_ACCOUNT", "5")]).await;
    let alice = app.user("alice").await;
    let path = format!("/api/users/{}", alice.id);
    let guesses = (0..30).map(|i| {
        app.put_as(
            &alice,
            &path,
            json!({"password": "a brand new password", "current_password": format!("guess {i}")}),
        )
    });
    let replies = futures::future::join_all(guesses).await;
    at_most_limit_tried(&replies, 403, 5);
    for reply in replies.iter().filter(|r| r.status == 403) {
        reply.assert_problem(403, "wrong_password");
    }
    // The same budget guards the login.
    app.login("alice", PASSWORD)
        .await
        .assert_problem(429, "too_many_requests");
}

#[tokio::test]
async fn logout_refuses_the_access_token_at_once_and_closes_its_sockets_only() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let laptop = another_session(&app, &alice).await;
    let mut phone_socket = app.connect(&alice, None).await;
    let mut laptop_socket = app.connect(&laptop, None).await;
    phone_socket.send(json!({"action": "ping"})).await;
    phone_socket.expect("pong").await;

    let out = app.logout(&alice).await;
    assert_eq!(out.status, 204, "{}", out.body);

    refused_everywhere(&app, &alice).await;
    assert!(
        phone_socket.closed().await,
        "the session's socket is closed"
    );
    app.refresh(&alice.refresh_token)
        .await
        .assert_problem(401, "invalid_refresh_token");

    // The other session lives on.
    laptop_socket.expect_quiet().await;
    laptop_socket.send(json!({"action": "ping"})).await;
    laptop_socket.expect("pong").await;
    assert_eq!(app.get_as(&laptop, "/api/auth/me").await.status, 200);
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_and_closes_their_sockets() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let laptop = another_session(&app, &alice).await;
    let tablet = another_session(&app, &alice).await;
    let mut phone_socket = app.connect(&alice, None).await;
    let mut laptop_socket = app.connect(&laptop, None).await;
    let mut tablet_socket = app.connect(&tablet, None).await;

    let changed = app
        .put_as(
            &alice,
            &format!("/api/users/{}", alice.id),
            json!({"password": "a brand new password", "current_password": PASSWORD}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);

    for other in [&laptop, &tablet] {
        refused_everywhere(&app, other).await;
        app.refresh(&other.refresh_token)
            .await
            .assert_problem(401, "invalid_refresh_token");
    }
    assert!(
        laptop_socket.closed().await,
        "the laptop's socket is closed"
    );
    assert!(
        tablet_socket.closed().await,
        "the tablet's socket is closed"
    );

    // The session that changed the password keeps working, socket and all.
    phone_socket.expect_quiet().await;
    phone_socket.send(json!({"action": "ping"})).await;
    phone_socket.expect("pong").await;
    assert_eq!(app.get_as(&alice, "/api/chats").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_refreshes_of_one_token_leave_no_live_token() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let session = claims(&alice.token)["sid"].as_i64().expect("sid");
    let mut socket = app.connect(&alice, None).await;

    let replays = (0..20).map(|_| app.refresh(&alice.refresh_token));
    let replies = futures::future::join_all(replays).await;
    let counts = tally(&replies);
    assert_eq!(
        counts.get(&200).copied().unwrap_or(0) + counts.get(&401).copied().unwrap_or(0),
        20,
        "{counts:?}"
    );
    assert!(counts.get(&401).copied().unwrap_or(0) >= 19, "{counts:?}");

    for winner in replies.iter().filter(|r| r.status == 200) {
        let refresh_token = winner.body["refresh_token"].as_str().expect("refresh");
        app.refresh(refresh_token)
            .await
            .assert_problem(401, "invalid_refresh_token");
        let user = User {
            token: access_token(winner),
            ..alice.clone()
        };
        app.get_as(&user, "/api/auth/me")
            .await
            .assert_problem(401, "session_ended");
    }
    refused_everywhere(&app, &alice).await;
    assert!(socket.closed().await, "the session's socket is closed");
    let revoked: bool =
        sqlx::query_scalar("SELECT revoked_at IS NOT NULL FROM sessions WHERE id = $1")
            .bind(session)
            .fetch_one(&app.db.pool)
            .await
            .expect("session row");
    assert!(revoked, "the session is revoked");
}

#[tokio::test]
async fn deleting_the_account_closes_all_its_sockets() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let laptop = another_session(&app, &alice).await;
    let mut sockets = vec![
        app.connect(&alice, None).await,
        app.connect(&laptop, None).await,
        app.connect(&laptop, None).await,
    ];
    let gone = app.delete_account(&alice).await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    for socket in &mut sockets {
        assert!(
            socket.closed().await,
            "every socket of the account is closed"
        );
    }
    app.get_as(&laptop, "/api/chats")
        .await
        .assert_problem(401, "session_ended");
    app.get_as(&laptop, "/api/auth/me")
        .await
        .assert_problem(401, "account_deleted");
}

#[tokio::test]
async fn deleting_the_account_and_changing_the_email_take_the_current_password() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let path = format!("/api/users/{}", alice.id);

    let bare = app.delete_as(&alice, &path).await;
    bare.assert_problem(422, "validation_failed");
    assert_eq!(bare.body["errors"][0]["field"], "current_password");
    app.call(
        Method::DELETE,
        &path,
        Some(&alice.token),
        Some(json!({"current_password": "not it"})),
    )
    .await
    .assert_problem(403, "wrong_password");

    let email = app
        .put_as(&alice, &path, json!({"email": "new@example.com"}))
        .await;
    email.assert_problem(422, "validation_failed");
    assert_eq!(email.body["errors"][0]["field"], "current_password");
    app.put_as(
        &alice,
        &path,
        json!({"email": "new@example.com", "current_password": "not it"}),
    )
    .await
    .assert_problem(403, "wrong_password");
    assert_eq!(
        app.get_as(&alice, "/api/auth/me").await.body["email"],
        "alice@example.com",
        "nothing changed"
    );
    let changed = app
        .put_as(
            &alice,
            &path,
            json!({"email": "new@example.com", "current_password": PASSWORD}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["email"], "new@example.com");
    // A display name alone needs no password.
    let renamed = app
        .put_as(&alice, &path, json!({"display_name": "Alice"}))
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(app.delete_account(&alice).await.status, 204);
}

#[tokio::test]
async fn registrations_are_limited_per_client_address() {
    let app = TestApp::spawn_with(&[("REGISTRATIONS_PER_ADDRESS", "3")]).await;
    let register = |client: &reqwest::Client, name: &str| {
        client
            .post(app.url("/api/auth/register"))
            .json(&json!({
                "username": name,
                "email": format!("{name}@example.com"),
                "password": PASSWORD,
            }))
            .send()
    };
    let here = &app.client;
    for name in ["ann", "ben", "cat"] {
        assert_eq!(register(here, name).await.expect("send").status(), 201);
    }
    let refused = register(here, "dan").await.expect("send");
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=3600).contains(&retry), "{retry}");
    let body: Value = refused.json().await.expect("problem");
    assert_eq!(body["code"], "too_many_requests");

    // Another address has a budget of its own.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    assert_eq!(
        register(&elsewhere, "dan").await.expect("send").status(),
        201
    );
}

#[tokio::test]
async fn token_answers_are_not_cached_and_access_tokens_are_typed_at_jwt() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let login = app.login("alice", PASSWORD).await;
    let refreshed = app.refresh(&alice.refresh_token).await;
    for reply in [&login, &refreshed] {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(reply.header("pragma"), Some("no-cache"));
        // The shape old clients read is unchanged.
        let mut fields: Vec<&str> = reply
            .body
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["access_token", "expires_in", "refresh_token", "token_type"]
        );
        let token = reply.body["access_token"].as_str().expect("token");
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().expect("header"))
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(header["typ"], "at+jwt");
        assert!(claims(token)["sid"].as_i64().is_some(), "names its session");
    }
}

#[tokio::test]
async fn a_session_ended_behind_the_apis_back_is_refused_on_the_next_request_and_frame() {
    // As when a revocation's DeleteConnection was lost, or the session reached its lifetime.
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.direct(&alice, &bob).await;
    let mut bob_socket = app.connect(&bob, None).await;
    let mut socket = app.connect(&alice, None).await;
    bob_socket.expect_status(&alice, "online").await;
    let path = format!("/api/chats/{chat}/messages");
    let sent = app
        .post_as(
            &alice,
            &path,
            json!({"content": "before", "client_id": "c1"}),
        )
        .await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    bob_socket.expect("message.created").await;
    socket.expect("message.created").await;
    let session = claims(&alice.token)["sid"].as_i64().expect("sid");
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(session)
        .execute(&app.db.pool)
        .await
        .expect("expire");

    refused_everywhere(&app, &alice).await;
    // A send checks the session in its own insert; a retry of a stored send is refused too.
    for body in [
        json!({"content": "after"}),
        json!({"content": "before", "client_id": "c1"}),
    ] {
        app.post_as(&alice, &path, body)
            .await
            .assert_problem(401, "session_ended");
    }
    socket
        .send(json!({"action": "sendMessage", "chat_id": chat, "content": "still here?"}))
        .await;
    let refused = socket.expect("error").await;
    assert_eq!(refused["code"], "session_ended", "{refused}");
    assert!(socket.closed().await, "the socket is closed");
    bob_socket.expect_quiet().await;
    let stored = app.messages(&bob, chat, "").await;
    assert_eq!(stored.len(), 1, "nothing was sent after the session ended");
    assert_eq!(stored[0]["content"], "before");
}

#[tokio::test]
async fn the_openapi_document_describes_sessions_and_limits() {
    let app = TestApp::spawn().await;
    let doc = app.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    let paths = &doc.body["paths"];
    for (path, method) in [
        ("/api/auth/login", "post"),
        ("/api/auth/register", "post"),
        ("/api/users/{user_id}", "put"),
        ("/api/users/{user_id}", "delete"),
    ] {
        let limited = &paths[path][method]["responses"]["429"];
        assert!(
            limited["headers"]["retry-after"].is_object(),
            "{method} {path} lists 429 with Retry-After: {limited}"
        );
    }
    for path in ["/api/auth/login", "/api/auth/refresh"] {
        assert!(
            paths[path]["post"]["responses"]["200"]["headers"]["cache-control"].is_object(),
            "{path} says its tokens are not cached"
        );
    }
    assert!(
        paths["/api/users/{user_id}"]["delete"]["requestBody"].is_object(),
        "deleting the account takes a body"
    );
    let bearer = doc.body["components"]["securitySchemes"]["bearer"]["description"]
        .as_str()
        .expect("the bearer scheme is described");
    assert!(
        bearer.contains("at+jwt") && bearer.contains("session_ended"),
        "{bearer}"
    );
}
