//! Accounts and tokens, as a client sees them through the local gateway.

use crate::client::{PASSWORD, Reply};
use crate::common::{TEST_JWT_SECRET, TestApp};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use blockchat::auth::tokens::{JwtKeys, now_secs};
use reqwest::Method;
use serde_json::{Value, json};

fn keys(secret: &str) -> JwtKeys {
    let secret = secret.to_owned();
    let config = blockchat::Config::from_lookup(move |k| match k {
        "DATABASE_URL" => Some("postgres://unused/x".into()),
        "JWT_SECRET" => Some(secret.clone()),
        _ => None,
    })
    .expect("config");
    JwtKeys::new(&config)
}

async fn register(app: &TestApp, body: Value) -> Reply {
    app.call(Method::POST, "/api/auth/register", None, Some(body))
        .await
}

async fn me(app: &TestApp, token: &str) -> Reply {
    app.call(Method::GET, "/api/auth/me", Some(token), None)
        .await
}

#[tokio::test]
async fn register_answers_the_new_user_without_secrets() {
    let app = TestApp::spawn().await;
    let reply = register(
        &app,
        json!({"username": "alice", "email": "Alice@Example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let user = &reply.body;
    assert!(user["id"].as_i64().is_some_and(|id| id > 0));
    assert_eq!(user["username"], "alice");
    assert_eq!(user["email"], "Alice@Example.com");
    assert_eq!(user["display_name"], "alice");
    assert_eq!(user["status"], "offline");
    assert!(
        user["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{user}"
    );
    let text = user.to_string();
    assert!(
        !text.contains("argon2") && !text.contains("password"),
        "{text}"
    );
}

/// The OAuth2 form as FastAPI clients send it, as `multipart/form-data`.
fn oauth2_multipart(username: &str, password: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("grant_type", "password")
        .text("username", username.to_owned())
        .text("password", password.to_owned())
        .text("scope", "")
}

async fn login_multipart(app: &TestApp, form: reqwest::multipart::Form) -> Reply {
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .multipart(form)
        .send()
        .await
        .expect("request");
    Reply::read(response).await
}

#[tokio::test]
async fn login_takes_the_oauth2_form_as_multipart_form_data() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;

    let reply = login_multipart(&app, oauth2_multipart("alice", PASSWORD)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["token_type"], "bearer");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let token = reply.body["access_token"].as_str().expect("access_token");
    let who = me(&app, token).await;
    assert_eq!(who.status, 200, "{}", who.body);
    assert_eq!(who.body["id"], alice.id);

    // A part that is not text (a file) makes the body binary: API Gateway hands it to the
    // function base64-encoded, and the form's text fields still count.
    let with_file = oauth2_multipart("alice@example.com", PASSWORD).part(
        "avatar",
        reqwest::multipart::Part::bytes(vec![0xff, 0xfe, 0x00, 0x80]).file_name("a.bin"),
    );
    let reply = login_multipart(&app, with_file).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let wrong = login_multipart(&app, oauth2_multipart("alice", "not the password")).await;
    wrong.assert_problem(401, "invalid_credentials");
}

#[tokio::test]
async fn a_broken_or_incomplete_multipart_login_is_a_clear_4xx() {
    let app = TestApp::spawn().await;
    app.user("alice").await;

    let missing = login_multipart(
        &app,
        reqwest::multipart::Form::new().text("username", "alice"),
    )
    .await;
    missing.assert_problem(422, "validation_failed");
    assert_eq!(
        missing.body["errors"][0]["field"], "password",
        "{}",
        missing.body
    );

    for (content_type, body) in [
        // No boundary at all.
        ("multipart/form-data", "username=alice".to_owned()),
        // A boundary that the body never closes.
        (
            "multipart/form-data; boundary=XYZ",
            "--XYZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice".to_owned(),
        ),
    ] {
        let response = app
            .client
            .post(app.url("/api/auth/login"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        Reply::read(response)
            .await
            .assert_problem(400, "malformed_multipart");
    }
}

#[tokio::test]
async fn login_works_with_a_form_and_with_json_and_by_email() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;

    let form = app
        .client
        .post(app.url("/api/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username=alice&password={}",
            PASSWORD.replace(' ', "+")
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(form.status(), 200);
    let pair: Value = form.json().await.expect("json");
    assert_eq!(pair["token_type"], "bearer");
    assert_eq!(pair["expires_in"], 900);
    assert!(
        pair["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 32)
    );

    let by_email = app
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": "ALICE@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(by_email.status, 200, "{}", by_email.body);

    for token in [
        pair["access_token"].as_str().expect("token"),
        alice.token.as_str(),
    ] {
        let reply = me(&app, token).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["id"], alice.id);
        assert_eq!(reply.body["email"], "alice@example.com");
        let reply = app
            .call(Method::GET, "/api/users/me", Some(token), None)
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["username"], "alice");
    }
}

#[tokio::test]
async fn access_token_carries_the_contract_claims() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let payload = alice.token.split('.').nth(1).expect("payload");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    assert_eq!(claims["sub"], alice.id.to_string());
    assert_eq!(claims["user_id"], alice.id);
    for claim in ["iat", "exp", "iss", "aud", "jti"] {
        assert!(!claims[claim].is_null(), "{claim} missing: {claims}");
    }
    assert_eq!(
        claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat"),
        900
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.user("alice").await;
    let wrong = app
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": "alice", "password": "not the password"})),
        )
        .await;
    let unknown = app
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": "nobody", "password": "not the password"})),
        )
        .await;
    wrong.assert_problem(401, "invalid_credentials");
    unknown.assert_problem(401, "invalid_credentials");
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn repeated_login_failures_are_locked_out_with_retry_after() {
    let app = TestApp::spawn_with(&[("LOGIN_FAILURES_PER_ACCOUNT", "3")]).await;
    app.user("alice").await;
    let attempt = |password: &'static str| {
        app.call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": "alice", "password": password})),
        )
    };
    for _ in 0..3 {
        attempt("wrong password")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    let locked = attempt("wrong password").await;
    locked.assert_problem(429, "too_many_requests");
    let retry: u64 = locked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry > 0 && retry <= 900, "{retry}");
    // Even the right password waits out the lock.
    attempt(PASSWORD)
        .await
        .assert_problem(429, "too_many_requests");
}

#[tokio::test]
async fn refresh_rotates_and_a_replayed_token_revokes_the_family() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;

    let first = app.refresh(&alice.refresh_token).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let new_refresh = first.body["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_ne!(new_refresh, alice.refresh_token);
    let new_access = first.body["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    assert_eq!(me(&app, &new_access).await.status, 200);

    // The old one no longer works, and presenting it ends the session it was rotated into.
    app.refresh(&alice.refresh_token)
        .await
        .assert_problem(401, "refresh_token_reused");
    app.refresh(&new_refresh)
        .await
        .assert_problem(401, "invalid_refresh_token");
}

/// The refresh token of a successful answer.
#[track_caller]
fn refresh_token_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned()
}

#[tokio::test]
async fn a_replay_three_rotations_late_ends_that_session_and_no_other() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    // A second login of the same user: a session of its own, on another device.
    let laptop = app.login("alice", PASSWORD).await;
    let mut laptop_refresh = refresh_token_of(&laptop);

    let mut chain = vec![alice.refresh_token.clone()];
    for _ in 0..3 {
        let rotated = app.refresh(chain.last().expect("a token")).await;
        let next = refresh_token_of(&rotated);
        assert!(!chain.contains(&next), "every rotation is a new token");
        chain.push(next);
    }
    // The stolen first token comes back after three rotations.
    app.refresh(&chain[0])
        .await
        .assert_problem(401, "refresh_token_reused");
    // Every token of that session is dead, the newest included.
    for token in chain.iter().rev() {
        app.refresh(token)
            .await
            .assert_problem(401, "invalid_refresh_token");
    }

    // The laptop's session lives on and keeps rotating.
    for _ in 0..2 {
        let rotated = app.refresh(&laptop_refresh).await;
        laptop_refresh = refresh_token_of(&rotated);
        let access = rotated.body["access_token"].as_str().expect("access");
        let who = me(&app, access).await;
        assert_eq!(who.status, 200, "{}", who.body);
        assert_eq!(who.body["id"], alice.id);
    }
    let fresh = app.login("alice", PASSWORD).await;
    assert_eq!(fresh.status, 200, "logging in again starts a new session");
}

#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let reply = app.logout(&alice).await;
    assert_eq!(reply.status, 204);
    app.refresh(&alice.refresh_token)
        .await
        .assert_problem(401, "invalid_refresh_token");
}

