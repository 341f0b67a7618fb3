//! The sandbox authority's HTTP routes: the protocol's endpoints and the introspection ones.

use std::sync::{Arc, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::store::{Message, MessageState, REFUSE_MARK, REJECT_MARK, REJECT_REASON, Sandbox};
use super::{MAX_FILING_BYTES, MAX_LABEL_LEN, PROTOCOL_NS, problem_type};
use crate::error::ProblemDocument;

pub(super) fn router(sandbox: Arc<Sandbox>) -> Router {
    Router::new()
        .route("/v1/messages", post(post_message))
        .route("/v1/packages", post(post_package))
        .route("/v1/messages/{authority_ref}", get(get_message))
        .route(
            "/v1/messages/{authority_ref}/documents/{n}",
            get(get_document),
        )
        .route("/v1/_stats", get(get_stats))
        .route("/v1/_messages", get(get_messages))
        .route("/v1/_outage/end", post(end_outage))
        .layer(DefaultBodyLimit::max(MAX_FILING_BYTES))
        .layer(axum::middleware::from_fn(bare_errors_as_problems))
        .with_state(sandbox)
}

/// Turns the error answers of lower layers (the router's `404`/`405`, extractor
/// rejections: plain text or empty) into problem documents, so every error the
/// sandbox answers is `application/problem+json`. The sandbox's own JSON answers
/// (`409 duplicate`) and problem documents pass untouched.
pub(super) async fn bare_errors_as_problems(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/json") || ct.starts_with("application/problem+json")
        });
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let detail = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
    let kind = if status == StatusCode::NOT_FOUND {
        problem_type::NOT_FOUND
    } else {
        "about:blank"
    };
    let mut problem = problem(status, kind, detail);
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        problem.headers_mut().insert(header::ALLOW, allow.clone());
    }
    problem
}

pub(super) fn problem(status: StatusCode, kind: &'static str, detail: String) -> Response {
    ProblemDocument {
        kind,
        ..ProblemDocument::new(status, Some(detail))
    }
    .into_response()
}

pub(super) fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "sandbox authority: cannot serialize an answer");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct PostAnswer<'a> {
    status: &'a str,
    authority_ref: &'a str,
}

