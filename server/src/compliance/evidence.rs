//! Evidence export: the record about a set of filings as one bundle
//! ([`retention::evidence`], format in `docs/evidence.md`), for a compliance officer
//! (`GET /api/v1/compliance/evidence`) or the operator (`ivan evidence export`).
//!
//! For each filing the bundle holds every log entry about it (`submission:<id>`) with
//! the chain links from each up to the signed checkpoint that covers it, the
//! checkpoints, the payloads of its entries (the document as received, the
//! authority's answers, …; purged ones listed as such), its receipt, the signer's
//! certificate with the CA certificates that issued it, and the CRL it was checked
//! against. A checkpoint is written first, so the newest entries are covered too.
//!
//! The export is logged (`compliance.evidence`: who, legal basis, reference, the
//! selection, the filings and each filing's document) **before** the bundle is
//! made; an export that cannot be logged is not made. The other payloads the bundle
//! carries (answers, the authority's JSON) are those of the listed filings' entries.

use std::collections::BTreeSet;
use std::io::{Cursor, Write};

use chrono::{DateTime, Utc};
use retention::evidence::{self, Contents, OriginalRef, Receipt};
use retention::keys::Keys;
use retention::ledger::{Checkpoint, Entry, NewEntry};
use retention::{Actor, Db, Ledger, Payload, Sha256Hex, on_pool};
use serde::Serialize;

use super::Basis;
use crate::Error;
use crate::submissions::persons::PersonIndex;

/// Most filings one bundle holds.
pub const MAX_FILINGS: usize = 1000;

/// Which filings a bundle is about. At least one field must be set; they combine
/// with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Selection {
    pub message_ids: Vec<String>,
    pub employer: Option<String>,
    #[serde(skip)]
    pub person_id: Option<String>,
    pub document_number: Option<String>,
    #[serde(serialize_with = "retention::ledger::serialize_opt_time")]
    pub from: Option<DateTime<Utc>>,
    #[serde(serialize_with = "retention::ledger::serialize_opt_time")]
    pub to: Option<DateTime<Utc>>,
}

impl Selection {
    fn is_empty(&self) -> bool {
        self.message_ids.is_empty()
            && self.employer.is_none()
            && self.person_id.is_none()
            && self.document_number.is_none()
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    pub filings: Vec<String>,
    pub bytes: u64,
    pub manifest_sha256: String,
    pub checkpoint_key_ids: Vec<String>,
    /// Where the export itself was logged.
    pub audit_log_seq: i64,
}

/// One filing's rows the bundle needs.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Filing {
    id: String,
    employer_id: String,
    document_type: String,
    document_number: String,
    #[sqlx(try_from = "String")]
    status: crate::submissions::Status,
    sha256: String,
    receipt: String,
    signer_fingerprint: Option<String>,
    crl_sha256: Option<String>,
}

/// The filings `sel` names, at most [`MAX_FILINGS`] (more is an error, so a bundle
/// is never silently partial).
async fn select(
    db: &Db,
    ledger: &Ledger,
    index: &PersonIndex,
    sel: &Selection,
    now: DateTime<Utc>,
) -> Result<Vec<Filing>, Error> {
    if sel.is_empty() {
        return Err(Error::Invalid(
            "say which filings: message_id, employer, document_number or person_id".into(),
        ));
    }
    if sel.message_ids.len() > MAX_FILINGS {
        return Err(Error::Invalid(format!(
            "at most {MAX_FILINGS} message ids per bundle"
        )));
    }
    let person_key = sel.person_id.as_deref().map(|p| index.key_of(p));
    if person_key.is_some() {
        index.settle(db, ledger.originals(), now).await?;
    }
    let mut rows: Vec<Filing> = Vec::new();
    if sel.message_ids.is_empty() {
        let limit = i64::try_from(MAX_FILINGS + 1).unwrap_or(i64::MAX);
        rows = matching(db, sel, person_key.as_deref(), None, limit).await?;
    } else {
        for id in &sel.message_ids {
            let mut found = matching(db, sel, person_key.as_deref(), Some(id), 1).await?;
            match found.pop() {
                Some(f) if !rows.iter().any(|r| r.id == f.id) => rows.push(f),
                Some(_) => {}
                None => {
                    return Err(Error::NotFound(format!(
                        "no filing {id} matches the selection"
                    )));
                }
            }
        }
    }
    if rows.is_empty() {
        return Err(Error::NotFound("no filing matches the selection".into()));
    }
    if rows.len() > MAX_FILINGS {
        return Err(Error::Invalid(format!(
            "the selection matches more than {MAX_FILINGS} filings; narrow it (e.g. by dates) and export in parts"
        )));
    }
    Ok(rows)
}

