//! `ivan backup create|verify` and `ivan restore`: the command-line side of
//! `retention::backup` (format and guarantees in docs/BACKUP.md).
//!
//! Exit codes as for every command: 0 success; 1 the command could not do its work
//! (a damaged or partial backup refused by `restore`, a non-empty target, …); 3
//! `backup verify` ran and found problems, one line each.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use retention::backup::{self, Phase, Progress, RestoreTarget};
use retention::{MigrationPolicy, Originals};

use super::to_json;
use crate::Result;
use crate::config::Config;
use crate::startup::{open_db, refuse_unfinished_restore};

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a consistent snapshot of the database, the originals and the keys into DIR
    /// while the service runs. DIR may hold earlier snapshots: originals are shared
    /// and only new ones are copied. The snapshot holds the signing keys: protect it.
    Create {
        /// The backup directory (created if missing).
        dir: PathBuf,
        /// Print the summary (with timings) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a snapshot without restoring it: COMPLETE, the manifest's signature,
    /// every file's size and SHA-256, every original re-hashed. Exit 3 on problems.
    Verify {
        /// The backup directory.
        dir: PathBuf,
        /// The snapshot id (default: the newest complete snapshot).
        #[arg(long)]
        snapshot: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Restore a snapshot into an empty target (the global --database-url and --data-dir),
/// then run the full log verification and compare the head with the snapshot's.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup directory.
    pub dir: PathBuf,
    /// The snapshot id (default: the newest complete snapshot).
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Print the summary (with timings) as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run_backup(config: &Config, cmd: BackupCommand) -> Result<ExitCode> {
    match cmd {
        BackupCommand::Create { dir, json } => create(config, &dir, json).await,
        BackupCommand::Verify {
            dir,
            snapshot,
            json,
        } => verify(&dir, snapshot.as_deref(), json).await,
    }
}

async fn create(config: &Config, dir: &Path, json: bool) -> Result<ExitCode> {
    refuse_unfinished_restore(&config.data_dir)?;
    // A backup reads every filing's contents: who made it is logged first (and is in
    // the snapshot).
    let details = serde_json::json!({ "dir": dir.display().to_string() });
    super::record_read(config, "backup create", None, false, details).await?;
    let db = open_db(config, MigrationPolicy::RequireCurrent).await?;
    let originals = Originals::open(&config.originals, &config.data_dir)?;
    let bars = Bars::new(json);
    let made = backup::create(&db, &originals, &config.keys_dir(), dir, &bars).await;
    bars.clear();
    db.close().await;
    let s = made?;
    if json {
        outln!("{}", to_json(&s));
        return Ok(ExitCode::SUCCESS);
    }
    outln!("snapshot {} written to {}", s.snapshot, s.dir);
    outln!(
        "  database   {}, {} in {:.2} s",
        s.backend,
        human_bytes(s.db_bytes),
        s.db_seconds
    );
    outln!(
        "  log        {} entries, head {}, last checkpoint {}",
        s.log_tree_size,
        s.head_hash,
        s.checkpoint_tree_size
            .map_or_else(|| "none".to_owned(), |t| format!("at {t}"))
    );
    outln!(
        "  originals  {} ({}): {} copied ({}) into {} new pack(s), {} already in the backup, in {:.2} s",
        s.originals,
        human_bytes(s.originals_bytes),
        s.originals_copied,
        human_bytes(s.bytes_copied),
        s.packs_written,
        s.originals_skipped,
        s.originals_seconds
    );
    outln!("  keys       {} files", s.keys);
    outln!("  signed by  checkpoint key {}", s.key_id);
    outln!("  total      {:.2} s", s.total_seconds);
    eprintln!("The snapshot holds the signing keys and secrets: keep the backup protected.");
    Ok(ExitCode::SUCCESS)
}

async fn verify(dir: &Path, snapshot: Option<&str>, json: bool) -> Result<ExitCode> {
    let bars = Bars::new(json);
    let report = backup::verify(dir, snapshot, true, &bars).await;
    bars.clear();
    let r = report?;
    if json {
        outln!("{}", to_json(&r));
    } else {
        for id in &r.partial_snapshots_skipped {
            eprintln!(
                "note: snapshot {id} is partial (no COMPLETE); checked the newest complete one"
            );
        }
        let what = format!(
            "snapshot {} ({}, created {}): {} files ({}), {} originals ({})",
            r.snapshot,
            r.backend.as_deref().unwrap_or("?"),
            r.created_at.as_deref().unwrap_or("?"),
            r.files,
            human_bytes(r.file_bytes),
            r.originals,
            human_bytes(r.originals_bytes)
        );
        if r.ok {
            outln!("backup OK: {what}, all re-hashed");
            if let Some(kid) = &r.key_id {
                outln!(
                    "manifest signed by checkpoint key {kid} (compare with /.well-known/ivan/checkpoint-keys.json)"
                );
            }
        } else {
            outln!(
                "backup verification FAILED: {what}; {} problem(s):",
                r.problems_total
            );
            for p in &r.problems {
                outln!("  {p}");
            }
            if r.problems_total > r.problems.len() as u64 {
                outln!(
                    "  … and {} more",
                    r.problems_total - r.problems.len() as u64
                );
            }
        }
    }
    Ok(if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

pub async fn run_restore(config: &Config, args: RestoreArgs) -> Result<ExitCode> {
    let url = config.database_url();
    let keys_dir = config.keys_dir();
    let target = RestoreTarget {
        database_url: &url,
        max_connections: config.database_max_connections,
        data_dir: &config.data_dir,
        keys_dir: &keys_dir,
        originals: &config.originals,
    };
    let bars = Bars::new(args.json);
    let done = backup::restore(&args.dir, args.snapshot.as_deref(), &target, &bars).await;
    bars.clear();
    let s = done?;
    if args.json {
        outln!("{}", to_json(&s));
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "restored snapshot {} ({}, created {}) into {} and {}",
        s.snapshot,
        s.backend,
        s.created_at,
        retention::db::redact_url(&url),
        config.data_dir.display()
    );
    outln!("  checked    the snapshot in {:.2} s", s.check_seconds);
    outln!(
        "  database   {}{} in {:.2} s",
        human_bytes(s.db_bytes),
        if s.tables > 0 {
            format!(", {} tables, {} rows", s.tables, s.rows)
        } else {
            String::new()
        },
        s.db_seconds
    );
    outln!(
        "  originals  {} ({}) in {:.2} s",
        s.originals,
        human_bytes(s.bytes),
        s.originals_seconds
    );
    outln!("  keys       {} files", s.keys);
    outln!(
        "  verified   log OK: {} entries chained, {} checkpoint signatures valid (in {:.2} s, beside the copy), {} originals intact (in {:.2} s)",
        s.log_entries,
        s.checkpoints,
        s.log_seconds,
        s.originals_verified,
        s.verify_seconds
    );
    outln!(
        "  head       entry {} hash {} = the snapshot's; last checkpoint {}",
        s.tree_size,
        s.head_hash,
        s.checkpoint_tree_size
            .map_or_else(|| "none".to_owned(), |t| format!("at {t}"))
    );
    outln!("  total      {:.2} s", s.total_seconds);
    Ok(ExitCode::SUCCESS)
}

/// `1.5 MiB`-style sizes for people.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Progress bars on stderr, one per phase, when it is a terminal (and not --json).
struct Bars(Option<MultiProgress>);

impl Bars {
    fn new(json: bool) -> Self {
        Self(
            (std::io::stderr().is_terminal() && !json)
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        )
    }

    fn clear(&self) {
        if let Some(m) = &self.0 {
            let _ = m.clear();
        }
    }
}

impl Progress for Bars {
    fn phase(&self, name: &str, total: u64, bytes: bool) -> Box<dyn Phase> {
        let Some(multi) = &self.0 else {
            return Box::new(backup::Silent);
        };
        let template = match (total, bytes) {
            (0, true) => "{msg:>20} {spinner} {bytes} ({bytes_per_sec})",
            (0, false) => "{msg:>20} {spinner} {pos}",
            (_, true) => "{msg:>20} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            (_, false) => "{msg:>20} [{bar:40}] {pos}/{len} ({eta})",
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = multi.add(ProgressBar::new(total).with_style(style));
        bar.set_message(name.to_owned());
        Box::new(Bar(bar))
    }
}

struct Bar(ProgressBar);

impl Phase for Bar {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn finish(&self) {
        self.0.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
