//! Submissions: the accepted filings, their lifecycle and the queries the API serves.
//!
//! ```text
//! received ─► verified ─► validated ─► accepted ──(hold window)──► forwarding ─► delivered ─► processed
//!                                          │                              │             └──► rejected
//!                                          │                              └─► refused_by_authority
//!                                          └─► cancelled (by the employer, inside the window)
//! ```
//!
//! A submission's outbox row and answer documents are part of it ([`outbox`]: the
//! row is written in the transaction that accepts the filing, dropped by a cancel,
//! and moved on by the forwarding worker's transitions); the worker that delivers
//! and polls is [`crate::forwarding`]'s, above this module.
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
use futures::future::BoxFuture;
use retention::ledger::{Described, NewEntry, RowWriter, Work, format_time};
use retention::receipts::{self, Claims};
use retention::{Actor, Appended, Db, DbConn, Ledger, Payload, on_conn, on_pool};
use serde::Serialize;
use std::sync::Arc;

use crate::Error;
use crate::employers::Caller;

pub mod outbox;
pub mod persons;
pub mod preregistrations;

/// What the API shows of an answer document.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AnswerInfo {
    pub n: i64,
    pub name: String,
    pub media_type: String,
    pub sha256: String,
    pub size_bytes: i64,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub received_at: DateTime<Utc>,
    pub log_seq: i64,
}

/// The answers kept for a submission, in the authority's order.
pub async fn answers(db: &Db, submission_id: &str) -> Result<Vec<AnswerInfo>, Error> {
    outbox::answers(db, submission_id).await
}

/// The forwarding deadline when none is configured: 2 h after the hold window ends
/// (the decree's time to the authority).
pub const DEFAULT_FORWARD_DEADLINE_SECS: u64 = 2 * 3600;

/// When accepted filings must reach the authority: this long after their hold window
/// ends, per document type (`forwarding.deadline_secs`, `forwarding.deadline_secs_by_type`).
/// Fixed on each submission when it is accepted ([`Submission::forward_by`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardDeadlines {
    pub default_secs: u64,
    pub by_type: std::collections::BTreeMap<String, u64>,
}

impl Default for ForwardDeadlines {
    fn default() -> Self {
        ForwardDeadlines {
            default_secs: DEFAULT_FORWARD_DEADLINE_SECS,
            by_type: std::collections::BTreeMap::new(),
        }
    }
}

impl ForwardDeadlines {
    /// The deadline of `document_type`, counted from the end of its hold window.
    pub fn of(&self, document_type: &str) -> Duration {
        crate::documents::per_type_secs(self.default_secs, &self.by_type, document_type)
    }
}

/// A submission as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Submission {
    #[serde(rename = "message_id")]
    pub id: String,
    #[serde(skip)]
    pub employer_id: String,
    pub document_type: String,
    pub document_number: String,
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub sha256: String,
    pub size_bytes: i64,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub received_at: DateTime<Utc>,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub hold_until: DateTime<Utc>,
    /// When it must have reached the authority: the end of the hold window plus the
    /// forwarding deadline of its type, fixed when it was accepted. Later, it is
    /// flagged overdue.
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub forward_by: DateTime<Utc>,
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
    size_bytes, received_at, hold_until, forward_by, sender_reference, idempotency_key, \
    signer_fingerprint, crl_sha256, log_seq, receipt, warnings, updated_at, \
    authority_ref, delivered_at";