/// Filings matching the selection's filters (and message id `id`, if given).
async fn matching(
    db: &Db,
    sel: &Selection,
    person_key: Option<&str>,
    id: Option<&str>,
    limit: i64,
) -> Result<Vec<Filing>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT id, employer_id, document_type, document_number, status, sha256, receipt, \
             signer_fingerprint, crl_sha256 FROM submissions s \
             WHERE ($1 IS NULL OR s.employer_id = $1) \
             AND ($2 IS NULL OR s.document_number = $2) \
             AND ($3 IS NULL OR s.received_at >= $3) \
             AND ($4 IS NULL OR s.received_at < $4) \
             AND ($5 IS NULL OR s.id IN (SELECT p.submission_id FROM person_index p WHERE p.person_key = $5)) \
             AND ($6 IS NULL OR s.id = $6) \
             ORDER BY s.id LIMIT $7",
        )
        .bind(&sel.employer)
        .bind(&sel.document_number)
        .bind(sel.from)
        .bind(sel.to)
        .bind(person_key)
        .bind(id)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    }))
}

async fn entries_about(db: &Db, id: &str) -> Result<Vec<Entry>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT seq, recorded_at, actor, action, subject, payload_sha256, prev_hash, entry_hash \
             FROM log_entries WHERE subject = $1 ORDER BY seq",
        )
        .bind(format!("submission:{id}"))
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    }))
}

