//! Hostile and heavy documents at the front door of the real release binary (issue
//! 17): how fast a 50 MiB attribute bomb is refused, and what eight concurrent 50 MiB
//! posts cost in time and peak memory, for documents of tiny elements (refused by the
//! pre-scan's node limit) and for valid signed contribution reports (fully analysed
//! and recorded). Each phase runs on a fresh server so its peak RSS (`VmHWM`) is its
//! own; the server runs with the default limits and the default 30 s request timeout.
//! It prints figures and never fails on speed.
//!
//! ```text
//! cargo build --release --bin ivan
//! cargo run --release -p ivan-bench --bin front-door
//! ```
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use clap::Parser;
use ivan_bench::{Server, ivan_binary, set_up, sign_many, start, stop};

#[derive(Debug, Parser)]
#[command(about = "Attribute-bomb refusal time; 8 concurrent 50 MiB posts: time and peak RSS")]
struct Args {
    /// The `ivan` binary to measure (build it with `cargo build --release`).
    #[arg(long)]
    ivan: Option<PathBuf>,
    /// Size of each large document, in MiB.
    #[arg(long, default_value_t = 50)]
    mib: usize,
    /// Concurrent large posts.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

const ENV: &[(&str, &str)] = &[("IVAN_HTTP__REQUEST_TIMEOUT_SECS", "30")];

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let ivan = ivan_binary(args.ivan)?;
    let bytes = args.mib * 1024 * 1024;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;

    // The attribute bomb: one element, attributes until the size is reached.
    let bomb = {
        let mut x = String::with_capacity(bytes + 64);
        x.push_str("<ContributionReport");
        let mut i = 0u64;
        while x.len() + 24 < bytes {
            x.push_str(&format!(" a{i}=\"v\""));
            i += 1;
        }
        x.push_str("/>");
        Bytes::from(x)
    };
    let tiny = {
        let n = (bytes - 7) / 4;
        Bytes::from(format!("<r>{}</r>", "<e/>".repeat(n)))
    };

    let dir = tempfile::tempdir()?;
    let server = start(&ivan, dir.path(), &sqlite(dir.path()), ENV).await?;
    let setup = set_up(&server).await?;
    println!(
        "attribute bomb: {:.1} MiB, one element",
        bomb.len() as f64 / 1048576.0
    );
    // The same body as text/plain is refused (415) after it is read and hashed but
    // before any XML work: the difference is what refusing the bomb costs.
    for (label, content_type) in [
        ("XML", "application/xml"),
        ("baseline text/plain", "text/plain"),
    ] {
        let mut times = Vec::new();
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let (status, took) =
                post(&client, &server, &setup.token, content_type, bomb.clone()).await;
            statuses.push(status);
            times.push(took);
        }
        times.sort();
        println!(
            "  as {label}: answered {statuses:?}, median {:.1} ms, min {:.1} ms (upload over loopback included)",
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[0].as_secs_f64() * 1000.0
        );
    }
    let before = server.rss_kb("VmRSS:");
    phase(
        &client,
        &server,
        &setup.token,
        "tiny elements",
        vec![tiny; args.concurrency],
        before,
    )
    .await;
    stop(server).await;

    let dir = tempfile::tempdir()?;
    let server = start(&ivan, dir.path(), &sqlite(dir.path()), ENV).await?;
    let setup = set_up(&server).await?;
    println!(
        "signing {} valid reports of {} MiB …",
        args.concurrency, args.mib
    );
    let docs = sign_many(&setup, "BIG", bytes - 64 * 1024, args.concurrency)?;
    let before = server.rss_kb("VmRSS:");
    phase(
        &client,
        &server,
        &setup.token,
        "valid signed reports",
        docs,
        before,
    )
    .await;
    stop(server).await;
    Ok(())
}

fn sqlite(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("data/ivan.db").display())
}

async fn post(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    content_type: &str,
    body: Bytes,
) -> (u16, Duration) {
    let started = Instant::now();
    let status = match client
        .post(format!("{}/api/v1/submissions", server.base))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let s = r.status().as_u16();
            let _ = r.bytes().await;
            s
        }
        Err(_) => 0,
    };
    (status, started.elapsed())
}

async fn phase(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    label: &str,
    docs: Vec<Bytes>,
    rss_before_kb: u64,
) {
    let n = docs.len();
    let size = docs.first().map_or(0, Bytes::len);
    let started = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    for doc in docs {
        let (client, token) = (client.clone(), token.to_owned());
        let url = server.base.clone();
        posts.spawn(async move {
            let started = Instant::now();
            let status = match client
                .post(format!("{url}/api/v1/submissions"))
                .bearer_auth(token)
                .header("content-type", "application/xml")
                .body(doc)
                .send()
                .await
            {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            (status, started.elapsed())
        });
    }
    let mut answers = posts.join_all().await;
    let elapsed = started.elapsed();
    answers.sort_by_key(|(_, t)| *t);
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    let peak = server.rss_kb("VmHWM:");
    println!(
        "{label}: {n} × {:.1} MiB at once: all answered in {:.1} s (first {:.1} s, last {:.1} s); statuses {statuses:?}",
        size as f64 / 1048576.0,
        elapsed.as_secs_f64(),
        answers.first().map_or(0.0, |(_, t)| t.as_secs_f64()),
        answers.last().map_or(0.0, |(_, t)| t.as_secs_f64()),
    );
    println!(
        "  server RSS before {} MiB, peak {} MiB: growth {} MiB",
        rss_before_kb / 1024,
        peak / 1024,
        peak.saturating_sub(rss_before_kb) / 1024
    );
}
