//! The sandbox authority: a real HTTP peer that implements the authority side of the
//! protocol ivan forwards filings with (`docs/authority-protocol.md` is the
//! specification). It is for development and tests, so that forwarding is exercised
//! against an actual server over actual HTTP(S), with mutual TLS when asked. It is
//! not a mock of ivan's internals: it knows nothing of ivan beyond the wire protocol.
//!
//! What it does, per the protocol document: `POST /v1/messages` takes a filing,
//! idempotently by `X-Ivan-Message-Id`; `GET /v1/messages/{authority_ref}` reads its
//! state (`processing` → `processed` or `rejected`) and lists the authority's
//! processing protocols, which `GET /v1/messages/{ref}/documents/{n}` returns. Faults
//! can be injected ([`SandboxOptions`]): random `503`s (half of them after the message
//! was stored, as if the answer were lost), random latency, and a period after start
//! during which it is wholly down. `GET /v1/_stats` and `GET /v1/_messages` let tests
//! see what it received; they are never faulted.
//!
//! **Limits.** The store is in memory: restarting the sandbox forgets every message,
//! so an intermediary polling a message across such a restart gets `404`. Nothing is
//! authenticated beyond the optional client certificate. Do not use it as an authority
//! for real filings.
//!
//! [`write_dev_tls`] writes throwaway TLS material (CAs, server and client
//! certificates) for trying mutual TLS locally and in tests.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

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
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::dev::{self, Identity};
use crate::error::Problem;

/// The largest filing `POST /v1/messages` accepts (64 MiB); larger ones get `413`.
pub const MAX_FILING_BYTES: usize = 64 * 1024 * 1024;

/// How long in-flight requests may take to finish once `shutdown` resolves.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The longest accepted `X-Ivan-Employer` / `X-Ivan-Document-Type` value.
const MAX_LABEL_LEN: usize = 256;

/// The XML namespace of the processing protocol document.
pub const PROTOCOL_NS: &str = "urn:ivan:sandbox-authority:1";

/// Problem `type` URIs (RFC 9457) the sandbox answers with.
pub mod problem_type {
    /// `400`: a required header is missing.
    pub const MISSING_HEADER: &str = "urn:ivan:sandbox-authority:problem:missing-header";
    /// `400`: a header is present but malformed.
    pub const INVALID_HEADER: &str = "urn:ivan:sandbox-authority:problem:invalid-header";
    /// `400`: `Content-Digest` does not match the body.
    pub const DIGEST_MISMATCH: &str = "urn:ivan:sandbox-authority:problem:digest-mismatch";
    /// `400`/`413`: the body could not be read, or is too large.
    pub const BODY: &str = "urn:ivan:sandbox-authority:problem:body";
    /// `422`: the filing is refused by a business rule.
    pub const REFUSED: &str = "urn:ivan:sandbox-authority:problem:refused";
    /// `404`: no such message or document.
    pub const NOT_FOUND: &str = "urn:ivan:sandbox-authority:problem:not-found";
    /// `503`: an injected fault.
    pub const FAULT: &str = "urn:ivan:sandbox-authority:problem:unavailable";
    /// `503`: the authority is down (the `down_for_secs` period).
    pub const DOWN: &str = "urn:ivan:sandbox-authority:problem:down";
}

/// How the sandbox behaves.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// 0.0..=1.0: the probability that a request to `/v1/messages*` (POST or GET)
    /// answers `503`. For a POST, half of these faults (a coin flip) happen after the
    /// message was stored, as if the answer were lost on the way back.
    pub fault_rate: f64,
    /// Each answer to `/v1/messages*` is delayed by a uniformly random 0..=latency_ms.
    pub latency_ms: u64,
    /// For this long after [`run`] starts, every `/v1/messages*` request answers `503`
    /// ("wholly down").
    pub down_for_secs: u64,
    /// A received message reads `processing` until this long after its first receipt,
    /// then `processed` (or `rejected`). `0`: the POST answers `200 accepted` and the
    /// message is processed at once.
    pub process_after_ms: u64,
    /// The first message POST received is answered only this long after it arrived
    /// (after `latency_ms`'s delay), as a hung request would be: tests check that one
    /// slow request does not hold back the others. `0`: no stall.
    pub stall_first_post_ms: u64,
    /// `None`: plain HTTP.
    pub tls: Option<SandboxTls>,
}

impl Default for SandboxOptions {
    /// No faults, no latency, never down, processed 1 s after receipt, plain HTTP.
    fn default() -> Self {
        Self {
            fault_rate: 0.0,
            latency_ms: 0,
            down_for_secs: 0,
            process_after_ms: 1000,
            stall_first_post_ms: 0,
            tls: None,
        }
    }
}

/// HTTPS for the sandbox: PEM files.
#[derive(Debug, Clone)]
pub struct SandboxTls {
    /// The server's certificate chain (leaf first).
    pub cert_pem: PathBuf,
    /// The server's private key (PKCS#8, SEC1 or PKCS#1).
    pub key_pem: PathBuf,
    /// `Some`: require a client certificate chaining to one of the CA certificates in
    /// this file; a client without one fails the TLS handshake.
    pub client_ca_pem: Option<PathBuf>,
}

/// Checks `options` (the fault rate's range, the TLS material) as [`run`] does first,
/// so a caller can report a bad option before announcing that it listens. Returns
/// the TLS server configuration, if any.
pub fn check(options: &SandboxOptions) -> Result<Option<rustls::ServerConfig>, Error> {
    if !(0.0..=1.0).contains(&options.fault_rate) {
        return Err(Error::Config(format!(
            "sandbox authority: fault rate {} is not between 0 and 1",
            options.fault_rate
        )));
    }
    options.tls.as_ref().map(server_config).transpose()
}

