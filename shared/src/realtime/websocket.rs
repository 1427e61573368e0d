//! The WebSocket API's routes: `$connect` authenticates and stores the connection,
//! `$disconnect` forgets it, `$default` routes client frames on `action`.
//!
//! The deployed `websocket` function and the local gateway call [`handle`] with the same
//! API Gateway event.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use tracing::Instrument;

use crate::auth::tokens::bearer_token;
use crate::db;
use crate::db::connections::ConnectionRow;
use crate::domain::Caller;
use crate::error::Error;
use crate::service::presence::Refusal;
use crate::service::{Outcome, messages, presence, sessions};
use crate::state::AppState;
use crate::views::Reply;

fn respond(status: i64, body: &str) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response.body = Some(Body::Text(body.to_owned()));
    response
}

/// Handles one WebSocket API event. Never fails: problems become the status API Gateway
/// sees (refusing a `$connect`) or an `error` frame on the socket.
pub async fn handle(
    state: &AppState,
    request: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let ctx = &request.request_context;
    let Some(connection_id) = ctx.connection_id.clone() else {
        return respond(400, "no connection id");
    };
    let route = ctx.route_key.clone().unwrap_or_else(|| "$default".into());
    let span = tracing::info_span!(
        "ws",
        route = %route,
        connection_id = %connection_id,
        user_id = tracing::field::Empty,
        chat_id = tracing::field::Empty,
    );
    async {
        match route.as_str() {
            "$connect" => connect(state, &connection_id, &request).await,
            "$disconnect" => {
                disconnect(state, &connection_id).await;
                respond(200, "")
            }
            _ => {
                frame(state, &connection_id, request.body.as_deref().unwrap_or("")).await;
                respond(200, "")
            }
        }
    }
    .instrument(span)
    .await
}

/// The access token a browser or a client sent: `?token=`, `Authorization: Bearer`, or an
/// entry of `Sec-WebSocket-Protocol` (browsers cannot set other headers). Returns the token and
/// the subprotocol to echo, if one was used.
fn connect_token(request: &ApiGatewayWebsocketProxyRequest) -> Option<(String, Option<String>)> {
    if let Some(token) = request.query_string_parameters.first("token")
        && !token.is_empty()
    {
        return Some((token.to_owned(), None));
    }
    let headers: &HeaderMap = &request.headers;
    if let Ok(token) = bearer_token(headers) {
        return Some((token.to_owned(), None));
    }
    let protocols = headers.get("sec-websocket-protocol")?.to_str().ok()?;
    let entries: Vec<&str> = protocols
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let token = entries.iter().find(|p| p.matches('.').count() == 2)?;
    // Echo a protocol name the client offered beside the token (`["bearer", token]`), or the
    // token entry itself; a browser closes a socket whose answer names no offered protocol.
    let echo = entries
        .iter()
        .find(|p| p.matches('.').count() != 2)
        .unwrap_or(token);
    Some(((*token).to_owned(), Some((*echo).to_owned())))
}

async fn connect(
    state: &AppState,
    connection_id: &str,
    request: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let Some((token, protocol)) = connect_token(request) else {
        tracing::info!("connect refused: no token");
        return respond(401, "an access token is required");
    };
    let caller = match state.keys.verify_access(&token) {
        Ok(claims) => Caller {
            id: claims.user_id,
            session: claims.sid,
        },
        Err(_) => {
            tracing::info!("connect refused: invalid token");
            return respond(401, "the access token is not valid");
        }
    };
    let span = tracing::Span::current();
    span.record("user_id", caller.id);
    let chat_id = match request.query_string_parameters.first("chat_id") {
        None | Some("") => None,
        Some(raw) => match raw.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => return respond(400, "chat_id must be a number"),
        },
    };
    if let Some(chat_id) = chat_id {
        span.record("chat_id", chat_id);
    }
    let max_connections = state.config.limits.connections_per_user;
    let connected = tokio::time::timeout(
        state.config.request_deadline,
        presence::connect(&state.db, caller, connection_id, chat_id, max_connections),
    )
    .await
    .unwrap_or_else(|elapsed| Err(Refusal::Failed(Error::unavailable(elapsed))));
    match connected {
        Ok(outcome) => {
            state.push.deliver(outcome).await;
            let mut response = respond(200, "");
            if let Some(protocol) = protocol
                && let Ok(value) = HeaderValue::from_str(&protocol)
            {
                response.headers.insert("sec-websocket-protocol", value);
            }
            response
        }
        Err(Refusal::NotAMember) => {
            tracing::info!(
                user_id = caller.id,
                chat_id,
                "connect refused: not a member"
            );
            respond(403, "not a member of that chat")
        }
        Err(Refusal::AccountGone) => respond(401, "this account no longer exists"),
        Err(Refusal::SessionEnded) => {
            tracing::info!("connect refused: session ended");
            respond(401, "the session has ended; log in again")
        }
        Err(Refusal::Failed(e @ Error::Unavailable(_))) => {
            tracing::warn!(error = %e.chain(), "connect refused: database unavailable");
            respond(503, "the database is unavailable; try again shortly")
        }
        Err(Refusal::Failed(e)) => {
            tracing::error!(error = %e.chain(), "connect failed");
            respond(500, "internal error")
        }
    }
}

