//! `ivan log verify|tail` (`ivan log vkey` is one line of the dispatch).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use retention::MigrationPolicy;
use retention::Originals;
use retention::keys::Keys;
use retention::ledger::Entry;
use retention::ledger::verify::{self, Progress};

use super::{operator, record_read, to_json};
use crate::config::Config;
use crate::startup::open_db;
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Recompute the whole chain, check every checkpoint signature and every original.
    /// The check is itself logged afterwards (`record.read`, who ran it and the
    /// outcome).
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the newest log entries. The read is itself logged first (`record.read`,
    /// with who ran it and on what grounds).
    Tail {
        /// How many entries.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
        /// Keep printing new entries as they are appended (until Ctrl-C).
        #[arg(short, long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// The grounds for reading (the entries name people by their ids); required
        /// in production.
        #[arg(long, value_name = "TEXT")]
        legal_basis: Option<String>,
    },
    /// Print the checkpoint key as a C2SP signed-note verifier key under the log's
    /// origin: what witnesses and monitors are configured with.
    Vkey,
}

/// A terminal progress bar, hidden when stderr is not a terminal.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn phase(&self, name: &str, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_message(name.to_owned());
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

pub async fn log_verify(config: &Config, json: bool) -> Result<ExitCode> {
    // Who runs it, checked before the work; the run itself is logged after it, with
    // its outcome (appending first would change the log being checked, and to a
    // damaged log).
    operator(config)?;
    let db = open_db(config, MigrationPolicy::RequireCurrent).await?;
    let originals = Originals::open(&config.originals, &config.data_dir)?;
    let keys = Keys::load(&config.keys_dir())?;
    let bar = if std::io::stderr().is_terminal() && !json {
        let style = ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        ProgressBar::new(0).with_style(style)
    } else {
        ProgressBar::hidden()
    };
    let report = verify::verify(
        &db,
        &originals,
        &keys.checkpoint_verifier(),
        &Bar(bar.clone()),
    )
    .await;
    bar.finish_and_clear();
    db.close().await;
    let report = report?;
    let outcome = serde_json::json!({ "ok": report.ok(), "entries": report.entries });
    if let Err(e) = record_read(config, "log verify", None, false, outcome).await {
        eprintln!("warning: this verification could not be recorded in the log: {e}");
    }
    if json {
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        outln!(
            "{}",
            to_json(&serde_json::json!({
                "ok": report.ok(),
                "entries": report.entries,
                "checkpoints": report.checkpoints,
                "originals": report.originals,
                "purged": report.purged,
                "problems": problems,
            }))
        );
    } else if report.ok() {
        outln!(
            "log OK: {} entries chained, {} checkpoint signatures valid, {} originals intact, {} purged by the retention policy (hashes kept)",
            report.entries,
            report.checkpoints,
            report.originals - report.purged,
            report.purged
        );
    } else {
        outln!(
            "log verification FAILED after {} entries, {} checkpoints, {} originals:",
            report.entries,
            report.checkpoints,
            report.originals
        );
        for p in &report.problems {
            outln!("  {p}");
        }
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

pub async fn log_tail(
    config: &Config,
    lines: i64,
    follow: bool,
    json: bool,
    legal_basis: Option<&str>,
) -> Result<ExitCode> {
    if !(1..=10_000).contains(&lines) {
        return Err(Error::Invalid("--lines must be 1 to 10000".into()));
    }
    let details = serde_json::json!({ "lines": lines, "follow": follow });
    let read = record_read(config, "log tail", legal_basis, true, details).await?;
    let db = open_db(config, MigrationPolicy::RequireCurrent).await?;
    let print = |e: &Entry| {
        if json {
            outln!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            outln!(
                "{:>8}  {}  {:<24}  {:<20}  {}{}",
                e.seq,
                retention::ledger::format_time(&e.recorded_at),
                e.actor,
                e.action,
                e.subject,
                e.payload_sha256
                    .as_deref()
                    .map(|p| format!("  payload:{}", &p[..p.len().min(12)]))
                    .unwrap_or_default()
            );
        }
    };
    // What came before this read's own entry.
    let mut shown = retention::ledger::last_entries(&db, lines + 1).await?;
    shown.retain(|e| e.seq < read);
    let skip = shown
        .len()
        .saturating_sub(usize::try_from(lines).unwrap_or(0));
    for e in &shown[skip..] {
        print(e);
    }
    let mut last = read;
    if follow {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => {
                    for e in retention::ledger::entries_after(&db, last, 1000).await? {
                        print(&e);
                        last = e.seq;
                    }
                    let _ = std::io::stdout().flush();
                    // Nobody reads any more (`log tail -f | head`): stop following.
                    if super::stdout_gone() {
                        break;
                    }
                }
            }
        }
    }
    db.close().await;
    Ok(ExitCode::SUCCESS)
}
