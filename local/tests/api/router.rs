//! The routers' extractors and rejections, one request at a time through `oneshot`: no gateway.
//! Without a caller, the pool points at a port nothing listens on and is never connected, so a
//! request that reached the database would fail instead of answering what is asserted here.
//! Rejections that come after the caller is proven (the session check is a lookup) run over a
//! database that holds nothing but that caller and their session ([`signed_in`]).

use std::time::Duration;

use axum::body::Body;
use blockchat::AppState;
use blockchat::auth::tokens::{JwtKeys, now_secs};
use blockchat::http::{Group, MAX_BODY_BYTES, app};
use http::Request;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use tower::ServiceExt;

use crate::client::Reply;
use crate::common::{TEST_JWT_SECRET, TestDatabase};

const NOWHERE: &str = "postgres://nobody@127.0.0.1:1/none";

fn state() -> AppState {
    let config = blockchat::Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(NOWHERE.to_owned()),
        "JWT_SECRET" => Some(TEST_JWT_SECRET.to_owned()),
        _ => None,
    })
    .expect("config");
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(NOWHERE)
        .expect("a lazy pool");
    AppState::with_pool(config, pool)
}

/// A state over a database that holds one user and a live session of theirs, and an access
/// token of that session: for the rejections that come after the caller is proven.
async fn signed_in() -> (TestDatabase, AppState, String) {
    let database = TestDatabase::create(2).await;
    let config = blockchat::Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(NOWHERE.to_owned()),
        "JWT_SECRET" => Some(TEST_JWT_SECRET.to_owned()),
        _ => None,
    })
    .expect("config");
    let state = AppState::with_pool(config, database.pool.clone());
    let user = blockchat::db::users::insert(&database.pool, "alice", "alice@example.com", "x")
        .await
        .expect("user");
    let session = blockchat::db::sessions::insert(
        &database.pool,
        user.id,
        chrono::Utc::now() + chrono::Duration::hours(1),
    )
    .await
    .expect("session");
    let token = state
        .keys
        .issue_access(user.id, Some(session))
        .expect("token");
    (database, state, token)
}

/// A valid access token for user 1, signed as the routers expect (its session is never looked
/// up: these requests are refused before).
fn token(state: &AppState) -> String {
    state.keys.issue_access(1, None).expect("token")
}

/// Sends one request to the function that API Gateway would hand its path to.
async fn send(request: Request<Body>) -> Reply {
    send_with(&state(), request).await
}

async fn send_with(state: &AppState, request: Request<Body>) -> Reply {
    let group = Group::for_path(request.uri().path());
    let response = app(group, state.clone())
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        headers,
        body,
    }
}

fn request(method: &str, path: &str) -> http::request::Builder {
    Request::builder().method(method).uri(path)
}

fn json_request(method: &str, path: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = request(method, path).header("content-type", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::from(body.to_owned())).expect("request")
}

fn get(path: &str, authorization: Option<&str>) -> Request<Body> {
    let mut builder = request("GET", path);
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    builder.body(Body::empty()).expect("request")
}

