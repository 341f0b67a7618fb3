//! Backup and restore end to end, with the real binary on both backends: a backup
//! taken while filings arrive restores into a fresh database and data dir whose log
//! verifies, ends at the snapshot's head and serves the originals byte-exact; a
//! second backup into the same directory copies only the new originals; a non-empty
//! target is refused and left as it was; a truncated, partial or altered backup is
//! refused before the target is touched; a restore that fails part-way leaves
//! RESTORE-INCOMPLETE, and `ivan serve` refuses that data dir.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ivan_e2e::filing::{self, Filer};
use ivan_e2e::{Instance, Server, e2e_tests};
use serde_json::Value;

e2e_tests!(
    backup_during_intake_restores_to_a_record_that_verifies,
    damaged_partial_or_altered_backups_are_refused,
);

/// Filings posted while the first backup runs.
const CONCURRENT_FILINGS: usize = 12;

async fn submit(server: &Server, filer: &Filer, xml: &str) -> Value {
    server.file(&filer.token, xml.to_owned()).await
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn snapshot_dir(backup: &Path, id: &str) -> PathBuf {
    backup.join("snapshots").join(id)
}

fn manifest(backup: &Path, id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(snapshot_dir(backup, id).join("manifest.json")).unwrap())
        .unwrap()
}

/// `cp -a` for the tests: copies a directory tree, file modes included.
fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// The log's newest entry, read from the database directly (`ivan log tail` would log
/// its own read first).
async fn last_entry(inst: &Instance) -> Value {
    let db = inst.db().await;
    let last = retention::ledger::last_entries(&db, 1).await.unwrap();
    db.close().await;
    serde_json::to_value(&last[0]).unwrap()
}

