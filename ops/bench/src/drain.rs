//! Forwarding drain: how fast the outbox empties a backlog of accepted filings into
//! the sandbox authority, without faults and with 30 % injected faults.
//!
//! Per run: a fresh database; `ivan serve` with forwarding disabled and no hold
//! window takes `--filings` signed 5 KB contribution reports (32 clients); it is
//! stopped and started again with forwarding enabled against an `ivan
//! sandbox-authority` process (plain HTTP on loopback); the bench then watches the
//! outbox until every filing is delivered and until every answer is in, and prints
//! the rates, and the request body bytes the authority received (the bytes on the
//! wire, less HTTP's own). `--packages 0,50` runs once per value: 0 is one
//! `POST /v1/messages` per filing, N > 1 gzip packages of up to N filings
//! (`forwarding.package_max_filings`). It checks that the authority received each
//! filing exactly once. It prints figures and never fails on speed.
//!
//! ```text
//! cargo build --release --bin ivan
//! cargo run --release -p ivan-bench --bin drain -- --filings 10000
//! ```
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use ivan_bench::{load, set_up, sign_many, start, stop};
use retention::on_pool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[derive(Debug, Parser)]
#[command(about = "Forwarding: drain a backlog of accepted filings into the sandbox authority")]
struct Args {
    #[command(flatten)]
    target: ivan_bench::Target,
    /// Accepted filings in the backlog.
    #[arg(long, default_value_t = 10_000)]
    filings: usize,
    /// Fault rates of the sandbox, one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 0.3])]
    fault_rate: Vec<f64>,
    /// Filings per package, one run each: 0 = one request per filing.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 50])]
    packages: Vec<usize>,
    /// Give up waiting after this long.
    #[arg(long, default_value_t = 600)]
    max_seconds: u64,
}

async fn count(db: &retention::Db, sql: &'static str) -> Result<i64> {
    Ok(on_pool!(db, pool => sqlx::query_scalar(sql).fetch_one(pool).await)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let header = format!("drain bench: {} filings", args.filings);
    let ivan = ivan_bench::bench_binary(args.target.ivan.clone(), &header)?;
    for backend in &args.target.backend {
        for &fault_rate in &args.fault_rate {
            for &packages in &args.packages {
                run(&ivan, backend, fault_rate, packages, &args).await?;
            }
        }
    }
    Ok(())
}

async fn run(
    ivan: &std::path::Path,
    backend: &str,
    fault_rate: f64,
    packages: usize,
    args: &Args,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (url, _pg) = ivan_bench::database(backend, dir.path()).await?;
    let mut sandbox = Command::new(ivan)
        .args(["sandbox-authority", "--listen", "127.0.0.1:0"])
        .args(["--process-after-ms", "100"])
        .args(["--fault-rate", &fault_rate.to_string()])
        .env("IVAN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the sandbox authority")?;
    let line = BufReader::new(sandbox.stdout.take().context("stdout")?)
        .lines()
        .next_line()
        .await?
        .context("sandbox exited")?;
    let authority = line
        .strip_prefix("sandbox-authority listening on ")
        .context("unexpected sandbox line")?
        .to_owned();
    let common = [
        ("IVAN_INTAKE__HOLD_WINDOW_SECS", "0"),
        ("IVAN_AUTHORITY__MODE", "remote"),
        ("IVAN_AUTHORITY__BASE_URL", authority.as_str()),
        ("IVAN_FORWARDING__RETRY_BASE_MS", "100"),
        ("IVAN_FORWARDING__RETRY_CAP_SECS", "2"),
        ("IVAN_FORWARDING__POLL_INTERVAL_MS", "200"),
        ("IVAN_FORWARDING__POLL_CAP_SECS", "2"),
    ];
    // 1. The backlog: accepted while forwarding is off.
    let mut env = common.to_vec();
    env.push(("IVAN_FORWARDING__ENABLED", "false"));
    let server = start(ivan, dir.path(), &url, &env).await?;
    let setup = set_up(&server).await?;
    let docs = Arc::new(sign_many(
        &setup,
        &format!("{backend}-drain"),
        5 * 1024,
        args.filings,
    )?);
    let filed = load(&server, &setup.token, docs, 32, args.max_seconds, None).await?;
    if filed.ok != args.filings {
        bail!(
            "only {} of {} filings accepted: {:?}",
            filed.ok,
            args.filings,
            filed.first_failure
        );
    }
    stop(server).await;
    // 2. Drain.
    let packages_env = packages.to_string();
    let mut env = common.to_vec();
    env.push((
        "IVAN_FORWARDING__PACKAGE_MAX_FILINGS",
        packages_env.as_str(),
    ));
    let server = start(ivan, dir.path(), &url, &env).await?;
    let started = Instant::now();
    let db = retention::Db::connect(&url, 2, retention::MigrationPolicy::RequireCurrent).await?;
    let deadline = started + Duration::from_secs(args.max_seconds);
    let mut delivered_after = None;
    let total = i64::try_from(args.filings)?;
    loop {
        let to_deliver = count(&db, "SELECT COUNT(*) FROM outbox WHERE phase = 'deliver'").await?;
        let pending = count(&db, "SELECT COUNT(*) FROM outbox").await?;
        if to_deliver == 0 && delivered_after.is_none() {
            delivered_after = Some(started.elapsed());
        }
        if pending == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let emptied = started.elapsed();
    let processed = count(
        &db,
        "SELECT COUNT(*) FROM submissions WHERE status IN ('processed', 'rejected')",
    )
    .await?;
    db.close().await;
    let stats: serde_json::Value = reqwest::get(format!("{authority}/v1/_stats"))
        .await?
        .json()
        .await?;
    stop(server).await;
    let _ = sandbox.kill().await;
    let delivered = delivered_after.unwrap_or(emptied);
    let mode = if packages > 1 {
        format!("packages of {packages}")
    } else {
        "single".to_owned()
    };
    println!(
        "{backend:<8} faults {:>3.0} % {mode}: {total} delivered in {:.1} s = {:.0} msg/s; outbox empty (answers in) after {:.1} s = {:.0} msg/s; processed {processed}; authority received {} (duplicates answered {}, posts {}, packages {}, faults {}); body bytes received {} = {:.0} per filing",
        fault_rate * 100.0,
        delivered.as_secs_f64(),
        total as f64 / delivered.as_secs_f64(),
        emptied.as_secs_f64(),
        total as f64 / emptied.as_secs_f64(),
        stats["received"],
        stats["duplicates"],
        stats["posts"],
        stats["packages"],
        stats["faults_injected"],
        stats["bytes_received"],
        stats["bytes_received"].as_f64().unwrap_or_default() / total as f64
    );
    if stats["received"] != total || processed != total {
        println!("  NOT ALL FILINGS WERE DELIVERED EXACTLY ONCE");
    }
    Ok(())
}
