//! The compliance API (`/api/v1/compliance/…`), for compliance officers' tools,
//! authenticated with an officer's personal token (`Authorization: Bearer
//! ivan-officer_…`; employers' tokens get `401` here, officers' tokens `401` on the
//! employer routes). Every request must carry `legal_basis` and `reference_number`
//! (`400` without them) and is logged before anything is answered; see
//! [`crate::compliance`].
//!
//! | method and path | what |
//! |---|---|
//! | `GET /api/v1/compliance/log?legal_basis=&reference_number=&employer=&person_id=&document_number=&message_id=&action=&from=&to=&before=&limit=` | search the log, newest first, paged |
//! | `GET /api/v1/compliance/originals/{sha256}?legal_basis=&reference_number=` | an original (a filing or an answer), byte-exact |
//! | `GET /api/v1/compliance/evidence?legal_basis=&reference_number=&message_id=&employer=&document_number=&person_id=&from=&to=` | an evidence bundle (`docs/evidence.md`) |

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use crate::compliance::evidence::Selection;
use crate::compliance::officers::{self, Officer};
use crate::compliance::{self, Basis, Channel, Filters, Read};
use crate::{Error, Result};

/// The compliance officer of a request.
#[derive(Debug, Clone)]
pub struct OfficerAuth(pub Officer);

impl FromRequestParts<AppState> for OfficerAuth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let officer = match super::bearer(parts) {
            Some(t) => {
                let officer = officers::authenticate(&state.db, t)
                    .await
                    .map_err(IntoResponse::into_response)?;
                if officer.is_none() {
                    state.failed_attempts.record(
                        crate::failed_attempts::Kind::OfficerToken,
                        mobile_api::http::Source::of(&parts.extensions).0,
                    );
                }
                officer
            }
            None => None,
        };
        officer.map(OfficerAuth).ok_or_else(|| {
            super::unauthorized(
                "a compliance officer's token is required: Authorization: Bearer ivan-officer_…",
                "auth.officer-token",
                "missing, malformed, unknown or revoked officer token",
            )
        })
    }
}

/// A log search.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The legal provision the query is made under (required).
    pub legal_basis: Option<String>,
    /// The case or file reference (required).
    pub reference_number: Option<String>,
    /// Entries about this employer's filings and the employer itself.
    pub employer: Option<String>,
    /// Entries about filings naming this personal id (searched by its keyed hash).
    pub person_id: Option<String>,
    pub document_number: Option<String>,
    pub message_id: Option<String>,
    /// `submission.accept`, or a family: `submission.*`.
    pub action: Option<String>,
    /// Recorded at or after (RFC 3339).
    #[param(value_type = Option<String>)]
    pub from: Option<DateTime<Utc>>,
    /// Recorded before (RFC 3339).
    #[param(value_type = Option<String>)]
    pub to: Option<DateTime<Utc>>,
    /// Continue below this log position (the previous page's `next_before`).
    pub before: Option<i64>,
    /// 1 to 1000 (default 100).
    pub limit: Option<i64>,
}

/// Search the transaction log (newest first). The query is logged as
/// `compliance.search` before the results are answered.
#[utoipa::path(
    get,
    path = "/api/v1/compliance/log",
    params(SearchParams),
    responses(
        (status = 200, description = "One page of entries; `audit_log_seq` is where this query was logged", body = Object),
        (status = 400, description = "No legal basis or reference number, or a bad filter", body = crate::api::ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad officer token", body = crate::api::ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("officer_token" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    OfficerAuth(officer): OfficerAuth,
    Query(p): Query<SearchParams>,
) -> Result<Json<compliance::Found>> {
    let basis = Basis::new(p.legal_basis.as_deref(), p.reference_number.as_deref())?;
    let filters = Filters {
        employer: p.employer,
        person_id: p.person_id,
        document_number: p.document_number,
        message_id: p.message_id,
        action: p.action,
        from: p.from,
        to: p.to,
        before: p.before,
        limit: p.limit,
    };
    let found = compliance::search(
        &state.db,
        state.intake.ledger(),
        &state.persons,
        &officer,
        &basis,
        &filters,
        Channel::Api,
        state.intake.clock().now(),
    )
    .await?;
    Ok(Json(found))
}

/// The grounds of a read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BasisParams {
    pub legal_basis: Option<String>,
    pub reference_number: Option<String>,
}

/// An original (a filing or one of the authority's answers), byte-exact, by its
/// SHA-256 as the log names it. The read is logged as `original.read` first.
#[utoipa::path(
    get,
    path = "/api/v1/compliance/originals/{sha256}",
    operation_id = "compliance_original",
    params(("sha256" = String, Path, description = "The payload hash from a log entry"), BasisParams),
    responses(
        (status = 200, description = "The exact bytes", body = String),
        (status = 400, description = "No legal basis or reference number", body = crate::api::ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad officer token", body = crate::api::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such original", body = crate::api::ProblemDocument, content_type = "application/problem+json"),
        (status = 410, description = "Purged at the end of its retention period", body = crate::api::ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("officer_token" = []))
)]
pub async fn original(
    State(state): State<AppState>,
    OfficerAuth(officer): OfficerAuth,
    Path(sha256): Path<String>,
    Query(p): Query<BasisParams>,
) -> Result<Response> {
    let basis = Basis::new(p.legal_basis.as_deref(), p.reference_number.as_deref())?;
    read_as_officer(
        &state,
        &officer,
        &basis,
        &sha256,
        "api:/api/v1/compliance/originals/{sha256}",
    )
    .await
}

