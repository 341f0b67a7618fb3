//! The sandbox authority's state: the stored messages, their states and the counters, and the fault and down-period decisions.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::routes::problem;
use super::{SandboxOptions, problem_type};

#[derive(Debug)]
pub(super) struct Sandbox {
    pub(super) fault_rate: f64,
    pub(super) latency_ms: u64,
    pub(super) down_until: Instant,
    /// Set by `POST /v1/_outage/end`: the down period is over, whatever is left of it.
    pub(super) outage_ended: std::sync::atomic::AtomicBool,
    pub(super) process_after: Duration,
    /// Answer `415` to gzip packages.
    pub(super) refuse_gzip: bool,
    /// Taken by the first POST, which then stalls this long.
    pub(super) stall_first_post: Mutex<Option<Duration>>,
    pub(super) store: Mutex<Store>,
}

#[derive(Debug, Default)]
pub(super) struct Store {
    /// message id → authority ref
    pub(super) by_id: HashMap<String, String>,
    /// authority ref → message
    pub(super) messages: HashMap<String, Message>,
    /// authority refs in order of receipt
    pub(super) order: Vec<String>,
    pub(super) stats: Stats,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(super) struct Stats {
    /// Distinct messages stored.
    pub(super) received: u64,
    /// `409` answers given.
    pub(super) duplicates: u64,
    /// `POST /v1/messages` requests seen.
    pub(super) posts: u64,
    /// `503` answers given by fault injection (not those of the down period).
    pub(super) faults_injected: u64,
    /// `POST /v1/messages` requests answered `503` because of the down period: how
    /// hard a client tried while the authority was down.
    pub(super) posts_while_down: u64,
    /// `400`/`413`/`422` answers given to `POST /v1/messages`.
    pub(super) refused: u64,
    /// `POST /v1/packages` requests seen.
    pub(super) packages: u64,
    /// Request body bytes received by both POSTs, as sent (compressed packages
    /// compressed): the bytes on the wire, less HTTP's own.
    pub(super) bytes_received: u64,
}

#[derive(Debug)]
pub(super) struct Message {
    pub(super) message_id: String,
    pub(super) authority_ref: String,
    pub(super) employer: String,
    pub(super) document_type: String,
    /// Lowercase hex SHA-256 of `bytes`.
    pub(super) sha256: String,
    pub(super) bytes: Bytes,
    pub(super) received_at: DateTime<Utc>,
    pub(super) received: Instant,
    /// `received_at` + `process_after`: fixed at receipt, so documents never change.
    pub(super) processed_at: DateTime<Utc>,
    pub(super) times_posted: u64,
    pub(super) reject: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum MessageState {
    Processing,
    Processed,
    Rejected,
}

impl MessageState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            MessageState::Processing => "processing",
            MessageState::Processed => "processed",
            MessageState::Rejected => "rejected",
        }
    }
}

/// The business rules tests use to provoke outcomes.
pub(super) const REFUSE_MARK: &[u8] = b"senderReference=\"REFUSE";
pub(super) const REJECT_MARK: &[u8] = b"senderReference=\"REJECT";
pub(super) const REJECT_REASON: &str = "senderReference starts with \"REJECT\": the sandbox authority rejects such filings (test rule)";

impl Sandbox {
    pub(super) fn new(options: &SandboxOptions) -> Self {
        let now = Instant::now();
        Self {
            fault_rate: options.fault_rate,
            latency_ms: options.latency_ms,
            // An absurd down period is "down for a century".
            down_until: now
                .checked_add(Duration::from_secs(options.down_for_secs))
                .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
                .unwrap_or(now),
            outage_ended: std::sync::atomic::AtomicBool::new(false),
            process_after: Duration::from_millis(options.process_after_ms),
            refuse_gzip: options.refuse_gzip,
            stall_first_post: Mutex::new(
                (options.stall_first_post_ms > 0)
                    .then(|| Duration::from_millis(options.stall_first_post_ms)),
            ),
            store: Mutex::new(Store::default()),
        }
    }

    pub(super) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.store().stats);
    }

    /// A random delay of 0..=latency_ms.
    pub(super) fn latency(&self) -> Duration {
        if self.latency_ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::random_range(0..=self.latency_ms))
        }
    }

    /// `503` while in the down period.
    pub(super) fn down(&self) -> Option<Response> {
        let left = self.down_until.saturating_duration_since(Instant::now());
        if left.is_zero() || self.outage_ended.load(std::sync::atomic::Ordering::Relaxed) {
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

    pub(super) fn roll_fault(&self) -> bool {
        self.fault_rate > 0.0 && rand::random::<f64>() < self.fault_rate
    }

    pub(super) fn fault(&self) -> Response {
        self.count(|s| s.faults_injected += 1);
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            problem_type::FAULT,
            "injected fault: the sandbox authority is temporarily unavailable".into(),
        )
    }

    pub(super) fn state(&self, m: &Message, now: Instant) -> MessageState {
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
    pub(super) async fn gated(&self, answer: impl FnOnce(&Self) -> Response) -> Response {
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

    /// [`Sandbox::gated`] for a GET about message `authority_ref`: `answer` is given
    /// the message and its state now; an unknown one is a 404.
    pub(super) async fn gated_message(
        &self,
        authority_ref: &str,
        answer: impl FnOnce(&Message, MessageState) -> Response,
    ) -> Response {
        self.gated(|sandbox| {
            let store = sandbox.store();
            let Some(m) = store.messages.get(authority_ref) else {
                return super::routes::not_found(format!("no message {authority_ref}"));
            };
            answer(m, sandbox.state(m, Instant::now()))
        })
        .await
    }
}
