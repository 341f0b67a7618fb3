//! The HTTP application: routes, middleware (request ids, tracing, metrics, body
//! limit, timeout) and the operational endpoints.
//!
//! | path | what |
//! |---|---|
//! | `GET /healthz` | the process is up |
//! | `GET /readyz` | database and originals store answer, the data dir takes a write, each within 0.8 s (503 naming what does not) |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /.well-known/jwks.json` | public key(s) that verify receipts (ES256) |
//! | `GET /.well-known/ivan/checkpoint-keys.json` | public key(s) that verify log checkpoints (Ed25519) |
//! | `GET /api/v1/log/checkpoint` | the latest signed checkpoint of the transaction log |
//! | `GET /log/checkpoint` | the same as a C2SP signed note (text) |
//! | `GET /log/tile/…` | the Merkle tree's tiles and entry bundles (C2SP tlog-tiles) |
//! | `GET /api/v1/log/proof/inclusion?leaf_index=&tree_size=` | RFC 9162 inclusion proof of one entry in the log's Merkle tree |
//! | `GET /api/v1/log/proof/consistency?first=&second=` | RFC 9162 consistency proof between two tree sizes |
//!
//! The employer API is in [`crate::api`], the portal's pages in [`crate::portal`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::api::AppState;
use crate::connections::HttpConfig;
use crate::error::ProblemDocument;
use crate::intake::IntakeConfig;
use crate::{Error, Result};

/// The whole application router.
pub fn router(
    state: AppState,
    portal: crate::portal::Portal,
    http: &HttpConfig,
    intake: &IntakeConfig,
) -> Router {
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    let portal_state = crate::portal::PortalState {
        app: state.clone(),
        portal,
    };
    // The submission endpoint takes documents up to the intake limit, the JSON API
    // small bodies, everything else the general limit. Each refuses an oversized body
    // (by its Content-Length, or as it streams in) before reading it whole.
    let limit = |bytes: usize| {
        ServiceBuilder::new()
            .layer(DefaultBodyLimit::max(bytes))
            .layer(RequestBodyLimitLayer::new(bytes))
    };
    let api = crate::api::routes()
        .layer(limit(http.json_body_limit_bytes))
        .merge(crate::api::document_routes().layer(limit(intake.max_document_bytes)));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(receipt_jwks))
        .route("/.well-known/ivan/checkpoint-keys.json", get(checkpoint_jwks))
        .route("/api/v1/log/checkpoint", get(latest_checkpoint))
        .route("/api/v1/log/proof/inclusion", get(inclusion_proof))
        .route("/api/v1/log/proof/consistency", get(consistency_proof))
        .route("/log/checkpoint", get(c2sp_checkpoint))
        .route("/log/tile/{*path}", get(log_tile))
        .route_layer(limit(http.body_limit_bytes))
        .merge(api)
        .merge(mobile_api::http::router::<Error, AppState>(state.mobile.clone()))
        .with_state(state.clone())
        .merge(crate::portal::router(&portal_state.portal, intake).with_state(portal_state.clone()))
        .fallback(not_found)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(
                    Arc::new(trusted_proxies(&http.trusted_proxies)),
                    client_ip,
                ))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request| {
                        let id = req
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        // The path only: a query can hold a secret (the portal's enrolment link).
                        tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
                    }),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(middleware::from_fn(track_metrics))
                .layer(middleware::from_fn(crate::error::problem_documents))
                .layer(middleware::from_fn_with_state(
                    portal_state,
                    crate::portal::error::error_pages,
                ))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    Duration::from_secs(http.request_timeout_secs),
                )),
        )
}

/// `http.trusted_proxies` as networks (checked at config load; a bad entry is skipped).
pub(crate) fn trusted_proxies(entries: &[String]) -> Vec<ipnet::IpNet> {
    crate::employers::parse_allowed_ips(entries)
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.parse().ok())
        .collect()
}

