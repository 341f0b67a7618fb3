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
}

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
    if !anchors.iter().any(|a| crl.issued_by(a)) {
        return Err(Error::Invalid(format!(
            "the CRL is issued by {}, which is not a trusted CA; add the CA first (ivan admin ca add)",
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

/// Every registered employer certificate, by employer then time added.
pub async fn list_employer_certs(db: &Db) -> Result<Vec<RegisteredCert>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT fingerprint, employer_id, subject, issuer, serial, not_before, not_after, added_at \
             FROM employer_certificates ORDER BY employer_id, added_at, fingerprint",
        )
        .fetch_all(pool).await.map_err(retention::Error::from)?
    }))
}

/// The employer's certificates that expire (or expired) before `before`, soonest
/// first: what its dashboard warns about.
pub async fn expiring_certs(
    db: &Db,
    employer_id: &str,
    before: DateTime<Utc>,
) -> Result<Vec<RegisteredCert>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT fingerprint, employer_id, subject, issuer, serial, not_before, not_after, added_at \
             FROM employer_certificates WHERE employer_id = $1 AND not_after < $2 ORDER BY not_after",
        )
        .bind(employer_id)
        .bind(before)
        .fetch_all(pool).await.map_err(retention::Error::from)?
    }))
}

/// The employer a certificate (by fingerprint) is registered for, if any.
pub async fn cert_owner(db: &Db, fingerprint: &str) -> Result<Option<String>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_scalar("SELECT employer_id FROM employer_certificates WHERE fingerprint = $1")
            .bind(fingerprint).fetch_optional(pool).await.map_err(retention::Error::from)?
    }))
}

async fn load_anchors(db: &Db) -> Result<Vec<Anchor>, Error> {
    let ders: Vec<Vec<u8>> = on_pool!(db, pool => {
        sqlx::query_scalar("SELECT der FROM trust_anchors ORDER BY added_at")
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
