//! What operators' tools expect of the running binary (issue 22): one request log
//! line per request at info level without colour codes, problem documents that name
//! their request and speak our words, and Prometheus metrics with help text,
//! histograms, build and process metrics.

use ivan_e2e::{Backend, Instance};

/// Every answered problem document carries `instance`, the request id of its
/// `X-Request-Id` header and of the server's log line; extractor rejections are in
/// the service's words, not the library's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problem_documents_name_their_request_and_speak_plainly() {
    let inst = Instance::new(Backend::Sqlite).await;
    let filer = ivan_e2e::filing::set_up(&inst, "12345678").await;
    let server = inst.serve().await;

    let problem = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["instance"], id.as_str(), "{body}");
        assert_eq!(body["status"], status, "{body}");
        body
    };

    // A query that does not fit (was: "bad query: Failed to deserialize query string: …").
    let r = server
        .get_auth("/api/v1/submissions?limit=many", &filer.token)
        .await;
    assert_eq!(r.status(), 400);
    let body = problem(r).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("the query string is not valid: "),
        "{detail}"
    );
    assert!(
        detail.contains("limit") || detail.contains("invalid digit"),
        "{detail}"
    );

    // The same on an unauthenticated route (the log's proofs).
    let r = server
        .get("/api/v1/log/proof/inclusion?leaf_index=x&tree_size=1")
        .await;
    assert_eq!(r.status(), 400);
    let detail = problem(r).await["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.starts_with("the query string is not valid"),
        "{detail}"
    );

    // A JSON body that is not JSON, and one without the fields.
    for body in ["{not json", "{\"holder_name\":\"x\"}"] {
        let r = server
            .http
            .post(server.url("/api/v1/phone-accesses"))
            .bearer_auth(&filer.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let detail = problem(r).await["detail"].as_str().unwrap().to_owned();
        assert!(
            detail.starts_with("the body is not valid JSON for this request: "),
            "{detail}"
        );
    }

    // Our own problem documents (an unknown route, a missing token) get it too.
    problem(server.get("/api/v1/no-such-thing").await).await;
    problem(server.get("/api/v1/submissions").await).await;

    assert!(server.stop().await.success());
}

/// One info-level line per request with method, route pattern (not the raw path or
/// query), status, latency and request id; no ANSI colour codes into a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_one_plain_log_line() {
    let inst = Instance::new(Backend::Sqlite).await;
    let filer = ivan_e2e::filing::set_up(&inst, "12345678").await;
    let server = inst.serve().await;
    let r = server
        .get_auth(
            "/api/v1/submissions/01JNOSUCHID?secret=hunter2",
            &filer.token,
        )
        .await;
    assert_eq!(r.status(), 404);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let log = ivan_e2e::eventually(10, "the request's log line", || async {
        let log = server.log();
        log.contains(&id).then_some(log)
    })
    .await;
    assert!(!log.contains('\u{1b}'), "colour codes in a log file: {log}");
    let line = log
        .lines()
        .find(|l| l.contains(&id) && l.contains("route="))
        .unwrap_or_else(|| panic!("no request line for {id}: {log}"));
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("method=GET"), "{line}");
    assert!(line.contains("route=/api/v1/submissions/{id}"), "{line}");
    assert!(line.contains("status=404"), "{line}");
    assert!(line.contains("latency_ms="), "{line}");
    // The query (it can hold a secret, as the portal's enrolment link does) is not logged.
    assert!(!line.contains("hunter2"), "{line}");
    assert!(server.stop().await.success());
}

/// `/metrics` as Prometheus expects it: `# HELP` for every metric, latencies as
/// histograms (never summaries), `ivan_build_info`, process metrics, and the gauges
/// read at scrape time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_help_histograms_build_and_process_info() {
    let inst = Instance::new(Backend::Sqlite).await;
    let filer = ivan_e2e::filing::set_up(&inst, "12345678").await;
    // A checkpoint after each batch, so the filing below brings one.
    let server = inst
        .serve_with(&[("IVAN_LEDGER__CHECKPOINT_EVERY_ENTRIES", "1")])
        .await;
    // Some traffic of several kinds: a filing, a refusal, a log checkpoint.
    let report = ivan_e2e::filing::report(&filer.registration, 1);
    ivan_e2e::filing::file_signed(&inst, &server, &filer, &report).await;
    let r = server.submit(&filer.token, "<not-a-filing/>").await;
    assert!(r.status().is_client_error());

    let text = server.get("/metrics").await.text().await.unwrap();
    let mut typed = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        typed += 1;
        assert_ne!(kind, "summary", "{name} is a summary: {text}");
        assert!(
            text.lines().any(|l| l
                .strip_prefix("# HELP ")
                .and_then(|h| h.strip_prefix(name))
                .is_some_and(|h| h.starts_with(' ') && h.len() > 10)),
            "{name} has no help text"
        );
    }
    assert!(typed > 10, "{text}");
    assert!(
        text.contains("# TYPE ivan_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("ivan_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!("ivan_build_info{{version=\"{version}\"}} 1")),
        "{text}"
    );
    for process in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(server.metric(process).await > 0.0, "{process}: {text}");
    }
    assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
    let free = server.metric("ivan_data_dir_free_bytes").await;
    let size = server.metric("ivan_data_dir_size_bytes").await;
    assert!(free > 0.0 && size >= free, "free {free} of {size}");
    // Failure counters alerts watch are there, at 0, before the first failure.
    assert!(
        text.contains("\nivan_log_append_failures_total 0\n"),
        "{text}"
    );
    let signed = server.metric("ivan_log_checkpoint_timestamp_seconds").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        signed > now - 600.0 && signed <= now + 1.0,
        "checkpoint at {signed}, now {now}"
    );
    assert!(server.stop().await.success());
}
