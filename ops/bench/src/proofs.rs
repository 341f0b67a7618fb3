//! Inclusion and consistency proof latency from the stored Merkle tree of a large
//! log (issue 19: inclusion-proof p99 ≤ 2 ms at 10 M entries).
//!
//! It builds a synthetic tree of `--entries` leaves straight into `log_tree` of a
//! fresh database (the hashes the appender would store for that many entries;
//! no `log_entries` rows, which the proof reader never reads), then asks for
//! `--proofs` inclusion proofs of random leaves under the whole tree and as many
//! consistency proofs from random sizes, one at a time, through
//! `retention::ledger::tree::{inclusion, consistency}` — the calls behind
//! `/api/v1/log/proof/*`. Every proof is checked against the root outside the timing,
//! so a fast wrong answer cannot pass.
//!
//! It prints figures and never fails on speed: the targets are in `BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p ivan-bench --bin proofs -- --entries 10000000
//! ```
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use ivan_bench::pct;
use retention::Db;
use retention::ledger::tree::{self, Frontier, Hash};
use retention::testing::TestEnv;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
}

#[derive(Debug, Parser)]
#[command(about = "Inclusion and consistency proof latency from a large stored Merkle tree")]
struct Args {
    /// Leaves in the synthetic tree.
    #[arg(long, default_value_t = 10_000_000)]
    entries: u64,
    /// Proofs of each kind to time.
    #[arg(long, default_value_t = 20_000)]
    proofs: usize,
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_values = ["sqlite", "postgres"])]
    backend: Vec<BackendArg>,
}

/// Rows per insert statement (SQLite) or COPY chunk (PostgreSQL).
const CHUNK: usize = 100_000;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.entries < 2 || args.proofs == 0 {
        bail!("--entries must be at least 2 and --proofs at least 1");
    }
    println!(
        "proofs: a tree of {} entries, {} proofs of each kind, one at a time, {} CPUs",
        args.entries,
        args.proofs,
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    for backend in &args.backend {
        let env = match backend {
            BackendArg::Sqlite => TestEnv::sqlite().await,
            BackendArg::Postgres => TestEnv::postgres().await,
        };
        let name = format!("{backend:?}").to_lowercase();
        let started = Instant::now();
        let root = build(&env.db, args.entries).await?;
        let built = started.elapsed();
        let size_bytes = database_bytes(&env).await;
        println!(
            "{name}: built {} stored hashes in {:.1} s ({:.0} MB on disk)",
            tlog_tiles::stored_hash_count(args.entries),
            built.as_secs_f64(),
            size_bytes as f64 / 1e6
        );
        measure(&env.db, &name, args.entries, args.proofs, root).await?;
    }
    Ok(())
}

/// Writes the stored hashes of a tree of `n` synthetic leaves; answers its root.
async fn build(db: &Db, n: u64) -> Result<Hash> {
    let mut frontier = Frontier::default();
    let mut rows: Vec<(i64, [u8; 32])> = Vec::with_capacity(CHUNK + 64);
    for i in 0..n {
        let leaf = tlog_tiles::record_hash(&i.to_be_bytes());
        let (start, hashes) = frontier.push(leaf)?;
        for (idx, h) in (start..).zip(hashes) {
            rows.push((i64::try_from(idx)?, h.0));
        }
        if rows.len() >= CHUNK {
            write(db, &rows).await?;
            rows.clear();
        }
    }
    write(db, &rows).await?;
    Ok(frontier.root()?)
}

async fn write(db: &Db, rows: &[(i64, [u8; 32])]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    match db {
        Db::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(5_000) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO log_tree (idx, hash) ");
                q.push_values(chunk, |mut row, (i, h)| {
                    row.push_bind(*i).push_bind(h.as_slice());
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Db::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            let mut copy = conn
                .copy_in_raw("COPY log_tree (idx, hash) FROM STDIN")
                .await?;
            let mut text = String::with_capacity(rows.len() * 90);
            for (i, h) in rows {
                text.push_str(&format!("{i}\t\\\\x{}\n", hex(h)));
            }
            copy.send(text.as_bytes()).await?;
            copy.finish().await.context("COPY log_tree")?;
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn database_bytes(env: &TestEnv) -> u64 {
    match &env.db {
        Db::Sqlite(_) => std::fs::metadata(env.dir.path().join("ivan.db")).map_or(0, |m| m.len()),
        Db::Postgres(pool) => {
            sqlx::query_scalar::<_, i64>("SELECT pg_total_relation_size('log_tree')")
                .fetch_one(pool)
                .await
                .map_or(0, |n| u64::try_from(n).unwrap_or(0))
        }
    }
}

/// A small deterministic generator (xorshift): the same leaves every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn measure(db: &Db, name: &str, n: u64, proofs: usize, root: Hash) -> Result<()> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut times: Vec<Duration> = Vec::with_capacity(proofs);
    for _ in 0..proofs {
        let leaf = rng.below(n);
        let t = Instant::now();
        let p = tree::inclusion(db, leaf, n).await?;
        times.push(t.elapsed());
        let leaf_hash = tlog_tiles::record_hash(&leaf.to_be_bytes());
        if p.root != root {
            bail!("{name}: the root of {n} entries is not the built tree's");
        }
        tlog_tiles::check_record(&p.proof, n, root, leaf, leaf_hash)
            .with_context(|| format!("{name}: inclusion proof of leaf {leaf}"))?;
    }
    report(name, "inclusion", &mut times);
    times.clear();
    for _ in 0..proofs {
        let first = 1 + rng.below(n - 1);
        let t = Instant::now();
        let p = tree::consistency(db, first, n).await?;
        times.push(t.elapsed());
        // The old root, from the stored tree (checked against the new one by the proof).
        let old = tree::inclusion(db, 0, first).await?.root;
        tlog_tiles::check_tree(&p.proof, n, root, first, old)
            .with_context(|| format!("{name}: consistency proof from {first}"))?;
    }
    report(name, "consistency", &mut times);
    Ok(())
}

fn report(name: &str, kind: &str, times: &mut [Duration]) {
    times.sort_unstable();
    let total: Duration = times.iter().sum();
    println!(
        "{name:<9} {kind:<12} {:>6} proofs  p50 {:>6.3} ms  p99 {:>6.3} ms  max {:>7.3} ms  {:>7.0} proofs/s",
        times.len(),
        pct(times, 0.50),
        pct(times, 0.99),
        pct(times, 1.0),
        times.len() as f64 / total.as_secs_f64()
    );
}
