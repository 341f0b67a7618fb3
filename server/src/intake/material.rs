//! Trust material: the CA certificates `ivan` trusts, the CRLs it has, and the
//! signing certificates registered for each employer. The operator adds them with
//! `ivan admin ca add`, `ivan admin crl add` and `ivan admin cert add`; each addition
//! is a log entry whose payload is the certificate or CRL itself (so the CRL used
//! for any signature is kept as an original, and the signature can be re-validated
//! in ten years).
//!
//! The running server reads anchors and CRLs through [`Cache`], which reloads them
//! when older than `intake.trust_reload_secs`: additions made by the CLI beside a
//! running server take effect within that time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use retention::ledger::{NewEntry, Work};
use retention::{Actor, Clock, Db, Ledger, Payload, on_conn, on_pool};
use serde::Serialize;
use tokio::sync::Mutex;

use super::trust::{self, Anchor, Crl};
use crate::Error;

/// A registered employer signing certificate, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RegisteredCert {
    pub fingerprint: String,
    pub employer_id: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub added_at: DateTime<Utc>,
    /// Since when it no longer authorises filings (`ivan admin cert remove`).
    #[serde(serialize_with = "retention::ledger::serialize_opt_time")]
    pub removed_at: Option<DateTime<Utc>>,
    /// The smallest `intake.cert_expiry_warn_days` step its employer was warned at.
    #[serde(skip)]
    pub expiry_warned_days: Option<i64>,
}

/// The columns of [`RegisteredCert`].
const CERT_COLUMNS: &str = "fingerprint, employer_id, subject, issuer, serial, not_before, \
    not_after, added_at, removed_at, expiry_warned_days";

/// What an `admin … add` command reports.
#[derive(Debug, Clone, Serialize)]
pub struct Added {
    pub sha256: String,
    pub description: String,
    pub log_seq: i64,
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(e.to_string())
}

/// A duplicate row refused as the thing `what` names being registered already.
fn conflict_on_duplicate(
    r: Result<(), retention::Error>,
    what: String,
) -> Result<(), retention::Error> {
    retention::conflict_on_duplicate(r, || format!("{what} is already registered"))
}

