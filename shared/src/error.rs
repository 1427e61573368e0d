//! The one error type of the library, and its problem+json rendering.

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
    /// 404: absent, or not visible to the caller.
    #[error("{0}")]
    NotFound(&'static str),
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 409: the request conflicts with what exists.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
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
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error")]
    Internal(String),
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

    pub fn internal(what: impl std::fmt::Display) -> Self {
        Error::Internal(what.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(..) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Database(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, snake_case code that programs match on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { code, .. } | Error::Conflict { code, .. } => code,
            Error::Unauthorized(code, _) | Error::Forbidden(code, _) => code,
            Error::NotFound(_) => "not_found",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::Validation(_) => "validation_failed",
            Error::TooManyRequests { .. } => "too_many_requests",
            Error::Database(_) | Error::Internal(_) => "internal_error",
        }
    }

    /// The problem document a client receives. 5xx details never leave the process.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = if status.is_server_error() {
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
}

pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
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
            _ => {}
        }
        response
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
            _ => Error::Database(e),
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
