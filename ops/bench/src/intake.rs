//! Signed-filing intake through the real release binary: messages per second and
//! latency for 5 KB and 50 KB signed contribution reports at concurrency 16 and 64,
//! on SQLite and PostgreSQL, beside the rate of verification alone on the same
//! documents (parse, profile, bergshamra on every core, in-process) and the ratio;
//! then p99 at half the measured rate; then the time and the server's memory growth
//! for one 50 MB document.
//!
//! Everything runs on loopback: the bench starts `ivan serve` itself (temp data dir,
//! temp database), sets up a test PKI and an employer with the CLI, signs distinct
//! documents in-process (`ivan dev sign`'s code) before measuring, and posts them
//! with a closed loop of `concurrency` clients. Every answer must be `201`; anything
//! else is counted and printed. It prints figures and never fails on speed.
//!
//! ```text
//! cargo build --release --bin ivan
//! cargo run --release -p ivan-bench --bin intake -- --seconds 10
//! ```
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use ivan_bench::{
    Run, Server, Setup, appender_line, appender_snapshot, load, print, set_up, sign_many, start,
    stop,
};

#[derive(Debug, Parser)]
#[command(about = "Signed-filing intake: msg/s, p50/p99, 50 MB document")]
struct Args {
    #[command(flatten)]
    target: ivan_bench::Target,
    /// Length of each measured run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Document sizes in KB.
    #[arg(long, value_delimiter = ',', default_values_t = [5, 50])]
    size_kb: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64])]
    concurrency: Vec<usize>,
    /// Size of the single large document, in MB (0 skips it).
    #[arg(long, default_value_t = 50)]
    big_mb: usize,
    /// Also send this many large documents at once (different bytes, one client
    /// each) and print the slowest answer and the server's RSS growth (0 skips it).
    #[arg(long, default_value_t = 4)]
    big_at_once: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let header = format!("intake bench: {} s per run", args.seconds);
    let ivan = ivan_bench::bench_binary(args.target.ivan.clone(), &header)?;
    for backend in &args.target.backend {
        let dir = tempfile::tempdir()?;
        let (url, _pg) = ivan_bench::database(backend, dir.path()).await?;
        let server = start(&ivan, dir.path(), &url, &[]).await?;
        let setup = set_up(&server).await?;
        println!("\n{backend}:");
        for &kb in &args.size_kb {
            for &c in &args.concurrency {
                // Enough distinct documents for a generous rate; signing is not measured.
                let n = (args.seconds as usize * if kb <= 5 { 2000 } else { 1000 }).max(100);
                let prefix = format!("{backend}-{kb}-{c}");
                let docs = Arc::new(sign_many(&setup, &prefix, kb * 1024, n)?);
                let before = appender_snapshot(&server).await;
                let run = load(&server, &setup.token, docs.clone(), c, args.seconds, None).await?;
                print(&format!("{kb} KB, concurrency {c}"), &run);
                appender_line(&server, &before, run.elapsed).await;
                // The same documents through verification alone, on every core.
                let verify = verify_only(&docs, Duration::from_secs(args.seconds.min(5)))?;
                let rate = run.ok as f64 / run.elapsed.as_secs_f64();
                println!(
                    "  verification only (parse, profile, bergshamra; in-process, {} threads): {verify:.0}/s; ivan / verify-only = {:.2}",
                    threads(),
                    rate / verify
                );
                // Half the measured rate, paced (open loop per client).
                let rate = run.ok as f64 / run.elapsed.as_secs_f64() / 2.0;
                if rate >= 1.0 {
                    let per_client = Duration::from_secs_f64(c as f64 / rate);
                    let n = (rate * args.seconds as f64 * 1.2) as usize + c;
                    let docs =
                        Arc::new(sign_many(&setup, &format!("{prefix}-half"), kb * 1024, n)?);
                    let half = load(
                        &server,
                        &setup.token,
                        docs,
                        c,
                        args.seconds,
                        Some(per_client),
                    )
                    .await?;
                    print(&format!("  at half that rate ({rate:.0}/s)"), &half);
                }
            }
        }
        if args.big_mb > 0 {
            let bytes = args.big_mb * 1024 * 1024;
            let (run, rss, size) =
                big_documents(&server, &setup, &format!("{backend}-big"), bytes, 1).await?;
            println!(
                "one {:.1} MB document: {} in {:.2} s; {rss}",
                size as f64 / 1e6,
                if run.ok == 1 { "201" } else { "FAILED" },
                run.latencies.first().map_or(0.0, Duration::as_secs_f64),
            );
            print_failure(&run);
            if args.big_at_once > 0 {
                let n = args.big_at_once;
                let prefix = format!("{backend}-big-at-once");
                let (run, rss, _) = big_documents(&server, &setup, &prefix, bytes, n).await?;
                println!(
                    "{n} such documents at once: {} ok, {} failed, slowest answer {:.2} s; {rss}",
                    run.ok,
                    run.failed,
                    run.latencies
                        .iter()
                        .max()
                        .map_or(0.0, Duration::as_secs_f64),
                );
                print_failure(&run);
            }
        }
        stop(server).await;
    }
    Ok(())
}

