//! Hostile documents against the real binary: shape bombs are refused by the
//! streaming pre-scan before any quadratic or memory-hungry work, and one employer's
//! heavy documents cannot keep another employer's filings waiting.

use std::time::Duration;

use ivan_e2e::filing::{examples, report, set_attr, set_up, sign};
use ivan_e2e::{Instance, e2e_tests};
use serde_json::Value;

e2e_tests!(
    shape_bombs_are_refused_before_parsing,
    one_employer_cannot_hold_the_analysis_budget,
    shutdown_does_not_wait_for_an_analysis,
    large_documents_are_streamed_with_the_tree_paths_verdicts,
    large_documents_that_cannot_be_cut_are_refused_by_their_shape,
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

/// The log holds `n` refusals and nothing was stored as a submission.
async fn assert_only_refusals(inst: &Instance, n: i64) {
    let refusals = "SELECT COUNT(*) FROM log_entries WHERE action = 'submission.refuse'";
    assert_eq!(inst.count(refusals).await, n);
    assert_eq!(inst.count("SELECT COUNT(*) FROM submissions").await, 0);
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
        let large = body.len() > 1024 * 1024;
        let r = server.submit(&filer.token, body).await;
        assert_eq!(r.status(), 422);
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["errors"][0]["code"], code, "{problem}");
        // A large attribute or namespace bomb is refused from its first bytes, while
        // the rest is still on its way (a body of at most 1 MiB is read whole); the
        // tiny elements need the pre-scan.
        let early = problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("the rest was not read");
        assert_eq!(early, large && code != "xml.too-many-nodes", "{problem}");
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
    assert_only_refusals(&inst, 3).await;
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
    // A's documents wait for the budget one after another, each seconds of CPU in
    // a debug build on a busy machine: they may wait longer than the default 20 s
    // before answering 503; what is measured is that B does not wait behind them.
    let server = inst
        .serve_with(&[
            ("IVAN_INTAKE__ANALYSIS_BUDGET_BYTES", budget.as_str()),
            ("IVAN_INTAKE__BUDGET_WAIT_SECS", "120"),
            ("IVAN_HTTP__REQUEST_TIMEOUT_SECS", "150"),
        ])
        .await;
    let server = std::sync::Arc::new(server);
    let mut heavies = tokio::task::JoinSet::new();
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(150))
        .build()
        .unwrap();
    for _ in 0..4 {
        let (url, token, body) = (
            server.url("/api/v1/submissions"),
            a.token.clone(),
            heavy.clone(),
        );
        let http = patient.clone();
        heavies.spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/xml")
                .body(body)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        });
    }
    // All four read: one analysed, three queued for the budget.
    let pool = "{pool=\"analysis\"}";
    server
        .metric_reaches(&format!("ivan_intake_budget_leases{pool}"), 1.0)
        .await;
    server
        .metric_reaches(&format!("ivan_intake_budget_waiting{pool}"), 3.0)
        .await;
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
    // Uploaded, pre-scanned, and in the parser (holding analysis budget).
    server
        .metric_reaches("ivan_intake_budget_leases{pool=\"analysis\"}", 1.0)
        .await;
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

/// `xml` with its employee lines repeated `times` times (the totals then disagree,
/// and every person appears `times` times).
fn repeated_lines(xml: &str, times: usize) -> String {
    let start = xml.find("<Employee>").unwrap();
    let end = xml.rfind("</Employee>").unwrap() + "</Employee>".len();
    format!(
        "{}{}{}",
        &xml[..start],
        xml[start..end].repeat(times),
        &xml[end..]
    )
}

