//! Submissions: the accepted filings, their lifecycle and the queries the API serves.
//!
//! ```text
//! received ─► verified ─► validated ─► accepted ──(hold window)──► forwarding ─► delivered ─► processed
//!                                          │                              │             └──► rejected
//!                                          │                              └─► refused_by_authority
//!                                          └─► cancelled (by the employer, inside the window)
//! ```
//!
//! Forwarding and the authority's answers are [`crate::forwarding`]'s; the outbox row
//! that drives them is written here, in the transaction that accepts the filing.
//!
//! A filing that passes intake is recorded as four consecutive log entries —
//! `submission.receive` (actor: the API token; payload: the original bytes),
//! `submission.verify`, `submission.validate`, `submission.accept` (actor: `ivan`
//! itself) — in the same transaction as its row, its document number and its signed
//! receipt. The state history the API shows is read back from those log entries.
//! Refused filings leave no row: only a `submission.refuse` entry whose subject is
//! `payload:<sha256 of the refused bytes>` and whose payload is the problem document
//! that was answered.

use chrono::{DateTime, Duration, Utc};
use retention::ledger::{NewEntry, Work, format_time};
use retention::receipts::{self, Claims};
use retention::{Actor, Appended, Db, DbConn, Ledger, Payload, on_conn, on_pool};
use serde::Serialize;
use std::sync::Arc;

use crate::Error;
use crate::employers::Caller;

/// A submission as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Submission {
    #[serde(rename = "message_id")]
    pub id: String,
    #[serde(skip)]
    pub employer_id: String,
    pub document_type: String,
    pub document_number: String,
    pub status: String,
    pub sha256: String,
    pub size_bytes: i64,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub received_at: DateTime<Utc>,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub hold_until: DateTime<Utc>,
    pub sender_reference: Option<String>,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
    /// The signing certificate's SHA-256; none for a pre-registration.
    pub signer_fingerprint: Option<String>,
    pub crl_sha256: Option<String>,
    pub log_seq: i64,
    pub receipt: String,
    #[serde(skip)]
    pub warnings: String,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub updated_at: DateTime<Utc>,
    /// The authority's reference, once it has taken the filing.
    pub authority_ref: Option<String>,
    #[serde(serialize_with = "retention::ledger::serialize_opt_time")]
    #[schema(value_type = Option<String>)]
    pub delivered_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, employer_id, document_type, document_number, status, sha256, \
    size_bytes, received_at, hold_until, sender_reference, idempotency_key, \
    signer_fingerprint, crl_sha256, log_seq, receipt, warnings, updated_at, \
    authority_ref, delivered_at";

/// Lifecycle states.
pub mod status {
    pub const ACCEPTED: &str = "accepted";
    pub const CANCELLED: &str = "cancelled";
    pub const FORWARDING: &str = "forwarding";
    pub const DELIVERED: &str = "delivered";
    pub const PROCESSED: &str = "processed";
    pub const REJECTED: &str = "rejected";
    /// The authority refused to take the filing (a 4xx answer to its delivery).
    pub const REFUSED_BY_AUTHORITY: &str = "refused_by_authority";
    /// Every state a submission can be listed by.
    pub const ALL: [&str; 7] = [
        ACCEPTED,
        CANCELLED,
        FORWARDING,
        DELIVERED,
        PROCESSED,
        REJECTED,
        REFUSED_BY_AUTHORITY,
    ];
}

/// One step of a submission's history, read from the log.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Step {
    pub status: String,
    pub at: String,
    pub actor: String,
    pub log_seq: i64,
}

/// Where an accepted filing came from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A signed document through the API: received, verified, validated, accepted.
    /// A registration form's registrations are noted for pairing.
    Signed {
        registrations: Vec<mobile_api::prereg::RegistrationItem>,
    },
    /// A phone user's pre-registration: received (the request as sent), validated,
    /// accepted (the document `ivan` made of it, which is what is forwarded).
    Phone {
        access_id: String,
        request: bytes::Bytes,
        checked: mobile_api::prereg::Checked,
        deadline: Duration,
    },
}

