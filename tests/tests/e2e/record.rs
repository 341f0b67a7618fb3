//! End to end through the real binary: start-up, health, employers, the log, and its
//! verification going red when the record is tampered with — on both backends.
// This whole crate is test code: failing loudly is the point.

use ivan_e2e::{Backend, Instance, Witness, e2e_tests};
use retention::on_pool;
use retention::testing::mth;
use serde_json::Value;

e2e_tests!(
    serves_health_readiness_metrics_and_keys,
    employer_add_is_logged_and_listed_once,
    verify_goes_red_when_a_row_is_altered,
    verify_goes_red_when_an_original_is_altered,
    verify_goes_red_when_the_tail_is_cut,
    unreachable_database_is_one_clear_line,
    oversized_bodies_are_refused_before_they_are_read,
    log_proofs_are_served_and_check_against_the_chain,
    checkpoints_are_c2sp_notes_and_the_tree_is_served_as_tiles,
    a_witness_cosigns_the_log_and_refuses_a_rewritten_one,
    the_documented_python_check_proves_a_receipt_offline,
    operators_are_named_by_flag_or_environment,
);

/// A tree hash as the log's JSON gives it (base64).
fn tree_hash(v: &Value) -> tlog_tiles::Hash {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    tlog_tiles::Hash(b64.decode(v.as_str().unwrap()).unwrap().try_into().unwrap())
}

/// The hashes of a proof the log's API answered.
fn proof_of(p: &Value) -> Vec<tlog_tiles::Hash> {
    p["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(tree_hash)
        .collect()
}

/// The entry hashes of `ivan log tail --json` output, in order.
fn entry_hashes(tail: &str) -> Vec<[u8; 32]> {
    let hash = |line: &str| -> [u8; 32] {
        let e: Value = serde_json::from_str(line).unwrap();
        let hex = e["entry_hash"].as_str().unwrap();
        hex::decode(hex).unwrap().try_into().unwrap()
    };
    tail.lines().map(hash).collect()
}

async fn serves_health_readiness_metrics_and_keys(inst: Instance) {
    let server = inst.serve().await;
    let r = server.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "ok\n");

    let ready: Value = server.get_json("/readyz").await;
    assert_eq!(
        ready,
        serde_json::json!({"database": "ok", "originals": "ok", "data_dir": "ok"})
    );

    let jwks: Value = server.get_json("/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert!(jwks["keys"][0].get("d").is_none(), "never the private part");
    let cpk: Value = server
        .get_json("/.well-known/ivan/checkpoint-keys.json")
        .await;
    assert_eq!(cpk["keys"][0]["crv"], "Ed25519");

    let missing = server.get("/no/such/thing").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );

    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            "ivan_http_requests_total{method=\"GET\",path=\"/healthz\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("ivan_log_appends_total"), "{metrics}");

    let status = server.stop().await;
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    let tail = inst.run_ok(&["log", "tail", "--json"]).await;
    let actions: Vec<String> = tail
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(actions, ["server.start", "server.stop"]);
    let verify = inst.run_ok(&["log", "verify"]).await;
    // The tail's read is in the log too, before what it showed (the verification is
    // logged after it, with its outcome).
    assert!(verify.starts_with("log OK: 3 entries"), "{verify}");
    assert!(
        verify.contains("1 checkpoint signatures valid"),
        "a clean stop signs a closing checkpoint: {verify}"
    );
}

