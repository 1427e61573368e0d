//! A client's view of the API, on top of [`TestApp`]: accounts, and requests that return what
//! a client would look at (status, headers, JSON), and a WebSocket client that reports every
//! frame it gets.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::common::TestApp;

/// A registered, logged-in user.
#[derive(Clone, Debug)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub token: String,
    pub refresh_token: String,
}

/// An answer as a client sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The answer as a client reads it: an empty body is `null`, one that is not JSON a string.
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json error with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "errors are problem+json; body: {}",
            self.body
        );
        assert_eq!(self.body["status"], status, "{}", self.body);
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["type"], "about:blank", "{}", self.body);
        assert!(
            self.body["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{}",
            self.body
        );
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            self.body
        );
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

/// Registers `username` (email `username@example.com`) at the API on `base` (`http://HOST:PORT`)
/// and logs in with JSON.
pub async fn sign_up(client: &reqwest::Client, base: &str, username: &str) -> User {
    let reply = call_url(
        client,
        Method::POST,
        format!("{base}/api/auth/register"),
        None,
        Some(json!({
            "username": username,
            "email": format!("{username}@example.com"),
            "password": PASSWORD,
        })),
    )
    .await;
    assert_eq!(reply.status, 201, "register {username}: {}", reply.body);
    let id = reply.body["id"].as_i64().expect("id");
    let login = call_url(
        client,
        Method::POST,
        format!("{base}/api/auth/login"),
        None,
        Some(json!({"username": username, "password": PASSWORD})),
    )
    .await;
    assert_eq!(login.status, 200, "login {username}: {}", login.body);
    User {
        id,
        username: username.to_owned(),
        token: login.body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
        refresh_token: login.body["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned(),
    }
}

/// Sends a request to `url` with an optional bearer token and JSON body; the answer as a
/// client reads it.
pub async fn call_url(
    client: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut request = client.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    Reply::read(request.send().await.expect("request failed")).await
}

impl TestApp {
    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        call_url(&self.client, method, self.url(path), token, body).await
    }

    pub async fn get_as(&self, user: &User, path: &str) -> Reply {
        self.call(Method::GET, path, Some(&user.token), None).await
    }

    pub async fn post_as(&self, user: &User, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(&user.token), Some(body))
            .await
    }

    pub async fn put_as(&self, user: &User, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(&user.token), Some(body))
            .await
    }

    pub async fn delete_as(&self, user: &User, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(&user.token), None)
            .await
    }

    /// `DELETE /api/users/{id}` of `user`'s own account, with their password.
    pub async fn delete_account(&self, user: &User) -> Reply {
        self.call(
            Method::DELETE,
            &format!("/api/users/{}", user.id),
            Some(&user.token),
            Some(json!({"current_password": PASSWORD})),
        )
        .await
    }

    /// `POST /api/auth/refresh` with `refresh_token`; the answer as it comes.
    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh_token})),
        )
        .await
    }

    /// `POST /api/auth/logout` with the session's refresh token; the answer as it comes.
    pub async fn logout(&self, user: &User) -> Reply {
        self.call(
            Method::POST,
            "/api/auth/logout",
            None,
            Some(json!({"refresh_token": user.refresh_token})),
        )
        .await
    }

    /// Logs in with JSON, as a client would; the answer as it comes.
    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": username, "password": password})),
        )
        .await
    }

    /// Registers `username` (email `username@example.com`) and logs in with JSON.
    pub async fn user(&self, username: &str) -> User {
        sign_up(&self.client, &self.url(""), username).await
    }

    /// A group named `name` created by `owner` with `members`; returns its id.
    pub async fn group(&self, owner: &User, name: &str, members: &[&User]) -> i64 {
        let ids: Vec<i64> = members.iter().map(|m| m.id).collect();
        let reply = self
            .post_as(
                owner,
                "/api/chats",
                json!({"name": name, "is_group_chat": true, "user_ids": ids}),
            )
            .await;
        assert_eq!(reply.status, 201, "create group: {}", reply.body);
        reply.body["id"].as_i64().expect("chat id")
    }

    /// The direct chat of `a` and `b`; returns its id.
    pub async fn direct(&self, a: &User, b: &User) -> i64 {
        let reply = self
            .post_as(a, "/api/chats", json!({"user_ids": [b.id]}))
            .await;
        assert!(
            reply.status == 201 || reply.status == 200,
            "create direct: {}",
            reply.body
        );
        reply.body["id"].as_i64().expect("chat id")
    }

    /// Sends `content` as `user` into `chat`; returns the stored message.
    pub async fn send(&self, user: &User, chat: i64, content: &str) -> Value {
        let reply = self
            .post_as(
                user,
                &format!("/api/chats/{chat}/messages"),
                json!({"content": content}),
            )
            .await;
        assert_eq!(reply.status, 201, "send: {}", reply.body);
        reply.body
    }
}

