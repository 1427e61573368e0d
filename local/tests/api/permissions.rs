//! Who may call which chat and message route, as a table: each case names a route, who calls
//! it and what they must get. Every case runs against a scene of its own, so that a refusal
//! that was not one cannot spoil the next case, and a refused call must leave its scene as it was.

use reqwest::Method;
use serde_json::Value;

use crate::client::{Reply, User};
use crate::common::TestApp;

/// Who calls. The scene: Alice made the group and is its admin, Bob and Carol are plain
/// members, Alice and Bob wrote one message each; Dave is in no chat.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// Dave.
    NonMember,
    /// Alice, the admin and the author of `{alice_message}`.
    Admin,
    /// Bob, a plain member and the author of `{bob_message}`.
    Member,
    /// Carol, a plain member who wrote nothing.
    OtherMember,
    NoToken,
    GarbageToken,
}

/// Which chat the path names.
#[derive(Clone, Copy, Debug)]
enum Chat {
    /// The scene's group, and its messages.
    Scene,
    /// A chat and a message that do not exist.
    Absent,
}

/// A route: `{chat}`, `{alice_message}`, `{bob_message}`, `{bob}`, `{carol}` and `{dave}` in
/// the path and the body stand for the scene's ids.
struct Route {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
}

const fn route(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
) -> Route {
    Route {
        name,
        method,
        path,
        body,
    }
}