pub(super) fn post_answer(status: StatusCode, word: &str, authority_ref: &str) -> Response {
    let mut response = json(
        status,
        &PostAnswer {
            status: word,
            authority_ref,
        },
    );
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/messages/{authority_ref}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// What became of a well-formed POST, before any lost-answer fault.
pub(super) enum Posted {
    /// Refused (`400`/`413`/`422`); nothing stored.
    Refused(Response),
    /// A new message, now stored.
    Stored { authority_ref: String },
    /// The message id was already stored.
    Duplicate { authority_ref: String },
}

pub(super) async fn post_message(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let stall = sandbox
        .stall_first_post
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or_default();
    let delay = sandbox.latency() + stall;
    let response = post_inner(&sandbox, &headers, body);
    tokio::time::sleep(delay).await;
    response
}

pub(super) fn post_inner(
    sandbox: &Sandbox,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    sandbox.count(|s| s.posts += 1);
    if let Some(down) = sandbox.down() {
        sandbox.count(|s| s.posts_while_down += 1);
        return down;
    }
    let fault = sandbox.roll_fault();
    let lost_answer = fault && rand::random::<bool>();
    if fault && !lost_answer {
        return sandbox.fault();
    }
    if let Ok(body) = &body {
        sandbox.count(|s| s.bytes_received += body.len() as u64);
    }
    let outcome = accept(sandbox, headers, body);
    if lost_answer {
        return sandbox.fault();
    }
    answered(sandbox, outcome)
}

/// The answer to a well-formed POST of one filing (alone or in a package).
fn answered(sandbox: &Sandbox, outcome: Posted) -> Response {
    match outcome {
        Posted::Refused(response) => {
            sandbox.count(|s| s.refused += 1);
            response
        }
        Posted::Stored { authority_ref } => {
            if sandbox.process_after.is_zero() {
                post_answer(StatusCode::OK, "accepted", &authority_ref)
            } else {
                post_answer(StatusCode::ACCEPTED, "queued", &authority_ref)
            }
        }
        Posted::Duplicate { authority_ref } => {
            sandbox.count(|s| s.duplicates += 1);
            post_answer(StatusCode::CONFLICT, "duplicate", &authority_ref)
        }
    }
}

/// `POST /v1/packages`: a tar (`manifest.json`, then each filing under its message
/// id), `gzip` or uncompressed; every filing in it is taken as if POSTed alone, and
/// the answer lists each one's status and JSON. Faults and the down period apply to
/// the package as a whole, a lost answer included.
pub(super) async fn post_package(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    tokio::time::sleep(sandbox.latency()).await;
    sandbox.count(|s| s.packages += 1);
    if let Some(down) = sandbox.down() {
        return down;
    }
    let fault = sandbox.roll_fault();
    let lost_answer = fault && rand::random::<bool>();
    if fault && !lost_answer {
        return sandbox.fault();
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return problem(
                rejection.status(),
                problem_type::BODY,
                format!("cannot read the package: {}", rejection.body_text()),
            );
        }
    };
    sandbox.count(|s| s.bytes_received += body.len() as u64);
    let tar = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("identity") => body.to_vec(),
        Some("gzip") if !sandbox.refuse_gzip => match gunzip(&body) {
            Ok(tar) => tar,
            Err(why) => return problem(StatusCode::BAD_REQUEST, problem_type::BODY, why),
        },
        Some(other) => {
            let mut r = problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                problem_type::BODY,
                format!("content coding {other:?} is not taken"),
            );
            let offered = if sandbox.refuse_gzip {
                "identity"
            } else {
                "gzip, identity"
            };
            r.headers_mut()
                .insert(header::ACCEPT_ENCODING, HeaderValue::from_static(offered));
            return r;
        }
    };
    let (manifest, files) = match unpack(&tar) {
        Ok(p) => p,
        Err(why) => return problem(StatusCode::BAD_REQUEST, problem_type::BODY, why),
    };
    let mut results = Vec::with_capacity(manifest.messages.len());
    for entry in manifest.messages {
        let mut one = HeaderMap::new();
        for (name, value) in [
            ("x-ivan-message-id", &entry.message_id),
            ("x-ivan-employer", &entry.employer),
            ("x-ivan-document-type", &entry.document_type),
            ("content-digest", &entry.content_digest),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                one.insert(name, v);
            }
        }
        let bytes = files.get(&entry.message_id).cloned().unwrap_or_default();
        let response = answered(&sandbox, accept(&sandbox, &one, Ok(bytes)));
        let status = response.status().as_u16();
        let json = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .unwrap_or_default();
        results.push(serde_json::json!({
            "message_id": entry.message_id,
            "status": status,
            "answer": json,
        }));
    }
    if lost_answer {
        return sandbox.fault();
    }
    json(StatusCode::OK, &serde_json::json!({ "results": results }))
}

/// The tar of a gzip body, at most [`MAX_FILING_BYTES`].
fn gunzip(body: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_FILING_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not gzip: {e}"))?;
    if out.len() > MAX_FILING_BYTES {
        return Err(format!(
            "the package unpacks to more than {MAX_FILING_BYTES} bytes"
        ));
    }
    Ok(out)
}

/// The manifest and the files of a package tar.
fn unpack(
    tar: &[u8],
) -> Result<
    (
        crate::forwarding::authority::Manifest,
        std::collections::HashMap<String, Bytes>,
    ),
    String,
> {
    use std::io::Read;
    let mut archive = tar::Archive::new(tar);
    let mut manifest = None;
    let mut files = std::collections::HashMap::new();
    for entry in archive.entries().map_err(|e| format!("not a tar: {e}"))? {
        let mut entry = entry.map_err(|e| format!("not a tar: {e}"))?;
        let name = entry
            .path()
            .map_err(|e| format!("a tar entry's name: {e}"))?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading {name}: {e}"))?;
        if manifest.is_none() {
            if name != "manifest.json" {
                return Err("the first entry of a package must be manifest.json".into());
            }
            manifest = Some(
                serde_json::from_slice::<crate::forwarding::authority::Manifest>(&bytes)
                    .map_err(|e| format!("manifest.json: {e}"))?,
            );
        } else {
            files.insert(name, Bytes::from(bytes));
        }
    }
    let manifest = manifest.ok_or("an empty package")?;
    if manifest.version != 1 || manifest.messages.len() > crate::forwarding::MAX_PACKAGE_FILINGS {
        return Err(format!(
            "manifest.json: version 1 with at most {} messages expected",
            crate::forwarding::MAX_PACKAGE_FILINGS
        ));
    }
    Ok((manifest, files))
}

