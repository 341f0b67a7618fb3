//! Where one large document's analysis goes, step by step, in-process: the tree path
//! (pre-scan, parse, signature profile, signature verification, schema and rules)
//! and the streamed path (byte checks, pre-scan, plan, streamed signature, chunked
//! checks; once on the text in memory, once on a file as a staged body is read), on the
//! same signed contribution report of many small lines. Prints figures, never fails
//! on speed; the peak RSS of the whole run is what `/usr/bin/time -v` reports.
//!
//! ```text
//! cargo build --release -p ivan-bench --bin analysis
//! target/release/analysis --mb 50 --file /tmp/report-50mb.xml          # both paths
//! target/release/analysis --mb 50 --file /tmp/report-50mb.xml --streamed-only
//! ```
use std::time::Instant;

use anyhow::{Result, anyhow};
use clap::Parser;
use ivan_server::documents::{Context, Plan, Profiles};
use ivan_server::intake::c14n::{self, Method};
use ivan_server::intake::signature;
use ivan_server::xml;
use ivan_server::xml::cancel::Cancel;
use ivan_server::xml::source::Source;

#[derive(Debug, Parser)]
#[command(about = "One large document's analysis, step by step")]
struct Args {
    /// Size of the generated report, in MB.
    #[arg(long, default_value_t = 50)]
    mb: usize,
    /// Keep the signed document here (made once, read on later runs).
    #[arg(long)]
    file: Option<std::path::PathBuf>,
    /// Measure only the streamed path (its memory alone, under `time -v`).
    #[arg(long)]
    streamed_only: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let signed = match args.file.as_ref().filter(|f| f.exists()) {
        Some(f) => std::fs::read_to_string(f)?,
        None => {
            let ck = rcgen::generate_simple_self_signed(vec!["bench".to_owned()])?;
            let xml = ivan_bench::report("12345678", "big", args.mb * 1_000_000);
            let key = ck.signing_key.serialize_pem();
            let signed = signature::sign_enveloped(&xml, key.as_bytes(), ck.cert.der())
                .map_err(|e| anyhow!(e))?;
            if let Some(f) = &args.file {
                std::fs::write(f, &signed)?;
            }
            signed
        }
    };
    let bytes = signed.as_bytes();
    let profiles = Profiles::load()?;
    let ctx = Context {
        today: chrono::Utc::now().date_naive(),
        employer_registration_number: "12345678",
    };
    let cancel = Cancel::default();
    let limits = xml::Limits::default();
    let step = |label: &str, t: Instant| println!("  {label:<28} {:>8.0} ms", ms(t));
    println!("{} bytes", bytes.len());

    let text = xml::text(bytes).map_err(|e| anyhow!("{e:?}"))?;
    let t = Instant::now();
    let exc = Method::Exclusive {
        prefixes: Vec::new(),
    };
    c14n::scan(text, &exc, &cancel).map_err(|e| anyhow!("{e:?}"))?;
    step("(digest pass alone)", t);
    // The streamed path twice: on the text in memory, and on a file as a staged body
    // is read (from the page cache: what differs is the reading, not the disk).
    let on_disk = tempfile::tempfile()?;
    std::io::Write::write_all(&mut &on_disk, bytes)?;
    let sources = [
        ("in memory", Source::from(text)),
        (
            "from a file, as a staged body",
            Source::File {
                file: &on_disk,
                len: bytes.len(),
            },
        ),
    ];
    let mut streamed = Vec::new();
    for (label, src) in sources {
        println!("streamed path, {label}:");
        let all = Instant::now();
        let t = Instant::now();
        xml::check_text(src).map_err(|e| anyhow!("{e:?}"))?;
        step("byte checks (UTF-8)", t);
        let t = Instant::now();
        let shape = xml::prescan(src, &limits, &cancel).map_err(|e| anyhow!("{e:?}"))?;
        step("pre-scan", t);
        let t = Instant::now();
        let plan = Plan::of(src, &cancel)
            .map_err(|e| anyhow!("{e:?}"))?
            .map_err(|why| anyhow!("no plan: {why:?}"))?;
        step("plan (items)", t);
        let t = Instant::now();
        let inspected = signature::verify_streamed(src, &shape, &limits, &cancel)
            .map_err(|e| anyhow!("{e:?}"))?;
        step("signature (streamed)", t);
        let t = Instant::now();
        let checked = profiles
            .check_streamed(src, &plan, &ctx, &cancel)
            .map_err(|e| anyhow!("{e:?}"))?;
        step("schema and rules (chunks)", t);
        println!(
            "  one thread, total {:.0} ms ({} findings; the server runs signature and checks on two threads)",
            ms(all),
            checked.findings.len()
        );
        streamed.push((inspected, checked));
    }
    let (inspected, checked) = streamed.swap_remove(0);
    anyhow::ensure!(
        streamed
            .iter()
            .all(|(i, c)| *c == checked && i.content_digest == inspected.content_digest),
        "in memory and from a file disagree"
    );
    if args.streamed_only {
        return Ok(());
    }

    println!("tree path:");
    let all = Instant::now();
    let t = Instant::now();
    let doc = xml::build(bytes, &limits).map_err(|e| anyhow!("{e:?}"))?;
    step("parse", t);
    let t = Instant::now();
    let tree = signature::inspect(&doc).map_err(|e| anyhow!("{e:?}"))?;
    step("signature profile", t);
    let t = Instant::now();
    signature::verify(&doc, tree.signer()).map_err(|e| anyhow!("{e:?}"))?;
    step("signature verification", t);
    let t = Instant::now();
    let whole = profiles.check(&doc, &ctx).map_err(|e| anyhow!("{e:?}"))?;
    step("schema and rules", t);
    println!("  total {:.0} ms (after the pre-scan)", ms(all));
    anyhow::ensure!(
        whole == checked && tree.content_digest == inspected.content_digest,
        "the paths disagree"
    );
    println!("both paths agree");
    Ok(())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
