//! Compliance officers end to end, with the real binary on both backends: the operator
//! adds an officer and a personal token; searches without a legal basis or reference
//! number are refused and leave nothing; searches by document number, message id,
//! employer, person (keyed hash: the id is in no index row and no audit entry) and
//! action find what they should; every search and every original read — by the
//! officer, and by the employer through its own API — is in the log with who, basis,
//! reference, filters and result count; tokens of one kind never open the other's
//! routes; revoking the officer's token closes the door; `log verify` passes.

use ivan_e2e::filing::{self, Filer};
use ivan_e2e::{Instance, Server, e2e_tests};
use retention::on_pool;
use serde_json::Value;

e2e_tests!(
    officers_search_the_log_on_a_legal_basis_and_every_read_is_logged,
    evidence_bundles_verify_offline_and_fail_after_any_change,
    a_large_filing_is_found_by_person_at_once,
);

const BASIS: &str =
    "legal_basis=Social%20Insurance%20Act%20%C2%A7%2012&reference_number=AUD-2026-017";

async fn submit(server: &Server, filer: &Filer, xml: &str) -> Value {
    server.file(&filer.token, xml.to_owned()).await
}

async fn search(server: &Server, token: &str, query: &str) -> (u16, Value) {
    let r = server
        .get_auth(&format!("/api/v1/compliance/log?{query}"), token)
        .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The entries a search on the grounds of `BASIS` with `filters` finds.
async fn entries(server: &Server, token: &str, filters: &str) -> Vec<Value> {
    let (status, found) = search(server, token, &format!("{BASIS}&{filters}")).await;
    assert_eq!(status, 200, "{found}");
    found["entries"].as_array().unwrap().clone()
}

/// `GET /api/v1/compliance/evidence?{query}` as `token`.
async fn evidence(server: &Server, query: &str, token: &str) -> reqwest::Response {
    let path = format!("/api/v1/compliance/evidence?{query}");
    server.get_auth(&path, token).await
}

fn subjects(found: &Value) -> Vec<String> {
    found["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect()
}

/// The JSON payload of a log entry, read through the officer's own (logged) route.
/// The officer's read of the original with digest `sha`, with `query` (the grounds).
async fn original(server: &Server, token: &str, sha: &str, query: &str) -> reqwest::Response {
    let path = format!("/api/v1/compliance/originals/{sha}?{query}");
    server.get_auth(&path, token).await
}

async fn payload(server: &Server, token: &str, sha: &str) -> Value {
    let r = original(server, token, sha, BASIS).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn count_actions(inst: &Instance, action: &str) -> i64 {
    let db = inst.db().await;
    let n: i64 = on_pool!(&db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM log_entries WHERE action = $1")
            .bind(action)
            .fetch_one(pool)
            .await
    })
    .unwrap();
    db.close().await;
    n
}

async fn officers_search_the_log_on_a_legal_basis_and_every_read_is_logged(inst: Instance) {
    let filer = filing::set_up(&inst, "CMP-1").await;
    let server = inst.serve().await;
    let first_xml = filing::sign(&inst, &filer, &filing::report("CMP-1", 1), "employer").await;
    let first = submit(&server, &filer, &first_xml).await;
    let second = submit(
        &server,
        &filer,
        &filing::sign(&inst, &filer, &filing::report("CMP-1", 2), "employer").await,
    )
    .await;
    let first_id = first["message_id"].as_str().unwrap();
    let first_number = first["document_number"].as_str().unwrap();
    let second_id = second["message_id"].as_str().unwrap();

    // The operator adds an officer and gives them a token.
    let officer = add_officer(
        &inst,
        "Auditor@Authority.TEST",
        "Social Insurance Audit Office",
    )
    .await;
    let officer_id = officer["user"]["id"].as_str().unwrap();
    assert_eq!(officer["user"]["role"], "officer");
    assert_eq!(officer["user"]["employer_id"], Value::Null);
    let listed = inst.run_ok(&["admin", "officer", "list"]).await;
    assert!(
        listed.contains(officer_id) && listed.contains("Social Insurance Audit Office"),
        "{listed}"
    );
    let created = create_officer_token(&inst, officer_id, "audit tool").await;
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("ivan-officer_"), "{token}");
    // An employer id is not an officer: no token for it.
    let out = inst
        .run(&[
            "admin",
            "officer",
            "token",
            "create",
            "--officer",
            &filer.id,
            "--label",
            "x",
        ])
        .await;
    assert!(!out.status.success());

    // Tokens of one kind never open the other's routes.
    let (status, _) = search(&server, &filer.token, BASIS).await;
    assert_eq!(status, 401);
    let r = server.get_auth("/api/v1/submissions", token).await;
    assert_eq!(r.status(), 401);
    let (status, _) = search(&server, "ivan-officer_0000000000000000_nope", BASIS).await;
    assert_eq!(status, 401);

    // No legal basis or no reference number: 400, and nothing is searched or logged.
    let searches_before = count_actions(&inst, "compliance.search").await;
    for q in [
        "document_number=X".to_owned(),
        "reference_number=AUD-1".to_owned(),
        "legal_basis=Act".to_owned(),
        "legal_basis=%20&reference_number=AUD-1".to_owned(),
    ] {
        let (status, body) = search(&server, token, &q).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("legal basis"),
            "{body}"
        );
    }
    let first_sha = first["sha256"].as_str().unwrap();
    let r = original(&server, token, first_sha, "reference_number=A").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        count_actions(&inst, "compliance.search").await,
        searches_before
    );
    assert_eq!(count_actions(&inst, "original.read").await, 0);

    // By document number: exactly the first filing's entries, newest first.
    let (status, found) = search(
        &server,
        token,
        &format!("{BASIS}&document_number={first_number}"),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let subj = subjects(&found);
    assert!(subj.len() >= 4, "{found}");
    assert!(
        subj.iter().all(|s| *s == format!("submission:{first_id}")),
        "{subj:?}"
    );
    let seqs: Vec<i64> = found["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    let actions: Vec<&str> = found["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"submission.receive"), "{actions:?}");
    let audit_seq = found["audit_log_seq"].as_i64().unwrap();
    assert!(audit_seq > seqs[0]);

    // By message id, by action family, and paged.
    let (_, found) = search(
        &server,
        token,
        &format!("{BASIS}&message_id={second_id}&action=submission.accept"),
    )
    .await;
    assert_eq!(subjects(&found), vec![format!("submission:{second_id}")]);
    let (_, page1) = search(
        &server,
        token,
        &format!("{BASIS}&employer={}&limit=3", filer.id),
    )
    .await;
    assert_eq!(page1["entries"].as_array().unwrap().len(), 3);
    let next = page1["next_before"].as_i64().unwrap();
    let (_, page2) = search(
        &server,
        token,
        &format!("{BASIS}&employer={}&limit=1000&before={next}", filer.id),
    )
    .await;
    let all: Vec<String> = subjects(&page1)
        .into_iter()
        .chain(subjects(&page2))
        .collect();
    for s in [
        format!("submission:{first_id}"),
        format!("submission:{second_id}"),
        format!("employer:{}", filer.id),
    ] {
        assert!(all.contains(&s), "{s} not in {all:?}");
    }
    assert!(page2["next_before"].is_null());

    // By person: both reports name 7005151000; nobody files for 8001011234.
    let (_, found) = search(&server, token, &format!("{BASIS}&person_id=7005151000")).await;
    let subj = subjects(&found);
    assert!(subj.contains(&format!("submission:{first_id}")), "{subj:?}");
    assert!(
        subj.contains(&format!("submission:{second_id}")),
        "{subj:?}"
    );
    let (_, found) = search(&server, token, &format!("{BASIS}&person_id=8001011234")).await;
    assert_eq!(found["entries"].as_array().unwrap().len(), 0, "{found}");
    // A bad filter is a 400 too.
    let (status, _) = search(&server, token, &format!("{BASIS}&action=DROP%20TABLE")).await;
    assert_eq!(status, 400);

    // Every search is in the log: who, basis, reference, filters, result count. The
    // person is there as its keyed hash only.
    let audits = entries(&server, token, "action=compliance.search&limit=1000").await;
    // This listing itself is logged after it is read: the earlier searches are all here.
    assert_eq!(audits.len(), 6, "{audits:?}");
    let mut saw_person = false;
    for a in &audits {
        assert_eq!(a["actor"], format!("user:{officer_id}"));
        let p = payload(&server, token, a["payload_sha256"].as_str().unwrap()).await;
        assert_eq!(p["legal_basis"], "Social Insurance Act § 12");
        assert_eq!(p["reference_number"], "AUD-2026-017");
        assert_eq!(p["officer"], officer_id);
        assert_eq!(p["channel"], "api");
        assert!(
            p["credential"]
                .as_str()
                .unwrap()
                .starts_with("officer-token:")
        );
        assert!(p["results"].is_u64());
        assert!(!p.to_string().contains("7005151000"), "{p}");
        if p["filters"]["person_key"].is_string() {
            saw_person = true;
            assert_eq!(p["filters"]["person_key"].as_str().unwrap().len(), 64);
        }
    }
    assert!(saw_person);

    // The officer reads the first original: the exact bytes, logged with the basis.
    let r = original(&server, token, first_sha, BASIS).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), first_xml.as_bytes());
    // The employer reads it through its own API: logged as well.
    let r = server
        .get_auth(
            &format!("/api/v1/submissions/{first_id}/original"),
            &filer.token,
        )
        .await;
    assert_eq!(r.status(), 200);
    let filters = format!("action=original.read&message_id={first_id}");
    let reads = entries(&server, token, &filters).await;
    assert_eq!(reads.len(), 2, "{reads:?}");
    let employer_read = payload(&server, token, reads[0]["payload_sha256"].as_str().unwrap()).await;
    assert!(
        reads[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("api-token:")
    );
    assert_eq!(
        employer_read["route"],
        "api:/api/v1/submissions/{id}/original"
    );
    assert_eq!(employer_read["sha256"], first["sha256"]);
    let officer_read = payload(&server, token, reads[1]["payload_sha256"].as_str().unwrap()).await;
    assert_eq!(reads[1]["actor"], format!("user:{officer_id}"));
    assert_eq!(officer_read["reference_number"], "AUD-2026-017");
    // Unknown hash: 404.
    let r = original(&server, token, &"0".repeat(64), BASIS).await;
    assert_eq!(r.status(), 404);

    // No personal id is stored in clear in the person index.
    let db = inst.db().await;
    let keys: Vec<String> = on_pool!(&db, pool => {
        sqlx::query_scalar("SELECT person_key FROM person_index")
            .fetch_all(pool)
            .await
    })
    .unwrap();
    db.close().await;
    assert!(keys.len() >= 4, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.len() == 64 && !k.contains("7005151000"))
    );

    // Revoking the token closes the door at once.
    let token_id = created["id"].as_str().unwrap();
    inst.run_ok(&["admin", "officer", "token", "revoke", "--token", token_id])
        .await;
    let (status, _) = search(&server, token, BASIS).await;
    assert_eq!(status, 401);

    server.stop().await;
    inst.run_ok(&["log", "verify"]).await;
}

