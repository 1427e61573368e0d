//! API Gateway's WebSocket API, as clients and functions see it.
//!
//! Clients connect to `ws://ADDR/?token=…`. Each connection gets an id like API Gateway's, and
//! the `$connect`, `$default` and `$disconnect` routes reach the very handler the `websocket`
//! function runs, as the same event type. The same listener serves the management API
//! (`/@connections/{id}`: POST sends a frame, GET describes, DELETE closes) that the functions'
//! `aws-sdk-apigatewaymanagement` client posts to, answering errors the way API Gateway does so
//! that the SDK turns them into the same typed errors (`GoneException` and others). It can be
//! told to fail, throttle or hold a share of posts ([`crate::faults`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body as EventBody;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use blockchat::AppState;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::faults::{FaultSwitch, Injected, PushFaultCounts, PushFaults};
use crate::http::{ACCOUNT_ID, API_ID};

/// API Gateway's limit on one WebSocket message.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// API Gateway closes a connection that has been idle this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// … and any connection after this long.
pub const MAX_CONNECTION_DURATION: Duration = Duration::from_secs(2 * 60 * 60);
/// The stage the events name.
pub const STAGE: &str = "local";
/// The close API Gateway sends when it goes away (a deployment, a stop).
pub const GOING_AWAY: CloseReason = (1001, "Going away");