/// Validates a POST and stores it if it is new and not refused.
pub(super) fn accept(
    sandbox: &Sandbox,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Posted {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let detail = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the filing is larger than {MAX_FILING_BYTES} bytes")
            } else {
                format!("cannot read the request body: {}", rejection.body_text())
            };
            return Posted::Refused(problem(status, problem_type::BODY, detail));
        }
    };
    let request = match Filing::from_request(headers, &body) {
        Ok(r) => r,
        Err(bad) => return Posted::Refused(bad.into_response()),
    };

    let now = Instant::now();
    let received_at = Utc::now();
    let mut store = sandbox.store();
    if let Some(authority_ref) = store.by_id.get(&request.message_id).cloned() {
        if let Some(m) = store.messages.get_mut(&authority_ref) {
            m.times_posted += 1;
        }
        return Posted::Duplicate { authority_ref };
    }
    if contains(&body, REFUSE_MARK) {
        return Posted::Refused(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            problem_type::REFUSED,
            "senderReference starts with \"REFUSE\": the sandbox authority refuses such filings (test rule); nothing was stored".into(),
        ));
    }
    let authority_ref = loop {
        let candidate = format!("A-{}", hex::encode_upper(rand::random::<[u8; 6]>()));
        if !store.messages.contains_key(&candidate) {
            break candidate;
        }
    };
    let processed_at = TimeDelta::try_milliseconds(
        i64::try_from(sandbox.process_after.as_millis()).unwrap_or(i64::MAX),
    )
    .and_then(|d| received_at.checked_add_signed(d))
    .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let message = Message {
        message_id: request.message_id.clone(),
        authority_ref: authority_ref.clone(),
        employer: request.employer,
        document_type: request.document_type,
        sha256: hex::encode(request.sha256),
        reject: contains(&body, REJECT_MARK),
        bytes: body,
        received_at,
        received: now,
        processed_at,
        times_posted: 1,
    };
    tracing::debug!(
        message_id = %message.message_id,
        authority_ref = %authority_ref,
        bytes = message.bytes.len(),
        "sandbox authority: message stored"
    );
    store
        .by_id
        .insert(request.message_id, authority_ref.clone());
    store.messages.insert(authority_ref.clone(), message);
    store.order.push(authority_ref.clone());
    store.stats.received += 1;
    Posted::Stored { authority_ref }
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The validated headers of a POST.
pub(super) struct Filing {
    /// Lowercase hyphenated.
    message_id: String,
    employer: String,
    document_type: String,
    sha256: [u8; 32],
}

impl Filing {
    pub(super) fn from_request(headers: &HeaderMap, body: &[u8]) -> Result<Self, BadRequest> {
        let message_id = required(headers, "x-ivan-message-id")?;
        let message_id = parse_message_id(message_id).ok_or_else(|| {
            bad_request(
                problem_type::INVALID_HEADER,
                "X-Ivan-Message-Id must be a UUID in its hyphenated form (8-4-4-4-12 hex digits)"
                    .into(),
            )
        })?;
        let employer = label(headers, "x-ivan-employer", "X-Ivan-Employer")?;
        let document_type = label(headers, "x-ivan-document-type", "X-Ivan-Document-Type")?;
        let digest = required(headers, "content-digest")?;
        let claimed = parse_content_digest(digest).map_err(|why| {
            bad_request(
                problem_type::INVALID_HEADER,
                format!("Content-Digest: {why}"),
            )
        })?;
        let actual: [u8; 32] = Sha256::digest(body).into();
        if claimed != actual {
            return Err(bad_request(
                problem_type::DIGEST_MISMATCH,
                format!(
                    "Content-Digest does not match the body: the body's is sha-256=:{}:",
                    STANDARD.encode(actual)
                ),
            ));
        }
        Ok(Self {
            message_id,
            employer,
            document_type,
            sha256: actual,
        })
    }
}