retention::named_enum! {
    /// Where a submission is in its lifecycle, stored by its name (`accepted`, …), which
    /// is also how the API and the portal show it.
    #[derive(
        Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
    )]
    #[serde(rename_all = "snake_case")]
    #[schema(as = SubmissionStatus)]
    pub enum Status("submission status") {
        Accepted = "accepted",
        Cancelled = "cancelled",
        Forwarding = "forwarding",
        Delivered = "delivered",
        Processed = "processed",
        Rejected = "rejected",
        /// The authority refused to take the filing (a 4xx answer to its delivery).
        RefusedByAuthority = "refused_by_authority",
    }
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
        registrations: Vec<crate::documents::RegistrationItem>,
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
    /// The bytes as received: in memory, or staged as they arrived (a large body).
    pub original: retention::Content,
    pub sha256: String,
    pub sender_reference: Option<String>,
    pub idempotency_key: Option<String>,
    pub signer_fingerprint: Option<String>,
    pub crl_sha256: Option<String>,
    /// The OCSP responder's `good` answer about the signing certificate, kept as the
    /// payload of the `submission.verify` entry (`application/ocsp-response`).
    pub ocsp_response: Option<Vec<u8>>,
    /// What the signature covers (`signature::Inspected::content_digest`); none
    /// for a pre-registration.
    pub signed_digest: Option<String>,
    /// JSON array of warnings.
    pub warnings: String,
    pub hold_window: Duration,
    /// How long after the hold window the filing must reach the authority.
    pub forward_within: Duration,
    /// Until when its document is kept at least: on an originals bucket with Object
    /// Lock, the retain-until date of what it files (filing time + its type's
    /// retention period, [`crate::documents::retention::RetentionConfig::retain_until`]).
    pub retain_until: DateTime<Utc>,
    /// Person index keys of every personal id the filing names, written in the
    /// transaction that records it ([`crate::submissions::persons`]).
    pub person_keys: Vec<crate::submissions::persons::PersonKey>,
    /// The filing names more persons than fit that transaction: its row is left
    /// unmarked, and the caller indexes them once it is recorded
    /// ([`crate::submissions::persons::PersonIndex::index_later`]).
    pub persons_later: bool,
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
    let xml = |content: &retention::Content| Payload {
        content: content.clone(),
        media_type: "application/xml".into(),
        retain_until: Some(a.retain_until),
    };
    let entries = match &a.origin {
        Origin::Signed { .. } => vec![
            entry(
                a.actor.clone(),
                "submission.receive",
                Some(xml(&a.original)),
            ),
            entry(
                Actor::System,
                "submission.verify",
                a.ocsp_response.clone().map(|der| Payload {
                    content: bytes::Bytes::from(der).into(),
                    media_type: "application/ocsp-response".into(),
                    retain_until: Some(a.retain_until),
                }),
            ),
            entry(Actor::System, "submission.validate", None),
            entry(Actor::System, "submission.accept", None),
        ],
        Origin::Phone { request, .. } => vec![
            entry(
                a.actor.clone(),
                "submission.receive",
                Some(Payload {
                    content: request.clone().into(),
                    media_type: "application/json".into(),
                    retain_until: Some(a.retain_until),
                }),
            ),
            entry(Actor::System, "submission.validate", None),
            entry(Actor::System, "submission.accept", Some(xml(&a.original))),
        ],
    };
    // The answer is built from what the transaction writes, not read back after the
    // commit: a database lost between the two must not turn a recorded filing into
    // an error answer.
    let recording = Arc::new(Recording {
        accepting: a,
        keys,
        made: std::sync::Mutex::new(None),
    });
    ledger
        .append_rows(entries, &SUBMISSION_ROWS, recording.clone())
        .await?;
    let made = recording
        .made
        .lock()
        .map_err(|_| Error::Internal("a recording's lock was poisoned".into()))?
        .take();
    made.ok_or_else(|| {
        Error::Internal("the recorded submission was not handed back by its transaction".into())
    })
}

/// One accepted filing on its way into the log's transaction, and what that
/// transaction made of it.
struct Recording {
    accepting: Accepting,
    keys: Arc<retention::keys::Keys>,
    made: std::sync::Mutex<Option<Submission>>,
}

/// Writes the rows of every filing in a log batch together (see
/// [`retention::ledger`]'s module docs): document numbers per batch, then the
/// submissions, person-index, outbox and receipt-mail rows as multi-row statements.
struct SubmissionRows;

static SUBMISSION_ROWS: SubmissionRows = SubmissionRows;

impl RowWriter for SubmissionRows {
    fn name(&self) -> &'static str {
        "submissions"
    }

    fn write<'c>(
        &'c self,
        conn: DbConn<'c>,
        items: &'c [Described<'c>],
    ) -> BoxFuture<'c, retention::Result<()>> {
        Box::pin(write_rows(conn, items))
    }
}