/// Forgets the connection, within the request deadline: past it the row stays until the
/// next post to it answers 410 or the stale sweep takes it.
async fn disconnect(state: &AppState, connection_id: &str) {
    let forget = async {
        let outcome = presence::disconnect(&state.db, connection_id).await;
        state.push.deliver(outcome).await;
    };
    if tokio::time::timeout(state.config.request_deadline, forget)
        .await
        .is_err()
    {
        tracing::warn!("disconnect: the database did not answer in time");
    }
}

/// A client frame, routed on `action`.
#[derive(Debug, Deserialize)]
#[serde(tag = "action")]
enum Frame {
    #[serde(rename = "sendMessage")]
    SendMessage {
        chat_id: Option<i64>,
        content: String,
        client_id: Option<String>,
    },
    #[serde(rename = "typing")]
    Typing { chat_id: Option<i64> },
    #[serde(rename = "markRead")]
    MarkRead {
        chat_id: Option<i64>,
        up_to_seq: Option<i64>,
    },
    #[serde(rename = "ping")]
    Ping,
}

const ACTIONS: &str = "sendMessage, typing, markRead, ping";

fn error_reply(code: &str, detail: impl Into<String>) -> Reply {
    Reply::Error {
        code: code.to_owned(),
        detail: detail.into(),
        client_id: None,
    }
}

fn parse_frame(body: &str) -> Result<Frame, Reply> {
    let value: serde_json::Value = serde_json::from_str(body)
        .map_err(|_| error_reply("malformed_json", "a frame must be a JSON object"))?;
    let action = value.get("action").and_then(|a| a.as_str()).unwrap_or("");
    if !ACTIONS.split(", ").any(|a| a == action) {
        return Err(error_reply(
            "unknown_action",
            format!("`action` must be one of {ACTIONS}"),
        ));
    }
    serde_json::from_value(value).map_err(|e| error_reply("invalid_frame", e.to_string()))
}

/// Answers a frame within the request deadline: past it, with a `database_unavailable` error
/// frame, as an HTTP request gets a 503.
async fn frame(state: &AppState, connection_id: &str, body: &str) {
    let deadline = state.config.request_deadline;
    let reply = match tokio::time::timeout(deadline, answer(state, connection_id, body)).await {
        Ok(reply) => reply,
        Err(elapsed) => Some(from_error(&Error::unavailable(elapsed))),
    };
    if let Some(reply) = reply {
        state.push.reply(connection_id, &reply).await;
    }
}

/// Counts the frame against the connection's budget, then carries it out; returns the reply
/// for this connection, if any. Bad frames count too, so that a flood of any kind is cut.
async fn answer(state: &AppState, connection_id: &str, body: &str) -> Option<Reply> {
    let limits = &state.config.limits;
    let found = match db::connections::find(&state.db, connection_id, limits.frame_window).await {
        Ok(Some(found)) if !found.live => {
            // The session check of every frame rides on the same lookup.
            let reply = error_reply(
                "session_ended",
                "the session of this connection has ended; log in again",
            );
            state.push.reply(connection_id, &reply).await;
            state
                .push
                .deliver(sessions::end_connection(&state.db, connection_id).await)
                .await;
            return None;
        }
        Ok(Some(found)) => found,
        Ok(None) => {
            return Some(error_reply(
                "unknown_connection",
                "this connection is not registered; reconnect",
            ));
        }
        Err(e) => return Some(from_error(&e)),
    };
    let session = found.session_id;
    let connection = found.connection;
    tracing::Span::current().record("user_id", connection.user_id);
    if connection.frames > limits.frames_per_window {
        // One error frame says why; the rest of the window's frames are dropped unanswered,
        // so that a flood gets no flood of answers.
        tracing::info!(
            frames = connection.frames,
            "frame over the connection's budget"
        );
        return (connection.frames == limits.frames_per_window + 1).then(|| {
            error_reply(
                "rate_limited",
                format!(
                    "at most {} frames every {} seconds; frames are dropped until the window ends",
                    limits.frames_per_window,
                    limits.frame_window.as_secs()
                ),
            )
        });
    }
    match parse_frame(body) {
        Ok(frame) => act(state, connection_id, &connection, session, frame).await,
        Err(reply) => Some(reply),
    }
}

