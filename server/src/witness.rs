//! `ivan witness`: a C2SP tlog-witness for `ivan` logs (or any C2SP log with an
//! Ed25519 key), run by the authority or an auditor: `POST /add-checkpoint` cosigns a
//! checkpoint only when it extends the one it cosigned last (docs/LOG.md,
//! "Witnesses"). The decision is `retention::ledger::witness::Witness`'s; this is
//! its HTTP face.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use retention::ledger::witness::{Refusal, Witness};
use tower_http::timeout::TimeoutLayer;

/// Largest accepted request: 63 proof lines and a checkpoint with its signatures
/// fit many times over.
const MAX_BODY: usize = 64 * 1024;

/// A whole request, body included, must arrive within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The witness's routes.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(witness)
}

/// Serves `witness` on `listener` until `shutdown`, behind the same connection
/// limits as `ivan serve` (header timeout, connection caps; their defaults).
pub async fn run(
    listener: tokio::net::TcpListener,
    witness: Arc<Witness>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = crate::connections::Limits::from_config(
        &crate::connections::HttpConfig::default(),
        Vec::new(),
    );
    crate::connections::serve(listener, router(witness), limits, shutdown).await;
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
    match witness.add_checkpoint(&body, now).await {
        Ok(lines) => {
            metrics::counter!("ivan_witness_cosigned_total").increment(1);
            text(StatusCode::OK, "text/plain; charset=utf-8", lines)
        }
        Err(refusal) => {
            let status =
                StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            metrics::counter!("ivan_witness_refused_total", "status" => status.as_str().to_owned())
                .increment(1);
            tracing::warn!(status = status.as_u16(), reason = %refusal, "checkpoint refused");
            let kind = match refusal {
                Refusal::OldSize { .. } => "text/x.tlog.size",
                _ => "text/plain; charset=utf-8",
            };
            let mut response = text(status, kind, refusal.to_string());
            if let Refusal::Unavailable(_) = refusal {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            response
        }
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}
