//! Shared pieces of the benchmarks that drive the real `ivan` binary: starting it,
//! setting up an employer with trust through the CLI, making and signing valid
//! contribution reports, and closed- or open-loop load with latency figures.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use retention::testing::TempPg;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `ivan serve`.
#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub base: String,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub ivan: PathBuf,
}

impl Server {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.ivan);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(args)
            .current_dir(&self.dir)
            .kill_on_drop(true);
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.command(args).output().await?;
        if !out.status.success() {
            bail!("ivan {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    pub fn rss_kb(&self, field: &str) -> u64 {
        let pid = self.child.id().unwrap_or(0);
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

pub async fn start(
    ivan: &Path,
    dir: &Path,
    database_url: &str,
    extra_env: &[(&str, &str)],
) -> Result<Server> {
    let mut env = vec![
        (
            "IVAN_DATA_DIR".to_owned(),
            dir.join("data").display().to_string(),
        ),
        ("IVAN_DATABASE_URL".to_owned(), database_url.to_owned()),
        ("IVAN_LOG".to_owned(), "warn".to_owned()),
        (
            "IVAN_INTAKE__MAX_DOCUMENT_BYTES".to_owned(),
            (64 * 1024 * 1024).to_string(),
        ),
        (
            "IVAN_HTTP__REQUEST_TIMEOUT_SECS".to_owned(),
            "120".to_owned(),
        ),
    ];
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let mut cmd = Command::new(ivan);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("starting ivan serve")?;
    let stdout = child.stdout.take().context("stdout")?;
    let line = BufReader::new(stdout)
        .lines()
        .next_line()
        .await?
        .context("ivan serve exited before listening")?;
    let base = line
        .strip_prefix("ivan listening on ")
        .context("unexpected first line")?
        .to_owned();
    Ok(Server {
        child,
        base,
        dir: dir.to_owned(),
        env,
        ivan: ivan.to_owned(),
    })
}

// The generated filings are the e2e tests' too.
pub use ivan_e2e::filing::{money, personal_id, sized_report as report};

#[derive(Debug)]
pub struct Setup {
    pub token: String,
    pub key_pem: Vec<u8>,
    pub cert_der: Vec<u8>,
}

/// The flags every bench of the service has: which binary, on which backends.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The `ivan` binary to measure (build it with `cargo build --release`).
    #[arg(long)]
    pub ivan: Option<PathBuf>,
    /// The database backends to run on.
    #[arg(long, value_delimiter = ',', default_values = ["sqlite", "postgres"])]
    pub backend: Vec<String>,
}

/// The database URL of a bench run on `backend` (`sqlite` in `dir`, or a fresh
/// PostgreSQL database, dropped with the returned guard).
pub async fn database(backend: &str, dir: &Path) -> Result<(String, Option<TempPg>)> {
    Ok(match backend {
        "sqlite" => {
            let file = dir.join("data/ivan.db");
            (format!("sqlite://{}", file.display()), None)
        }
        "postgres" => {
            let pg = TempPg::create().await?;
            (pg.url().to_owned(), Some(pg))
        }
        other => bail!("unknown backend {other}"),
    })
}

/// The CPUs this machine offers (for the benches' headers).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, usize::from)
}

/// The bench's employer, added with the CLI: what `admin employer add --json` printed.
pub async fn add_employer(server: &Server) -> Result<serde_json::Value> {
    let number = "--registration-number";
    let args = [
        "admin", "employer", "add", "--name", "Bench", number, "12345678", "--json",
    ];
    Ok(serde_json::from_str(&server.run(&args).await?)?)
}

pub async fn set_up(server: &Server) -> Result<Setup> {
    let pki = server.dir.join("pki");
    server
        .run(&["dev", "keys", pki.to_str().context("path")?])
        .await?;
    let created = add_employer(server).await?;
    let id = created["id"].as_str().context("id")?.to_owned();
    let p = |f: &str| pki.join(f).display().to_string();
    server.run(&["admin", "ca", "add", &p("ca.pem")]).await?;
    server.run(&["admin", "crl", "add", &p("crl.pem")]).await?;
    server
        .run(&[
            "admin",
            "cert",
            "add",
            "--employer",
            &id,
            &p("employer.pem"),
        ])
        .await?;
    let cert = ivan_server::intake::trust::parse_certificate_pem_or_der(&std::fs::read(p(
        "employer.pem",
    ))?)
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Wait for the server's trust cache to see the new CA and CRL.
    tokio::time::sleep(Duration::from_secs(6)).await;
    Ok(Setup {
        token: created["api_token"].as_str().context("token")?.to_owned(),
        key_pem: std::fs::read(p("employer.key"))?,
        cert_der: cert.der,
    })
}

pub fn sign_many(setup: &Setup, prefix: &str, size: usize, n: usize) -> Result<Vec<bytes::Bytes>> {
    (0..n)
        .map(|i| {
            let xml = report("12345678", &format!("{prefix}-{i}"), size);
            ivan_server::intake::signature::sign_enveloped(&xml, &setup.key_pem, &setup.cert_der)
                .map(bytes::Bytes::from)
                .map_err(|e| anyhow::anyhow!(e))
        })
        .collect()
}

