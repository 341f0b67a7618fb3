//! Forwarding to the authority, end to end: the real `ivan serve` delivers to the
//! sandbox authority (in-process by default; as its own `ivan sandbox-authority`
//! process with mutual TLS and injected faults otherwise), polls for the answers and
//! keeps them. Crashes, outages and two servers on one database must neither lose nor
//! duplicate a message. Every test is bounded in time.

use std::path::Path;
use std::sync::Arc;

use ivan_e2e::filing::{Filer, file_signed, report, set_attr, set_up};
use ivan_e2e::{Backend, CLOCK_WORKERS, Instance, SandboxAuthority, Server, e2e_tests, eventually};
use retention::on_pool;
use retention::testing::ManualClock;
use serde_json::Value;

e2e_tests!(
    default_sandbox_forwards_and_answers_come_back,
    faults_and_latency_over_mutual_tls_deliver_each_filing_once,
    sigkill_mid_delivery_then_restart_loses_and_duplicates_nothing,
    authority_down_then_back_drains_the_backlog_and_flags_overdue,
    refusal_rejection_and_cancel,
    tls_misconfiguration_is_refused_with_a_clear_error,
    a_hung_request_does_not_hold_back_the_others,
    deadlines_are_per_document_type_and_fixed_at_acceptance,
    packages_carry_each_filing_once_through_faults_and_refusals,
);

/// Fast retries and polls, so tests take seconds, with timeouts that keep the lease
/// rule (lease ≥ 4 × timeouts) at 12 s.
const FAST: &[(&str, &str)] = &[
    ("IVAN_INTAKE__HOLD_WINDOW_SECS", "0"),
    ("IVAN_FORWARDING__RETRY_BASE_MS", "100"),
    ("IVAN_FORWARDING__RETRY_CAP_SECS", "2"),
    ("IVAN_FORWARDING__POLL_INTERVAL_MS", "200"),
    ("IVAN_FORWARDING__POLL_CAP_SECS", "1"),
    ("IVAN_FORWARDING__IDLE_MS", "100"),
    ("IVAN_FORWARDING__LEASE_SECS", "12"),
    ("IVAN_FORWARDING__OUTAGE_PROBE_CAP_SECS", "3"),
    ("IVAN_AUTHORITY__CONNECT_TIMEOUT_SECS", "1"),
    ("IVAN_AUTHORITY__REQUEST_TIMEOUT_SECS", "2"),
];

fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    FAST.iter().chain(extra).copied().collect()
}

/// TLS material from `ivan dev tls`.
async fn tls(inst: &Instance) -> std::path::PathBuf {
    let dir = inst.dir.path().join("tls");
    inst.run_ok(&["dev", "tls", dir.to_str().unwrap()]).await;
    dir
}

fn pem(dir: &Path, f: &str) -> String {
    dir.join(f).to_str().unwrap().to_owned()
}

/// A client that presents `client` (cert+key basename) and trusts only ca.pem.
fn tls_client(dir: &Path, client: Option<&str>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let mut b = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(std::time::Duration::from_secs(10));
    if let Some(name) = client {
        let mut id = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
        id.push(b'\n');
        id.extend(std::fs::read(dir.join(format!("{name}.key"))).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&id).unwrap());
    }
    b.build().unwrap()
}

/// A sandbox authority process with mutual TLS and `args`; returns it and the env
/// that points `ivan serve` at it.
async fn tls_sandbox(inst: &Instance, args: &[&str]) -> (SandboxAuthority, Vec<(String, String)>) {
    let dir = tls(inst).await;
    let mut all = vec![
        "--tls-cert".to_owned(),
        pem(&dir, "server.pem"),
        "--tls-key".to_owned(),
        pem(&dir, "server.key"),
        "--client-ca".to_owned(),
        pem(&dir, "ca.pem"),
    ];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let sandbox =
        SandboxAuthority::start(inst.dir.path(), &all, tls_client(&dir, Some("client"))).await;
    let mut env = remote(&sandbox);
    env.extend([
        ("IVAN_AUTHORITY__CA".to_owned(), pem(&dir, "ca.pem")),
        (
            "IVAN_AUTHORITY__CLIENT_CERT".to_owned(),
            pem(&dir, "client.pem"),
        ),
        (
            "IVAN_AUTHORITY__CLIENT_KEY".to_owned(),
            pem(&dir, "client.key"),
        ),
    ]);
    (sandbox, env)
}

