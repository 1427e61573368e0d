//! The one error type of the library, its problem+json rendering, and the collector that
//! gathers several fields' 422s into one answer.
//!
//! The bottom layer: it imports nothing else of the library.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A field that failed validation, as listed in a 422 answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the body or query could not be read at all.
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// 401: no valid credentials. Always answered with `WWW-Authenticate: Bearer`.
    #[error("{1}")]
    Unauthorized(&'static str, &'static str),
    /// 403: visible, but not the caller's to change.
    #[error("{1}")]
    Forbidden(&'static str, &'static str),
    /// 403: users who do not consent to what the request would do to them (blocks, privacy
    /// settings); the problem lists their ids in `user_ids`.
    #[error("{detail}")]
    Refused {
        code: &'static str,
        detail: String,
        user_ids: Vec<i64>,
    },
    /// 404: absent, or not visible to the caller.
    #[error("{0}")]
    NotFound(&'static str),
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 409: the request conflicts with what exists.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// 410: what the request points at is no longer kept (an expired sync token).
    #[error("{detail}")]
    Gone { code: &'static str, detail: String },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{} is not supported; send application/json", .0)]
    UnsupportedMediaType(String),
    /// 422: parsed, but the values are not acceptable.
    #[error("{}", validation_summary(.0))]
    Validation(Vec<FieldError>),
    /// 429: slow down; `retry_after` in seconds.
    #[error("too many attempts; try again in {retry_after} seconds")]
    TooManyRequests { retry_after: u64 },
    /// 503: the database cannot be reached (refused, down, frozen, out of connections) or did
    /// not answer within the request's deadline. Answered with `Retry-After`.
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    /// 500: any other database failure.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// 500 with nothing said to the client; the source is kept for the log.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

/// Any error, as the cause of an [`Error::Internal`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `Retry-After` of a 503 `database_unavailable`, in seconds: a restart or a failover of
/// the database takes a few seconds, and the pool reconnects on the next request.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

impl From<sqlx::Error> for Error {
    /// Failures to reach the database become [`Error::Unavailable`]; the rest stay
    /// [`Error::Database`].
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            Error::Unavailable(Box::new(e))
        } else {
            Error::Database(e)
        }
    }
}

/// Whether `e` says that the database cannot be reached now (rather than that a statement
/// failed): no connection within the pool's timeout, a closed pool, a broken or refused
/// socket, a TLS failure, or the server refusing work while it starts, stops or recovers
/// (SQLSTATE class 08, 57P01–57P03, 53300 too many connections).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

fn validation_summary(errors: &[FieldError]) -> String {
    match errors {
        [one] => format!("{}: {}", one.field, one.message),
        _ => {
            let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
            format!("invalid fields: {}", fields.join(", "))
        }
    }
}

impl Error {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(field, message)])
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            detail: detail.into(),
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Error::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    /// An internal error caused by `source` (an error, or a sentence for an invariant that
    /// broke); the cause chain goes to the log, never to the client.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Error::Internal(source.into())
    }

    /// A 503 `database_unavailable` caused by `source` (a deadline that passed, a pool that
    /// could not connect).
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Error::Unavailable(source.into())
    }

    /// Shows the error with its whole `source()` chain: `a: b: c`.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(..) | Error::Refused { .. } => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::Gone { .. } => StatusCode::GONE,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Database(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, snake_case code that programs match on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { code, .. }
            | Error::Conflict { code, .. }
            | Error::Gone { code, .. }
            | Error::Refused { code, .. } => code,
            Error::Unauthorized(code, _) | Error::Forbidden(code, _) => code,
            Error::NotFound(_) => "not_found",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::Validation(_) => "validation_failed",
            Error::TooManyRequests { .. } => "too_many_requests",
            Error::Unavailable(_) => "database_unavailable",
            Error::Database(_) | Error::Internal(_) => "internal_error",
        }
    }

    /// The problem document a client receives. 5xx details never leave the process.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = if let Error::Unavailable(_) = self {
            format!(
                "the database is unavailable; try again in {UNAVAILABLE_RETRY_AFTER_SECS} seconds"
            )
        } else if status.is_server_error() {
            "the server could not complete the request; it has been logged".to_owned()
        } else {
            self.to_string()
        };
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: self.code().to_owned(),
            errors: match self {
                Error::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
            user_ids: match self {
                Error::Refused { user_ids, .. } => Some(user_ids.clone()),
                _ => None,
            },
        }
    }
}

/// An RFC 9457 problem document, the body of every error answer.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: &'static str,
    #[schema(example = "Not Found")]
    pub title: String,
    #[schema(example = 404)]
    pub status: u16,
    /// A sentence for people.
    #[schema(example = "chat not found")]
    pub detail: String,
    /// A stable snake_case code for programs.
    #[schema(example = "not_found")]
    pub code: String,
    /// Present on 422: each field that failed and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// Present on a 403 `blocked` or `not_allowed_to_add`: the users who refuse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_ids: Option<Vec<i64>>,
}

pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Error::Unavailable(_) => tracing::warn!(error = %self.chain(), "database unavailable"),
            _ if status.is_server_error() => {
                tracing::error!(error = %self.chain(), "request failed");
            }
            _ => {}
        }
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            Error::Unauthorized(..) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Error::TooManyRequests { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            Error::Unavailable(_) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS),
                );
            }
            _ => {}
        }
        response
    }
}