/// A filing naming more persons than its recording transaction takes is indexed
/// right after it is recorded: a search by any of them straight after the answer
/// finds it. So does a search after a restart cut that indexing short (the filing
/// unmarked, its rows missing): the search indexes it from its original first (the
/// sweeper's first round is a minute after start). A server told to stop finishes
/// such indexing first.
async fn a_large_filing_is_found_by_person_at_once(inst: Instance) {
    let filer = filing::set_up(&inst, "12345678").await;
    let token = officer_token(&inst).await;
    let xml = filing::sized_report(&filer.registration, "BIG-1", 400_000);
    let persons = xml.matches("<PersonalId>").count();
    assert!(
        persons > 1000,
        "{persons} persons: more than one transaction takes"
    );
    let signed = filing::sign(&inst, &filer, &xml, "employer").await;
    let server = inst.serve().await;
    let id = submit(&server, &filer, &signed).await["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in [0, persons / 2, persons - 1] {
        assert!(
            finds(&server, &token, &id, i).await,
            "person {i} right after the answer"
        );
    }
    // Another one, and the server told to stop right after its answer: it finishes
    // indexing before it exits.
    let xml = filing::sized_report(&filer.registration, "BIG-2", 400_000);
    let signed = filing::sign(&inst, &filer, &xml, "employer").await;
    submit(&server, &filer, &signed).await;
    assert!(server.stop().await.success());
    let indexed = "SELECT COUNT(*) FROM person_index";
    assert_eq!(
        inst.count(indexed).await,
        2 * i64::try_from(persons).unwrap()
    );
    let unmarked = "SELECT COUNT(*) FROM submissions WHERE persons_indexed_at IS NULL";
    assert_eq!(inst.count(unmarked).await, 0);

    let db = inst.db().await;
    on_pool!(&db, pool => {
        sqlx::query("DELETE FROM person_index").execute(pool).await.unwrap();
        sqlx::query("UPDATE submissions SET persons_indexed_at = NULL").execute(pool).await.unwrap();
    });
    db.close().await;
    let server = inst.serve().await;
    assert!(
        finds(&server, &token, &id, persons - 2).await,
        "indexed by the search"
    );
    assert!(server.stop().await.success());
    assert_eq!(
        inst.count(indexed).await,
        2 * i64::try_from(persons).unwrap()
    );
    assert_eq!(inst.count(unmarked).await, 0);
}