/// Serves the sandbox authority on `listener` (an already bound standard-library
/// listener; it is switched to non-blocking mode here) until `shutdown` resolves, then
/// stops accepting connections and lets in-flight requests finish for up to 3 s.
/// Binds nothing itself and prints nothing (it logs through `tracing`). Must be
/// called within a Tokio runtime.
///
/// Fails at once on invalid options (a `fault_rate` outside 0..=1) or unreadable TLS
/// material (`Error::Config`).
pub async fn run(
    listener: std::net::TcpListener,
    options: SandboxOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let tls = check(&options)?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        context: "sandbox authority: listener address".into(),
        source,
    })?;
    let listen = |source| Error::Listen { addr, source };
    let app = router(Arc::new(Sandbox::new(&options)));

    let handle = axum_server::Handle::<SocketAddr>::new();
    let stopper = tokio::spawn({
        let handle = handle.clone();
        async move {
            shutdown.await;
            handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        }
    });
    let not_accepted = |peer: Option<&SocketAddr>, e: &std::io::Error| {
        tracing::info!(peer = ?peer, error = %e, "sandbox authority: connection not accepted");
    };
    let served = match tls {
        Some(config) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
            axum_server::tls_rustls::from_tcp_rustls(listener, config)
                .map_err(listen)?
                .handle(handle)
                .accept_error_handler(not_accepted)
                .serve(app.into_make_service())
                .await
        }
        None => {
            axum_server::from_tcp(listener)
                .map_err(listen)?
                .handle(handle)
                .accept_error_handler(not_accepted)
                .serve(app.into_make_service())
                .await
        }
    };
    stopper.abort();
    served.map_err(|source| Error::Io {
        context: format!("sandbox authority on {addr}"),
        source,
    })
}

// ---------------------------------------------------------------------------------
// State

#[derive(Debug)]
struct Sandbox {
    fault_rate: f64,
    latency_ms: u64,
    down_until: Instant,
    process_after: Duration,
    /// Taken by the first POST, which then stalls this long.
    stall_first_post: Mutex<Option<Duration>>,
    store: Mutex<Store>,
}

#[derive(Debug, Default)]
struct Store {
    /// message id → authority ref
    by_id: HashMap<String, String>,
    /// authority ref → message
    messages: HashMap<String, Message>,
    /// authority refs in order of receipt
    order: Vec<String>,
    stats: Stats,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Stats {
    /// Distinct messages stored.
    received: u64,
    /// `409` answers given.
    duplicates: u64,
    /// `POST /v1/messages` requests seen.
    posts: u64,
    /// `503` answers given by fault injection (not those of the down period).
    faults_injected: u64,
    /// `POST /v1/messages` requests answered `503` because of the down period: how
    /// hard a client tried while the authority was down.
    posts_while_down: u64,
    /// `400`/`413`/`422` answers given to `POST /v1/messages`.
    refused: u64,
}

#[derive(Debug)]
struct Message {
    message_id: String,
    authority_ref: String,
    employer: String,
    document_type: String,
    /// Lowercase hex SHA-256 of `bytes`.
    sha256: String,
    bytes: Bytes,
    received_at: DateTime<Utc>,
    received: Instant,
    /// `received_at` + `process_after`: fixed at receipt, so documents never change.
    processed_at: DateTime<Utc>,
    times_posted: u64,
    reject: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum MessageState {
    Processing,
    Processed,
    Rejected,
}

impl MessageState {
    fn as_str(self) -> &'static str {
        match self {
            MessageState::Processing => "processing",
            MessageState::Processed => "processed",
            MessageState::Rejected => "rejected",
        }
    }
}

/// The business rules tests use to provoke outcomes.
const REFUSE_MARK: &[u8] = b"senderReference=\"REFUSE";
const REJECT_MARK: &[u8] = b"senderReference=\"REJECT";
const REJECT_REASON: &str = "senderReference starts with \"REJECT\": the sandbox authority rejects such filings (test rule)";

impl Sandbox {
    fn new(options: &SandboxOptions) -> Self {
        let now = Instant::now();
        Self {
            fault_rate: options.fault_rate,
            latency_ms: options.latency_ms,
            // An absurd down period is "down for a century".
            down_until: now
                .checked_add(Duration::from_secs(options.down_for_secs))
                .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
                .unwrap_or(now),
            process_after: Duration::from_millis(options.process_after_ms),
            stall_first_post: Mutex::new(
                (options.stall_first_post_ms > 0)
                    .then(|| Duration::from_millis(options.stall_first_post_ms)),
            ),
            store: Mutex::new(Store::default()),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.store().stats);
    }

    /// A random delay of 0..=latency_ms.
    fn latency(&self) -> Duration {
        if self.latency_ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::random_range(0..=self.latency_ms))
        }
    }

    /// `503` while in the down period.
    fn down(&self) -> Option<Response> {
        let left = self.down_until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let retry_after = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let mut response = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            problem_type::DOWN,
            format!("the sandbox authority is down for another {retry_after} s"),
        );
        if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        Some(response)
    }

    fn roll_fault(&self) -> bool {
        self.fault_rate > 0.0 && rand::random::<f64>() < self.fault_rate
    }

    fn fault(&self) -> Response {
        self.count(|s| s.faults_injected += 1);
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            problem_type::FAULT,
            "injected fault: the sandbox authority is temporarily unavailable".into(),
        )
    }

    fn state(&self, m: &Message, now: Instant) -> MessageState {
        if now.saturating_duration_since(m.received) < self.process_after {
            MessageState::Processing
        } else if m.reject {
            MessageState::Rejected
        } else {
            MessageState::Processed
        }
    }

    /// Runs a GET on `/v1/messages*` through the down period, fault injection and
    /// latency.
    async fn gated(&self, answer: impl FnOnce(&Self) -> Response) -> Response {
        let delay = self.latency();
        let response = if let Some(down) = self.down() {
            down
        } else if self.roll_fault() {
            self.fault()
        } else {
            answer(self)
        };
        tokio::time::sleep(delay).await;
        response
    }
}

// ---------------------------------------------------------------------------------
// HTTP

fn router(sandbox: Arc<Sandbox>) -> Router {
    Router::new()
        .route("/v1/messages", post(post_message))
        .route("/v1/messages/{authority_ref}", get(get_message))
        .route(
            "/v1/messages/{authority_ref}/documents/{n}",
            get(get_document),
        )
        .route("/v1/_stats", get(get_stats))
        .route("/v1/_messages", get(get_messages))
        .layer(DefaultBodyLimit::max(MAX_FILING_BYTES))
        .layer(axum::middleware::from_fn(bare_errors_as_problems))
        .with_state(sandbox)
}