async fn employer_add_is_logged_and_listed_once(inst: Instance) {
    inst.run_ok(&["migrate"]).await;
    let out = inst
        .run_ok(&[
            "admin",
            "employer",
            "add",
            "--name",
            "ACME s.r.o.",
            "--registration-number",
            "36123456",
            "--json",
        ])
        .await;
    let created: Value = serde_json::from_str(&out).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["api_token"].as_str().unwrap();
    assert!(token.starts_with("ivan_"), "{token}");

    // A duplicate is refused with one line, and leaves nothing behind.
    let dup = inst
        .run(&ivan_e2e::filing::employer_add("Other", "36123456"))
        .await;
    assert!(!dup.status.success());
    let err = String::from_utf8(dup.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("already exists"), "{err}");

    let list: Value =
        serde_json::from_str(&inst.run_ok(&["admin", "employer", "list", "--json"]).await).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());

    // The token is shown once and stored only as a hash.
    let db = inst.db().await;
    let secrets: Vec<String> = on_pool!(&db, pool => sqlx::query_scalar(
        "SELECT secret_sha256 FROM api_tokens").fetch_all(pool).await)
    .unwrap();
    assert_eq!(secrets.len(), 1);
    assert!(!token.contains(&secrets[0]));

    let tail = inst.run_ok(&["log", "tail", "--json"]).await;
    let entry: Value = serde_json::from_str(tail.lines().last().unwrap()).unwrap();
    assert_eq!(entry["action"], "employer.create");
    assert_eq!(entry["actor"], "operator:e2e-operator");
    assert_eq!(entry["subject"], format!("employer:{id}"));
    let verify = inst.run_ok(&["log", "verify"]).await;
    assert!(verify.starts_with("log OK: 2 entries"), "{verify}");
    // Both reads were logged, by whom and for what.
    let tail = inst.run_ok(&["log", "tail", "--json", "-n", "2"]).await;
    let reads: Vec<Value> = tail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in &reads {
        assert_eq!(r["action"], "record.read");
        assert_eq!(r["actor"], "operator:e2e-operator");
        assert_eq!(r["subject"], "log");
    }
}

/// Creates a few employers so the log has entries and originals.
async fn populate(inst: &Instance, n: usize) {
    inst.run_ok(&["migrate"]).await;
    for i in 0..n {
        inst.run_ok(&ivan_e2e::filing::employer_add(
            &format!("Employer {i}"),
            &format!("R-{i}"),
        ))
        .await;
    }
    let ok = inst.run_ok(&["log", "verify"]).await;
    assert!(ok.starts_with(&format!("log OK: {n} entries")), "{ok}");
}