/// An officer's read of an original by hash, logged with its grounds (shared by the
/// API and the portal).
pub(crate) async fn read_as_officer(
    state: &AppState,
    officer: &Officer,
    basis: &Basis,
    sha256: &str,
    route: &'static str,
) -> Result<Response> {
    let subject = match compliance::owner_of(&state.db, sha256).await? {
        Some(id) => format!("submission:{id}"),
        None => format!("original:{sha256}"),
    };
    let media_type: String = retention::on_pool!(&state.db, pool => {
        sqlx::query_scalar::<_, String>("SELECT media_type FROM originals WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(pool)
            .await
            .map_err(retention::Error::from)?
    })
    .ok_or_else(|| Error::NotFound(format!("no original {sha256}")))?;
    let read = Read {
        reader: officer.actor(),
        subject,
        route,
        basis: Some(basis),
    };
    crate::api::stored_bytes(state, sha256, media_type, read).await
}

/// An evidence export.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EvidenceParams {
    pub legal_basis: Option<String>,
    pub reference_number: Option<String>,
    /// One message id, or several separated by commas (at most 1000).
    pub message_id: Option<String>,
    pub employer: Option<String>,
    pub document_number: Option<String>,
    /// Filings naming this personal id.
    pub person_id: Option<String>,
    /// Received at or after (RFC 3339).
    #[param(value_type = Option<String>)]
    pub from: Option<DateTime<Utc>>,
    /// Received before (RFC 3339).
    #[param(value_type = Option<String>)]
    pub to: Option<DateTime<Utc>>,
}

impl EvidenceParams {
    /// The grounds and the selection.
    pub fn split(self) -> Result<(Basis, Selection)> {
        let basis = Basis::new(
            self.legal_basis.as_deref(),
            self.reference_number.as_deref(),
        )?;
        let clean = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let message_ids = self
            .message_id
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Ok((
            basis,
            Selection {
                message_ids,
                employer: clean(self.employer),
                person_id: clean(self.person_id),
                document_number: clean(self.document_number),
                from: self.from,
                to: self.to,
            },
        ))
    }
}

/// An evidence bundle about the selected filings (format: `docs/evidence.md`; check it
/// offline with `ivan evidence verify`). The export is logged as
/// `compliance.evidence` before it is made.
#[utoipa::path(
    get,
    path = "/api/v1/compliance/evidence",
    params(EvidenceParams),
    responses(
        (status = 200, description = "The bundle (canonical ustar archive)", body = String, content_type = "application/x-tar"),
        (status = 400, description = "No legal basis or reference number, no selection, or more than 1000 filings", body = crate::api::ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad officer token", body = crate::api::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No filing matches", body = crate::api::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "An entry is not yet covered by a signed checkpoint (the export signs one first, so this is rare); retry", body = crate::api::ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("officer_token" = []))
)]
pub async fn evidence(
    State(state): State<AppState>,
    OfficerAuth(officer): OfficerAuth,
    Query(p): Query<EvidenceParams>,
) -> Result<Response> {
    let (basis, selection) = p.split()?;
    let file = tempfile::tempfile().map_err(|e| Error::Io {
        context: "temporary file for the evidence bundle".into(),
        source: e,
    })?;
    let (exported, mut file) = crate::compliance::evidence::export(
        &state.db,
        state.intake.ledger(),
        state.keys.clone(),
        &state.persons,
        officer.actor(),
        &basis,
        &selection,
        "api:/api/v1/compliance/evidence",
        state.intake.clock().now(),
        std::io::BufWriter::new(file),
    )
    .await
    .and_then(|(e, w)| {
        w.into_inner()
            .map(|f| (e, f))
            .map_err(|e| Error::Invalid(format!("cannot write the bundle: {e}")))
    })?;
    use std::io::Seek as _;
    file.rewind().map_err(|e| Error::Io {
        context: "evidence bundle".into(),
        source: e,
    })?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(file),
    ));
    let name = exported
        .filings
        .first()
        .map_or("bundle", String::as_str)
        .to_owned();
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"ivan-evidence-{name}.tar\""),
            ),
            (header::CONTENT_LENGTH, exported.bytes.to_string()),
            (
                header::HeaderName::from_static("x-ivan-audit-log-seq"),
                exported.audit_log_seq.to_string(),
            ),
            (
                header::HeaderName::from_static("x-ivan-manifest-sha256"),
                exported.manifest_sha256.clone(),
            ),
        ],
        body,
    )
        .into_response())
}