async fn write_rows(mut conn: DbConn<'_>, items: &[Described<'_>]) -> retention::Result<()> {
    let mut recordings = Vec::with_capacity(items.len());
    for d in items {
        let r = d.item.downcast_ref::<Recording>().ok_or_else(|| {
            retention::Error::Internal("a submission's rows were not a Recording".into())
        })?;
        let received =
            d.at.first()
                .ok_or_else(|| retention::Error::Internal("no log position".into()))?;
        recordings.push((r, received));
    }
    let numbers = document_numbers(&mut conn, &recordings).await?;
    let mut made = Vec::with_capacity(recordings.len());
    for ((r, received), document_number) in recordings.iter().zip(numbers) {
        made.push(made_of(&r.accepting, &r.keys, received, document_number)?);
    }
    on_conn!(&mut conn, c => {
        for chunk in made.iter().zip(&recordings).collect::<Vec<_>>().chunks(500) {
            let mut insert = sqlx::QueryBuilder::new(format!(
                "INSERT INTO submissions ({COLUMNS}, signed_digest, persons_indexed_at) "
            ));
            insert.push_values(chunk, |mut row, (m, (r, _))| {
                row.push_bind(&m.id)
                    .push_bind(&m.employer_id)
                    .push_bind(&m.document_type)
                    .push_bind(&m.document_number)
                    .push_bind(m.status.as_str())
                    .push_bind(&m.sha256)
                    .push_bind(m.size_bytes)
                    .push_bind(m.received_at)
                    .push_bind(m.hold_until)
                    .push_bind(m.forward_by)
                    .push_bind(&m.sender_reference)
                    .push_bind(&m.idempotency_key)
                    .push_bind(&m.signer_fingerprint)
                    .push_bind(&m.crl_sha256)
                    .push_bind(m.log_seq)
                    .push_bind(&m.receipt)
                    .push_bind(&m.warnings)
                    .push_bind(m.updated_at)
                    .push_bind(&m.authority_ref)
                    .push_bind(m.delivered_at)
                    .push_bind(&r.accepting.signed_digest)
                    // The person-index rows are written below, in this transaction,
                    // unless there are too many for it.
                    .push_bind((!r.accepting.persons_later).then_some(m.received_at));
            });
            insert.build().execute(&mut *c).await?;
        }
    });
    let mut forms = Vec::new();
    let mut phoned = Vec::new();
    for ((r, _), m) in recordings.iter().zip(&made) {
        let a = &r.accepting;
        match &a.origin {
            Origin::Signed { registrations } if !registrations.is_empty() => {
                forms.push((
                    a.id.as_str(),
                    a.employer_id.as_str(),
                    registrations.as_slice(),
                ));
            }
            Origin::Signed { .. } => {}
            Origin::Phone {
                access_id,
                checked,
                deadline,
                ..
            } => phoned.push(preregistrations::NewRow {
                id: &a.id,
                employer_id: &a.employer_id,
                phone_access_id: access_id,
                checked,
                received_at: m.received_at,
                deadline: *deadline,
            }),
        }
    }
    preregistrations::note_registrations(&mut conn, &forms).await?;
    preregistrations::insert(&mut conn, &phoned).await?;
    let persons: Vec<(&str, &[crate::submissions::persons::PersonKey])> = recordings
        .iter()
        .map(|(r, _)| (r.accepting.id.as_str(), r.accepting.person_keys.as_slice()))
        .collect();
    crate::submissions::persons::insert_rows(&mut conn, &persons).await?;
    let queued: Vec<(&str, DateTime<Utc>, DateTime<Utc>)> = made
        .iter()
        .map(|m| (m.id.as_str(), m.hold_until, m.received_at))
        .collect();
    outbox::enqueue_many(&mut conn, &queued).await?;
    let words: Vec<_> = made
        .iter()
        .zip(&recordings)
        .map(|(m, (r, _))| {
            let hold_window = r.accepting.hold_window;
            move |lang: crate::i18n::Lang| receipt_mail(lang, m, hold_window)
        })
        .collect();
    let receipts: Vec<crate::mail::Queued<'_>> = made
        .iter()
        .zip(&words)
        .map(|(m, words)| crate::mail::Queued {
            to: crate::mail::To::Employer,
            submission_id: &m.id,
            detail: words,
            now: m.received_at,
        })
        .collect();
    crate::mail::enqueue_many(&mut conn, crate::mail::Kind::Receipt, &receipts).await?;
    for ((r, _), m) in recordings.iter().zip(made) {
        *r.made
            .lock()
            .map_err(|_| retention::Error::Internal("a recording's lock was poisoned".into()))? =
            Some(m);
    }
    Ok(())
}