/// Adds a trusted CA certificate (PEM or DER).
pub async fn add_anchor(
    ledger: &Ledger,
    clock: &dyn Clock,
    actor: Actor,
    bytes: &[u8],
) -> Result<Added, Error> {
    let anchor = Anchor::parse(bytes).map_err(invalid)?;
    let (sha, subject, not_after, der) = (
        anchor.sha256(),
        anchor.subject(),
        anchor.not_after(),
        anchor.der.clone(),
    );
    let now = clock.now();
    let (s2, subj2) = (sha.clone(), subject.clone());
    let work: Work = retention::work!(|conn, _at| {
        let r = on_conn!(&mut conn, c => {
            sqlx::query("INSERT INTO trust_anchors (sha256, subject, not_after, der, added_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&s2).bind(&subj2).bind(not_after).bind(&der).bind(now)
                .execute(&mut *c).await.map(drop).map_err(retention::Error::from)
        });
        conflict_on_duplicate(r, format!("CA certificate {subj2}"))
    });
    let at = ledger
        .append_with(
            entry(
                actor,
                "trust.ca.add",
                format!("certificate:{sha}"),
                bytes_of(&anchor.der, "application/pkix-cert"),
            ),
            work,
        )
        .await?;
    Ok(Added {
        sha256: sha,
        description: subject,
        log_seq: at.seq,
    })
}

/// Adds a CRL (PEM or DER). It must be issued by a trusted CA (its signature is
/// checked when it is used; here we check that its issuer is one we trust).
pub async fn add_crl(
    ledger: &Ledger,
    db: &Db,
    clock: &dyn Clock,
    actor: Actor,
    bytes: &[u8],
) -> Result<Added, Error> {
    let crl = Crl::parse(bytes).map_err(invalid)?;
    let anchors = load_anchors(db).await?;
    // A trusted CA's, or an intermediate CA's that issued a registered certificate.
    // (Its signature is checked against the chain whenever it is used.)
    if !anchors.iter().any(|a| crl.issued_by(a))
        && certs_where(
            db,
            "removed_at IS NULL AND issuer = $1",
            &[Bind::Text(&crl.issuer_name())],
        )
        .await?
        .is_empty()
    {
        return Err(Error::Invalid(format!(
            "the CRL is issued by {}, which is neither a trusted CA nor the CA of a registered \
             certificate; add the CA first (ivan admin ca add), or register a certificate \
             it issued (ivan admin cert add)",
            crl.issuer_name()
        )));
    }
    let (sha, issuer) = (crl.sha256(), crl.issuer_name());
    let (this_update, next_update, der) = (crl.this_update(), crl.next_update(), crl.der.clone());
    let now = clock.now();
    let (s2, i2) = (sha.clone(), issuer.clone());
    let work: Work = retention::work!(|conn, _at| {
        let r = on_conn!(&mut conn, c => {
            sqlx::query("INSERT INTO crls (sha256, issuer, this_update, next_update, der, added_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&s2).bind(&i2).bind(this_update).bind(next_update).bind(&der).bind(now)
                .execute(&mut *c).await.map(drop).map_err(retention::Error::from)
        });
        conflict_on_duplicate(r, "this CRL".into())
    });
    // The CRL's bytes are the entry's payload: stored as an original under the same
    // SHA-256 that submissions name in `crl_sha256`.
    let at = ledger
        .append_with(
            entry(
                actor,
                "trust.crl.add",
                format!("crl:{sha}"),
                bytes_of(&crl.der, "application/pkix-crl"),
            ),
            work,
        )
        .await?;
    Ok(Added {
        sha256: sha,
        description: format!(
            "CRL of {issuer}, this update {}",
            retention::ledger::format_time(&this_update)
        ),
        log_seq: at.seq,
    })
}

/// Registers a signing certificate (PEM or DER) for an employer.
pub async fn add_employer_cert(
    ledger: &Ledger,
    db: &Db,
    clock: &dyn Clock,
    actor: Actor,
    employer_id: &str,
    bytes: &[u8],
) -> Result<Added, Error> {
    let info = trust::parse_certificate_pem_or_der(bytes).map_err(invalid)?;
    let exists: Option<String> = on_pool!(db, pool => {
        sqlx::query_scalar("SELECT id FROM employers WHERE id = $1").bind(employer_id)
            .fetch_optional(pool).await.map_err(retention::Error::from)?
    });
    if exists.is_none() {
        return Err(Error::NotFound(format!(
            "no employer {employer_id} (see ivan admin employer list)"
        )));
    }
    let now = clock.now();
    let row = RegisteredCert {
        fingerprint: info.fingerprint.clone(),
        employer_id: employer_id.to_owned(),
        subject: info.subject.clone(),
        issuer: info.issuer.clone(),
        serial: info.serial_hex.clone(),
        not_before: info.not_before,
        not_after: info.not_after,
        added_at: now,
        removed_at: None,
        expiry_warned_days: None,
    };
    let der = info.der.clone();
    let r2 = row.clone();
    let work: Work = retention::work!(|conn, _at| {
        let r = on_conn!(&mut conn, c => {
            sqlx::query(
                "INSERT INTO employer_certificates \
                 (fingerprint, employer_id, subject, issuer, serial, not_before, not_after, der, added_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&r2.fingerprint).bind(&r2.employer_id).bind(&r2.subject).bind(&r2.issuer)
            .bind(&r2.serial).bind(r2.not_before).bind(r2.not_after).bind(&der).bind(r2.added_at)
            .execute(&mut *c).await.map(drop).map_err(retention::Error::from)
        });
        conflict_on_duplicate(r, format!("certificate {}", r2.fingerprint))
    });
    let at = ledger
        .append_with(
            entry(
                actor,
                "trust.cert.add",
                format!("employer:{employer_id}"),
                bytes_of(&info.der, "application/pkix-cert"),
            ),
            work,
        )
        .await?;
    Ok(Added {
        sha256: row.fingerprint,
        description: format!("{} for employer {employer_id}", row.subject),
        log_seq: at.seq,
    })
}

/// A trusted CA certificate, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TrustedCa {
    pub sha256: String,
    pub subject: String,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub not_after: DateTime<Utc>,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub added_at: DateTime<Utc>,
    /// Since when it is no longer trusted (`ivan admin ca remove`).
    #[serde(serialize_with = "retention::ledger::serialize_opt_time")]
    pub removed_at: Option<DateTime<Utc>>,
}

/// Every CA certificate added (removed ones too), in the order they were added.
pub async fn list_anchors(db: &Db) -> Result<Vec<TrustedCa>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT sha256, subject, not_after, added_at, removed_at FROM trust_anchors \
             ORDER BY added_at, sha256",
        )
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    }))
}

