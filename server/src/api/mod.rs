//! The employer API (`/api/v1/submissions…`), authenticated with an API token
//! (`Authorization: Bearer ivan_…`). An employer sees only its own submissions:
//! another employer's ids answer `404`, exactly like ids that do not exist. A token
//! created with an IP allow-list (`ivan admin token create --allow CIDR`) is accepted
//! only from a TCP peer inside one of its blocks; from anywhere else (or when the
//! peer is unknown) it answers `401`, like a bad token.
//!
//! | method and path | what |
//! |---|---|
//! | `POST /api/v1/submissions` | submit a signed filing (body: the XML) |
//! | `GET /api/v1/submissions?status=&from=&to=&after=&limit=` | own submissions, oldest first, paged |
//! | `GET /api/v1/submissions/{id}` | one submission with its state history |
//! | `GET /api/v1/submissions/{id}/original` | the exact bytes received |
//! | `GET /api/v1/submissions/{id}/receipt` | the signed receipt (compact JWS, `application/jose`) |
//! | `POST /api/v1/submissions/{id}/cancel` | cancel inside the hold window (`409` after it) |
//! | `GET /api/v1/submissions/{id}/answers/{n}` | the authority's `n`-th answer document, byte-exact |
//!
//! Phone accesses and pre-registrations (the mobile channel's employer side) are in
//! [`phones`].

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get, routing::post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::compliance::Read;
use crate::employers::{self, Caller};
pub use crate::error::ProblemDocument;
use crate::error::ProblemEntry;
use crate::intake::{self, Filed, SubmitError};
use crate::submissions::AnswerInfo;
use crate::submissions::{self, Filter, Step, Submission};
use crate::{Error, Result};

pub mod compliance;
pub mod phones;

/// The OpenAPI document of the employer API, served at `/api/v1/openapi.json`.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "ivan employer API",
        version = "1",
        description = "Submit digitally signed social-insurance filings and follow them. Errors are RFC 9457 problem documents. Receipts are ES256 compact JWS verifiable with /.well-known/jwks.json."
    ),
    paths(submit, list, show, original, receipt, cancel, answer,
        phones::add, phones::list, phones::deactivate, phones::new_pin, phones::send_pin,
        phones::preregistrations, phones::preregistration, phones::registration_form,
        compliance::search, compliance::original, compliance::evidence),
    components(schemas(View, Page, Step, Submission, AnswerInfo, ProblemDocument, ProblemEntry,
        phones::NewPhoneAccess, phones::NewPin, phones::PhoneAccessList, phones::PreregPage,
        mobile_api::access::PhoneAccess, mobile_api::prereg::Preregistration)),
    modifiers(&BearerToken),
    security(("api_token" = []))
)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ivan_<id>_<secret>")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "officer_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ivan-officer_<id>_<secret>")
                    .build(),
            ),
        );
    }
}

/// Most submissions one listing page returns.
pub const MAX_PAGE: i64 = 500;

/// What every handler of the APIs (and the router's own) can reach; the portal's
/// handlers have it with the portal beside it ([`crate::portal::PortalState`]).
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: retention::Db,
    pub originals: retention::Originals,
    pub keys: std::sync::Arc<retention::keys::Keys>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub intake: crate::intake::Intake,
    pub mobile: mobile_api::Mobile,
    /// Keys of the person index, for compliance searches by personal id.
    pub persons: crate::submissions::persons::PersonIndex,
    /// The data dir, where `/readyz` proves the disk takes writes.
    pub data_dir: std::path::PathBuf,
    /// Failed token attempts, counted per source and hour for the log.
    pub failed_attempts: crate::failed_attempts::FailedAttempts,
}

/// The route that takes documents (its body limit, `intake.max_document_bytes`, is
/// set by the caller).
pub fn document_routes() -> Router<AppState> {
    Router::new().route("/api/v1/submissions", post(submit))
}