/// The next document number of each filing, allocated per batch: one counter
/// update per prefix and month, in the filings' order.
async fn document_numbers(
    conn: &mut DbConn<'_>,
    recordings: &[(&Recording, &Appended)],
) -> retention::Result<Vec<String>> {
    let key = |(r, received): &(&Recording, &Appended)| {
        (
            r.accepting.number_prefix.to_string(),
            received.recorded_at.format("%y%m").to_string(),
        )
    };
    // Per prefix and month: how many this batch needs, then the first of them.
    let mut numbers: indexmap::IndexMap<(String, String), i64> = indexmap::IndexMap::new();
    for r in recordings {
        *numbers.entry(key(r)).or_default() += 1;
    }
    for ((prefix, period), n) in numbers.iter_mut() {
        let last: i64 = on_conn!(conn, c => {
            sqlx::query_scalar(
                "INSERT INTO document_counters (prefix, period, last) VALUES ($1, $2, $3) \
                 ON CONFLICT (prefix, period) DO UPDATE SET last = document_counters.last + excluded.last \
                 RETURNING last",
            )
            .bind(prefix.as_str())
            .bind(period.as_str())
            .bind(*n)
            .fetch_one(&mut *c)
            .await?
        });
        if last > 999_999 {
            return Err(retention::Error::Invalid(format!(
                "document numbers for {prefix}{period} are exhausted"
            )));
        }
        *n = last - *n + 1;
    }
    recordings
        .iter()
        .map(|r| {
            let k = key(r);
            let n = numbers.get_mut(&k).ok_or_else(|| {
                retention::Error::Internal("a document counter went missing".into())
            })?;
            let number = format!("{}{}{n:06}", k.0, k.1);
            *n += 1;
            Ok(number)
        })
        .collect()
}

/// The submission `a` becomes, with its signed receipt: everything but the
/// document number is known before the transaction.
fn made_of(
    a: &Accepting,
    keys: &retention::keys::Keys,
    received: &Appended,
    document_number: String,
) -> retention::Result<Submission> {
    let received_at = received.recorded_at;
    let receipt = receipts::sign(
        keys,
        &Claims {
            iss: "ivan".into(),
            sub: a.id.clone(),
            employer: a.employer_id.clone(),
            document_type: a.document_type.clone(),
            document_number: document_number.clone(),
            sha256: a.sha256.clone(),
            received_at: format_time(&received_at),
            log_seq: received.seq,
            entry_hash: Some(received.entry_hash.clone()),
            iat: received_at.timestamp(),
        },
    )?;
    let size_bytes = i64::try_from(a.original.len())
        .map_err(|_| retention::Error::Invalid("document too large".into()))?;
    Ok(Submission {
        id: a.id.clone(),
        employer_id: a.employer_id.clone(),
        document_type: a.document_type.clone(),
        document_number,
        status: Status::Accepted,
        sha256: a.sha256.clone(),
        size_bytes,
        received_at,
        hold_until: received_at + a.hold_window,
        forward_by: received_at + a.hold_window + a.forward_within,
        sender_reference: a.sender_reference.clone(),
        idempotency_key: a.idempotency_key.clone(),
        signer_fingerprint: a.signer_fingerprint.clone(),
        crl_sha256: a.crl_sha256.clone(),
        log_seq: received.seq,
        receipt,
        warnings: a.warnings.clone(),
        updated_at: received_at,
        authority_ref: None,
        delivered_at: None,
    })
}

/// What the receipt mail says after its first line.
fn receipt_mail(lang: crate::i18n::Lang, m: &Submission, hold_window: Duration) -> String {
    let when = if hold_window > Duration::zero() {
        lang.t_with(
            "mail-receipt-cancellable",
            &[("until", &crate::i18n::shown(&m.hold_until))],
        )
    } else {
        lang.t("mail-receipt-forwarding")
    };
    lang.t_with(
        "mail-receipt",
        &[
            ("type", &lang.label("type", &m.document_type)),
            ("number", &m.document_number),
            ("at", &crate::i18n::shown(&m.received_at)),
            ("when", &when),
        ],
    )
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
                content: bytes::Bytes::from(problem_json).into(),
                media_type: "application/problem+json".into(),
                retain_until: None,
            }),
        })
        .await?)
}

