//! Extractors whose rejections speak problem+json, and the authenticated caller.
//!
//! Transport: axum only. The caller it proves is a [`Caller`], which the use cases take.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::auth::tokens::{JwtKeys, bearer_token};
use crate::domain::Caller;
use crate::error::{Error, FieldError};
use crate::service::sessions;
use crate::state::AppState;

/// Request bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body. Unreadable JSON is 400, a body of the wrong shape is 422 naming the field, a
/// body over the limit is 413, and a non-JSON content type is 415.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_body(req, state, false).await.map(Json)
    }
}

/// Reads a JSON body; with `empty_is_object`, a body of nothing reads as `{}`.
async fn json_body<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
    empty_is_object: bool,
) -> Result<T, Error> {
    if let Some(kind) = content_type(req.headers())
        && !is_json(&kind)
    {
        return Err(Error::UnsupportedMediaType(kind));
    }
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(body_rejection)?;
    if empty_is_object && bytes.iter().all(u8::is_ascii_whitespace) {
        return parse_json(b"{}");
    }
    parse_json(&bytes)
}

/// A JSON body that may be left out: no body reads as `{}`, so that a client that sends none
/// hears which field it lacks (422) rather than that the body is empty (400).
pub struct JsonOrEmpty<T>(pub T);

impl<T, S> FromRequest<S> for JsonOrEmpty<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_body(req, state, true).await.map(JsonOrEmpty)
    }
}

/// A body that may be JSON or an HTML form (`application/x-www-form-urlencoded` or
/// `multipart/form-data`), as the OAuth2 password flow sends it.
pub struct JsonOrForm<T>(pub T);

impl<T, S> FromRequest<S> for JsonOrForm<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let kind = content_type(req.headers());
        if kind
            .as_deref()
            .is_some_and(|k| k.starts_with("multipart/form-data"))
        {
            return multipart_form(req, state).await.map(JsonOrForm);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        match kind {
            Some(k) if k.starts_with("application/x-www-form-urlencoded") => {
                serde_urlencoded::from_bytes(&bytes)
                    .map(JsonOrForm)
                    .map_err(|e| shape_error(String::new(), e.to_string()))
            }
            Some(k) if !is_json(&k) => Err(Error::UnsupportedMediaType(k)),
            _ => parse_json(&bytes).map(JsonOrForm),
        }
    }
}

/// Reads a `multipart/form-data` body's text fields into `T`, as a form's. File parts (those
/// with a file name) are passed over; a field that is not UTF-8 is 422, a body that is not
/// valid multipart is 400, one over the limit 413.
async fn multipart_form<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<T, Error> {
    use axum::extract::Multipart;
    use axum::extract::multipart::MultipartError;
    use serde::de::value::{Error as ValueError, MapDeserializer};

    let unreadable = |e: MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            }
        } else {
            Error::bad_request(
                "malformed_multipart",
                format!("the multipart body cannot be read: {}", e.body_text()),
            )
        }
    };
    let mut multipart = Multipart::from_request(req, state)
        .await
        .map_err(|e| Error::bad_request("malformed_multipart", e.body_text()))?;
    let mut fields: Vec<(String, String)> = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        if field.file_name().is_some() {
            continue;
        }
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        let bytes = field.bytes().await.map_err(unreadable)?;
        let value = String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::validation(name.clone(), "must be UTF-8 text"))?;
        fields.push((name, value));
    }
    T::deserialize(MapDeserializer::<_, ValueError>::new(fields.into_iter()))
        .map_err(|e| shape_error(String::new(), e.to_string()))
}

/// Query parameters; a value of the wrong type is 422 naming the parameter.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| {
                let text = e.body_text();
                let message = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text)
                    .to_owned();
                shape_error("query".into(), message)
            })
    }
}

/// A path parameter; an id that is not a number is 422 rather than axum's plain-text 400.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e: PathRejection| {
                Error::Validation(vec![FieldError::new("path", e.body_text())])
            })
    }
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
}

fn is_json(kind: &str) -> bool {
    let essence = kind.split(';').next().unwrap_or("").trim();
    essence == "application/json" || essence.ends_with("+json") || essence == "text/plain"
}

fn body_rejection(e: BytesRejection) -> Error {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        }
    } else {
        Error::bad_request("unreadable_body", e.body_text())
    }
}

/// Syntax errors are 400; a well-formed document of the wrong shape is 422 with the field path.
///
/// A number written with a zero fraction (`5.0`) is an integer to JSON Schema, so where an
/// integer is asked it is read as one; `5.5` stays a 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad_request(
            "malformed_json",
            "the request body is empty; send a JSON document",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match result {
        Ok(value) => value,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => match with_integral_numbers(bytes) {
                    Some(value) => return Ok(value),
                    None => shape_error(path, strip_position(&inner)),
                },
                _ => Error::bad_request(
                    "malformed_json",
                    format!(
                        "the request body is not valid JSON: {}",
                        strip_position(&inner)
                    ),
                ),
            });
        }
    };
    de.end().map_err(|e| {
        Error::bad_request(
            "malformed_json",
            format!("the request body is not valid JSON: {}", strip_position(&e)),
        )
    })?;
    Ok(value)
}