/// Puts the client's address into the request (`mobile_api::http::ClientIp`): the TCP
/// peer, or — when the peer is a trusted proxy — the nearest untrusted address of
/// `X-Forwarded-For`, read from the right (a client can prepend anything; only what the
/// trusted proxies appended counts).
async fn client_ip(
    State(trusted): State<Arc<Vec<ipnet::IpNet>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(peer) = peer {
        let ip = forwarded_client(peer, req.headers(), &trusted);
        req.extensions_mut().insert(mobile_api::http::ClientIp(ip));
    }
    next.run(req).await
}

fn forwarded_client(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| {
        let ip = ip.to_canonical();
        trusted.iter().any(|n| n.contains(&ip))
    };
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        if !is_trusted(&client) {
            break;
        }
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) => client = ip,
            // A hop a trusted proxy would not write: stop at the last sure address.
            Err(_) => break,
        }
    }
    client
}

/// Counts and times every request, and writes its one log line at info level:
/// method, route pattern, status, latency and request id (the span's fields).
async fn track_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = crate::telemetry::Gauged::new(metrics::gauge!("ivan_http_requests_in_flight"));
    let method = req.method().to_string();
    // The route pattern, not the raw path, keeps label cardinality bounded (and a
    // query, which can hold a secret, out of the log).
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    tracing::info!(
        target: "ivan::request",
        method = %method,
        route = %path,
        status,
        // Milliseconds to the microsecond.
        latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
        "request"
    );
    let labels = [
        ("method", method),
        ("path", path),
        ("status", status.to_string()),
    ];
    metrics::counter!("ivan_http_requests_total", &labels).increment(1);
    metrics::histogram!("ivan_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    resp
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when, each within [`READY_WITHIN`], the database answers, the originals store
/// answers, and a probe file can be written and synced in the data dir (a full disk
/// is not ready). Checked afresh on every call, so readiness comes back by itself.
async fn readyz(State(state): State<AppState>) -> Response {
    let (db, store, disk) = tokio::join!(
        ready_within("database", async { Ok(state.db.ping().await?) }),
        ready_within("originals", async { Ok(state.originals.ping().await?) }),
        ready_within("data dir", probe_write(state.data_dir.clone())),
    );
    let ready = [&db, &store, &disk].iter().all(|v| *v == "ok");
    let body = serde_json::json!({ "database": db, "originals": store, "data_dir": disk });
    if ready {
        Json(body).into_response()
    } else {
        let mut resp =
            ProblemDocument::new(StatusCode::SERVICE_UNAVAILABLE, Some(body.to_string()))
                .into_response();
        crate::error::retry_later(&mut resp);
        resp
    }
}

/// One readiness check's verdict: `ok`, `unavailable`, `failed`, or no answer within
/// [`READY_WITHIN`].
async fn ready_within(what: &str, check: impl std::future::Future<Output = Result<()>>) -> String {
    match tokio::time::timeout(READY_WITHIN, check).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, check = what, "not ready");
            match e.status() {
                StatusCode::SERVICE_UNAVAILABLE => "unavailable".to_owned(),
                _ => "failed".to_owned(),
            }
        }
        Err(_) => format!("no answer within {} ms", READY_WITHIN.as_millis()),
    }
}

/// How long each readiness check may take: the whole of `/readyz` answers in about
/// this time, whatever hangs.
const READY_WITHIN: Duration = Duration::from_millis(800);

/// Writes, syncs and removes a small file in the data dir.
async fn probe_write(dir: std::path::PathBuf) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let path = dir.join(".ready-probe");
        let io = |source| Error::Io {
            context: format!("readiness probe {}", path.display()),
            source,
        };
        let mut f = std::fs::File::create(&path).map_err(io)?;
        let written = f.write_all(&[0u8; 4096]).and_then(|()| f.sync_all());
        let _ = std::fs::remove_file(&path);
        written.map_err(io)
    })
    .await
    .map_err(|e| Error::Internal(format!("readiness probe: {e}")))?
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::telemetry::refresh_at_scrape(&state.data_dir, &state.db).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn receipt_jwks(State(state): State<AppState>) -> impl IntoResponse {
    jwks_response(state.keys.receipt_jwks())
}

async fn checkpoint_jwks(State(state): State<AppState>) -> impl IntoResponse {
    jwks_response(state.keys.checkpoint_jwks())
}

