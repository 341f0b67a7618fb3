//! `ivan admin outbox list`: the forwarding outbox.

use std::process::ExitCode;

use clap::Subcommand;

use super::{read_db, to_json};
use crate::Result;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Rows due first, with attempts, lease holder and the last error.
    List {
        /// Show at most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn outbox_list(config: &Config, limit: i64, json: bool) -> Result<ExitCode> {
    let rows = read_db(config, async |db| {
        crate::submissions::outbox::list(db, limit.clamp(1, 10_000)).await
    })
    .await?;
    if json {
        outln!("{}", to_json(&rows));
    } else {
        outln!(
            "{:<36}  {:<11}  {:<7}  {:<27}  {:>8}  LAST ERROR",
            "MESSAGE ID",
            "DOCUMENT",
            "PHASE",
            "DUE",
            "ATTEMPTS"
        );
        for r in rows {
            outln!(
                "{:<36}  {:<11}  {:<7}  {:<27}  {:>8}  {}{}",
                r.submission_id,
                r.document_number,
                r.phase,
                retention::ledger::format_time(&r.due_at),
                r.attempts,
                if r.overdue_at.is_some() {
                    "[OVERDUE] "
                } else {
                    ""
                },
                r.last_error.as_deref().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
