//! The mobile channel through the real release binary: PIN logins per second
//! (Argon2id-bound by design) and pre-registrations per second, at a fixed
//! concurrency, on SQLite and PostgreSQL; plus the latency of one login with nothing
//! else running.
//!
//! Everything runs on loopback: the bench starts `ivan serve` itself (temp data dir,
//! temp database), onboards an employer with the CLI, authorises one phone per client
//! through the employer API and generates its PIN. Only correct PINs are ever sent
//! (wrong ones would make the phone wait; see OPERATIONS.md, "Mobile login limits").
//! All load comes from 127.0.0.1, so the
//! bench raises the per-source login limit (`IVAN_MOBILE__LOGINS_PER_MINUTE_PER_SOURCE`)
//! far above the rate it can reach; every other mobile setting is the default, which
//! the bench reads back with `ivan config check` and prints.
//!
//! - single login: `--single` sequential logins with one phone, median and range;
//! - logins: each client logs in again and again with its own phone for `--seconds`;
//!   `200` is counted as done, `401`, `429`, `503` and anything else separately;
//! - pre-registrations: each client logs in once (untimed), then files
//!   pre-registrations (each with its own `Idempotency-Key`) for `--seconds`; `201`
//!   is done. Each one is logged, receipted and forwarded to the in-process sandbox.
//!
//! It prints figures and never fails on speed.
//!
//! ```text
//! cargo build --release --bin ivan
//! cargo run --release -p ivan-bench --bin mobile -- --seconds 10
//! ```
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use ivan_bench::{Server, appender_snapshot, metric, pct, start, stop};

#[derive(Debug, Parser)]
#[command(about = "Mobile channel: PIN logins/s and pre-registrations/s, p50/p99")]
struct Args {
    #[command(flatten)]
    target: ivan_bench::Target,
    /// Length of each measured phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Closed-loop clients, each with its own phone.
    #[arg(long, value_delimiter = ',', default_values_t = [16])]
    concurrency: Vec<usize>,
    /// Sequential logins for the single-login latency.
    #[arg(long, default_value_t = 20)]
    single: usize,
}

/// The per-source login limit the bench sets: all its load comes from one address.
const LOGIN_LIMIT: &str = "1000000";

/// One measured phase.
#[derive(Debug, Default)]
struct Phase {
    ok: usize,
    unauthorized: usize,
    limited: usize,
    busy: usize,
    other: usize,
    first_failure: Option<String>,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn print(&self, label: &str) {
        println!(
            "{label:<30} {:>6} ok {:>5.1}/s  p50 {:>7.1} ms  p99 {:>7.1} ms  401 {}  429 {}  503 {}  other {}",
            self.ok,
            self.rate(),
            pct(&self.latencies, 0.5),
            pct(&self.latencies, 0.99),
            self.unauthorized,
            self.limited,
            self.busy,
            self.other
        );
        if let Some(f) = &self.first_failure {
            println!(
                "  first failure: {}",
                f.chars().take(300).collect::<String>()
            );
        }
    }

    fn merge(&mut self, other: Phase) {
        self.ok += other.ok;
        self.unauthorized += other.unauthorized;
        self.limited += other.limited;
        self.busy += other.busy;
        self.other += other.other;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.latencies.extend(other.latencies);
    }

    /// Counts an answer that was not the expected one.
    async fn failed(&mut self, r: reqwest::Result<reqwest::Response>) {
        match r {
            Ok(r) => {
                match r.status().as_u16() {
                    401 => self.unauthorized += 1,
                    429 => self.limited += 1,
                    503 => self.busy += 1,
                    _ => self.other += 1,
                }
                if self.first_failure.is_none() {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    self.first_failure = Some(format!("{status}: {body}"));
                }
            }
            Err(e) => {
                self.other += 1;
                self.first_failure.get_or_insert(e.to_string());
            }
        }
    }
}

/// A summary row for the closing table.
#[derive(Debug)]
struct Row {
    backend: String,
    what: &'static str,
    clients: usize,
    phase: Phase,
}

#[derive(Debug, Clone)]
struct Phone {
    number: String,
    pin: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let header = format!("mobile bench: {} s per phase", args.seconds);
    let ivan = ivan_bench::bench_binary(args.target.ivan.clone(), &header)?;
    println!(
        "  IVAN_MOBILE__LOGINS_PER_MINUTE_PER_SOURCE={LOGIN_LIMIT} (default 20): all load comes from 127.0.0.1"
    );
    let mut rows = Vec::new();
    for backend in &args.target.backend {
        let dir = tempfile::tempdir()?;
        let (url, _pg) = ivan_bench::database(backend, dir.path()).await?;
        let server = start(
            &ivan,
            dir.path(),
            &url,
            &[("IVAN_MOBILE__LOGINS_PER_MINUTE_PER_SOURCE", LOGIN_LIMIT)],
        )
        .await?;
        println!("\n{backend}:");
        // Stop the server whatever happened (kill_on_drop is the last resort).
        let result = run(&server, backend, &args, &mut rows).await;
        stop(server).await;
        result?;
    }
    println!(
        "\n| backend  | phase             | clients |   /s | p50 ms | p99 ms | 401 | 429 | 503 | other |"
    );
    println!(
        "|----------|-------------------|--------:|-----:|-------:|-------:|----:|----:|----:|------:|"
    );
    for r in &rows {
        let p = &r.phase;
        println!(
            "| {:<8} | {:<17} | {:>7} | {:>4.0} | {:>6.1} | {:>6.1} | {:>3} | {:>3} | {:>3} | {:>5} |",
            r.backend,
            r.what,
            r.clients,
            p.rate(),
            pct(&p.latencies, 0.5),
            pct(&p.latencies, 0.99),
            p.unauthorized,
            p.limited,
            p.busy,
            p.other
        );
    }
    Ok(())
}

