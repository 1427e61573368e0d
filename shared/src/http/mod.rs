//! The HTTP transport: one axum router per endpoint group, each deployed as its own Lambda
//! function and served, unchanged, by the local gateway.
//!
//! A handler extracts (the [`extract`] extractors: the caller, the path, the body), calls one
//! use case of [`crate::service`], hands its outcome to `Push::deliver` and answers with what
//! that returns. Nothing below this layer imports from it.

use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lambda_http::RequestExt;
use tower::Layer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};
use tracing::field::Empty;

use crate::error::Error;
use crate::state::AppState;

pub mod auth;
pub mod chats;
pub mod extract;
pub mod health;
pub mod messages;
pub mod openapi;
pub mod pagination;
pub mod sync;
pub mod users;

pub use extract::MAX_BODY_BYTES;

/// The endpoint groups; each one is a Lambda function of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    Auth,
    Users,
    Chats,
    Messages,
}

impl Group {
    pub const ALL: [Group; 4] = [Group::Auth, Group::Users, Group::Chats, Group::Messages];

    /// The function's name, as in `functions/<name>` and `template.yaml`.
    pub fn name(self) -> &'static str {
        match self {
            Group::Auth => "auth",
            Group::Users => "users",
            Group::Chats => "chats",
            Group::Messages => "messages",
        }
    }

    /// Which function API Gateway hands a path to, mirroring the routes of `template.yaml`.
    /// Paths outside every group go to `auth`, whose fallback answers 404 like the others.
    pub fn for_path(path: &str) -> Group {
        let rest = path.strip_prefix("/api").unwrap_or(path);
        let mut segments = rest.trim_start_matches('/').split('/');
        match (segments.next(), segments.next(), segments.next()) {
            (Some("users"), ..) => Group::Users,
            (Some("chats"), Some(_), Some("messages")) => Group::Messages,
            (Some("chats"), ..) => Group::Chats,
            (Some("sync"), ..) => Group::Chats,
            _ => Group::Auth,
        }
    }
}

/// The service a function runs: the group's router, with trailing slashes ignored.
pub type App = NormalizePath<Router>;

/// Builds the service for one endpoint group.
pub fn app(group: Group, state: AppState) -> App {
    let router = match group {
        Group::Auth => auth::router()
            .route("/api/openapi.json", get(openapi::serve))
            .route("/api/health", get(health::health)),
        Group::Users => users::router(),
        Group::Chats => chats::router().merge(sync::router()),
        Group::Messages => messages::router(),
    };
    NormalizePathLayer::trim_trailing_slash().layer(finish(router, state))
}

/// Layers every group shares: body limit, problem+json for unknown routes and methods, the
/// request's deadline, and a request span that names the route template and the chat; the
/// caller's id is recorded into it by the `AuthUser` extractor.
fn finish(router: Router<AppState>, state: AppState) -> Router {
    let deadline = state.config.request_deadline;
    router
        .fallback(|| async { Error::NotFound("no such route") })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            deadline,
            within_deadline,
        ))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &http::Request<_>| request_span(req))
                .on_response(
                    |res: &http::Response<_>, latency: Duration, _span: &tracing::Span| {
                        tracing::info!(
                            status = res.status().as_u16(),
                            latency_ms = latency.as_secs_f64() * 1000.0,
                            "response"
                        );
                    },
                ),
        )
        .with_state(state)
}

/// How long Lambda leaves an answer to travel back after the deadline fired.
const LAMBDA_MARGIN: Duration = Duration::from_millis(500);

/// Answers 503 `database_unavailable` when the request has not finished within `deadline` (or
/// before the Lambda invocation's own deadline, whichever comes first). Everything a handler
/// waits on for long is the database: a query to a server that froze, or a network that
/// drops its packets, would otherwise never end. The abandoned query's connection is not
/// reused unless it answers a ping (see `Config::pool_options`).
async fn within_deadline(
    State(deadline): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let lambda_left = request
        .lambda_context_ref()
        .filter(|context| context.deadline > 0)
        .and_then(|context| context.deadline().duration_since(SystemTime::now()).ok())
        .map(|left| left.saturating_sub(LAMBDA_MARGIN));
    let deadline = lambda_left.map_or(deadline, |left| left.min(deadline));
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(elapsed) => Error::unavailable(elapsed).into_response(),
    }
}

/// The span of one request: the route as declared (`/api/chats/{chat_id}`, never the raw path
/// with its ids), the chat when the route has one, and room for the caller's id.
fn request_span<B>(req: &http::Request<B>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = route.unwrap_or("unmatched"),
        user_id = Empty,
        chat_id = Empty,
    );
    if let Some(chat_id) = route.and_then(|r| path_param(r, req.uri().path(), "chat_id")) {
        span.record("chat_id", chat_id);
    }
    span
}

