//! The durable SMS outbox and its worker.
//!
//! A message is a row of `sms_outbox`, written in the transaction of the event that
//! calls for it (`phone-access.pin-send`, a pre-registration reminder). The
//! [`SmsWorker`] claims due rows with a lease ([`retention::queue`]), sends them
//! through the configured [`SmsSender`] and records the outcome as a log entry:
//! `sms.send` (payload: recipient, transport and its message id, and the text with any
//! PIN masked), `sms.fail` (a permanent refusal), `sms.drop` (no longer needed, e.g.
//! the PIN was used or replaced meanwhile). Transient failures are retried with capped,
//! jittered backoff and never dropped. Delivery receipts, when the transport gets them
//! (SMPP with `registered_delivery = true`), become `sms.delivery` entries and set the
//! row's `delivery_status`.
//!
//! A PIN message keeps no text in the row: the worker composes it from the sealed PIN
//! at the moment it sends, so the PIN exists in clear only in memory.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use retention::ledger::{NewEntry, Work};
use retention::queue::{self, Queue};
use retention::{Actor, Clock, Db, DbConn, Ledger, Payload, on_conn, on_pool};
use sms_adapter::{Sms, SmsSender};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::pin::Pins;
use crate::{Error, MobileConfig};

const QUEUE: Queue = Queue {
    table: "sms_outbox",
    done_column: "done_at",
    columns: "id, kind, phone_access_id, recipient, body, attempts",
    batch: 16,
};

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The phone access's current PIN (composed when sent).
    Pin,
    /// A pre-registration's deadline reminder.
    Reminder,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pin => "pin",
            Kind::Reminder => "reminder",
        }
    }
}

/// Queues a message inside the caller's transaction.
pub async fn enqueue(
    conn: &mut DbConn<'_>,
    kind: Kind,
    access_id: &str,
    recipient: &str,
    body: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), retention::Error> {
    on_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO sms_outbox (id, kind, phone_access_id, recipient, body, created_at, due_at, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, 0)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(kind.as_str())
        .bind(access_id)
        .bind(recipient)
        .bind(body)
        .bind(now)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// The text of a PIN message.
pub fn pin_text(pin: &str) -> String {
    format!(
        "ivan: your PIN is {pin}. Sign in to the mobile app with this phone number and PIN. Do not share it."
    )
}

#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    id: String,
    kind: String,
    phone_access_id: String,
    recipient: String,
    body: Option<String>,
    attempts: i64,
}

/// The SMS worker of one `ivan serve`.
#[derive(Debug, Clone)]
pub struct SmsWorker {
    db: Db,
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    pins: Arc<Pins>,
    sender: Arc<dyn SmsSender>,
    config: MobileConfig,
    owner: Arc<str>,
}

/// The running SMS worker.
#[derive(Debug)]
pub struct SmsTask {
    handle: JoinHandle<()>,
    receipts: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl SmsTask {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for h in std::iter::once(self.handle).chain(self.receipts) {
            if let Err(e) = h.await {
                tracing::error!(error = %e, "SMS worker failed");
            }
        }
    }
}

/// How a claimed message ends this round.
enum Attempt {
    Sent {
        text: String,
        transport: String,
        transport_id: String,
    },
    Failed(String),
    Dropped(String),
    Retry(String),
}

impl SmsWorker {
    pub fn new(
        db: Db,
        ledger: Ledger,
        clock: Arc<dyn Clock>,
        pins: Arc<Pins>,
        sender: Arc<dyn SmsSender>,
        config: &MobileConfig,
    ) -> Self {
        let owner = format!("{}:{}", std::process::id(), uuid::Uuid::now_v7());
        Self {
            db,
            ledger,
            clock,
            pins,
            sender,
            config: config.clone(),
            owner: owner.into(),
        }
    }

    pub fn start(self) -> SmsTask {
        let (stop, stopped) = watch::channel(false);
        let receipts = self
            .sender
            .receipts()
            .map(|rx| tokio::spawn(self.clone().record_receipts(rx, stopped.clone())));
        let handle = tokio::spawn(self.run(stopped));
        SmsTask {
            handle,
            receipts,
            stop,
        }
    }

