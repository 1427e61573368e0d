//! The OpenAPI 3.1 document, assembled from the handlers' annotations and the wire types of
//! [`crate::views`].

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
        http::users::list_blocks,
        http::users::block_user,
        http::users::unblock_user,
        http::chats::list_chats,
        http::chats::create_chat,
        http::chats::get_chat,
        http::chats::rename_chat,
        http::chats::delete_chat,
        http::chats::list_members,
        http::chats::add_members,
        http::chats::remove_member,
        http::messages::list_messages,
        http::messages::send_message,
        http::messages::edit_message,
        http::messages::delete_message,
        http::messages::read_status,
        http::messages::mark_read,
        http::health::health,
    ),
    components(schemas(
        crate::error::Problem,
        crate::error::FieldError,
        crate::views::Event,
        crate::views::Reply,
        crate::views::ChatSummary,
    )),
    modifiers(&BearerAuth, &StandardErrors),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "users", description = "Profiles and presence"),
        (name = "chats", description = "Direct and group chats, and their members"),
        (name = "messages", description = "Messages and read tracking"),
        (name = "health", description = "Whether the service can serve"),
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
                    .description(Some(
                        "An access token (JWT, header `typ: at+jwt`) from login or refresh. It \
                         names its session (`sid`): once the session ends (logout, a password \
                         change, a refresh-token replay, account deletion, its lifetime) the \
                         token is refused with 401 `session_ended`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds the answers every route can give to each operation that does not list them itself:
/// 400/413/415/422 where there is a body, 422 where there are parameters, 401 where a token is
/// required, and 503 (the database cannot be reached) everywhere.
struct StandardErrors;

impl Modify for StandardErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new().description(description).content(
                crate::error::PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
        };
        let unavailable = problem(
            "The database cannot be reached or did not answer in time \
             (`database_unavailable`); see Retry-After",
        )
        .header(
            "retry-after",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait"))
                .build(),
        )
        .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let has_body = operation.request_body.is_some();
                let has_params = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let mut add = |code: &str, description: &str| {
                    operation
                        .responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| problem(description).build().into());
                };
                if has_body {
                    add("400", "The body is not valid JSON");
                    add("413", "The body is over 64 KiB");
                    add("415", "The body is not JSON (or, for login, a form)");
                    add("422", "A field is missing or invalid");
                }
                if has_params {
                    add("422", "A parameter is invalid");
                }
                if secured {
                    add(
                        "401",
                        "Missing, malformed, expired or forged access token, or its session \
                         ended (`session_ended`)",
                    );
                }
                operation
                    .responses
                    .responses
                    .entry("503".to_owned())
                    .or_insert_with(|| unavailable.clone().into());
            }
        }
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

#[cfg(test)]
mod tests {
    use super::document;

    #[test]
    fn every_operation_lists_its_error_answers() {
        let doc = document();
        for (path, item) in &doc.paths.paths {
            let operations = [&item.get, &item.put, &item.post, &item.delete];
            for operation in operations.into_iter().flatten() {
                let codes: Vec<&str> = operation
                    .responses
                    .responses
                    .keys()
                    .map(String::as_str)
                    .collect();
                if operation.request_body.is_some() {
                    for code in ["400", "413", "422"] {
                        assert!(
                            codes.contains(&code),
                            "{path}: {code} missing from {codes:?}"
                        );
                    }
                }
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    assert!(codes.contains(&"401"), "{path}: 401 missing from {codes:?}");
                }
                assert!(codes.contains(&"503"), "{path}: 503 missing from {codes:?}");
            }
        }
    }
}