/// Everything intake established about a filing it accepts.
#[derive(Debug, Clone)]
pub struct Accepting {
    pub id: String,
    pub employer_id: String,
    /// Who sent it (the API token, the phone access).
    pub actor: Actor,
    pub origin: Origin,
    pub document_type: String,
    pub number_prefix: char,
    pub original: bytes::Bytes,
    pub sha256: String,
    pub sender_reference: Option<String>,
    pub idempotency_key: Option<String>,
    pub signer_fingerprint: Option<String>,
    pub crl_sha256: Option<String>,
    /// What the signature covers (`signature::Inspected::content_digest`); none
    /// for a pre-registration.
    pub signed_digest: Option<String>,
    /// JSON array of warnings.
    pub warnings: String,
    pub hold_window: Duration,
    /// Person index keys of every personal id the filing names
    /// ([`crate::compliance::persons`]).
    pub person_keys: Vec<String>,
}

/// Records an accepted filing: four log entries, the row, its document number and
/// its receipt, all in one transaction. Returns the stored submission.
pub async fn record(
    ledger: &Ledger,
    keys: Arc<retention::keys::Keys>,
    a: Accepting,
) -> Result<Submission, Error> {
    let subject = format!("submission:{}", a.id);
    let entry = |actor: Actor, action: &str, payload: Option<Payload>| NewEntry {
        actor,
        action: action.to_owned(),
        subject: subject.clone(),
        payload,
    };
    let xml = |bytes: &bytes::Bytes| Payload {
        bytes: bytes.clone(),
        media_type: "application/xml".into(),
    };
    let entries = match &a.origin {
        Origin::Signed { .. } => vec![
            entry(
                a.actor.clone(),
                "submission.receive",
                Some(xml(&a.original)),
            ),
            entry(Actor::System, "submission.verify", None),
            entry(Actor::System, "submission.validate", None),
            entry(Actor::System, "submission.accept", None),
        ],
        Origin::Phone { request, .. } => vec![
            entry(
                a.actor.clone(),
                "submission.receive",
                Some(Payload {
                    bytes: request.clone(),
                    media_type: "application/json".into(),
                }),
            ),
            entry(Actor::System, "submission.validate", None),
            entry(Actor::System, "submission.accept", Some(xml(&a.original))),
        ],
    };
    // The answer is built from what the transaction writes, not read back after the
    // commit: a database lost between the two must not turn a recorded filing into
    // an error answer.
    let (made_tx, mut made) = tokio::sync::oneshot::channel::<Submission>();
    let work: Work = Box::new(move |mut conn: DbConn<'_>, at: Vec<Appended>| {
        Box::pin(async move {
            let received = at
                .first()
                .ok_or_else(|| retention::Error::Invalid("no log position".into()))?;
            let received_at = received.recorded_at;
            let period = received_at.format("%y%m").to_string();
            let prefix = a.number_prefix.to_string();
            let n: i64 = on_conn!(&mut conn, c => {
                sqlx::query_scalar(
                    "INSERT INTO document_counters (prefix, period, last) VALUES ($1, $2, 1) \
                     ON CONFLICT (prefix, period) DO UPDATE SET last = document_counters.last + 1 \
                     RETURNING last",
                )
                .bind(&prefix)
                .bind(&period)
                .fetch_one(&mut *c)
                .await?
            });
            if n > 999_999 {
                return Err(retention::Error::Invalid(format!(
                    "document numbers for {prefix}{period} are exhausted"
                )));
            }
            let document_number = format!("{prefix}{period}{n:06}");
            let receipt = receipts::sign(
                &keys,
                &Claims {
                    iss: "ivan".into(),
                    sub: a.id.clone(),
                    employer: a.employer_id.clone(),
                    document_type: a.document_type.clone(),
                    document_number: document_number.clone(),
                    sha256: a.sha256.clone(),
                    received_at: format_time(&received_at),
                    log_seq: received.seq,
                    iat: received_at.timestamp(),
                },
            )?;
            let size = i64::try_from(a.original.len())
                .map_err(|_| retention::Error::Invalid("document too large".into()))?;
            let made = Submission {
                id: a.id.clone(),
                employer_id: a.employer_id.clone(),
                document_type: a.document_type.clone(),
                document_number: document_number.clone(),
                status: status::ACCEPTED.to_owned(),
                sha256: a.sha256.clone(),
                size_bytes: size,
                received_at,
                hold_until: received_at + a.hold_window,
                sender_reference: a.sender_reference.clone(),
                idempotency_key: a.idempotency_key.clone(),
                signer_fingerprint: a.signer_fingerprint.clone(),
                crl_sha256: a.crl_sha256.clone(),
                log_seq: received.seq,
                receipt: receipt.clone(),
                warnings: a.warnings.clone(),
                updated_at: received_at,
                authority_ref: None,
                delivered_at: None,
            };
            on_conn!(&mut conn, c => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO submissions ({COLUMNS}, signed_digest) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, NULL, NULL, $18)"
                )))
                .bind(&made.id)
                .bind(&made.employer_id)
                .bind(&made.document_type)
                .bind(&made.document_number)
                .bind(&made.status)
                .bind(&made.sha256)
                .bind(made.size_bytes)
                .bind(made.received_at)
                .bind(made.hold_until)
                .bind(&made.sender_reference)
                .bind(&made.idempotency_key)
                .bind(&made.signer_fingerprint)
                .bind(&made.crl_sha256)
                .bind(made.log_seq)
                .bind(&made.receipt)
                .bind(&made.warnings)
                .bind(made.updated_at)
                .bind(&a.signed_digest)
                .execute(&mut *c)
                .await?;
            });
            match &a.origin {
                Origin::Signed { registrations } if !registrations.is_empty() => {
                    mobile_api::prereg::note_registration(
                        &mut conn,
                        &a.id,
                        &a.employer_id,
                        registrations,
                    )
                    .await?;
                }
                Origin::Signed { .. } => {}
                Origin::Phone {
                    access_id,
                    checked,
                    deadline,
                    ..
                } => {
                    mobile_api::prereg::insert(
                        &mut conn,
                        &a.id,
                        &a.employer_id,
                        access_id,
                        checked,
                        received_at,
                        *deadline,
                    )
                    .await?;
                }
            }
            crate::compliance::persons::insert(&mut conn, &a.id, &a.person_keys, received_at)
                .await?;
            crate::forwarding::outbox::enqueue(
                &mut conn,
                &a.id,
                received_at + a.hold_window,
                received_at,
            )
            .await?;
            let when = if a.hold_window > Duration::zero() {
                format!(
                    "It can be cancelled until {}.",
                    format_time(&(received_at + a.hold_window))
                )
            } else {
                "It is being forwarded to the authority.".to_owned()
            };
            crate::mail::enqueue(
                &mut conn,
                crate::mail::Kind::Receipt,
                crate::mail::To::Employer,
                &a.id,
                &format!(
                    "Your {} was received and accepted as {document_number} at {}. {when}",
                    a.document_type,
                    format_time(&received_at),
                ),
                received_at,
            )
            .await?;
            let _ = made_tx.send(made);
            Ok(())
        })
    });
    ledger.append_all(entries, Some(work)).await?;
    made.try_recv().map_err(|_| {
        Error::Internal("the recorded submission was not handed back by its transaction".into())
    })
}