/// Marks submission `id` purged at `now` (its retention period ended) and erases
/// the personal data kept beside it (its warnings, registration items, a
/// pre-registration's person), in the transaction of its `submission.purge` entry.
/// `Conflict` if it was purged meanwhile.
pub async fn mark_purged(
    conn: &mut DbConn<'_>,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), retention::Error> {
    let n = on_conn!(conn, c => {
        sqlx::query("UPDATE submissions SET purged_at = $1, warnings = '[]' WHERE id = $2 AND purged_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    if n == 0 {
        return Err(retention::Error::Conflict(format!(
            "{id} was purged meanwhile"
        )));
    }
    preregistrations::erase(conn, id).await
}

/// How many of the employer's submissions are in each status (those with none left
/// out), in status order.
pub async fn count_by_status(db: &Db, employer_id: &str) -> Result<Vec<(Status, i64)>, Error> {
    let counts: Vec<(String, i64)> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT status, COUNT(*) FROM submissions WHERE employer_id = $1 GROUP BY status ORDER BY status",
        )
        .bind(employer_id)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    });
    counts
        .into_iter()
        .map(|(status, n)| Ok((status.parse().map_err(Error::Internal)?, n)))
        .collect()
}

/// What people call a filing, for a compliance officer's search results: its
/// document number and its employer's name (`None` for an unknown id).
pub async fn label(db: &Db, id: &str) -> Result<Option<(String, String)>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT s.document_number, e.name FROM submissions s \
             JOIN employers e ON e.id = s.employer_id WHERE s.id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    }))
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

/// What an analysed filing repeats: the employer's submission of the same signed
/// content, and the one carrying the same sender reference (often the same row).
#[derive(Debug, Default)]
pub struct Repeats {
    pub signed_digest: Option<Submission>,
    pub sender_reference: Option<Submission>,
}

/// [`find_by_signed_digest`] and [`find_by_sender_reference`] in one statement: the
/// intake asks both of every analysed filing, and a round trip to the database
/// costs more CPU than the lookup itself.
pub async fn find_repeats(
    db: &Db,
    employer_id: &str,
    digest: &str,
    reference: Option<&str>,
) -> Result<Repeats, Error> {
    let sql = format!(
        "SELECT {COLUMNS}, signed_digest FROM submissions WHERE employer_id = $1 \
         AND (signed_digest = $2 OR sender_reference = $3)"
    );
    let rows: Vec<FoundRow> = on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(employer_id)
            .bind(digest)
            .bind(reference)
            // As in `find_one`.
            .persistent(false)
            .fetch_all(pool)
            .await
            .map_err(retention::Error::from)?
    });
    let mut repeats = Repeats::default();
    for FoundRow {
        submission,
        signed_digest,
    } in rows
    {
        if reference.is_some() && submission.sender_reference.as_deref() == reference {
            repeats.sender_reference = Some(submission.clone());
        }
        if signed_digest.as_deref() == Some(digest) {
            repeats.signed_digest = Some(submission);
        }
    }
    Ok(repeats)
}

/// A [`Submission`] row with the digest it was found by.
#[derive(sqlx::FromRow)]
struct FoundRow {
    #[sqlx(flatten)]
    submission: Submission,
    signed_digest: Option<String>,
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
            // Planned at each call, never from a cached generic plan: PostgreSQL
            // caches one per connection after five calls, and one made while the
            // table was new (before autovacuum's first ANALYZE) scanned the whole
            // employer's filings through another index, ~6 ms a lookup and growing
            // (the intake bench: 30 s of PostgreSQL time in 15 s). The intake runs
            // three such lookups per filing; a fresh plan takes the unique index.
            .persistent(false)
            .fetch_optional(pool)
            .await
            .map_err(retention::Error::from)?
    }))
}

