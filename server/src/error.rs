//! The server's one error type, and the single place errors become HTTP responses
//! (RFC 9457 `application/problem+json`). Internal details are logged, not sent.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Record(#[from] retention::Error),
    /// The mobile channel's (a [`mobile_api::Error::Host`] is unwrapped back into
    /// the error of ours it carries).
    #[error(transparent)]
    Mobile(mobile_api::Error),
    #[error("config: {0}")]
    Config(String),
    #[error("data dir {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "another `ivan serve` is already using {db} (lock {lock} is held); stop it first or use another database"
    )]
    AlreadyRunning { db: String, lock: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    /// A fault of ours (a failed task, a value that cannot be encoded); answered
    /// `500`, its text logged, not sent.
    #[error("{0}")]
    Internal(String),
    /// It existed, and is gone for good (an original purged at the end of its
    /// retention period).
    #[error("{0}")]
    Gone(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl From<mobile_api::Error> for Error {
    fn from(e: mobile_api::Error) -> Self {
        match e {
            mobile_api::Error::Host(e) => match e.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Error::Internal(other.to_string()),
            },
            e => Error::Mobile(e),
        }
    }
}

/// What the server answers the mobile channel's [`mobile_api::Host`] calls with.
impl From<Error> for mobile_api::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Mobile(e) => e,
            ours => mobile_api::Error::Host(Box::new(ours)),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Record(e.into())
    }
}

impl Error {
    /// The HTTP status this error is answered with: the caller's mistakes are 4xx;
    /// the record being unavailable (database, disk, shutting down) is `503` with
    /// `Retry-After`; any other failure of ours is `500`. Never a 4xx for our own
    /// failure: a client that takes 4xx as final would drop a valid filing.
    pub(crate) fn status(&self) -> StatusCode {
        let record = |e: &retention::Error| match e.kind() {
            retention::ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            retention::ErrorKind::Conflict => StatusCode::CONFLICT,
            retention::ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            retention::ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        match self {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Gone(_) => StatusCode::GONE,
            Error::Record(e) => record(e),
            Error::Io { source, .. } if retention::io_unavailable(source) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Mobile(e) => match e {
                mobile_api::Error::Record(e) => record(e),
                mobile_api::Error::Invalid(_) => StatusCode::BAD_REQUEST,
                mobile_api::Error::Conflict(_) | mobile_api::Error::IdempotencyConflict { .. } => {
                    StatusCode::CONFLICT
                }
                mobile_api::Error::Findings(_) => StatusCode::UNPROCESSABLE_ENTITY,
                mobile_api::Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                mobile_api::Error::NotFound(_) => StatusCode::NOT_FOUND,
                mobile_api::Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
                mobile_api::Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                // Unwrapped by `From` before it gets here.
                mobile_api::Error::Host(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the text of this error may go to the client: not for failures of ours
    /// (they name drivers, paths and hosts), only for the caller's mistakes and the
    /// service's own plain unavailability messages.
    fn detail_is_public(&self) -> bool {
        !self.status().is_server_error()
            || matches!(
                self,
                Error::Unavailable(_) | Error::Mobile(mobile_api::Error::Unavailable(_))
            )
    }
}

/// Seconds a client is asked to wait before retrying a `503`.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Asks the client to retry a `503` after [`RETRY_AFTER_SECS`].
pub(crate) fn retry_later(resp: &mut Response) {
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(RETRY_AFTER_SECS),
    );
}

/// One entry of a problem document's `errors` (or `warnings`): which rule, what is
/// wrong, where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
// The OpenAPI documents have always called it `Problem`; clients keep that name.
#[schema(as = Problem)]
pub struct ProblemEntry {
    pub code: String,
    pub message: String,
    pub location: String,
}

/// An RFC 9457 problem document (`application/problem+json`): how the HTTP layer
/// answers every error, and what a refused filing is answered and logged with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemDocument {
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// SHA-256 of the refused body (submission refusals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// What is wrong, where the API can say it entry by entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ProblemEntry>>,
    /// Warnings found before the refusal (submission refusals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<ProblemEntry>>,
}

impl ProblemDocument {
    pub fn new(status: StatusCode, detail: Option<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            sha256: None,
            errors: None,
            warnings: None,
        }
    }

    pub fn with_errors(mut self, errors: Vec<ProblemEntry>) -> Self {
        self.errors = Some(errors);
        self
    }
}

impl ProblemEntry {
    pub fn new(code: &str, message: impl Into<String>, location: &str) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            location: location.to_owned(),
        }
    }
}

/// Turns the plain-text error responses of lower layers (tower-http's body limit and
/// timeout, axum's extractor rejections) into problem documents, so every error the
/// API answers is `application/problem+json`.
pub async fn problem_for_bare_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        // Problem documents, and the portal's HTML error pages, are answers already.
        .is_some_and(|ct| {
            ct.starts_with("application/problem+json") || ct.starts_with("text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return resp;
    }
    let detail = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            Some("the request body is larger than this endpoint accepts".to_owned())
        }
        StatusCode::REQUEST_TIMEOUT => Some("the request took too long".to_owned()),
        _ => None,
    };
    let (mut parts, body) = resp.into_parts();
    let detail = match detail {
        Some(d) => Some(d),
        None => axum::body::to_bytes(body, 4096)
            .await
            .ok()
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .filter(|s| !s.is_empty()),
    };
    let mut problem = ProblemDocument::new(status, detail).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    for (k, v) in parts.headers.drain() {
        if let Some(k) = k {
            problem.headers_mut().entry(k).or_insert(v);
        }
    }
    problem
}

impl IntoResponse for ProblemDocument {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = if self.detail_is_public() {
            Some(self.to_string())
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            // The cause goes to the server log (with the request id of the span).
            tracing::error!(error = %self, "request failed: the record is unavailable");
            Some("the service cannot reach its record right now; retry later".to_owned())
        } else {
            tracing::error!(error = %self, "request failed");
            None
        };
        let mut problem = ProblemDocument::new(status, detail);
        if let Error::Mobile(mobile_api::Error::Findings(findings)) = &self {
            problem = problem.with_errors(
                findings
                    .iter()
                    .map(|f| ProblemEntry::new(&f.code, f.message.clone(), &f.location))
                    .collect(),
            );
        }
        if let Error::Mobile(e @ mobile_api::Error::IdempotencyConflict { .. }) = &self {
            problem = problem.with_errors(vec![ProblemEntry::new(
                "idempotency-key.conflict",
                e.to_string(),
                "Idempotency-Key",
            )]);
        }
        let mut resp = problem.into_response();
        match &self {
            Error::Mobile(mobile_api::Error::TooManyRequests { retry_after }) => {
                let secs = retry_after.as_secs().max(1).to_string();
                if let Ok(v) = header::HeaderValue::from_str(&secs) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => retry_later(&mut resp),
            Error::Mobile(mobile_api::Error::Unauthorized(_)) => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            _ => {}
        }
        resp
    }
}
