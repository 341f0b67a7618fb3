//! Log appends per second with 1, 8 and 64 concurrent writers, on SQLite and
//! PostgreSQL, with signed checkpoints on (the production defaults: one every 1000
//! entries or 60 s).
//!
//! Each run uses a fresh database (a temp SQLite file, a throw-away PostgreSQL
//! database), runs every writer in a closed loop (append, wait for the commit, append
//! again) for the given time, then stops the appender and runs the full `log verify`
//! over what was written, so a fast-but-broken chain cannot pass unnoticed.
//!
//! It prints figures and never fails on speed: the targets are in `BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p ivan-bench --bin log-append -- --seconds 5
//! ```
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use retention::ledger::verify::{Silent, verify};
use retention::testing::TestEnv;
use retention::{Actor, LedgerConfig, NewEntry, Payload};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
}

#[derive(Debug, Parser)]
#[command(about = "Log appends per second, 1/8/64 writers, SQLite and PostgreSQL")]
struct Args {
    /// Length of each measured run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent writers, one run per value.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 64])]
    writers: Vec<usize>,
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_values = ["sqlite", "postgres"])]
    backend: Vec<BackendArg>,
    /// Attach a payload of this many bytes to every entry (stored as an original,
    /// fsynced). 0 measures the log alone.
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
}

struct Run {
    appends: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    checkpoints: u64,
    verify: Duration,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.seconds == 0 || args.writers.contains(&0) {
        bail!("--seconds and every --writers value must be at least 1");
    }
    println!(
        "log-append: {} s per run, payload {} bytes, checkpoints every {} entries / {} s, {} CPUs",
        args.seconds,
        args.payload_bytes,
        LedgerConfig::default().checkpoint_every_entries,
        LedgerConfig::default().checkpoint_interval_secs,
        ivan_bench::cpus(),
    );
    println!(
        "{:<9} {:>7} {:>9} {:>10} {:>9} {:>9} {:>9} {:>6} {:>8}",
        "backend",
        "writers",
        "appends",
        "appends/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "ckpts",
        "verify s"
    );
    for &backend in &args.backend {
        for &writers in &args.writers {
            let env = match backend {
                BackendArg::Sqlite => TestEnv::sqlite().await,
                BackendArg::Postgres => TestEnv::postgres().await,
            };
            let run = measure(&env, writers, &args).await?;
            let secs = run.elapsed.as_secs_f64();
            println!(
                "{:<9} {:>7} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>6} {:>8.2}",
                format!("{backend:?}").to_lowercase(),
                writers,
                run.appends,
                run.appends as f64 / secs,
                ms(percentile(&run.latencies, 0.50)),
                ms(percentile(&run.latencies, 0.99)),
                ms(run.latencies.last().copied().unwrap_or_default()),
                run.checkpoints,
                run.verify.as_secs_f64(),
            );
        }
    }
    Ok(())
}

async fn measure(env: &TestEnv, writers: usize, args: &Args) -> Result<Run> {
    let (ledger, task) = env.ledger(LedgerConfig::default());
    let stop = Arc::new(AtomicBool::new(false));
    let payload = (args.payload_bytes > 0).then_some(args.payload_bytes);
    let started = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let ledger = ledger.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let entry = NewEntry {
                        actor: Actor::ApiToken(format!("bench-{w}")),
                        action: "bench.append".into(),
                        subject: format!("bench:{w}:{i}"),
                        // Distinct bytes per entry, so every original is really written.
                        payload: payload.map(|n| Payload {
                            content: (distinct_bytes(n, w, i)).into(),
                            media_type: "application/octet-stream".into(),
                            retain_until: None,
                        }),
                    };
                    let t = Instant::now();
                    ledger.append(entry).await?;
                    latencies.push(t.elapsed());
                    i += 1;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.context("writer task")??);
    }
    let elapsed = started.elapsed();
    drop(ledger);
    task.shutdown().await;

    let t = Instant::now();
    let report = verify(
        &env.db,
        &env.originals,
        &env.keys.checkpoint_verifier(),
        &Silent,
    )
    .await?;
    let verify_time = t.elapsed();
    if !report.ok() {
        bail!("log verify failed after the run: {:?}", report.problems);
    }
    let appends = latencies.len() as u64;
    if report.entries != appends {
        bail!(
            "{} appends acknowledged but the log holds {}",
            appends,
            report.entries
        );
    }
    latencies.sort_unstable();
    Ok(Run {
        appends,
        elapsed,
        latencies,
        checkpoints: report.checkpoints,
        verify: verify_time,
    })
}

fn distinct_bytes(n: usize, writer: usize, i: u64) -> bytes::Bytes {
    let tag = format!("{writer}:{i}:");
    tag.bytes().cycle().take(n.max(tag.len())).collect()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