#[derive(Debug)]
pub struct Run {
    pub ok: usize,
    pub failed: usize,
    pub first_failure: Option<String>,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

/// Posts `docs` with `concurrency` closed-loop clients for `seconds` (or until the
/// documents run out); if `interval` is set, each client paces itself to it.
pub async fn load(
    server: &Server,
    token: &str,
    docs: Arc<Vec<bytes::Bytes>>,
    concurrency: usize,
    seconds: u64,
    interval: Option<Duration>,
) -> Result<Run> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let url = format!("{}/api/v1/submissions", server.base);
    let tasks: Vec<_> = (0..concurrency)
        .map(|k| {
            let (client, docs, next, url, token) = (
                client.clone(),
                docs.clone(),
                next.clone(),
                url.clone(),
                token.to_owned(),
            );
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let (mut failed, mut first_failure) = (0, None);
                // Paced clients start spread over one interval, so they do not fire
                // in synchronised bursts.
                let mut tick = interval.map(|every| {
                    let offset = every.mul_f64(k as f64 / concurrency as f64);
                    tokio::time::interval_at(tokio::time::Instant::now() + offset, every)
                });
                while Instant::now() < deadline {
                    if let Some(t) = tick.as_mut() {
                        t.tick().await;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(doc) = docs.get(i) else { break };
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/xml")
                        .body(doc.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => lat.push(t.elapsed()),
                        Ok(r) => {
                            failed += 1;
                            first_failure.get_or_insert(format!(
                                "{}: {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            ));
                        }
                        Err(e) => {
                            failed += 1;
                            first_failure.get_or_insert(e.to_string());
                        }
                    }
                }
                (lat, failed, first_failure)
            })
        })
        .collect();
    let mut run = Run {
        ok: 0,
        failed: 0,
        first_failure: None,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (lat, failed, ff) = t.await?;
        run.ok += lat.len();
        run.latencies.extend(lat);
        run.failed += failed;
        if run.first_failure.is_none() {
            run.first_failure = ff;
        }
    }
    run.elapsed = started.elapsed();
    run.latencies.sort_unstable();
    if next.load(Ordering::Relaxed) >= docs.len() {
        println!("  (ran out of pre-signed documents; the run was shorter than {seconds} s)");
    }
    Ok(run)
}

/// `(sum, count)` of a summary/histogram in the server's `/metrics`.
pub async fn metric(server: &Server, name: &str) -> (f64, f64) {
    let text = match reqwest::get(format!("{}/metrics", server.base)).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let value = |suffix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{suffix} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (value("_sum"), value("_count"))
}

/// What the log appender did between two snapshots: batches, mean appends per batch,
/// mean and total time per batch (the appender is serial, so busy ≈ 100 % means it
/// is the bottleneck).
pub async fn appender_line(server: &Server, before: &[(f64, f64); 2], elapsed: Duration) {
    let now = [
        metric(server, "ivan_log_batch_size").await,
        metric(server, "ivan_log_batch_seconds").await,
    ];
    let batches = now[0].1 - before[0].1;
    if batches > 0.0 {
        let busy = now[1].0 - before[1].0;
        println!(
            "  log appender: {batches:.0} batches, {:.1} submissions/batch, {:.2} ms/batch, busy {:.0} %",
            (now[0].0 - before[0].0) / batches,
            busy / batches * 1000.0,
            busy / elapsed.as_secs_f64() * 100.0
        );
    }
}

pub async fn appender_snapshot(server: &Server) -> [(f64, f64); 2] {
    [
        metric(server, "ivan_log_batch_size").await,
        metric(server, "ivan_log_batch_seconds").await,
    ]
}

pub fn pct(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

pub fn print(label: &str, run: &Run) {
    println!(
        "{label:<34} {:>7} ok {:>4} failed {:>9.0} msg/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
        run.ok,
        run.failed,
        run.ok as f64 / run.elapsed.as_secs_f64(),
        pct(&run.latencies, 0.5),
        pct(&run.latencies, 0.99)
    );
    if let Some(f) = &run.first_failure {
        println!(
            "  first failure: {}",
            f.chars().take(300).collect::<String>()
        );
    }
}

/// SIGTERM, then wait for the exit.
pub async fn stop(server: Server) {
    let mut child = server.child;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().unwrap_or(0).to_string()])
        .status()
        .await;
    let _ = child.wait().await;
}

/// The `ivan` binary of a bench (`--ivan` or the release build), announced in the
/// bench's first line: `{bench}, N CPUs, binary PATH`.
pub fn bench_binary(given: Option<PathBuf>, bench: &str) -> Result<PathBuf> {
    let ivan = ivan_binary(given)?;
    println!("{bench}, {} CPUs, binary {}", cpus(), ivan.display());
    Ok(ivan)
}

/// The `ivan` binary: `--ivan` or `$CARGO_TARGET_DIR/release/ivan`.
pub fn ivan_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    let ivan = given.unwrap_or_else(|| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        PathBuf::from(target).join("release/ivan")
    });
    if !ivan.is_file() {
        bail!(
            "{} not found: cargo build --release --bin ivan",
            ivan.display()
        );
    }
    Ok(ivan)
}
