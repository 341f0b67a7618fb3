//! `ivan admin ca|crl|cert …`: trusted CAs, their CRLs, employers' signing certificates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use retention::SystemClock;

use super::{OpenLedger, operator, read_db, read_file, to_json};
use crate::Result;
use crate::config::Config;
use crate::intake::material;

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Trust a CA certificate (PEM or DER) for employers' signing certificates.
    Add {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CrlCommand {
    /// Add a CRL (PEM or DER) issued by a trusted CA; the newest one per CA is used.
    Add {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Register a signing certificate (PEM or DER) for an employer.
    Add {
        #[arg(long)]
        employer: String,
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List registered signing certificates.
    List {
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
        println!("{}", to_json(&added));
    } else {
        println!("added:      {}", added.description);
        println!("sha256:     {}", added.sha256);
        println!("log entry:  {}", added.log_seq);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cert_list(config: &Config, json: bool) -> Result<ExitCode> {
    let list = read_db(config, async |db| material::list_employer_certs(db).await).await?;
    if json {
        println!("{}", to_json(&list));
    } else {
        println!(
            "{:<36}  {:<64}  {:<27}  SUBJECT",
            "EMPLOYER", "FINGERPRINT (SHA-256)", "NOT AFTER"
        );
        for c in list {
            println!(
                "{:<36}  {:<64}  {:<27}  {}",
                c.employer_id,
                c.fingerprint,
                retention::ledger::format_time(&c.not_after),
                c.subject
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