/// Whether a search by the personal id of generated employee `i` finds filing `id`.
async fn finds(server: &Server, token: &str, id: &str, i: usize) -> bool {
    let query = format!("{BASIS}&person_id={}", filing::personal_id(i));
    let (status, found) = search(server, token, &query).await;
    assert_eq!(status, 200, "{found}");
    subjects(&found).contains(&format!("submission:{id}"))
}

/// Adds a compliance officer (`ivan admin officer add --json`); returns what it printed.
async fn add_officer(inst: &Instance, email: &str, organisation: &str) -> Value {
    let args = ["admin", "officer", "add", "--email", email];
    let args = [&args[..], &["--organisation", organisation, "--json"]].concat();
    serde_json::from_str(&inst.run_ok(&args).await).unwrap()
}

/// An officer's API token (`ivan admin officer token create --json`): what it printed.
async fn create_officer_token(inst: &Instance, officer: &str, label: &str) -> Value {
    let args = ["admin", "officer", "token", "create", "--officer", officer];
    let args = [&args[..], &["--label", label, "--json"]].concat();
    serde_json::from_str(&inst.run_ok(&args).await).unwrap()
}

async fn officer_token(inst: &Instance) -> String {
    let officer = add_officer(inst, "eve@authority.test", "Audit").await;
    let id = officer["user"]["id"].as_str().unwrap();
    let created = create_officer_token(inst, id, "t").await;
    created["token"].as_str().unwrap().to_owned()
}

