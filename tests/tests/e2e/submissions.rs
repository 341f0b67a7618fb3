//! Signed submission intake, end to end through the real binary on both backends:
//! the operator sets up trust with the CLI (`ivan dev keys`, `ivan admin ca|crl|cert
//! add`), documents are signed with `ivan dev sign` and with the independent `xmlsec1`,
//! and the employer API is driven over HTTP.

use ivan_e2e::filing::{report, set_up, sign};
use ivan_e2e::{Instance, e2e_tests};
use retention::on_pool;
use serde_json::Value;

e2e_tests!(
    accepted_filing_is_kept_receipted_and_repeatable,
    hostile_and_invalid_filings_are_refused_and_leave_nothing,
    idempotency_key_and_cancel_window,
    xmlsec1_signed_filing_is_accepted,
    sigterm_lets_an_upload_in_flight_finish,
    data_files_are_private_to_the_service_account,
    a_removed_certificate_no_longer_authorises_filings,
    employers_are_warned_before_their_certificates_expire,
    crls_are_fetched_and_used,
    a_removed_ca_is_no_longer_trusted,
);

async fn json(r: reqwest::Response) -> Value {
    r.json().await.unwrap()
}

async fn accepted_filing_is_kept_receipted_and_repeatable(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let signed = sign(&inst, &filer, &report(&filer.registration, 1), "employer").await;
    let server = inst.serve().await;

    let r = server.submit(&filer.token, signed.clone()).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let first = json(r).await;
    let id = first["message_id"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/submissions/{id}"));
    assert_eq!(first["status"], "accepted");
    assert_eq!(first["document_type"], "contribution-report");
    let number = first["document_number"].as_str().unwrap();
    assert_eq!(number.len(), 11, "{number}");
    assert_eq!(
        first["sha256"],
        retention::Sha256Hex::of(signed.as_bytes()).as_str()
    );

    // The receipt verifies with the published JWKS and names what it should.
    let jwks: Value = server.get_json("/.well-known/jwks.json").await;
    let claims = retention::receipts::verify(first["receipt"].as_str().unwrap(), &jwks).unwrap();
    assert_eq!(claims.sub, id);
    assert_eq!(claims.employer, filer.id);
    assert_eq!(claims.sha256, first["sha256"].as_str().unwrap());
    assert_eq!(claims.document_number, number);
    assert_eq!(claims.received_at, first["received_at"].as_str().unwrap());
    assert_eq!(claims.log_seq, first["log_seq"].as_i64().unwrap());

    // The same bytes again: 200, the identical first receipt, nothing new.
    let again = server.submit(&filer.token, signed.clone()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(json(again).await, first);
    // And again without a Content-Length, in small chunks: the body is read whole
    // and byte-exact all the same.
    let auth = format!("Bearer {}", filer.token);
    let (status, _, body) = server
        .send_chunked(
            "/api/v1/submissions",
            &[
                ("content-type", "application/xml"),
                ("authorization", &auth),
            ],
            signed.as_bytes(),
            1000,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), first);

    let detail = json(
        server
            .get_auth(&format!("/api/v1/submissions/{id}"), &filer.token)
            .await,
    )
    .await;
    let steps: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["received", "verified", "validated", "accepted"]);
    assert!(
        detail["history"][0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("api-token:")
    );

    let original = server
        .get_auth(&format!("/api/v1/submissions/{id}/original"), &filer.token)
        .await;
    assert_eq!(original.status(), 200);
    assert_eq!(
        original.bytes().await.unwrap().as_ref(),
        signed.as_bytes(),
        "byte-exact"
    );
    let receipt = server
        .get_auth(&format!("/api/v1/submissions/{id}/receipt"), &filer.token)
        .await;
    assert_eq!(receipt.headers()["content-type"], "application/jose");
    assert_eq!(
        receipt.text().await.unwrap(),
        first["receipt"].as_str().unwrap()
    );
    let list = json(
        server
            .get_auth("/api/v1/submissions?status=accepted", &filer.token)
            .await,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // Another employer sees none of it.
    let other = set_up(&inst, "87654321").await;
    for path in [
        format!("/api/v1/submissions/{id}"),
        format!("/api/v1/submissions/{id}/original"),
        format!("/api/v1/submissions/{id}/receipt"),
    ] {
        assert_eq!(
            server.get_auth(&path, &other.token).await.status(),
            404,
            "{path}"
        );
    }
    let theirs = json(server.get_auth("/api/v1/submissions", &other.token).await).await;
    assert!(theirs["items"].as_array().unwrap().is_empty());

    // After a restart, the same bytes still get the first receipt.
    assert!(server.stop().await.success());
    let server = inst.serve().await;
    let after_restart = server.submit(&filer.token, signed).await;
    assert_eq!(after_restart.status(), 200);
    assert_eq!(json(after_restart).await, first);
    assert!(server.stop().await.success());

    assert_eq!(inst.count("SELECT COUNT(*) FROM submissions").await, 1);
    let verify = inst.run_ok(&["log", "verify"]).await;
    assert!(verify.starts_with("log OK"), "{verify}");
}

async fn hostile_and_invalid_filings_are_refused_and_leave_nothing(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let other = set_up(&inst, "11111111").await;
    let xml = report(&filer.registration, 1);
    let good = sign(&inst, &filer, &xml, "employer").await;
    let sig_at = good.find("<ds:Signature").unwrap();
    let sig_end = good.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let root_at = good.find("<ContributionReport").unwrap();
    let root_open_end = root_at + good[root_at..].find('>').unwrap() + 1;
    let wrapped = format!(
        "{}{}{}{}",
        &good[..root_open_end],
        &good[sig_at..sig_end],
        &good[root_open_end..sig_at],
        &good[sig_end..]
    );
    // Flip the last digit of the content ('0' <-> '1' and so on): still well-formed.
    let digit = good[..sig_at].rfind(|c: char| c.is_ascii_digit()).unwrap();
    let mut flipped = good.clone().into_bytes();
    flipped[digit] ^= 0x01;
    let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));

    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        ("not XML", b"hello".to_vec(), "application/xml", 422, "xml.malformed"),
        ("empty", Vec::new(), "application/xml", 422, "xml.empty"),
        ("wrong content type", good.clone().into_bytes(), "application/json", 415, "request.content-type"),
        (
            "XXE",
            b"<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>".to_vec(),
            "application/xml",
            422,
            "xml.dtd-forbidden",
        ),
        (
            "billion laughs",
            b"<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><r>&c;</r>".to_vec(),
            "application/xml",
            422,
            "xml.dtd-forbidden",
        ),
        (
            "external DTD",
            b"<!DOCTYPE r SYSTEM \"http://127.0.0.1:9/r.dtd\"><r/>".to_vec(),
            "application/xml",
            422,
            "xml.dtd-forbidden",
        ),
        ("deep nesting", deep.into_bytes(), "application/xml", 422, "xml.too-deep"),
        ("unsigned", xml.clone().into_bytes(), "application/xml", 422, "signature.missing"),
        ("signature moved to the front", wrapped.into_bytes(), "application/xml", 422, "signature.misplaced"),
        ("one flipped byte", flipped, "application/xml", 422, "signature.invalid"),
        (
            "revoked",
            sign(&inst, &filer, &report(&filer.registration, 3), "revoked").await.into_bytes(),
            "application/xml",
            422,
            "certificate.revoked",
        ),
        (
            "expired",
            sign(&inst, &filer, &report(&filer.registration, 4), "expired").await.into_bytes(),
            "application/xml",
            422,
            "certificate.expired",
        ),
        (
            "unknown CA",
            sign(&inst, &filer, &report(&filer.registration, 5), "stranger").await.into_bytes(),
            "application/xml",
            422,
            "certificate.untrusted",
        ),
        (
            "another employer's certificate",
            sign(&inst, &other, &report(&filer.registration, 6), "employer").await.into_bytes(),
            "application/xml",
            422,
            "certificate.other-employer",
        ),
        (
            "another employer's document",
            sign(&inst, &filer, &report("99999999", 7), "employer").await.into_bytes(),
            "application/xml",
            422,
            "employer.mismatch",
        ),
    ];
    let server = inst
        .serve_with(&[("IVAN_INTAKE__MAX_DOCUMENT_BYTES", "200000")])
        .await;
    let mut logged = 0;
    for (name, body, content_type, status, code) in &cases {
        let r = server
            .http
            .post(server.url("/api/v1/submissions"))
            .bearer_auth(&filer.token)
            .header("content-type", *content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), *status, "{name}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
        let problem = json(r).await;
        assert_eq!(problem["errors"][0]["code"], *code, "{name}: {problem}");
        assert_eq!(
            problem["sha256"],
            retention::Sha256Hex::of(body).as_str(),
            "{name}"
        );
        logged += 1;
    }
    // Too large: refused before the body is read (not logged: no filing was read).
    // Only the head is sent: a server that read the body first would wait for it.
    let auth = format!("Bearer {}", filer.token);
    let (status, headers, body) = server
        .send_head_only(
            "/api/v1/submissions",
            &[
                ("content-type", "application/xml"),
                ("authorization", &auth),
            ],
            300_000,
        )
        .await;
    assert_eq!(status, 413, "{headers:?} {body}");
    assert!(
        headers.contains(&"content-type: application/problem+json".to_owned()),
        "{headers:?}"
    );
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 413, "{problem}");
    // Too large without a Content-Length: refused once the limit is passed, the same
    // way (not logged either).
    let (status, headers, body) = server
        .send_chunked(
            "/api/v1/submissions",
            &[
                ("content-type", "application/xml"),
                ("authorization", &auth),
            ],
            &vec![b' '; 210_000],
            16 * 1024,
        )
        .await;
    assert_eq!(status, 413, "{headers:?} {body}");
    assert!(
        headers.contains(&"content-type: application/problem+json".to_owned()),
        "{headers:?}"
    );
    // No or a bad token: 401, not logged.
    let r = server
        .submit("ivan_0000000000000000_nope", good.clone())
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = server
        .http
        .post(server.url("/api/v1/submissions"))
        .header("content-type", "application/xml")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(server.stop().await.success());

    assert_eq!(
        inst.count("SELECT COUNT(*) FROM submissions").await,
        0,
        "nothing stored"
    );
    let refusals = inst
        .count("SELECT COUNT(*) FROM log_entries WHERE action = 'submission.refuse'")
        .await;
    assert_eq!(refusals, logged);
    // No refused body was kept as an original (only the problem documents were).
    let db = inst.db().await;
    for (name, body, ..) in &cases {
        let sha = retention::Sha256Hex::of(body);
        let kept: i64 = on_pool!(&db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM originals WHERE sha256 = $1").bind(sha.as_str()).fetch_one(pool).await).unwrap();
        assert_eq!(kept, 0, "{name} was stored");
        let entry: i64 = on_pool!(&db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM log_entries WHERE subject = $1").bind(format!("payload:{}", sha.as_str())).fetch_one(pool).await).unwrap();
        assert_eq!(
            entry, 1,
            "{name}: one refusal entry names the payload's hash"
        );
    }
    db.close().await;
    let verify = inst.run_ok(&["log", "verify"]).await;
    assert!(verify.starts_with("log OK"), "{verify}");
}

async fn idempotency_key_and_cancel_window(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let a = sign(&inst, &filer, &report(&filer.registration, 1), "employer").await;
    let b = sign(&inst, &filer, &report(&filer.registration, 2), "employer").await;
    // `a`'s sender reference on other content.
    let a_other =
        report(&filer.registration, 1).replacen("<GivenName>Peter<", "<GivenName>Petr<", 1);
    assert_ne!(a_other, report(&filer.registration, 1));
    let a_other = sign(&inst, &filer, &a_other, "employer").await;
    let server = inst.serve().await;
    let with_key = |body: String| {
        server
            .http
            .post(server.url("/api/v1/submissions"))
            .bearer_auth(&filer.token)
            .header("content-type", "application/xml")
            .header("idempotency-key", "batch-42")
            .body(body)
            .send()
    };
    let first = with_key(a.clone()).await.unwrap();
    assert_eq!(first.status(), 201);
    let first = json(first).await;
    assert_eq!(with_key(a.clone()).await.unwrap().status(), 200);
    let conflict = with_key(b.clone()).await.unwrap();
    assert_eq!(conflict.status(), 409);
    assert_eq!(
        json(conflict).await["errors"][0]["code"],
        "idempotency-key.conflict"
    );
    // The same signed content in other bytes is the first filing; other content
    // under its sender reference is a conflict naming it.
    let again = server.submit(&filer.token, format!("{a}\n")).await;
    assert_eq!(again.status(), 200);
    assert_eq!(json(again).await["message_id"], first["message_id"]);
    let conflict = server.submit(&filer.token, a_other).await;
    assert_eq!(conflict.status(), 409);
    let conflict = json(conflict).await;
    assert_eq!(conflict["errors"][0]["code"], "sender-reference.conflict");
    let message = conflict["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(first["message_id"].as_str().unwrap()),
        "{message}"
    );

    // Inside the window: cancelled, once.
    let id = first["message_id"].as_str().unwrap();
    let cancel = |id: String| {
        server
            .http
            .post(server.url(&format!("/api/v1/submissions/{id}/cancel")))
            .bearer_auth(&filer.token)
            .send()
    };
    let r = cancel(id.to_owned()).await.unwrap();
    assert_eq!(r.status(), 200);
    let cancelled = json(r).await;
    assert_eq!(cancelled["status"], "cancelled");
    let last = cancelled["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["status"], "cancelled");
    assert!(last["actor"].as_str().unwrap().starts_with("api-token:"));
    assert_eq!(cancel(id.to_owned()).await.unwrap().status(), 409);
    assert_eq!(cancel("no-such-id".into()).await.unwrap().status(), 404);
    assert!(server.stop().await.success());

    // With a zero-length window, cancelling is refused.
    let server = inst
        .serve_with(&[("IVAN_INTAKE__HOLD_WINDOW_SECS", "0")])
        .await;
    let r = server.submit(&filer.token, b).await;
    assert_eq!(r.status(), 201);
    let id = json(r).await["message_id"].as_str().unwrap().to_owned();
    let late = server
        .http
        .post(server.url(&format!("/api/v1/submissions/{id}/cancel")))
        .bearer_auth(&filer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 409);
    assert!(
        json(late).await["detail"]
            .as_str()
            .unwrap()
            .contains("window")
    );
    assert!(server.stop().await.success());
}

async fn xmlsec1_signed_filing_is_accepted(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let xml = report(&filer.registration, 1);
    let close = xml.rfind("</").unwrap();
    let template = "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>\
<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/TR/2001/REC-xml-c14n-20010315\"/>\
<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256\"/>\
<ds:Reference URI=\"\"><ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/></ds:Transforms>\
<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue/></ds:Reference>\
</ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo></ds:Signature>";
    let tmpl = inst.dir.path().join("tmpl.xml");
    std::fs::write(
        &tmpl,
        format!("{}{template}{}", &xml[..close], &xml[close..]),
    )
    .unwrap();
    let out = inst.dir.path().join("xmlsec1-signed.xml");
    let key = format!(
        "{},{}",
        filer.keys.join("employer.key").display(),
        filer.keys.join("employer.pem").display()
    );
    let status = tokio::process::Command::new("xmlsec1")
        .args(["--sign", "--privkey-pem", &key, "--output"])
        .arg(&out)
        .arg(&tmpl)
        .status()
        .await
        .expect("xmlsec1 (ops/test.sh installs it)");
    assert!(status.success());
    let server = inst.serve().await;
    let r = server
        .submit(&filer.token, std::fs::read(&out).unwrap())
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert!(server.stop().await.success());
}

/// Graceful shutdown: a filing whose upload is under way when SIGTERM arrives is
/// still taken, recorded and answered; new connections are refused meanwhile.
async fn sigterm_lets_an_upload_in_flight_finish(inst: Instance) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let filer = set_up(&inst, "12345678").await;
    let signed = sign(&inst, &filer, &report(&filer.registration, 1), "employer").await;
    let server = inst.serve().await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/submissions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        filer.token,
        signed.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = signed.as_bytes().split_at(signed.len() / 2);
    conn.write_all(first).await.unwrap();
    conn.flush().await.unwrap();
    // The request is in the server (its handler reading the body) … (the gauge
    // counts the scrape that reads it, too)
    server
        .metric_reaches("ivan_http_requests_in_flight", 2.0)
        .await;
    server.terminate();
    // … when it stops taking new connections.
    ivan_e2e::eventually(30, "no new connections once stopping", || async {
        tokio::net::TcpStream::connect(&addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    conn.write_all(rest).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(server.wait().await.success());
    assert_eq!(inst.count("SELECT COUNT(*) FROM submissions").await, 1);
    let verify = inst.run_ok(&["log", "verify"]).await;
    assert!(verify.starts_with("log OK"), "{verify}");
}

/// Every directory and file under `dir` (and `dir` itself) whose mode lets the group
/// or others in, as "mode path".
fn open_to_others(dir: &std::path::Path) -> (usize, Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    let mut seen = 0;
    let mut open = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        seen += 1;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            open.push(format!("{mode:o} {}", path.display()));
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&path).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    (seen, open)
}

/// The data dir holds personal data (originals, the database, keys): after a filing
/// has been accepted, nothing in it is readable by the group or others — the dir and
/// every directory under it 0700, every file 0600 (SQLite's -wal and -shm too).
async fn data_files_are_private_to_the_service_account(inst: Instance) {
    let filer = set_up(&inst, "PRIV-1").await;
    let server = inst.serve().await;
    let xml = sign(&inst, &filer, &report("PRIV-1", 1), "employer").await;
    assert_eq!(server.submit(&filer.token, xml).await.status(), 201);

    let (seen, open) = open_to_others(&inst.data_dir);
    assert!(open.is_empty(), "readable by others:\n{}", open.join("\n"));
    assert!(seen > 5, "{seen} entries checked");
    if inst.backend == ivan_e2e::Backend::Sqlite {
        for f in ["ivan.db", "ivan.db-wal", "ivan.db-shm"] {
            assert!(inst.data_dir.join(f).exists(), "{f} was checked");
        }
    }
    assert!(server.stop().await.success());
    let (_, open) = open_to_others(&inst.data_dir);
    assert!(open.is_empty(), "after stop:\n{}", open.join("\n"));
}

/// The SHA-256 fingerprint of a PEM certificate, as `ivan admin cert list` shows it.
fn fingerprint(pem: &std::path::Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem)
        .output()
        .expect("openssl (ops/test.sh installs it)");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.trim().rsplit('=').next().unwrap();
    hex.replace(':', "").to_lowercase()
}

/// `ivan admin cert remove`: the certificate no longer signs filings (`422
/// certificate.removed`, nothing stored), the removal is logged with its reason, the
/// list shows it removed, what it signed before stays; removing it again, or one the
/// employer does not have, is an error.
async fn a_removed_certificate_no_longer_authorises_filings(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let server = inst.serve().await;
    let before = sign(&inst, &filer, &report(&filer.registration, 1), "employer").await;
    let r = server.submit(&filer.token, before).await;
    assert_eq!(r.status(), 201);
    let earlier = json(r).await["message_id"].as_str().unwrap().to_owned();

    let fp = fingerprint(&filer.keys.join("employer.pem"));
    let remove = |fp: &str, reason: &str| {
        let args = [
            "admin",
            "cert",
            "remove",
            "--employer",
            &filer.id,
            fp,
            "--reason",
        ];
        [&args[..], &[reason, "--json"]]
            .concat()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    };
    let args = remove(&fp, "private key lost");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let removed: Value = serde_json::from_str(&inst.run_ok(&args).await).unwrap();
    assert_eq!(removed["removed"], true, "{removed}");
    assert!(removed["log_seq"].as_i64().unwrap() > 0);

    let after = sign(&inst, &filer, &report(&filer.registration, 2), "employer").await;
    let r = server.submit(&filer.token, after).await;
    assert_eq!(r.status(), 422);
    let problem = json(r).await;
    assert_eq!(
        problem["errors"][0]["code"], "certificate.removed",
        "{problem}"
    );
    assert_eq!(inst.count("SELECT COUNT(*) FROM submissions").await, 1);
    let r = server
        .get_auth(&format!("/api/v1/submissions/{earlier}"), &filer.token)
        .await;
    assert_eq!(r.status(), 200, "what it signed before stays");

    let list: Value =
        serde_json::from_str(&inst.run_ok(&["admin", "cert", "list", "--json"]).await).unwrap();
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["fingerprint"] == fp.as_str())
        .unwrap();
    assert!(listed["removed_at"].is_string(), "{listed}");
    assert_eq!(
        inst.count("SELECT COUNT(*) FROM log_entries WHERE action = 'trust.cert.remove'")
            .await,
        1
    );
    for (fp, reason, says) in [
        (fp.as_str(), "again", "removed already"),
        (&"0".repeat(64), "unknown", "has no registered certificate"),
        (fp.as_str(), " ", "say why"),
    ] {
        let args = remove(fp, reason);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = inst.run(&args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
    assert!(server.stop().await.success());
    inst.run_ok(&["log", "verify"]).await;
}

/// An employer is warned when a signing certificate it uses has 60, 30 and 7 days
/// left: once per step, as a `certificate.expiry-warning` log entry and a mail naming
/// the certificate; never for a removed certificate. In-process, on a manual clock.
async fn employers_are_warned_before_their_certificates_expire(inst: Instance) {
    use chrono::Duration;
    let filer = set_up(&inst, "12345678").await;
    ivan_e2e::filing::set_notify_email(&inst, &filer, "hr@employer.test").await;
    // `ivan dev keys` certificates are valid for 730 days; the employer has three of
    // them registered (and one expired). One is removed: no warnings about it.
    let stranger = fingerprint(&filer.keys.join("stranger.pem"));
    let remove = [
        "admin",
        "cert",
        "remove",
        "--employer",
        &filer.id,
        &stranger,
    ];
    inst.run_ok(&[&remove[..], &["--reason", "never used"]].concat())
        .await;
    let clock = std::sync::Arc::new(retention::testing::ManualClock::new());
    let server = inst.serve_in_process(&[], clock.clone()).await;
    let warnings = async || {
        let sql = "SELECT COUNT(*) FROM log_entries WHERE action = 'certificate.expiry-warning'";
        let mails = "SELECT COUNT(*) FROM mail_outbox WHERE kind = 'certificate-expiry'";
        (inst.count(sql).await, inst.count(mails).await)
    };
    let step = async |days: i64| {
        clock.advance(Duration::days(days));
        clock.settled(ivan_e2e::CLOCK_WORKERS).await;
    };
    step(1).await;
    assert_eq!(warnings().await, (0, 0), "730 days left: no warning");
    // 59 days left: the 60-day warning for each of the two certificates in use.
    step(670).await;
    assert_eq!(warnings().await, (2, 2));
    step(1).await;
    assert_eq!(warnings().await, (2, 2), "once per step");
    step(30).await; // 28 days left
    assert_eq!(warnings().await, (4, 4));
    step(22).await; // 6 days left
    assert_eq!(warnings().await, (6, 6));
    let employer_fp = fingerprint(&filer.keys.join("employer.pem"));
    let db = inst.db().await;
    let bodies: Vec<String> = on_pool!(&db, pool => sqlx::query_scalar(
        "SELECT body FROM mail_outbox WHERE kind = 'certificate-expiry' ORDER BY created_at")
        .fetch_all(pool).await.unwrap());
    db.close().await;
    assert_eq!(
        bodies.iter().filter(|b| b.contains(&employer_fp)).count(),
        3,
        "{bodies:#?}"
    );
    assert!(!bodies.iter().any(|b| b.contains(&stranger)), "{bodies:#?}");
    assert!(
        bodies.last().unwrap().contains("in 6 day(s)"),
        "{bodies:#?}"
    );
    assert!(server.stop().await.success());
}

/// CRLs are fetched from the distribution point the employer's certificates name (a
/// real HTTP server on loopback serving the CA's CRL). Before it is up, a filing is
/// refused (`require_crl`: revocation unknown); once fetched — `trust.crl.add` by the
/// system — the employer's filing is accepted and the revoked certificate's refused
/// as revoked.
async fn crls_are_fetched_and_used(inst: Instance) {
    let port = ivan_e2e::free_port();
    let url = format!("http://127.0.0.1:{port}/crl.pem");
    let filer =
        ivan_e2e::filing::set_up_with(&inst, "12345678", ivan_e2e::filing::Crl::At(&url)).await;
    let code = async |server: &ivan_e2e::Server, who: &str, variant: u32| {
        let signed = sign(&inst, &filer, &report(&filer.registration, variant), who).await;
        let r = server.submit(&filer.token, signed).await;
        let status = r.status().as_u16();
        let v = json(r).await;
        let code = v["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (status, code)
    };
    // Nothing answers at the distribution point yet.
    let server = inst.serve().await;
    let refused = code(&server, "employer", 1).await;
    assert_eq!(refused, (422, "certificate.revocation-unknown".into()));
    assert!(server.stop().await.success());

    let _crl_server = tokio::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .arg("--directory")
        .arg(&filer.keys)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    ivan_e2e::eventually(10, "the CRL server listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(drop)
    })
    .await;
    let server = inst
        .serve_with(&[("IVAN_INTAKE__TRUST_RELOAD_SECS", "1")])
        .await;
    let fetched =
        "SELECT COUNT(*) FROM log_entries WHERE action = 'trust.crl.add' AND actor = 'system:ivan'";
    ivan_e2e::eventually(30, "the CRL fetched", || async {
        (inst.count(fetched).await == 1).then_some(())
    })
    .await;
    ivan_e2e::eventually(30, "a filing accepted with the fetched CRL", || async {
        (code(&server, "employer", 2).await.0 == 201).then_some(())
    })
    .await;
    assert_eq!(
        code(&server, "revoked", 3).await,
        (422, "certificate.revoked".into())
    );
    assert!(server.stop().await.success());
    assert_eq!(inst.count(fetched).await, 1);
    inst.run_ok(&["log", "verify"]).await;
}

/// `ivan admin ca remove`: certificates the CA issued no longer sign filings (`422
/// certificate.untrusted`, once the running server reloads its trust material); the
/// removal is logged with its reason and listed; removing it again is an error.
async fn a_removed_ca_is_no_longer_trusted(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let server = inst
        .serve_with(&[("IVAN_INTAKE__TRUST_RELOAD_SECS", "1")])
        .await;
    let signed = sign(&inst, &filer, &report(&filer.registration, 1), "employer").await;
    assert_eq!(server.submit(&filer.token, signed).await.status(), 201);

    let ca = fingerprint(&filer.keys.join("ca.pem"));
    let remove = [
        "admin",
        "ca",
        "remove",
        &ca,
        "--reason",
        "key compromised",
        "--json",
    ];
    let removed: Value = serde_json::from_str(&inst.run_ok(&remove).await).unwrap();
    assert_eq!(removed["removed"], true, "{removed}");
    let listed: Value =
        serde_json::from_str(&inst.run_ok(&["admin", "ca", "list", "--json"]).await).unwrap();
    assert!(listed[0]["removed_at"].is_string(), "{listed}");
    assert_eq!(
        inst.count("SELECT COUNT(*) FROM log_entries WHERE action = 'trust.ca.remove'")
            .await,
        1
    );
    let mut variant = 2;
    let problem = ivan_e2e::eventually(30, "filings under the removed CA refused", || {
        variant += 1;
        let v = variant;
        let (inst, filer, server) = (&inst, &filer, &server);
        async move {
            let signed = sign(inst, filer, &report(&filer.registration, v), "employer").await;
            let r = server.submit(&filer.token, signed).await;
            (r.status() == 422).then_some(json(r).await)
        }
    })
    .await;
    assert_eq!(
        problem["errors"][0]["code"], "certificate.untrusted",
        "{problem}"
    );
    let again = inst.run(&remove).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("removed already"));
    assert!(server.stop().await.success());
    inst.run_ok(&["log", "verify"]).await;
}