/// A `400` answer, kept small until it is one.
#[derive(Debug)]
pub(super) struct BadRequest {
    kind: &'static str,
    detail: String,
}

pub(super) fn bad_request(kind: &'static str, detail: String) -> BadRequest {
    BadRequest { kind, detail }
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        problem(StatusCode::BAD_REQUEST, self.kind, self.detail)
    }
}

/// The display name of a header for messages.
pub(super) fn display_name(name: &str) -> &str {
    match name {
        "x-ivan-message-id" => "X-Ivan-Message-Id",
        "x-ivan-employer" => "X-Ivan-Employer",
        "x-ivan-document-type" => "X-Ivan-Document-Type",
        "content-digest" => "Content-Digest",
        other => other,
    }
}

pub(super) fn required<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, BadRequest> {
    let mut values = headers.get_all(name).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        let detail = if headers.contains_key(name) {
            format!("the {} header must be given once", display_name(name))
        } else {
            format!("the {} header is required", display_name(name))
        };
        let kind = if headers.contains_key(name) {
            problem_type::INVALID_HEADER
        } else {
            problem_type::MISSING_HEADER
        };
        return Err(bad_request(kind, detail));
    };
    value.to_str().map(str::trim).map_err(|_| {
        bad_request(
            problem_type::INVALID_HEADER,
            format!("the {} header must be visible ASCII", display_name(name)),
        )
    })
}

pub(super) fn label(headers: &HeaderMap, name: &str, shown: &str) -> Result<String, BadRequest> {
    let value = required(headers, name)?;
    if value.is_empty() || value.len() > MAX_LABEL_LEN {
        return Err(bad_request(
            problem_type::INVALID_HEADER,
            format!("the {shown} header must have 1 to {MAX_LABEL_LEN} characters"),
        ));
    }
    Ok(value.to_owned())
}

pub(super) fn parse_message_id(value: &str) -> Option<String> {
    if value.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(value)
        .ok()
        .map(|id| id.hyphenated().to_string())
}

/// The SHA-256 of an RFC 9530 `Content-Digest` field value: its `sha-256` member, a
/// byte sequence (`:base64:`, padding optional). Other algorithms are ignored.
pub(super) fn parse_content_digest(value: &str) -> Result<[u8; 32], String> {
    pub(super) const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    for member in value.split(',') {
        let Some((key, rest)) = member.trim().split_once('=') else {
            continue;
        };
        if key != "sha-256" {
            continue;
        }
        // Drop any parameters (`;key=value`), which this protocol does not use.
        let item = rest.split(';').next().unwrap_or_default().trim();
        let Some(b64) = item.strip_prefix(':').and_then(|s| s.strip_suffix(':')) else {
            return Err("the sha-256 value must be a byte sequence, :base64:".into());
        };
        let bytes = LENIENT
            .decode(b64)
            .map_err(|e| format!("the sha-256 value is not base64: {e}"))?;
        return <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| format!("a SHA-256 digest has 32 bytes, not {}", bytes.len()));
    }
    Err("no sha-256 member (expected sha-256=:<base64 of the body's SHA-256>:)".into())
}

#[derive(Debug, Serialize)]
pub(super) struct DocumentLink {
    n: u32,
    name: &'static str,
    media_type: &'static str,
    href: String,
}

#[derive(Debug, Serialize)]
pub(super) struct MessageView<'a> {
    authority_ref: &'a str,
    message_id: &'a str,
    state: MessageState,
    documents: Vec<DocumentLink>,
}

/// The documents of a processed or rejected message: (n, name, media type).
pub(super) const DOCUMENTS: [(u32, &str, &str); 2] = [
    (1, "protocol.xml", "application/xml"),
    (2, "protocol.html", "text/html; charset=utf-8"),
];

pub(super) fn not_found(detail: String) -> Response {
    problem(StatusCode::NOT_FOUND, problem_type::NOT_FOUND, detail)
}

