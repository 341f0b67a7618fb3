//! How soon an analysis stops once its request is gone: the same two blocking
//! steps the intake pipeline runs (`Scanned::of`, then `Scanned::analyse`), on a
//! thread, cancelled at evenly spaced moments of its uncancelled run; the figure is
//! the time from setting the flag to the thread's return (what the budget is held
//! for after the request ends). Documents: a large report (streamed), a large
//! report with one huge item (streamed signature, then refused by its shape), and
//! documents at the default streaming threshold that take the tree path. Prints
//! figures, never fails on speed.
//!
//! ```text
//! cargo build --release -p ivan-bench --bin cancel
//! target/release/cancel --mb 50
//! ```
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use clap::Parser;
use ivan_server::documents::{Context, Profiles};
use ivan_server::intake::{IntakeConfig, Scanned, signature};
use ivan_server::xml::cancel::Cancel;

#[derive(Debug, Parser)]
#[command(about = "How soon a cancelled analysis stops")]
struct Args {
    /// Size of the large documents, in MB.
    #[arg(long, default_value_t = 50)]
    mb: usize,
    /// Cancellations per document.
    #[arg(long, default_value_t = 20)]
    trials: u32,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let ck = rcgen::generate_simple_self_signed(vec!["bench".to_owned()])?;
    let key = ck.signing_key.serialize_pem();
    let sign = |xml: &str| {
        signature::sign_enveloped(xml, key.as_bytes(), ck.cert.der()).map_err(|e| anyhow!(e))
    };
    let config = IntakeConfig::default();
    let threshold = config.streaming_threshold_bytes;
    let large = ivan_bench::report("12345678", "big", args.mb * 1_000_000);
    let first_end = large
        .find("</Employee>")
        .ok_or_else(|| anyhow!("no employee"))?;
    let huge_item = format!(
        "{}<!--{}-->{}",
        &large[..first_end],
        "x".repeat(args.mb * 1_000_000 / 2),
        &large[first_end..]
    );
    let documents = [
        (format!("{} MB report, streamed", args.mb), sign(&large)?),
        (
            format!("{} MB report, one huge item (refused)", args.mb),
            sign(&huge_item)?,
        ),
        (
            "report at the threshold, tree path".into(),
            sign(&ivan_bench::report("12345678", "t", threshold - 4096))?,
        ),
        (
            "registration forms at the threshold, tree path".into(),
            sign(&inflated(
                include_str!("../../examples/valid/registration-form-batch.xml"),
                "Registration",
                threshold - 4096,
            )?)?,
        ),
        (
            "tiny elements at the threshold, tree path".into(),
            format!("<r>{}</r>", "<e/>".repeat((threshold - 16) / 4)),
        ),
    ];
    let profiles = Arc::new(Profiles::load()?);
    let limits = config.limits();
    println!(
        "{:<44} {:>9} {:>12} {:>12} {:>8}",
        "document", "run ms", "stop p50 ms", "stop max ms", "stopped"
    );
    for (label, doc) in documents {
        let body = Arc::new(doc.into_bytes());
        let run = |cancel: Cancel| {
            let (body, profiles) = (body.clone(), profiles.clone());
            std::thread::spawn(move || {
                let ctx = Context {
                    today: chrono::Utc::now().date_naive(),
                    employer_registration_number: "12345678",
                };
                let scanned = Scanned::of(body.as_slice(), &limits, threshold, &cancel);
                if let Ok(scanned) = scanned {
                    let _ = scanned.analyse(body.as_slice(), &limits, &profiles, &ctx, &cancel);
                }
            })
        };
        let t = Instant::now();
        run(Cancel::default())
            .join()
            .map_err(|_| anyhow!("analysis panicked"))?;
        let whole = t.elapsed();
        let mut stops = Vec::new();
        for i in 1..=args.trials {
            let cancel = Cancel::default();
            let thread = run(cancel.clone());
            std::thread::sleep(whole.mul_f64(f64::from(i) / f64::from(args.trials + 1)));
            let set = Instant::now();
            cancel.cancel();
            let finished_before = thread.is_finished();
            thread.join().map_err(|_| anyhow!("analysis panicked"))?;
            if !finished_before {
                stops.push(set.elapsed());
            }
        }
        stops.sort();
        let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
        println!(
            "{label:<44} {:>9.0} {:>12.1} {:>12.1} {:>5}/{}",
            whole.as_secs_f64() * 1000.0,
            ms(stops.get(stops.len() / 2)),
            ms(stops.last()),
            stops.len(),
            args.trials
        );
    }
    Ok(())
}

/// `xml` with its run of `item` elements repeated to about `bytes`.
fn inflated(xml: &str, item: &str, bytes: usize) -> Result<String> {
    let start = xml
        .find(&format!("<{item}>"))
        .or_else(|| xml.find(&format!("<{item} ")))
        .ok_or_else(|| anyhow!("no {item}"))?;
    let close = format!("</{item}>");
    let end = xml.rfind(&close).ok_or_else(|| anyhow!("no {close}"))? + close.len();
    let run = &xml[start..end];
    let times = bytes.saturating_sub(xml.len()) / run.len() + 1;
    Ok(format!(
        "{}{}{}",
        &xml[..start],
        run.repeat(times),
        &xml[end..]
    ))
}
