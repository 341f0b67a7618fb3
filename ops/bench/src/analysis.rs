//! Where one large document's analysis goes, step by step, in-process.
use std::time::Instant;

use clap::Parser;
use ivan_server::documents::{Context, Profiles};
use ivan_server::intake::cancel::Cancel;
use ivan_server::intake::{signature, xml};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 50)]
    mb: usize,
    /// Keep the signed document here (made once, read on later runs).
    #[arg(long)]
    file: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let signed = match args.file.as_ref().filter(|f| f.exists()) {
        Some(f) => std::fs::read_to_string(f)?,
        None => {
            let ck = rcgen::generate_simple_self_signed(vec!["bench".to_owned()])?;
            let xml = ivan_bench::report("12345678", "big", args.mb * 1_000_000);
            let signed = signature::sign_enveloped(
                &xml,
                ck.signing_key.serialize_pem().as_bytes(),
                ck.cert.der(),
            )
            .map_err(|e| anyhow::anyhow!(e))?;
            if let Some(f) = &args.file {
                std::fs::write(f, &signed)?;
            }
            signed
        }
    };
    let bytes = signed.as_bytes();
    println!("{} bytes", bytes.len());
    let limits = xml::Limits::default();
    let t = Instant::now();
    let text = xml::text(bytes).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let shape =
        xml::prescan(text, &limits, &Cancel::default()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!("prescan {:?} {shape:?}", t.elapsed());
    let t = Instant::now();
    let env = ivan_server::intake::c14n::scan(
        text,
        &ivan_server::intake::c14n::Method::Exclusive { prefixes: vec![] },
        &Cancel::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!("scan {:?} {}", t.elapsed(), env.signatures);
    if std::env::var_os("SCAN_ONLY").is_some() {
        return Ok(());
    }
    let profiles = Profiles::load()?;
    let ctx = Context {
        today: chrono::Utc::now().date_naive(),
        employer_registration_number: "12345678",
    };
    let t = Instant::now();
    let plan = ivan_server::documents::Plan::of(text).ok_or_else(|| anyhow::anyhow!("no plan"))?;
    println!("plan {:?}", t.elapsed());
    let t = Instant::now();
    let ins = signature::verify_streamed(text, &shape, &limits, &Cancel::default())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!("verify_streamed {:?} {}", t.elapsed(), ins.content_digest);
    let t = Instant::now();
    let checked = profiles
        .check_streamed(text, &plan, &ctx, &Cancel::default())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!(
        "check_streamed {:?} findings {}",
        t.elapsed(),
        checked.findings.len()
    );
    if std::env::var_os("STREAM_ONLY").is_some() {
        return Ok(());
    }
    let t = Instant::now();
    let doc = xml::build(bytes, &limits).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!("build {:?}", t.elapsed());
    let t = Instant::now();
    let inspected = signature::inspect(&doc).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!("inspect {:?}", t.elapsed());
    let t = Instant::now();
    signature::verify(&doc, inspected.signer()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!("verify {:?}", t.elapsed());
    let profiles = Profiles::load()?;
    let t = Instant::now();
    let checked = profiles
        .check(
            &doc,
            &Context {
                today: chrono::Utc::now().date_naive(),
                employer_registration_number: "12345678",
            },
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!(
        "check {:?} findings {}",
        t.elapsed(),
        checked.findings.len()
    );
    for f in checked.findings.iter().take(3) {
        println!("{f:?}");
    }
    Ok(())
}