/// The body read again with every integral number written as an integer (`5.0` → `5`), when
/// it has such numbers and then fits `T`. Only a body that failed to fit pays for this.
fn with_integral_numbers<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if !integral_to_integer(&mut value) {
        return None;
    }
    serde_json::from_value(value).ok()
}

/// Rewrites integral floats within ±2^53 (where every integer has an exact float) as
/// integers; answers whether it rewrote any.
fn integral_to_integer(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < EXACT => {
                // In range and integral: the conversion is exact.
                *value = Value::from(f as i64);
                true
            }
            _ => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, item| integral_to_integer(item) | any),
        Value::Object(fields) => fields
            .values_mut()
            .fold(false, |any, item| integral_to_integer(item) | any),
        _ => false,
    }
}

fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// A 422 for a body of the wrong shape. serde names a missing field only inside its message,
/// so it is lifted out to the `field` entry.
fn shape_error(path: String, message: String) -> Error {
    let field = if path.is_empty() || path == "." {
        message
            .split('`')
            .nth(1)
            .filter(|_| {
                message.starts_with("missing field") || message.starts_with("unknown field")
            })
            .unwrap_or("body")
            .to_owned()
    } else {
        path
    };
    Error::Validation(vec![FieldError::new(field, message)])
}

/// The caller, proven by a valid access token of a live session: the token is verified, then
/// its session is looked up by primary key (revoked, expired, or its account deleted: 401
/// `session_ended`). The request's span records the caller's id.
pub type AuthUser = Caller;

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let TokenCaller(caller) = TokenCaller::from_request_parts(parts, state).await?;
        let state = AppState::from_ref(state);
        sessions::check(&state.db, caller).await?;
        Ok(caller)
    }
}

/// The caller as the access token alone proves them, without the session check: only for a
/// handler whose use case folds that check into its own query (`/me` reads the user joined to
/// the session), so that the request makes one round trip instead of two.
pub struct TokenCaller(pub Caller);

impl<S> FromRequestParts<S> for TokenCaller
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token = bearer_token(&parts.headers)?;
        let keys: &JwtKeys = &state.keys;
        let claims = keys.verify_access(token)?;
        tracing::Span::current().record("user_id", claims.user_id);
        let Some(session) = claims.sid else {
            return Err(Error::Unauthorized(
                "invalid_token",
                "the access token names no session; log in again",
            ));
        };
        Ok(TokenCaller(Caller {
            id: claims.user_id,
            session: Some(session),
        }))
    }
}

/// The client's address, as API Gateway saw it (`requestContext.http.sourceIp`).
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        use lambda_http::request::RequestContext;
        let ip = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
            Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
            _ => None,
        };
        Ok(ClientIp(ip.unwrap_or_else(|| "unknown".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
    }

    #[test]
    fn broken_json_is_a_bad_request() {
        let err = parse_json::<Body>(b"{\"name\": ").expect_err("must fail");
        assert_eq!(err.status(), 400);
        assert_eq!(err.code(), "malformed_json");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = parse_json::<Body>(br#"{"name":"a","count":"x"}"#).expect_err("must fail");
        assert_eq!(err.status(), 422);
        let Error::Validation(fields) = err else {
            panic!("expected a validation error");
        };
        assert_eq!(fields[0].field, "count");
    }

    #[test]
    fn missing_field_is_named() {
        let err = parse_json::<Body>(br#"{"name":"a"}"#).expect_err("must fail");
        let Error::Validation(fields) = err else {
            panic!("expected a validation error");
        };
        assert_eq!(fields[0].field, "count");
    }

    #[test]
    fn integral_numbers_are_integers() {
        let body = parse_json::<Body>(br#"{"name":"a","count":5.0}"#).expect("5.0 is 5");
        assert_eq!(body.count, 5);
        let err = parse_json::<Body>(br#"{"name":"a","count":5.5}"#).expect_err("not integral");
        let Error::Validation(fields) = err else {
            panic!("expected a validation error");
        };
        assert_eq!(fields[0].field, "count");
        let err = parse_json::<Body>(br#"{"name":1.0,"count":5.0}"#).expect_err("wrong type");
        assert_eq!(err.status(), 422);
    }

    #[test]
    fn trailing_garbage_is_malformed() {
        let err = parse_json::<Body>(br#"{"name":"a","count":1} x"#).expect_err("must fail");
        assert_eq!(err.status(), 400);
    }
}
