//! Originals on WORM storage (docs/OPERATIONS.md, "WORM originals"): with
//! `[originals] backend = "s3"` on a bucket with Object Lock — moto here, started by
//! the test — a filing's document is written locked in compliance mode until filing
//! time + its type's retention period, legal holds on filings become the bucket's
//! legal holds, the bucket itself refuses to delete a locked original, and a
//! production start refuses a bucket without Object Lock.
//!
//! The bucket is read here directly, as an auditor with access to it would see it
//! (with an unsigned `Authorization` header: moto checks who asks, not signatures).

use chrono::{DateTime, Months, Utc};
use ivan_e2e::filing::{file_signed, report, set_up};
use ivan_e2e::{Backend, Instance, e2e_tests};
use retention::testing::S3Emulator;
use serde_json::Value;

e2e_tests!(filings_are_kept_write_once_and_legal_holds_reach_the_bucket);

/// The key of original `sha` (docs/ARCHITECTURE.md: `sha256/ab/cd/<hash>`).
fn key(sha: &str) -> String {
    format!("sha256/{}/{}/{sha}", &sha[0..2], &sha[2..4])
}

/// The object of original `sha` in `s3`'s bucket.
fn object_url(s3: &S3Emulator, sha: &str) -> String {
    format!("{}/{}/{}", s3.endpoint, s3.bucket, key(sha))
}

/// A client the emulator takes as the bucket's owner.
fn bucket_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=test/20261205/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=00",
        ),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// What the bucket says of the object's lock: mode, retain-until, legal hold.
async fn lock_of(s3: &S3Emulator, sha: &str) -> (String, DateTime<Utc>, String) {
    let r = bucket_client()
        .head(object_url(s3, sha))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "original {sha} is in the bucket");
    let h = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let until = DateTime::parse_from_rfc3339(&h("x-amz-object-lock-retain-until-date"))
        .unwrap_or_else(|e| panic!("original {sha} has no retain-until date: {e}"))
        .with_timezone(&Utc);
    (
        h("x-amz-object-lock-mode"),
        until,
        h("x-amz-object-lock-legal-hold"),
    )
}

/// Points `inst` at `s3`, with contribution reports kept 12 years.
fn use_bucket(inst: &mut Instance, s3: &S3Emulator) {
    let config = inst.dir.path().join("ivan.toml");
    std::fs::write(&config, "[retention.years]\n\"contribution-report\" = 12\n").unwrap();
    inst.env = s3.env();
    inst.env
        .push(("IVAN_CONFIG".into(), config.to_str().unwrap().into()));
}