fn from_error(e: &Error) -> Reply {
    let problem = e.problem();
    error_reply(&problem.code, problem.detail)
}

/// Delivers a use case's notices; a failed use case becomes an error reply.
async fn deliver<T>(state: &AppState, outcome: Result<Outcome<T>, Error>) -> Option<Reply> {
    match outcome {
        Ok(outcome) => {
            state.push.deliver(outcome).await;
            None
        }
        Err(e) => Some(from_error(&e)),
    }
}

/// Carries out a frame; returns the reply for this connection, if any.
async fn act(
    state: &AppState,
    connection_id: &str,
    connection: &ConnectionRow,
    session: Option<i64>,
    frame: Frame,
) -> Option<Reply> {
    let caller = Caller {
        id: connection.user_id,
        session,
    };
    let chat_of = |requested: Option<i64>| -> Result<i64, Reply> {
        let chat_id = match (requested, connection.chat_id) {
            (Some(c), Some(scope)) if c != scope => Err(error_reply(
                "out_of_scope",
                "this connection is scoped to another chat",
            )),
            (Some(c), _) | (None, Some(c)) => Ok(c),
            (None, None) => Err(error_reply("invalid_frame", "`chat_id` is required")),
        }?;
        tracing::Span::current().record("chat_id", chat_id);
        Ok(chat_id)
    };
    let db = &state.db;
    match frame {
        Frame::Ping => Some(Reply::Pong),
        Frame::SendMessage {
            chat_id,
            content,
            client_id,
        } => {
            // A refusal names the send it answers.
            let refused = |reply: Reply| match reply {
                Reply::Error { code, detail, .. } => Reply::Error {
                    code,
                    detail,
                    client_id: client_id.clone(),
                },
                other => other,
            };
            let chat_id = match chat_of(chat_id) {
                Ok(c) => c,
                Err(reply) => return Some(refused(reply)),
            };
            match messages::send(db, caller, chat_id, content, client_id.clone()).await {
                Ok(outcome) => {
                    // The ack answers this frame, so it goes ahead of the fan-out, which
                    // reaches this connection too.
                    let ack = Reply::Ack {
                        client_id,
                        message: Box::new(outcome.value().item.clone()),
                    };
                    state.push.reply(connection_id, &ack).await;
                    state.push.deliver(outcome).await;
                    None
                }
                Err(e) => Some(refused(from_error(&e))),
            }
        }
        Frame::Typing { chat_id } => match chat_of(chat_id) {
            Ok(chat_id) => {
                let interval = state.config.limits.typing_interval;
                deliver(state, presence::typing(db, caller, chat_id, interval).await).await
            }
            Err(reply) => Some(reply),
        },
        Frame::MarkRead { chat_id, up_to_seq } => match chat_of(chat_id) {
            Ok(chat_id) => {
                deliver(
                    state,
                    messages::mark_read(db, caller, chat_id, up_to_seq).await,
                )
                .await
            }
            Err(reply) => Some(reply),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_route_on_action() {
        assert!(matches!(
            parse_frame(r#"{"action":"ping"}"#),
            Ok(Frame::Ping)
        ));
        assert!(matches!(
            parse_frame(r#"{"action":"sendMessage","chat_id":1,"content":"hi"}"#),
            Ok(Frame::SendMessage {
                chat_id: Some(1),
                ..
            })
        ));
    }

    #[test]
    fn bad_frames_get_an_error_code() {
        let code = |body: &str| match parse_frame(body) {
            Err(Reply::Error { code, .. }) => code,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(code("not json"), "malformed_json");
        assert_eq!(code(r#"{"action":"dance"}"#), "unknown_action");
        assert_eq!(code(r#"{"no":"action"}"#), "unknown_action");
        assert_eq!(
            code(r#"{"action":"sendMessage","chat_id":1}"#),
            "invalid_frame"
        );
    }
}
