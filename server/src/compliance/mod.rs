//! Compliance: what officers may see of the record, and on what grounds.
//!
//! * [`officers`] — compliance officers (portal users of an organisation), their
//!   personal API tokens and authentication.
//! * [`crate::submissions::persons`] — the keyed person index: filings found by personal id without the
//!   id being stored in the index.
//! * [`search`] here — the log search. **Every query carries a legal basis and a
//!   reference number** ([`Basis`]; refused with `400` without them) and is itself
//!   logged (`compliance.search`: who, when, basis, reference, filters — a person as
//!   its index key, never the id —, number of results) *before* any result is
//!   answered: if the audit entry cannot be written, nothing is shown.
//! * [`read_original`] — every read of an original, through any route (employer API,
//!   portal, compliance), is logged as `original.read`.

pub mod evidence;
pub mod holds;
pub mod officers;
pub mod sweeper;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use retention::ledger::NewEntry;
use retention::{Actor, Db, Ledger, Payload, Sha256Hex, on_pool};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::submissions::persons::PersonIndex;
use officers::Officer;

/// Longest accepted legal basis, in characters.
pub const MAX_BASIS_CHARS: usize = 200;
/// Longest accepted reference number, in characters.
pub const MAX_REFERENCE_CHARS: usize = 100;
/// Most entries one search page returns.
pub const MAX_PAGE: i64 = 1000;
/// Entries a search page returns unless asked otherwise.
pub const DEFAULT_PAGE: i64 = 100;

/// The grounds of a query: the legal provision it is made under and the case or file
/// reference it belongs to. Both are required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Basis {
    pub legal_basis: String,
    pub reference_number: String,
}

impl Basis {
    /// Checks both are present and sane; the error lists every missing or bad one.
    pub fn new(legal_basis: Option<&str>, reference_number: Option<&str>) -> Result<Self, Error> {
        let mut problems = Vec::new();
        let mut field = |name: &str, value: Option<&str>, max: usize| -> String {
            let v = value.map(str::trim).unwrap_or("");
            if v.is_empty() {
                problems.push(format!("{name} is required"));
            } else if v.chars().count() > max || v.chars().any(char::is_control) {
                problems.push(format!(
                    "{name} must be at most {max} characters without control characters"
                ));
            }
            v.to_owned()
        };
        let legal_basis = field("legal_basis", legal_basis, MAX_BASIS_CHARS);
        let reference_number = field("reference_number", reference_number, MAX_REFERENCE_CHARS);
        if problems.is_empty() {
            Ok(Basis {
                legal_basis,
                reference_number,
            })
        } else {
            Err(Error::Invalid(format!(
                "every compliance query needs its legal basis and reference number: {}",
                problems.join("; ")
            )))
        }
    }
}

/// What to search the log for. Filters combine with AND; none means every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Filters {
    /// Entries about this employer's filings, and about the employer itself.
    pub employer: Option<String>,
    /// Entries about filings that name this personal id.
    pub person_id: Option<String>,
    pub document_number: Option<String>,
    pub message_id: Option<String>,
    /// An action (`submission.accept`) or a family (`submission.*`).
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Newest first, continuing below this log position.
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

/// One page of a search.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// The query's own id (the subject of its `compliance.search` entry).
    pub query_id: String,
    /// Where the query itself was logged.
    pub audit_log_seq: i64,
    pub entries: Vec<FoundEntry>,
    /// Pass as `before` for the next page; `null` on the last page.
    pub next_before: Option<i64>,
}

/// A log entry as a search shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FoundEntry {
    pub seq: i64,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub payload_sha256: Option<String>,
    /// The payload's bytes were removed at the end of their retention period (the
    /// hash stays in the log).
    pub payload_purged: bool,
    pub prev_hash: String,
    pub entry_hash: String,
}

/// Where a query came from (recorded in its audit entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Api,
    Portal,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Api => "api",
            Channel::Portal => "portal",
        }
    }
}

/// `submission.*` → `submission.%`; an exact action stays as it is. Only lowercase
/// letters, digits, `.` and `-` (so nothing in it is a LIKE wildcard).
fn action_filter(action: Option<&str>) -> Result<(Option<String>, Option<String>), Error> {
    let Some(a) = action.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok((None, None));
    };
    let (stem, family) = match a.strip_suffix(".*") {
        Some(stem) => (stem, true),
        None => (a, false),
    };
    if stem.is_empty()
        || stem.len() > 100
        || !stem
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(Error::Invalid(format!(
            "action {a:?} is not an action (e.g. submission.accept) or a family (submission.*)"
        )));
    }
    Ok(if family {
        (None, Some(format!("{stem}.%")))
    } else {
        (Some(stem.to_owned()), None)
    })
}