/// Every route under `/api/chats/{chat_id}`.
const CHAT_ROUTES: &[Route] = &[
    route("get chat", "GET", "/api/chats/{chat}", None),
    route(
        "rename chat",
        "PUT",
        "/api/chats/{chat}",
        Some(r#"{"name": "taken over"}"#),
    ),
    route("delete chat", "DELETE", "/api/chats/{chat}", None),
    route("list members", "GET", "/api/chats/{chat}/members", None),
    route(
        "list members skip",
        "GET",
        "/api/chats/{chat}/members?skip=1&limit=1",
        None,
    ),
    route(
        "add members",
        "POST",
        "/api/chats/{chat}/members",
        Some(r#"{"user_ids": [{dave}]}"#),
    ),
    route(
        "add members (bare array)",
        "POST",
        "/api/chats/{chat}/members",
        Some("[{dave}]"),
    ),
    route(
        "remove bob",
        "DELETE",
        "/api/chats/{chat}/members/{bob}",
        None,
    ),
    route(
        "remove carol",
        "DELETE",
        "/api/chats/{chat}/members/{carol}",
        None,
    ),
    route(
        "remove dave",
        "DELETE",
        "/api/chats/{chat}/members/{dave}",
        None,
    ),
    route("list messages", "GET", "/api/chats/{chat}/messages", None),
    route(
        "list messages after_seq",
        "GET",
        "/api/chats/{chat}/messages?after_seq=0",
        None,
    ),
    route(
        "send message",
        "POST",
        "/api/chats/{chat}/messages",
        Some(r#"{"content": "intruder"}"#),
    ),
    route(
        "mark read",
        "PUT",
        "/api/chats/{chat}/messages/read",
        Some("{}"),
    ),
    route(
        "edit alice's message",
        "PUT",
        "/api/chats/{chat}/messages/{alice_message}",
        Some(r#"{"content": "forged"}"#),
    ),
    route(
        "edit bob's message",
        "PUT",
        "/api/chats/{chat}/messages/{bob_message}",
        Some(r#"{"content": "forged"}"#),
    ),
    route(
        "delete alice's message",
        "DELETE",
        "/api/chats/{chat}/messages/{alice_message}",
        None,
    ),
    route(
        "delete bob's message",
        "DELETE",
        "/api/chats/{chat}/messages/{bob_message}",
        None,
    ),
    route(
        "read status",
        "GET",
        "/api/chats/{chat}/messages/{alice_message}/read-status",
        None,
    ),
];

/// The collection routes, which name no chat.
const COLLECTION_ROUTES: &[Route] = &[
    route("list chats", "GET", "/api/chats", None),
    route(
        "create chat",
        "POST",
        "/api/chats",
        Some(r#"{"user_ids": [{bob}]}"#),
    ),
];

/// What everyone outside a chat gets on every route under it: the chat does not exist for
/// them, and without a valid token nothing does.
const OUTSIDERS: &[(Who, Chat, u16, &str)] = &[
    (Who::NonMember, Chat::Scene, 404, "not_found"),
    (Who::NoToken, Chat::Scene, 401, "missing_token"),
    (Who::GarbageToken, Chat::Scene, 401, "invalid_token"),
    (Who::Admin, Chat::Absent, 404, "not_found"),
];

/// Members: route, who, status, and the code of a refusal.
const MEMBERS: &[(&str, Who, u16, Option<&str>)] = &[
    ("get chat", Who::OtherMember, 200, None),
    ("rename chat", Who::Member, 403, Some("not_admin")),
    ("rename chat", Who::Admin, 200, None),
    ("delete chat", Who::Member, 403, Some("not_admin")),
    ("delete chat", Who::Admin, 204, None),
    ("list members", Who::OtherMember, 200, None),
    ("list members skip", Who::Member, 200, None),
    ("add members", Who::Member, 403, Some("not_admin")),
    ("add members", Who::Admin, 200, None),
    (
        "add members (bare array)",
        Who::Member,
        403,
        Some("not_admin"),
    ),
    ("add members (bare array)", Who::Admin, 200, None),
    ("remove carol", Who::Member, 403, Some("not_admin")),
    ("remove carol", Who::Admin, 204, None),
    ("remove bob", Who::Member, 204, None),
    ("list messages", Who::OtherMember, 200, None),
    ("list messages after_seq", Who::OtherMember, 200, None),
    ("send message", Who::OtherMember, 201, None),
    ("mark read", Who::OtherMember, 200, None),
    ("edit alice's message", Who::Member, 403, Some("not_author")),
    ("edit alice's message", Who::Admin, 200, None),
    ("edit bob's message", Who::Admin, 403, Some("not_author")),
    ("edit bob's message", Who::Member, 200, None),
    (
        "delete alice's message",
        Who::OtherMember,
        403,
        Some("not_author"),
    ),
    (
        "delete alice's message",
        Who::Member,
        403,
        Some("not_author"),
    ),
    ("delete bob's message", Who::Member, 204, None),
    ("delete bob's message", Who::Admin, 204, None),
    ("read status", Who::OtherMember, 200, None),
];

/// Without a valid token, the collection routes.
const ANONYMOUS: &[(&str, Who, u16, Option<&str>)] = &[
    ("list chats", Who::NoToken, 401, Some("missing_token")),
    ("list chats", Who::GarbageToken, 401, Some("invalid_token")),
    ("create chat", Who::NoToken, 401, Some("missing_token")),
    ("create chat", Who::GarbageToken, 401, Some("invalid_token")),
];

const ABSENT: i64 = 987_654_321;

/// One row of the table.
struct Case {
    route: &'static Route,
    who: Who,
    chat: Chat,
    status: u16,
    code: Option<&'static str>,
}

fn find(routes: &'static [Route], name: &str) -> &'static Route {
    routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route named {name}"))
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for route in CHAT_ROUTES {
        for &(who, chat, status, code) in OUTSIDERS {
            cases.push(Case {
                route,
                who,
                chat,
                status,
                code: Some(code),
            });
        }
    }
    let rows = MEMBERS
        .iter()
        .map(|row| (CHAT_ROUTES, row))
        .chain(ANONYMOUS.iter().map(|row| (COLLECTION_ROUTES, row)));
    for (routes, &(name, who, status, code)) in rows {
        cases.push(Case {
            route: find(routes, name),
            who,
            chat: Chat::Scene,
            status,
            code,
        });
    }
    cases
}

/// The people of every scene.
struct Cast {
    alice: User,
    bob: User,
    carol: User,
    dave: User,
}

/// A group of its own for one case, with one message each from Alice and Bob.
struct Scene {
    chat: i64,
    alice_message: i64,
    bob_message: i64,
}

impl Scene {
    async fn new(app: &TestApp, cast: &Cast) -> Self {
        let chat = app
            .group(&cast.alice, "scene", &[&cast.bob, &cast.carol])
            .await;
        let alice_message = app.send(&cast.alice, chat, "from alice").await["id"]
            .as_i64()
            .expect("id");
        let bob_message = app.send(&cast.bob, chat, "from bob").await["id"]
            .as_i64()
            .expect("id");
        Self {
            chat,
            alice_message,
            bob_message,
        }
    }

    /// `template` with the scene's ids, or absent ones for the chat and its messages.
    fn fill(&self, template: &str, cast: &Cast, chat: Chat) -> String {
        let (chat, alice_message, bob_message) = match chat {
            Chat::Scene => (self.chat, self.alice_message, self.bob_message),
            Chat::Absent => (ABSENT, ABSENT, ABSENT),
        };
        template
            .replace("{chat}", &chat.to_string())
            .replace("{alice_message}", &alice_message.to_string())
            .replace("{bob_message}", &bob_message.to_string())
            .replace("{bob}", &cast.bob.id.to_string())
            .replace("{carol}", &cast.carol.id.to_string())
            .replace("{dave}", &cast.dave.id.to_string())
    }

    /// What a refused call changed, if anything.
    async fn changes(&self, app: &TestApp, cast: &Cast) -> Option<String> {
        let chat = app
            .get_as(&cast.alice, &format!("/api/chats/{}", self.chat))
            .await;
        if chat.status != 200 {
            return Some(format!("the chat is gone: {} {}", chat.status, chat.body));
        }
        let mut changed = Vec::new();
        if chat.body["name"] != "scene" {
            changed.push(format!("renamed to {}", chat.body["name"]));
        }
        let members: Vec<&str> = chat.body["users"]
            .as_array()
            .map(|users| {
                users
                    .iter()
                    .filter_map(|u| u["username"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        if members != ["alice", "bob", "carol"] {
            changed.push(format!("members now {members:?}"));
        }
        if chat.body["last_message"]["seq"] != 2 {
            changed.push(format!("last message now {}", chat.body["last_message"]));
        }
        let messages = app
            .get_as(&cast.alice, &format!("/api/chats/{}/messages", self.chat))
            .await;
        for (id, content) in [
            (self.alice_message, "from alice"),
            (self.bob_message, "from bob"),
        ] {
            let message = messages
                .body
                .as_array()
                .and_then(|m| m.iter().find(|m| m["id"] == id));
            if message.is_none_or(|m| m["content"] != content || m["deleted"] != false) {
                changed.push(format!("{content:?} now {message:?}"));
            }
        }
        (!changed.is_empty()).then(|| changed.join(", "))
    }
}

/// What is wrong with an answer, if anything.
fn wrong_answer(reply: &Reply, status: u16, code: Option<&str>) -> Option<String> {
    let mut wrong = Vec::new();
    if reply.status != status {
        wrong.push(format!("status {} (want {status})", reply.status));
    }
    if status >= 400 {
        if reply.header("content-type") != Some("application/problem+json") {
            wrong.push(format!("content-type {:?}", reply.header("content-type")));
        }
        if let Some(code) = code
            && reply.body["code"] != code
        {
            wrong.push(format!("code {} (want {code})", reply.body["code"]));
        }
        if status == 401
            && reply
                .header("www-authenticate")
                .is_none_or(|v| !v.starts_with("Bearer"))
        {
            wrong.push(format!(
                "www-authenticate {:?}",
                reply.header("www-authenticate")
            ));
        }
    }
    (!wrong.is_empty()).then(|| format!("{}; body: {}", wrong.join(", "), reply.body))
}

#[tokio::test]
async fn every_chat_and_message_route_hides_chats_from_outsiders_checks_roles_and_needs_a_token() {
    let app = TestApp::spawn().await;
    let cast = Cast {
        alice: app.user("alice").await,
        bob: app.user("bob").await,
        carol: app.user("carol").await,
        dave: app.user("dave").await,
    };
    let cases = cases();
    let mut failures = Vec::new();

    for case in &cases {
        let scene = Scene::new(&app, &cast).await;
        let route = case.route;
        let path = scene.fill(route.path, &cast, case.chat);
        let body = route.body.map(|b| {
            serde_json::from_str::<Value>(&scene.fill(b, &cast, case.chat)).expect("a JSON body")
        });
        let token = match case.who {
            Who::NonMember => Some(cast.dave.token.as_str()),
            Who::Admin => Some(cast.alice.token.as_str()),
            Who::Member => Some(cast.bob.token.as_str()),
            Who::OtherMember => Some(cast.carol.token.as_str()),
            Who::NoToken => None,
            Who::GarbageToken => Some("not.a.token"),
        };
        let method = Method::from_bytes(route.method.as_bytes()).expect("a method");
        let reply = app.call(method, &path, token, body).await;
        let what = format!(
            "{} ({} {path}) as {:?} in {:?}",
            route.name, route.method, case.who, case.chat
        );
        if let Some(wrong) = wrong_answer(&reply, case.status, case.code) {
            failures.push(format!("{what}: {wrong}"));
        }
        if case.status >= 400
            && let Some(changed) = scene.changes(&app, &cast).await
        {
            failures.push(format!(
                "{what} was refused but changed the scene: {changed}"
            ));
        }
    }

    for failure in &failures {
        eprintln!("FAILED: {failure}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
