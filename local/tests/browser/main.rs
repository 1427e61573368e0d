//! The web client in a real browser: headless Chromium, driven over the DevTools protocol,
//! against the local gateway over a fresh database. Each person is an incognito context of one
//! browser process, so their sessions and storage are apart as on two machines.
//!
//! The story runs as one test, step after step, as people would use the client; every step
//! waits (with a deadline) for what a person would see on screen. Throughout, the pages must
//! log no console error, throw no exception and see no failed request, apart from the one the
//! story provokes on purpose (a wrong password).
//!
//! Chromium is found through `CHROME` or `CHROMIUM`, then `chromium`, `chromium-browser` and
//! `google-chrome` on `PATH`; without one the test fails and says what to install. With
//! `BLOCKCHAT_SCREENSHOTS=1` it writes the README's screenshots to `docs/screenshots/`
//! (otherwise into the target folder).

#[allow(dead_code)]
#[path = "../api/common.rs"]
mod common;

mod browser;

use std::path::PathBuf;

use browser::{Browser, Person};
use common::TestApp;
use serde_json::{Value, json};

const ALICE: &str = "alice";
const BOB: &str = "bob";
const CAROL: &str = "carol";

/// The tests take turns: one browser at a time on CI's two cores.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_in_real_time_in_the_browser() {
    let _turn = TURN.lock().await;
    // Access tokens live 8 s, so that the client refreshes them (2 s before expiry) during the
    // story. Connections still opening are kept when a push meets them, as in AWS (the API tests
    // turn that off).
    let app = TestApp::spawn_with(&[
        ("ACCESS_TOKEN_TTL_SECS", "8"),
        ("WS_CONNECT_WINDOW_MS", "30000"),
    ])
    .await;
    let browser = Browser::launch().await;
    let alice = browser.person(&app, ALICE).await;
    let bob = browser.person(&app, BOB).await;
    let carol = browser.person(&app, CAROL).await;

    a_wrong_password_is_explained_in_words(&bob).await;
    for person in [&alice, &bob, &carol] {
        person.register().await;
    }
    a_direct_chat_reaches_the_other_side_live(&alice, &bob).await;
    typing_shows_and_stops(&alice, &bob).await;
    the_read_receipt_follows_the_reader(&alice, &bob).await;
    a_group_with_a_third_person(&alice, &bob, &carol).await;
    edits_and_deletions_show_on_both_sides(&alice, &bob).await;
    history_pages_back_as_one_scrolls_up(&app, &alice, &carol).await;
    a_chosen_status_shows_to_others(&alice, &bob).await;
    a_dropped_socket_loses_nothing(&app, &alice, &bob).await;
    the_session_is_refreshed_before_it_expires(&alice, &bob).await;
    a_reload_keeps_the_session(&alice, &bob).await;
    screenshots(&alice, &carol).await;

    for person in [&alice, &bob, &carol] {
        person.assert_no_problems().await;
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_away_longer_than_the_feed_keeps_changes_loads_everything_again() {
    let _turn = TURN.lock().await;
    // The feed keeps a change for one second here.
    let app = TestApp::spawn_with(&[
        ("SYNC_RETENTION_SECS", "1"),
        ("WS_CONNECT_WINDOW_MS", "30000"),
    ])
    .await;
    let browser = Browser::launch().await;
    let alice = browser.person(&app, ALICE).await;
    let bob = browser.person(&app, BOB).await;
    for person in [&alice, &bob] {
        // Any catch-up from a token older than a second is answered 410 here.
        person.expect_failure("/api/sync", 410);
        person.register().await;
    }
    alice.start_chat(&[BOB], None).await;
    alice.send("Before the gap").await;
    bob.open_chat(ALICE).await;
    bob.wait_for_message("Before the gap").await;

    bob.lose_network(&app).await;
    alice.send("Long after").await;
    alice.message_action("Before the gap", "Edit").await;
    alice
        .replace_text("#composer-input", "Before the long gap")
        .await;
    alice.press_enter().await;
    alice.wait_for_message("Before the long gap").await;
    // Bob's token grows older than the feed's memory.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    bob.regain_network().await;

    bob.wait_for_message("Long after").await;
    bob.wait_for_message("Before the long gap").await;
    assert!(
        bob.was_answered("/api/sync", 410),
        "bob's catch-up met an expired token"
    );
    for text in ["Long after", "Before the long gap"] {
        assert_eq!(bob.count_messages(text).await, 1, "{text:?} shows once");
    }
    // Live again, with a fresh token.
    alice.send("Welcome back").await;
    bob.wait_for_message("Welcome back").await;

    for person in [&alice, &bob] {
        person.assert_no_problems().await;
    }
    browser.close().await;
}

async fn a_wrong_password_is_explained_in_words(bob: &Person) {
    bob.expect_failure("/api/auth/login", 401);
    bob.fill("#login-username", BOB).await;
    bob.fill("#login-password", "not the password").await;
    bob.click("#login-form button[type=submit]").await;
    bob.wait_for_text("#auth-error", "incorrect username or password")
        .await;
}

async fn a_direct_chat_reaches_the_other_side_live(alice: &Person, bob: &Person) {
    alice.start_chat(&[BOB], None).await;
    alice.wait_for_text("#chat-title", BOB).await;
    alice.type_text("#composer-input", "Hello Bob").await;
    alice.press_enter().await;
    alice.wait_for_message("Hello Bob").await;
    alice.wait_for_text(".message.mine .receipt", "Sent").await;

    // Bob never reloads: the chat, its last message and the unread badge arrive over his socket.
    bob.wait_for_text("#chat-list", ALICE).await;
    bob.wait_for_text("#chat-list .preview", "Hello Bob").await;
    bob.wait_for_text("#chat-list .badge", "1").await;
}

async fn typing_shows_and_stops(alice: &Person, bob: &Person) {
    bob.open_chat(ALICE).await;
    bob.wait_for_message("Hello Bob").await;
    bob.type_text("#composer-input", "Hi Alice").await;
    alice.wait_for_text("#typing", "bob is typing…").await;
    bob.click("#send").await;
    alice.wait_for_message("Hi Alice").await;
    // The message ends the indicator at once; no more typing comes from Bob.
    alice.wait_until_empty("#typing").await;
}

async fn the_read_receipt_follows_the_reader(alice: &Person, bob: &Person) {
    // Bob has the chat open, so he read "Hello Bob" as it arrived; Alice's receipt says so.
    alice.send("Are you coming on Saturday?").await;
    bob.wait_for_message("Are you coming on Saturday?").await;
    alice.wait_for_text(".message.mine .receipt", "Seen").await;
    alice.wait_for_text("#chat-subtitle", "Online").await;
    // Bob's list has nothing unread left.
    bob.wait_until_absent("#chat-list .badge").await;
}

async fn a_group_with_a_third_person(alice: &Person, bob: &Person, carol: &Person) {
    alice.start_chat(&[BOB, CAROL], Some("Weekend plans")).await;
    alice.wait_for_text("#chat-title", "Weekend plans").await;
    alice.wait_for_text("#chat-subtitle", "3 members").await;
    alice.send("Hiking on Saturday?").await;

    carol.wait_for_text("#chat-list", "Weekend plans").await;
    carol.open_chat("Weekend plans").await;
    carol.wait_for_message("Hiking on Saturday?").await;
    carol.send("Count me in").await;

    bob.open_chat("Weekend plans").await;
    bob.wait_for_message("Count me in").await;
    alice.wait_for_message("Count me in").await;
    alice.wait_for_text(".message.theirs .author", CAROL).await;
    alice
        .wait_for_text(".message.mine .receipt", "Seen by")
        .await;

    // The admin sees the members and may remove them; a member may not.
    alice.click("#chat-info").await;
    alice.wait_for_text("#member-list", "carol").await;
    alice.wait_for_text("#member-list", "Admin").await;
    alice.wait_for_visible("#add-members").await;
    alice.click("#members-dialog [data-close]").await;
    bob.click("#chat-info").await;
    bob.wait_for_text("#member-list", "carol").await;
    bob.wait_until_absent("#member-list button").await;
    bob.click("#members-dialog [data-close]").await;

    // The admin removes Bob: the group leaves his list at once; added back, it returns.
    alice.click("#chat-info").await;
    alice
        .click("#member-list button[aria-label='Remove bob']")
        .await;
    alice.wait_until_no_text("#member-list", "@bob").await;
    bob.wait_for_text("#toasts", "You are no longer in this chat.")
        .await;
    bob.wait_until_no_text("#chat-list", "Weekend plans").await;
    alice.fill("#member-search", BOB).await;
    alice
        .click_containing("#member-results button", "@bob")
        .await;
    alice.wait_for_text("#member-list", "@bob").await;
    alice.click("#members-dialog [data-close]").await;
    bob.wait_for_text("#chat-list", "Weekend plans").await;
    alice.wait_for_text("#chat-subtitle", "3 members").await;
}

async fn edits_and_deletions_show_on_both_sides(alice: &Person, bob: &Person) {
    alice.open_chat(BOB).await;
    bob.open_chat(ALICE).await;
    alice.send("See you at 9").await;
    bob.wait_for_message("See you at 9").await;

    alice.message_action("See you at 9", "Edit").await;
    alice.wait_for_visible("#editing").await;
    alice.replace_text("#composer-input", "See you at 10").await;
    alice.press_enter().await;
    bob.wait_for_message("See you at 10").await;
    bob.wait_for_text(".message .edited", "edited").await;
    alice.wait_for_message("See you at 10").await;

    alice
        .message_action("Are you coming on Saturday?", "Delete")
        .await;
    alice.wait_for_message("Message deleted").await;
    bob.wait_for_message("Message deleted").await;
    bob.wait_until_no_message("Are you coming on Saturday?")
        .await;
}

async fn history_pages_back_as_one_scrolls_up(app: &TestApp, alice: &Person, carol: &Person) {
    alice.start_chat(&[CAROL], None).await;
    alice.wait_for_text("#chat-title", CAROL).await;
    // Sixty notes through the API, more than the client's first page of fifty.
    let token = alice.access_token().await;
    let chats: Vec<Value> = app
        .client
        .get(app.url("/api/chats"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("chats")
        .json()
        .await
        .expect("JSON");
    let chat_id = chats
        .iter()
        .find(|chat| chat["name"] == CAROL)
        .and_then(|chat| chat["id"].as_i64())
        .expect("the chat with carol");
    for n in 1..=60 {
        let sent = app
            .client
            .post(app.url(&format!("/api/chats/{chat_id}/messages")))
            .bearer_auth(&token)
            .json(&json!({"content": format!("Note {n}"), "client_id": format!("note-{n}")}))
            .send()
            .await
            .expect("send");
        assert_eq!(sent.status(), 201);
    }
    carol.open_chat(ALICE).await;
    carol.wait_for_message("Note 60").await;
    carol.assert_no_message("Note 1").await;
    carol.scroll_to_top("#messages").await;
    carol.wait_for_message("Note 1").await;
    carol
        .wait_for_text("#history", "This is the start of the conversation.")
        .await;
    assert_eq!(carol.count_messages("Note 10").await, 1);
}

async fn a_chosen_status_shows_to_others(alice: &Person, bob: &Person) {
    alice.choose("#status-select", "away").await;
    bob.wait_for_visible("#chat-list .dot.away").await;
    alice.choose("#status-select", "offline").await;
    bob.wait_until_absent("#chat-list .dot.away").await;
    bob.wait_until_absent("#chat-list .dot.online").await;
    alice.choose("#status-select", "online").await;
    bob.wait_for_visible("#chat-list .dot.online").await;
}

async fn a_dropped_socket_loses_nothing(app: &TestApp, alice: &Person, bob: &Person) {
    alice.open_chat(BOB).await;
    bob.open_chat(ALICE).await;
    bob.lose_network(app).await;

    // Meanwhile Alice writes twice, edits an earlier message and deletes another.
    alice.send("First while you were away").await;
    alice.send("Second while you were away").await;
    alice.message_action("See you at 10", "Edit").await;
    alice.replace_text("#composer-input", "See you at 11").await;
    alice.press_enter().await;
    alice.wait_for_message("See you at 11").await;
    alice.message_action("Hello Bob", "Delete").await;
    alice.wait_until_no_message("Hello Bob").await;
    bob.assert_no_message("First while you were away").await;

    bob.regain_network().await;
    bob.wait_for_text("#connection", "Connected").await;
    bob.wait_for_message("Second while you were away").await;
    bob.wait_for_message("See you at 11").await;
    bob.wait_until_no_message("Hello Bob").await;
    for text in [
        "First while you were away",
        "Second while you were away",
        "See you at 11",
    ] {
        assert_eq!(bob.count_messages(text).await, 1, "{text:?} shows once");
    }
    // And the socket is live again: what Alice sends now arrives without a reload.
    alice.send("Back online?").await;
    bob.wait_for_message("Back online?").await;
}

async fn the_session_is_refreshed_before_it_expires(alice: &Person, bob: &Person) {
    let first = alice.access_token().await;
    alice.wait_for_new_access_token(&first).await;
    alice.send("Still here").await;
    bob.wait_for_message("Still here").await;
}

async fn a_reload_keeps_the_session(alice: &Person, bob: &Person) {
    bob.reload().await;
    bob.wait_for_text("#me-name", BOB).await;
    bob.wait_for_text("#chat-list", ALICE).await;
    bob.wait_for_text("#chat-list", "Weekend plans").await;
    bob.wait_for_text("#connection", "Connected").await;
    // Alice, in their chat, sees him online again.
    alice.wait_for_text("#chat-subtitle", "Online").await;
}

/// The README's pictures: the chat list and a conversation, on a desktop and on a phone.
async fn screenshots(alice: &Person, carol: &Person) {
    let dir = match std::env::var_os("BLOCKCHAT_SCREENSHOTS") {
        Some(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots"),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"),
    };
    std::fs::create_dir_all(&dir).expect("screenshot folder");

    // Something unread for the list to show.
    carol.open_chat("Weekend plans").await;
    carol.send("I'll bring snacks").await;
    carol.send("Meet at the station?").await;

    alice.set_viewport(1280, 800, false).await;
    alice.open_chat(BOB).await;
    alice.wait_for_text("#chat-list .badge", "2").await;
    alice.screenshot(&dir.join("desktop.png")).await;

    alice.set_viewport(390, 844, true).await;
    alice.click("#back").await;
    alice.wait_for_visible("#chat-list").await;
    alice.screenshot(&dir.join("phone-chats.png")).await;
    alice.open_chat("Weekend plans").await;
    alice.wait_for_message("Meet at the station?").await;
    alice.screenshot(&dir.join("phone-conversation.png")).await;
}