/// Chats and messages, as the tests of `chats.rs` and `messages.rs` look at them.
impl TestApp {
    /// The chat as `user` sees it (`GET /api/chats/{chat}`), which must answer 200.
    pub async fn chat_as(&self, user: &User, chat: i64) -> Value {
        let reply = self.get_as(user, &format!("/api/chats/{chat}")).await;
        assert_eq!(
            reply.status, 200,
            "get chat {chat} as {}: {}",
            user.username, reply.body
        );
        reply.body
    }

    /// `GET /api/chats/{chat}/messages{query}` as `user` (`query` is `""` or starts with `?`),
    /// which must answer 200 with an array.
    pub async fn messages(&self, user: &User, chat: i64, query: &str) -> Vec<Value> {
        let reply = self
            .get_as(user, &format!("/api/chats/{chat}/messages{query}"))
            .await;
        assert_eq!(reply.status, 200, "list messages{query}: {}", reply.body);
        reply.body.as_array().expect("a list of messages").clone()
    }

    /// `PUT /api/chats/{chat}/messages/read` as `user` with `body`; must answer 200.
    pub async fn mark_read(&self, user: &User, chat: i64, body: Option<Value>) -> Value {
        let reply = self
            .call(
                Method::PUT,
                &format!("/api/chats/{chat}/messages/read"),
                Some(&user.token),
                body,
            )
            .await;
        assert_eq!(reply.status, 200, "mark read: {}", reply.body);
        reply.body
    }
}

/// The `seq` of each message in `messages`, in order.
pub fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

/// The `id` of each item in a JSON array.
pub fn ids(items: &Value) -> Vec<i64> {
    items
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["id"].as_i64().expect("id"))
        .collect()
}

/// Asserts that `value` is an RFC 3339 timestamp in UTC (`...Z`).
#[track_caller]
pub fn assert_utc_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a timestamp, not {value}"));
    assert!(text.ends_with('Z'), "timestamps are in UTC: {text}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        "not RFC 3339: {text}"
    );
}

/// A WebSocket client of the gateway's WebSocket API.
pub struct Socket {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// How long a test waits for an event that should come.
pub const EVENT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl TestApp {
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.gateway().ws_addr())
    }

    /// Opens a WebSocket as `user`, optionally scoped to one chat; panics if refused.
    pub async fn connect(&self, user: &User, chat: Option<i64>) -> Socket {
        self.try_connect(&user.token, chat)
            .await
            .expect("connect refused")
    }

    /// Opens a WebSocket with `token`; `Err(status)` when the handshake is refused.
    pub async fn try_connect(&self, token: &str, chat: Option<i64>) -> Result<Socket, u16> {
        Socket::open(&self.ws_url(), token, chat).await
    }
}