/// Records a refusal: no row, one log entry naming the refused bytes' hash, with the
/// problem document answered as its payload.
pub async fn record_refusal(
    ledger: &Ledger,
    actor: Actor,
    sha256: &str,
    problem_json: Vec<u8>,
) -> Result<Appended, Error> {
    Ok(ledger
        .append(NewEntry {
            actor,
            action: "submission.refuse".into(),
            subject: format!("payload:{sha256}"),
            payload: Some(Payload {
                bytes: problem_json.into(),
                media_type: "application/problem+json".into(),
            }),
        })
        .await?)
}

/// The employer's submission with this id (another employer's is `None`).
pub async fn get(db: &Db, employer_id: &str, id: &str) -> Result<Option<Submission>, Error> {
    find_one(db, "id", employer_id, id).await
}

/// The employer's submission of exactly these bytes, if any.
pub async fn find_by_sha256(
    db: &Db,
    employer_id: &str,
    sha256: &str,
) -> Result<Option<Submission>, Error> {
    find_one(db, "sha256", employer_id, sha256).await
}

/// The employer's submission of this signed content (the same signed document in
/// other bytes), if any.
pub async fn find_by_signed_digest(
    db: &Db,
    employer_id: &str,
    digest: &str,
) -> Result<Option<Submission>, Error> {
    find_one(db, "signed_digest", employer_id, digest).await
}