/// Collects the contents of a bundle about `filings`.
async fn collect(
    db: &Db,
    filings: &[Filing],
    created_by: &Actor,
    query: serde_json::Value,
    now: DateTime<Utc>,
    horizon: i64,
) -> Result<Contents, Error> {
    let mut subject_entries: Vec<Entry> = Vec::new();
    for f in filings {
        subject_entries.extend(
            entries_about(db, &f.id)
                .await?
                .into_iter()
                .filter(|e| e.seq <= horizon),
        );
    }
    // The checkpoints that cover them, and the chain runs up to those. In ascending
    // order, the checkpoint covering the previous entry covers this one too when it
    // is at or after it (there is no checkpoint between them).
    let mut seqs: Vec<i64> = subject_entries.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    for &seq in &seqs {
        if checkpoints.last().is_some_and(|c| c.tree_size >= seq) {
            continue;
        }
        let cp = retention::ledger::covering_checkpoint(db, seq)
            .await?
            .ok_or_else(|| {
                Error::Unavailable(format!(
                    "log entry {seq} is not covered by a checkpoint yet; retry in a minute"
                ))
            })?;
        checkpoints.push(cp);
    }
    let sizes: Vec<i64> = checkpoints.iter().map(|c| c.tree_size).collect();
    let runs = evidence::chain_link_ranges(&seqs, &sizes)?;
    let mut entries: Vec<Entry> = Vec::new();
    for run in runs {
        let len = run.end() - run.start() + 1;
        entries.extend(retention::ledger::entries_after(db, run.start() - 1, len).await?);
    }

    // Payloads of the filings' own entries: included, or listed as purged.
    let mut originals = Vec::new();
    let mut purged = Vec::new();
    let mut seen = BTreeSet::new();
    for e in &subject_entries {
        let Some(sha) = e.payload_sha256.as_deref() else {
            continue;
        };
        if !seen.insert(sha.to_owned()) {
            continue;
        }
        let hash = Sha256Hex::parse(sha)
            .ok_or_else(|| Error::Invalid(format!("stored payload hash {sha:?} is malformed")))?;
        let row: Option<(i64, Option<DateTime<Utc>>)> = on_pool!(db, pool => {
            sqlx::query_as("SELECT size_bytes, purged_at FROM originals WHERE sha256 = $1")
                .bind(sha)
                .fetch_optional(pool)
                .await
                .map_err(retention::Error::from)?
        });
        match row {
            Some((_, Some(_))) => purged.push(hash),
            Some((size, None)) => originals.push(OriginalRef {
                sha256: hash,
                size: u64::try_from(size).unwrap_or(0),
            }),
            None => {
                return Err(Error::Invalid(format!(
                    "payload {sha} of entry {} is not in the originals index",
                    e.seq
                )));
            }
        }
    }

    let mut receipts = Vec::new();
    let mut certificates: Vec<Vec<u8>> = Vec::new();
    let mut crls: Vec<Vec<u8>> = Vec::new();
    let mut summaries = Vec::new();
    for f in filings {
        if !f.receipt.is_empty() {
            receipts.push(Receipt {
                message_id: f.id.clone(),
                jws: f.receipt.clone(),
            });
        }
        let mut cert_hashes = Vec::new();
        if let Some(fp) = &f.signer_fingerprint {
            let row: Option<(Vec<u8>, String)> = on_pool!(db, pool => {
                sqlx::query_as("SELECT der, issuer FROM employer_certificates WHERE fingerprint = $1")
                    .bind(fp)
                    .fetch_optional(pool)
                    .await
                    .map_err(retention::Error::from)?
            });
            if let Some((der, issuer)) = row {
                cert_hashes.push(Sha256Hex::of(&der).to_string());
                certificates.push(der);
                let anchors: Vec<Vec<u8>> = on_pool!(db, pool => {
                    sqlx::query_scalar("SELECT der FROM trust_anchors WHERE subject = $1 ORDER BY sha256")
                        .bind(&issuer)
                        .fetch_all(pool)
                        .await
                        .map_err(retention::Error::from)?
                });
                for der in anchors {
                    cert_hashes.push(Sha256Hex::of(&der).to_string());
                    certificates.push(der);
                }
            }
        }
        let mut crl_hashes = Vec::new();
        if let Some(crl) = &f.crl_sha256 {
            let der: Option<Vec<u8>> = on_pool!(db, pool => {
                sqlx::query_scalar("SELECT der FROM crls WHERE sha256 = $1")
                    .bind(crl)
                    .fetch_optional(pool)
                    .await
                    .map_err(retention::Error::from)?
            });
            if let Some(der) = der {
                crl_hashes.push(Sha256Hex::of(&der).to_string());
                crls.push(der);
            }
        }
        let answers: Vec<String> = on_pool!(db, pool => {
            sqlx::query_scalar("SELECT sha256 FROM answers WHERE submission_id = $1 ORDER BY n")
                .bind(&f.id)
                .fetch_all(pool)
                .await
                .map_err(retention::Error::from)?
        });
        summaries.push(serde_json::json!({
            "message_id": f.id,
            "employer": f.employer_id,
            "document_type": f.document_type,
            "document_number": f.document_number,
            "status": f.status,
            "original_sha256": f.sha256,
            "answer_sha256s": answers,
            "certificate_sha256s": cert_hashes,
            "crl_sha256s": crl_hashes,
        }));
    }
    let proofs = proofs(db, &entries, &checkpoints).await?;
    Ok(Contents {
        created_at: now,
        created_by: created_by.to_string(),
        query,
        subjects: filings
            .iter()
            .map(|f| format!("submission:{}", f.id))
            .collect(),
        entries,
        checkpoints,
        originals,
        purged,
        receipts,
        certificates,
        crls,
        submissions: Some(serde_json::Value::Array(summaries)),
        proofs,
    })
}