async fn filings_are_kept_write_once_and_legal_holds_reach_the_bucket(mut inst: Instance) {
    let s3 = S3Emulator::start_locked().await;
    use_bucket(&mut inst, &s3);
    let filer = set_up(&inst, "12345678").await;
    let server = inst.serve().await;
    let before = Utc::now();
    let id = file_signed(&inst, &server, &filer, &report(&filer.registration, 1)).await;
    let after = Utc::now();
    let filing = server
        .get_auth_json(&format!("/api/v1/submissions/{id}"), &filer.token)
        .await;
    let sha = filing["sha256"].as_str().unwrap().to_owned();

    // Locked in compliance mode until filing time + 12 years (to the second).
    let (mode, until, hold) = lock_of(&s3, &sha).await;
    assert_eq!(mode, "COMPLIANCE");
    let years = |t: DateTime<Utc>| t.checked_add_months(Months::new(12 * 12)).unwrap();
    assert!(
        until >= years(before) - chrono::TimeDelta::seconds(1)
            && until <= years(after) + chrono::TimeDelta::seconds(1),
        "retain-until {until} is not filing time ({before}…{after}) + 12 years"
    );
    assert_ne!(hold, "ON");

    // The bucket itself refuses to delete it, version by version.
    let http = bucket_client();
    let key = key(&sha);
    let versions = http
        .get(format!(
            "{}/{}?versions&prefix={key}",
            s3.endpoint, s3.bucket
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let version = versions
        .split("<VersionId>")
        .nth(1)
        .and_then(|v| v.split("</VersionId>").next())
        .unwrap_or_else(|| panic!("no version of {key}: {versions}"));
    let refused = http
        .delete(format!("{}?versionId={version}", object_url(&s3, &sha)))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "a locked original was deleted");
    assert_eq!(lock_of(&s3, &sha).await.0, "COMPLIANCE");

    // Legal holds: on while any hold covers the filing, off when the last is released.
    let hold_add = |args: Vec<String>| {
        let inst = &inst;
        async move {
            let mut all = vec!["admin", "hold", "add", "--json", "--reason", "case 7/2026"];
            all.extend(args.iter().map(String::as_str));
            let out: Value = serde_json::from_str(&inst.run_ok(&all).await).unwrap();
            out["id"].as_str().unwrap().to_owned()
        }
    };
    let on_filing = hold_add(vec!["--message-id".into(), id.clone()]).await;
    assert_eq!(lock_of(&s3, &sha).await.2, "ON");
    let on_employer = hold_add(vec!["--employer".into(), filer.id.clone()]).await;
    let release = |hold: String| {
        let inst = &inst;
        async move {
            inst.run_ok(&[
                "admin",
                "hold",
                "release",
                "--hold",
                &hold,
                "--reason",
                "case closed",
            ])
            .await;
        }
    };
    release(on_filing).await;
    assert_eq!(
        lock_of(&s3, &sha).await.2,
        "ON",
        "the employer's hold still covers it"
    );
    release(on_employer).await;
    assert_eq!(lock_of(&s3, &sha).await.2, "OFF");
    // Applying every hold again changes nothing and says how many it set.
    let synced: Value =
        serde_json::from_str(&inst.run_ok(&["admin", "hold", "sync", "--json"]).await).unwrap();
    assert!(synced["originals_set"].as_u64().unwrap() >= 1, "{synced}");
    assert_eq!(lock_of(&s3, &sha).await.2, "OFF");
    // The record is whole and the original still reads back byte-exact.
    inst.run_ok(&["log", "verify"]).await;
    assert_eq!(
        server
            .get_auth(&format!("/api/v1/submissions/{id}/original"), &filer.token)
            .await
            .status(),
        200
    );
    server.stop().await;
}

/// A production start on a bucket without Object Lock stops with one line that
/// says why; the same configuration on a bucket with it passes that check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_a_bucket_without_object_lock() {
    let plain = S3Emulator::start().await;
    let mut inst = Instance::new(Backend::Sqlite).await;
    let config = inst.dir.path().join("production.toml");
    std::fs::write(
        &config,
        "environment = \"production\"\n\
         [authority]\nmode = \"remote\"\nbase_url = \"https://127.0.0.1:9/\"\n\
         [mail]\ntransport = \"smtp\"\nsmtp_host = \"127.0.0.1\"\n\
         [sms]\ntransport = \"smpp\"\naddress = \"127.0.0.1:9\"\nsystem_id = \"ivan\"\n\
         password = \"pw\"\nsource_addr = \"IVAN\"\n\
         [portal]\npublic_url = \"https://portal.ivan.example\"\n",
    )
    .unwrap();
    inst.env = plain.env();
    inst.env
        .push(("IVAN_CONFIG".into(), config.to_str().unwrap().into()));
    inst.run_ok(&["migrate"]).await;
    let out = inst.run(&["serve", "--listen", "127.0.0.1:0"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("has no Object Lock") && stderr.contains("production"),
        "{stderr}"
    );
    // Outside production the same bucket is allowed, with a warning.
    let locked = S3Emulator::start_locked().await;
    let mut dev = Instance::new(Backend::Sqlite).await;
    dev.env = plain.env();
    let server = dev.serve().await;
    assert!(
        server.log().contains("has no Object Lock"),
        "{}",
        server.log()
    );
    server.stop().await;
    // And production on a bucket with it starts.
    inst.env = locked.env();
    inst.env
        .push(("IVAN_CONFIG".into(), config.to_str().unwrap().into()));
    let server = inst.serve().await;
    assert!(!server.log().contains("Object Lock"), "{}", server.log());
    server.stop().await;
}