/// The JSON API routes (their body limit, `http.json_body_limit_bytes`, is set by the
/// caller).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/submissions", get(list))
        .route("/api/v1/submissions/{id}", get(show))
        .route("/api/v1/submissions/{id}/original", get(original))
        .route("/api/v1/submissions/{id}/receipt", get(receipt))
        .route("/api/v1/submissions/{id}/cancel", post(cancel))
        .route("/api/v1/submissions/{id}/answers/{n}", get(answer))
        .route(
            "/api/v1/phone-accesses",
            post(phones::add).get(phones::list),
        )
        .route(
            "/api/v1/phone-accesses/{id}",
            axum::routing::delete(phones::deactivate),
        )
        .route("/api/v1/phone-accesses/{id}/pin", post(phones::new_pin))
        .route(
            "/api/v1/phone-accesses/{id}/pin/send",
            post(phones::send_pin),
        )
        .route("/api/v1/preregistrations", get(phones::preregistrations))
        .route(
            "/api/v1/preregistrations/{id}",
            get(phones::preregistration),
        )
        .route(
            "/api/v1/preregistrations/{id}/registration-form",
            get(phones::registration_form),
        )
        .route("/api/v1/compliance/log", get(compliance::search))
        .route("/api/v1/compliance/evidence", get(compliance::evidence))
        .route(
            "/api/v1/compliance/originals/{sha256}",
            get(compliance::original),
        )
        .route("/api/v1/openapi.json", get(openapi))
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The authenticated employer of a request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let caller = match bearer(parts) {
            Some(t) => {
                // The client (the TCP peer, or behind trusted proxies the address
                // they forwarded); unknown when absent, which an allow-listed token
                // does not pass.
                let peer = mobile_api::http::Source::of(&parts.extensions).0;
                let caller = employers::authenticate(&state.db, t, peer)
                    .await
                    .map_err(IntoResponse::into_response)?;
                if caller.is_none() {
                    state
                        .failed_attempts
                        .record(crate::failed_attempts::Kind::ApiToken, peer);
                }
                caller
            }
            None => None,
        };
        caller.map(Authenticated).ok_or_else(|| {
            unauthorized(
                "a valid API token is required: Authorization: Bearer ivan_…",
                "auth.token",
                "missing, malformed, unknown or revoked API token",
            )
        })
    }
}

