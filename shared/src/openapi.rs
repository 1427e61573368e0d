//! The OpenAPI 3.1 document, assembled from the handlers' annotations.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Block Chat API",
        description = "A real-time chat API: accounts, direct and group chats, messages with read \
            tracking, and WebSocket events. Errors are `application/problem+json` with a stable \
            `code`. Lists take `limit` (1–100, default 50) and a `cursor` from the previous page's \
            `X-Next-Cursor` header. Real time: the WebSocket API (`?token=`) sends `Event` \
            frames and answers client frames (`sendMessage`, `typing`, `markRead`, `ping`) with \
            `Reply` frames; both are described under components.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        http::auth::register,
        http::auth::login,
        http::auth::refresh_tokens,
        http::auth::logout,
        http::auth::me,
        http::users::list_users,
        http::users::me,
        http::users::get_user,
        http::users::update_user,
        http::users::delete_user,
        http::users::get_status,
        http::users::put_status,
        http::chats::list_chats,
        http::chats::create_chat,
        http::chats::get_chat,
        http::chats::rename_chat,
        http::chats::delete_chat,
        http::chats::add_members,
        http::chats::remove_member,
        http::messages::list_messages,
        http::messages::send_message,
        http::messages::edit_message,
        http::messages::delete_message,
        http::messages::read_status,
        http::messages::mark_read,
    ),
    components(schemas(
        crate::error::Problem,
        crate::error::FieldError,
        crate::realtime::Event,
        crate::realtime::events::Reply,
        crate::realtime::events::ChatSummary,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "users", description = "Profiles and presence"),
        (name = "chats", description = "Direct and group chats, and their members"),
        (name = "messages", description = "Messages and read tracking"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/openapi.json` — this API's description.
pub async fn serve() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::Json(document()),
    )
}