/// Stops trusting the CA certificate with SHA-256 `sha256`: its certificates no
/// longer sign filings (`certificate.untrusted`) once running servers reload their
/// trust material. The row stays for the evidence of what was trusted before; logged
/// as `trust.ca.remove` with the reason.
pub async fn remove_anchor(
    ledger: &Ledger,
    db: &Db,
    actor: Actor,
    sha256: &str,
    reason: &str,
) -> Result<i64, Error> {
    let reason = checked_reason(reason)?;
    let removed_at = list_anchors(db)
        .await?
        .into_iter()
        .find(|a| a.sha256 == sha256)
        .map(|a| a.removed_at)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no trusted CA certificate {sha256} (see ivan admin ca list)"
            ))
        })?;
    if removed_at.is_some() {
        return Err(Error::Conflict(format!(
            "CA certificate {sha256} was removed already"
        )));
    }
    let sha = sha256.to_owned();
    let work: Work = retention::work!(|conn, at| {
        let changed = on_conn!(&mut conn, c => {
            sqlx::query(
                "UPDATE trust_anchors SET removed_at = $1 WHERE sha256 = $2 AND removed_at IS NULL",
            )
            .bind(at.recorded_at()).bind(&sha)
            .execute(&mut *c).await?.rows_affected()
        });
        if changed == 1 {
            Ok(())
        } else {
            Err(retention::Error::Conflict(format!(
                "CA certificate {sha} was removed already"
            )))
        }
    });
    let payload = serde_json::json!({ "sha256": sha256, "reason": reason });
    let entry = NewEntry {
        actor,
        action: "trust.ca.remove".into(),
        subject: format!("certificate:{sha256}"),
        payload: Some(Payload::json(&payload)),
    };
    Ok(ledger.append_with(entry, work).await?.seq)
}

/// A removal's reason: 1 to 500 characters, trimmed.
fn checked_reason(reason: &str) -> Result<&str, Error> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(Error::Invalid(
            "say why it is removed (--reason, 1 to 500 characters)".into(),
        ));
    }
    Ok(reason)
}

/// Stops a registered certificate of `employer_id` from authorising filings (its row
/// and the filings it signed stay): logged as `trust.cert.remove` with the reason.
pub async fn remove_employer_cert(
    ledger: &Ledger,
    db: &Db,
    actor: Actor,
    employer_id: &str,
    fingerprint: &str,
    reason: &str,
) -> Result<i64, Error> {
    let reason = checked_reason(reason)?;
    match cert(db, fingerprint).await? {
        Some(c) if c.employer_id == employer_id && c.removed_at.is_none() => {}
        Some(c) if c.employer_id == employer_id => {
            return Err(Error::Conflict(format!(
                "certificate {fingerprint} was removed already"
            )));
        }
        _ => {
            return Err(Error::NotFound(format!(
                "employer {employer_id} has no registered certificate {fingerprint} \
                 (see ivan admin cert list)"
            )));
        }
    }
    let (eid, fp) = (employer_id.to_owned(), fingerprint.to_owned());
    let work: Work = retention::work!(|conn, at| {
        let changed = on_conn!(&mut conn, c => {
            sqlx::query(
                "UPDATE employer_certificates SET removed_at = $1 \
                 WHERE fingerprint = $2 AND employer_id = $3 AND removed_at IS NULL",
            )
            .bind(at.recorded_at()).bind(&fp).bind(&eid)
            .execute(&mut *c).await?.rows_affected()
        });
        if changed == 1 {
            Ok(())
        } else {
            Err(retention::Error::Conflict(format!(
                "certificate {fp} was removed already"
            )))
        }
    });
    let payload = serde_json::json!({ "fingerprint": fingerprint, "reason": reason });
    let at = ledger
        .append_with(
            NewEntry {
                actor,
                action: "trust.cert.remove".into(),
                subject: format!("employer:{employer_id}"),
                payload: Some(Payload::json(&payload)),
            },
            work,
        )
        .await?;
    Ok(at.seq)
}

