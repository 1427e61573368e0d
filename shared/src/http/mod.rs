//! The HTTP side: one axum router per endpoint group, each deployed as its own Lambda function
//! and served, unchanged, by the local gateway.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower::Layer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

use crate::error::Error;
use crate::state::AppState;

pub mod auth;
pub mod chats;
pub mod messages;
pub mod pagination;
pub mod users;
pub mod views;

/// Request bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
            _ => Group::Auth,
        }
    }
}

/// The service a function runs: the group's router, with trailing slashes ignored.
pub type App = NormalizePath<Router>;

/// Builds the service for one endpoint group.
pub fn app(group: Group, state: AppState) -> App {
    let router = match group {
        Group::Auth => auth::router(),
        Group::Users => users::router(),
        Group::Chats => chats::router(),
        Group::Messages => messages::router(),
    };
    NormalizePathLayer::trim_trailing_slash().layer(finish(router, state))
}

/// Layers every group shares: body limit, problem+json for unknown routes and methods, and a
/// request span that names the route.
fn finish(router: Router<AppState>, state: AppState) -> Router {
    router
        .fallback(|| async { Error::NotFound("no such route") })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &http::Request<_>| {
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                    )
                })
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

#[cfg(test)]
mod tests {
    use super::Group;

    #[test]
    fn paths_go_to_the_function_that_template_yaml_routes_them_to() {
        assert_eq!(Group::for_path("/api/auth/login"), Group::Auth);
        assert_eq!(Group::for_path("/api/openapi.json"), Group::Auth);
        assert_eq!(Group::for_path("/api/users"), Group::Users);
        assert_eq!(Group::for_path("/api/users/7/status"), Group::Users);
        assert_eq!(Group::for_path("/api/chats"), Group::Chats);
        assert_eq!(Group::for_path("/api/chats/"), Group::Chats);
        assert_eq!(Group::for_path("/api/chats/3/members/4"), Group::Chats);
        assert_eq!(Group::for_path("/api/chats/3/messages"), Group::Messages);
        assert_eq!(
            Group::for_path("/api/chats/3/messages/read"),
            Group::Messages
        );
        assert_eq!(Group::for_path("/nowhere"), Group::Auth);
    }
}