pub(super) async fn get_message(
    State(sandbox): State<Arc<Sandbox>>,
    UrlPath(authority_ref): UrlPath<String>,
) -> Response {
    sandbox
        .gated_message(&authority_ref, |m, state| {
            let documents = if state == MessageState::Processing {
                vec![]
            } else {
                DOCUMENTS
                    .iter()
                    .map(|&(n, name, media_type)| DocumentLink {
                        n,
                        name,
                        media_type,
                        href: format!("/v1/messages/{}/documents/{n}", m.authority_ref),
                    })
                    .collect()
            };
            json(
                StatusCode::OK,
                &MessageView {
                    authority_ref: &m.authority_ref,
                    message_id: &m.message_id,
                    state,
                    documents,
                },
            )
        })
        .await
}

pub(super) async fn get_document(
    State(sandbox): State<Arc<Sandbox>>,
    UrlPath((authority_ref, n)): UrlPath<(String, String)>,
) -> Response {
    sandbox
        .gated_message(&authority_ref, |m, state| {
            if state == MessageState::Processing {
                return not_found(format!(
                    "message {authority_ref} is still processing; it has no documents yet"
                ));
            }
            let (body, media_type) = match n.as_str() {
                "1" => (protocol_xml(m, state), DOCUMENTS[0].2),
                "2" => (protocol_html(m, state), DOCUMENTS[1].2),
                _ => return not_found(format!("message {authority_ref} has no document {n}")),
            };
            let digest = format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(&body)));
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, media_type.to_owned()),
                    (header::HeaderName::from_static("content-digest"), digest),
                ],
                body,
            )
                .into_response()
        })
        .await
}

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

use crate::documents::xml_escape as escape;

/// What both protocol documents say about a message, escaped (XML's and HTML's
/// escapes are the same five characters).
struct Facts {
    r: String,
    id: String,
    employer: String,
    doctype: String,
    state: &'static str,
    received: String,
    processed: String,
    sha: String,
}

impl Facts {
    fn of(m: &Message, state: MessageState) -> Self {
        Facts {
            r: escape(&m.authority_ref),
            id: escape(&m.message_id),
            employer: escape(&m.employer),
            doctype: escape(&m.document_type),
            state: state.as_str(),
            received: rfc3339(m.received_at),
            processed: rfc3339(m.processed_at),
            sha: m.sha256.clone(),
        }
    }
}

/// Document 1. Derived only from stored facts, so every fetch is byte-identical.
pub(super) fn protocol_xml(m: &Message, state: MessageState) -> String {
    let reason = if state == MessageState::Rejected {
        format!("  <Reason>{}</Reason>\n", escape(REJECT_REASON))
    } else {
        String::new()
    };
    let Facts {
        r,
        id,
        employer,
        doctype,
        state,
        received,
        processed,
        sha,
    } = Facts::of(m, state);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <Protocol xmlns=\"{PROTOCOL_NS}\" authorityRef=\"{r}\" messageId=\"{id}\" state=\"{state}\" \
         receivedAt=\"{received}\" processedAt=\"{processed}\" sha256=\"{sha}\">\n  \
         <Employer>{employer}</Employer>\n  \
         <DocumentType>{doctype}</DocumentType>\n\
         {reason}\
         </Protocol>\n"
    )
}

/// Document 2: the same facts for people.
pub(super) fn protocol_html(m: &Message, state: MessageState) -> String {
    let reason = if state == MessageState::Rejected {
        format!("<dt>Reason</dt><dd>{}</dd>\n", escape(REJECT_REASON))
    } else {
        String::new()
    };
    let f = Facts::of(m, state);
    let rows: [(&str, &str); 8] = [
        ("Authority reference", &f.r),
        ("Message id", &f.id),
        ("Employer", &f.employer),
        ("Document type", &f.doctype),
        ("State", f.state),
        ("Received at", &f.received),
        ("Processed at", &f.processed),
        ("SHA-256 of the filing", &f.sha),
    ];
    let rows: String = rows
        .iter()
        .map(|(term, value)| format!("<dt>{term}</dt><dd>{value}</dd>\n"))
        .collect();
    let r = &f.r;
    format!(
        "<!DOCTYPE html>\n\
         <html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Processing protocol {r}</title></head>\n\
         <body>\n<h1>Processing protocol {r}</h1>\n\
         <p>Sandbox authority (test system): not a real authority's decision.</p>\n<dl>\n\
         {rows}{reason}</dl>\n</body></html>\n"
    )
}