/// The value of `{name}` in `path`, read at the place `route` declares it.
fn path_param(route: &str, path: &str, name: &str) -> Option<i64> {
    let placeholder = format!("{{{name}}}");
    let index = route.split('/').position(|s| s == placeholder)?;
    path.split('/').nth(index)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Mutex};

    use tower::ServiceExt;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    use super::{Group, app, path_param};
    use crate::config::Config;
    use crate::state::AppState;

    /// A span's name and its fields, as they end up after `record`s.
    type SpanFields = (&'static str, BTreeMap<String, String>);

    /// Every span opened, by span id.
    #[derive(Clone, Default)]
    struct Spans(Arc<Mutex<HashMap<u64, SpanFields>>>);

    struct Fields<'a>(&'a mut BTreeMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for Spans {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
            let mut fields = BTreeMap::new();
            attrs.record(&mut Fields(&mut fields));
            if let Ok(mut spans) = self.0.lock() {
                spans.insert(id.into_u64(), (attrs.metadata().name(), fields));
            }
        }
        fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
            if let Ok(mut spans) = self.0.lock()
                && let Some((_, fields)) = spans.get_mut(&id.into_u64())
            {
                values.record(&mut Fields(fields));
            }
        }
    }

    #[tokio::test]
    async fn the_request_span_names_the_route_the_caller_and_the_chat() {
        let config = Config::from_lookup(|k| match k {
            "DATABASE_URL" => Some("postgres://nobody@127.0.0.1:1/none".into()),
            "JWT_SECRET" => Some("a-test-secret-that-is-long-enough-0000".into()),
            _ => None,
        })
        .expect("config");
        // No database: the session check fails, after the span has the caller.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_millis(100))
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool");
        let state = AppState::with_pool(config, pool);
        let token = state.keys.issue_access(42, Some(3)).expect("token");
        let spans = Spans::default();
        let _guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
        let request = http::Request::get("/api/chats/7/messages?limit=0")
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .expect("request");
        let response = app(Group::Messages, state)
            .oneshot(request)
            .await
            .expect("response");
        assert_eq!(response.status(), 503, "the session could not be checked");
        let spans = spans.0.lock().map(|s| s.clone()).unwrap_or_default();
        let (_, request) = spans
            .values()
            .find(|(name, _)| *name == "request")
            .expect("a request span");
        assert_eq!(
            request.get("route").map(String::as_str),
            Some("/api/chats/{chat_id}/messages")
        );
        assert_eq!(request.get("user_id").map(String::as_str), Some("42"));
        assert_eq!(request.get("chat_id").map(String::as_str), Some("7"));
    }

    #[test]
    fn the_chat_id_is_read_where_the_route_declares_it() {
        let route = "/api/chats/{chat_id}/messages/{message_id}";
        assert_eq!(
            path_param(route, "/api/chats/12/messages/99", "chat_id"),
            Some(12)
        );
        assert_eq!(path_param("/api/chats", "/api/chats", "chat_id"), None);
        assert_eq!(
            path_param("/api/chats/{chat_id}", "/api/chats/x", "chat_id"),
            None
        );
    }

    #[test]
    fn paths_go_to_the_function_that_template_yaml_routes_them_to() {
        assert_eq!(Group::for_path("/api/auth/login"), Group::Auth);
        assert_eq!(Group::for_path("/api/openapi.json"), Group::Auth);
        assert_eq!(Group::for_path("/api/health"), Group::Auth);
        assert_eq!(Group::for_path("/api/users"), Group::Users);
        assert_eq!(Group::for_path("/api/users/7/status"), Group::Users);
        assert_eq!(Group::for_path("/api/users/7/block"), Group::Users);
        assert_eq!(Group::for_path("/api/users/me/blocks"), Group::Users);
        assert_eq!(Group::for_path("/api/chats"), Group::Chats);
        assert_eq!(Group::for_path("/api/sync"), Group::Chats);
        assert_eq!(Group::for_path("/api/chats/"), Group::Chats);
        assert_eq!(Group::for_path("/api/chats/3/members/4"), Group::Chats);
        assert_eq!(Group::for_path("/api/chats/3/members"), Group::Chats);
        assert_eq!(Group::for_path("/api/chats/3/messages"), Group::Messages);
        assert_eq!(
            Group::for_path("/api/chats/3/messages/read"),
            Group::Messages
        );
        assert_eq!(Group::for_path("/nowhere"), Group::Auth);
    }
}