/// The employer's submission made with this `Idempotency-Key`, if any.
pub async fn find_by_idempotency_key(
    db: &Db,
    employer_id: &str,
    key: &str,
) -> Result<Option<Submission>, Error> {
    find_one(db, "idempotency_key", employer_id, key).await
}

/// The employer's submission carrying this sender reference, if any.
pub async fn find_by_sender_reference(
    db: &Db,
    employer_id: &str,
    reference: &str,
) -> Result<Option<Submission>, Error> {
    find_one(db, "sender_reference", employer_id, reference).await
}

async fn find_one(
    db: &Db,
    column: &'static str,
    employer_id: &str,
    value: &str,
) -> Result<Option<Submission>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM submissions WHERE employer_id = $1 AND {column} = $2");
    Ok(on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(employer_id)
            .bind(value)
            .fetch_optional(pool)
            .await
            .map_err(retention::Error::from)?
    }))
}

/// Filter and page of a submission listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<String>,
    pub document_type: Option<String>,
    /// Document numbers starting with this (letters and digits only).
    pub number_prefix: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Continue after this message id (ids are time-ordered UUIDv7), oldest first.
    pub after: Option<String>,
    /// Newest first, continuing before this message id (if any).
    pub newest_first: bool,
    pub before: Option<String>,
    pub limit: i64,
}

/// The employer's submissions matching `filter`: oldest first after `filter.after`,
/// or newest first before `filter.before`.
pub async fn list(db: &Db, employer_id: &str, filter: &Filter) -> Result<Vec<Submission>, Error> {
    if filter
        .number_prefix
        .as_deref()
        .is_some_and(|p| !p.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(Error::Invalid(
            "a document number has only letters and digits".into(),
        ));
    }
    let order = if filter.newest_first { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {COLUMNS} FROM submissions WHERE employer_id = $1 \
         AND ($2 IS NULL OR status = $2) \
         AND ($3 IS NULL OR received_at >= $3) \
         AND ($4 IS NULL OR received_at < $4) \
         AND ($5 IS NULL OR id > $5) \
         AND ($7 IS NULL OR document_type = $7) \
         AND ($8 IS NULL OR document_number LIKE $8 || '%') \
         AND ($9 IS NULL OR id < $9) \
         ORDER BY id {order} LIMIT $6"
    );
    Ok(on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(employer_id)
            .bind(&filter.status)
            .bind(filter.from)
            .bind(filter.to)
            .bind(&filter.after)
            .bind(filter.limit)
            .bind(&filter.document_type)
            .bind(&filter.number_prefix)
            .bind(&filter.before)
            .fetch_all(pool)
            .await
            .map_err(retention::Error::from)?
    }))
}