    /// Records each delivery receipt the transport hands over (SMPP with
    /// `registered_delivery`) as an `sms.delivery` log entry on its message.
    async fn record_receipts(
        self,
        mut rx: tokio::sync::broadcast::Receiver<sms_adapter::DeliveryReceipt>,
        mut stopped: watch::Receiver<bool>,
    ) {
        loop {
            let receipt = tokio::select! {
                r = rx.recv() => r,
                r = stopped.changed() => if r.is_err() || *stopped.borrow() { break } else { continue },
            };
            match receipt {
                Ok(r) => {
                    if let Err(e) = self.record_receipt(&r).await {
                        tracing::error!(error = %e, transport_id = %r.message_id, "delivery receipt not recorded");
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "delivery receipts arrived faster than they were recorded; some were missed"
                    );
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    }

    async fn record_receipt(&self, r: &sms_adapter::DeliveryReceipt) -> Result<(), Error> {
        // The receipt can overtake the transaction that records the send: look again
        // briefly before recording it under the transport's id alone.
        let mut id: Option<String> = None;
        for _ in 0..10 {
            id = on_pool!(&self.db, pool => {
                sqlx::query_scalar("SELECT id FROM sms_outbox WHERE transport_id = $1")
                    .bind(&r.message_id)
                    .fetch_optional(pool)
                    .await?
            });
            if id.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let subject = id.as_ref().map_or_else(
            || format!("sms-transport:{}", r.message_id),
            |i| format!("sms:{i}"),
        );
        let (tid, stat) = (r.message_id.clone(), r.stat.clone());
        let work: Work = retention::work!(|conn, at| {
            let at = at.recorded_at();
            on_conn!(&mut conn, c => {
                sqlx::query("UPDATE sms_outbox SET delivery_status = $1, delivered_at = $2 WHERE transport_id = $3")
                    .bind(&stat)
                    .bind(at)
                    .bind(&tid)
                    .execute(&mut *c)
                    .await?;
            });
            Ok(())
        });
        let payload = serde_json::json!({
            "transport_id": r.message_id, "stat": r.stat, "err": r.err, "handset": r.handset, "raw": r.raw,
        });
        self.ledger
            .append_with(
                NewEntry {
                    actor: Actor::System,
                    action: "sms.delivery".into(),
                    subject,
                    payload: Some(Payload::json(&payload)),
                },
                work,
            )
            .await?;
        metrics::counter!("ivan_sms_delivery_receipts_total", "stat" => r.stat.clone())
            .increment(1);
        Ok(())
    }

    async fn run(self, stopped: watch::Receiver<bool>) {
        tracing::info!(transport = self.sender.name(), "SMS transport");
        let idle = Duration::from_millis(self.config.sms_idle_ms);
        queue::run_worker("SMS worker", stopped, idle, || self.round()).await;
    }

    /// Claims and handles up to 16 due messages; returns how many were claimed.
    pub async fn round(&self) -> Result<usize, Error> {
        let now = self.clock.now();
        let lease_until = now + chrono::Duration::seconds(120);
        let rows: Vec<Claimed> =
            queue::claim(&self.db, QUEUE, &self.owner, now, lease_until).await?;
        let n = rows.len();
        for row in rows {
            let outcome = self.attempt(&row).await;
            self.finish(&row, outcome).await?;
        }
        Ok(n)
    }

    async fn attempt(&self, row: &Claimed) -> Attempt {
        #[derive(sqlx::FromRow)]
        struct Access {
            pin_sealed: Option<Vec<u8>>,
            active: bool,
        }
        let access: Result<Option<Access>, sqlx::Error> = on_pool!(&self.db, pool => {
            sqlx::query_as(
                "SELECT pin_sealed, (deactivated_at IS NULL) AS active FROM phone_accesses WHERE id = $1",
            )
            .bind(&row.phone_access_id)
            .fetch_optional(pool)
            .await
        });
        let access = match access {
            Ok(Some(a)) => a,
            Ok(None) => return Attempt::Dropped("the phone access no longer exists".into()),
            Err(e) => return Attempt::Retry(format!("database: {e}")),
        };
        if !access.active {
            return Attempt::Dropped("the phone access was deactivated".into());
        }
        let (text, masked) = if row.kind == Kind::Pin.as_str() {
            let Some(sealed) = access.pin_sealed else {
                return Attempt::Dropped(
                    "the PIN was used or replaced before it could be sent".into(),
                );
            };
            match self.pins.unseal(&row.phone_access_id, &sealed) {
                Ok(pin) => (pin_text(&pin), pin_text(&"*".repeat(pin.len()))),
                Err(e) => return Attempt::Failed(e.to_string()),
            }
        } else {
            let body = row.body.clone().unwrap_or_default();
            (body.clone(), body)
        };
        let sms = Sms {
            to: row.recipient.clone(),
            text,
        };
        match self.sender.send(&sms).await {
            Ok(sent) => Attempt::Sent {
                text: masked,
                transport: sent.transport.to_owned(),
                transport_id: sent.message_id,
            },
            Err(e) if e.is_permanent() => Attempt::Failed(e.to_string()),
            Err(e) => Attempt::Retry(e.to_string()),
        }
    }

    async fn finish(&self, row: &Claimed, outcome: Attempt) -> Result<(), Error> {
        let (action, outcome_code, transport_id, detail) = match outcome {
            Attempt::Retry(reason) => return self.retry(row, &reason).await,
            Attempt::Sent {
                text,
                transport,
                transport_id,
            } => {
                metrics::counter!("ivan_sms_sent_total").increment(1);
                tracing::info!(sms = %row.id, kind = %row.kind, transport = %transport, "SMS sent");
                let detail = serde_json::json!({
                    "to": row.recipient, "kind": row.kind, "transport": transport,
                    "transport_id": transport_id, "text": text,
                });
                ("sms.send", "sent", Some(transport_id), detail)
            }
            Attempt::Failed(reason) => {
                metrics::counter!("ivan_sms_failed_total").increment(1);
                tracing::error!(sms = %row.id, error = %reason, "SMS refused for good");
                (
                    "sms.fail",
                    "failed",
                    None,
                    serde_json::json!({ "to": row.recipient, "kind": row.kind, "error": reason }),
                )
            }
            Attempt::Dropped(reason) => {
                tracing::info!(sms = %row.id, reason = %reason, "SMS dropped");
                (
                    "sms.drop",
                    "dropped",
                    None,
                    serde_json::json!({ "to": row.recipient, "kind": row.kind, "reason": reason }),
                )
            }
        };
        let (id, owner) = (row.id.clone(), self.owner.to_string());
        let work: Work = retention::work!(|conn, at| {
            let at = at.recorded_at();
            on_conn!(&mut conn, c => {
                sqlx::query(
                    "UPDATE sms_outbox SET done_at = $1, outcome = $2, transport_id = $3, \
                     lease_owner = NULL, lease_until = NULL WHERE id = $4 AND lease_owner = $5",
                )
                .bind(at)
                .bind(outcome_code)
                .bind(&transport_id)
                .bind(&id)
                .bind(&owner)
                .execute(&mut *c)
                .await?;
            });
            Ok(())
        });
        let entry = NewEntry::system(
            action,
            format!("sms:{}", row.id),
            Some(Payload::json(&detail)),
        );
        self.ledger.append_with(entry, work).await?;
        Ok(())
    }

    async fn retry(&self, row: &Claimed, reason: &str) -> Result<(), Error> {
        metrics::counter!("ivan_sms_retries_total").increment(1);
        let base = Duration::from_millis(self.config.sms_retry_base_ms);
        let cap = Duration::from_secs(self.config.sms_retry_cap_secs);
        let (due, delay) = queue::next_due(self.clock.now(), row.attempts, base, cap);
        tracing::warn!(sms = %row.id, error = %reason, retry_in_ms = delay.as_millis() as u64, "SMS not sent; will retry");
        queue::retry(&self.db, QUEUE, &row.id, &self.owner, due, reason).await?;
        Ok(())
    }
}
