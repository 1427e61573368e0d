//! The OpenAPI 3.1 document, assembled from the handlers' annotations and the wire types of
//! [`crate::views`].

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::domain::is_hidden;
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
        http::sync::feed,
        http::health::health,
    ),
    components(schemas(
        crate::error::Problem,
        crate::error::FieldError,
        crate::views::Event,
        crate::views::Reply,
        crate::views::ChatSummary,
    )),
    modifiers(&BearerAuth, &StandardErrors, &Links, &MemberListBounds),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "users", description = "Profiles and presence"),
        (name = "chats", description = "Direct and group chats, and their members"),
        (name = "messages", description = "Messages and read tracking"),
        (name = "sync", description = "The change feed: catching up after time away"),
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

/// Links from the answers that create a user, a chat or a message to the operations that take
/// its id, so that a client (or a fuzzer) can follow them.
struct Links;

/// `(link name, target operation, [(parameter, expression)])`.
type Link = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// `(operation, status, links)`.
type LinkTable = [(&'static str, &'static str, &'static [Link])];

const LINKS: &LinkTable = &[
    (
        "register",
        "201",
        &[
            ("GetUser", "get_user", &[("user_id", "$response.body#/id")]),
            (
                "GetStatus",
                "get_status",
                &[("user_id", "$response.body#/id")],
            ),
            (
                "BlockUser",
                "block_user",
                &[("user_id", "$response.body#/id")],
            ),
            (
                "UnblockUser",
                "unblock_user",
                &[("user_id", "$response.body#/id")],
            ),
            (
                "UpdateUser",
                "update_user",
                &[("user_id", "$response.body#/id")],
            ),
            (
                "DeleteUser",
                "delete_user",
                &[("user_id", "$response.body#/id")],
            ),
        ],
    ),
    ("create_chat", "201", CHAT_LINKS),
    ("create_chat", "200", CHAT_LINKS),
    ("send_message", "201", MESSAGE_LINKS),
    ("send_message", "200", MESSAGE_LINKS),
];

const CHAT_LINKS: &[Link] = &[
    ("GetChat", "get_chat", &[("chat_id", "$response.body#/id")]),
    (
        "RenameChat",
        "rename_chat",
        &[("chat_id", "$response.body#/id")],
    ),
    (
        "DeleteChat",
        "delete_chat",
        &[("chat_id", "$response.body#/id")],
    ),
    (
        "ListMembers",
        "list_members",
        &[("chat_id", "$response.body#/id")],
    ),
    (
        "RemoveMember",
        "remove_member",
        &[
            ("chat_id", "$response.body#/id"),
            ("user_id", "$response.body#/created_by"),
        ],
    ),
    (
        "ListMessages",
        "list_messages",
        &[("chat_id", "$response.body#/id")],
    ),
    (
        "SendMessage",
        "send_message",
        &[("chat_id", "$response.body#/id")],
    ),
    (
        "MarkRead",
        "mark_read",
        &[("chat_id", "$response.body#/id")],
    ),
];

const MESSAGE_LINKS: &[Link] = &[
    (
        "EditMessage",
        "edit_message",
        &[
            ("chat_id", "$response.body#/chat_id"),
            ("message_id", "$response.body#/id"),
        ],
    ),
    (
        "DeleteMessage",
        "delete_message",
        &[
            ("chat_id", "$response.body#/chat_id"),
            ("message_id", "$response.body#/id"),
        ],
    ),
    (
        "ReadStatus",
        "read_status",
        &[
            ("chat_id", "$response.body#/chat_id"),
            ("message_id", "$response.body#/id"),
        ],
    ),
];

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::link::LinkBuilder;
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let id = operation.operation_id.clone().unwrap_or_default();
                for (_, status, links) in LINKS.iter().filter(|(op, ..)| *op == id) {
                    let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status)
                    else {
                        continue;
                    };
                    for (name, target, parameters) in links.iter() {
                        let link = parameters
                            .iter()
                            .fold(LinkBuilder::new().operation_id(*target), |b, (p, e)| {
                                b.parameter(*p, *e)
                            })
                            .build();
                        response.links.insert((*name).to_owned(), RefOr::T(link));
                    }
                }
                // Links that also fill in a body: a new user as the other member of a direct
                // chat, and a new chat's creator added again (left as they are).
                let with_body = match id.as_str() {
                    "register" => vec![(
                        "201",
                        "StartDirectChat",
                        LinkBuilder::new()
                            .operation_id("create_chat")
                            .request_body(Some(
                                serde_json::json!({"user_ids": ["$response.body#/id"]}),
                            )),
                    )],
                    "create_chat" => ["201", "200"]
                        .into_iter()
                        .map(|status| {
                            let link = LinkBuilder::new()
                                .operation_id("add_members")
                                .parameter("chat_id", "$response.body#/id")
                                .request_body(Some(serde_json::json!({
                                    "user_ids": ["$response.body#/created_by"]
                                })));
                            (status, "AddMembers", link)
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                for (status, name, link) in with_body {
                    if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status)
                    {
                        response
                            .links
                            .insert(name.to_owned(), RefOr::T(link.build()));
                    }
                }
            }
        }
    }
}

