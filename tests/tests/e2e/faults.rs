//! Bad input and crashes through the real binary: each refusal is one clear line and a
//! non-zero exit with nothing half-written; a kill -9 never leaves a log that fails
//! verification nor loses an acknowledged append.
// This whole crate is test code: failing loudly is the point.

use std::time::Duration;

use ivan_e2e::filing::{report, set_up, sign, sized_report};
use ivan_e2e::{Backend, Instance, e2e_tests};
use serde_json::Value;

e2e_tests!(
    crash_under_concurrent_appends_keeps_every_acknowledged_entry,
    crash_under_concurrent_filings_keeps_every_acknowledged_filing,
    commands_refuse_an_unmigrated_database,
);

fn one_line_error(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "expected failure");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[tokio::test]
async fn unknown_config_key_is_refused_before_anything_is_written() {
    let inst = Instance::new(Backend::Sqlite).await;
    let file = inst.dir.path().join("ivan.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\ncheckpoint_every = 5\n").unwrap();
    let out = inst
        .run(&["--config", file.to_str().unwrap(), "serve"])
        .await;
    let err = one_line_error(&out);
    assert!(err.contains("checkpoint_every"), "{err}");
    assert!(!inst.data_dir.exists(), "nothing created");

    let out = inst
        .command(&["config", "check"])
        .env("IVAN_LISTN", "x")
        .output()
        .await
        .unwrap();
    assert!(one_line_error(&out).contains("listn"));
}

