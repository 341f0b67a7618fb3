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

/// The arguments of `ivan admin employer add` for `name` and `registration`.
pub fn employer_add<'a>(name: &'a str, registration: &'a str) -> [&'a str; 7] {
    let number = "--registration-number";
    [
        "admin",
        "employer",
        "add",
        "--name",
        name,
        number,
        registration,
    ]
}

/// Adds an employer (`ivan admin employer add --json`); returns what it printed.
pub async fn add_employer(inst: &Instance, name: &str, registration: &str) -> Value {
    let args = [&employer_add(name, registration)[..], &["--json"]].concat();
    serde_json::from_str(&inst.run_ok(&args).await).unwrap()
}

pub async fn set_up(inst: &Instance, registration: &str) -> Filer {
    set_up_with(inst, registration, Crl::Added).await
}

/// Where [`set_up_with`]'s employer gets the CA's CRL.
#[derive(Debug, Clone, Copy)]
pub enum Crl<'a> {
    /// Added with `ivan admin crl add`.
    Added,
    /// Not added; the certificates name this URL as their CRL distribution point.
    At(&'a str),
}

/// [`set_up`], with the CA's CRL added or left to be fetched from `Crl::At`.
pub async fn set_up_with(inst: &Instance, registration: &str, crl: Crl<'_>) -> Filer {
    inst.run_ok(&["migrate"]).await;
    let keys = inst.dir.path().join(format!("pki-{registration}"));
    let mut dev_keys = vec!["dev", "keys", keys.to_str().unwrap()];
    if let Crl::At(url) = crl {
        dev_keys.extend(["--crl-url", url]);
    }
    inst.run_ok(&dev_keys).await;
    let created = add_employer(inst, "Test Employer", registration).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let p = |f: &str| keys.join(f).to_str().unwrap().to_owned();
    // Each `dev keys` makes its own CA.
    inst.run_ok(&["admin", "ca", "add", &p("ca.pem"), "--json"])
        .await;
    if let Crl::Added = crl {
        inst.run_ok(&["admin", "crl", "add", &p("crl.pem"), "--json"])
            .await;
    }
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

/// Sets the employer's notification address (`ivan admin employer set-email
/// --json`); returns what it printed.
pub async fn set_notify_email(inst: &Instance, filer: &Filer, email: &str) -> Value {
    let args = ["admin", "employer", "set-email", "--employer", &filer.id];
    let out = inst
        .run_ok(&[&args[..], &["--email", email, "--json"]].concat())
        .await;
    serde_json::from_str(&out).unwrap()
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

/// A valid 10-digit personal number for employee `i` (born 1960–1999, mod 11 = 0).
pub fn personal_id(i: usize) -> String {
    let yy = 60 + i % 40;
    let mm = 1 + (i / 40) % 12;
    let dd = 1 + (i / 480) % 28;
    // A serial whose check digit would be 10 has no valid number: take the next one.
    // (Among any 11 consecutive serials one works; a failure would show as refused filings.)
    (0..1000)
        .find_map(|step| {
            let serial = (i / 13_440 + step) % 1000;
            let base: u64 = format!("{yy:02}{mm:02}{dd:02}{serial:03}").parse().ok()?;
            let check = (11 - (base * 10) % 11) % 11;
            (check < 10).then(|| format!("{base:09}{check}"))
        })
        .unwrap_or_default()
}

/// A contribution report of about `bytes` bytes, one valid line per employee `i`
/// ([`personal_id`]), valid for the reference profile.
pub fn sized_report(employer: &str, reference: &str, bytes: usize) -> String {
    let mut lines = String::new();
    let (mut base, mut ee, mut er) = (0u64, 0u64, 0u64);
    let mut i = 0;
    while lines.len() + 400 < bytes.max(800) {
        let b = 150_000 + (i as u64 % 50) * 1_000; // cents
        let (e1, e2) = (b * 94 / 1000, b * 252 / 1000);
        base += b;
        ee += e1;
        er += e2;
        lines.push_str(&format!(
            "  <Employee><PersonalId>{}</PersonalId><Surname>Novak</Surname><GivenName>Jan</GivenName>\
<AssessmentBase>{}</AssessmentBase><EmployeeContribution>{}</EmployeeContribution>\
<EmployerContribution>{}</EmployerContribution></Employee>\n",
            personal_id(i),
            money(b),
            money(e1),
            money(e2)
        ));
        i += 1;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ContributionReport xmlns=\"urn:ivan:filing:1\" \
employer=\"{employer}\" senderReference=\"{reference}\" period=\"102026\" kind=\"regular\">\n{lines}  \
<Totals><AssessmentBase>{}</AssessmentBase><EmployeeContribution>{}</EmployeeContribution>\
<EmployerContribution>{}</EmployerContribution></Totals>\n</ContributionReport>\n",
        money(base),
        money(ee),
        money(er)
    )
}

pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
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

/// Signs `xml` as the employer and files it through the API (it must be accepted);
/// returns its message id.
pub async fn file_signed(
    inst: &Instance,
    server: &crate::Server,
    filer: &Filer,
    xml: &str,
) -> String {
    let signed = sign(inst, filer, xml, "employer").await;
    server.file(&filer.token, signed).await["message_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn uuid() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