/// The proofs tying `entries` and `checkpoints` to the log's newest checkpoint: each
/// entry's inclusion, each C2SP checkpoint's consistency (docs/evidence.md). `None`
/// while the newest checkpoint has no C2SP note (a log from before the tree).
async fn proofs(
    db: &Db,
    entries: &[Entry],
    checkpoints: &[Checkpoint],
) -> Result<Option<evidence::Proofs>, Error> {
    use base64::Engine;
    use retention::ledger::tree;
    let Some(newest) = retention::ledger::latest_checkpoint(db).await? else {
        return Ok(None);
    };
    let Some(checkpoint) = retention::ledger::witness::cosigned_note(db, &newest).await? else {
        return Ok(None);
    };
    let size = u64::try_from(newest.tree_size).unwrap_or_default();
    let b64 = |hs: Vec<tree::Hash>| -> Vec<String> {
        hs.iter()
            .map(|h| base64::engine::general_purpose::STANDARD.encode(h.0))
            .collect()
    };
    let mut inclusion = Vec::with_capacity(entries.len());
    for e in entries {
        let leaf = u64::try_from(e.seq - 1).unwrap_or_default();
        inclusion.push(evidence::InclusionProof {
            seq: e.seq,
            proof: b64(tree::inclusion(db, leaf, size).await?.proof),
        });
    }
    let mut consistency = Vec::new();
    for cp in checkpoints.iter().filter(|c| c.signed_note.is_some()) {
        let from = u64::try_from(cp.tree_size).unwrap_or_default();
        consistency.push(evidence::ConsistencyProof {
            tree_size: cp.tree_size,
            proof: b64(tree::consistency(db, from, size).await?.proof),
        });
    }
    Ok(Some(evidence::Proofs {
        checkpoint,
        inclusion,
        consistency,
    }))
}

/// Exports the bundle about the filings `sel` names into `out`, for `actor` on
/// `basis`; see the module docs. `out` is written on a blocking thread.
#[allow(clippy::too_many_arguments)]
pub async fn export<W: Write + Send + 'static>(
    db: &Db,
    ledger: &Ledger,
    keys: std::sync::Arc<Keys>,
    index: &PersonIndex,
    actor: Actor,
    basis: &Basis,
    sel: &Selection,
    route: &str,
    now: DateTime<Utc>,
    out: W,
) -> Result<(Exported, W), Error> {
    let filings = select(db, ledger, index, sel, now).await?;
    let ids: Vec<String> = filings.iter().map(|f| f.id.clone()).collect();
    let mut query = serde_json::json!({
        "legal_basis": basis.legal_basis,
        "reference_number": basis.reference_number,
        "selection": sel,
        "route": route,
    });
    if let Some(p) = &sel.person_id {
        query["selection"]["person_key"] = index.key_of(p).into();
    }
    // Log the export (and so every original it hands out) first.
    let audit = serde_json::json!({
        "query": query,
        "filings": ids,
        "originals": filings.iter().map(|f| f.sha256.clone()).collect::<Vec<_>>(),
    });
    let appended = ledger
        .append(NewEntry {
            actor: actor.clone(),
            action: "compliance.evidence".into(),
            subject: format!("evidence:{}", uuid::Uuid::now_v7()),
            payload: Some(Payload::json(&audit)),
        })
        .await?;
    // Cover every entry, the newest included, by a signed checkpoint; entries
    // appended after it are after the export and not in the bundle.
    let horizon = match ledger.checkpoint_now().await? {
        Some(cp) => cp.tree_size,
        None => retention::ledger::latest_checkpoint(db)
            .await?
            .map_or(0, |cp| cp.tree_size),
    };
    let contents = collect(db, &filings, &actor, query, now, horizon).await?;
    let originals = ledger.originals().clone();
    let handle = tokio::runtime::Handle::current();
    let (summary, out) = tokio::task::spawn_blocking(move || {
        let mut out = out;
        let summary = evidence::write(
            &contents,
            &keys,
            |sha| {
                handle
                    .block_on(originals.get(sha))
                    .map(Cursor::new)
                    .map_err(std::io::Error::other)
            },
            &mut out,
        )?;
        out.flush()
            .map_err(|e| retention::Error::Invalid(format!("cannot write the bundle: {e}")))?;
        Ok::<_, retention::Error>((summary, out))
    })
    .await
    .map_err(|e| Error::Invalid(format!("evidence export task failed: {e}")))??;
    metrics::counter!("ivan_evidence_exports_total").increment(1);
    Ok((
        Exported {
            filings: ids,
            bytes: summary.bytes,
            manifest_sha256: summary.manifest_sha256,
            checkpoint_key_ids: summary.checkpoint_key_ids,
            audit_log_seq: appended.seq,
        },
        out,
    ))
}