/// Searches the log for `officer` on `basis`, logging the query first; see the module
/// docs. A search by person first makes the person index complete up to `now`
/// ([`PersonIndex::settle`]).
#[allow(clippy::too_many_arguments)]
pub async fn search(
    db: &Db,
    ledger: &Ledger,
    index: &PersonIndex,
    officer: &Officer,
    basis: &Basis,
    filters: &Filters,
    channel: Channel,
    now: DateTime<Utc>,
) -> Result<Found, Error> {
    let (action, action_family) = action_filter(filters.action.as_deref())?;
    let limit = filters.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::Invalid(format!("limit must be 1 to {MAX_PAGE}")));
    }
    if let (Some(from), Some(to)) = (filters.from, filters.to)
        && from >= to
    {
        return Err(Error::Invalid("from must be before to".into()));
    }
    fn clean(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let employer = clean(&filters.employer);
    let message_id = clean(&filters.message_id);
    let document_number = clean(&filters.document_number);
    let person_key = clean(&filters.person_id).map(|p| index.key_of(p));
    if person_key.is_some() {
        index.settle(db, ledger.originals(), now).await?;
    }
    let by_filing = i64::from(
        employer.is_some()
            || message_id.is_some()
            || document_number.is_some()
            || person_key.is_some(),
    );
    let only_employer = i64::from(
        employer.is_some()
            && message_id.is_none()
            && document_number.is_none()
            && person_key.is_none(),
    );
    let sql = "SELECT e.seq, e.recorded_at, e.actor, e.action, e.subject, e.payload_sha256, \
               e.prev_hash, e.entry_hash, o.purged_at \
         FROM log_entries e LEFT JOIN originals o ON o.sha256 = e.payload_sha256 \
         WHERE ($1 IS NULL OR e.action = $1) \
         AND ($2 IS NULL OR e.action LIKE $2) \
         AND ($3 IS NULL OR e.recorded_at >= $3) \
         AND ($4 IS NULL OR e.recorded_at < $4) \
         AND ($5 IS NULL OR e.seq < $5) \
         AND ($6 = 0 \
              OR e.subject IN (SELECT 'submission:' || s.id FROM submissions s \
                   WHERE ($7 IS NULL OR s.employer_id = $7) \
                   AND ($8 IS NULL OR s.id = $8) \
                   AND ($9 IS NULL OR s.document_number = $9) \
                   AND ($10 IS NULL OR s.id IN \
                        (SELECT p.submission_id FROM person_index p WHERE p.person_key = $10))) \
              OR ($11 = 1 AND e.subject = 'employer:' || $7)) \
         ORDER BY e.seq DESC LIMIT $12";
    type Row = (
        i64,
        DateTime<Utc>,
        String,
        String,
        String,
        Option<String>,
        String,
        String,
        Option<DateTime<Utc>>,
    );
    let mut rows: Vec<Row> = on_pool!(db, pool => {
        sqlx::query_as(sql)
            .bind(&action)
            .bind(&action_family)
            .bind(filters.from)
            .bind(filters.to)
            .bind(filters.before)
            .bind(by_filing)
            .bind(employer)
            .bind(message_id)
            .bind(document_number)
            .bind(&person_key)
            .bind(only_employer)
            .bind(limit + 1)
            .fetch_all(pool)
            .await
            .map_err(retention::Error::from)?
    });
    let next_before = if rows.len() > usize::try_from(limit).unwrap_or(0) {
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        rows.last().map(|r| r.0)
    } else {
        None
    };
    let entries: Vec<FoundEntry> = rows
        .into_iter()
        .map(
            |(
                seq,
                recorded_at,
                actor,
                action,
                subject,
                payload_sha256,
                prev_hash,
                entry_hash,
                purged,
            )| {
                FoundEntry {
                    seq,
                    recorded_at,
                    actor,
                    action,
                    subject,
                    payload_purged: payload_sha256.is_some() && purged.is_some(),
                    payload_sha256,
                    prev_hash,
                    entry_hash,
                }
            },
        )
        .collect();

    // The audit entry first: no result leaves without it.
    let query_id = uuid::Uuid::now_v7().to_string();
    let audit = serde_json::json!({
        "officer": officer.user_id,
        "email": officer.email,
        "organisation": officer.organisation,
        "credential": officer.credential,
        "channel": channel.as_str(),
        "legal_basis": basis.legal_basis,
        "reference_number": basis.reference_number,
        "filters": {
            "employer": employer,
            "person_key": person_key,
            "document_number": document_number,
            "message_id": message_id,
            "action": filters.action,
            "from": filters.from.as_ref().map(retention::ledger::format_time),
            "to": filters.to.as_ref().map(retention::ledger::format_time),
            "before": filters.before,
            "limit": limit,
        },
        "results": entries.len(),
        "result_seqs": entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
    });
    let appended = ledger
        .append(NewEntry {
            actor: officer.actor(),
            action: "compliance.search".into(),
            subject: format!("compliance-query:{query_id}"),
            payload: Some(Payload::json(&audit)),
        })
        .await?;
    metrics::counter!("ivan_compliance_searches_total").increment(1);
    Ok(Found {
        query_id,
        audit_log_seq: appended.seq,
        entries,
        next_before,
    })
}