/// The same refused documents, posted to a server that builds them as one tree and
/// to one that streams everything over 1 KiB, get the same answer, byte for byte;
/// a large valid report is accepted on the streamed path.
async fn large_documents_are_streamed_with_the_tree_paths_verdicts(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let base = report(&filer.registration, 1);
    let signed = sign(&inst, &filer, &base, "employer").await;
    // A second signature inside a line, after signing.
    let sig_start = signed.find("<ds:Signature").unwrap();
    let sig_end = signed.rfind("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let wrapped = signed.replacen(
        "</Employee>",
        &format!("{}</Employee>", &signed[sig_start..sig_end]),
        1,
    );
    let documents = [
        // Changed after signing.
        signed.replacen("1850.00", "1850.01", 1),
        wrapped,
        // Totals that disagree and duplicate persons, then more findings than are listed.
        sign(
            &inst,
            &filer,
            &repeated_lines(&report(&filer.registration, 2), 3),
            "employer",
        )
        .await,
        sign(
            &inst,
            &filer,
            &repeated_lines(&report(&filer.registration, 3), 600),
            "employer",
        )
        .await,
        // No run of items to cut at: an employer change changed after signing, and
        // a document that is not one of our types.
        {
            let change =
                std::fs::read_to_string(examples().join("valid/employer-change.xml")).unwrap();
            let change = set_attr(&change, "employer", &filer.registration);
            let padded = change.replacen(
                "<Effective>",
                &format!("<!-- {} --><Effective>", "pad ".repeat(300)),
                1,
            );
            sign(&inst, &filer, &padded, "employer").await.replacen(
                "<Effective>",
                "<Effective> ",
                1,
            )
        },
        sign(
            &inst,
            &filer,
            &format!(
                "<Other xmlns=\"urn:other\"><x>{}</x></Other>",
                "y".repeat(2000)
            ),
            "employer",
        )
        .await,
    ];
    let mut answers = Vec::new();
    for threshold in ["104857600", "1024"] {
        let server = inst
            .serve_with(&[("IVAN_INTAKE__STREAMING_THRESHOLD_BYTES", threshold)])
            .await;
        let mut these = Vec::new();
        for doc in &documents {
            let r = server.submit(&filer.token, doc.clone()).await;
            assert_eq!(r.status(), 422, "threshold {threshold}");
            let mut problem: Value = r.json().await.unwrap();
            problem.as_object_mut().unwrap().remove("request_id");
            these.push(problem);
        }
        answers.push(these);
        if threshold == "1024" {
            // A large valid report: accepted, streamed.
            let big = repeated_lines(&report(&filer.registration, 4), 1);
            let big = big.replace(
                "<Employee>",
                &format!("<!-- {} --><Employee>", "padding ".repeat(40)),
            );
            let big = sign(&inst, &filer, &big, "employer").await;
            assert!(big.len() > 1024);
            let r = server.submit(&filer.token, big.clone()).await;
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
            // Staged as it arrived and kept by linking that file in: byte-exact.
            let id = r.json::<Value>().await.unwrap()["message_id"]
                .as_str()
                .unwrap()
                .to_owned();
            let original = server
                .get_auth(&format!("/api/v1/submissions/{id}/original"), &filer.token)
                .await;
            assert_eq!(original.status(), 200);
            assert_eq!(original.bytes().await.unwrap(), big.as_bytes());
            // Without a length (chunked), it is staged once it grows past the
            // threshold: the same filing.
            let frames: Vec<Result<Vec<u8>, std::io::Error>> =
                big.as_bytes().chunks(700).map(|c| Ok(c.to_vec())).collect();
            let chunked = reqwest::Body::wrap_stream(futures::stream::iter(frames));
            let r = server.submit(&filer.token, chunked).await;
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            assert_eq!(r.json::<Value>().await.unwrap()["message_id"], id.as_str());
            // Refused and accepted bodies alike leave nothing in the originals
            // directory but originals, each named by its hash.
            for name in retention::testing::files_under(&inst.data_dir.join("originals")) {
                assert!(
                    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{name} in the originals directory"
                );
            }
        }
        assert!(server.stop().await.success());
    }
    let codes: Vec<&Value> = answers[0].iter().map(|a| &a["errors"][0]["code"]).collect();
    assert_eq!(
        codes,
        [
            "signature.invalid",
            "signature.multiple",
            "totals.mismatch",
            "findings.truncated",
            "signature.invalid",
            "document.unknown-type",
        ]
    );
    for (tree, streamed) in answers[0].iter().zip(&answers[1]) {
        if tree["errors"][0]["code"] == "signature.invalid" {
            // The reason names the step that failed in each path's own words.
            assert_eq!(tree["errors"][0]["code"], streamed["errors"][0]["code"]);
            assert_eq!(
                tree["errors"][0]["location"],
                streamed["errors"][0]["location"]
            );
        } else {
            assert_eq!(
                ivan_e2e::sans_instance(tree),
                ivan_e2e::sans_instance(streamed)
            );
        }
    }
    assert!(
        answers[1][3]["errors"].as_array().unwrap().len()
            + answers[1][3]["warnings"].as_array().map_or(0, Vec::len)
            > 1000,
        "{}",
        answers[1][3]
    );
}

/// A validly signed document over the streaming threshold whose checks could not
/// be cut at its items (an employer change, one item larger than a chunk) would
/// need the whole tree, whose building cannot be stopped part-way: it is refused by
/// its shape, after its signature, and nothing is stored.
async fn large_documents_that_cannot_be_cut_are_refused_by_their_shape(inst: Instance) {
    let filer = set_up(&inst, "12345678").await;
    let change = std::fs::read_to_string(examples().join("valid/employer-change.xml")).unwrap();
    let change = set_attr(&change, "employer", &filer.registration);
    let change = change.replacen(
        "<Effective>",
        &format!("<!-- {} --><Effective>", "pad ".repeat(300)),
        1,
    );
    let huge_item = repeated_lines(&report(&filer.registration, 5), 3).replacen(
        "</Employee>",
        &format!("<!-- {} --></Employee>", "pad ".repeat(20_000)),
        1,
    );
    let documents = [
        (
            sign(&inst, &filer, &change, "employer").await,
            "a document of type employer-change larger than 1024 bytes is not accepted",
        ),
        (
            sign(&inst, &filer, &huge_item, "employer").await,
            "must consist of a run of its Employee elements (at least 2, each at most 65536 bytes, with at most 65536 bytes before the first and after the last); this one does not: item 1 takes",
        ),
    ];
    let server = inst
        .serve_with(&[("IVAN_INTAKE__STREAMING_THRESHOLD_BYTES", "1024")])
        .await;
    for (doc, message) in &documents {
        let r = server.submit(&filer.token, doc.clone()).await;
        assert_eq!(r.status(), 422);
        let problem: Value = r.json().await.unwrap();
        assert_eq!(
            problem["errors"][0]["code"], "document.too-large",
            "{problem}"
        );
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{problem}"
        );
    }
    assert!(server.stop().await.success());
    assert_only_refusals(&inst, 2).await;
    // The same documents below the threshold take the tree path: accepted (the
    // employer change) or refused for its totals (the repeated lines), not by shape.
    let server = inst.serve().await;
    let r = server.submit(&filer.token, documents[0].0.clone()).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = server.submit(&filer.token, documents[1].0.clone()).await;
    let problem: Value = r.json().await.unwrap();
    assert_ne!(
        problem["errors"][0]["code"], "document.too-large",
        "{problem}"
    );
    assert!(server.stop().await.success());
}