/// A submission's state history, from its log entries.
pub async fn history(db: &Db, id: &str) -> Result<Vec<Step>, Error> {
    let rows: Vec<(i64, DateTime<Utc>, String, String)> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT seq, recorded_at, actor, action FROM log_entries WHERE subject = $1 ORDER BY seq",
        )
        .bind(format!("submission:{id}"))
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    });
    Ok(rows
        .into_iter()
        .map(|(seq, at, actor, action)| Step {
            status: state_after(&action).to_owned(),
            at: format_time(&at),
            actor,
            log_seq: seq,
        })
        .collect())
}

fn state_after(action: &str) -> &str {
    match action {
        "submission.receive" => "received",
        "submission.verify" => "verified",
        "submission.validate" => "validated",
        "submission.accept" => status::ACCEPTED,
        "submission.cancel" => status::CANCELLED,
        "submission.forward" => status::FORWARDING,
        "submission.deliver" => status::DELIVERED,
        "submission.process" => status::PROCESSED,
        "submission.reject" => status::REJECTED,
        "submission.authority-refuse" => status::REFUSED_BY_AUTHORITY,
        // Not states, but steps worth seeing: an answer document arrived; the
        // forwarding deadline passed.
        "submission.answer" => "answer_received",
        "submission.overdue" => "overdue",
        other => other.strip_prefix("submission.").unwrap_or(other),
    }
}

/// Cancels the caller's submission if it is still inside its hold window. The check
/// and the change happen in the log's transaction, so nothing can slip in between.
pub async fn cancel(
    ledger: &Ledger,
    db: &Db,
    caller: &Caller,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Submission, Error> {
    let current = get(db, &caller.employer_id, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no submission {id}")))?;
    if current.status != status::ACCEPTED || current.hold_until <= now {
        return Err(not_cancellable(&current, now));
    }
    let (sid, eid) = (id.to_owned(), caller.employer_id.clone());
    let work: Work = Box::new(move |mut conn: DbConn<'_>, at: Vec<Appended>| {
        Box::pin(async move {
            let at = at.first().map_or(now, |a| a.recorded_at);
            let changed = on_conn!(&mut conn, c => {
                sqlx::query(
                    "UPDATE submissions SET status = $1, updated_at = $2 \
                     WHERE id = $3 AND employer_id = $4 AND status = $5 AND hold_until > $2",
                )
                .bind(status::CANCELLED)
                .bind(at)
                .bind(&sid)
                .bind(&eid)
                .bind(status::ACCEPTED)
                .execute(&mut *c)
                .await?
                .rows_affected()
            });
            if changed == 1 {
                crate::forwarding::outbox::dequeue(&mut conn, &sid).await
            } else {
                Err(retention::Error::Conflict(
                    "the submission can no longer be cancelled".into(),
                ))
            }
        })
    });
    ledger
        .append_with(
            NewEntry {
                actor: caller.actor(),
                action: "submission.cancel".into(),
                subject: format!("submission:{id}"),
                payload: None,
            },
            work,
        )
        .await?;
    if current.document_type == crate::documents::DocumentType::RegistrationForm.code() {
        // Pre-registrations paired with it are unpaired now (the sweep would too).
        if let Err(e) = mobile_api::prereg::unpair_withdrawn(ledger, db).await {
            tracing::warn!(error = %e, submission = %id, "unpairing deferred to the sweep");
        }
    }
    get(db, &caller.employer_id, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no submission {id}")))
}

fn not_cancellable(s: &Submission, now: DateTime<Utc>) -> Error {
    if s.status == status::CANCELLED {
        Error::Conflict(format!("submission {} is already cancelled", s.id))
    } else if s.hold_until <= now {
        Error::Conflict(format!(
            "the cancel window of submission {} closed at {}",
            s.id,
            format_time(&s.hold_until)
        ))
    } else {
        Error::Conflict(format!(
            "submission {} is {} and can no longer be cancelled",
            s.id, s.status
        ))
    }
}