async fn expect_red(inst: &Instance, needle: &str) {
    let out = inst.run(&["log", "verify"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    let first = stdout.lines().nth(1).unwrap_or_default();
    assert!(
        first.contains(needle),
        "first problem {first:?} should name {needle:?}:\n{stdout}"
    );
}

async fn sql(db: &retention::Db, statement: &'static str) {
    on_pool!(db, pool => sqlx::query(statement).execute(pool).await.map(drop)).unwrap();
}

async fn drop_append_only_guards(inst: &Instance, db: &retention::Db) {
    match inst.backend {
        Backend::Sqlite => {
            sql(db, "DROP TRIGGER log_entries_no_update").await;
            sql(db, "DROP TRIGGER log_entries_no_delete").await;
        }
        Backend::Postgres => sql(db, "DROP TRIGGER log_entries_no_update ON log_entries").await,
    }
}

async fn verify_goes_red_when_a_row_is_altered(inst: Instance) {
    populate(&inst, 4).await;
    let db = inst.db().await;
    // The guard holds first: the database refuses the change.
    let refused = on_pool!(&db, pool => sqlx::query(
        "UPDATE log_entries SET subject = 'employer:forged' WHERE seq = 3").execute(pool).await.map(drop));
    assert!(refused.is_err());
    drop_append_only_guards(&inst, &db).await;
    sql(
        &db,
        "UPDATE log_entries SET subject = 'employer:forged' WHERE seq = 3",
    )
    .await;
    db.close().await;
    expect_red(&inst, "log entry 3:").await;
}

async fn verify_goes_red_when_an_original_is_altered(inst: Instance) {
    populate(&inst, 2).await;
    let tail = inst.run_ok(&["log", "tail", "--json", "-n", "1"]).await;
    let entry: Value = serde_json::from_str(tail.trim()).unwrap();
    let sha = entry["payload_sha256"].as_str().unwrap();
    let path = inst.data_dir.join(format!(
        "originals/sha256/{}/{}/{sha}",
        &sha[0..2],
        &sha[2..4]
    ));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    expect_red(&inst, &format!("original {sha}")).await;
}

async fn verify_goes_red_when_the_tail_is_cut(inst: Instance) {
    // Checkpoint after every entry so the cut is provable.
    inst.run_ok(&["migrate"]).await;
    for i in 0..3 {
        let every_entry = [("IVAN_LEDGER__CHECKPOINT_EVERY_ENTRIES", "1")];
        let number = format!("T-{i}");
        let add = ivan_e2e::filing::employer_add("E", &number);
        inst.run_ok_with(&every_entry, &add).await;
    }
    let verify = inst.run_ok(&["log", "verify"]).await;
    assert!(verify.contains("3 checkpoint signatures valid"), "{verify}");
    let db = inst.db().await;
    drop_append_only_guards(&inst, &db).await;
    if inst.backend == Backend::Sqlite {
        sql(&db, "DROP TRIGGER IF EXISTS log_entries_no_delete").await;
    }
    // The tail from 3 on (the verification above logged itself as entry 4).
    sql(&db, "DELETE FROM log_entries WHERE seq >= 3").await;
    db.close().await;
    expect_red(&inst, "checkpoint at tree size 3").await;
}

async fn unreachable_database_is_one_clear_line(inst: Instance) {
    let url = match inst.backend {
        Backend::Sqlite => format!("sqlite://{}/no/such/dir/ivan.db", inst.dir.path().display()),
        Backend::Postgres => "postgres://postgres@127.0.0.1:1/ivan".to_owned(),
    };
    let out = inst
        .run(&["--database-url", &url, "serve", "--listen", "127.0.0.1:0"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: cannot open database"), "{err}");
    assert!(out.stdout.is_empty(), "never reported listening");
}

async fn oversized_bodies_are_refused_before_they_are_read(inst: Instance) {
    let server = inst
        .serve_with(&[("IVAN_HTTP__BODY_LIMIT_BYTES", "1024")])
        .await;
    // Only the head is sent: the answer can only come from the announced length.
    let (status, headers, body) = server
        .send_head_only("/api/v1/log/checkpoint", &[], 1_000_000)
        .await;
    assert_eq!(status, 413, "{headers:?} {body}");
    assert!(
        headers.contains(&"content-type: application/problem+json".to_owned()),
        "{headers:?}"
    );
    let ok = server
        .http
        .post(server.url("/api/v1/log/checkpoint"))
        .body(vec![b'x'; 16])
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok.status(),
        405,
        "small bodies pass the limit and reach routing"
    );
    assert!(server.stop().await.success());
}

/// The public proof endpoints: every entry's inclusion proof checks against the root
/// of the chain's own entry hashes (by the RFC's MTH, `retention::testing::mth`), consistency proofs
/// check between every pair of sizes, and bad queries are clear 400s.
async fn log_proofs_are_served_and_check_against_the_chain(inst: Instance) {
    let server = inst.serve().await;
    for i in 0..3 {
        inst.run_ok(&ivan_e2e::filing::employer_add("Proof", &format!("P-{i}")))
            .await;
    }
    let tail = inst.run_ok(&["log", "tail", "--json", "-n", "1000"]).await;
    let hashes = entry_hashes(&tail);
    let n = hashes.len() as u64;
    assert!(n >= 4, "{n} entries");
    let b64 = tree_hash;
    let get = |path: String| {
        let server = &server;
        async move {
            let r = server.get(&path).await;
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    for size in 1..=n {
        let root = mth(&hashes[..size as usize]);
        for leaf in 0..size {
            let (status, p) = get(format!(
                "/api/v1/log/proof/inclusion?leaf_index={leaf}&tree_size={size}"
            ))
            .await;
            assert_eq!(status, 200, "{p}");
            assert_eq!(b64(&p["root_hash"]).0, root, "root of {size}");
            let proof: Vec<tlog_tiles::Hash> =
                p["proof"].as_array().unwrap().iter().map(b64).collect();
            let leaf_hash = tlog_tiles::record_hash(&hashes[leaf as usize]);
            tlog_tiles::check_record(&proof, size, tlog_tiles::Hash(root), leaf, leaf_hash)
                .unwrap_or_else(|e| panic!("leaf {leaf} of {size}: {e}"));
        }
        for first in 1..=size {
            let (status, p) = get(format!(
                "/api/v1/log/proof/consistency?first={first}&second={size}"
            ))
            .await;
            assert_eq!(status, 200, "{p}");
            let proof: Vec<tlog_tiles::Hash> =
                p["proof"].as_array().unwrap().iter().map(b64).collect();
            let old = tlog_tiles::Hash(mth(&hashes[..first as usize]));
            tlog_tiles::check_tree(&proof, size, tlog_tiles::Hash(root), first, old)
                .unwrap_or_else(|e| panic!("{first} → {size}: {e}"));
        }
    }
    for path in [
        format!("/api/v1/log/proof/inclusion?leaf_index={n}&tree_size={n}"),
        format!(
            "/api/v1/log/proof/inclusion?leaf_index=0&tree_size={}",
            n + 1000
        ),
        format!(
            "/api/v1/log/proof/inclusion?leaf_index=0&tree_size={}",
            u64::MAX
        ),
        format!("/api/v1/log/proof/consistency?first=1&second={}", u64::MAX),
        "/api/v1/log/proof/inclusion?tree_size=3".to_owned(),
        "/api/v1/log/proof/inclusion?leaf_index=-1&tree_size=3".to_owned(),
        "/api/v1/log/proof/consistency?first=0&second=3".to_owned(),
        "/api/v1/log/proof/consistency?first=3&second=2".to_owned(),
    ] {
        let r = server.get(&path).await;
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    assert!(server.stop().await.success());
}

/// The newest checkpoint is served as a C2SP signed note that the published key
/// verifies under the log's origin, with the root of the entries it covers; the
/// tree's tiles and entry bundles hold the entries' hashes; an inclusion proof asked
/// without a size comes under the newest checkpoint, with its note; and the log
/// keeps its origin: a command configured with another is refused.
async fn checkpoints_are_c2sp_notes_and_the_tree_is_served_as_tiles(inst: Instance) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let server = inst
        .serve_with(&[("IVAN_LEDGER__ORIGIN", "ivan.test/log")])
        .await;
    let missing = server.get("/log/checkpoint").await;
    assert_eq!(missing.status(), 404, "nothing signed yet");
    assert!(server.stop().await.success());
    // A clean stop signed a checkpoint under the origin; a command configured with
    // another origin is refused before it appends anything.
    let out = inst
        .command(&ivan_e2e::filing::employer_add("X", "O-1"))
        .env("IVAN_LEDGER__ORIGIN", "other.test/log")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("origin = \"ivan.test/log\""), "{stderr}");
    let server = inst
        .serve_with(&[
            ("IVAN_LEDGER__ORIGIN", "ivan.test/log"),
            ("IVAN_LEDGER__CHECKPOINT_EVERY_ENTRIES", "1"),
        ])
        .await;
    let tail = inst
        .run_ok_with(
            &[("IVAN_LEDGER__ORIGIN", "ivan.test/log")],
            &["log", "tail", "--json", "-n", "1000"],
        )
        .await;
    let hashes = entry_hashes(&tail);
    let n = hashes.len();
    assert_eq!(n, 3, "start, stop, start");

    let r = server.get("/log/checkpoint").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    let note = r.text().await.unwrap();
    let root = mth(&hashes);
    let (text, sig) = note.split_once("\n\n").unwrap();
    assert_eq!(text, format!("ivan.test/log\n{n}\n{}", b64.encode(root)));
    assert!(sig.starts_with("\u{2014} ivan.test/log "), "{sig}");
    // The published key verifies it under the origin (the C2SP vkey is made from it).
    let jwks: Value = server
        .get_json("/.well-known/ivan/checkpoint-keys.json")
        .await;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
    let mut payload = vec![1u8];
    payload.extend_from_slice(key.as_bytes());
    let key_id =
        &<sha2::Sha256 as sha2::Digest>::digest([&b"ivan.test/log\n"[..], &payload].concat())[..4];
    let blob = b64
        .decode(sig.trim_end().rsplit(' ').next().unwrap())
        .unwrap();
    assert_eq!(&blob[..4], key_id);
    let signature = ed25519_dalek::Signature::from_slice(&blob[4..]).unwrap();
    key.verify_strict(format!("{text}\n").as_bytes(), &signature)
        .unwrap();
    // `ivan log vkey` prints the same key in the signed-note form.
    let vkey = inst
        .run_ok_with(
            &[("IVAN_LEDGER__ORIGIN", "ivan.test/log")],
            &["log", "vkey"],
        )
        .await;
    assert_eq!(
        vkey.trim_end(),
        format!(
            "ivan.test/log+{}+{}",
            hex::encode(key_id),
            b64.encode(&payload)
        )
    );
    let json: Value = server.get_json("/api/v1/log/checkpoint").await;
    assert_eq!(json["signed_note"], note.as_str());
    assert_eq!(json["origin"], "ivan.test/log");
    assert_eq!(json["root_hash"], b64.encode(root));

    // Tiles: the leaf hashes, and the entry hashes as an entry bundle.
    let r = server.get(&format!("/log/tile/0/000.p/{n}")).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let tile = r.bytes().await.unwrap();
    let leaves: Vec<u8> = hashes
        .iter()
        .flat_map(|e| tlog_tiles::record_hash(e).0)
        .collect();
    assert_eq!(&tile[..], &leaves[..]);
    let bundle = server
        .get(&format!("/log/tile/entries/000.p/{n}"))
        .await
        .bytes()
        .await
        .unwrap();
    let entries: Vec<u8> = hashes
        .iter()
        .flat_map(|e| [&[0u8, 32][..], e].concat())
        .collect();
    assert_eq!(&bundle[..], &entries[..]);
    for path in [
        "/log/tile/0/000",
        "/log/tile/0/000.p/9",
        "/log/tile/0/0",
        "/log/tile/nonsense",
    ] {
        let r = server.get(path).await;
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }

    // An inclusion proof under the newest checkpoint, with its note.
    let p: Value = server
        .get_json("/api/v1/log/proof/inclusion?leaf_index=1")
        .await;
    assert_eq!(p["tree_size"], n);
    assert_eq!(p["checkpoint"], note.as_str());
    let proof = proof_of(&p);
    tlog_tiles::check_record(
        &proof,
        n as u64,
        tlog_tiles::Hash(root),
        1,
        tlog_tiles::record_hash(&hashes[1]),
    )
    .unwrap();
    let r = server.get("/api/v1/log/proof/inclusion?leaf_index=3").await;
    assert_eq!(r.status(), 404, "not under a checkpoint yet");
    assert!(server.stop().await.success());
    let verify = inst
        .run_ok_with(
            &[("IVAN_LEDGER__ORIGIN", "ivan.test/log")],
            &["log", "verify"],
        )
        .await;
    assert!(verify.starts_with("log OK"), "{verify}");
}

/// A witness (`ivan witness serve`, its own process) cosigns the log's checkpoints
/// as they grow, and the cosignature, checked here from the C2SP format alone, is
/// served with the checkpoint. Then the whole database is replaced by another
/// history signed with the log's real key and origin, as someone holding the
/// database and the key could: the witness refuses to cosign it, keeps what it saw,
/// and the new log's consistency proof from the witnessed checkpoint fails.
async fn a_witness_cosigns_the_log_and_refuses_a_rewritten_one(inst: Instance) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let origin = [("IVAN_LEDGER__ORIGIN", "ivan.test/log")];
    // First start: the keys are made; `ivan log vkey` names the log to the witness.
    assert!(inst.serve_with(&origin).await.stop().await.success());
    let log_vkey = inst.run_ok_with(&origin, &["log", "vkey"]).await;
    let log_vkey = log_vkey.trim_end();
    let witness = Witness::start(inst.dir.path(), "witness.test/w1", &[log_vkey]).await;
    let config = inst.dir.path().join("witnesses.toml");
    std::fs::write(
        &config,
        format!(
            "[[witnesses]]\nurl = \"{}\"\nvkey = \"{}\"\n",
            witness.base, witness.vkey
        ),
    )
    .unwrap();
    let env = [
        ("IVAN_LEDGER__ORIGIN", "ivan.test/log"),
        ("IVAN_LEDGER__CHECKPOINT_EVERY_ENTRIES", "1"),
        ("IVAN_CONFIG", config.to_str().unwrap()),
    ];
    let server = inst.serve_with(&env).await;
    for i in 0..3 {
        inst.command(&ivan_e2e::filing::employer_add("W", &format!("W-{i}")))
            .envs(env)
            .status()
            .await
            .unwrap();
    }
    // Cosigned: the served checkpoint carries the witness's line.
    let name_line = "\u{2014} witness.test/w1 ";
    let note = ivan_e2e::within(60, || async {
        let note = server.get("/log/checkpoint").await.text().await.unwrap();
        let size: u64 = note.lines().nth(1)?.parse().ok()?;
        (size >= 6 && note.contains(name_line)).then_some(note)
    })
    .await;
    let last = server.get("/log/checkpoint").await.text().await.unwrap();
    let note = note.unwrap_or_else(|| {
        panic!(
            "the witness did not cosign: {last}\n{:?}\n{}\n{}",
            std::fs::read_to_string(&witness.state),
            server.log(),
            witness.log()
        )
    });
    let (text, sigs) = note.split_once("\n\n").unwrap();
    let text = format!("{text}\n");
    let line = sigs.lines().find(|l| l.starts_with(name_line)).unwrap();
    // The cosignature from the formats alone: key id ‖ time ‖ Ed25519 over
    // "cosignature/v1\ntime <t>\n" + the checkpoint text, by the vkey's key.
    // (`<name>+<id>+<key>`; the base64 key may itself hold a '+'.)
    let key = witness.vkey.splitn(3, '+').nth(2).unwrap();
    let key = b64.decode(key).unwrap();
    assert_eq!(key[0], 0x04);
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key[1..].try_into().unwrap()).unwrap();
    let blob = b64.decode(line.rsplit(' ').next().unwrap()).unwrap();
    let time = u64::from_be_bytes(blob[4..12].try_into().unwrap());
    let signature = ed25519_dalek::Signature::from_slice(&blob[12..]).unwrap();
    key.verify_strict(
        format!("cosignature/v1\ntime {time}\n{text}").as_bytes(),
        &signature,
    )
    .unwrap();
    let witnessed_size: u64 = text.lines().nth(1).unwrap().parse().unwrap();
    let witnessed_root = b64.decode(text.lines().nth(2).unwrap()).unwrap();
    assert!(server.stop().await.success());
    let state = std::fs::read_to_string(&witness.state).unwrap();
    assert!(state.contains("ivan.test/log"), "{state}");

    // Another history, signed with the same key under the same origin.
    let forger = Instance::new(inst.backend).await;
    let keys = forger.data_dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for f in std::fs::read_dir(inst.data_dir.join("keys")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), keys.join(f.file_name())).unwrap();
    }
    for d in [&forger.data_dir, &keys] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    let forged = forger.serve_with(&env).await;
    for i in 0..6 {
        forger
            .command(&ivan_e2e::filing::employer_add("F", &format!("F-{i}")))
            .envs(env)
            .status()
            .await
            .unwrap();
    }
    // The witness refuses it: the forged log counts the refusal, serves no
    // cosignature, and the witness still stands where it was.
    ivan_e2e::within(60, || async {
        let metrics = forged.get("/metrics").await.text().await.unwrap();
        metrics
            .contains("ivan_witness_refusals_total")
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("no refusal: {}\n{}", forged.log(), witness.log()));
    let forged_note = forged.get("/log/checkpoint").await.text().await.unwrap();
    let forged_size: u64 = forged_note.lines().nth(1).unwrap().parse().unwrap();
    assert!(forged_size > witnessed_size, "{forged_note}");
    assert!(!forged_note.contains(name_line), "{forged_note}");
    assert_eq!(std::fs::read_to_string(&witness.state).unwrap(), state);
    assert!(
        witness.log().contains("checkpoint refused"),
        "{}",
        witness.log()
    );
    // And anyone holding the witnessed checkpoint sees the forged log does not extend it.
    let p: Value = forged
        .get_json(&format!(
            "/api/v1/log/proof/consistency?first={witnessed_size}&second={forged_size}"
        ))
        .await;
    let proof = proof_of(&p);
    let forged_root = tlog_tiles::Hash(
        b64.decode(p["root_hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let old = tlog_tiles::Hash(witnessed_root.try_into().unwrap());
    assert!(tlog_tiles::check_tree(&proof, forged_size, forged_root, witnessed_size, old).is_err());
    assert!(forged.stop().await.success());
}

/// docs/check_receipt.py, written from RFC 9162 and the C2SP formats with nothing but
/// Python's `cryptography`, checks a real receipt offline: its signature, its entry's
/// inclusion under the signed checkpoint the receipt's `inclusion_proof` URL answers,
/// and that checkpoint's consistency with an older one. A tree altered in the
/// database (so the served proof no longer leads to the signed root) fails it.
async fn the_documented_python_check_proves_a_receipt_offline(inst: Instance) {
    use ivan_e2e::filing::{report, set_up, sign};
    let filer = set_up(&inst, "12345678").await;
    let signed = sign(&inst, &filer, &report(&filer.registration, 1), "employer").await;
    let env = [
        ("IVAN_LEDGER__ORIGIN", "ivan.test/log"),
        ("IVAN_LEDGER__CHECKPOINT_EVERY_ENTRIES", "1"),
    ];
    let server = inst.serve_with(&env).await;
    let dir = inst.dir.path();
    let old = server.get("/log/checkpoint").await.text().await.unwrap();
    let old_size: u64 = old.lines().nth(1).unwrap().parse().unwrap();
    let r = server.submit(&filer.token, signed).await;
    assert_eq!(r.status(), 201);
    let view: Value = r.json().await.unwrap();
    let id = view["message_id"].as_str().unwrap();
    let receipt = server
        .get_auth(&format!("/api/v1/submissions/{id}/receipt"), &filer.token)
        .await
        .text()
        .await
        .unwrap();
    let proof = server.get(view["inclusion_proof"].as_str().unwrap()).await;
    assert_eq!(proof.status(), 200);
    let proof: Value = proof.json().await.unwrap();
    let size = proof["tree_size"].as_u64().unwrap();
    let consistency = server
        .get(&format!(
            "/api/v1/log/proof/consistency?first={old_size}&second={size}"
        ))
        .await
        .text()
        .await
        .unwrap();
    let out = inst
        .command(&["log", "vkey"])
        .envs(env)
        .output()
        .await
        .unwrap();
    let files = [
        ("receipt.jws", receipt),
        (
            "jwks.json",
            server
                .get("/.well-known/jwks.json")
                .await
                .text()
                .await
                .unwrap(),
        ),
        ("log.vkey", String::from_utf8(out.stdout).unwrap()),
        ("proof.json", proof.to_string()),
        ("old-checkpoint.txt", old),
        ("consistency.json", consistency),
    ];
    for (name, content) in &files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/check_receipt.py");
    let check = || async {
        let out = tokio::process::Command::new("python3")
            .arg(&script)
            .args(files.iter().map(|(name, _)| dir.join(name)))
            .output()
            .await
            .expect("python3 with cryptography (ops/test.sh installs it into its virtualenv)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, said) = check().await;
    assert!(ok, "{said}");
    let seq = view["log_seq"].as_u64().unwrap();
    assert!(
        said.contains(&format!("entry {seq} is in the log of {size} entries")),
        "{said}"
    );
    assert!(
        said.contains(&format!("extends the one of {old_size}")),
        "{said}"
    );

    // The tree altered under the signed checkpoint: the sibling of the receipt's leaf
    // replaced, so the proof served from the table leads to another root.
    let db = inst.db().await;
    match inst.backend {
        Backend::Sqlite => sql(&db, "DROP TRIGGER log_tree_no_update").await,
        Backend::Postgres => sql(&db, "DROP TRIGGER log_tree_no_update ON log_tree").await,
    }
    let sibling = tlog_tiles::stored_hash_index(0, (seq - 1) ^ 1);
    on_pool!(&db, pool => sqlx::query("UPDATE log_tree SET hash = $1 WHERE idx = $2")
        .bind(vec![7u8; 32])
        .bind(i64::try_from(sibling).unwrap())
        .execute(pool).await.map(drop))
    .unwrap();
    db.close().await;
    let proof = server
        .get(&format!(
            "/api/v1/log/proof/inclusion?leaf_index={}",
            seq - 1
        ))
        .await
        .text()
        .await
        .unwrap();
    std::fs::write(dir.join("proof.json"), proof).unwrap();
    let (ok, said) = check().await;
    assert!(!ok, "{said}");
    assert!(
        said.contains(&format!("FAILED: entry {seq} is not proven")),
        "{said}"
    );
    assert!(server.stop().await.success());
}

/// `--operator` (or `IVAN_OPERATOR`) names who acted, in the log; a name that is not
/// one is refused before anything is written.
async fn operators_are_named_by_flag_or_environment(inst: Instance) {
    inst.run_ok(&["migrate"]).await;
    let add = ivan_e2e::filing::employer_add;
    let operator = |name| ["--operator", name];
    inst.run_ok(&[&add("N", "OP-1")[..], &operator("jana.novakova")].concat())
        .await;
    inst.run_ok_with(&[("IVAN_OPERATOR", "peter@ops")], &add("N", "OP-2"))
        .await;
    let bad = inst
        .run(&[&add("N", "OP-3")[..], &operator("two words")].concat())
        .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--operator"));
    let tail = inst.run_ok(&["log", "tail", "--json", "-n", "1000"]).await;
    let actors: Vec<String> = tail
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "employer.create")
        .map(|e| e["actor"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actors, ["operator:jana.novakova", "operator:peter@ops"]);
}
