//! `ivan admin ca|crl|cert …`: trusted CAs, their CRLs, employers' signing certificates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use retention::SystemClock;

use super::{OpenLedger, operator, read_db, read_file, show, to_json};
use crate::Result;
use crate::config::Config;
use crate::intake::material;

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Trust a CA certificate (PEM or DER) for employers' signing certificates.
    Add {
        /// The certificate or CRL file (PEM or DER).
        file: PathBuf,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the CA certificates added (removed ones too, with when).
    List {
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a CA (compromised, retired): certificates it issued no longer
    /// sign filings. It stays on record for what it vouched for before. Logged as
    /// `trust.ca.remove` with the reason.
    Remove {
        /// The CA certificate's SHA-256 (as `ivan admin ca list` shows it).
        sha256: String,
        /// Why it is removed (kept in the log).
        #[arg(long)]
        reason: String,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CrlCommand {
    /// Add a CRL (PEM or DER) issued by a trusted CA; the newest one per CA is used.
    Add {
        /// The certificate or CRL file (PEM or DER).
        file: PathBuf,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Register a signing certificate (PEM or DER) for an employer.
    Add {
        /// The employer: its id or its registration number.
        #[arg(long)]
        employer: String,
        /// The certificate or CRL file (PEM or DER).
        file: PathBuf,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List registered signing certificates (removed ones too, with when).
    List {
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop a registered signing certificate from authorising filings (a key lost or
    /// compromised, an employee gone). The certificate stays on record for the
    /// filings it signed. Logged as `trust.cert.remove` with the reason.
    Remove {
        /// The employer: its id or its registration number.
        #[arg(long)]
        employer: String,
        /// The certificate's SHA-256 fingerprint (as `ivan admin cert list` shows it).
        fingerprint: String,
        /// Why it is removed (kept in the log).
        #[arg(long)]
        reason: String,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub enum TrustKind {
    Ca,
    Crl,
    Cert(String),
}

pub async fn trust_add(
    config: &Config,
    kind: TrustKind,
    file: &Path,
    json: bool,
) -> Result<ExitCode> {
    let bytes = read_file(file)?;
    let added = OpenLedger::with(config, async |record: &OpenLedger| match &kind {
        TrustKind::Ca => {
            material::add_anchor(&record.ledger, &SystemClock, operator(config)?, &bytes).await
        }
        TrustKind::Crl => {
            material::add_crl(
                &record.ledger,
                &record.db,
                &SystemClock,
                operator(config)?,
                &bytes,
            )
            .await
        }
        TrustKind::Cert(employer) => {
            material::add_employer_cert(
                &record.ledger,
                &record.db,
                &SystemClock,
                operator(config)?,
                employer,
                &bytes,
            )
            .await
        }
    })
    .await?;
    if json {
        outln!("{}", to_json(&added));
    } else {
        outln!("added:      {}", added.description);
        outln!("sha256:     {}", added.sha256);
        outln!("log entry:  {}", added.log_seq);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cert_list(config: &Config, json: bool) -> Result<ExitCode> {
    let list = read_db(config, async |db| material::list_employer_certs(db).await).await?;
    show(json, &list, |list| {
        outln!(
            "{:<36}  {:<64}  {:<27}  {:<8}  SUBJECT",
            "EMPLOYER",
            "FINGERPRINT (SHA-256)",
            "NOT AFTER",
            "STATE"
        );
        for c in list {
            let state = if c.removed_at.is_some() {
                "removed"
            } else {
                "active"
            };
            outln!(
                "{:<36}  {:<64}  {:<27}  {:<8}  {}",
                c.employer_id,
                c.fingerprint,
                retention::ledger::format_time(&c.not_after),
                state,
                c.subject
            );
        }
    });
    Ok(ExitCode::SUCCESS)
}

pub async fn ca_list(config: &Config, json: bool) -> Result<ExitCode> {
    let list = read_db(config, async |db| material::list_anchors(db).await).await?;
    show(json, &list, |list| {
        outln!(
            "{:<64}  {:<27}  {:<8}  SUBJECT",
            "SHA-256",
            "NOT AFTER",
            "STATE"
        );
        for a in list {
            let state = if a.removed_at.is_some() {
                "removed"
            } else {
                "trusted"
            };
            let not_after = retention::ledger::format_time(&a.not_after);
            outln!(
                "{:<64}  {:<27}  {:<8}  {}",
                a.sha256,
                not_after,
                state,
                a.subject
            );
        }
    });
    Ok(ExitCode::SUCCESS)
}

pub async fn ca_remove(
    config: &Config,
    sha256: &str,
    reason: &str,
    json: bool,
) -> Result<ExitCode> {
    let log_seq = OpenLedger::with(config, async |record: &OpenLedger| {
        let actor = operator(config)?;
        material::remove_anchor(&record.ledger, &record.db, actor, sha256, reason).await
    })
    .await?;
    let done = serde_json::json!({ "sha256": sha256, "removed": true, "log_seq": log_seq });
    show(json, &done, |_| {
        outln!("CA certificate {sha256} is no longer trusted (log entry {log_seq})");
    });
    Ok(ExitCode::SUCCESS)
}

pub async fn cert_remove(
    config: &Config,
    employer: &str,
    fingerprint: &str,
    reason: &str,
    json: bool,
) -> Result<ExitCode> {
    let log_seq = OpenLedger::with(config, async |record: &OpenLedger| {
        let actor = operator(config)?;
        material::remove_employer_cert(
            &record.ledger,
            &record.db,
            actor,
            employer,
            fingerprint,
            reason,
        )
        .await
    })
    .await?;
    let done = serde_json::json!({
        "employer_id": employer, "fingerprint": fingerprint, "removed": true, "log_seq": log_seq
    });
    show(json, &done, |_| {
        outln!("certificate {fingerprint} of employer {employer} removed (log entry {log_seq})");
    });
    Ok(ExitCode::SUCCESS)
}
