//! Certificate status beyond the signer's own CRL, against real peers on loopback:
//! a three-level PKI made here with the `openssl` command line (root CA →
//! intermediate CA → employees' signing certificates naming an OCSP responder), and
//! `openssl ocsp` as that responder, answering with a delegated OCSP-signing
//! certificate.
//!
//! - A good answer is kept with the filing: the payload of its `submission.verify`
//!   log entry, which `openssl ocsp` itself reads back as a good answer for it.
//! - A certificate revoked after the last CRL is refused on the responder's word.
//! - A responder that does not answer leaves the CRL decision standing (and counts).
//! - The root revoking the intermediate refuses every certificate under it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use ivan_e2e::filing::{add_employer, report, set_attr};
use ivan_e2e::{Backend, Instance, Server, e2e_tests, free_port};
use serde_json::Value;

e2e_tests!(ocsp_and_the_whole_chain_are_checked);

/// Runs `openssl ARGS` in `dir`, asserting success.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (ops/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA made with `openssl ca`: its directory, key, certificate and config.
struct Ca {
    dir: PathBuf,
}

impl Ca {
    fn new(root: &Path, name: &str, ocsp_url: &str) -> Ca {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("newcerts")).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
        std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
        std::fs::write(
            dir.join("ca.cnf"),
            format!(
                "[ca]\ndefault_ca = this\n\
                 [this]\ndir = {dir}\ndatabase = $dir/index.txt\nnew_certs_dir = $dir/newcerts\n\
                 serial = $dir/serial\ncrlnumber = $dir/crlnumber\ndefault_md = sha256\n\
                 policy = any\ndefault_days = 365\ndefault_crl_days = 30\nunique_subject = no\n\
                 [any]\ncommonName = supplied\n\
                 [ca_ext]\nbasicConstraints = critical,CA:TRUE,pathlen:0\n\
                 keyUsage = critical,keyCertSign,cRLSign\n\
                 [signer_ext]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature,nonRepudiation\n\
                 authorityInfoAccess = OCSP;URI:{ocsp_url}\n\
                 [responder_ext]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature\nextendedKeyUsage = OCSPSigning\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        Ca { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_owned()
    }

    fn config(&self) -> String {
        self.path("ca.cnf")
    }

    /// A P-256 key (PKCS#8) and a request for `cn`, in this CA's directory.
    fn key_and_request(&self, name: &str, cn: &str) {
        let key = self.path(&format!("{name}.key"));
        openssl(
            &self.dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
        );
        let subj = format!("/CN={cn}");
        let csr = self.path(&format!("{name}.csr"));
        openssl(
            &self.dir,
            &["req", "-new", "-key", &key, "-subj", &subj, "-out", &csr],
        );
    }

    /// `openssl ca` as this CA (its key, and its certificate once it has one).
    fn ca(&self, args: &[&str]) {
        let (config, key, cert) = (self.config(), self.path("ca.key"), self.path("ca.pem"));
        let mut all = vec!["ca", "-batch", "-config", &config, "-keyfile", &key];
        if Path::new(&cert).exists() {
            all.extend(["-cert", &cert]);
        }
        all.extend(args);
        openssl(&self.dir, &all);
    }

    /// The self-signed root.
    fn self_sign(&self, cn: &str) {
        self.key_and_request("ca", cn);
        let (csr, pem) = (self.path("ca.csr"), self.path("ca.pem"));
        self.ca(&[
            "-selfsign",
            "-extensions",
            "ca_ext",
            "-days",
            "3650",
            "-notext",
            "-in",
            &csr,
            "-out",
            &pem,
        ]);
    }

    /// Issues `name` (key and request in `holder`'s directory) with `extensions`.
    fn issue(&self, holder: &Ca, name: &str, cn: &str, extensions: &str) -> String {
        holder.key_and_request(name, cn);
        let cert = holder.path(&format!("{name}.pem"));
        let csr = holder.path(&format!("{name}.csr"));
        self.ca(&[
            "-extensions",
            extensions,
            "-notext",
            "-in",
            &csr,
            "-out",
            &cert,
        ]);
        cert
    }

    fn revoke(&self, cert: &str) {
        self.ca(&["-revoke", cert, "-crl_reason", "keyCompromise"]);
    }

    /// A CRL of what this CA revoked so far; its path.
    fn crl(&self, name: &str) -> String {
        let out = self.path(name);
        self.ca(&["-gencrl", "-out", &out]);
        out
    }
}

/// `openssl ocsp` answering for `ca` on `port` with `responder`'s key, once it
/// listens (it prints `ACCEPT …` then; a bare connection to probe it would hang its
/// one-at-a-time loop); killed on drop.
async fn responder(ca: &Ca, port: u16, responder: &str) -> tokio::process::Child {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "ocsp",
            "-index",
            &ca.path("index.txt"),
            "-CA",
            &ca.path("ca.pem"),
            "-rsigner",
            &ca.path(&format!("{responder}.pem")),
            "-rkey",
            &ca.path(&format!("{responder}.key")),
            "-port",
            &port.to_string(),
            "-ndays",
            "1",
        ])
        .current_dir(&ca.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl ocsp");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("openssl ocsp listens within 30 s")
        .unwrap()
        .unwrap_or_default();
    assert!(line.starts_with("ACCEPT"), "openssl ocsp: {line}");
    // Whatever else it prints is read, so it never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// Signs `xml` with `signer` (under `inter`, whose certificate goes beside it).
async fn sign(inst: &Instance, inter: &Ca, signer: &str, xml: &str) -> String {
    let input = inst
        .dir
        .path()
        .join(format!("in-{signer}-{}.xml", xml.len()));
    std::fs::write(&input, xml).unwrap();
    inst.run_ok(&[
        "dev",
        "sign",
        "--key",
        &inter.path(&format!("{signer}.key")),
        "--cert",
        &inter.path(&format!("{signer}.pem")),
        "--chain",
        &inter.path("ca.pem"),
        input.to_str().unwrap(),
    ])
    .await
}

/// Files a report signed by `signer` with sender reference `reference`: status and
/// answer.
async fn file(
    inst: &Instance,
    server: &Server,
    token: &str,
    inter: &Ca,
    signer: &str,
    reference: &str,
) -> (u16, Value) {
    let xml = set_attr(&report("12345678", 0), "senderReference", reference);
    let signed = sign(inst, inter, signer, &xml).await;
    let r = server.submit(token, signed).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The payload of the filing's `submission.verify` entry: media type and bytes.
async fn verify_payload(inst: &Instance, id: &str) -> Option<(String, Vec<u8>)> {
    let db = inst.db().await;
    let row: Option<(Option<String>, Option<String>)> = retention::on_pool!(&db, pool => {
        sqlx::query_as(
            "SELECT e.payload_sha256, o.media_type FROM log_entries e \
             LEFT JOIN originals o ON o.sha256 = e.payload_sha256 \
             WHERE e.subject = $1 AND e.action = 'submission.verify'",
        )
        .bind(format!("submission:{id}"))
        .fetch_optional(pool)
        .await
        .unwrap()
    });
    let (Some(sha), Some(media_type)) = row.expect("a submission.verify entry") else {
        return None;
    };
    let path = inst
        .data_dir
        .join("originals/sha256")
        .join(&sha[0..2])
        .join(&sha[2..4])
        .join(&sha);
    Some((media_type, std::fs::read(path).unwrap()))
}

async fn ocsp_and_the_whole_chain_are_checked(inst: Instance) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let pki = inst.dir.path().join("pki");
    let root = Ca::new(&pki, "root", &url);
    root.self_sign("E2E Root CA");
    let inter = Ca::new(&pki, "inter", &url);
    let inter_cert = root.issue(&inter, "ca", "E2E Issuing CA", "ca_ext");
    assert_eq!(inter_cert, inter.path("ca.pem"));
    let good = inter.issue(&inter, "good", "Employee Good", "signer_ext");
    let doomed = inter.issue(&inter, "doomed", "Employee Doomed", "signer_ext");
    inter.issue(&inter, "responder", "E2E OCSP Responder", "responder_ext");
    // The CRLs say nothing is revoked; the responder will know better.
    let root_crl = root.crl("root.crl");
    let inter_crl = inter.crl("inter.crl");
    inter.revoke(&doomed);

    inst.run_ok(&["migrate"]).await;
    let employer = add_employer(&inst, "Chain Employer", "12345678").await;
    let id = employer["id"].as_str().unwrap();
    let token = employer["api_token"].as_str().unwrap();
    inst.run_ok(&["admin", "ca", "add", &root.path("ca.pem"), "--json"])
        .await;
    // Certificates first: the intermediate's CRL is taken as the CRL of the CA of a
    // registered certificate.
    for cert in [&good, &doomed] {
        inst.run_ok(&["admin", "cert", "add", "--employer", id, cert, "--json"])
            .await;
    }
    for crl in [&root_crl, &inter_crl] {
        inst.run_ok(&["admin", "crl", "add", crl, "--json"]).await;
    }
    let mut ocsp = responder(&inter, port, "responder").await;
    let server = inst.serve().await;

    // Good: accepted, and the responder's answer is kept with the filing.
    let (status, filed) = file(&inst, &server, token, &inter, "good", "OCSP-1").await;
    assert_eq!(status, 201, "{filed}");
    let message_id = filed["message_id"].as_str().unwrap();
    let (media_type, answer) = verify_payload(&inst, message_id)
        .await
        .unwrap_or_else(|| panic!("no OCSP answer kept; log: {}", server.log()));
    assert_eq!(media_type, "application/ocsp-response");
    let kept = inst.dir.path().join("kept.ocsp");
    std::fs::write(&kept, &answer).unwrap();
    let text = std::process::Command::new("openssl")
        .args([
            "ocsp",
            "-respin",
            kept.to_str().unwrap(),
            "-resp_text",
            "-noverify",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Cert Status: good") && text.contains("E2E OCSP Responder"),
        "{text}"
    );

    // Revoked after the CRLs were issued: refused on the responder's word.
    let (status, refused) = file(&inst, &server, token, &inter, "doomed", "OCSP-2").await;
    assert_eq!(status, 422, "{refused}");
    let error = &refused["errors"][0];
    assert_eq!(error["code"], "certificate.revoked", "{refused}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("OCSP responder") && message.contains("Employee Doomed"),
        "{message}"
    );

    // The responder gone: the CRL decision stands, and the failure is counted.
    ocsp.kill().await.unwrap();
    let failures = server.metric("ivan_ocsp_failures_total").await;
    let (status, filed) = file(&inst, &server, token, &inter, "good", "OCSP-3").await;
    assert_eq!(status, 201, "{filed}");
    assert_eq!(
        verify_payload(&inst, filed["message_id"].as_str().unwrap()).await,
        None
    );
    assert_eq!(
        server.metric("ivan_ocsp_failures_total").await,
        failures + 1.0
    );
    server.stop().await;

    // The root revokes the intermediate: nothing under it is accepted any more.
    root.revoke(&inter_cert);
    let root_crl2 = root.crl("root-2.crl");
    inst.run_ok(&["admin", "crl", "add", &root_crl2, "--json"])
        .await;
    let server = inst.serve().await;
    let (status, refused) = file(&inst, &server, token, &inter, "good", "OCSP-4").await;
    assert_eq!(status, 422, "{refused}");
    let error = &refused["errors"][0];
    assert_eq!(error["code"], "certificate.revoked", "{refused}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("the intermediate CA \"CN=E2E Issuing CA\""),
        "{refused}"
    );
    server.stop().await;
}

/// Without the root's CRL on file the intermediate's status is unknown: refused,
/// naming it (the root's CRL is not optional once a chain has an intermediate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intermediate_without_its_issuers_crl_is_refused() {
    let inst = Instance::new(Backend::Sqlite).await;
    let pki = inst.dir.path().join("pki");
    let url = format!("http://127.0.0.1:{}/", free_port());
    let root = Ca::new(&pki, "root", &url);
    root.self_sign("E2E Root CA");
    let inter = Ca::new(&pki, "inter", &url);
    root.issue(&inter, "ca", "E2E Issuing CA", "ca_ext");
    let good = inter.issue(&inter, "good", "Employee Good", "signer_ext");
    let inter_crl = inter.crl("inter.crl");
    inst.run_ok(&["migrate"]).await;
    let employer = add_employer(&inst, "Chain Employer", "12345678").await;
    let token = employer["api_token"].as_str().unwrap();
    inst.run_ok(&["admin", "ca", "add", &root.path("ca.pem"), "--json"])
        .await;
    inst.run_ok(&[
        "admin",
        "cert",
        "add",
        "--employer",
        employer["id"].as_str().unwrap(),
        &good,
        "--json",
    ])
    .await;
    inst.run_ok(&["admin", "crl", "add", &inter_crl, "--json"])
        .await;
    let server = inst.serve_with(&[("IVAN_INTAKE__OCSP", "false")]).await;
    let (status, refused) = file(&inst, &server, token, &inter, "good", "CHAIN-1").await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["errors"][0]["code"], "certificate.revocation-unknown",
        "{refused}"
    );
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("intermediate CA \"CN=E2E Issuing CA\""),
        "{refused}"
    );
    server.stop().await;
}