/// The env that points `ivan serve` at `sandbox`.
fn remote(sandbox: &SandboxAuthority) -> Vec<(String, String)> {
    vec![
        ("IVAN_AUTHORITY__MODE".to_owned(), "remote".to_owned()),
        ("IVAN_AUTHORITY__BASE_URL".to_owned(), sandbox.base.clone()),
    ]
}

/// A plain-HTTP sandbox authority started with `args`, and the env that points
/// `ivan serve` at it.
async fn sandbox_with(inst: &Instance, args: &[&str]) -> (SandboxAuthority, Vec<(String, String)>) {
    let sandbox = SandboxAuthority::start(inst.dir.path(), args, reqwest::Client::new()).await;
    let authority = remote(&sandbox);
    (sandbox, authority)
}

/// Asserts that the authority holds exactly the filings `ids`, once each.
async fn holds_exactly(sandbox: &SandboxAuthority, ids: impl Iterator<Item = &String>) {
    let mut seen: Vec<String> = sandbox
        .messages()
        .await
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    let mut want: Vec<String> = ids.cloned().collect();
    want.sort();
    assert_eq!(
        seen, want,
        "the authority holds exactly our filings, once each"
    );
}

/// How many deliveries the log records (one per filing, whatever the retries).
async fn deliveries(inst: &Instance) -> i64 {
    count(
        inst,
        "SELECT COUNT(*) FROM log_entries WHERE action = 'submission.deliver'",
    )
    .await
}

