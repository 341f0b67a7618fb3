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
    /// The request's id (its `X-Request-Id`), as on the server's log line for it:
    /// quote it when reporting a problem. Set on every answered problem document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
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
            instance: None,
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

/// Makes every error the HTTP layer answers a problem document that names its
/// request: the plain-text error responses of lower layers (tower-http's body limit
/// and timeout, axum's extractor rejections) become problem documents in our own
/// words ([`reworded`]), and every problem document gets `instance`, the request's
/// id (`X-Request-Id`, also on the request's log line). The portal's HTML error
/// pages are left as they are.
pub async fn problem_documents(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let resp = next.run(req).await;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let is_problem = content_type.starts_with("application/problem+json");
    if !(status.is_client_error() || status.is_server_error())
        || content_type.starts_with("text/html")
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Problem documents are small; a larger body is not one of ours.
    let Ok(bytes) = axum::body::to_bytes(body, PROBLEM_MAX_BYTES).await else {
        return ProblemDocument::new(status, None).into_response();
    };
    let mut problem: serde_json::Value = if is_problem {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) => return Response::from_parts(parts, axum::body::Body::from(bytes)),
        }
    } else {
        let detail = match status {
            StatusCode::PAYLOAD_TOO_LARGE => {
                Some("the request body is larger than this endpoint accepts".to_owned())
            }
            StatusCode::REQUEST_TIMEOUT => Some("the request took too long".to_owned()),
            _ => Some(reworded(String::from_utf8_lossy(&bytes).trim())).filter(|s| !s.is_empty()),
        };
        serde_json::to_value(ProblemDocument::new(status, detail)).unwrap_or_default()
    };
    if let (Some(id), Some(fields)) = (request_id, problem.as_object_mut()) {
        fields.insert("instance".to_owned(), serde_json::Value::String(id));
    }
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The largest problem document [`problem_documents`] reads back to add `instance`.
const PROBLEM_MAX_BYTES: usize = 1 << 20;

/// axum's rejection wording, and ours. The cause after the colon (serde's "missing
/// field `x`", "invalid digit found in string") is kept: it says what is wrong.
const REWORDED: &[(&str, &str)] = &[
    (
        "Failed to deserialize query string",
        "the query string is not valid",
    ),
    (
        "Failed to parse the request body as JSON",
        "the body is not valid JSON",
    ),
    (
        "Failed to deserialize the JSON body into the target type",
        "the body does not have the expected fields",
    ),
    (
        "Expected request with `Content-Type: application/json`",
        "the body must be sent as Content-Type: application/json",
    ),
    ("Failed to deserialize form body", "the form is not valid"),
    ("Failed to deserialize form", "the form is not valid"),
    (
        "Form requests must have `Content-Type: application/x-www-form-urlencoded`",
        "the form must be sent as Content-Type: application/x-www-form-urlencoded",
    ),
    ("Invalid URL", "the URL path is not valid"),
    (
        "Failed to buffer the request body",
        "the request body could not be read",
    ),
    (
        "Request body didn't contain valid UTF-8",
        "the body is not valid UTF-8",
    ),
];

/// An extractor's rejection text in the service's own words (see [`REWORDED`]);
/// any other text as it is.
pub(crate) fn reworded(text: &str) -> String {
    for (theirs, ours) in REWORDED {
        if let Some(rest) = text.strip_prefix(theirs) {
            let cause = rest.trim_start_matches(':').trim();
            return if cause.is_empty() {
                (*ours).to_owned()
            } else {
                format!("{ours}: {cause}")
            };
        }
    }
    text.to_owned()
}

/// A query string that does not fit its endpoint, in the service's words.
pub(crate) fn bad_query(rejection: &axum::extract::rejection::QueryRejection) -> Error {
    Error::Invalid(reworded(&rejection.body_text()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::FromRequest;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Fields {
        limit: u32,
    }

    /// axum's own rejection texts, from its real extractors, come out in our words:
    /// a newer axum that rewords them fails here, not in a client's face.
    #[tokio::test]
    async fn extractor_rejections_are_reworded() {
        let mut texts = Vec::new();
        let uri: axum::http::Uri = "/x?limit=many".parse().unwrap();
        let Err(e) = axum::extract::Query::<Fields>::try_from_uri(&uri) else {
            panic!()
        };
        texts.push(e.body_text());
        let request = |ct: &str, body: &'static str| {
            axum::http::Request::builder()
                .method("POST")
                .header(header::CONTENT_TYPE, ct)
                .body(axum::body::Body::from(body))
                .unwrap()
        };
        for (ct, body) in [
            ("application/json", "{not"),
            ("application/json", "{}"),
            ("text/plain", "{}"),
        ] {
            let Err(e) = axum::Json::<Fields>::from_request(request(ct, body), &()).await else {
                panic!()
            };
            texts.push(e.body_text());
        }
        for (ct, body) in [
            ("application/x-www-form-urlencoded", "limit=x"),
            ("text/plain", "limit=1"),
        ] {
            let Err(e) = axum::Form::<Fields>::from_request(request(ct, body), &()).await else {
                panic!()
            };
            texts.push(e.body_text());
        }
        for text in texts {
            let ours = reworded(&text);
            assert_ne!(ours, text, "not reworded: {text}");
            for library in [
                "Failed to",
                "Expected request",
                "deserialize",
                "`Content-Type",
            ] {
                assert!(!ours.contains(library), "{ours:?} (from {text:?})");
            }
        }
        assert_eq!(
            reworded("Failed to deserialize query string: limit: invalid digit found in string"),
            "the query string is not valid: limit: invalid digit found in string"
        );
    }
}
