//! Our own failures are answered honestly, through the real binary: while the record
//! is unavailable (PostgreSQL down, the SQLite disk full) a valid filing gets `503`
//! with `Retry-After` and no driver text, never a 4xx a client would take as final;
//! `/readyz` says not ready within a second, and ready again by itself once the
//! outage ends; the same filing then goes through.

use std::time::{Duration, Instant};

use ivan_e2e::filing::{report, set_up, sign};
use ivan_e2e::{Backend, Instance, Server, e2e_tests};

e2e_tests!(record_outage_is_503_and_ends_by_itself);

/// `/readyz`'s status, asserting it answered within a second.
async fn ready(server: &Server) -> u16 {
    let started = Instant::now();
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap()
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("/readyz did not answer within 1 s: {e}"));
    assert!(started.elapsed() < Duration::from_secs(1));
    r.status().as_u16()
}

async fn record_outage_is_503_and_ends_by_itself(inst: Instance) {
    let disk = (inst.backend == Backend::Sqlite).then(|| inst.small_data_disk(48));
    let filer = set_up(&inst, "12345678").await;
    let first = sign(&inst, &filer, &report(&filer.registration, 1), "employer").await;
    let second = sign(&inst, &filer, &report(&filer.registration, 2), "employer").await;
    let server = inst.serve().await;
    let r = server.submit(&filer.token, first.clone()).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(ready(&server).await, 200);

    // The outage.
    let filler = match &disk {
        Some(disk) => Some(disk.fill()),
        None => {
            inst.pg_outage(true).await;
            None
        }
    };
    let r = server.submit(&filer.token, second.clone()).await;
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap();
    assert_eq!(status, 503, "{body}\n{}", server.log());
    assert_eq!(headers["retry-after"].to_str().unwrap(), "5");
    assert_eq!(
        headers["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body = body.to_lowercase();
    for driver_text in [
        "database:",
        "sqlx",
        "error communicating",
        "no space",
        "os error",
        "/",
    ] {
        assert!(
            !body.contains(driver_text),
            "the answer leaks {driver_text:?}: {body}"
        );
    }
    assert_eq!(ready(&server).await, 503);

    // The outage ends: ready again without a restart, and the filing goes through.
    match filler {
        Some(path) => std::fs::remove_file(path).unwrap(),
        None => inst.pg_outage(false).await,
    }
    ivan_e2e::eventually(30, "ready after the outage ended", || async {
        (ready(&server).await == 200).then_some(())
    })
    .await;
    let r = server.submit(&filer.token, second.clone()).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert!(server.stop().await.success());
    // Nothing half-written: the log verifies.
    let verify = inst.run_ok(&["log", "verify"]).await;
    assert!(verify.starts_with("log OK"), "{verify}");
    drop(disk);
}
