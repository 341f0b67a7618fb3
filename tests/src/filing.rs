//! Filing helpers shared by the end-to-end suites: an employer with a test PKI set up
//! through the CLI, example documents, signing with `ivan dev sign`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Instance;

/// An employer with trust set up, ready to file.
#[derive(Debug)]
pub struct Filer {
    pub id: String,
    pub registration: String,
    pub token: String,
    /// The `ivan dev keys` directory of this employer.
    pub keys: PathBuf,
}

pub async fn set_up(inst: &Instance, registration: &str) -> Filer {
    inst.run_ok(&["migrate"]).await;
    let keys = inst.dir.path().join(format!("pki-{registration}"));
    inst.run_ok(&["dev", "keys", keys.to_str().unwrap()]).await;
    let created: Value = serde_json::from_str(
        &inst
            .run_ok(&[
                "admin",
                "employer",
                "add",
                "--name",
                "Test Employer",
                "--registration-number",
                registration,
                "--json",
            ])
            .await,
    )
    .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let p = |f: &str| keys.join(f).to_str().unwrap().to_owned();
    // Each `dev keys` makes its own CA.
    inst.run_ok(&["admin", "ca", "add", &p("ca.pem"), "--json"])
        .await;
    inst.run_ok(&["admin", "crl", "add", &p("crl.pem"), "--json"])
        .await;
    for cert in ["employer.pem", "revoked.pem", "expired.pem", "stranger.pem"] {
        inst.run_ok(&[
            "admin",
            "cert",
            "add",
            "--employer",
            &id,
            &p(cert),
            "--json",
        ])
        .await;
    }
    Filer {
        id,
        registration: registration.to_owned(),
        token: created["api_token"].as_str().unwrap().to_owned(),
        keys,
    }
}

/// Sets the employer's notification address (`ivan admin employer set-email`).
pub async fn set_notify_email(inst: &Instance, filer: &Filer, email: &str) {
    inst.run_ok(&[
        "admin",
        "employer",
        "set-email",
        "--employer",
        &filer.id,
        "--email",
        email,
    ])
    .await;
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/examples")
}

/// The valid contribution report example, made out to `registration`, with a
/// sender reference of its own (so each variant is a new filing).
pub fn report(registration: &str, variant: u32) -> String {
    let xml = std::fs::read_to_string(examples().join("valid/contribution-report.xml")).unwrap();
    let xml = set_attr(&xml, "employer", registration);
    set_attr(&xml, "senderReference", &format!("E2E-{variant}"))
}

/// Sets the first `name="…"` attribute in `xml` to `value`.
pub fn set_attr(xml: &str, name: &str, value: &str) -> String {
    let key = format!(" {name}=\"");
    let start = xml
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} attribute"))
        + key.len();
    let end = start + xml[start..].find('"').unwrap();
    format!("{}{value}{}", &xml[..start], &xml[end..])
}

pub async fn sign(inst: &Instance, filer: &Filer, xml: &str, who: &str) -> String {
    let input = inst.dir.path().join(format!("in-{}.xml", uuid()));
    std::fs::write(&input, xml).unwrap();
    let key = filer.keys.join(format!("{who}.key"));
    let cert = filer.keys.join(format!("{who}.pem"));
    inst.run_ok(&[
        "dev",
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        input.to_str().unwrap(),
    ])
    .await
}

pub fn uuid() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