fn jwks_response(jwks: serde_json::Value) -> impl IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "application/jwk-set+json"),
            (axum::http::header::CACHE_CONTROL, "public, max-age=300"),
        ],
        jwks.to_string(),
    )
}

async fn latest_checkpoint(State(state): State<AppState>) -> Result<Response> {
    let cp = retention::ledger::latest_checkpoint(&state.db)
        .await?
        .ok_or_else(|| Error::NotFound("no checkpoint has been signed yet".into()))?;
    let note = cp.note();
    let mut body = serde_json::json!({
        "tree_size": cp.tree_size,
        "head_hash": cp.head_hash,
        "signed_at": retention::ledger::format_time(&cp.signed_at),
        "key_id": cp.key_id,
        "signature": cp.signature,
        "note": note,
    });
    // The C2SP tree head, where the checkpoint has one (those signed before the
    // Merkle tree existed do not).
    if let Some(head) = cp.tree_head(&state.keys.checkpoint_verifier()) {
        let head =
            head.map_err(|e| Error::Internal(format!("checkpoint {}: {e}", cp.tree_size)))?;
        body["origin"] = head.origin().into();
        body["root_hash"] = b64(head.hash()).into();
        body["signed_note"] = cp.signed_note.clone().into();
        body["cosignatures"] = retention::ledger::witness::cosignatures(&state.db, cp.tree_size)
            .await?
            .into();
    }
    Ok(Json(body).into_response())
}

/// The newest checkpoint as a C2SP signed note (`<prefix>/checkpoint` of C2SP
/// tlog-tiles, the prefix being `/log`), with the witnesses' cosignatures on it. It
/// changes with every checkpoint and cosignature, so caches keep it a few seconds at
/// most.
async fn c2sp_checkpoint(State(state): State<AppState>) -> Result<Response> {
    // With the witnesses' cosignatures it has so far.
    let cp = retention::ledger::latest_checkpoint(&state.db).await?;
    let note = match &cp {
        Some(cp) => retention::ledger::witness::cosigned_note(&state.db, cp).await?,
        None => None,
    }
    .ok_or_else(|| {
        Error::NotFound("no checkpoint of the Merkle tree has been signed yet".into())
    })?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "public, max-age=5"),
        ],
        note,
    )
        .into_response())
}

/// A tile or entry bundle of the Merkle tree (C2SP tlog-tiles, under `/log`). A tile
/// never changes once the tree holds it, so caches may keep it for good.
async fn log_tile(
    State(state): State<AppState>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Result<Response> {
    let tile = retention::ledger::tree::TileRef::parse(&path).ok_or_else(|| {
        Error::NotFound(format!(
            "tile/{path} is not a tile path (tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>], C2SP tlog-tiles)"
        ))
    })?;
    let data = retention::ledger::tree::tile(&state.db, tile)
        .await?
        .ok_or_else(|| Error::NotFound(format!("the log's tree does not hold tile/{path} yet")))?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/octet-stream"),
            (
                axum::http::header::CACHE_CONTROL,
                "public, max-age=31536000, immutable",
            ),
        ],
        data,
    )
        .into_response())
}

/// A hash in standard base64, as C2SP checkpoints write them.
fn b64(h: &retention::ledger::tree::Hash) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(h.0)
}

#[derive(Debug, serde::Deserialize)]
struct InclusionQuery {
    leaf_index: u64,
    /// Omitted: the newest checkpoint's tree size, and the answer carries that
    /// checkpoint's signed note.
    tree_size: Option<u64>,
}

#[derive(Debug, serde::Deserialize)]
struct ConsistencyQuery {
    first: u64,
    second: u64,
}

type QueryResult<T> =
    std::result::Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>;

fn query<T>(q: QueryResult<T>) -> Result<T> {
    q.map(|axum::extract::Query(q)| q)
        .map_err(|e| crate::error::bad_query(&e))
}