async fn backup_during_intake_restores_to_a_record_that_verifies(inst: Instance) {
    let filer = filing::set_up(&inst, "BAK-1").await;
    let mut signed = Vec::new();
    // One more than the concurrent ones: filed after the first snapshot, so the second
    // always has something new (the concurrent ones may all land before the first).
    for i in 0..=CONCURRENT_FILINGS + 1 {
        signed.push(
            filing::sign(
                &inst,
                &filer,
                &filing::report("BAK-1", i as u32),
                "employer",
            )
            .await,
        );
    }
    let server = inst.serve().await;
    let before = submit(&server, &filer, &signed[0]).await;
    let before_id = before["message_id"].as_str().unwrap().to_owned();

    // Filings keep arriving while the backup runs.
    let posted = Arc::new(AtomicUsize::new(0));
    let poster = {
        let http = server.http.clone();
        let url = server.url("/api/v1/submissions");
        let token = filer.token.clone();
        let posted = posted.clone();
        let bodies: Vec<String> = signed[1..=CONCURRENT_FILINGS].to_vec();
        tokio::spawn(async move {
            for xml in bodies {
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/xml")
                    .body(xml)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                posted.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    ivan_e2e::eventually(30, "the first concurrent filings", || {
        let posted = posted.clone();
        async move { (posted.load(Ordering::SeqCst) >= 2).then_some(()) }
    })
    .await;
    let backup = inst.dir.path().join("backup");
    let b = backup.to_str().unwrap();
    let first = stdout_json(&inst.run(&["backup", "create", b, "--json"]).await);
    tokio::time::timeout(Duration::from_secs(60), poster)
        .await
        .unwrap()
        .unwrap();
    let first_id = first["snapshot"].as_str().unwrap().to_owned();
    assert_eq!(
        first["backend"],
        if inst.backend == ivan_e2e::Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    assert_eq!(first["originals_skipped"], 0);
    assert_eq!(first["originals_copied"], first["originals"]);
    for timing in ["db_seconds", "originals_seconds", "total_seconds"] {
        assert!(first[timing].as_f64().unwrap() >= 0.0, "{timing}: {first}");
    }

    let verified = stdout_json(&inst.run(&["backup", "verify", b, "--json"]).await);
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["snapshot"], first_id);
    assert_eq!(verified["originals"], first["originals"]);

    // A second snapshot into the same directory copies only what is new.
    submit(&server, &filer, &signed[CONCURRENT_FILINGS + 1]).await;
    let second = stdout_json(&inst.run(&["backup", "create", b, "--json"]).await);
    let (n1, n2) = (
        first["originals"].as_u64().unwrap(),
        second["originals"].as_u64().unwrap(),
    );
    assert!(
        n2 > n1,
        "the later filings are in the second snapshot: {second}"
    );
    assert_eq!(second["originals_skipped"].as_u64().unwrap(), n1);
    assert_eq!(second["originals_copied"].as_u64().unwrap(), n2 - n1);
    assert!(second["snapshot"].as_str().unwrap() > first_id.as_str());
    // The default snapshot is now the newest one.
    let verified = stdout_json(&inst.run(&["backup", "verify", b, "--json"]).await);
    assert_eq!(verified["snapshot"], second["snapshot"], "{verified}");

    // Restore the first snapshot into a fresh database and data dir.
    let target = Instance::new(inst.backend).await;
    let restored = stdout_json(
        &target
            .run(&["restore", b, "--snapshot", &first_id, "--json"])
            .await,
    );
    let m = manifest(&backup, &first_id);
    assert_eq!(restored["snapshot"], first_id);
    assert_eq!(restored["tree_size"], m["log"]["tree_size"]);
    assert_eq!(restored["head_hash"], m["log"]["head_hash"]);
    assert_eq!(restored["log_entries"], m["log"]["tree_size"]);
    assert_eq!(restored["originals"], first["originals"]);
    assert_eq!(restored["key_id"], first["key_id"]);
    for timing in [
        "db_seconds",
        "originals_seconds",
        "verify_seconds",
        "total_seconds",
    ] {
        assert!(restored[timing].as_f64().is_some(), "{timing}: {restored}");
    }
    assert!(!target.data_dir.join("RESTORE-INCOMPLETE").exists());
    let head = last_entry(&target).await;
    assert_eq!(head["seq"], m["log"]["tree_size"]);
    assert_eq!(head["entry_hash"], m["log"]["head_hash"]);
    let verify = target.run_ok(&["log", "verify"]).await;
    assert!(verify.starts_with("log OK"), "{verify}");

    // A non-empty target is refused and left as it was: the restored one, and the
    // source itself.
    for (into, args) in [
        (&target, vec!["restore", b, "--snapshot", &first_id]),
        (&inst, vec!["restore", b]),
    ] {
        let before = last_entry(into).await;
        let out = into.run(&args).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("restore only into an empty target"),
            "{}",
            text(&out)
        );
        assert_eq!(last_entry(into).await, before);
        assert!(!into.data_dir.join("RESTORE-INCOMPLETE").exists());
    }
    server.stop().await;

    // The restored service serves the original byte-exact, to the employer's token
    // that came back with the database.
    let restored_server = target.serve().await;
    let r = restored_server
        .get_auth(
            &format!("/api/v1/submissions/{before_id}/original"),
            &filer.token,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), signed[0].as_bytes());
    let jwks: Value = restored_server
        .get_json("/.well-known/ivan/checkpoint-keys.json")
        .await;
    assert_eq!(
        jwks["keys"][0]["kid"], first["key_id"],
        "the same checkpoint key"
    );
    assert!(restored_server.stop().await.success());
    let verify = target.run_ok(&["log", "verify"]).await;
    assert!(verify.starts_with("log OK"), "{verify}");
}

async fn damaged_partial_or_altered_backups_are_refused(inst: Instance) {
    let filer = filing::set_up(&inst, "BAK-2").await;
    let server = inst.serve().await;
    for i in 0..3 {
        let xml = filing::sign(&inst, &filer, &filing::report("BAK-2", i), "employer").await;
        submit(&server, &filer, &xml).await;
    }
    let good = inst.dir.path().join("backup");
    let made = stdout_json(
        &inst
            .run(&["backup", "create", good.to_str().unwrap(), "--json"])
            .await,
    );
    server.stop().await;
    let id = made["snapshot"].as_str().unwrap().to_owned();
    let m = manifest(&good, &id);
    let files = m["files"].as_array().unwrap();
    let biggest_db_file = files
        .iter()
        .filter(|f| f["path"].as_str().unwrap().starts_with("db/"))
        .max_by_key(|f| f["size"].as_u64().unwrap())
        .unwrap();
    let db_file = biggest_db_file["path"].as_str().unwrap().to_owned();
    let db_size = biggest_db_file["size"].as_u64().unwrap();
    let list = std::fs::read_to_string(snapshot_dir(&good, &id).join("originals.list")).unwrap();
    // "<sha256> <size> <pack> <offset>": where the first original lies in its pack.
    let first: Vec<&str> = list.lines().next().unwrap().split(' ').collect();
    let (an_original, offset): (&str, u64) = (first[0], first[3].parse().unwrap());
    let pack_path = |backup: &Path| backup.join(format!("packs/{}.pack", first[2]));

    // Each damage, in its own copy of the backup: what `backup verify` says, and
    // that `restore` refuses before touching a fresh target.
    type Damage<'a> = Box<dyn Fn(&Path) + 'a>;
    let snap = |backup: &Path| snapshot_dir(backup, &id);
    let cases: Vec<(&str, Damage<'_>, Vec<String>, &str)> = vec![
        (
            "truncated database file",
            Box::new({
                let db_file = db_file.clone();
                move |b: &Path| {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(snap(b).join(&db_file))
                        .unwrap();
                    f.set_len(db_size / 2).unwrap();
                }
            }),
            vec![db_file.clone(), "truncated".into()],
            "nothing was restored",
        ),
        (
            "truncated original",
            Box::new(move |b: &Path| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(pack_path(b))
                    .unwrap();
                f.set_len(offset + 3).unwrap();
            }),
            vec![an_original.to_owned(), "truncated".into()],
            "nothing was restored",
        ),
        (
            "no COMPLETE",
            Box::new(move |b: &Path| std::fs::remove_file(snap(b).join("COMPLETE")).unwrap()),
            vec!["partial".into(), "COMPLETE is missing".into()],
            "nothing was restored",
        ),
        (
            "a changed byte in manifest.json",
            Box::new(move |b: &Path| {
                let p = snap(b).join("manifest.json");
                let json = std::fs::read_to_string(&p).unwrap();
                let changed = json.replacen("\"ivan_version\": \"", "\"ivan_version\": \"9", 1);
                assert_ne!(json, changed);
                std::fs::write(&p, changed).unwrap();
            }),
            vec!["manifest.sig".into(), "does not verify".into()],
            "nothing was restored",
        ),
    ];
    for (i, (what, damage, says, refusal)) in cases.into_iter().enumerate() {
        let copy = inst.dir.path().join(format!("damaged-{i}"));
        copy_dir(&good, &copy);
        damage(&copy);
        let c = copy.to_str().unwrap();
        let out = inst.run(&["backup", "verify", c, "--snapshot", &id]).await;
        assert_eq!(out.status.code(), Some(3), "{what}: {}", text(&out));
        for s in &says {
            assert!(
                text(&out).contains(s.as_str()),
                "{what}: expected {s:?} in {}",
                text(&out)
            );
        }
        let target = Instance::new(inst.backend).await;
        let out = target.run(&["restore", c, "--snapshot", &id]).await;
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        assert!(text(&out).contains(refusal), "{what}: {}", text(&out));
        assert!(
            !target.data_dir.exists(),
            "{what}: the target was not touched"
        );
        if inst.backend == ivan_e2e::Backend::Postgres {
            // Not even the migrations ran.
            let out = target.run(&["log", "tail"]).await;
            assert!(!out.status.success(), "{what}: {}", text(&out));
        }
    }
    // Without --snapshot, a backup whose only snapshot is partial has nothing to restore.
    let partial = inst.dir.path().join("partial");
    copy_dir(&good, &partial);
    std::fs::remove_file(snapshot_dir(&partial, &id).join("COMPLETE")).unwrap();
    let out = inst.run(&["restore", partial.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no complete snapshot"),
        "{}",
        text(&out)
    );

    // An original altered in its pack (same size) passes the pre-check, which looks
    // at sizes, but not the copy, which re-hashes: the restore fails part-way, the
    // marker stays, and nothing will use that data dir.
    let altered = inst.dir.path().join("altered");
    copy_dir(&good, &altered);
    let p = pack_path(&altered);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[usize::try_from(offset).unwrap()] ^= 0x20;
    std::fs::write(&p, bytes).unwrap();
    let out = inst
        .run(&["backup", "verify", altered.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).contains("altered"), "{}", text(&out));
    let target = Instance::new(inst.backend).await;
    let out = target.run(&["restore", altered.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("INCOMPLETE"), "{}", text(&out));
    assert!(text(&out).contains(an_original), "{}", text(&out));
    assert!(target.data_dir.join("RESTORE-INCOMPLETE").exists());
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0"],
        vec!["migrate"],
        vec!["backup", "create", good.to_str().unwrap()],
    ] {
        let out = target.run(&args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("RESTORE-INCOMPLETE") && text(&out).contains("ivan restore"),
            "{args:?}: {}",
            text(&out)
        );
    }
    // A new restore into it is refused too, until it is discarded.
    let out = target.run(&["restore", good.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("did not finish"), "{}", text(&out));
}