impl Socket {
    /// Opens a WebSocket to the WebSocket API at `ws_url` with `token`, optionally scoped to
    /// one chat; `Err(status)` when the handshake is refused.
    pub async fn open(ws_url: &str, token: &str, chat: Option<i64>) -> Result<Socket, u16> {
        let mut url = format!("{ws_url}/?token={token}");
        if let Some(chat) = chat {
            url.push_str(&format!("&chat_id={chat}"));
        }
        match tokio_tungstenite::connect_async(url).await {
            Ok((stream, _)) => Ok(Socket { stream }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("connect failed: {e}"),
        }
    }
}

/// What the server did next on a socket.
enum Next {
    Frame(Value),
    Closed(String),
    Nothing,
}

impl Socket {
    pub async fn send(&mut self, frame: Value) {
        use futures::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::Text(
                frame.to_string().into(),
            ))
            .await
            .expect("send frame");
    }

    /// The next JSON frame, the end of the socket, or nothing within `wait`. Pings and pongs
    /// are the protocol's, not the API's, and are passed over.
    async fn next(&mut self, wait: std::time::Duration) -> Next {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let Ok(message) = tokio::time::timeout(wait, self.stream.next()).await else {
                return Next::Nothing;
            };
            return match message {
                None => Next::Closed("the stream ended".into()),
                Some(Err(e)) => Next::Closed(format!("error: {e}")),
                Some(Ok(Message::Close(frame))) => Next::Closed(format!("close frame {frame:?}")),
                Some(Ok(Message::Text(text))) => {
                    Next::Frame(serde_json::from_str(&text).expect("frames are JSON"))
                }
                Some(Ok(Message::Binary(bytes))) => panic!("a binary frame arrived: {bytes:?}"),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            };
        }
    }

    /// The next JSON frame, or `None` if none comes within `wait`; a closed socket fails the
    /// test (it is not silence).
    pub async fn next_within(&mut self, wait: std::time::Duration) -> Option<Value> {
        match self.next(wait).await {
            Next::Frame(frame) => Some(frame),
            Next::Nothing => None,
            Next::Closed(how) => panic!("the socket closed while a frame was awaited: {how}"),
        }
    }

    /// The next frame, which must be of type `kind`: no frame of any kind is passed over.
    #[track_caller]
    pub fn expect<'a>(
        &'a mut self,
        kind: &'a str,
    ) -> impl std::future::Future<Output = Value> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let frame = self
                .next_within(EVENT_WAIT)
                .await
                .unwrap_or_else(|| panic!("no {kind} frame arrived (awaited at {caller})"));
            assert_eq!(
                frame["type"], kind,
                "expected {kind}, got {frame} (awaited at {caller})"
            );
            frame
        }
    }

    /// The next frame, which must say that `user` is now `status`.
    pub async fn expect_status(&mut self, user: &User, status: &str) -> Value {
        let frame = self.expect("user.status").await;
        assert_eq!(frame["user_id"], user.id, "{frame}");
        assert_eq!(frame["status"], status, "{frame}");
        frame
    }

    /// Asserts that no frame at all arrives for a short while, on a socket that stays open.
    #[track_caller]
    pub fn expect_quiet(&mut self) -> impl std::future::Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.next(std::time::Duration::from_millis(300)).await {
                Next::Nothing => {}
                Next::Frame(frame) => panic!("unexpected frame: {frame} (at {caller})"),
                Next::Closed(how) => {
                    panic!(
                        "the socket closed where it should stay open and quiet: {how} (at {caller})"
                    )
                }
            }
        }
    }

    /// Whether the server closes the socket within `EVENT_WAIT`; a frame arriving first fails
    /// the test.
    pub async fn closed(&mut self) -> bool {
        match self.next(EVENT_WAIT).await {
            Next::Closed(_) => true,
            Next::Nothing => false,
            Next::Frame(frame) => panic!("a frame arrived where the socket should close: {frame}"),
        }
    }

    /// Drops the TCP connection without a closing handshake (dropping the stream sends no
    /// close frame).
    pub fn drop_abruptly(self) {
        drop(self.stream);
    }
}