/// The bearer token of a request's `Authorization` header, if it has one.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// `401` with a `WWW-Authenticate: Bearer` challenge, counted in
/// `ivan_api_unauthorized_total`.
pub(crate) fn unauthorized(detail: &str, code: &str, message: &str) -> Response {
    metrics::counter!("ivan_api_unauthorized_total").increment(1);
    let mut r = ProblemDocument::new(StatusCode::UNAUTHORIZED, Some(detail.into()))
        .with_errors(vec![ProblemEntry::new(
            code,
            message,
            "header Authorization",
        )])
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// The JSON shape of a submission.
#[derive(Debug, Serialize, ToSchema)]
pub struct View {
    #[serde(flatten)]
    pub submission: Submission,
    /// Findings that did not block acceptance.
    #[schema(value_type = Vec<ProblemEntry>)]
    pub warnings: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Step>>,
    /// The authority's answer documents (fetch each at `answers/{n}`); on the
    /// single-submission view only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<AnswerInfo>>,
    /// For a registration form: the pre-registrations paired with it (their ids);
    /// on the single-submission view only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired_preregistrations: Option<Vec<String>>,
    /// Where the proof that the `submission.receive` entry (`log_seq`, leaf index
    /// `log_seq - 1`) is in the log's Merkle tree is served, under the newest signed
    /// checkpoint and with it, once a checkpoint covers the entry (docs/LOG.md).
    pub inclusion_proof: String,
}

impl View {
    fn of(s: Submission, history: Option<Vec<Step>>) -> Self {
        let warnings = serde_json::from_str(&s.warnings).unwrap_or(serde_json::json!([]));
        let inclusion_proof = format!("/api/v1/log/proof/inclusion?leaf_index={}", s.log_seq - 1);
        Self {
            submission: s,
            warnings,
            history,
            answers: None,
            paired_preregistrations: None,
            inclusion_proof,
        }
    }

    /// The full view: history from the log, answers kept.
    async fn full(state: &AppState, s: Submission) -> Result<Self> {
        let history = submissions::history(&state.db, &s.id).await?;
        let answers = submissions::answers(&state.db, &s.id).await?;
        let paired = if s.document_type == crate::documents::DocumentType::RegistrationForm.code() {
            Some(
                submissions::preregistrations::paired_with(&state.db, &s.employer_id, &s.id)
                    .await?,
            )
        } else {
            None
        };
        Ok(Self {
            answers: Some(answers),
            paired_preregistrations: paired,
            ..Self::of(s, Some(history))
        })
    }
}

/// Submit a signed filing.
#[utoipa::path(
    post,
    path = "/api/v1/submissions",
    request_body(content = String, content_type = "application/xml", description = "The enveloped-signed XML document, byte-exact"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry key; the same key with other bytes is 409")),
    responses(
        (status = 201, description = "Accepted and durably recorded", body = View),
        (status = 200, description = "These bytes, or the same signed content in other bytes, were submitted before: the first submission and its identical receipt", body = View),
        (status = 401, description = "Missing or bad API token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency-Key or sender reference already used for other signed content", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "Larger than intake.max_document_bytes", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 415, description = "Not application/xml", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "Shape limits, signature, certificate or document validation failed", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "Intake is busy or the record is unavailable; nothing was recorded. Retry after the Retry-After header's seconds", body = ProblemDocument, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
async fn submit(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    request: axum::extract::Request,
) -> Response {
    // Room in the body budget first, by the declared length; only then is the body
    // read (a client waiting for room sends nothing we hold).
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let lease = match state.intake.body_lease(&caller, declared).await {
        Ok(lease) => lease,
        Err(e) => return e.into_response(),
    };
    let headers = request.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    // A large XML body is watched as it arrives: a shape bomb in its first MiB is
    // refused without reading the rest. Not a body of at most that MiB (it is read
    // whole soon enough, and its refusal then names the whole body's hash), nor when
    // an Idempotency-Key is given (a key used before is answered 409 whatever the
    // body).
    let found = intake::early::Found::default();
    let large = declared.is_none_or(|n| n > intake::early::EARLY_BYTES as u64);
    let request = if large && crate::intake::is_xml(content_type) && key.is_none() {
        let limits = state.intake.limits();
        request.map(|body| {
            axum::body::Body::new(intake::early::Watched::new(body, limits, found.clone()))
        })
    } else {
        request
    };
    let outcome = match read_body(request.into_body(), declared, &state.intake).await {
        Ok(body) => {
            state
                .intake
                .submit_leased(&caller, content_type, key, body, lease)
                .await
        }
        Err(unread) => {
            let early = found.lock().ok().and_then(|mut f| f.take());
            match early {
                Some(early) => Err(state.intake.refuse_early(&caller, early).await),
                None => return unread.into_response(),
            }
        }
    };
    match outcome {
        Ok(Filed::Created(s)) => {
            metrics::counter!("ivan_submissions_accepted_total").increment(1);
            let location = format!("/api/v1/submissions/{}", s.id);
            (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(View::of(s, None)),
            )
                .into_response()
        }
        Ok(Filed::Repeated(s)) => (StatusCode::OK, Json(View::of(s, None))).into_response(),
        Err(SubmitError::Refused(r)) => (
            r.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            r.body,
        )
            .into_response(),
        Err(SubmitError::Internal(e)) => e.into_response(),
    }
}

/// Why a body was not read.
enum Unread {
    /// The client's: too large (`413`), or the connection failed (`400`).
    Client(StatusCode),
    /// Staging it failed (the disk): ours, `503` with `Retry-After`.
    Staging(retention::Error),
}

impl IntoResponse for Unread {
    fn into_response(self) -> Response {
        match self {
            Unread::Client(status) => status.into_response(),
            Unread::Staging(e) => crate::Error::Record(e).into_response(),
        }
    }
}

/// Reads a document body, frame by frame, each frame dropped as soon as it is taken:
/// one larger than the streaming threshold (`intake.streaming_threshold_bytes`, by
/// its declared length or once it has grown past it) is staged in the originals
/// store as it arrives ([`intake::Intake::stager`]), hashed on the way, and never
/// held in memory whole; a smaller one goes into one buffer of its declared length
/// (`Bytes::from_request` kept every frame and then copied them all: twice the
/// memory). The route's body limit still applies: it is the body's own error,
/// answered `413` like the extractor did; any other read error is the client's
/// (`400`).
async fn read_body(
    body: axum::body::Body,
    declared: Option<u64>,
    intake: &intake::Intake,
) -> Result<retention::Content, Unread> {
    use http_body_util::BodyExt;
    let threshold = intake.config().streaming_threshold_bytes as u64;
    // Asked for a stager once at most: a store that cannot stage says so each time.
    let mut may_stage = true;
    let mut staged = if declared.is_some_and(|n| n > threshold) {
        may_stage = false;
        intake.stager()
    } else {
        None
    };
    // The limit layer refused a larger declared length before the handler ran; the
    // cap only guards against a length that lies.
    const PREALLOCATE_AT_MOST: u64 = 256 * 1024 * 1024;
    let capacity = if staged.is_some() {
        0
    } else {
        declared.unwrap_or(0).min(PREALLOCATE_AT_MOST)
    };
    let mut buf = bytes::BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            // The limit's error, under however many layers of boxed body errors.
            let first: &(dyn std::error::Error + 'static) = &e;
            let limited = std::iter::successors(Some(first), |c| c.source())
                .any(|c| c.is::<http_body_util::LengthLimitError>());
            Unread::Client(if limited {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            })
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if let Some(stager) = staged.as_mut() {
            stager.write(&data).await.map_err(Unread::Staging)?;
            continue;
        }
        buf.extend_from_slice(&data);
        // Longer than it said, or it said nothing: staged from here on.
        if buf.len() as u64 > threshold
            && std::mem::replace(&mut may_stage, false)
            && let Some(mut stager) = intake.stager()
        {
            stager.write(&buf).await.map_err(Unread::Staging)?;
            buf = bytes::BytesMut::new();
            staged = Some(stager);
        }
    }
    match staged {
        Some(stager) => {
            let staged = stager.finish().await.map_err(Unread::Staging)?;
            Ok(retention::Content::Staged(std::sync::Arc::new(staged)))
        }
        None => Ok(retention::Content::Memory(buf.freeze())),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only submissions in this state (accepted, cancelled, forwarding, delivered,
    /// processed, rejected, refused_by_authority).
    status: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// Continue after this message id (the previous page's `next`).
    after: Option<String>,
    /// Page size, 1 to 500 (default 100).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Page {
    items: Vec<View>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// List own submissions, oldest first (`from` ≤ received_at < `to`, RFC 3339).
#[utoipa::path(
    get,
    path = "/api/v1/submissions",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of submissions", body = Page),
        (status = 400, description = "Bad filter", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad API token", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page>> {
    let Query(q) = query.map_err(|e| crate::error::bad_query(&e))?;
    let status = match &q.status {
        Some(s) => Some(s.parse::<submissions::Status>().map_err(|_| {
            Error::Invalid(format!(
                "unknown status {s:?}; one of {:?}",
                submissions::Status::ALL.map(submissions::Status::as_str)
            ))
        })?),
        None => None,
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::Invalid(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let filter = Filter {
        status,
        from: q.from,
        to: q.to,
        after: q.after,
        limit: limit + 1,
        ..Filter::default()
    };
    let mut rows = submissions::list(&state.db, &caller.employer_id, &filter).await?;
    let next = retention::db::next_page(&mut rows, limit, |s| s.id.clone());
    Ok(Json(Page {
        items: rows.into_iter().map(|s| View::of(s, None)).collect(),
        next,
    }))
}

async fn own(state: &AppState, caller: &Caller, id: &str) -> Result<Submission> {
    submissions::get(&state.db, &caller.employer_id, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no submission {id}")))
}

/// One submission with its state history (read from the transaction log).
#[utoipa::path(
    get,
    path = "/api/v1/submissions/{id}",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "The submission", body = View),
        (status = 404, description = "No such submission of this employer", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn show(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<View>> {
    let s = own(&state, &caller, &id).await?;
    Ok(Json(View::full(&state, s).await?))
}

/// The original document, byte-exact as received.
#[utoipa::path(
    get,
    path = "/api/v1/submissions/{id}/original",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "The exact bytes", body = String, content_type = "application/xml"),
        (status = 404, description = "No such submission of this employer", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn original(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let s = own(&state, &caller, &id).await?;
    let read = Read {
        reader: caller.actor(),
        subject: format!("submission:{}", s.id),
        route: "api:/api/v1/submissions/{id}/original",
        basis: None,
    };
    stored_bytes(&state, &s.sha256, "application/xml".to_owned(), read).await
}

/// An original from the store, byte-exact, with its media type and its hash as ETag;
/// the read is logged (`original.read`) first. `410 Gone` once retention purged it.
pub(crate) async fn stored_bytes(
    state: &AppState,
    sha256: &str,
    media_type: String,
    read: Read<'_>,
) -> Result<Response> {
    let bytes =
        crate::compliance::read_original(&state.db, state.intake.ledger(), sha256, read).await?;
    Ok((
        [
            (header::CONTENT_TYPE, media_type),
            (header::ETAG, format!("\"sha256:{sha256}\"")),
        ],
        bytes,
    )
        .into_response())
}

/// The signed receipt (compact JWS, ES256; verify with /.well-known/jwks.json).
#[utoipa::path(
    get,
    path = "/api/v1/submissions/{id}/receipt",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "The receipt", body = String, content_type = "application/jose"),
        (status = 404, description = "No such submission of this employer", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn receipt(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let s = own(&state, &caller, &id).await?;
    Ok(([(header::CONTENT_TYPE, "application/jose")], s.receipt).into_response())
}

/// Cancel a submission inside its hold window.
#[utoipa::path(
    post,
    path = "/api/v1/submissions/{id}/cancel",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "Cancelled", body = View),
        (status = 404, description = "No such submission of this employer", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "The hold window has closed, or it is already cancelled", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn cancel(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<View>> {
    let now = state.intake.clock().now();
    let s = submissions::cancel(state.intake.ledger(), &state.db, &caller, &id, now).await?;
    Ok(Json(View::full(&state, s).await?))
}

/// One of the authority's answer documents, byte-exact as received.
#[utoipa::path(
    get,
    path = "/api/v1/submissions/{id}/answers/{n}",
    params(
        ("id" = String, Path, description = "Message id"),
        ("n" = i64, Path, description = "Answer number, from the submission's `answers`"),
    ),
    responses(
        (status = 200, description = "The document, with the media type the authority gave it", body = String),
        (status = 404, description = "No such submission of this employer, or no such answer", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn answer(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path((id, n)): Path<(String, i64)>,
) -> Result<Response> {
    let s = own(&state, &caller, &id).await?;
    let info = submissions::answers(&state.db, &s.id)
        .await?
        .into_iter()
        .find(|a| a.n == n)
        .ok_or_else(|| Error::NotFound(format!("submission {id} has no answer {n}")))?;
    let read = Read {
        reader: caller.actor(),
        subject: format!("submission:{}", s.id),
        route: "api:/api/v1/submissions/{id}/answers/{n}",
        basis: None,
    };
    stored_bytes(&state, &info.sha256, info.media_type, read).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_documents_every_submission_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/api/v1/submissions", "post"),
            ("/api/v1/submissions", "get"),
            ("/api/v1/submissions/{id}", "get"),
            ("/api/v1/submissions/{id}/original", "get"),
            ("/api/v1/submissions/{id}/receipt", "get"),
            ("/api/v1/submissions/{id}/cancel", "post"),
            ("/api/v1/submissions/{id}/answers/{n}", "get"),
            ("/api/v1/phone-accesses", "post"),
            ("/api/v1/phone-accesses", "get"),
            ("/api/v1/phone-accesses/{id}", "delete"),
            ("/api/v1/phone-accesses/{id}/pin", "post"),
            ("/api/v1/phone-accesses/{id}/pin/send", "post"),
            ("/api/v1/preregistrations", "get"),
            ("/api/v1/preregistrations/{id}", "get"),
            ("/api/v1/preregistrations/{id}/registration-form", "get"),
            ("/api/v1/compliance/log", "get"),
            ("/api/v1/compliance/evidence", "get"),
            ("/api/v1/compliance/originals/{sha256}", "get"),
        ] {
            assert!(paths[path][method].is_object(), "{method} {path} missing");
        }
        let post = &paths["/api/v1/submissions"]["post"];
        for status in ["200", "201", "401", "409", "413", "415", "422"] {
            assert!(
                post["responses"][status].is_object(),
                "POST answer {status}"
            );
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["api_token"]["scheme"],
            "bearer"
        );
    }
}
