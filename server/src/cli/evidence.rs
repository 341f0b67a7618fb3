//! `ivan evidence export|verify`: evidence bundles (format: `docs/evidence.md`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use retention::evidence::{self, VerifyOptions};
use retention::keys::Keys;

use super::{OpenLedger, operator, to_json};
use crate::compliance::Basis;
use crate::compliance::evidence::{Selection, export};
use crate::config::Config;
use crate::submissions::persons::PersonIndex;
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Export the evidence bundle about filings (logged as `compliance.evidence` with
    /// the legal basis and reference number, like an officer's export).
    Export {
        /// A filing's message id (repeat for more).
        #[arg(long = "message-id", value_name = "ID")]
        message_ids: Vec<String>,
        /// Filings of this employer (its id or registration number).
        #[arg(long)]
        employer: Option<String>,
        /// Filings with this document number.
        #[arg(long)]
        document_number: Option<String>,
        /// Filings naming this personal id.
        #[arg(long)]
        person_id: Option<String>,
        /// Received at or after (RFC 3339).
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// Received before (RFC 3339).
        #[arg(long)]
        to: Option<DateTime<Utc>>,
        /// The legal provision the export is made under (required).
        #[arg(long)]
        legal_basis: String,
        /// The case or file reference (required).
        #[arg(long)]
        reference_number: String,
        /// Where to write the bundle (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a bundle offline (no database): says what it checked; exit 3 if any check fails.
    Verify {
        /// The bundle file (as `ivan evidence export` wrote it).
        bundle: PathBuf,
        /// The intermediary's published checkpoint keys (JWKS, from
        /// /.well-known/ivan/checkpoint-keys.json) to pin the bundle's keys to.
        #[arg(long, value_name = "JWKS")]
        checkpoint_keys: Option<PathBuf>,
        /// A witness (its cosignature verifier key, `ivan witness vkey`) that must have
        /// cosigned the checkpoint the bundle's proofs are under; repeatable.
        #[arg(long = "witness", value_name = "VKEY")]
        witnesses: Vec<String>,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, cmd: EvidenceCommand) -> Result<ExitCode> {
    match cmd {
        EvidenceCommand::Export {
            message_ids,
            employer,
            document_number,
            person_id,
            from,
            to,
            legal_basis,
            reference_number,
            out,
            json,
        } => {
            let employer = super::employer_id_opt(config, employer).await?;
            let basis = Basis::new(Some(&legal_basis), Some(&reference_number))?;
            let selection = Selection {
                message_ids,
                employer,
                person_id,
                document_number,
                from,
                to,
            };
            let io = |context: String| move |source| Error::Io { context, source };
            // `case.tar` is written as `case.tar.partial` (the name keeps its
            // extension, so exports to `case.tar` and `case.zip` never share one).
            let partial = {
                let mut name = out.clone().into_os_string();
                name.push(".partial");
                PathBuf::from(name)
            };
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&partial)
                .map_err(io(format!("cannot create {}", partial.display())))?;
            if out.exists() {
                let _ = std::fs::remove_file(&partial);
                return Err(Error::Invalid(format!(
                    "{} exists; evidence is never overwritten",
                    out.display()
                )));
            }
            let keys = Arc::new(Keys::load_or_generate(&config.keys_dir())?);
            let index = PersonIndex::load_or_generate(&config.keys_dir())?;
            let done = OpenLedger::with(config, async |record: &OpenLedger| {
                export(
                    &record.db,
                    &record.ledger,
                    keys.clone(),
                    &index,
                    operator(config)?,
                    &basis,
                    &selection,
                    "cli:ivan evidence export",
                    Utc::now(),
                    std::io::BufWriter::new(file),
                )
                .await
            })
            .await;
            let exported = match done {
                Ok((exported, w)) => {
                    let f = w
                        .into_inner()
                        .map_err(|e| Error::Invalid(format!("cannot write the bundle: {e}")))?;
                    f.sync_all()
                        .map_err(io(format!("cannot sync {}", partial.display())))?;
                    std::fs::rename(&partial, &out)
                        .map_err(io(format!("cannot rename to {}", out.display())))?;
                    exported
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e);
                }
            };
            if json {
                outln!("{}", to_json(&exported));
            } else {
                outln!("bundle:       {}", out.display());
                outln!("filings:      {}", exported.filings.len());
                outln!("bytes:        {}", exported.bytes);
                outln!("manifest:     sha256 {}", exported.manifest_sha256);
                outln!("signed by:    {}", exported.checkpoint_key_ids.join(", "));
                outln!("log entry:    {}", exported.audit_log_seq);
            }
            Ok(ExitCode::SUCCESS)
        }
        EvidenceCommand::Verify {
            bundle,
            checkpoint_keys,
            witnesses,
            json,
        } => {
            let io = |context: String| move |source| Error::Io { context, source };
            let pinned =
                match &checkpoint_keys {
                    Some(p) => {
                        let text = std::fs::read_to_string(p)
                            .map_err(io(format!("cannot read {}", p.display())))?;
                        Some(serde_json::from_str(&text).map_err(|e| {
                            Error::Invalid(format!("{} is not JSON: {e}", p.display()))
                        })?)
                    }
                    None => None,
                };
            let file = std::fs::File::open(&bundle)
                .map_err(io(format!("cannot open {}", bundle.display())))?;
            let opts = VerifyOptions {
                pinned_checkpoint_keys: pinned,
                witnesses,
                ..VerifyOptions::default()
            };
            let report = tokio::task::spawn_blocking(move || {
                evidence::verify(std::io::BufReader::new(file), &opts)
            })
            .await
            .map_err(|e| Error::Invalid(format!("verification task failed: {e}")))??;
            if json {
                outln!("{}", to_json(&report));
            } else {
                out!("{report}");
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
    }
}