/// The bare-array form of `MemberList` takes 1–1,000 ids, as its object form says (a derive
/// cannot put bounds on a tuple variant).
struct MemberListBounds;

impl Modify for MemberListBounds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let Some(RefOr::T(Schema::OneOf(one_of))) = openapi
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("MemberList"))
        else {
            return;
        };
        for item in &mut one_of.items {
            if let RefOr::T(Schema::Array(array)) = item {
                array.min_items = Some(1);
                array.max_items = Some(1000);
            }
        }
    }
}

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as served: utoipa writes a link's `operationId` and `requestBody` in snake
/// case, which no OpenAPI reader knows, so they are renamed here.
pub fn document_json() -> serde_json::Value {
    let mut doc = serde_json::to_value(document()).unwrap_or_default();
    let operations = doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let links = operation["responses"]
            .as_object_mut()
            .into_iter()
            .flat_map(|responses| responses.values_mut())
            .filter_map(|response| response.get_mut("links"))
            .filter_map(serde_json::Value::as_object_mut)
            .flat_map(|links| links.values_mut())
            .filter_map(serde_json::Value::as_object_mut);
        for link in links {
            for (from, to) in [
                ("operation_id", "operationId"),
                ("request_body", "requestBody"),
            ] {
                if let Some(value) = link.remove(from) {
                    link.insert(to.to_owned(), value);
                }
            }
        }
    }
    add_text_rules(&mut doc);
    doc
}

/// The rules of names that a derive cannot state: the patterns of chat and display names,
/// made from the very predicates the server checks them with, and `current_password` being
/// required beside a new password or email.
fn add_text_rules(doc: &mut serde_json::Value) {
    use serde_json::json;
    // Trimmed, not empty, without control or format characters (`domain::is_hidden`).
    let hidden = class(is_hidden);
    let blank = class(|c| is_hidden(c) || c.is_whitespace());
    let name = format!("^[^{hidden}]*[^{blank}][^{hidden}]*$");
    let schemas = &mut doc["components"]["schemas"];
    for (schema, field) in [
        ("NewChat", "name"),
        ("ChatUpdate", "name"),
        ("ProfileUpdate", "display_name"),
    ] {
        if let Some(property) = schemas[schema]["properties"][field].as_object_mut() {
            property.insert("pattern".into(), json!(name));
        }
    }
    let needs_current = |field: &str| {
        json!({
            "if": {"properties": {field: {"type": "string"}}, "required": [field]},
            "then": {"properties": {"current_password": {"type": "string"}}, "required": ["current_password"]},
        })
    };
    if let Some(update) = schemas["ProfileUpdate"].as_object_mut() {
        update.insert(
            "allOf".into(),
            json!([needs_current("password"), needs_current("email")]),
        );
    }
}

/// A regular-expression class body (without the brackets) of every character `pick` takes,
/// as ranges; astral characters are written as themselves.
fn class(pick: impl Fn(char) -> bool) -> String {
    use std::fmt::Write;
    let escape = |c: char| match u32::from(c) {
        n if n <= 0xFFFF => format!("\\u{n:04x}"),
        _ => c.to_string(),
    };
    let mut out = String::new();
    let mut run: Option<(char, char)> = None;
    let flush = |run: Option<(char, char)>, out: &mut String| {
        if let Some((lo, hi)) = run {
            let _ = if lo == hi {
                write!(out, "{}", escape(lo))
            } else {
                write!(out, "{}-{}", escape(lo), escape(hi))
            };
        }
    };
    for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
        if !pick(c) {
            flush(run.take(), &mut out);
            continue;
        }
        run = match run {
            Some((lo, hi)) if u32::from(hi) + 1 == u32::from(c) => Some((lo, c)),
            other => {
                flush(other, &mut out);
                Some((c, c))
            }
        };
    }
    flush(run, &mut out);
    out
}

/// `GET /api/openapi.json` — this API's description.
pub async fn serve() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::Json(document_json()),
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