/// A proof as JSON: hashes in standard base64, as C2SP checkpoints write them. The
/// leaves are entry hashes: nothing personal. A proof for given sizes never changes,
/// so caches may keep it.
fn proof_response(
    mut fields: serde_json::Value,
    proven: retention::ledger::tree::Proven,
) -> Response {
    fields["root_hash"] = b64(&proven.root).into();
    fields["proof"] = proven.proof.iter().map(b64).collect::<Vec<_>>().into();
    (
        [(axum::http::header::CACHE_CONTROL, "public, max-age=86400")],
        Json(fields),
    )
        .into_response()
}

async fn inclusion_proof(
    State(state): State<AppState>,
    q: QueryResult<InclusionQuery>,
) -> Result<Response> {
    let q = query(q)?;
    if let Some(tree_size) = q.tree_size {
        let proven = retention::ledger::tree::inclusion(&state.db, q.leaf_index, tree_size).await?;
        return Ok(proof_response(
            serde_json::json!({ "leaf_index": q.leaf_index, "tree_size": tree_size }),
            proven,
        ));
    }
    // Under the newest checkpoint, with it: all an offline check needs besides the
    // published key.
    let cp = retention::ledger::latest_checkpoint(&state.db)
        .await?
        .filter(|cp| cp.signed_note.is_some() && u64::try_from(cp.tree_size).is_ok_and(|s| s > q.leaf_index))
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no signed checkpoint covers leaf {} yet: ask again after the next one (they are signed every [ledger] checkpoint_interval_secs while entries are pending)",
                q.leaf_index
            ))
        })?;
    let tree_size = u64::try_from(cp.tree_size).unwrap_or_default();
    let proven = retention::ledger::tree::inclusion(&state.db, q.leaf_index, tree_size).await?;
    let mut response = proof_response(
        serde_json::json!({
            "leaf_index": q.leaf_index,
            "tree_size": tree_size,
            "checkpoint": cp.signed_note,
        }),
        proven,
    );
    // The newest checkpoint moves on: not for long-lived caches.
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("public, max-age=5"),
    );
    Ok(response)
}

async fn consistency_proof(
    State(state): State<AppState>,
    q: QueryResult<ConsistencyQuery>,
) -> Result<Response> {
    let q = query(q)?;
    let proven = retention::ledger::tree::consistency(&state.db, q.first, q.second).await?;
    Ok(proof_response(
        serde_json::json!({ "first": q.first, "second": q.second }),
        proven,
    ))
}

/// An unknown address: the portal's page under `/portal/`, a problem document
/// elsewhere.
async fn not_found(uri: axum::http::Uri) -> Response {
    if crate::portal::error::is_portal_path(uri.path()) {
        return crate::portal::error::not_found();
    }
    ProblemDocument::new(StatusCode::NOT_FOUND, Some("no such resource".into())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted = trusted_proxies(&["10.0.0.0/8".into()]);
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let with = |xff: &[&str]| {
            let mut h = axum::http::HeaderMap::new();
            for v in xff {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            h
        };
        // No proxy trusted: the peer, whatever the header says.
        assert_eq!(
            forwarded_client(ip("10.0.0.1"), &with(&["198.51.100.7"]), &[]),
            ip("10.0.0.1")
        );
        // From a trusted proxy: the nearest untrusted hop, read from the right.
        assert_eq!(
            forwarded_client(ip("10.0.0.1"), &with(&["1.2.3.4, 198.51.100.7"]), &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            forwarded_client(
                ip("10.0.0.1"),
                &with(&["198.51.100.7", "10.0.0.2"]),
                &trusted
            ),
            ip("198.51.100.7")
        );
        // From an untrusted peer: the peer (a client cannot claim another address).
        assert_eq!(
            forwarded_client(ip("203.0.113.9"), &with(&["10.0.0.5"]), &trusted),
            ip("203.0.113.9")
        );
        // Garbage after a trusted hop: the last sure address.
        assert_eq!(
            forwarded_client(ip("10.0.0.1"), &with(&["nonsense"]), &trusted),
            ip("10.0.0.1")
        );
        // IPv4-mapped IPv6 peers match IPv4 blocks.
        assert_eq!(
            forwarded_client(ip("::ffff:10.0.0.1"), &with(&["198.51.100.7"]), &trusted),
            ip("198.51.100.7")
        );
    }
}