#[tokio::test]
async fn unusable_data_dir_is_refused() {
    let inst = Instance::new(Backend::Sqlite).await;
    let not_a_dir = inst.dir.path().join("plain-file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let out = inst
        .run(&[
            "--data-dir",
            not_a_dir.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .await;
    let err = one_line_error(&out);
    assert!(err.contains("is not a directory"), "{err}");
    let below_a_file = not_a_dir.join("data");
    let out = inst
        .run(&["--data-dir", below_a_file.to_str().unwrap(), "migrate"])
        .await;
    assert!(one_line_error(&out).contains("cannot create it"));
}

#[tokio::test]
async fn second_server_on_the_same_sqlite_file_is_refused() {
    let inst = Instance::new(Backend::Sqlite).await;
    let first = inst.serve().await;
    let out = inst.run(&["serve", "--listen", "127.0.0.1:0"]).await;
    let err = one_line_error(&out);
    assert!(
        err.contains("another `ivan serve` is already using"),
        "{err}"
    );
    assert!(
        first.get("/healthz").await.status().is_success(),
        "the first one is unharmed"
    );
    assert!(first.stop().await.success());
    // Once the first is gone, a new one may start.
    let again = inst.serve().await;
    assert!(again.stop().await.success());
    assert!(
        inst.run_ok(&["log", "verify"])
            .await
            .starts_with("log OK: 4 entries")
    );
}

#[tokio::test]
async fn listen_address_in_use_is_one_clear_line() {
    let inst = Instance::new(Backend::Sqlite).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = inst.run(&["serve", "--listen", &addr]).await;
    let err = one_line_error(&out);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(!inst.data_dir.exists(), "nothing created");
}

async fn commands_refuse_an_unmigrated_database(inst: Instance) {
    if inst.backend == Backend::Sqlite {
        std::fs::create_dir_all(&inst.data_dir).unwrap();
    }
    let out = inst.run(&["admin", "employer", "list"]).await;
    assert!(one_line_error(&out).contains("run `ivan migrate`"));
    inst.run_ok(&["migrate"]).await;
    inst.run_ok(&["admin", "employer", "list"]).await;
}

/// Many operator processes append concurrently (the server appends too) while the
/// server and some of the operators are killed with SIGKILL at arbitrary moments.
/// Afterwards the chain verifies and every employer whose creation was acknowledged
/// (its id printed) is in the log and the table.
async fn crash_under_concurrent_appends_keeps_every_acknowledged_entry(inst: Instance) {
    let server = inst
        .serve_with(&[("IVAN_LEDGER__CHECKPOINT_EVERY_ENTRIES", "3")])
        .await;
    let mut children = Vec::new();
    for i in 0..24 {
        let mut cmd = inst.command(&[
            "admin",
            "employer",
            "add",
            "--name",
            "Crash test",
            "--registration-number",
            &format!("C-{i}"),
            "--json",
        ]);
        cmd.env("IVAN_LEDGER__CHECKPOINT_EVERY_ENTRIES", "3");
        children.push(cmd.stdout(std::process::Stdio::piped()).spawn().unwrap());
    }
    // Once some have finished, kill the server and every third operator mid-flight.
    ivan_e2e::eventually(60, "some operators' employers recorded", || async {
        (inst.count("SELECT COUNT(*) FROM employers").await >= 3).then_some(())
    })
    .await;
    server.kill9().await;
    for (i, c) in children.iter_mut().enumerate() {
        if i % 3 == 0 {
            let _ = c.start_kill();
        }
    }
    let mut acknowledged = Vec::new();
    for c in children {
        let out = tokio::time::timeout(Duration::from_secs(120), c.wait_with_output())
            .await
            .expect("operator process finished")
            .unwrap();
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            acknowledged.push((
                v["id"].as_str().unwrap().to_owned(),
                v["log_seq"].as_i64().unwrap(),
            ));
        }
    }
    eprintln!(
        "{} of 24 creations acknowledged before/around the crash",
        acknowledged.len()
    );
    let verify = inst.run(&["log", "verify"]).await;
    assert!(
        verify.status.success(),
        "after the crash the log verifies: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let tail = inst.run_ok(&["log", "tail", "--json", "-n", "1000"]).await;
    let entries: Vec<Value> = tail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (id, seq) in &acknowledged {
        let e = entries
            .iter()
            .find(|e| e["seq"].as_i64() == Some(*seq))
            .unwrap_or_else(|| panic!("acknowledged entry {seq} lost"));
        assert_eq!(e["subject"], format!("employer:{id}"));
    }
    let list: Value =
        serde_json::from_str(&inst.run_ok(&["admin", "employer", "list", "--json"]).await).unwrap();
    let listed = list.as_array().unwrap();
    for (id, _) in &acknowledged {
        assert!(
            listed.iter().any(|e| e["id"] == id.as_str()),
            "employer {id} lost"
        );
    }
    // Every employer row has its log entry (they commit together).
    assert_eq!(
        listed.len(),
        entries
            .iter()
            .filter(|e| e["action"] == "employer.create")
            .count()
    );
    // And the service starts again on the same record.
    let again = inst.serve().await;
    assert!(again.stop().await.success());
    assert!(inst.run(&["log", "verify"]).await.status.success());
}

/// Signed filings go through the batched intake path (many filings per appender
/// transaction, their rows as multi-row statements, large ones staged on disk as
/// they arrive) from 12 clients at once while the server is killed with SIGKILL.
/// Afterwards the log verifies, and every filing that was answered 201 is there
/// whole: its status, log position and receipt as answered, its original
/// byte-exact, its history complete. Every filing that was not answered is either
/// absent or whole: sending it again is answered 201 or 200, never a conflict or
/// a failure.
async fn crash_under_concurrent_filings_keeps_every_acknowledged_filing(inst: Instance) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const FILINGS: usize = 72;
    let filer = set_up(&inst, "55667788").await;
    // One in four is larger than the streaming threshold below, so it is staged.
    let docs = futures::future::join_all((0..FILINGS).map(|i| {
        let xml = if i % 4 == 0 {
            sized_report(&filer.registration, &format!("CRASH-{i}"), 6_000)
        } else {
            report(&filer.registration, 9_000 + i as u32)
        };
        let (inst, filer) = (&inst, &filer);
        async move { sign(inst, filer, &xml, "employer").await }
    }))
    .await;
    let docs = Arc::new(docs);
    let server = inst
        .serve_with(&[("IVAN_INTAKE__STREAMING_THRESHOLD_BYTES", "4096")])
        .await;

    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..12 {
        let (docs, next, answered) = (docs.clone(), next.clone(), answered.clone());
        let (http, url, token) = (
            server.http.clone(),
            server.url("/api/v1/submissions"),
            filer.token.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= docs.len() {
                    return acknowledged;
                }
                let sent = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/xml")
                    .body(docs[i].clone())
                    .send()
                    .await;
                let Ok(r) = sent else { continue };
                let status = r.status().as_u16();
                let Ok(body) = r.json::<Value>().await else {
                    continue;
                };
                assert!(
                    status == 201 || status >= 500,
                    "filing {i}: {status} {body}"
                );
                if status == 201 {
                    answered.fetch_add(1, Ordering::SeqCst);
                    acknowledged.push((i, body));
                }
            }
        }));
    }
    // Kill it once a third are acknowledged: the rest are in flight or unsent.
    let waited = tokio::time::timeout(Duration::from_secs(120), async {
        while answered.load(Ordering::SeqCst) < FILINGS / 3 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "no filings acknowledged: {}", server.log());
    server.kill9().await;
    let mut acknowledged = Vec::new();
    for c in clients {
        acknowledged.extend(c.await.unwrap());
    }
    eprintln!(
        "{} of {FILINGS} filings acknowledged before the kill",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() < FILINGS,
        "the kill came too late to test anything"
    );

    let verify = inst.run(&["log", "verify"]).await;
    assert!(
        verify.status.success(),
        "after the crash the log verifies: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let server = inst.serve().await;
    let jwks: Value = server.get_json("/.well-known/jwks.json").await;
    for (i, first) in &acknowledged {
        let id = first["message_id"].as_str().unwrap();
        let detail: Value = server
            .get_auth_json(&format!("/api/v1/submissions/{id}"), &filer.token)
            .await;
        assert_eq!(detail["status"], "accepted", "filing {i}: {detail}");
        assert_eq!(detail["log_seq"], first["log_seq"], "filing {i}");
        assert_eq!(
            detail["history"].as_array().map(Vec::len),
            Some(4),
            "{detail}"
        );
        let claims =
            retention::receipts::verify(first["receipt"].as_str().unwrap(), &jwks).unwrap();
        assert_eq!(claims.sub, id);
        assert_eq!(claims.log_seq, first["log_seq"].as_i64().unwrap());
        let original = server
            .get_auth(&format!("/api/v1/submissions/{id}/original"), &filer.token)
            .await;
        assert_eq!(original.status(), 200, "filing {i}");
        assert_eq!(
            original.bytes().await.unwrap().as_ref(),
            docs[*i].as_bytes(),
            "filing {i} byte-exact"
        );
        // Sent again: the first answer, receipt and all.
        let again = server.submit(&filer.token, docs[*i].clone()).await;
        assert_eq!(again.status(), 200, "filing {i}");
        assert_eq!(&again.json::<Value>().await.unwrap(), first, "filing {i}");
    }
    // What was not acknowledged is absent or whole: sent again, it is taken.
    let mut committed_unanswered = 0;
    for (i, doc) in docs.iter().enumerate() {
        if acknowledged.iter().any(|(a, _)| *a == i) {
            continue;
        }
        let r = server.submit(&filer.token, doc.clone()).await;
        let status = r.status().as_u16();
        assert!(
            status == 201 || status == 200,
            "filing {i} after the crash: {status} {}",
            r.text().await.unwrap()
        );
        committed_unanswered += usize::from(status == 200);
    }
    eprintln!("{committed_unanswered} were committed but not answered before the kill");
    assert!(server.stop().await.success());
    assert!(inst.run(&["log", "verify"]).await.status.success());
}
