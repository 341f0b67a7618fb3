//! Hostile documents against the real binary: shape bombs are refused by the
//! streaming pre-scan before any quadratic or memory-hungry work, and one employer's
//! heavy documents cannot keep another employer's filings waiting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ivan_e2e::filing::{report, set_up, sign};
use ivan_e2e::{Instance, e2e_tests};
use serde_json::Value;

e2e_tests!(
    shape_bombs_are_refused_before_parsing,
    one_employer_cannot_hold_the_analysis_budget,
    shutdown_does_not_wait_for_an_analysis,
);

/// One element with `n` attributes after `ns` namespace declarations: the shape that
/// cost the parser quadratic time (300k attributes: minutes of CPU).
fn bomb(n: usize, ns: usize) -> Vec<u8> {
    let mut x = String::from("<ContributionReport");
    for i in 0..ns {
        x.push_str(&format!(" xmlns:p{i}=\"urn:bomb:{i}\""));
    }
    for i in 0..n {
        x.push_str(&format!(" a{i}=\"v\""));
    }
    x.push_str("/>");
    x.into_bytes()
}

async fn shape_bombs_are_refused_before_parsing(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let server = inst.serve().await;
    for (body, code) in [
        // ~8 MiB, 600k attributes on one element.
        (bomb(600_000, 0), "xml.too-many-attributes"),
        (bomb(0, 5_000), "xml.too-many-namespaces"),
        // A document of tiny elements: ~60 times its size once parsed.
        (
            format!("<r>{}</r>", "<e/>".repeat(7_000_000)).into_bytes(),
            "xml.too-many-nodes",
        ),
    ] {
        let r = server.submit(&filer.token, body).await;
        assert_eq!(r.status(), 422);
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["errors"][0]["code"], code, "{problem}");
        assert!(
            problem["errors"][0]["location"]
                .as_str()
                .unwrap()
                .starts_with("line 1, column "),
            "{problem}"
        );
    }
    assert!(server.stop().await.success());
    // Each refusal is logged once; nothing else was stored.
    assert_eq!(
        inst.count("SELECT COUNT(*) FROM log_entries WHERE action = 'submission.refuse'")
            .await,
        3
    );
    assert_eq!(inst.count("SELECT COUNT(*) FROM submissions").await, 0);
}

/// Employer A sends four documents whose analysis takes the whole (small) budget each
/// and seconds of CPU (many elements of 200 attributes: within every limit, but the
/// parser compares each attribute with its element's others); employer B's ordinary
/// filing, sent after them, is answered while A's are still being worked through: A
/// may hold at most its share of the budget (`intake.employer_share_percent`, 50), so
/// B does not queue behind A.
async fn one_employer_cannot_hold_the_analysis_budget(inst: Instance) {
    let a = set_up(&inst, "12345678").await;
    let b = set_up(&inst, "87654321").await;
    let filing = sign(&inst, &b, &report(&b.registration, 1), "employer").await;
    let element = {
        let mut e = String::from("<e");
        for i in 0..200 {
            e.push_str(&format!(" a{i}=\"v\""));
        }
        e.push_str("/>");
        e
    };
    let heavy = format!("<r>{}</r>", element.repeat(4_000)).into_bytes();
    // A budget the size of one of A's documents: each needs all of it.
    let budget = heavy.len().to_string();
    let server = inst
        .serve_with(&[("IVAN_INTAKE__ANALYSIS_BUDGET_BYTES", budget.as_str())])
        .await;
    let server = std::sync::Arc::new(server);
    let mut heavies = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (server, token, body) = (server.clone(), a.token.clone(), heavy.clone());
        heavies.spawn(async move { server.submit(&token, body).await.status().as_u16() });
    }
    // Long enough for all four to be read and queued for the budget.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = server.submit(&b.token, filing.into_bytes()).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    while let Some(status) = heavies.try_join_next() {
        assert_eq!(status.unwrap(), 422);
    }
    // Queued behind A, B would come after all four analyses (at most the last
    // refusal's log entry still being written).
    assert!(
        heavies.len() >= 2,
        "B's filing waited until {} of A's 4 documents were done",
        4 - heavies.len()
    );
    while let Some(status) = heavies.join_next().await {
        assert_eq!(status.unwrap(), 422);
    }
    let server = std::sync::Arc::into_inner(server).unwrap();
    assert!(server.stop().await.success());
}

/// SIGTERM while a heavy document is being analysed (20,000 elements of 256 attributes,
/// allowed by raised limits: tens of seconds of the parser's attribute comparisons in
/// a debug build) ends the server within its grace period (1 s here) plus the second
/// blocking work is given, not when the analysis would have finished; the record stays
/// whole.
async fn shutdown_does_not_wait_for_an_analysis(inst: Instance) {
    let a = set_up(&inst, "12345678").await;
    let server = inst
        .serve_with(&[
            ("IVAN_HTTP__SHUTDOWN_GRACE_SECS", "1"),
            ("IVAN_HTTP__REQUEST_TIMEOUT_SECS", "120"),
            ("IVAN_INTAKE__MAX_ATTRIBUTES", "10000000"),
        ])
        .await;
    let element = {
        let mut e = String::from("<e");
        for i in 0..256 {
            e.push_str(&format!(" a{i}=\"v\""));
        }
        e.push_str("/>");
        e
    };
    let heavy = format!("<r>{}</r>", element.repeat(20_000)).into_bytes();
    let (url, token, http) = (
        server.url("/api/v1/submissions"),
        a.token.clone(),
        server.http.clone(),
    );
    let in_flight = tokio::spawn(async move {
        http.post(url)
            .bearer_auth(token)
            .header("content-type", "application/xml")
            .body(heavy)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    // Uploaded, pre-scanned, and deep in the parser.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !in_flight.is_finished(),
        "the analysis ended before the signal"
    );
    let started = std::time::Instant::now();
    server.terminate();
    let status = server.wait().await;
    let took = started.elapsed();
    assert!(status.success());
    assert!(
        took < Duration::from_secs(8),
        "shutdown took {took:?} with an analysis in flight"
    );
    // The request got no answer (its connection was dropped), or a 503.
    match in_flight.await.unwrap() {
        Ok(status) => assert_eq!(status, 503),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    let verify = inst.run_ok(&["log", "verify"]).await;
    assert!(verify.starts_with("log OK"), "{verify}");
}