#[tokio::test]
async fn duplicate_username_or_email_is_a_conflict_ignoring_case() {
    let app = TestApp::spawn().await;
    app.user("alice").await;
    register(
        &app,
        json!({"username": "ALICE", "email": "other@example.com", "password": PASSWORD}),
    )
    .await
    .assert_problem(409, "username_taken");
    register(
        &app,
        json!({"username": "alice2", "email": "ALICE@example.COM", "password": PASSWORD}),
    )
    .await
    .assert_problem(409, "email_taken");
}

#[tokio::test]
async fn invalid_fields_are_422_naming_each_field_and_store_nothing() {
    let app = TestApp::spawn().await;
    let reply = register(
        &app,
        json!({"username": "bob", "email": "not-an-email", "password": "short"}),
    )
    .await;
    reply.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["email", "password"]);
    let missing = register(&app, json!({"username": "bob", "email": "bob@example.com"})).await;
    missing.assert_problem(422, "validation_failed");
    assert_eq!(missing.body["errors"][0]["field"], "password");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(users, 0);
}

#[tokio::test]
async fn malformed_json_is_400_and_an_oversized_body_is_413() {
    let app = TestApp::spawn().await;
    let broken = app
        .client
        .post(app.url("/api/auth/register"))
        .header("content-type", "application/json")
        .body("{\"username\": \"bob\",")
        .send()
        .await
        .expect("request");
    assert_eq!(broken.status(), 400);
    let body: Value = broken.json().await.expect("json");
    assert_eq!(body["code"], "malformed_json");

    let huge =
        json!({"username": "bob", "email": "bob@example.com", "password": "x".repeat(100 * 1024)});
    let reply = register(&app, huge).await;
    reply.assert_problem(413, "payload_too_large");
}