/// An error followed by each of its causes, separated by `: `.
pub struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

/// Parses several fields and reports every one that failed in a single 422, rather than
/// stopping at the first.
#[derive(Debug, Default)]
pub struct Checks {
    fields: Vec<FieldError>,
    other: Option<Error>,
}

impl Checks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the value of a successful parse; remembers the failure of another.
    pub fn check<T>(&mut self, parsed: Result<T>) -> Option<T> {
        parsed.map_err(|e| self.fail(e)).ok()
    }

    /// Like [`Checks::check`], for a field that may be absent.
    pub fn check_some<T>(&mut self, parsed: Option<Result<T>>) -> Option<T> {
        self.check(parsed.transpose()).flatten()
    }

    /// Records a failure found by other means.
    pub fn fail(&mut self, error: Error) {
        match error {
            Error::Validation(fields) => self.fields.extend(fields),
            other => {
                self.other.get_or_insert(other);
            }
        }
    }

    /// `Ok` when every check passed; otherwise the first error that was not a 422, or one 422
    /// listing every field that failed, in order.
    pub fn finish(self) -> Result<()> {
        match (self.other, self.fields.is_empty()) {
            (Some(other), _) => Err(other),
            (None, true) => Ok(()),
            (None, false) => Err(Error::Validation(self.fields)),
        }
    }
}

/// Maps a unique or foreign-key violation by constraint name; everything else stays a database
/// error (500).
pub trait OnConstraint<T> {
    fn on_constraint(self, name: &str, map: impl FnOnce() -> Error) -> Result<T>;
}

impl<T> OnConstraint<T> for Result<T, sqlx::Error> {
    fn on_constraint(self, name: &str, map: impl FnOnce() -> Error) -> Result<T> {
        self.map_err(|e| match &e {
            sqlx::Error::Database(db) if db.constraint() == Some(name) => map(),
            _ => Error::from(e),
        })
    }
}

impl<T> OnConstraint<T> for Result<T> {
    fn on_constraint(self, name: &str, map: impl FnOnce() -> Error) -> Result<T> {
        self.map_err(|e| match &e {
            Error::Database(sqlx::Error::Database(db)) if db.constraint() == Some(name) => map(),
            _ => e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_hide_their_cause() {
        let problem = Error::internal("password for db is hunter2").problem();
        assert_eq!(problem.status, 500);
        assert!(!problem.detail.contains("hunter2"));
        assert_eq!(problem.code, "internal_error");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("pool timed out")]
    struct Root;

    #[derive(Debug, thiserror::Error)]
    #[error("could not load the chat")]
    struct Middle(#[source] Root);

    #[test]
    fn the_chain_shows_every_cause() {
        let e = Error::internal(Middle(Root));
        assert_eq!(
            e.chain().to_string(),
            "internal error: could not load the chat: pool timed out"
        );
    }

    #[test]
    fn a_server_error_logs_its_cause_chain_and_tells_the_client_nothing() {
        let logs = LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        let response = tracing::subscriber::with_default(subscriber, || {
            Error::internal(Middle(Root)).into_response()
        });
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let logged = logs.text();
        assert!(
            logged.contains("internal error: could not load the chat: pool timed out"),
            "{logged}"
        );
        assert!(logged.contains("request failed"), "{logged}");
        assert!(
            !Error::internal(Middle(Root))
                .problem()
                .detail
                .contains("pool")
        );
    }

    #[test]
    fn checks_list_every_failed_field_in_order() {
        let mut checks = Checks::new();
        let a: Option<u8> = checks.check(Err(Error::validation("content", "empty")));
        let b = checks.check_some(Some(Ok::<_, Error>(2)));
        checks.fail(Error::validation("client_id", "too long"));
        assert_eq!((a, b), (None, Some(2)));
        let Err(Error::Validation(fields)) = checks.finish() else {
            panic!("expected a 422");
        };
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["content", "client_id"]);
        assert!(Checks::new().finish().is_ok());
    }

    /// A `MakeWriter` that keeps what the subscriber writes.
    #[derive(Clone, Default)]
    struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl LogBuffer {
        fn text(&self) -> String {
            let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    impl std::io::Write for LogBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
        type Writer = LogBuffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn an_unreachable_database_is_503_with_retry_after() {
        for cause in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            let error = Error::from(cause);
            assert_eq!(error.code(), "database_unavailable");
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                response.headers().get(header::RETRY_AFTER),
                Some(&HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS))
            );
        }
        let other = Error::from(sqlx::Error::RowNotFound);
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(other.code(), "internal_error");
    }

    #[test]
    fn validation_names_the_field() {
        let problem = Error::validation("email", "is not a valid address").problem();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.detail, "email: is not a valid address");
        let errors = problem.errors.expect("422 lists its fields");
        assert_eq!(errors[0].field, "email");
    }

    #[test]
    fn unauthorized_carries_the_bearer_challenge() {
        let response = Error::Unauthorized("invalid_token", "token expired").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static("Bearer"))
        );
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static(PROBLEM_JSON))
        );
    }
}