async fn serve(inst: &Instance, authority: &[(String, String)], extra: &[(&str, &str)]) -> Server {
    let mut all: Vec<(&str, &str)> = env(extra);
    all.extend(authority.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    inst.serve_with(&all).await
}

/// Signs and posts `n` distinct filings; returns their message ids.
async fn file(inst: &Instance, server: &Server, filer: &Filer, refs: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for r in refs {
        let xml = set_attr(&report(&filer.registration, 0), "senderReference", r);
        ids.push(file_signed(inst, server, filer, &xml).await);
    }
    ids
}

fn refs(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

async fn show(server: &Server, filer: &Filer, id: &str) -> Value {
    server
        .get_auth(&format!("/api/v1/submissions/{id}"), &filer.token)
        .await
        .json()
        .await
        .unwrap()
}

/// Waits until every id has `status`.
async fn all_reach(server: &Server, filer: &Filer, ids: &[String], status: &str, secs: u64) {
    all_reach_on(None, server, filer, ids, status, secs).await;
}

/// [`all_reach`] for an in-process server on `clock`, which moves a second ahead at
/// each look (so what the server schedules on it falls due).
async fn all_reach_on(
    clock: Option<&ManualClock>,
    server: &Server,
    filer: &Filer,
    ids: &[String],
    status: &str,
    secs: u64,
) {
    for id in ids {
        eventually(
            secs,
            &format!("{id} {status}: {}", server.log()),
            || async {
                if let Some(clock) = clock {
                    clock.advance(chrono::Duration::seconds(1));
                }
                let v = show(server, filer, id).await;
                (v["status"] == status).then_some(())
            },
        )
        .await;
    }
}

async fn count(inst: &Instance, sql: &'static str) -> i64 {
    let db = inst.db().await;
    let n: i64 = on_pool!(&db, pool => sqlx::query_scalar(sql).fetch_one(pool).await).unwrap();
    db.close().await;
    n
}

fn steps(v: &Value) -> Vec<String> {
    v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn default_sandbox_forwards_and_answers_come_back(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let server = serve(
        &inst,
        &[],
        &[("IVAN_AUTHORITY__SANDBOX_PROCESS_AFTER_MS", "300")],
    )
    .await;
    let ids = file(&inst, &server, &filer, &refs("DEFAULT", 2)).await;
    all_reach(&server, &filer, &ids, "processed", 60).await;
    let v = show(&server, &filer, &ids[0]).await;
    assert_eq!(
        steps(&v),
        [
            "received",
            "verified",
            "validated",
            "accepted",
            "forwarding",
            "delivered",
            "answer_received",
            "answer_received",
            "processed"
        ],
        "{v}"
    );
    assert!(
        v["authority_ref"].as_str().unwrap().starts_with("A-"),
        "{v}"
    );
    assert!(v["delivered_at"].is_string(), "{v}");
    let answers = v["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 2, "{v}");
    for a in answers {
        let n = a["n"].as_i64().unwrap();
        let r = server
            .get_auth(
                &format!("/api/v1/submissions/{}/answers/{n}", ids[0]),
                &filer.token,
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            a["media_type"].as_str().unwrap()
        );
        let bytes = r.bytes().await.unwrap();
        assert_eq!(
            retention::Sha256Hex::of(&bytes).as_str(),
            a["sha256"].as_str().unwrap()
        );
        if n == 1 {
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            assert!(
                text.contains(&ids[0]),
                "the protocol names the message: {text}"
            );
        }
    }
    let r = server
        .get_auth(
            &format!("/api/v1/submissions/{}/answers/9", ids[0]),
            &filer.token,
        )
        .await;
    assert_eq!(r.status(), 404);
    // Filtering by the new states works.
    let page: Value = server
        .get_auth("/api/v1/submissions?status=processed", &filer.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(server.stop().await.success());
    assert_eq!(count(&inst, "SELECT COUNT(*) FROM outbox").await, 0);
    assert_eq!(count(&inst, "SELECT COUNT(*) FROM answers").await, 4);
    // A first attempt that the authority takes records accepted → forwarding and
    // the delivery in one append: consecutive entries.
    assert_eq!(
        count(
            &inst,
            "SELECT COUNT(*) FROM log_entries f JOIN log_entries d \
             ON d.seq = f.seq + 1 AND d.subject = f.subject \
             WHERE f.action = 'submission.forward' AND d.action = 'submission.deliver'"
        )
        .await,
        2
    );
    inst.run_ok(&["log", "verify"]).await;
}

async fn faults_and_latency_over_mutual_tls_deliver_each_filing_once(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let (sandbox, authority) = tls_sandbox(
        &inst,
        &[
            "--fault-rate",
            "0.3",
            "--latency-ms",
            "50",
            "--process-after-ms",
            "200",
        ],
    )
    .await;
    let server = serve(&inst, &authority, &[]).await;
    let n = 12;
    let ids = file(&inst, &server, &filer, &refs("FAULTS", n)).await;
    all_reach(&server, &filer, &ids, "processed", 120).await;
    let stats = sandbox.stats().await;
    assert_eq!(stats["received"], n, "{stats}");
    assert!(stats["faults_injected"].as_i64().unwrap() > 0, "{stats}");
    holds_exactly(&sandbox, ids.iter()).await;
    assert!(server.stop().await.success());
    assert_eq!(deliveries(&inst).await, n as i64);
    inst.run_ok(&["log", "verify"]).await;
    sandbox.stop().await;
}

async fn sigkill_mid_delivery_then_restart_loses_and_duplicates_nothing(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let (sandbox, authority) = tls_sandbox(
        &inst,
        &["--latency-ms", "1500", "--process-after-ms", "100"],
    )
    .await;
    let server = serve(&inst, &authority, &[]).await;
    let n = 8;
    let ids = file(&inst, &server, &filer, &refs("KILL", n)).await;
    // Kill as soon as the authority has seen a delivery: others are in flight.
    eventually(30, "a delivery reached the authority", || async {
        (sandbox.stats().await["posts"].as_i64().unwrap() > 0).then_some(())
    })
    .await;
    server.kill9().await;
    let server = serve(&inst, &authority, &[]).await;
    all_reach(&server, &filer, &ids, "processed", 120).await;
    let stats = sandbox.stats().await;
    assert_eq!(stats["received"], n, "every filing counted once: {stats}");
    assert!(server.stop().await.success());
    assert_eq!(deliveries(&inst).await, n as i64);
    inst.run_ok(&["log", "verify"]).await;
    sandbox.stop().await;
}

/// The authority down, in-process on a manual clock with the production forwarding
/// deadline (2 h): the worker finds it down and probes it, one probe at a time with a
/// growing pause (at most one per `outage_probe_cap_secs` once there), instead of
/// retrying each filing; the filings are flagged overdue once each when the clock
/// passes their deadline; when the authority is back (the test ends the sandbox's
/// outage), the backlog drains. No real time is waited for the outage or the deadline.
async fn authority_down_then_back_drains_the_backlog_and_flags_overdue(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let (sandbox, authority) = tls_sandbox(
        &inst,
        &["--down-for-secs", "86400", "--process-after-ms", "100"],
    )
    .await;
    let clock = Arc::new(ManualClock::new());
    let mut vars = env(&[]);
    vars.extend(authority.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let server = inst.serve_in_process(&vars, clock.clone()).await;
    let n = 10;
    let ids = file(&inst, &server, &filer, &refs("DOWN", n)).await;
    // A minute of the clock, a second at a time.
    let mut posts = Vec::new();
    for _ in 0..60 {
        clock.advance(chrono::Duration::seconds(1));
        clock.settled(CLOCK_WORKERS).await;
        posts.push(sandbox.stats().await["posts_while_down"].as_i64().unwrap());
    }
    assert!(posts[59] >= 1, "the authority was tried: {posts:?}");
    // Probing, not hammering: at the 3 s cap, at most one probe per 3 s (and one
    // more for a probe in flight at the edges).
    assert!(
        posts[59] - posts[29] <= 30 / 3 + 2,
        "probes in the second half minute: {posts:?}"
    );
    // Nothing is overdue before the deadline; past it, each filing is, once.
    assert!(!steps(&show(&server, &filer, &ids[0]).await).contains(&"overdue".to_owned()));
    clock.advance(chrono::Duration::hours(2));
    clock.settled(CLOCK_WORKERS).await;
    for id in &ids {
        let v = show(&server, &filer, id).await;
        assert!(steps(&v).contains(&"overdue".to_owned()), "{v}");
    }
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("ivan_outbox_overdue"), "{metrics}");
    // Back: the next probe gets through and the backlog drains.
    let down = sandbox.stats().await["posts_while_down"].as_i64().unwrap();
    sandbox.end_outage().await;
    all_reach_on(Some(clock.as_ref()), &server, &filer, &ids, "processed", 90).await;
    let stats = sandbox.stats().await;
    assert_eq!(stats["received"], n);
    assert_eq!(stats["posts_while_down"], down, "{stats}");
    assert!(
        (1..80).contains(&down),
        "{down} deliveries tried during the outage: hammering"
    );
    assert!(server.stop().await.success());
    assert_eq!(
        count(
            &inst,
            "SELECT COUNT(*) FROM log_entries WHERE action = 'submission.overdue'"
        )
        .await,
        n as i64,
        "each overdue filing flagged once"
    );
    sandbox.stop().await;
}

/// The production hold window (5 h), in-process on a manual clock: a filing can be
/// cancelled until the window's last minute and not after it; nothing leaves while it
/// is open; once the clock passes it the others go, and the authority's answers
/// (processed, refused, rejected) come back. No real time is waited for the window.
async fn refusal_rejection_and_cancel(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let (sandbox, authority) = sandbox_with(&inst, &["--process-after-ms", "100"]).await;
    let clock = Arc::new(ManualClock::new());
    let mut vars: Vec<(&str, &str)> = FAST
        .iter()
        .filter(|(k, _)| *k != "IVAN_INTAKE__HOLD_WINDOW_SECS")
        .copied()
        .collect();
    vars.extend(authority.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let server = inst.serve_in_process(&vars, clock.clone()).await;
    let ids = file(
        &inst,
        &server,
        &filer,
        &[
            "OK-1".into(),
            "REFUSE-1".into(),
            "REJECT-1".into(),
            "CANCEL-1".into(),
        ],
    )
    .await;
    let cancel = |id: &str| {
        server
            .http
            .post(server.url(&format!("/api/v1/submissions/{id}/cancel")))
            .bearer_auth(&filer.token)
            .send()
    };
    // A minute before the window ends: still held, still cancellable.
    clock.advance(chrono::Duration::hours(5) - chrono::Duration::minutes(1));
    assert_eq!(cancel(&ids[3]).await.unwrap().status(), 200);
    assert_eq!(
        sandbox.stats().await["posts"],
        0,
        "nothing left in the window"
    );
    // Past it: too late to cancel, and on their way.
    clock.advance(chrono::Duration::minutes(2));
    assert_eq!(cancel(&ids[0]).await.unwrap().status(), 409);

    // Retries and answer polls fall due on the server's clock: it ticks as we wait.
    let ticking = Some(clock.as_ref());
    all_reach_on(ticking, &server, &filer, &ids[..1], "processed", 60).await;
    all_reach_on(
        ticking,
        &server,
        &filer,
        &ids[1..2],
        "refused_by_authority",
        60,
    )
    .await;
    all_reach_on(ticking, &server, &filer, &ids[2..3], "rejected", 60).await;
    let rejected = show(&server, &filer, &ids[2]).await;
    assert_eq!(
        rejected["answers"].as_array().unwrap().len(),
        2,
        "{rejected}"
    );
    let refused = show(&server, &filer, &ids[1]).await;
    assert!(refused["answers"].as_array().unwrap().is_empty());
    // The refusal's answer is kept as the log entry's payload.
    assert_eq!(
        count(
            &inst,
            "SELECT COUNT(*) FROM log_entries WHERE action = 'submission.authority-refuse' AND payload_sha256 IS NOT NULL"
        )
        .await,
        1
    );
    // The cancelled filing never left.
    let cancelled = show(&server, &filer, &ids[3]).await;
    assert_eq!(cancelled["status"], "cancelled");
    let sent: Vec<Value> = sandbox.messages().await;
    assert!(sent.iter().all(|m| m["message_id"] != ids[3].as_str()));
    assert_eq!(
        sandbox.stats().await["received"],
        2,
        "OK and REJECT are stored"
    );
    assert!(server.stop().await.success());
    assert_eq!(count(&inst, "SELECT COUNT(*) FROM outbox").await, 0);
    inst.run_ok(&["log", "verify"]).await;
    sandbox.stop().await;
}

/// One request the authority does not answer holds one of the worker's slots, not
/// the worker: filings sent after it are delivered while it hangs (the worker used to
/// wait for every attempt of a claimed batch before claiming more), and it is
/// delivered itself once its attempt times out and is retried.
async fn a_hung_request_does_not_hold_back_the_others(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let (sandbox, authority) = sandbox_with(
        &inst,
        &[
            "--process-after-ms",
            "100",
            "--stall-first-post-ms",
            "60000",
        ],
    )
    .await;
    // The hung request times out after 30 s (twice the 15 s the others get, plus
    // the time to sign them); the lease rule wants ≥ 4 × (1 + 30).
    let server = serve(
        &inst,
        &authority,
        &[
            ("IVAN_AUTHORITY__REQUEST_TIMEOUT_SECS", "30"),
            ("IVAN_FORWARDING__LEASE_SECS", "130"),
        ],
    )
    .await;
    let first = file(&inst, &server, &filer, &refs("HUNG", 1)).await;
    eventually(30, "the first delivery reached the authority", || async {
        (sandbox.stats().await["posts"].as_i64().unwrap() > 0).then_some(())
    })
    .await;
    let others = file(&inst, &server, &filer, &refs("NEXT", 4)).await;
    // Well inside the hung request's 30 s.
    all_reach(&server, &filer, &others, "processed", 15).await;
    let v = show(&server, &filer, &first[0]).await;
    assert_eq!(
        v["status"], "accepted",
        "the hung one is still on its way: {v}"
    );
    all_reach(&server, &filer, &first, "processed", 60).await;
    assert_eq!(sandbox.stats().await["received"], 5);
    assert!(server.stop().await.success());
    assert_eq!(deliveries(&inst).await, 5);
    sandbox.stop().await;
}

async fn tls_misconfiguration_is_refused_with_a_clear_error(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let (sandbox, authority) = tls_sandbox(&inst, &[]).await;
    let dir = inst.dir.path().join("tls");
    for (case, changes, expect) in [
        (
            "server certificate from an untrusted CA",
            vec![("IVAN_AUTHORITY__CA", pem(&dir, "other-ca.pem"))],
            "invalid peer certificate: unknownissuer",
        ),
        (
            "no client certificate",
            vec![
                ("IVAN_AUTHORITY__CLIENT_CERT", String::new()),
                ("IVAN_AUTHORITY__CLIENT_KEY", String::new()),
            ],
            "certificaterequired",
        ),
    ] {
        let env: Vec<(String, String)> = authority
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
            .cloned()
            .chain(
                changes
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| ((*k).to_owned(), v.clone())),
            )
            .collect();
        let server = serve(&inst, &env, &[]).await;
        let ids = file(&inst, &server, &filer, &[format!("TLS-{}", case.len())]).await;
        let error = eventually(
            30,
            &format!("{case}: an error saying {expect:?}"),
            || async {
                let out = inst.run_ok(&["admin", "outbox", "list", "--json"]).await;
                let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
                // Under TLS 1.3 the server judges the client certificate after the
                // client's handshake is done, so an attempt may fail writing the request
                // ("broken pipe") before it reads the server's alert; the retries show
                // the alert itself soon enough.
                rows.iter()
                    .find(|r| r["submission_id"] == ids[0].as_str())
                    .and_then(|r| r["last_error"].as_str().map(str::to_owned))
                    .filter(|e| e.to_lowercase().contains(expect))
            },
        )
        .await;
        assert!(
            error.contains("POST /v1/messages"),
            "{case}: the error names the call: {error}"
        );
        // The first attempt leaves the filing `accepted`; a retry records it as
        // `forwarding` first (the error above may be the first attempt's).
        eventually(30, &format!("{case}: the filing forwarding"), || async {
            let status = show(&server, &filer, &ids[0]).await["status"].clone();
            (status == "forwarding").then_some(())
        })
        .await;
        assert!(server.stop().await.success());
    }
    assert_eq!(sandbox.stats().await["posts"], 0, "nothing got through");
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_never_send_twice() {
    let inst = Instance::new(Backend::Postgres).await;
    let filer = set_up(&inst, "12345678").await;
    let (sandbox, authority) =
        sandbox_with(&inst, &["--latency-ms", "20", "--process-after-ms", "100"]).await;
    // Small claims, so both servers find due rows.
    let each = [
        ("IVAN_INTAKE__HOLD_WINDOW_SECS", "2"),
        ("IVAN_FORWARDING__BATCH", "2"),
        ("IVAN_FORWARDING__CONCURRENCY", "2"),
    ];
    let a = serve(&inst, &authority, &each).await;
    let b = serve(&inst, &authority, &each).await;
    let n = 20;
    let mut ids = file(&inst, &a, &filer, &refs("TWO-A", n / 2)).await;
    ids.extend(file(&inst, &b, &filer, &refs("TWO-B", n / 2)).await);
    all_reach(&a, &filer, &ids, "processed", 120).await;
    let stats = sandbox.stats().await;
    assert_eq!(stats["received"], n, "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");
    assert_eq!(stats["posts"], n, "{stats}");
    // Both did work (each claims due rows as they come).
    let (la, lb) = (a.log(), b.log());
    assert!(a.stop().await.success());
    assert!(b.stop().await.success());
    assert!(
        la.contains("delivered to the authority") && lb.contains("delivered to the authority"),
        "both servers delivered:\n{la}\n---\n{lb}"
    );
    inst.run_ok(&["log", "verify"]).await;
    sandbox.stop().await;
}

/// Hold windows and forwarding deadlines per document type: a filing's `forward_by` is
/// the end of its type's hold window plus its type's deadline, fixed when it is
/// accepted (a restart with other settings does not move it, new filings get the new
/// ones), and it is flagged overdue at that time, not at the default 2 h.
async fn deadlines_are_per_document_type_and_fixed_at_acceptance(inst: Instance) {
    use chrono::{DateTime, Duration};
    let filer = set_up(&inst, "12345678").await;
    let (sandbox, authority) = tls_sandbox(&inst, &["--down-for-secs", "86400"]).await;
    let clock = Arc::new(ManualClock::new());
    let per_type = [
        (
            "IVAN_INTAKE__HOLD_WINDOW_SECS_BY_TYPE",
            r#"{"contribution-report" = 60}"#,
        ),
        (
            "IVAN_FORWARDING__DEADLINE_SECS_BY_TYPE",
            r#"{"contribution-report" = 600, "preregistration" = 60}"#,
        ),
    ];
    let mut vars = env(&per_type);
    vars.extend(authority.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let server = inst.serve_in_process(&vars, clock.clone()).await;
    let ids = file(&inst, &server, &filer, &refs("DL", 1)).await;
    let times = |v: &Value| {
        let at = |k: &str| DateTime::parse_from_rfc3339(v[k].as_str().unwrap()).unwrap();
        (at("received_at"), at("hold_until"), at("forward_by"))
    };
    let first = show(&server, &filer, &ids[0]).await;
    let (received, hold_until, forward_by) = times(&first);
    assert_eq!(hold_until - received, Duration::seconds(60), "{first}");
    assert_eq!(forward_by - hold_until, Duration::seconds(600), "{first}");
    let overdue =
        async |id: &str| steps(&show(&server, &filer, id).await).contains(&"overdue".to_owned());
    // Just before forward_by: not overdue; just after (a sweep later): overdue.
    for _ in 0..(660 / 5 - 1) {
        clock.advance(Duration::seconds(5));
        clock.settled(CLOCK_WORKERS).await;
    }
    assert!(!overdue(&ids[0]).await, "overdue before its forward_by");
    for _ in 0..3 {
        clock.advance(Duration::seconds(5));
        clock.settled(CLOCK_WORKERS).await;
    }
    assert!(overdue(&ids[0]).await, "not overdue after its forward_by");
    assert!(server.stop().await.success());

    // Restarted with the defaults: the running deadline stays; a new filing gets the
    // 2 h default after a hold window of 0 (FAST).
    let mut vars = env(&[]);
    vars.extend(authority.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let server = inst.serve_in_process(&vars, clock.clone()).await;
    assert_eq!(times(&show(&server, &filer, &ids[0]).await).2, forward_by);
    let later = file(&inst, &server, &filer, &refs("DL-LATER", 1)).await;
    let v = show(&server, &filer, &later[0]).await;
    let (received, hold_until, forward_by) = times(&v);
    assert_eq!(hold_until, received, "{v}");
    assert_eq!(forward_by - hold_until, Duration::hours(2), "{v}");
    assert!(server.stop().await.success());
    sandbox.stop().await;
}

/// Packages (`POST /v1/packages`, gzip) through an authority that fails 30 % of
/// requests, half of them after taking the package (a lost answer): every filing
/// reaches the authority once and its outcome comes back, a refused one is refused
/// alone, and nothing travels outside packages.
async fn packages_carry_each_filing_once_through_faults_and_refusals(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let (sandbox, authority) = sandbox_with(
        &inst,
        &[
            "--fault-rate",
            "0.3",
            "--latency-ms",
            "20",
            "--process-after-ms",
            "200",
        ],
    )
    .await;
    // Filings fall due 2 s after each was filed, so several fall due together.
    let server = serve(
        &inst,
        &authority,
        &[
            ("IVAN_INTAKE__HOLD_WINDOW_SECS", "2"),
            ("IVAN_FORWARDING__PACKAGE_MAX_FILINGS", "8"),
            ("IVAN_FORWARDING__PACKAGE_MAX_WAIT_MS", "300"),
        ],
    )
    .await;
    let mut wanted = refs("PKG", 10);
    wanted.extend(["REFUSE-PKG".to_owned(), "REJECT-PKG".to_owned()]);
    let ids = file(&inst, &server, &filer, &wanted).await;
    let (ok, odd) = ids.split_at(10);
    all_reach(&server, &filer, ok, "processed", 120).await;
    all_reach(&server, &filer, &odd[..1], "refused_by_authority", 60).await;
    all_reach(&server, &filer, &odd[1..], "rejected", 60).await;
    let stats = sandbox.stats().await;
    assert_eq!(
        stats["received"], 11,
        "the refused one is not stored: {stats}"
    );
    assert_eq!(
        stats["posts"], 0,
        "every filing travelled in a package: {stats}"
    );
    let packages = stats["packages"].as_i64().unwrap();
    assert!(packages >= 1, "{stats}");
    holds_exactly(&sandbox, ids.iter().filter(|id| **id != odd[0])).await;
    assert!(server.metric("ivan_forwarding_package_bytes_total").await > 0.0);
    // Filings did travel together: more filings than packages were sent.
    let (sent, packed) = (
        server.metric("ivan_forwarding_package_filings_sum").await,
        server.metric("ivan_forwarding_package_filings_count").await,
    );
    assert!(
        sent > packed && packed > 0.0,
        "{sent} filings in {packed} packages"
    );
    assert!(server.stop().await.success());
    assert_eq!(deliveries(&inst).await, 11);
    inst.run_ok(&["log", "verify"]).await;
    sandbox.stop().await;
}

/// An authority that does not take gzip (`415`, `Accept-Encoding: identity`) gets
/// uncompressed packages from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_fall_back_to_identity_when_gzip_is_refused() {
    let inst = Instance::new(ivan_e2e::Backend::Sqlite).await;
    let filer = set_up(&inst, "12345678").await;
    let (sandbox, authority) =
        sandbox_with(&inst, &["--refuse-gzip", "--process-after-ms", "100"]).await;
    let server = serve(
        &inst,
        &authority,
        &[("IVAN_FORWARDING__PACKAGE_MAX_FILINGS", "4")],
    )
    .await;
    let ids = file(&inst, &server, &filer, &refs("PLAIN", 3)).await;
    all_reach(&server, &filer, &ids, "processed", 60).await;
    let stats = sandbox.stats().await;
    assert_eq!(stats["received"], 3, "{stats}");
    assert_eq!(stats["posts"], 0, "{stats}");
    assert!(
        server.log().contains("does not take gzip packages"),
        "{}",
        server.log()
    );
    assert!(server.stop().await.success());
    sandbox.stop().await;
}