/// `ivan evidence verify FILE [extra…]`: (exit code, stdout).
async fn verify(inst: &Instance, file: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["evidence", "verify", file.to_str().unwrap()];
    args.extend(extra);
    let out = inst.run(&args).await;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn evidence_bundles_verify_offline_and_fail_after_any_change(inst: Instance) {
    let filer = filing::set_up(&inst, "EVD-1").await;
    let server = inst.serve().await;
    let xml = filing::sign(&inst, &filer, &filing::report("EVD-1", 1), "employer").await;
    let first = submit(&server, &filer, &xml).await;
    let second_xml = filing::sign(&inst, &filer, &filing::report("EVD-1", 2), "employer").await;
    submit(&server, &filer, &second_xml).await;
    let id = first["message_id"].as_str().unwrap();
    let token = officer_token(&inst).await;

    // No grounds, no bundle; no selection, no bundle; an unknown filing is a 404.
    let r = evidence(&server, &format!("message_id={id}"), &token).await;
    assert_eq!(r.status(), 400);
    let r = evidence(&server, BASIS, &token).await;
    assert_eq!(r.status(), 400);
    let r = evidence(
        &server,
        &format!("{BASIS}&message_id=0190aaaa-0000-7000-8000-000000000000"),
        &token,
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = evidence(&server, &format!("{BASIS}&message_id={id}"), &filer.token).await;
    assert_eq!(r.status(), 401);

    // The bundle about the first filing.
    let r = evidence(&server, &format!("{BASIS}&message_id={id}"), &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-tar");
    let audit_seq: i64 = r.headers()["x-ivan-audit-log-seq"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bundle = r.bytes().await.unwrap().to_vec();
    // The original is in it byte-exact; the other filing's is not (its entries may be
    // chain links, which show their hashes, never their payloads).
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&bundle, xml.as_bytes()));
    assert!(!contains(&bundle, second_xml.as_bytes()));
    let file = inst.dir.path().join("bundle.tar");
    std::fs::write(&file, &bundle).unwrap();

    // It verifies offline (the server is not asked), and says what it checked.
    let (code, out) = verify(&inst, &file, &[]).await;
    assert_eq!(code, 0, "{out}");
    for said in [
        "VERIFIED",
        "log-entries",
        "checkpoints",
        "entries proven in the log",
        "checkpoint(s) consistent with it",
        "receipts",
        "originals",
        "certificates",
        "crls",
    ] {
        assert!(out.contains(said), "{said} not in {out}");
    }
    // Pinned to the keys the intermediary publishes.
    let jwks = server
        .get("/.well-known/ivan/checkpoint-keys.json")
        .await
        .bytes()
        .await
        .unwrap();
    let keys = inst.dir.path().join("checkpoint-keys.json");
    std::fs::write(&keys, &jwks).unwrap();
    let (code, out) = verify(
        &inst,
        &file,
        &["--checkpoint-keys", keys.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["keys_pinned"], true);
    // Pinned to other keys: refused.
    let other = inst.dir.path().join("other-keys.json");
    std::fs::write(
        &other,
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"x"}]}"#,
    )
    .unwrap();
    let (code, _) = verify(
        &inst,
        &file,
        &["--checkpoint-keys", other.to_str().unwrap()],
    )
    .await;
    assert_ne!(code, 0);

    // Any changed byte fails it: a spread of positions over the whole archive
    // (headers, manifest, signature, log, the original, padding, the end marker).
    let n = bundle.len();
    let mut positions: Vec<usize> = (0..24).map(|i| i * n / 24).collect();
    positions.extend([1, 100, 148, 512, n - 1, n - 600]);
    for pos in positions {
        let mut bad = bundle.clone();
        bad[pos] ^= 0x01;
        let f = inst.dir.path().join(format!("bad-{pos}.tar"));
        std::fs::write(&f, &bad).unwrap();
        let (code, out) = verify(&inst, &f, &[]).await;
        assert_eq!(code, 3, "byte {pos} of {n} changed, still: {out}");
        assert!(out.contains("NOT VERIFIED"), "{out}");
    }
    // Cut short, or with bytes appended: refused.
    for bad in [
        bundle[..n - 1024].to_vec(),
        [bundle.clone(), vec![0u8; 512]].concat(),
    ] {
        let f = inst.dir.path().join("cut.tar");
        std::fs::write(&f, &bad).unwrap();
        assert_eq!(verify(&inst, &f, &[]).await.0, 3);
    }

    // The export is in the log with its grounds.
    let db = inst.db().await;
    let (actor, action): (String, String) = on_pool!(&db, pool => {
        sqlx::query_as("SELECT actor, action FROM log_entries WHERE seq = $1")
            .bind(audit_seq)
            .fetch_one(pool)
            .await
    })
    .unwrap();
    db.close().await;
    assert_eq!(action, "compliance.evidence");
    assert!(actor.starts_with("user:"), "{actor}");

    // The operator exports the same way, by employer; the file is never overwritten.
    let out_file = inst.dir.path().join("by-employer.tar");
    let args = [
        "evidence",
        "export",
        "--employer",
        &filer.id,
        "--legal-basis",
        "Court order 7/2026",
        "--reference-number",
        "CASE-7",
        "--out",
        out_file.to_str().unwrap(),
        "--json",
    ];
    let exported: Value = serde_json::from_str(&inst.run_ok(&args).await).unwrap();
    assert_eq!(
        exported["filings"].as_array().unwrap().len(),
        2,
        "{exported}"
    );
    let (code, out) = verify(&inst, &out_file, &[]).await;
    assert_eq!(code, 0, "{out}");
    let again = inst.run(&args).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("never overwritten"),
        "{again:?}"
    );
    // Without grounds the command is refused before anything is done.
    let out = inst
        .run(&[
            "evidence",
            "export",
            "--employer",
            &filer.id,
            "--out",
            "x.tar",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2));

    // Legal holds: a reason is required; each is logged; listed until released.
    let out = inst
        .run(&["admin", "hold", "add", "--message-id", id, "--reason", " "])
        .await;
    assert!(!out.status.success());
    let hold: Value = serde_json::from_str(
        &inst
            .run_ok(&[
                "admin",
                "hold",
                "add",
                "--message-id",
                id,
                "--reason",
                "Court order 7/2026",
                "--json",
            ])
            .await,
    )
    .unwrap();
    let hold_id = hold["id"].as_str().unwrap();
    assert!(
        inst.run_ok(&["admin", "hold", "list"])
            .await
            .contains(hold_id)
    );
    inst.run_ok(&[
        "admin",
        "hold",
        "release",
        "--hold",
        hold_id,
        "--reason",
        "case closed",
    ])
    .await;
    assert!(
        !inst
            .run_ok(&["admin", "hold", "list"])
            .await
            .contains(hold_id)
    );
    assert!(
        inst.run_ok(&["admin", "hold", "list", "--all"])
            .await
            .contains(hold_id)
    );
    // A sweep now purges nothing (nothing is ten years old) and says so.
    let swept: Value =
        serde_json::from_str(&inst.run_ok(&["retention", "sweep", "--json"]).await).unwrap();
    assert_eq!(swept["purged_filings"], serde_json::json!([]));
    let db = inst.db().await;
    let n: i64 = on_pool!(&db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM log_entries WHERE action IN ('hold.add', 'hold.release') AND subject = $1")
            .bind(format!("submission:{id}"))
            .fetch_one(pool)
            .await
    })
    .unwrap();
    db.close().await;
    assert_eq!(n, 2);

    server.stop().await;
    let verified = inst.run_ok(&["log", "verify"]).await;
    assert!(
        verified.contains("0 purged by the retention policy"),
        "{verified}"
    );
}