#[tokio::test]
async fn missing_expired_forged_and_unsigned_tokens_are_401() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let no_token = app.call(Method::GET, "/api/auth/me", None, None).await;
    no_token.assert_problem(401, "missing_token");
    assert_eq!(no_token.header("www-authenticate"), Some("Bearer"));

    let expired = keys(TEST_JWT_SECRET)
        .issue_access_at(alice.id, None, now_secs() - 3600)
        .expect("token");
    me(&app, &expired)
        .await
        .assert_problem(401, "token_expired");

    let forged = keys("a-different-secret-that-is-32-bytes-or-more")
        .issue_access(alice.id, None)
        .expect("token");
    me(&app, &forged).await.assert_problem(401, "invalid_token");

    let now = now_secs();
    let claims = json!({"sub": alice.id.to_string(), "user_id": alice.id, "iat": now, "exp": now + 600,
        "iss": "blockchat", "aud": "blockchat-api", "jti": "x", "typ": "access"});
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    me(&app, &unsigned)
        .await
        .assert_problem(401, "invalid_token");
    me(&app, "garbage")
        .await
        .assert_problem(401, "invalid_token");
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_as_problems() {
    let app = TestApp::spawn().await;
    app.call(Method::GET, "/api/nothing/here", None, None)
        .await
        .assert_problem(404, "not_found");
    app.call(Method::DELETE, "/api/auth/login", None, None)
        .await
        .assert_problem(405, "method_not_allowed");
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let app = TestApp::spawn().await;
    let reply = app.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    let paths = reply.body["paths"].as_object().expect("paths");
    for path in [
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/auth/logout",
        "/api/auth/me",
        "/api/users",
        "/api/users/me",
        "/api/users/{user_id}",
        "/api/users/{user_id}/status",
        "/api/chats",
        "/api/chats/{chat_id}",
        "/api/chats/{chat_id}/members",
        "/api/chats/{chat_id}/members/{user_id}",
        "/api/chats/{chat_id}/messages",
        "/api/chats/{chat_id}/messages/read",
        "/api/chats/{chat_id}/messages/{message_id}",
        "/api/chats/{chat_id}/messages/{message_id}/read-status",
        "/api/health",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    let login = &paths["/api/auth/login"]["post"]["requestBody"]["content"];
    for kind in [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        assert!(login.get(kind).is_some(), "login does not take {kind}");
    }
    let schemas = &reply.body["components"]["schemas"];
    for schema in ["ChatView", "ChatSummary"] {
        assert_eq!(
            schemas[schema]["properties"]["name"]["type"], "string",
            "{schema}.name is a string, never null: {}",
            schemas[schema]["properties"]["name"]
        );
    }
    let me = &paths["/api/auth/me"]["get"]["responses"]["503"];
    assert!(
        me["headers"].get("retry-after").is_some(),
        "a 503 names its Retry-After: {me}"
    );
}

#[tokio::test]
async fn the_openapi_document_links_created_ids_and_states_the_servers_rules() {
    let app = TestApp::spawn().await;
    let doc = app
        .call(Method::GET, "/api/openapi.json", None, None)
        .await
        .body;
    let paths = &doc["paths"];
    let links = |path: &str, method: &str, status: &str| {
        paths[path][method]["responses"][status]["links"].clone()
    };
    let registered = links("/api/auth/register", "post", "201");
    assert_eq!(registered["GetUser"]["operationId"], "get_user");
    assert_eq!(
        registered["GetUser"]["parameters"]["user_id"],
        "$response.body#/id"
    );
    assert_eq!(
        registered["StartDirectChat"]["requestBody"]["user_ids"][0],
        "$response.body#/id"
    );
    let created = links("/api/chats", "post", "201");
    for (link, operation) in [
        ("GetChat", "get_chat"),
        ("SendMessage", "send_message"),
        ("AddMembers", "add_members"),
        ("RemoveMember", "remove_member"),
    ] {
        assert_eq!(created[link]["operationId"], operation, "{link}");
        assert_eq!(created[link]["parameters"]["chat_id"], "$response.body#/id");
    }
    let sent = links("/api/chats/{chat_id}/messages", "post", "201");
    assert_eq!(
        sent["EditMessage"]["parameters"]["message_id"],
        "$response.body#/id"
    );
    assert_eq!(
        sent["ReadStatus"]["parameters"]["chat_id"],
        "$response.body#/chat_id"
    );
    // Every link names an operation of the document.
    let operation_ids: Vec<&str> = paths
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
        .filter_map(|item| item.as_object())
        .flat_map(|item| item.values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    for link in [registered, created, sent]
        .iter()
        .filter_map(|l| l.as_object())
        .flat_map(|l| l.values())
    {
        let target = link["operationId"].as_str().unwrap_or_default();
        assert!(operation_ids.contains(&target), "{target}");
    }

    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["NewUser"]["properties"]["email"]["format"], "email");
    let content = schemas["NewMessage"]["properties"]["content"]["pattern"]
        .as_str()
        .unwrap_or_default();
    assert!(content.contains("\\x00"), "NUL excluded: {content}");
    let name = schemas["ChatUpdate"]["properties"]["name"]["pattern"]
        .as_str()
        .unwrap_or_default();
    assert!(name.contains("\\u202e"), "bidi overrides excluded: {name}");
    assert_eq!(
        schemas["AccountDeletion"]["required"],
        serde_json::json!(["current_password"])
    );
    let bare = &schemas["MemberList"]["oneOf"][1];
    assert_eq!(
        (bare["minItems"].clone(), bare["maxItems"].clone()),
        (1.into(), 1000.into())
    );
    let cursor = |path: &str| {
        paths[path]["get"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "cursor")
            .map(|p| p["schema"]["pattern"].clone())
    };
    assert_eq!(cursor("/api/users"), Some("^[0-9]{0,19}$".into()));
    assert_eq!(
        cursor("/api/chats"),
        Some("^([0-9]{1,19}\\.[0-9]{1,19})?$".into())
    );
}

#[tokio::test]
async fn absurd_logins_fail_cleanly_instead_of_erroring() {
    let app = TestApp::spawn().await;
    app.user("alice").await;
    for username in ["nul\u{0}byte", &"x".repeat(10_000), ""] {
        let reply = app
            .call(
                Method::POST,
                "/api/auth/login",
                None,
                Some(json!({"username": username, "password": "whatever it is"})),
            )
            .await;
        reply.assert_problem(401, "invalid_credentials");
    }
    let bob = app.user("bob").await;
    app.get_as(&bob, "/api/users?q=a%00b")
        .await
        .assert_problem(422, "validation_failed");
}
