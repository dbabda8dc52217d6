//! API errors rendered as RFC 9457 problem JSON, and the extractors that turn
//! malformed requests into the same format.
//!
//! A 4xx names the field and the rule; a 5xx says only "internal error" and
//! its cause is logged once, here. Database error text never reaches a client.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use fleetscale_core::{FieldError, Violations};
use fleetscale_store::StoreError;

/// Largest request body accepted, in bytes (a stated bound); a larger one
/// is a 413.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

impl ApiError {
    /// The 413 of a body over [`MAX_BODY_BYTES`].
    pub fn body_too_large() -> ApiError {
        ApiError::PayloadTooLarge(format!(
            "the request body must be at most {MAX_BODY_BYTES} bytes"
        ))
    }
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body or query is syntactically malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// Fields break validation rules (422).
    #[error("{0}")]
    Validation(Violations),
    /// No or unknown bearer token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The token's role does not allow this (403).
    #[error("{0}")]
    Forbidden(String),
    /// Not found, or not visible to this token (404).
    #[error("{0} not found")]
    NotFound(String),
    /// Conflicts with the current state (409), with a machine-readable code.
    #[error("{detail}")]
    Conflict {
        /// Short machine-readable code, e.g. `duplicate`.
        code: &'static str,
        /// Human explanation.
        detail: String,
    },
    /// Wrong content type (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request body is larger than [`MAX_BODY_BYTES`] (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request body did not arrive in time (408).
    #[error("{0}")]
    RequestTimeout(String),
    /// A dependency is not ready (503).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (500); the cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// A single-field validation error.
    pub fn field(field: &str, rule: impl Into<String>) -> ApiError {
        let mut v = Violations::default();
        v.push(field, rule);
        ApiError::Validation(v)
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what } => ApiError::NotFound(what),
            StoreError::Conflict { what } => ApiError::Conflict {
                code: "conflict",
                detail: what,
            },
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

impl From<Violations> for ApiError {
    fn from(v: Violations) -> Self {
        ApiError::Validation(v)
    }
}

/// An error as every endpoint answers it (RFC 9457
/// `application/problem+json`); the OpenAPI document's shape of [`ProblemBody`].
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only
pub struct Problem {
    /// Always `about:blank`.
    #[schema(rename = "type")]
    kind: String,
    /// The HTTP status's reason phrase.
    title: String,
    /// The HTTP status.
    status: u16,
    /// What went wrong, for people.
    detail: String,
    /// Machine-readable code of a 409, e.g. `insufficient_budget`.
    code: Option<String>,
    /// A 422's every violation: the field's path and the rule it breaks.
    errors: Option<Vec<FieldProblem>>,
}

/// One violated rule of a 422.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only
pub struct FieldProblem {
    /// Path of the field, e.g. `samples[3].value`.
    field: String,
    /// The rule it breaks, e.g. `must be >= 0`.
    rule: String,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, source = ?std::error::Error::source(&**cause), "internal error");
        }
        let detail = match &self {
            ApiError::Validation(v) => v.to_string(),
            other => other.to_string(),
        };
        let problem = ProblemBody {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            code: match &self {
                ApiError::Conflict { code, .. } => Some(code),
                _ => None,
            },
            errors: match &self {
                ApiError::Validation(v) => Some(&v.0),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

/// A JSON body extractor whose every rejection is problem JSON: a syntax error
/// is a 400, a type or unknown-field error a 422 naming the field path.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let v = v.to_ascii_lowercase();
                v.starts_with("application/json")
                    || (v.starts_with("application/") && v.contains("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "expected a body with Content-Type: application/json".into(),
            ));
        }
        let bytes = bytes::Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::body_too_large()
            } else {
                ApiError::BadRequest(format!("cannot read body: {}", e.body_text()))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON document into `T`, mapping errors as [`ApiJson`] does.
/// Every request body of the API is a JSON object: anything else (an
/// array, which serde would otherwise read as a struct's fields in order, a
/// string, a number) is a 422 naming `body`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        let mut v = Violations::default();
        v.push("body", "must be a JSON object");
        return Err(ApiError::Validation(v));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // A type error can be reported before a later syntax error: malformed
        // JSON is a 400 whatever the deserializer met first.
        let well_formed = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        match inner.classify() {
            serde_json::error::Category::Data if well_formed => {
                let field = if path == "." {
                    "body".to_string()
                } else {
                    path
                };
                let msg = inner.to_string();
                let rule = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                let mut v = Violations::default();
                v.push(field, rule);
                ApiError::Validation(v)
            }
            // A number like 1e400 is valid JSON that no number type holds:
            // name the field, as for any other value out of range.
            serde_json::error::Category::Syntax
                if path != "." && inner.to_string().starts_with("number out of range") =>
            {
                let mut v = Violations::default();
                v.push(path, "is a number out of range".to_string());
                ApiError::Validation(v)
            }
            _ => ApiError::BadRequest(format!("malformed JSON: {inner}")),
        }
    })
}

/// A query-string extractor whose rejection is a 400 problem naming the parameter.
#[derive(Debug, Clone, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_from_str(q).map(ApiQuery)
    }
}

fn serde_urlencoded_from_str<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| ApiError::BadRequest("malformed query string".into()))?,
    )
    .map(|axum::extract::Query(v)| v)
    .map_err(|e| ApiError::BadRequest(format!("bad query parameter: {}", e.body_text())))
}
