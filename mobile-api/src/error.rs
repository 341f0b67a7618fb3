use std::time::Duration;

/// Everything that can go wrong in the mobile channel. Messages are one line, meant
/// for the caller; `server` maps each variant to an HTTP status and an RFC 9457
/// problem document in its one error-mapping place.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Record(#[from] retention::Error),
    /// The request is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// The request is well-formed but its content breaks rules (422, with `errors[]`).
    #[error("the pre-registration has {} error(s)", .0.len())]
    Findings(Vec<Finding>),
    /// Missing or bad credentials (401). The message never says which part was wrong.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// An `Idempotency-Key` reused with other content (409, problem code
    /// `idempotency-key.conflict`): the change is refused, never silently dropped.
    #[error(
        "Idempotency-Key was already used for pre-registration {first} ({document_number}) with different content; send a new key for a new pre-registration"
    )]
    IdempotencyConflict {
        first: String,
        document_number: String,
    },
    /// Too many attempts from this source (429).
    #[error("too many attempts; try again in {} s", .retry_after.as_secs().max(1))]
    TooManyRequests { retry_after: Duration },
    /// Temporarily unable (503), e.g. every PIN-hashing slot busy for too long.
    #[error("{0}")]
    Unavailable(String),
    /// A failure of the [`crate::Host`] (the server) while filing or listing, kept
    /// whole so the host answers it as its own.
    #[error(transparent)]
    Host(Box<dyn std::error::Error + Send + Sync>),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Record(e.into())
    }
}

/// One rule a pre-registration breaks, in the same shape as a filing's findings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Finding {
    /// Stable dotted code, e.g. `person.id.checksum`.
    pub code: String,
    pub message: String,
    /// The JSON field at fault, e.g. `/person_id`.
    pub location: String,
}

impl Finding {
    pub fn new(code: &str, message: impl Into<String>, location: &str) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            location: location.to_owned(),
        }
    }
}