/// The server's RSS across one load (kB): before it, the peak before it, the peak
/// after it.
struct Rss {
    before: u64,
    hwm_before: u64,
    hwm_after: u64,
}

impl std::fmt::Display for Rss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server RSS {} MB before, peak {} MB (peak before {} MB): growth {} MB",
            self.before / 1024,
            self.hwm_after / 1024,
            self.hwm_before / 1024,
            self.hwm_after.saturating_sub(self.before) / 1024
        )
    }
}

/// Signs `n` large documents of about `bytes` (different bytes each), sends them at
/// once (one client each) and measures the server's RSS across that: the run, the
/// RSS and the first document's size.
async fn big_documents(
    server: &Server,
    setup: &Setup,
    prefix: &str,
    bytes: usize,
    n: usize,
) -> Result<(Run, Rss, usize)> {
    let docs = sign_many(setup, prefix, bytes, n)?;
    let size = docs.first().map_or(0, bytes::Bytes::len);
    // Let the allocator settle, then measure peak RSS across the requests.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.rss_kb("VmRSS:");
    let hwm_before = server.rss_kb("VmHWM:");
    let run = load(server, &setup.token, Arc::new(docs), n, 600, None).await?;
    let hwm_after = server.rss_kb("VmHWM:");
    let rss = Rss {
        before,
        hwm_before,
        hwm_after,
    };
    Ok((run, rss, size))
}

fn print_failure(run: &Run) {
    if let Some(f) = &run.first_failure {
        println!("  failure: {}", f.chars().take(300).collect::<String>());
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Documents per second that the tree path's parse, signature profile and
/// bergshamra verification alone take, on every core: the part of intake the issue
/// compares the whole with.
fn verify_only(docs: &[bytes::Bytes], for_how_long: Duration) -> Result<f64> {
    use ivan_server::intake::signature;
    use ivan_server::xml;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let done = AtomicUsize::new(0);
    let started = std::time::Instant::now();
    let limits = xml::Limits::default();
    let one = |doc: &[u8]| -> Result<(), String> {
        let doc = xml::build(doc, &limits).map_err(|r| r.message)?;
        let inspected = signature::inspect(&doc).map_err(|r| r.message)?;
        signature::verify(&doc, inspected.signer()).map_err(|r| r.message)
    };
    let outcomes: Vec<Result<(), String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads())
            .map(|t| {
                let (done, one) = (&done, &one);
                s.spawn(move || {
                    let mut i = t;
                    while started.elapsed() < for_how_long {
                        one(&docs[i % docs.len()])?;
                        done.fetch_add(1, Ordering::Relaxed);
                        i += threads();
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect()
    });
    if let Some(Err(e)) = outcomes.into_iter().find(Result::is_err) {
        bail!("verification alone failed: {e}");
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