async fn run(server: &Server, backend: &str, args: &Args, rows: &mut Vec<Row>) -> Result<()> {
    print_mobile_config(server).await?;
    let token = employer(server).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let most = args.concurrency.iter().copied().max().unwrap_or(1).max(1);
    let phones = phones(server, &client, &token, most).await?;

    // One login at a time.
    let mut single = Vec::new();
    if let Some(phone) = phones.first() {
        for _ in 0..args.single {
            let t = Instant::now();
            login(server, &client, phone).await?;
            single.push(t.elapsed());
        }
    }
    single.sort_unstable();
    println!(
        "single login, {} sequential: median {:.1} ms (min {:.1}, max {:.1})",
        single.len(),
        pct(&single, 0.5),
        pct(&single, 0.0),
        pct(&single, 1.0)
    );

    for &c in &args.concurrency {
        let mine = Arc::new(phones.get(..c).context("phones")?.to_vec());
        let before = appender_snapshot(server).await;
        let busy_before = counter(server, "ivan_mobile_pin_hash_busy_total").await;
        let logins = logins(server, &client, mine.clone(), args.seconds).await;
        logins.print(&format!("logins, concurrency {c}"));
        appender(server, &before, logins.elapsed).await;
        let busy = counter(server, "ivan_mobile_pin_hash_busy_total").await - busy_before;
        if busy > 0.0 {
            println!("  server: {busy:.0} logins found no hashing slot in time");
        }
        rows.push(Row {
            backend: backend.to_owned(),
            what: "PIN logins",
            clients: c,
            phase: logins,
        });

        let mut tokens = Vec::new();
        for phone in mine.iter() {
            tokens.push(login(server, &client, phone).await?);
        }
        let before = appender_snapshot(server).await;
        let delivered_before = counter(server, DELIVERED).await;
        let filed = preregistrations(
            server,
            &client,
            tokens,
            args.seconds,
            &format!("{backend}-{c}"),
        )
        .await;
        filed.print(&format!("pre-registrations, concurrency {c}"));
        appender(server, &before, filed.elapsed).await;
        // Pre-registrations have no hold window: forwarding runs during the phase and
        // shares the log appender with the filings.
        println!(
            "  forwarded to the sandbox meanwhile: {:.0} delivered",
            counter(server, DELIVERED).await - delivered_before
        );
        rows.push(Row {
            backend: backend.to_owned(),
            what: "pre-registrations",
            clients: c,
            phase: filed,
        });
    }
    Ok(())
}

/// The effective `[mobile]` hashing settings, as `ivan config check` sees them with
/// the server's environment.
async fn print_mobile_config(server: &Server) -> Result<()> {
    let toml = server.run(&["config", "check"]).await?;
    let mut section = "";
    let mut wanted = Vec::new();
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[mobile]"
            && let Some((key, value)) = line.split_once('=')
        {
            let key = key.trim();
            if key.starts_with("argon2_")
                || [
                    "max_concurrent_hashes",
                    "hash_wait_ms",
                    "logins_per_minute_per_source",
                ]
                .contains(&key)
            {
                wanted.push(format!("{key} = {}", value.trim()));
            }
        }
    }
    if wanted.is_empty() {
        bail!("no [mobile] settings in `ivan config check`:\n{toml}");
    }
    println!("server [mobile]: {}", wanted.join(", "));
    Ok(())
}

/// An employer onboarded with the CLI; its API token.
async fn employer(server: &Server) -> Result<String> {
    let created = ivan_bench::add_employer(server).await?;
    Ok(created["api_token"]
        .as_str()
        .context("api_token")?
        .to_owned())
}

/// `n` authorised phones with fresh PINs.
async fn phones(
    server: &Server,
    client: &reqwest::Client,
    token: &str,
    n: usize,
) -> Result<Vec<Phone>> {
    let mut phones = Vec::with_capacity(n);
    for k in 0..n {
        let number = format!("+421901{k:06}");
        let r = client
            .post(format!("{}/api/v1/phone-accesses", server.base))
            .bearer_auth(token)
            .json(&serde_json::json!({ "phone": number, "holder_name": format!("Bench {k}") }))
            .send()
            .await?;
        let access = expect_status(r, 201).await?;
        let id = access["id"].as_str().context("phone access id")?;
        let r = client
            .post(format!("{}/api/v1/phone-accesses/{id}/pin", server.base))
            .bearer_auth(token)
            .send()
            .await?;
        let pin = expect_status(r, 201).await?["pin"]
            .as_str()
            .context("pin")?
            .to_owned();
        phones.push(Phone { number, pin });
    }
    Ok(phones)
}