/// Filter and page of a submission listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<Status>,
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
            .bind(filter.status.map(Status::as_str))
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
        "submission.accept" => Status::Accepted.as_str(),
        "submission.cancel" => Status::Cancelled.as_str(),
        "submission.forward" => Status::Forwarding.as_str(),
        "submission.deliver" => Status::Delivered.as_str(),
        "submission.process" => Status::Processed.as_str(),
        "submission.reject" => Status::Rejected.as_str(),
        "submission.authority-refuse" => Status::RefusedByAuthority.as_str(),
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
    if current.status != Status::Accepted || current.hold_until <= now {
        return Err(not_cancellable(&current, now));
    }
    let (sid, eid) = (id.to_owned(), caller.employer_id.clone());
    let work: Work = retention::work!(|conn, at| {
        let at = at.recorded_at();
        let changed = on_conn!(&mut conn, c => {
            sqlx::query(
                "UPDATE submissions SET status = $1, updated_at = $2 \
                 WHERE id = $3 AND employer_id = $4 AND status = $5 AND hold_until > $2",
            )
            .bind(Status::Cancelled.as_str())
            .bind(at)
            .bind(&sid)
            .bind(&eid)
            .bind(Status::Accepted.as_str())
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        if changed == 1 {
            outbox::dequeue(&mut conn, &sid, at).await
        } else {
            Err(retention::Error::Conflict(
                "the submission can no longer be cancelled".into(),
            ))
        }
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
        if let Err(e) = preregistrations::unpair_withdrawn(ledger, db).await {
            tracing::warn!(error = %e, submission = %id, "unpairing deferred to the sweep");
        }
    }
    get(db, &caller.employer_id, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no submission {id}")))
}

fn not_cancellable(s: &Submission, now: DateTime<Utc>) -> Error {
    if s.status == Status::Cancelled {
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

#[cfg(test)]
mod tests {
    use super::*;
    use retention::LedgerConfig;
    use retention::testing::TestEnv;

    #[test]
    fn a_status_reads_back_from_its_stored_name_and_nothing_else_does() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
        let err = "Accepted".parse::<Status>().unwrap_err();
        assert!(err.contains("refused_by_authority"), "{err}");
    }

    retention::backend_tests!(
        a_batch_of_filings_is_numbered_and_written_together,
        a_filing_being_delivered_cannot_be_cancelled,
        a_filing_naming_many_persons_is_indexed_after_it_is_recorded,
        a_round_gives_back_only_the_rows_it_still_holds,
    );

    async fn employer(ledger: &Ledger) -> Caller {
        let e = crate::employers::add(
            ledger,
            &retention::SystemClock,
            Actor::System,
            "E",
            "12345678",
        )
        .await
        .unwrap()
        .employer;
        Caller {
            employer_id: e.id,
            registration_number: "12345678".into(),
            actor: Actor::System,
        }
    }

    fn accepting(caller: &Caller, i: usize, hold_window: Duration) -> Accepting {
        let original = bytes::Bytes::from(format!("<doc n=\"{i}\"/>"));
        Accepting {
            id: retention::MessageId::new().to_string(),
            employer_id: caller.employer_id.clone(),
            actor: Actor::System,
            origin: Origin::Signed {
                registrations: Vec::new(),
            },
            document_type: "contribution-report".into(),
            number_prefix: 'C',
            sha256: retention::Sha256Hex::of(&original).to_string(),
            original: original.into(),
            sender_reference: Some(format!("ref-{i}")),
            idempotency_key: None,
            signer_fingerprint: None,
            crl_sha256: None,
            ocsp_response: None,
            signed_digest: None,
            warnings: "[]".into(),
            hold_window,
            forward_within: Duration::hours(2),
            retain_until: Utc::now(),
            person_keys: crate::submissions::persons::PersonIndex::with_key([1; 32])
                .keys_of([format!("{i:010}").as_str(), "shared"]),
            persons_later: false,
        }
    }

    async fn count(env: &TestEnv, sql: &'static str) -> i64 {
        on_pool!(&env.db, pool => sqlx::query_scalar(sql).fetch_one(pool).await).unwrap()
    }

    /// A filing naming more persons than the recording transaction takes is recorded
    /// unmarked and indexed afterwards, in transactions of its own; a search by person
    /// waits for that, and indexes from the original a filing whose later indexing
    /// never ran (a restart cut it short).
    async fn a_filing_naming_many_persons_is_indexed_after_it_is_recorded(env: TestEnv) {
        use crate::submissions::persons::{self, PersonIndex};
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let caller = employer(&ledger).await;
        let index = PersonIndex::with_key([7; 32]);
        let clock: Arc<dyn retention::Clock> = Arc::new(retention::SystemClock);
        let unindexed = "SELECT COUNT(*) FROM submissions WHERE persons_indexed_at IS NULL";

        let ids: Vec<String> = (0..12_345).map(|i| format!("{i:010}")).collect();
        let keys = index.keys_of(ids.iter().map(String::as_str));
        assert_eq!(keys.len(), 12_345);
        assert!(keys.len() > persons::IN_TRANSACTION_AT_MOST);
        let mut a = accepting(&caller, 1, Duration::zero());
        a.person_keys = Vec::new();
        a.persons_later = true;
        let first = record(&ledger, env.keys.clone(), a).await.unwrap();
        assert_eq!(count(&env, unindexed).await, 1);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM person_index").await, 0);
        index.index_later(env.db.clone(), clock.clone(), first.id.clone(), keys);
        index
            .settle(&env.db, ledger.originals(), clock.now())
            .await
            .unwrap();
        assert_eq!(count(&env, unindexed).await, 0);
        assert_eq!(
            count(&env, "SELECT COUNT(*) FROM person_index").await,
            12_345
        );

        // Never indexed: the search's settle reads the original.
        let mut b = accepting(&caller, 2, Duration::zero());
        let original = bytes::Bytes::from(format!(
            "<ContributionReport xmlns=\"{}\"><Employee><PersonalId>8001011234</PersonalId>\
             </Employee><Employee><PersonalId>7005151000</PersonalId></Employee>\
             </ContributionReport>",
            crate::documents::NAMESPACE
        ));
        b.sha256 = retention::Sha256Hex::of(&original).to_string();
        b.original = original.into();
        b.person_keys = Vec::new();
        b.persons_later = true;
        let second = record(&ledger, env.keys.clone(), b).await.unwrap();
        index
            .settle(&env.db, ledger.originals(), clock.now())
            .await
            .unwrap();
        assert_eq!(count(&env, unindexed).await, 0);
        for id in ["8001011234", "7005151000"] {
            let named = persons::submissions_naming(&env.db, &index.key_of(id))
                .await
                .unwrap();
            assert_eq!(named, std::slice::from_ref(&second.id), "{id}");
        }
        task.shutdown().await;
    }

    /// Filings recorded at once share log batches: their rows are written together,
    /// their document numbers are distinct and consecutive, each receipt names its
    /// own number and position, and a filing whose row breaks a constraint (a sender
    /// reference used twice) fails alone.
    async fn a_batch_of_filings_is_numbered_and_written_together(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let caller = employer(&ledger).await;
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..40 {
            let mut a = accepting(&caller, i, Duration::zero());
            if i == 17 {
                a.sender_reference = Some("ref-3".into());
            }
            let (ledger, keys) = (ledger.clone(), env.keys.clone());
            calls.spawn(async move { (i, record(&ledger, keys, a).await) });
        }
        let mut made = Vec::new();
        let mut failed = Vec::new();
        while let Some(r) = calls.join_next().await {
            match r.unwrap() {
                (_, Ok(s)) => made.push(s),
                (i, Err(e)) => failed.push((i, e.to_string())),
            }
        }
        task.shutdown().await;
        // The second user of "ref-3" (3 or 17, whichever came later) fails alone.
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(made.len(), 39);
        let mut numbers: Vec<String> = made.iter().map(|s| s.document_number.clone()).collect();
        numbers.sort();
        numbers.dedup();
        assert_eq!(numbers.len(), 39, "distinct numbers");
        let tail: Vec<u32> = numbers
            .iter()
            .map(|n| n[n.len() - 6..].parse().unwrap())
            .collect();
        assert_eq!(tail, (1..=39).collect::<Vec<u32>>(), "no gaps: {numbers:?}");
        let jwks = env.keys.receipt_jwks();
        for s in &made {
            let claims = retention::receipts::verify(&s.receipt, &jwks).unwrap();
            assert_eq!(claims.document_number, s.document_number);
            assert_eq!(claims.log_seq, s.log_seq);
            assert_eq!(claims.sub, s.id);
        }
        assert_eq!(count(&env, "SELECT COUNT(*) FROM submissions").await, 39);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM outbox").await, 39);
        assert_eq!(
            count(
                &env,
                "SELECT COUNT(*) FROM submissions WHERE persons_indexed_at IS NULL"
            )
            .await,
            0
        );
        assert_eq!(
            count(&env, "SELECT COUNT(*) FROM person_index").await,
            39 * 2
        );
        // One receive entry per filing, at the position its receipt names.
        assert_eq!(
            count(
                &env,
                "SELECT COUNT(*) FROM submissions s JOIN log_entries e ON e.seq = s.log_seq \
                 WHERE e.action = 'submission.receive' AND e.subject = 'submission:' || s.id"
            )
            .await,
            39
        );
        let report = retention::ledger::verify::verify(
            &env.db,
            &env.originals,
            &env.keys.checkpoint_verifier(),
            &retention::ledger::verify::Silent,
        )
        .await
        .unwrap();
        assert!(report.ok(), "{:?}", report.problems);
    }

    /// A worker's lease on the outbox row means the filing is being delivered (a
    /// first attempt records `submission.forward` only with the authority's answer):
    /// a cancel then is refused, and allowed again once the lease is gone.
    async fn a_filing_being_delivered_cannot_be_cancelled(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let caller = employer(&ledger).await;
        let s = record(
            &ledger,
            env.keys.clone(),
            accepting(&caller, 1, Duration::hours(1)),
        )
        .await
        .unwrap();
        let now = Utc::now();
        let lease = |until: Option<DateTime<Utc>>| {
            let (db, id) = (env.db.clone(), s.id.clone());
            async move {
                on_pool!(&db, pool => {
                    sqlx::query("UPDATE outbox SET lease_owner = 'w', lease_until = $1 WHERE submission_id = $2")
                        .bind(until)
                        .bind(&id)
                        .execute(pool)
                        .await
                        .unwrap();
                });
            }
        };
        lease(Some(now + Duration::minutes(5))).await;
        let refused = cancel(&ledger, &env.db, &caller, &s.id, now)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("being forwarded"), "{refused}");
        assert_eq!(
            get(&env.db, &caller.employer_id, &s.id)
                .await
                .unwrap()
                .unwrap()
                .status,
            Status::Accepted
        );
        lease(None).await;
        let cancelled = cancel(&ledger, &env.db, &caller, &s.id, now).await.unwrap();
        assert_eq!(cancelled.status, Status::Cancelled);
        task.shutdown().await;
    }

    /// The forwarder gives a round's failed rows back in one transaction: each row
    /// it still holds gets its attempt count, due time and error, and a row whose
    /// lease went to another worker meanwhile is left as that worker has it.
    async fn a_round_gives_back_only_the_rows_it_still_holds(env: TestEnv) {
        use outbox::{self, Reschedule};
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let caller = employer(&ledger).await;
        let mut ids = Vec::new();
        for i in 0..3 {
            let s = record(
                &ledger,
                env.keys.clone(),
                accepting(&caller, i, Duration::zero()),
            )
            .await
            .unwrap();
            ids.push(s.id);
        }
        let now = Utc::now();
        let claimed = outbox::claim(
            &env.db,
            "a",
            now + Duration::seconds(1),
            now + Duration::minutes(5),
            10,
        )
        .await
        .unwrap();
        assert_eq!(claimed.len(), 3);
        // Worker b took the third row over (a's lease ran out meanwhile).
        on_pool!(&env.db, pool => {
            sqlx::query("UPDATE outbox SET lease_owner = 'b' WHERE submission_id = $1")
                .bind(&ids[2])
                .execute(pool)
                .await
                .unwrap();
        });
        let due = now + Duration::seconds(30);
        let again: Vec<Reschedule> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Reschedule {
                submission_id: id.clone(),
                attempts: 1,
                due_at: due,
                last_error: (i == 0).then(|| "x".repeat(1500)),
            })
            .collect();
        outbox::reschedule_all(&env.db, "a", &again).await.unwrap();
        #[derive(sqlx::FromRow)]
        struct Row {
            attempts: i64,
            due_at: DateTime<Utc>,
            last_error: Option<String>,
            lease_owner: Option<String>,
        }
        let mut rows = Vec::new();
        for id in &ids {
            let row: Row = on_pool!(&env.db, pool => {
                sqlx::query_as(
                    "SELECT attempts, due_at, last_error, lease_owner FROM outbox WHERE submission_id = $1",
                )
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap()
            });
            rows.push(row);
        }
        for row in &rows[..2] {
            assert_eq!((row.attempts, row.lease_owner.as_deref()), (1, None));
            assert_eq!(row.due_at.timestamp_millis(), due.timestamp_millis());
        }
        assert_eq!(rows[0].last_error.as_deref().map(str::len), Some(1000));
        assert_eq!(rows[1].last_error, None);
        assert_eq!(
            (rows[2].attempts, rows[2].lease_owner.as_deref()),
            (0, Some("b"))
        );
        // Nothing to give back is no statement at all.
        outbox::reschedule_all(&env.db, "a", &[]).await.unwrap();
        task.shutdown().await;
    }
}