/// Turns the error answers of lower layers (the router's `404`/`405`, extractor
/// rejections: plain text or empty) into problem documents, so every error the
/// sandbox answers is `application/problem+json`. The sandbox's own JSON answers
/// (`409 duplicate`) and problem documents pass untouched.
async fn bare_errors_as_problems(
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

fn problem(status: StatusCode, kind: &'static str, detail: String) -> Response {
    Problem {
        kind,
        ..Problem::new(status, Some(detail))
    }
    .into_response()
}

fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "sandbox authority: cannot serialize an answer");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Debug, Serialize)]
struct PostAnswer<'a> {
    status: &'a str,
    authority_ref: &'a str,
}

fn post_answer(status: StatusCode, word: &str, authority_ref: &str) -> Response {
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
enum Outcome {
    /// Refused (`400`/`413`/`422`); nothing stored.
    Refused(Response),
    /// A new message, now stored.
    Stored { authority_ref: String },
    /// The message id was already stored.
    Duplicate { authority_ref: String },
}

async fn post_message(
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

fn post_inner(
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
    let outcome = accept(sandbox, headers, body);
    if lost_answer {
        return sandbox.fault();
    }
    match outcome {
        Outcome::Refused(response) => {
            sandbox.count(|s| s.refused += 1);
            response
        }
        Outcome::Stored { authority_ref } => {
            if sandbox.process_after.is_zero() {
                post_answer(StatusCode::OK, "accepted", &authority_ref)
            } else {
                post_answer(StatusCode::ACCEPTED, "queued", &authority_ref)
            }
        }
        Outcome::Duplicate { authority_ref } => {
            sandbox.count(|s| s.duplicates += 1);
            post_answer(StatusCode::CONFLICT, "duplicate", &authority_ref)
        }
    }
}

/// Validates a POST and stores it if it is new and not refused.
fn accept(sandbox: &Sandbox, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Outcome {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let detail = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the filing is larger than {MAX_FILING_BYTES} bytes")
            } else {
                format!("cannot read the request body: {}", rejection.body_text())
            };
            return Outcome::Refused(problem(status, problem_type::BODY, detail));
        }
    };
    let request = match Filing::from_request(headers, &body) {
        Ok(r) => r,
        Err(bad) => return Outcome::Refused(bad.into_response()),
    };

    let now = Instant::now();
    let received_at = Utc::now();
    let mut store = sandbox.store();
    if let Some(authority_ref) = store.by_id.get(&request.message_id).cloned() {
        if let Some(m) = store.messages.get_mut(&authority_ref) {
            m.times_posted += 1;
        }
        return Outcome::Duplicate { authority_ref };
    }
    if contains(&body, REFUSE_MARK) {
        return Outcome::Refused(problem(
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
    Outcome::Stored { authority_ref }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The validated headers of a POST.
struct Filing {
    /// Lowercase hyphenated.
    message_id: String,
    employer: String,
    document_type: String,
    sha256: [u8; 32],
}

impl Filing {
    fn from_request(headers: &HeaderMap, body: &[u8]) -> Result<Self, BadRequest> {
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
struct BadRequest {
    kind: &'static str,
    detail: String,
}

fn bad_request(kind: &'static str, detail: String) -> BadRequest {
    BadRequest { kind, detail }
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        problem(StatusCode::BAD_REQUEST, self.kind, self.detail)
    }
}

/// The display name of a header for messages.
fn display_name(name: &str) -> &str {
    match name {
        "x-ivan-message-id" => "X-Ivan-Message-Id",
        "x-ivan-employer" => "X-Ivan-Employer",
        "x-ivan-document-type" => "X-Ivan-Document-Type",
        "content-digest" => "Content-Digest",
        other => other,
    }
}

fn required<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, BadRequest> {
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

fn label(headers: &HeaderMap, name: &str, shown: &str) -> Result<String, BadRequest> {
    let value = required(headers, name)?;
    if value.is_empty() || value.len() > MAX_LABEL_LEN {
        return Err(bad_request(
            problem_type::INVALID_HEADER,
            format!("the {shown} header must have 1 to {MAX_LABEL_LEN} characters"),
        ));
    }
    Ok(value.to_owned())
}

fn parse_message_id(value: &str) -> Option<String> {
    if value.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(value)
        .ok()
        .map(|id| id.hyphenated().to_string())
}

/// The SHA-256 of an RFC 9530 `Content-Digest` field value: its `sha-256` member, a
/// byte sequence (`:base64:`, padding optional). Other algorithms are ignored.
fn parse_content_digest(value: &str) -> Result<[u8; 32], String> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
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
struct DocumentLink {
    n: u32,
    name: &'static str,
    media_type: &'static str,
    href: String,
}

#[derive(Debug, Serialize)]
struct MessageView<'a> {
    authority_ref: &'a str,
    message_id: &'a str,
    state: MessageState,
    documents: Vec<DocumentLink>,
}

/// The documents of a processed or rejected message: (n, name, media type).
const DOCUMENTS: [(u32, &str, &str); 2] = [
    (1, "protocol.xml", "application/xml"),
    (2, "protocol.html", "text/html; charset=utf-8"),
];

fn not_found(detail: String) -> Response {
    problem(StatusCode::NOT_FOUND, problem_type::NOT_FOUND, detail)
}

async fn get_message(
    State(sandbox): State<Arc<Sandbox>>,
    UrlPath(authority_ref): UrlPath<String>,
) -> Response {
    sandbox
        .gated(|sandbox| {
            let store = sandbox.store();
            let Some(m) = store.messages.get(&authority_ref) else {
                return not_found(format!("no message {authority_ref}"));
            };
            let state = sandbox.state(m, Instant::now());
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

async fn get_document(
    State(sandbox): State<Arc<Sandbox>>,
    UrlPath((authority_ref, n)): UrlPath<(String, String)>,
) -> Response {
    sandbox
        .gated(|sandbox| {
            let store = sandbox.store();
            let Some(m) = store.messages.get(&authority_ref) else {
                return not_found(format!("no message {authority_ref}"));
            };
            let state = sandbox.state(m, Instant::now());
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

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

use crate::documents::xml_escape as escape;

/// Document 1. Derived only from stored facts, so every fetch is byte-identical.
fn protocol_xml(m: &Message, state: MessageState) -> String {
    let reason = if state == MessageState::Rejected {
        format!("  <Reason>{}</Reason>\n", escape(REJECT_REASON))
    } else {
        String::new()
    };
    format!(
        concat!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
            "<Protocol xmlns=\"{ns}\" authorityRef=\"{r}\" messageId=\"{id}\" state=\"{state}\" ",
            "receivedAt=\"{received}\" processedAt=\"{processed}\" sha256=\"{sha}\">\n",
            "  <Employer>{employer}</Employer>\n",
            "  <DocumentType>{doctype}</DocumentType>\n",
            "{reason}",
            "</Protocol>\n"
        ),
        ns = PROTOCOL_NS,
        r = escape(&m.authority_ref),
        id = escape(&m.message_id),
        state = state.as_str(),
        received = rfc3339(m.received_at),
        processed = rfc3339(m.processed_at),
        sha = m.sha256,
        employer = escape(&m.employer),
        doctype = escape(&m.document_type),
        reason = reason,
    )
}

/// Document 2: the same facts for people.
fn protocol_html(m: &Message, state: MessageState) -> String {
    let reason = if state == MessageState::Rejected {
        format!("<dt>Reason</dt><dd>{}</dd>\n", escape(REJECT_REASON))
    } else {
        String::new()
    };
    format!(
        concat!(
            "<!DOCTYPE html>\n",
            "<html lang=\"en\"><head><meta charset=\"utf-8\">",
            "<title>Processing protocol {r}</title></head>\n",
            "<body>\n<h1>Processing protocol {r}</h1>\n",
            "<p>Sandbox authority (test system): not a real authority's decision.</p>\n<dl>\n",
            "<dt>Authority reference</dt><dd>{r}</dd>\n",
            "<dt>Message id</dt><dd>{id}</dd>\n",
            "<dt>Employer</dt><dd>{employer}</dd>\n",
            "<dt>Document type</dt><dd>{doctype}</dd>\n",
            "<dt>State</dt><dd>{state}</dd>\n",
            "<dt>Received at</dt><dd>{received}</dd>\n",
            "<dt>Processed at</dt><dd>{processed}</dd>\n",
            "<dt>SHA-256 of the filing</dt><dd>{sha}</dd>\n",
            "{reason}",
            "</dl>\n</body></html>\n"
        ),
        r = escape(&m.authority_ref),
        id = escape(&m.message_id),
        employer = escape(&m.employer),
        doctype = escape(&m.document_type),
        state = state.as_str(),
        received = rfc3339(m.received_at),
        processed = rfc3339(m.processed_at),
        sha = m.sha256,
        reason = reason,
    )
}

async fn get_stats(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let stats = sandbox.store().stats;
    json(StatusCode::OK, &stats)
}

#[derive(Debug, Serialize)]
struct MessageListing<'a> {
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

async fn get_messages(State(sandbox): State<Arc<Sandbox>>) -> Response {
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

// ---------------------------------------------------------------------------------
// TLS

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        Error::Config(format!(
            "sandbox authority: cannot read the {what} {}: {e}",
            path.display()
        ))
    })
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read_pem(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::Config(format!(
                "sandbox authority: the {what} {} is not PEM: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "sandbox authority: the {what} {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The rustls server configuration for `tls`, with aws-lc-rs as the crypto provider.
fn server_config(tls: &SandboxTls) -> Result<rustls::ServerConfig, Error> {
    let bad = |e: rustls::Error| Error::Config(format!("sandbox authority TLS: {e}"));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = read_certs(&tls.cert_pem, "server certificate")?;
    let key_pem = read_pem(&tls.key_pem, "server key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        Error::Config(format!(
            "sandbox authority: the server key {} is not a PEM private key: {e}",
            tls.key_pem.display()
        ))
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(bad)?;
    let builder = match &tls.client_ca_pem {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca, "client CA certificate")? {
                roots.add(cert).map_err(bad)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| Error::Config(format!("sandbox authority TLS client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(bad)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The files [`write_dev_tls`] writes: (name, secret).
const DEV_TLS_FILES: [(&str, bool); 10] = [
    ("ca.pem", false),
    ("server.pem", false),
    ("server.key", true),
    ("client.pem", false),
    ("client.key", true),
    ("other-ca.pem", false),
    ("other-server.pem", false),
    ("other-server.key", true),
    ("other-client.pem", false),
    ("other-client.key", true),
];

/// Writes throwaway TLS material for the sandbox (and for ivan's forwarding client)
/// as PEM files into `dir`, creating it if missing and refusing to overwrite any
/// existing file (then nothing is written). Returns the paths written, in this order:
///
/// | file | what |
/// |---|---|
/// | `ca.pem` | a test CA (EC P-256; its key is not kept) |
/// | `server.pem`, `server.key` | server certificate for DNS `localhost`, IP `127.0.0.1` and `::1`, issued by `ca.pem` |
/// | `client.pem`, `client.key` | client certificate (extendedKeyUsage clientAuth), CN "ivan", issued by `ca.pem` |
/// | `other-ca.pem` | an unrelated CA |
/// | `other-server.pem`, `other-server.key` | a server certificate like `server.pem`, issued by `other-ca.pem` |
/// | `other-client.pem`, `other-client.key` | a client certificate like `client.pem`, issued by `other-ca.pem` |
///
/// Leaves are valid from now − 1 day to now + 2 years, CAs to now + 10 years. Keys
/// are unencrypted PKCS#8, mode 0600 on Unix. For tests and development only.
pub fn write_dev_tls(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let now = Utc::now();
    let ca_from = now - TimeDelta::days(1);
    let ca_to = now + TimeDelta::days(3652);
    let ca = dev::make_ca("ivan sandbox authority test CA", ca_from, ca_to).map_err(generation)?;
    let other_ca = dev::make_ca("Unrelated sandbox test CA", ca_from, ca_to).map_err(generation)?;
    let server = leaf(&ca, "localhost", Role::Server, now)?;
    let client = leaf(&ca, "ivan", Role::Client, now)?;
    let other_server = leaf(&other_ca, "localhost", Role::Server, now)?;
    let other_client = leaf(&other_ca, "ivan", Role::Client, now)?;
    let contents: [&str; 10] = [
        &ca.cert_pem,
        &server.cert_pem,
        &server.key_pem,
        &client.cert_pem,
        &client.key_pem,
        &other_ca.cert_pem,
        &other_server.cert_pem,
        &other_server.key_pem,
        &other_client.cert_pem,
        &other_client.key_pem,
    ];

    let paths: Vec<PathBuf> = DEV_TLS_FILES.iter().map(|(f, _)| dir.join(f)).collect();
    let files: Vec<(&Path, &str, bool)> = paths
        .iter()
        .zip(DEV_TLS_FILES)
        .zip(contents)
        .map(|((path, (_, secret)), text)| (path.as_path(), text, secret))
        .collect();
    dev::write_all_new(dir, &files).map_err(|e| match e {
        dev::DevError::Exists(_) => Error::Conflict(e.to_string()),
        dev::DevError::Io { path, source } => Error::Io {
            context: path.display().to_string(),
            source,
        },
        other => generation(other),
    })?;
    Ok(paths)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

fn generation(e: impl std::fmt::Display) -> Error {
    Error::Config(format!("cannot generate the sandbox TLS material: {e}"))
}

/// A TLS leaf certificate issued by `ca`.
fn leaf(
    ca: &Identity,
    common_name: &str,
    role: Role,
    now: DateTime<Utc>,
) -> Result<Identity, Error> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(generation)?;
    let issuer =
        Issuer::from_ca_cert_der(&ca.cert_der.as_slice().into(), ca_key).map_err(generation)?;
    let key = KeyPair::generate().map_err(generation)?;
    let names: Vec<String> = match role {
        Role::Server => vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        Role::Client => vec![],
    };
    let mut params = CertificateParams::new(names).map_err(generation)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::OrganizationName,
        "ivan sandbox authority test PKI (not for production)",
    );
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match role {
        Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    let secs = |t: DateTime<Utc>| {
        u64::try_from(t.timestamp())
            .map(Duration::from_secs)
            .map_err(|_| generation(format!("time {t} is out of range")))
    };
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + secs(now - TimeDelta::days(1))?;
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + secs(now + TimeDelta::days(730))?;
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).map_err(generation)?;
    Ok(Identity {
        cert_der: cert.der().to_vec(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    const LIMIT: Duration = Duration::from_secs(10);

    struct Running {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<Result<(), Error>>,
    }

    impl Running {
        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        async fn stop(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            tokio::time::timeout(LIMIT, self.task)
                .await
                .expect("the sandbox stops")
                .unwrap()
                .unwrap();
        }
    }

    fn start(options: SandboxOptions) -> Running {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, options, async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn options(process_after_ms: u64) -> SandboxOptions {
        SandboxOptions {
            process_after_ms,
            ..SandboxOptions::default()
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(LIMIT)
            .build()
            .unwrap()
    }

    fn digest(body: &[u8]) -> String {
        format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
    }

    fn filing(sender_reference: &str) -> Vec<u8> {
        format!(
            "<?xml version=\"1.0\"?><Filing senderReference=\"{sender_reference}\"><Body>x</Body></Filing>"
        )
        .into_bytes()
    }

    fn post(client: &reqwest::Client, url: &str, id: &str, body: &[u8]) -> reqwest::RequestBuilder {
        client
            .post(url)
            .header("X-Ivan-Message-Id", id)
            .header("X-Ivan-Employer", "EMP-1 \"Acme & Co\"")
            .header("X-Ivan-Document-Type", "payroll-report")
            .header("Content-Type", "application/xml")
            .header("Content-Digest", digest(body))
            .body(body.to_vec())
    }

    fn new_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    async fn json_of(response: reqwest::Response) -> Value {
        response.json().await.unwrap()
    }

    async fn stats(client: &reqwest::Client, s: &Running) -> Value {
        let r = client.get(s.url("/v1/_stats")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        json_of(r).await
    }

    async fn listing(client: &reqwest::Client, s: &Running) -> Vec<Value> {
        let r = client.get(s.url("/v1/_messages")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        json_of(r).await.as_array().unwrap().clone()
    }

    fn is_problem(r: &reqwest::Response) -> bool {
        r.headers()
            .get("content-type")
            .is_some_and(|v| v == "application/problem+json")
    }

    fn looks_like_ref(r: &str) -> bool {
        r.len() == 14
            && r.starts_with("A-")
            && r[2..]
                .chars()
                .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
    }

    #[tokio::test]
    async fn sandbox_stores_once_and_answers_duplicates_with_the_same_ref() {
        let s = start(SandboxOptions {
            latency_ms: 20,
            ..options(60_000)
        });
        let c = client();
        let url = s.url("/v1/messages");
        let id = new_id();
        let body = filing("R-1");

        let first = post(&c, &url, &id, &body).send().await.unwrap();
        assert_eq!(first.status(), 202);
        let location = first.headers()["location"].to_str().unwrap().to_owned();
        let first = json_of(first).await;
        assert_eq!(first["status"], "queued");
        let authority_ref = first["authority_ref"].as_str().unwrap().to_owned();
        assert!(looks_like_ref(&authority_ref), "{authority_ref}");
        assert_eq!(location, format!("/v1/messages/{authority_ref}"));

        // The id is the key, in any letter case.
        let again = post(&c, &url, &id.to_uppercase(), &body)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 409);
        let again = json_of(again).await;
        assert_eq!(again["status"], "duplicate");
        assert_eq!(again["authority_ref"], authority_ref.as_str());

        let st = stats(&c, &s).await;
        assert_eq!(st["received"], 1);
        assert_eq!(st["duplicates"], 1);
        assert_eq!(st["posts"], 2);
        assert_eq!(st["faults_injected"], 0);
        assert_eq!(st["refused"], 0);

        let list = listing(&c, &s).await;
        assert_eq!(list.len(), 1);
        let m = &list[0];
        assert_eq!(m["message_id"], id.as_str());
        assert_eq!(m["authority_ref"], authority_ref.as_str());
        assert_eq!(m["employer"], "EMP-1 \"Acme & Co\"");
        assert_eq!(m["document_type"], "payroll-report");
        assert_eq!(m["sha256"], hex::encode(Sha256::digest(&body)));
        assert_eq!(m["times_posted"], 2);
        assert!(
            DateTime::parse_from_rfc3339(m["received_at"].as_str().unwrap()).is_ok(),
            "{m}"
        );

        let state = c
            .get(s.url(&format!("/v1/messages/{authority_ref}")))
            .send()
            .await
            .unwrap();
        assert_eq!(state.status(), 200);
        let state = json_of(state).await;
        assert_eq!(state["state"], "processing");
        assert_eq!(state["message_id"], id.as_str());
        assert_eq!(state["documents"], serde_json::json!([]));

        s.stop().await;
    }

    #[tokio::test]
    async fn sandbox_refuses_bad_requests_and_the_refuse_rule_and_stores_nothing() {
        let s = start(options(60_000));
        let c = client();
        let url = s.url("/v1/messages");
        let body = filing("R-2");

        let wrong_digest = c
            .post(&url)
            .header("X-Ivan-Message-Id", new_id())
            .header("X-Ivan-Employer", "EMP-1")
            .header("X-Ivan-Document-Type", "payroll-report")
            .header("Content-Digest", digest(b"something else"))
            .body(body.clone());
        let r = wrong_digest.send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(is_problem(&r));
        let p = json_of(r).await;
        assert_eq!(p["type"], problem_type::DIGEST_MISMATCH);
        assert_eq!(p["status"], 400);
        assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");

        for missing in [
            "X-Ivan-Message-Id",
            "X-Ivan-Employer",
            "X-Ivan-Document-Type",
            "Content-Digest",
        ] {
            let mut headers = reqwest::header::HeaderMap::new();
            for (k, v) in [
                ("X-Ivan-Message-Id", new_id()),
                ("X-Ivan-Employer", "EMP-1".into()),
                ("X-Ivan-Document-Type", "payroll-report".into()),
                ("Content-Digest", digest(&body)),
            ] {
                if k != missing {
                    headers.insert(k, v.parse().unwrap());
                }
            }
            let r = c
                .post(&url)
                .headers(headers)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{missing}");
            assert!(is_problem(&r));
            let p = json_of(r).await;
            assert_eq!(p["type"], problem_type::MISSING_HEADER, "{missing}");
            assert!(p["detail"].as_str().unwrap().contains(missing), "{p}");
        }

        for (header, value) in [
            ("X-Ivan-Message-Id", "not-a-uuid"),
            ("X-Ivan-Message-Id", "0191f1c4b5a27c3e8f00aabbccddeeff"),
            ("X-Ivan-Employer", "  "),
            ("Content-Digest", "sha-512=:AAAA:"),
            ("Content-Digest", "sha-256=:AAAA:"),
            ("Content-Digest", "sha-256=abc"),
        ] {
            // (`RequestBuilder::header` appends; replace the good value instead.)
            let mut req = post(&c, &url, &new_id(), &body).build().unwrap();
            req.headers_mut().insert(header, value.parse().unwrap());
            let r = c.execute(req).await.unwrap();
            assert_eq!(r.status(), 400, "{header}: {value}");
            let p = json_of(r).await;
            assert_eq!(p["type"], problem_type::INVALID_HEADER, "{header}: {value}");
        }

        let refused = filing("REFUSE-ME");
        let r = post(&c, &url, &new_id(), &refused).send().await.unwrap();
        assert_eq!(r.status(), 422);
        assert!(is_problem(&r));
        let p = json_of(r).await;
        assert_eq!(p["type"], problem_type::REFUSED);
        assert!(p["detail"].as_str().unwrap().contains("REFUSE"), "{p}");

        assert!(listing(&c, &s).await.is_empty());
        let st = stats(&c, &s).await;
        assert_eq!(st["received"], 0);
        assert_eq!(st["duplicates"], 0);
        // 1 digest mismatch + 4 missing + 6 invalid + 1 refused by the rule
        assert_eq!(st["refused"], 1 + 4 + 6 + 1);

        // Unknown refs and routes are problem documents too.
        let r = c
            .get(s.url("/v1/messages/A-000000000000"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert!(is_problem(&r));
        let r = c.get(s.url("/v1/nothing")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert!(is_problem(&r));
        let r = c.get(s.url("/v1/messages")).send().await.unwrap();
        assert_eq!(r.status(), 405);
        assert!(is_problem(&r));
        assert!(r.headers().contains_key("allow"));

        // A digest with other algorithms beside sha-256, and unpadded base64, is fine.
        let b64 = STANDARD.encode(Sha256::digest(&body));
        let mut req = post(&c, &url, &new_id(), &body).build().unwrap();
        req.headers_mut().insert(
            "content-digest",
            format!("sha-512=:AAAA:, sha-256=:{}:", b64.trim_end_matches('='))
                .parse()
                .unwrap(),
        );
        assert_eq!(c.execute(req).await.unwrap().status(), 202);

        s.stop().await;
    }

    #[tokio::test]
    async fn sandbox_answers_413_above_64_mib() {
        let s = start(options(0));
        let c = client();
        // The size is refused before the digest is looked at.
        let r = c
            .post(s.url("/v1/messages"))
            .header("X-Ivan-Message-Id", new_id())
            .header("X-Ivan-Employer", "EMP-1")
            .header("X-Ivan-Document-Type", "payroll-report")
            .header("Content-Digest", digest(b""))
            .body(vec![b'x'; MAX_FILING_BYTES + 1])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        assert!(is_problem(&r));
        assert_eq!(json_of(r).await["type"], problem_type::BODY);
        let st = stats(&c, &s).await;
        assert_eq!(st["refused"], 1);
        assert_eq!(st["received"], 0);
        s.stop().await;
    }

    async fn fetch(c: &reqwest::Client, url: &str) -> (String, Vec<u8>) {
        let r = c.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        let digest_header = r.headers()["content-digest"].to_str().unwrap().to_owned();
        let bytes = r.bytes().await.unwrap().to_vec();
        assert_eq!(digest_header, digest(&bytes));
        (ct, bytes)
    }

    #[tokio::test]
    async fn sandbox_processes_after_the_delay_with_stable_documents() {
        let s = start(options(500));
        let c = client();
        let url = s.url("/v1/messages");
        let body = filing("R-3");
        let id = new_id();
        let r = json_of(post(&c, &url, &id, &body).send().await.unwrap()).await;
        let ok_ref = r["authority_ref"].as_str().unwrap().to_owned();
        let r = json_of(
            post(&c, &url, &new_id(), &filing("REJECT-7"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let rejected_ref = r["authority_ref"].as_str().unwrap().to_owned();

        let state_of = |r: &str| {
            let c = c.clone();
            let url = s.url(&format!("/v1/messages/{r}"));
            async move { json_of(c.get(url).send().await.unwrap()).await }
        };
        assert_eq!(state_of(&ok_ref).await["state"], "processing");
        let early = c
            .get(s.url(&format!("/v1/messages/{ok_ref}/documents/1")))
            .send()
            .await
            .unwrap();
        assert_eq!(early.status(), 404);

        // (500 ms leaves room for a loaded machine between the POST and the first GET.)
        tokio::time::sleep(Duration::from_millis(650)).await;
        let done = state_of(&ok_ref).await;
        assert_eq!(done["state"], "processed");
        assert_eq!(done["authority_ref"], ok_ref.as_str());
        assert_eq!(done["message_id"], id.as_str());
        assert_eq!(
            done["documents"],
            serde_json::json!([
                {"n": 1, "name": "protocol.xml", "media_type": "application/xml",
                 "href": format!("/v1/messages/{ok_ref}/documents/1")},
                {"n": 2, "name": "protocol.html", "media_type": "text/html; charset=utf-8",
                 "href": format!("/v1/messages/{ok_ref}/documents/2")},
            ])
        );
        let (ct, xml) = fetch(&c, &s.url(&format!("/v1/messages/{ok_ref}/documents/1"))).await;
        assert_eq!(ct, "application/xml");
        let (_, xml_again) = fetch(&c, &s.url(&format!("/v1/messages/{ok_ref}/documents/1"))).await;
        assert_eq!(xml, xml_again);
        let xml = String::from_utf8(xml).unwrap();
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Protocol xmlns=\"urn:ivan:sandbox-authority:1\""),
            "{xml}"
        );
        assert!(xml.contains(&format!("authorityRef=\"{ok_ref}\"")), "{xml}");
        assert!(xml.contains(&format!("messageId=\"{id}\"")), "{xml}");
        assert!(xml.contains("state=\"processed\""), "{xml}");
        assert!(
            xml.contains(&format!(
                "sha256=\"{}\"",
                hex::encode(Sha256::digest(&body))
            )),
            "{xml}"
        );
        assert!(xml.contains("EMP-1 &quot;Acme &amp; Co&quot;"), "{xml}");
        assert!(!xml.contains("<Reason>"), "{xml}");
        let (ct, html) = fetch(&c, &s.url(&format!("/v1/messages/{ok_ref}/documents/2"))).await;
        assert_eq!(ct, "text/html; charset=utf-8");
        let (_, html_again) =
            fetch(&c, &s.url(&format!("/v1/messages/{ok_ref}/documents/2"))).await;
        assert_eq!(html, html_again);
        let html = String::from_utf8(html).unwrap();
        assert!(
            html.contains(&ok_ref) && html.contains("processed"),
            "{html}"
        );
        assert!(
            html.contains("Acme &amp; Co") && !html.contains("Acme & Co"),
            "{html}"
        );
        let none = c
            .get(s.url(&format!("/v1/messages/{ok_ref}/documents/3")))
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 404);

        let rejected = state_of(&rejected_ref).await;
        assert_eq!(rejected["state"], "rejected");
        assert_eq!(rejected["documents"].as_array().unwrap().len(), 2);
        let (_, xml) = fetch(
            &c,
            &s.url(&format!("/v1/messages/{rejected_ref}/documents/1")),
        )
        .await;
        let xml = String::from_utf8(xml).unwrap();
        assert!(xml.contains("state=\"rejected\""), "{xml}");
        assert!(xml.contains("<Reason>"), "{xml}");
        s.stop().await;

        // process_after_ms = 0: accepted and processed at once.
        let s = start(options(0));
        let r = post(&c, &s.url("/v1/messages"), &new_id(), &body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = json_of(r).await;
        assert_eq!(r["status"], "accepted");
        let authority_ref = r["authority_ref"].as_str().unwrap();
        let state = json_of(
            c.get(s.url(&format!("/v1/messages/{authority_ref}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(state["state"], "processed");
        s.stop().await;
    }

    #[tokio::test]
    async fn sandbox_injects_faults_and_can_be_down() {
        let s = start(SandboxOptions {
            fault_rate: 1.0,
            ..options(0)
        });
        let c = client();
        let url = s.url("/v1/messages");
        let id = new_id();
        let body = filing("R-4");
        const TRIES: u64 = 30;
        for _ in 0..TRIES {
            let r = post(&c, &url, &id, &body).send().await.unwrap();
            assert_eq!(r.status(), 503);
            assert!(is_problem(&r));
            assert_eq!(json_of(r).await["type"], problem_type::FAULT);
        }
        // Half the faults come after storing: with 30 tries, the message was stored
        // (the chance it was not is 2^-30) though no answer said so.
        let st = stats(&c, &s).await;
        assert_eq!(st["posts"], TRIES);
        assert_eq!(st["faults_injected"], TRIES);
        assert_eq!(st["received"], 1);
        assert_eq!(st["duplicates"], 0);
        let list = listing(&c, &s).await;
        assert_eq!(list.len(), 1);
        let times = list[0]["times_posted"].as_u64().unwrap();
        assert!((1..TRIES).contains(&times), "{times}");
        let authority_ref = list[0]["authority_ref"].as_str().unwrap();
        let r = c
            .get(s.url(&format!("/v1/messages/{authority_ref}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        s.stop().await;

        let started = Instant::now();
        let s = start(SandboxOptions {
            down_for_secs: 1,
            ..options(0)
        });
        let url = s.url("/v1/messages");
        let r = post(&c, &url, &id, &body).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(json_of(r).await["type"], problem_type::DOWN);
        let r = c
            .get(s.url("/v1/messages/A-000000000000"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        // Introspection is never down.
        let st = stats(&c, &s).await;
        assert_eq!(st["received"], 0);
        assert_eq!(st["posts"], 1);
        assert_eq!(st["posts_while_down"], 1);
        assert_eq!(st["faults_injected"], 0);
        tokio::time::sleep(Duration::from_millis(1100).saturating_sub(started.elapsed())).await;
        let r = post(&c, &url, &id, &body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(stats(&c, &s).await["posts_while_down"], 1);
        s.stop().await;
    }

    #[tokio::test]
    async fn sandbox_rejects_invalid_options() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = run(
            listener,
            SandboxOptions {
                fault_rate: 1.5,
                ..SandboxOptions::default()
            },
            async {},
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = run(
            listener,
            SandboxOptions {
                tls: Some(SandboxTls {
                    cert_pem: "/nonexistent/server.pem".into(),
                    key_pem: "/nonexistent/server.key".into(),
                    client_ca_pem: None,
                }),
                ..SandboxOptions::default()
            },
            async {},
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/server.pem"), "{e}");
    }

    fn read(dir: &Path, file: &str) -> Vec<u8> {
        std::fs::read(dir.join(file)).unwrap()
    }

    fn identity(dir: &Path, name: &str) -> reqwest::Identity {
        let mut pem = read(dir, &format!("{name}.pem"));
        pem.extend(read(dir, &format!("{name}.key")));
        reqwest::Identity::from_pem(&pem).unwrap()
    }

    fn tls_client(dir: &Path, trust: &str, id: Option<&str>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&read(dir, trust)).unwrap();
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .timeout(LIMIT)
            .tls_certs_only([ca]);
        if let Some(name) = id {
            b = b.identity(identity(dir, name));
        }
        b.build().unwrap()
    }

    #[tokio::test]
    async fn sandbox_serves_mutual_tls_with_the_dev_material() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        let written = write_dev_tls(&dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "ca.pem",
                "server.pem",
                "server.key",
                "client.pem",
                "client.key",
                "other-ca.pem",
                "other-server.pem",
                "other-server.key",
                "other-client.pem",
                "other-client.key"
            ]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in &written {
                let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
                let secret = p.extension().is_some_and(|e| e == "key");
                assert_eq!(mode, if secret { 0o600 } else { 0o644 }, "{}", p.display());
            }
        }
        // Never overwrites.
        let before = read(&dir, "server.pem");
        let e = write_dev_tls(&dir).unwrap_err();
        assert!(e.to_string().starts_with("refusing to overwrite"), "{e}");
        assert_eq!(read(&dir, "server.pem"), before);

        let s = start(SandboxOptions {
            tls: Some(SandboxTls {
                cert_pem: dir.join("server.pem"),
                key_pem: dir.join("server.key"),
                client_ca_pem: Some(dir.join("ca.pem")),
            }),
            ..options(0)
        });
        let port = s.addr.port();
        let by_ip = format!("https://127.0.0.1:{port}/v1/_stats");
        let by_name = format!("https://localhost:{port}/v1/_stats");

        // The right CA and a client certificate: fine, by IP and by name.
        let good = tls_client(&dir, "ca.pem", Some("client"));
        assert_eq!(good.get(&by_ip).send().await.unwrap().status(), 200);
        let named = reqwest::Client::builder()
            .no_proxy()
            .timeout(LIMIT)
            .resolve("localhost", s.addr)
            .tls_certs_only([reqwest::Certificate::from_pem(&read(&dir, "ca.pem")).unwrap()])
            .identity(identity(&dir, "client"))
            .build()
            .unwrap();
        assert_eq!(named.get(&by_name).send().await.unwrap().status(), 200);
        // A filing goes through over mutual TLS.
        let body = filing("R-5");
        let r = post(
            &good,
            &format!("https://127.0.0.1:{port}/v1/messages"),
            &new_id(),
            &body,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);

        // No client certificate, or one from another CA: the handshake fails.
        let anonymous = tls_client(&dir, "ca.pem", None);
        assert!(anonymous.get(&by_ip).send().await.is_err());
        let stranger = tls_client(&dir, "ca.pem", Some("other-client"));
        assert!(stranger.get(&by_ip).send().await.is_err());
        // A client that trusts only the other CA refuses server.pem.
        let wrong_trust = tls_client(&dir, "other-ca.pem", Some("client"));
        assert!(wrong_trust.get(&by_ip).send().await.is_err());
        // Plain HTTP to the TLS port does not work.
        assert!(client().get(s.url("/v1/_stats")).send().await.is_err());
        s.stop().await;

        // A server certificate from the other CA is refused by a client trusting ca.pem;
        // without client_ca_pem, no client certificate is needed.
        let s = start(SandboxOptions {
            tls: Some(SandboxTls {
                cert_pem: dir.join("other-server.pem"),
                key_pem: dir.join("other-server.key"),
                client_ca_pem: None,
            }),
            ..options(0)
        });
        let url = format!("https://127.0.0.1:{}/v1/_stats", s.addr.port());
        assert!(good.get(&url).send().await.is_err());
        let other_trust = tls_client(&dir, "other-ca.pem", None);
        assert_eq!(other_trust.get(&url).send().await.unwrap().status(), 200);
        s.stop().await;
    }
}