/// Why an original is being read, for its `original.read` entry.
#[derive(Debug, Clone)]
pub struct Read<'a> {
    /// Who reads it.
    pub reader: Actor,
    /// What it belongs to, e.g. `submission:<id>`.
    pub subject: String,
    /// The route, e.g. `api:/api/v1/submissions/{id}/original`.
    pub route: &'static str,
    /// A compliance officer's grounds.
    pub basis: Option<&'a Basis>,
}

/// Reads an original for `read`, logging the read first (`original.read`, payload:
/// the hash, the route and any legal basis). `Gone` when the retention policy purged
/// it; `NotFound` when the store has never had it.
pub async fn read_original(
    db: &Db,
    ledger: &Ledger,
    sha256: &str,
    read: Read<'_>,
) -> Result<Bytes, Error> {
    let hash = Sha256Hex::parse(sha256)
        .ok_or_else(|| Error::Invalid(format!("{sha256:?} is not a SHA-256")))?;
    let purged: Option<Option<DateTime<Utc>>> = on_pool!(db, pool => {
        sqlx::query_scalar("SELECT purged_at FROM originals WHERE sha256 = $1")
            .bind(hash.as_str())
            .fetch_optional(pool)
            .await
            .map_err(retention::Error::from)?
    });
    match purged {
        None => return Err(Error::NotFound(format!("no original {sha256}"))),
        Some(Some(at)) => {
            return Err(Error::Gone(format!(
                "original {sha256} was purged on {} at the end of its retention period; its hash stays in the log",
                retention::ledger::format_time(&at)
            )));
        }
        Some(None) => {}
    }
    let mut payload = serde_json::json!({
        "sha256": hash.as_str(),
        "route": read.route,
    });
    if let Some(b) = read.basis {
        payload["legal_basis"] = b.legal_basis.clone().into();
        payload["reference_number"] = b.reference_number.clone().into();
    }
    ledger
        .append(NewEntry {
            actor: read.reader,
            action: "original.read".into(),
            subject: read.subject,
            payload: Some(Payload::json(&payload)),
        })
        .await?;
    metrics::counter!("ivan_original_reads_total").increment(1);
    Ok(ledger.originals().get(&hash).await?)
}

/// Which filing an original belongs to, for an officer's read by hash: the
/// submission whose document or answer it is. `None` if it is neither.
pub async fn owner_of(db: &Db, sha256: &str) -> Result<Option<String>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT id FROM submissions WHERE sha256 = $1 \
             UNION SELECT submission_id FROM answers WHERE sha256 = $1 LIMIT 1",
        )
        .bind(sha256)
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basis_is_required_and_bounded() {
        assert!(Basis::new(Some("§ 12 SIA"), Some("C-2026-17")).is_ok());
        for (b, r) in [
            (None, Some("x")),
            (Some("x"), None),
            (Some("  "), Some("x")),
            (Some("x"), Some("\u{7}")),
        ] {
            let e = Basis::new(b, r).unwrap_err().to_string();
            assert!(e.contains("legal basis"), "{e}");
        }
        let long = "x".repeat(MAX_BASIS_CHARS + 1);
        assert!(Basis::new(Some(&long), Some("r")).is_err());
        let e = Basis::new(None, None).unwrap_err().to_string();
        assert!(
            e.contains("legal_basis is required") && e.contains("reference_number is required"),
            "{e}"
        );
    }

    #[test]
    fn actions_and_families() {
        assert_eq!(
            action_filter(Some("submission.accept")).unwrap(),
            (Some("submission.accept".into()), None)
        );
        assert_eq!(
            action_filter(Some("submission.*")).unwrap(),
            (None, Some("submission.%".into()))
        );
        assert_eq!(action_filter(None).unwrap(), (None, None));
        for bad in ["a_b", "%", "Submission", ".*", "a b"] {
            assert!(action_filter(Some(bad)).is_err(), "{bad}");
        }
    }
}