async fn expect_status(r: reqwest::Response, status: u16) -> Result<serde_json::Value> {
    let got = r.status();
    let body = r.text().await?;
    if got.as_u16() != status {
        bail!("expected {status}, got {got}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// One login that must succeed; its access token.
async fn login(server: &Server, client: &reqwest::Client, phone: &Phone) -> Result<String> {
    let r = client
        .post(format!("{}/mobile/v1/session", server.base))
        .json(&serde_json::json!({
            "phone": phone.number, "pin": phone.pin, "device_name": "bench",
        }))
        .send()
        .await?;
    let issued = expect_status(r, 200).await?;
    Ok(issued["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned())
}

/// Every client logs in with its own phone, again and again, until the deadline.
async fn logins(
    server: &Server,
    client: &reqwest::Client,
    phones: Arc<Vec<Phone>>,
    seconds: u64,
) -> Phase {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..phones.len())
        .map(|k| {
            let (client, phones) = (client.clone(), phones.clone());
            let url = format!("{}/mobile/v1/session", server.base);
            tokio::spawn(async move {
                let mut phase = Phase::default();
                let Some(phone) = phones.get(k) else {
                    return phase;
                };
                let body = serde_json::json!({
                    "phone": phone.number, "pin": phone.pin, "device_name": format!("bench {k}"),
                });
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let r = client.post(&url).json(&body).send().await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            // Read the tokens, as an app would.
                            if r.bytes().await.is_ok() {
                                phase.ok += 1;
                                phase.latencies.push(t.elapsed());
                            } else {
                                phase.other += 1;
                            }
                        }
                        r => phase.failed(r).await,
                    }
                }
                phase
            })
        })
        .collect();
    collect(tasks, started).await
}

/// Every client files pre-registrations with its own access token until the deadline.
async fn preregistrations(
    server: &Server,
    client: &reqwest::Client,
    tokens: Vec<String>,
    seconds: u64,
    prefix: &str,
) -> Phase {
    let today = today();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(k, token)| {
            let client = client.clone();
            let url = format!("{}/mobile/v1/preregistrations", server.base);
            let prefix = prefix.to_owned();
            let body = serde_json::json!({
                "person_id": "9206154122", "surname": "Novák", "given_name": "Peter",
                "birth_date": "1992-06-15", "kind": "hire", "effective_date": today,
            });
            tokio::spawn(async move {
                let mut phase = Phase::default();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    i += 1;
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .bearer_auth(&token)
                        .header("idempotency-key", format!("bench-{prefix}-{k}-{i}"))
                        .json(&body)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => {
                            phase.ok += 1;
                            phase.latencies.push(t.elapsed());
                        }
                        r => phase.failed(r).await,
                    }
                }
                phase
            })
        })
        .collect();
    collect(tasks, started).await
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Phase>>, started: Instant) -> Phase {
    let mut all = Phase::default();
    for t in tasks {
        match t.await {
            Ok(p) => all.merge(p),
            Err(e) => {
                all.other += 1;
                all.first_failure.get_or_insert(e.to_string());
            }
        }
    }
    all.elapsed = started.elapsed();
    all.latencies.sort_unstable();
    all
}

const DELIVERED: &str = "ivan_forwarding_attempts_total{outcome=\"delivered\"}";

/// What the serial log appender did since `before` (every log entry of the phase,
/// whoever wrote it: logins, filings, forwarding).
async fn appender(server: &Server, before: &[(f64, f64); 2], elapsed: Duration) {
    let size = metric(server, "ivan_log_batch_size").await;
    let time = metric(server, "ivan_log_batch_seconds").await;
    let batches = size.1 - before[0].1;
    if batches > 0.0 {
        let busy = time.0 - before[1].0;
        println!(
            "  log appender: {batches:.0} batches, {:.1} appends/batch, {:.2} ms/batch, busy {:.0} %",
            (size.0 - before[0].0) / batches,
            busy / batches * 1000.0,
            busy / elapsed.as_secs_f64() * 100.0
        );
    }
}

/// A counter's value in the server's `/metrics`, summed over its labels unless `name`
/// names them (0 if absent).
async fn counter(server: &Server, name: &str) -> f64 {
    let text = match reqwest::get(format!("{}/metrics", server.base)).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| rest.strip_prefix(' ').or_else(|| rest.strip_prefix('{')))
        .filter_map(|rest| rest.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .sum()
}

/// Today's date (UTC), `YYYY-MM-DD` (civil-from-days; no date crate in this package).
fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = i64::try_from(secs / 86_400).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
