//! `ivan admin hold …` (legal holds) and `ivan retention sweep`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use retention::SystemClock;

use super::{OpenLedger, operator, read_db, to_json};
use crate::compliance::holds::{self, Scope};
use crate::compliance::sweeper::Sweeper;
use crate::config::Config;
use crate::submissions::persons::PersonIndex;
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Keep a filing (--message-id) or all of an employer's filings (--employer) past
    /// their retention period. Logged as `hold.add`.
    Add {
        /// The filing to keep (its message id).
        #[arg(
            long,
            conflicts_with = "employer",
            required_unless_present = "employer"
        )]
        message_id: Option<String>,
        /// Keep all filings of this employer (its id or registration number).
        #[arg(long)]
        employer: Option<String>,
        /// Why (required; e.g. the court order or case).
        #[arg(long)]
        reason: String,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Release a hold: the sweeper may purge what has expired meanwhile. Logged as
    /// `hold.release`.
    Release {
        /// The hold to release (its id, as `ivan admin hold list` shows it).
        #[arg(long = "hold", value_name = "HOLD_ID")]
        hold: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Apply every hold to the originals bucket's legal holds again (after a bucket
    /// failure a hold or release reported; nothing without Object Lock).
    Sync {
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List legal holds (active ones; --all for released ones too).
    List {
        /// Released holds too.
        #[arg(long)]
        all: bool,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Run the retention sweep now (the server runs it every
    /// retention.sweep_interval_secs): purge expired, unheld, ended filings.
    Sweep {
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn hold(config: &Config, cmd: HoldCommand) -> Result<ExitCode> {
    match cmd {
        HoldCommand::Add {
            message_id,
            employer,
            reason,
            json,
        } => {
            let employer = super::employer_id_opt(config, employer).await?;
            let (scope, target) = match (message_id, employer) {
                (Some(m), None) => (Scope::Submission, m),
                (None, Some(e)) => (Scope::Employer, e),
                _ => {
                    return Err(Error::Invalid("give --message-id or --employer".into()));
                }
            };
            let hold = OpenLedger::with(config, async |r: &OpenLedger| {
                holds::add_hold(
                    &r.ledger,
                    &r.db,
                    &SystemClock,
                    operator(config)?,
                    scope,
                    &target,
                    &reason,
                )
                .await
            })
            .await?;
            if json {
                outln!("{}", to_json(&hold));
            } else {
                outln!("hold {} on {} {}", hold.id, hold.scope, hold.target);
            }
        }
        HoldCommand::Release { hold, reason, json } => {
            let released = OpenLedger::with(config, async |r: &OpenLedger| {
                holds::release_hold(
                    &r.ledger,
                    &r.db,
                    &SystemClock,
                    operator(config)?,
                    &hold,
                    &reason,
                )
                .await
            })
            .await?;
            if json {
                outln!("{}", to_json(&released));
            } else {
                outln!("hold {} released", released.id);
            }
        }
        HoldCommand::Sync { json } => {
            let set = OpenLedger::with(config, async |r: &OpenLedger| {
                let mut set = 0;
                for hold in holds::holds(&r.db, false).await? {
                    set += holds::apply_to_storage(&r.db, r.ledger.originals(), &hold).await?;
                }
                Ok::<_, Error>(set)
            })
            .await?;
            if json {
                outln!("{}", serde_json::json!({ "originals_set": set }));
            } else {
                outln!("legal holds applied to {set} originals");
            }
        }
        HoldCommand::List { all, json } => {
            let list = read_db(config, async |db| holds::holds(db, !all).await).await?;
            if json {
                outln!("{}", to_json(&list));
            } else {
                outln!(
                    "{:<36}  {:<10}  {:<36}  {:<8}  REASON",
                    "ID",
                    "SCOPE",
                    "TARGET",
                    "STATE"
                );
                for h in list {
                    let state = if h.released_at.is_some() {
                        "released"
                    } else {
                        "active"
                    };
                    outln!(
                        "{:<36}  {:<10}  {:<36}  {:<8}  {}",
                        h.id,
                        h.scope,
                        h.target,
                        state,
                        h.reason
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn retention(config: &Config, cmd: RetentionCommand) -> Result<ExitCode> {
    let RetentionCommand::Sweep { json } = cmd;
    let persons = PersonIndex::load_or_generate(&config.keys_dir())?;
    let swept = OpenLedger::with(config, async |r: &OpenLedger| {
        Sweeper {
            db: r.db.clone(),
            ledger: r.ledger.clone(),
            clock: Arc::new(SystemClock),
            config: config.retention.clone(),
            persons: persons.clone(),
            chores: vec![crate::portal::housekeeping],
        }
        .sweep()
        .await
    })
    .await?;
    if json {
        outln!("{}", to_json(&swept));
    } else {
        outln!(
            "purged {} filings ({} originals deleted, {} shared payloads kept); {} expired filings held; {} filings indexed; {} portal rows removed",
            swept.purged_filings.len(),
            swept.purged_originals,
            swept.shared_kept,
            swept.held,
            swept.persons_indexed,
            swept.housekeeping_rows
        );
    }
    Ok(ExitCode::SUCCESS)
}