/// Why the server ends a connection: the close code and reason, for the client's close frame
/// and for `$disconnect`.
pub type CloseReason = (u16, &'static str);

enum Outbound {
    Frame(String),
    Close(u16, &'static str),
}

struct Connection {
    outbound: mpsc::UnboundedSender<Outbound>,
    /// Set when the server ends the connection (`DELETE @connections`, a stop), which, as in
    /// API Gateway, does not wait for the client's closing handshake.
    closing: watch::Sender<Option<CloseReason>>,
    connected_at: DateTime<Utc>,
    last_active_at: DateTime<Utc>,
    source_ip: String,
    user_agent: Option<String>,
}

/// The WebSocket API: live connections and the state the handler runs with.
#[derive(Clone)]
pub struct WebSocketApi {
    state: AppState,
    connections: Arc<Mutex<HashMap<String, Connection>>>,
    domain: String,
    faults: FaultSwitch,
    /// Set once the gateway stops: new connections are refused.
    draining: Arc<AtomicBool>,
    /// Connections whose life ([`run`], through its `$disconnect`) has not ended yet.
    running: Arc<AtomicUsize>,
}

impl WebSocketApi {
    pub fn new(state: &AppState, addr: SocketAddr) -> Self {
        Self {
            state: state.clone(),
            connections: Arc::new(Mutex::new(HashMap::new())),
            domain: addr.to_string(),
            faults: FaultSwitch::new(PushFaults::NONE),
            draining: Arc::new(AtomicBool::new(false)),
            running: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Live connection count (for logs and tests).
    pub fn connection_count(&self) -> usize {
        self.connections.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Faults for `@connections` to inject into the posts it gets from now on;
    /// [`PushFaults::NONE`] turns them off.
    pub fn set_push_faults(&self, faults: PushFaults) {
        self.faults.set(faults);
    }

    /// The faults in force.
    pub fn push_faults(&self) -> PushFaults {
        self.faults.get()
    }

    /// What `@connections` did to the posts it got since the gateway started.
    pub fn push_fault_counts(&self) -> PushFaultCounts {
        self.faults.counts()
    }

    /// Stops taking new connections; those open stay until [`WebSocketApi::close_all`].
    pub fn refuse_new_connections(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Closes every connection with `reason` (a close frame, without waiting for the client's
    /// answer) and waits, for at most `grace`, until `$disconnect` has run for each of them.
    /// Returns how many were still open when it gave up waiting.
    pub async fn close_all(&self, reason: CloseReason, grace: Duration) -> usize {
        if let Ok(connections) = self.connections.lock() {
            for connection in connections.values() {
                connection.closing.send_replace(Some(reason));
            }
        }
        let deadline = Instant::now() + grace;
        loop {
            let open = self.connection_count() + self.running.load(Ordering::SeqCst);
            if open == 0 || Instant::now() >= deadline {
                return self.connection_count();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Drops a connection the way a lost `$disconnect` leaves it: the TCP connection closes
    /// without a closing handshake and the function is never told, so its `ws_connections` row
    /// stays until a push meets 410 Gone (API Gateway documents `$disconnect` as best effort).
    /// Returns whether the connection was live. For tests of that cleanup.
    pub fn drop_without_disconnect(&self, connection_id: &str) -> bool {
        let removed = self
            .connections
            .lock()
            .ok()
            .and_then(|mut c| c.remove(connection_id));
        match removed {
            // Without its entry, the connection's end finds nothing to report to `$disconnect`;
            // dropping the entry's senders ends the connection's loop and its writer, which
            // drops the socket's sink.
            Some(connection) => {
                drop(connection);
                true
            }
            None => false,
        }
    }

    /// The router for the listener: WebSocket upgrades anywhere, `@connections` beside them
    /// (with or without a stage prefix, as SDK endpoints may carry one).
    pub fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/@connections/{id}", any(management))
            .route("/{stage}/@connections/{id}", any(management_staged))
            .fallback(upgrade)
            .with_state(self)
    }

    fn with_connection<T>(&self, id: &str, f: impl FnOnce(&mut Connection) -> T) -> Option<T> {
        let mut connections = self.connections.lock().ok()?;
        connections.get_mut(id).map(f)
    }

    fn event(
        &self,
        route: &str,
        connection_id: &str,
        connected_at: DateTime<Utc>,
        extra: Value,
    ) -> ApiGatewayWebsocketProxyRequest {
        let now = Utc::now();
        let (event_type, direction) = match route {
            "$connect" => ("CONNECT", "IN"),
            "$disconnect" => ("DISCONNECT", "IN"),
            _ => ("MESSAGE", "IN"),
        };
        let mut event = json!({
            "requestContext": {
                "routeKey": route,
                "eventType": event_type,
                "messageDirection": direction,
                "extendedRequestId": request_id(),
                "requestTime": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
                "stage": STAGE,
                "connectedAt": connected_at.timestamp_millis(),
                "requestTimeEpoch": now.timestamp_millis(),
                "requestId": request_id(),
                "domainName": self.domain,
                "connectionId": connection_id,
                "apiId": API_ID,
                "accountId": ACCOUNT_ID,
                "identity": {"sourceIp": "127.0.0.1"},
            },
            "isBase64Encoded": false,
        });
        if let (Some(target), Value::Object(extra)) = (event.as_object_mut(), extra) {
            for (k, v) in extra {
                match (target.get_mut(&k), v) {
                    (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
                    (_, v) => {
                        target.insert(k, v);
                    }
                }
            }
        }
        serde_json::from_value(event).unwrap_or_default()
    }

    async fn invoke(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        blockchat::realtime::websocket::handle(&self.state, event).await
    }

    /// Tells the function the connection is gone, as API Gateway does after any close.
    async fn disconnect(
        &self,
        connection_id: &str,
        connected_at: DateTime<Utc>,
        code: u16,
        reason: &str,
    ) {
        let removed = self
            .connections
            .lock()
            .map(|mut c| c.remove(connection_id).is_some())
            .unwrap_or(false);
        if !removed {
            return;
        }
        let event = self.event(
            "$disconnect",
            connection_id,
            connected_at,
            json!({"requestContext": {"disconnectStatusCode": code, "disconnectReason": reason}}),
        );
        self.invoke(event).await;
        tracing::info!(connection_id, code, "websocket closed");
    }
}

fn request_id() -> String {
    let mut bytes = [0u8; 6];
    let _ = getrandom::fill(&mut bytes);
    STANDARD.encode(bytes)
}

/// An id like API Gateway's: 16 characters of base64.
fn connection_id() -> String {
    let mut bytes = [0u8; 10];
    let _ = getrandom::fill(&mut bytes);
    STANDARD.encode(bytes)
}

fn headers_json(headers: &HeaderMap) -> (Value, Value) {
    let mut single = serde_json::Map::new();
    let mut multi: serde_json::Map<String, Value> = serde_json::Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        single.insert(name.as_str().to_owned(), Value::String(value.clone()));
        if let Some(Value::Array(values)) = multi.get_mut(name.as_str()) {
            values.push(Value::String(value));
        } else {
            multi.insert(name.as_str().to_owned(), json!([value]));
        }
    }
    (Value::Object(single), Value::Object(multi))
}

fn query_json(raw: Option<&str>) -> (Value, Value) {
    let mut single = serde_json::Map::new();
    let mut multi: serde_json::Map<String, Value> = serde_json::Map::new();
    for (k, v) in form_pairs(raw.unwrap_or("")) {
        single.insert(k.clone(), Value::String(v.clone()));
        if let Some(Value::Array(values)) = multi.get_mut(&k) {
            values.push(Value::String(v));
        } else {
            multi.insert(k, json!([v]));
        }
    }
    (Value::Object(single), Value::Object(multi))
}

fn form_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'+' {
            out.push(b' ');
        } else if byte == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Some(value) = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(value);
            i += 3;
            continue;
        } else {
            out.push(byte);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn body_text(response: &ApiGatewayProxyResponse) -> String {
    match &response.body {
        Some(EventBody::Text(t)) => t.clone(),
        Some(EventBody::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

/// A WebSocket handshake: `$connect` decides; a refusal is an HTTP answer, as API Gateway
/// gives one.
async fn upgrade(
    State(api): State<WebSocketApi>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    if api.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/json")],
            json!({"message": "Service Unavailable"}).to_string(),
        )
            .into_response();
    }
    let (mut parts, _) = request.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(rejection) => {
            return (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/json")],
                json!({"message": format!("WebSocket upgrade expected: {rejection}")}).to_string(),
            )
                .into_response();
        }
    };
    let id = connection_id();
    let connected_at = Utc::now();
    let mut headers = parts.headers.clone();
    headers.remove("connection");
    headers.remove("upgrade");
    let (single_headers, multi_headers) = headers_json(&headers);
    let (query, multi_query) = query_json(parts.uri.query());
    let event = api.event(
        "$connect",
        &id,
        connected_at,
        json!({
            "headers": single_headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi_query,
            "requestContext": {"identity": {"sourceIp": peer.ip().to_string()}},
        }),
    );
    let answer = api.invoke(event).await;
    if answer.status_code != 200 {
        tracing::info!(connection_id = %id, status = answer.status_code, "websocket refused at $connect");
        let status = StatusCode::from_u16(u16::try_from(answer.status_code).unwrap_or(500))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            status,
            [("content-type", "application/json")],
            json!({"message": body_text(&answer)}).to_string(),
        )
            .into_response();
    }
    let protocol = answer
        .headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let user_agent = parts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (outbound, inbound) = mpsc::unbounded_channel();
    let (closing, closed) = watch::channel(None);
    if let Ok(mut connections) = api.connections.lock() {
        connections.insert(
            id.clone(),
            Connection {
                outbound,
                closing,
                connected_at,
                last_active_at: connected_at,
                source_ip: peer.ip().to_string(),
                user_agent,
            },
        );
    }
    let ws = match protocol {
        Some(p) => ws.protocols([p]),
        None => ws,
    };
    tracing::info!(connection_id = %id, "websocket connected");
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .on_failed_upgrade({
            let api = api.clone();
            let id = id.clone();
            move |_| {
                tokio::spawn(async move {
                    api.disconnect(&id, connected_at, 1006, "upgrade failed")
                        .await
                });
            }
        })
        .on_upgrade(move |socket| run(api, socket, id, connected_at, inbound, closed))
}

/// One connection's life: client frames go to `$default` one after another (in order),
/// frames posted through `@connections` go out, and any end is followed by `$disconnect`.
async fn run(
    api: WebSocketApi,
    socket: WebSocket,
    id: String,
    connected_at: DateTime<Utc>,
    mut outbound: mpsc::UnboundedReceiver<Outbound>,
    mut closing: watch::Receiver<Option<CloseReason>>,
) {
    let _running = Running::count(&api.running);
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        while let Some(message) = outbound.recv().await {
            match message {
                Outbound::Frame(text) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Outbound::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    break;
                }
            }
        }
    });
    let deadline = tokio::time::sleep(MAX_CONNECTION_DURATION);
    tokio::pin!(deadline);
    let (code, reason) = loop {
        let next = tokio::select! {
            next = tokio::time::timeout(IDLE_TIMEOUT, stream.next()) => next,
            () = &mut deadline => break GOING_AWAY,
            closed = closing.wait_for(Option::is_some) => {
                // A dropped sender: the connection was dropped without a `$disconnect`.
                break closed.ok().and_then(|reason| *reason).unwrap_or((1000, "Closed by the server"));
            }
        };
        let message = match next {
            Err(_) => break GOING_AWAY,
            Ok(None) => break (1006, "Connection closed abnormally"),
            Ok(Some(Err(e))) => {
                tracing::info!(connection_id = %id, error = %e, "websocket error");
                if e.to_string().to_lowercase().contains("too long")
                    || e.to_string().contains("size")
                {
                    break (1009, "Message too big");
                }
                break (1006, "Connection closed abnormally");
            }
            Ok(Some(Ok(message))) => message,
        };
        api.with_connection(&id, |c| c.last_active_at = Utc::now());
        let body = match message {
            Message::Text(text) => text.to_string(),
            Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Message::Close(frame) => {
                let code = frame.as_ref().map(|f| f.code).unwrap_or(1005);
                break (code, "Client closed");
            }
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let event = api.event("$default", &id, connected_at, json!({"body": body}));
        api.invoke(event).await;
    };
    api.with_connection(&id, |c| {
        let _ = c.outbound.send(Outbound::Close(code, reason));
    });
    api.disconnect(&id, connected_at, code, reason).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
}

/// Counts a connection's life while it lasts.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn count(running: &Arc<AtomicUsize>) -> Self {
        running.fetch_add(1, Ordering::SeqCst);
        Self(running.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An error as API Gateway's management API sends it; the SDK reads the type from the header.
fn management_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let mut response = (status, json!({"message": message}).to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(kind) = HeaderValue::from_str(kind) {
        headers.insert("x-amzn-errortype", kind);
    }
    response
}

async fn management_staged(
    State(api): State<WebSocketApi>,
    Path((_stage, id)): Path<(String, String)>,
    request: Request,
) -> Response {
    manage(api, id, request).await
}

async fn management(
    State(api): State<WebSocketApi>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    manage(api, id, request).await
}

async fn manage(api: WebSocketApi, id: String, request: Request) -> Response {
    let method = request.method().clone();
    let gone = || management_error(StatusCode::GONE, "GoneException", "");
    match method.as_str() {
        "POST" => {
            let body: Bytes =
                match axum::body::to_bytes(request.into_body(), MAX_MESSAGE_BYTES + 1).await {
                    Ok(body) => body,
                    Err(_) => {
                        return management_error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "PayloadTooLargeException",
                            "Message too long",
                        );
                    }
                };
            if body.len() > MAX_MESSAGE_BYTES {
                return management_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PayloadTooLargeException",
                    "Message too long",
                );
            }
            let verdict = api.faults.draw();
            if let Some(delay) = verdict.delay {
                tokio::time::sleep(delay).await;
            }
            match verdict.answer {
                Some(Injected::Fail) => {
                    return management_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalServerErrorException",
                        "Internal server error",
                    );
                }
                Some(Injected::Throttle) => {
                    return management_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "TooManyRequestsException",
                        "Too Many Requests",
                    );
                }
                None => {}
            }
            let text = String::from_utf8_lossy(&body).into_owned();
            match api.with_connection(&id, |c| c.outbound.send(Outbound::Frame(text)).is_ok()) {
                Some(true) => StatusCode::OK.into_response(),
                _ => gone(),
            }
        }
        "GET" => {
            let described = api.with_connection(&id, |c| {
                json!({
                    "connectedAt": c.connected_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    "lastActiveAt": c.last_active_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    "identity": {"sourceIp": c.source_ip, "userAgent": c.user_agent},
                })
            });
            match described {
                Some(body) => {
                    ([("content-type", "application/json")], body.to_string()).into_response()
                }
                None => gone(),
            }
        }
        "DELETE" => match api.with_connection(&id, |c| {
            let _ = c.outbound.send(Outbound::Close(1000, ""));
            c.closing.send_replace(Some((1000, "Closed by the server")));
        }) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => gone(),
        },
        _ => management_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadRequestException",
            "method not allowed",
        ),
    }
}

/// Serves the WebSocket API and the management endpoint until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: WebSocketApi,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        api.router()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_look_like_api_gateway_ones() {
        let id = connection_id();
        assert_eq!(id.len(), 16);
        assert_ne!(id, connection_id());
    }

    #[test]
    fn query_strings_decode_like_api_gateway() {
        let (single, multi) = query_json(Some("token=a.b%2Ec&chat_id=7&x=1&x=2&sp=a+b"));
        assert_eq!(single["token"], "a.b.c");
        assert_eq!(single["chat_id"], "7");
        assert_eq!(single["sp"], "a b");
        assert_eq!(multi["x"], json!(["1", "2"]));
    }
}