/// Every registered employer certificate (removed ones too), by employer then time
/// added.
pub async fn list_employer_certs(db: &Db) -> Result<Vec<RegisteredCert>, Error> {
    certs_where(db, "TRUE ORDER BY employer_id, added_at, fingerprint", &[]).await
}

/// The employer's certificates in use that expire (or expired) before `before`,
/// soonest first: what its dashboard warns about.
pub async fn expiring_certs(
    db: &Db,
    employer_id: &str,
    before: DateTime<Utc>,
) -> Result<Vec<RegisteredCert>, Error> {
    let condition = "employer_id = $1 AND not_after < $2 AND removed_at IS NULL ORDER BY not_after";
    certs_where(
        db,
        condition,
        &[Bind::Text(employer_id), Bind::Time(before)],
    )
    .await
}

/// The registered certificate with `fingerprint`, if any (removed or not).
pub async fn cert(db: &Db, fingerprint: &str) -> Result<Option<RegisteredCert>, Error> {
    Ok(
        certs_where(db, "fingerprint = $1", &[Bind::Text(fingerprint)])
            .await?
            .pop(),
    )
}

/// A value for a `$n` of [`certs_where`].
#[derive(Clone, Copy)]
enum Bind<'a> {
    Text(&'a str),
    Time(DateTime<Utc>),
}