/// The one entry of a 422's `errors`, which must name `field`.
#[track_caller]
fn assert_names_field(reply: &Reply, field: &str) {
    reply.assert_problem(422, "validation_failed");
    let errors = reply.body["errors"].as_array().expect("a 422 lists errors");
    assert_eq!(errors.len(), 1, "{}", reply.body);
    assert_eq!(errors[0]["field"], field, "{}", reply.body);
    assert!(
        errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn malformed_or_empty_json_is_400_malformed_json() {
    let (_database, state, token) = signed_in().await;
    for (path, token, body) in [
        ("/api/auth/register", None, "{\"username\": \"bob\","),
        ("/api/auth/register", None, ""),
        (
            "/api/auth/register",
            None,
            r#"{"username": "bob", "email": "bob@example.com", "password": "long enough"} more"#,
        ),
        ("/api/chats", Some(token.as_str()), "{not json"),
        (
            "/api/chats/1/messages",
            Some(token.as_str()),
            "{\"content\": ",
        ),
    ] {
        let reply = send_with(&state, json_request("POST", path, token, body)).await;
        reply.assert_problem(400, "malformed_json");
    }
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_422_naming_the_field() {
    let (_database, state, token) = signed_in().await;
    let reply = send_with(
        &state,
        json_request("POST", "/api/chats", Some(&token), r#"{"user_ids": "bob"}"#),
    )
    .await;
    assert_names_field(&reply, "user_ids");
    let reply = send_with(
        &state,
        json_request("POST", "/api/chats/1/messages", Some(&token), "{}"),
    )
    .await;
    assert_names_field(&reply, "content");
    let reply = send(json_request(
        "POST",
        "/api/auth/refresh",
        None,
        r#"{"refresh_token": 5}"#,
    ))
    .await;
    assert_names_field(&reply, "refresh_token");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let (_database, state, token) = signed_in().await;
    for (path, token, kind) in [
        ("/api/auth/register", None, "application/xml"),
        ("/api/auth/login", None, "text/html"),
        (
            "/api/chats",
            Some(token.as_str()),
            "application/octet-stream",
        ),
    ] {
        let mut builder = request("POST", path).header("content-type", kind);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let reply = send_with(&state, builder.body(Body::from("<a/>")).expect("request")).await;
        reply.assert_problem(415, "unsupported_media_type");
        assert!(
            reply.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains(kind)),
            "the detail names the type: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let (_database, state, token) = signed_in().await;
    let huge = json!({"content": "a".repeat(MAX_BODY_BYTES)}).to_string();
    let reply = send_with(
        &state,
        json_request("POST", "/api/chats/1/messages", Some(&token), &huge),
    )
    .await;
    reply.assert_problem(413, "payload_too_large");
    let huge = json!({"username": "bob", "email": "bob@example.com", "password": "x".repeat(MAX_BODY_BYTES)})
        .to_string();
    send(json_request("POST", "/api/auth/register", None, &huge))
        .await
        .assert_problem(413, "payload_too_large");
}

#[tokio::test]
async fn missing_garbage_forged_and_expired_bearer_tokens_are_401_with_a_challenge() {
    let state = state();
    let expired = state
        .keys
        .issue_access_at(1, None, now_secs() - 3600)
        .expect("token");
    let forged_config = blockchat::Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(NOWHERE.to_owned()),
        "JWT_SECRET" => Some("a-different-secret-that-is-32-bytes-or-more".to_owned()),
        _ => None,
    })
    .expect("config");
    let forged = JwtKeys::new(&forged_config)
        .issue_access(1, None)
        .expect("token");
    let cases = [
        (None, "missing_token"),
        (Some("Bearer garbage".to_owned()), "invalid_token"),
        (Some("Bearer ".to_owned()), "invalid_token"),
        (Some(format!("Basic {}", token(&state))), "invalid_token"),
        (Some(format!("Bearer {forged}")), "invalid_token"),
        (Some(format!("Bearer {expired}")), "token_expired"),
    ];
    for path in [
        "/api/auth/me",
        "/api/users",
        "/api/chats",
        "/api/chats/1/messages",
    ] {
        for (authorization, code) in &cases {
            let reply = send_with(&state, get(path, authorization.as_deref())).await;
            reply.assert_problem(401, code);
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Bearer"),
                "GET {path} with {authorization:?}"
            );
        }
    }
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_in_every_group() {
    for path in [
        "/api/nothing/here",
        "/nowhere",
        "/api/users/1/nothing",
        "/api/chats/1/nothing-here",
        "/api/chats/1/messages/2/nothing",
    ] {
        send(get(path, None)).await.assert_problem(404, "not_found");
    }
    for (method, path) in [
        ("DELETE", "/api/auth/login"),
        ("PUT", "/api/auth/me"),
        ("PATCH", "/api/users/1"),
        ("PATCH", "/api/chats/1"),
        ("DELETE", "/api/chats"),
        ("PUT", "/api/chats/1/members"),
        ("GET", "/api/users/1/block"),
        ("DELETE", "/api/chats/1/messages"),
        ("POST", "/api/chats/1/messages/read"),
    ] {
        let reply = send(request(method, path).body(Body::empty()).expect("request")).await;
        reply.assert_problem(405, "method_not_allowed");
    }
}

#[tokio::test]
async fn a_collection_route_is_the_same_with_a_trailing_slash() {
    // Matched, so the token is asked for; not a 404.
    send(get("/api/chats/", None))
        .await
        .assert_problem(401, "missing_token");
    send(get("/api/users/", None))
        .await
        .assert_problem(401, "missing_token");
}

#[tokio::test]
async fn path_and_query_parameters_of_the_wrong_type_are_422_naming_where() {
    let (_database, state, token) = signed_in().await;
    let bearer = format!("Bearer {token}");
    for path in [
        "/api/chats/abc",
        "/api/users/abc",
        "/api/chats/1/messages/abc/read-status",
        "/api/chats/99999999999999999999",
    ] {
        let reply = send_with(&state, get(path, Some(&bearer))).await;
        assert_names_field(&reply, "path");
    }
    for path in [
        "/api/chats/1/messages?limit=abc",
        "/api/chats/1/messages?before_seq=x",
        "/api/chats?limit=-x",
        "/api/users?limit=1.5",
        "/api/chats/1/messages?after_seq=1&before_seq=5.5",
    ] {
        let reply = send_with(&state, get(path, Some(&bearer))).await;
        assert_names_field(&reply, "query");
    }
    // Well-typed but out of range: refused before any lookup.
    for path in [
        "/api/chats/1/messages?limit=0",
        "/api/chats/1/messages?skip=-1",
        "/api/chats/1/messages?after_seq=-1",
        "/api/chats?limit=0",
        "/api/users?cursor=zzz",
    ] {
        let reply = send_with(&state, get(path, Some(&bearer))).await;
        reply.assert_problem(422, "validation_failed");
    }
}

#[tokio::test]
async fn health_without_a_database_is_503_with_retry_after() {
    let started = std::time::Instant::now();
    let reply = send(get("/api/health", None)).await;
    reply.assert_problem(503, "database_unavailable");
    assert_eq!(reply.header("retry-after"), Some("2"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