/// Ends the down period now (`204`): a test decides when the authority is back.
pub(super) async fn end_outage(State(sandbox): State<Arc<Sandbox>>) -> StatusCode {
    sandbox
        .outage_ended
        .store(true, std::sync::atomic::Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

pub(super) async fn get_stats(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let stats = sandbox.store().stats;
    json(StatusCode::OK, &stats)
}

#[derive(Debug, Serialize)]
pub(super) struct MessageListing<'a> {
    message_id: &'a str,
    authority_ref: &'a str,
    employer: &'a str,
    document_type: &'a str,
    sha256: &'a str,
    size: usize,
    received_at: String,
    times_posted: u64,
    state: MessageState,
}

pub(super) async fn get_messages(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let now = Instant::now();
    let store = sandbox.store();
    let listing: Vec<MessageListing<'_>> = store
        .order
        .iter()
        .filter_map(|r| store.messages.get(r))
        .map(|m| MessageListing {
            message_id: &m.message_id,
            authority_ref: &m.authority_ref,
            employer: &m.employer,
            document_type: &m.document_type,
            sha256: &m.sha256,
            size: m.bytes.len(),
            received_at: rfc3339(m.received_at),
            times_posted: m.times_posted,
            state: sandbox.state(m, now),
        })
        .collect();
    json(StatusCode::OK, &listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The protocol documents' exact bytes: fetched again, they must not change.
    #[test]
    fn protocol_documents_are_these_bytes() {
        let at = DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let m = Message {
            message_id: "m<1>".into(),
            authority_ref: "SA-1".into(),
            employer: "EMP-1 \"Acme & Co\"".into(),
            document_type: "registration-form".into(),
            sha256: "ab".repeat(32),
            bytes: bytes::Bytes::new(),
            received_at: at,
            received: std::time::Instant::now(),
            processed_at: at + chrono::Duration::milliseconds(1500),
            times_posted: 1,
            reject: true,
        };
        let sha = "ab".repeat(32);
        assert_eq!(
            protocol_xml(&m, MessageState::Rejected),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Protocol xmlns=\"urn:ivan:sandbox-authority:1\" \
                 authorityRef=\"SA-1\" messageId=\"m&lt;1&gt;\" state=\"rejected\" \
                 receivedAt=\"2026-12-05T10:00:00.000Z\" processedAt=\"2026-12-05T10:00:01.500Z\" \
                 sha256=\"{sha}\">\n  <Employer>EMP-1 &quot;Acme &amp; Co&quot;</Employer>\n  \
                 <DocumentType>registration-form</DocumentType>\n  <Reason>senderReference starts \
                 with &quot;REJECT&quot;: the sandbox authority rejects such filings (test \
                 rule)</Reason>\n</Protocol>\n"
            )
        );
        assert_eq!(
            protocol_html(&m, MessageState::Processed),
            format!(
                "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Processing \
                 protocol SA-1</title></head>\n<body>\n<h1>Processing protocol SA-1</h1>\n<p>Sandbox \
                 authority (test system): not a real authority's decision.</p>\n<dl>\n\
                 <dt>Authority reference</dt><dd>SA-1</dd>\n<dt>Message id</dt><dd>m&lt;1&gt;</dd>\n\
                 <dt>Employer</dt><dd>EMP-1 &quot;Acme &amp; Co&quot;</dd>\n\
                 <dt>Document type</dt><dd>registration-form</dd>\n<dt>State</dt><dd>processed</dd>\n\
                 <dt>Received at</dt><dd>2026-12-05T10:00:00.000Z</dd>\n\
                 <dt>Processed at</dt><dd>2026-12-05T10:00:01.500Z</dd>\n\
                 <dt>SHA-256 of the filing</dt><dd>{sha}</dd>\n</dl>\n</body></html>\n"
            )
        );
    }
}