/// The certificates `condition` (SQL of this module over `$1`, `$2`, … = `binds`)
/// selects.
async fn certs_where(
    db: &Db,
    condition: &str,
    binds: &[Bind<'_>],
) -> Result<Vec<RegisteredCert>, Error> {
    let sql = format!("SELECT {CERT_COLUMNS} FROM employer_certificates WHERE {condition}");
    Ok(on_pool!(db, pool => {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for b in binds {
            query = match *b {
                Bind::Text(t) => query.bind(t),
                Bind::Time(t) => query.bind(t),
            };
        }
        query.fetch_all(pool).await.map_err(retention::Error::from)?
    }))
}

/// The URLs CRLs are fetched from: `configured` (`intake.crl_urls`) and the CRL
/// distribution points named by the trusted CAs and the certificates in use,
/// without repeats.
pub async fn crl_sources(db: &Db, configured: &[String]) -> Result<Vec<String>, Error> {
    let ders: Vec<Vec<u8>> = on_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT der FROM employer_certificates WHERE removed_at IS NULL \
             UNION ALL SELECT der FROM trust_anchors WHERE removed_at IS NULL",
        )
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    });
    let mut urls: Vec<String> = configured.to_vec();
    for der in &ders {
        for url in trust::crl_urls(der) {
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    Ok(urls)
}

/// The largest CRL fetched.
const MAX_CRL_BYTES: usize = 20 * 1024 * 1024;

/// Fetches the CRLs at `urls` and adds each one that a trusted CA issued and that is
/// newer than every CRL on file from that CA (`trust.crl.add`, by the system, the CRL
/// as its payload). A URL that fails is logged and tried again next round. Then counts
/// the trusted CAs whose newest CRL is past its nextUpdate, or that have none
/// (`ivan_crl_stale`, and a warning naming each). Returns how many CRLs were added.
pub async fn fetch_crls(
    ledger: &Ledger,
    db: &Db,
    clock: &dyn Clock,
    http: &reqwest::Client,
    urls: &[String],
) -> Result<usize, Error> {
    let mut added = 0;
    // What is on file, read once and kept up to date with what this round adds.
    let mut crls = load_crls(db).await?;
    for url in urls {
        let bytes = match fetch(http, url).await {
            Ok(b) => b,
            Err(e) => {
                metrics::counter!("ivan_crl_fetch_failures_total").increment(1);
                tracing::warn!(%url, error = %e, "CRL not fetched; tried again next round");
                continue;
            }
        };
        let Ok(crl) = Crl::parse(&bytes) else {
            tracing::warn!(%url, "not a CRL; ignored");
            continue;
        };
        let newest = crls
            .iter()
            .filter(|c| c.issuer_name() == crl.issuer_name())
            .map(|c| c.this_update())
            .max();
        if newest.is_some_and(|t| t >= crl.this_update()) {
            continue;
        }
        match add_crl(ledger, db, clock, Actor::System, &bytes).await {
            Ok(a) => {
                tracing::info!(%url, crl = %a.description, "CRL fetched and added");
                crls.push(crl);
                added += 1;
            }
            Err(Error::Invalid(why)) => tracing::warn!(%url, %why, "fetched CRL not added"),
            Err(Error::Record(retention::Error::Conflict(_))) => {}
            Err(e) => return Err(e),
        }
    }
    let now = clock.now();
    let mut stale = 0;
    for anchor in load_anchors(db).await? {
        let newest = crls
            .iter()
            .filter(|c| c.issued_by(&anchor))
            .max_by_key(|c| c.this_update());
        let current = newest.is_some_and(|c| c.next_update().is_none_or(|next| next > now));
        if !current {
            stale += 1;
            tracing::warn!(ca = %anchor.subject(), "no current CRL for this trusted CA: its certificates cannot be checked for revocation");
        }
    }
    metrics::gauge!("ivan_crl_stale").set(f64::from(stale));
    Ok(added)
}

/// The body at `url`, at most [`MAX_CRL_BYTES`].
async fn fetch(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    body_at_most(http.get(url), MAX_CRL_BYTES).await
}

/// Sends `request`; the body of a success answer, at most `cap` bytes (else why not).
pub(super) async fn body_at_most(
    request: reqwest::RequestBuilder,
    cap: usize,
) -> Result<Vec<u8>, String> {
    let mut r = request.send().await.map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("answered {}", r.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > cap {
            return Err(format!("larger than {cap} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Warns employers, once per step of `warn_days` (e.g. 60, 30, 7), that a signing
/// certificate they use expires within that many days: a `certificate.expiry-warning`
/// log entry and a mail to the employer's notification address, in one transaction.
/// Sets `ivan_employer_certificates_expiring{within_days}` for each step. Returns how
/// many warnings were given.
pub async fn warn_expiring(
    ledger: &Ledger,
    db: &Db,
    now: DateTime<Utc>,
    warn_days: &[u32],
) -> Result<usize, Error> {
    let within = |days: u32| chrono::Duration::days(i64::from(days));
    let Some(&widest) = warn_days.iter().max() else {
        return Ok(0);
    };
    let condition = "removed_at IS NULL AND not_after > $1 AND not_after <= $2 ORDER BY not_after";
    let soon = certs_where(
        db,
        condition,
        &[Bind::Time(now), Bind::Time(now + within(widest))],
    )
    .await?;
    for &days in warn_days {
        let n = soon
            .iter()
            .filter(|c| c.not_after <= now + within(days))
            .count();
        metrics::gauge!("ivan_employer_certificates_expiring", "within_days" => days.to_string())
            .set(n as f64);
    }
    let mut warned = 0;
    for c in soon {
        let left = c.not_after - now;
        let Some(step) = warn_days
            .iter()
            .copied()
            .filter(|&d| left <= within(d))
            .min()
        else {
            continue;
        };
        if c.expiry_warned_days.is_some_and(|w| w <= i64::from(step)) {
            continue;
        }
        let expires = crate::i18n::shown(&c.not_after);
        // Whole days, rounded up: 5 days and 23 hours left is "in 6 day(s)".
        let days = (left.num_seconds() + 86_399) / 86_400;
        let (subject, fingerprint) = (c.subject.clone(), c.fingerprint.clone());
        let expires_at = expires.clone();
        let body = move |lang: crate::i18n::Lang| {
            lang.t_with(
                "mail-cert-expiry",
                &[
                    ("subject", &subject),
                    ("fingerprint", &fingerprint),
                    ("expires", &expires_at),
                    ("days", &days),
                ],
            )
        };
        let (fp, employer, step_i) = (
            c.fingerprint.clone(),
            c.employer_id.clone(),
            i64::from(step),
        );
        let work: Work = retention::work!(|conn, at| {
            on_conn!(&mut conn, cn => {
                sqlx::query(
                    "UPDATE employer_certificates SET expiry_warned_days = $1 WHERE fingerprint = $2",
                )
                .bind(step_i)
                .bind(&fp)
                .execute(&mut *cn)
                .await?;
            });
            crate::mail::enqueue_to_employer(
                &mut conn,
                crate::mail::Kind::CertificateExpiry,
                &employer,
                &body,
                at.recorded_at(),
            )
            .await
        });
        let payload = serde_json::json!({
            "fingerprint": c.fingerprint, "not_after": expires, "within_days": step,
        });
        ledger
            .append_with(
                NewEntry::system(
                    "certificate.expiry-warning",
                    format!("employer:{}", c.employer_id),
                    Some(Payload::json(&payload)),
                ),
                work,
            )
            .await?;
        warned += 1;
    }
    Ok(warned)
}

async fn load_anchors(db: &Db) -> Result<Vec<Anchor>, Error> {
    let ders: Vec<Vec<u8>> = on_pool!(db, pool => {
        sqlx::query_scalar("SELECT der FROM trust_anchors WHERE removed_at IS NULL ORDER BY added_at")
            .fetch_all(pool).await.map_err(retention::Error::from)?
    });
    ders.iter()
        .map(|d| Anchor::parse(d).map_err(invalid))
        .collect()
}

async fn load_crls(db: &Db) -> Result<Vec<Crl>, Error> {
    let ders: Vec<Vec<u8>> = on_pool!(db, pool => {
        sqlx::query_scalar("SELECT der FROM crls ORDER BY this_update")
            .fetch_all(pool).await.map_err(retention::Error::from)?
    });
    ders.iter()
        .map(|d| Crl::parse(d).map_err(invalid))
        .collect()
}

fn entry(actor: Actor, action: &str, subject: String, payload: Payload) -> NewEntry {
    NewEntry {
        actor,
        action: action.into(),
        subject,
        payload: Some(payload),
    }
}

fn bytes_of(der: &[u8], media_type: &str) -> Payload {
    Payload {
        content: bytes::Bytes::copy_from_slice(der).into(),
        media_type: media_type.into(),
        retain_until: None,
    }
}

/// Anchors and CRLs as of one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub anchors: Vec<Anchor>,
    pub crls: Vec<Crl>,
}

/// The server's view of anchors and CRLs, reloaded from the database when stale.
#[derive(Debug, Clone)]
pub struct Cache {
    db: Db,
    ttl: Duration,
    state: Arc<Mutex<Option<Loaded>>>,
}

/// A snapshot and when it was loaded.
type Loaded = (Instant, Arc<Snapshot>);

impl Cache {
    pub fn new(db: Db, ttl: Duration) -> Self {
        Self {
            db,
            ttl,
            state: Arc::new(Mutex::new(None)),
        }
    }

    /// The current snapshot, reloading it first if older than the TTL.
    pub async fn get(&self) -> Result<Arc<Snapshot>, Error> {
        let mut state = self.state.lock().await;
        if let Some((loaded, snap)) = state.as_ref()
            && loaded.elapsed() < self.ttl
        {
            return Ok(snap.clone());
        }
        let snap = Arc::new(Snapshot {
            anchors: load_anchors(&self.db).await?,
            crls: load_crls(&self.db).await?,
        });
        *state = Some((Instant::now(), snap.clone()));
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    retention::backend_tests!(crls_are_fetched_from_configured_urls_and_distribution_points);

    /// The URLs configured first, then the distribution points the certificates in
    /// use name, each once; a removed certificate's are no longer fetched.
    async fn crls_are_fetched_from_configured_urls_and_distribution_points(
        env: retention::testing::TestEnv,
    ) {
        let (ledger, task) = env.ledger(retention::LedgerConfig::default());
        let clock = retention::SystemClock;
        let url = "http://crl.test/ca.crl";
        let pki = crate::dev::make_pki(clock.now(), Some(url)).unwrap();
        let employer = crate::employers::add(&ledger, &clock, Actor::System, "E", "EMP-1")
            .await
            .unwrap()
            .employer
            .id;
        for id in [&pki.employer, &pki.revoked] {
            add_employer_cert(
                &ledger,
                &env.db,
                &clock,
                Actor::System,
                &employer,
                &id.cert_der,
            )
            .await
            .unwrap();
        }
        let configured = vec!["http://other.test/x.crl".to_owned()];
        let urls = crl_sources(&env.db, &configured).await.unwrap();
        assert_eq!(urls, ["http://other.test/x.crl", url]);
        for id in [&pki.employer, &pki.revoked] {
            let fp = trust::fingerprint(&id.cert_der);
            remove_employer_cert(&ledger, &env.db, Actor::System, &employer, &fp, "gone")
                .await
                .unwrap();
        }
        assert_eq!(
            crl_sources(&env.db, &[]).await.unwrap(),
            Vec::<String>::new()
        );
        task.shutdown().await;
    }
}
