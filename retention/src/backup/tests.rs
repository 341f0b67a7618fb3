use std::path::Path;

use bytes::Bytes;

use super::layout::{
    WANTED, is_plain_identifier, is_snapshot_id, list_line, original_rel, parse_list_line,
};
use super::packs::{Located, is_pack_name, located_line, pack_name, parse_located_line};
use super::*;
use crate::ledger::{NewEntry, Payload};
use crate::originals::OriginalsConfig;
use crate::testing::{TempPg, TestEnv};
use crate::{Actor, Backend, Db, MigrationPolicy, backend_tests};

#[test]
fn signing_input_is_domain_then_manifest_hash() {
    let input = manifest_signing_input(b"{}\n");
    let text = String::from_utf8(input).unwrap();
    assert_eq!(
        text,
        format!(
            "ivan/backup-manifest/v1\n{}\n",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"{}\n"))
        )
    );
    assert_ne!(
        manifest_signing_input(b"{}\n"),
        manifest_signing_input(b"{} \n")
    );
}

#[test]
fn snapshot_ids_are_fixed_width_and_sort_as_times() {
    let t1 = chrono::DateTime::parse_from_rfc3339("2026-03-04T05:06:07.000008Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let t2 = t1 + chrono::Duration::microseconds(1);
    let t3 = t1 + chrono::Duration::days(400);
    let (a, b, c) = (snapshot_id(&t1), snapshot_id(&t2), snapshot_id(&t3));
    assert_eq!(a, "20260304T050607000008Z");
    assert!(a < b && b < c);
    assert!(is_snapshot_id(&a));
    for bad in [
        "",
        "20260304T050607000008",
        "2026030xT050607000008Z",
        "../x",
        "a/b",
    ] {
        assert!(!is_snapshot_id(bad), "{bad}");
    }
}

#[test]
fn originals_go_where_the_store_keeps_them() {
    let h = "ab".repeat(32);
    assert_eq!(original_rel(&h), format!("sha256/ab/ab/{h}"));
}

#[test]
fn list_lines_parse_strictly() {
    let h = "0f".repeat(32);
    let line = list_line(&h, 1234);
    assert_eq!(line, format!("{h} 1234\n"));
    let (sha, size) = parse_list_line(line.trim_end_matches('\n')).unwrap();
    assert_eq!((sha.as_str(), size), (h.as_str(), 1234));
    assert_eq!(parse_list_line(&format!("{h} 0")).unwrap().1, 0);
    for bad in [
        String::new(),
        h.clone(),
        format!("{h}  1"),
        format!("{h} -1"),
        format!("{h} 1 "),
        format!("{h} 1x"),
        format!("{} 1", h.to_uppercase()),
        format!("{} 1", &h[..63]),
        format!("{h} 123456789012345678901"),
    ] {
        assert!(parse_list_line(&bad).is_none(), "{bad:?}");
    }
}

#[test]
fn located_lines_and_pack_names_parse_strictly() {
    let h = "0f".repeat(32);
    let pack = pack_name("20260304T050607000008Z", 3);
    assert_eq!(pack, "20260304T050607000008Z-0003");
    assert!(is_pack_name(&pack));
    for bad in [
        "",
        "20260304T050607000008Z",
        "20260304T050607000008Z-",
        "20260304T050607000008Z-003",
        "20260304T050607000008Z-000x",
        "../20260304T050607000008Z-0003",
        "20260304T050607000008Z-0003/x",
    ] {
        assert!(!is_pack_name(bad), "{bad:?}");
    }
    let l = Located {
        sha256: crate::Sha256Hex::parse(&h).unwrap(),
        size: 1234,
        pack: pack.as_str().into(),
        offset: 99,
    };
    let line = located_line(&l);
    assert_eq!(line, format!("{h} 1234 {pack} 99\n"));
    let mut names = std::collections::HashMap::new();
    assert_eq!(
        parse_located_line(line.trim_end_matches('\n'), &mut names).unwrap(),
        l
    );
    for bad in [
        format!("{h} 1234 {pack}"),
        format!("{h} 1234 {pack} 99 "),
        format!("{h} 1234 {pack}  99"),
        format!("{h} 1234 {pack} -1"),
        format!("{h} 1234 ../x 99"),
        format!("{h} 1234 {pack} 123456789012345678901"),
        format!("{} 1234 {pack} 99", h.to_uppercase()),
    ] {
        assert!(parse_located_line(&bad, &mut names).is_none(), "{bad:?}");
    }
}

#[test]
fn identifiers_and_paths_are_checked() {
    assert!(is_plain_identifier("log_entries"));
    assert!(is_plain_identifier("_sqlx_migrations"));
    for bad in ["", "Log", "a-b", "a\"b", "1a", "a b"] {
        assert!(!is_plain_identifier(bad), "{bad}");
    }
    assert!(check::is_safe_rel("db/log_entries.copy"));
    for bad in ["", "/etc/passwd", "a/../b", "./a", "a//b", ".."] {
        assert!(!check::is_safe_rel(bad), "{bad}");
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn edges(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn fk_order_puts_referenced_tables_first_stably() {
    let tables = names(&[
        "submissions",
        "outbox",
        "employers",
        "originals",
        "log_entries",
    ]);
    let order = pg::fk_order(
        &tables,
        &edges(&[
            ("submissions", "employers"),
            ("submissions", "originals"),
            ("outbox", "submissions"),
            ("outbox", "outbox"), // a self-reference is no constraint on order
            ("submissions", "not_listed"), // nor is a table outside the set
        ]),
    )
    .unwrap();
    assert_eq!(
        order,
        names(&[
            "employers",
            "log_entries",
            "originals",
            "submissions",
            "outbox"
        ])
    );
    let cycle = pg::fk_order(
        &names(&["a", "b", "c"]),
        &edges(&[("a", "b"), ("b", "a"), ("c", "a")]),
    )
    .unwrap_err()
    .to_string();
    assert!(cycle.contains("cycle among a, b, c"), "{cycle}");
}

/// A record with a few logged payloads and a checkpoint.
async fn fill(env: &TestEnv, from: usize, n: usize) {
    let (ledger, task) = env.ledger(crate::LedgerConfig::default());
    fill_with(&ledger, from, n).await;
    task.shutdown().await;
}

async fn fill_with(ledger: &crate::Ledger, from: usize, n: usize) {
    for i in from..from + n {
        ledger
            .append(NewEntry {
                actor: Actor::System,
                action: "test.payload".into(),
                subject: format!("test:{i}"),
                payload: Some(Payload {
                    content: (Bytes::from(format!(
                        "<doc n=\"{i}\">\r\n exact bytes {}</doc>",
                        "x".repeat(i * 37)
                    )))
                    .into(),
                    media_type: "application/xml".into(),
                    retain_until: None,
                }),
            })
            .await
            .unwrap();
    }
    ledger
        .append(NewEntry {
            actor: Actor::System,
            action: "test.plain".into(),
            subject: "test:plain".into(),
            payload: None,
        })
        .await
        .unwrap();
    ledger.checkpoint_now().await.unwrap();
}

/// A fresh, empty target of `backend` in `dir` (its database, data dir and keys).
struct Target {
    url: String,
    data_dir: std::path::PathBuf,
    keys_dir: std::path::PathBuf,
    originals: OriginalsConfig,
    _pg: Option<TempPg>,
}

impl Target {
    async fn new(backend: Backend, dir: &Path) -> Self {
        let data_dir = dir.join("target-data");
        let (url, pg) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", data_dir.join("ivan.db").display()),
                None,
            ),
            Backend::Postgres => {
                let pg = TempPg::create().await.unwrap();
                (pg.url().to_owned(), Some(pg))
            }
        };
        Self {
            url,
            keys_dir: data_dir.join("keys"),
            data_dir,
            originals: OriginalsConfig::default(),
            _pg: pg,
        }
    }

    fn restore_target(&self) -> RestoreTarget<'_> {
        RestoreTarget {
            database_url: &self.url,
            max_connections: 4,
            data_dir: &self.data_dir,
            keys_dir: &self.keys_dir,
            originals: &self.originals,
        }
    }
}

/// A snapshot of `env`'s data (its keys in `keys/`) into `backup`.
async fn snapshot(env: &TestEnv, backup: &Path) -> CreateSummary {
    let keys_dir = env.dir.path().join("keys");
    create(&env.db, &env.originals, &keys_dir, backup, &Silent)
        .await
        .unwrap()
}

backend_tests!(snapshot_restores_into_an_empty_target_and_verifies);

async fn snapshot_restores_into_an_empty_target_and_verifies(env: TestEnv) {
    fill(&env, 1, 6).await;
    let backup = env.dir.path().join("backup");
    let first = snapshot(&env, &backup).await;
    assert_eq!(first.originals, 6);
    assert_eq!((first.originals_copied, first.originals_skipped), (6, 0));
    assert_eq!(first.log_tree_size, 7);
    assert_eq!(first.checkpoint_tree_size, Some(7));
    let report = verify(&backup, None, true, &Silent).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.snapshot, first.snapshot);
    assert_eq!(report.originals, 6);
    assert_eq!(report.key_id.as_deref(), Some(env.keys.checkpoint_kid()));
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(
            backup
                .join("snapshots")
                .join(&first.snapshot)
                .join("keys/checkpoint-ed25519.pem"),
        )
        .unwrap()
        .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);

    // More filings; the next snapshot copies only the new originals.
    fill(&env, 7, 2).await;
    let second = snapshot(&env, &backup).await;
    assert_eq!((second.originals_copied, second.originals_skipped), (2, 6));
    assert!(second.snapshot > first.snapshot);

    // Restore the first snapshot.
    let target = Target::new(env.db.backend(), env.dir.path()).await;
    let done = restore(
        &backup,
        Some(&first.snapshot),
        &target.restore_target(),
        &Silent,
    )
    .await
    .unwrap();
    assert_eq!(done.log_entries, 7);
    assert_eq!(done.originals_verified, 6);
    assert_eq!(done.head_hash, first.head_hash);
    assert!(!target.data_dir.join(INCOMPLETE_MARKER).exists());
    let restored = Db::connect(&target.url, 2, MigrationPolicy::RequireCurrent)
        .await
        .unwrap();
    let (count, _) = crate::ledger::size(&restored).await.unwrap();
    assert_eq!(count, 7);
    assert_eq!(
        restored.table_columns().await.unwrap(),
        env.db.table_columns().await.unwrap()
    );
    // The load drops keys, references and indexes and re-creates them: all of them
    // come back exactly as the migrations made them.
    if let (Db::Postgres(source), Db::Postgres(target)) = (&env.db, &restored) {
        let source = pg_schema_objects(source).await;
        assert!(
            source.iter().any(|o| o.contains("FOREIGN KEY")),
            "{source:?}"
        );
        assert_eq!(pg_schema_objects(target).await, source);
    }
    restored.close().await;

    // A second restore into the now full target is refused, and changes nothing.
    let again = restore(&backup, None, &target.restore_target(), &Silent)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        again.contains("restore only into an empty target"),
        "{again}"
    );
    assert!(!target.data_dir.join(INCOMPLETE_MARKER).exists());
}

/// Every constraint and index of the schema, as the catalog defines it.
async fn pg_schema_objects(pool: &sqlx::PgPool) -> Vec<String> {
    let mut objects: Vec<String> = sqlx::query_scalar(
        "SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE connamespace = current_schema()::regnamespace \
         UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    objects.sort();
    objects
}

/// Rows that break a key or a reference are refused when the constraint comes back
/// after the load, and the load's one transaction leaves the target empty.
#[tokio::test]
async fn pg_load_refuses_rows_that_break_keys_or_references() {
    for (table, rows, broken) in [
        (
            "log_checkpoints",
            "7\tabc\t2026-01-01 00:00:00+00\tkid\tsig\t\\N\n".repeat(2),
            "log_checkpoints_pkey",
        ),
        (
            "answers",
            "s1\t1\tresult.xml\tapplication/xml\tnot-there\t10\t1\t2026-01-01 00:00:00+00\n"
                .to_owned(),
            "answers_",
        ),
    ] {
        let pg = TempPg::create().await.unwrap();
        let db = Db::connect(pg.url(), 2, MigrationPolicy::Apply)
            .await
            .unwrap();
        let Db::Postgres(pool) = &db else {
            unreachable!("a PostgreSQL url")
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("db")).unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let mut dumps = Vec::new();
        let mut files = std::collections::BTreeMap::new();
        for (name, columns) in pg::tables(&mut conn).await.unwrap() {
            let file = format!("db/{name}.copy");
            let data = if name == table {
                rows.clone()
            } else {
                String::new()
            };
            std::fs::write(dir.path().join(&file), &data).unwrap();
            files.insert(
                file.clone(),
                FileRecord {
                    path: file.clone(),
                    sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data)),
                    size: data.len() as u64,
                },
            );
            dumps.push(TableDump {
                rows: data.lines().count() as u64,
                name,
                file,
                columns,
            });
        }
        drop(conn);
        let refused = pg::load(pool, dir.path(), &dumps, &files, &Silent)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&format!("table {table}: the loaded rows break {broken}")),
            "{refused}"
        );
        let left: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(left, 0, "{table}");
        db.close().await;
    }
}

backend_tests!(the_next_backup_copies_again_what_a_damaged_pack_no_longer_holds);

/// A snapshot reuses an earlier snapshot's originals only while their pack still holds
/// them: a shortened pack makes the next backup copy the lost originals again.
async fn the_next_backup_copies_again_what_a_damaged_pack_no_longer_holds(env: TestEnv) {
    fill(&env, 1, 3).await;
    let backup = env.dir.path().join("backup");
    let first = snapshot(&env, &backup).await;
    assert_eq!((first.originals_copied, first.originals_skipped), (3, 0));
    assert_eq!(first.packs_written, 1);
    let list = std::fs::read_to_string(
        backup
            .join("snapshots")
            .join(&first.snapshot)
            .join(ORIGINALS_LIST),
    )
    .unwrap();
    let mut names = std::collections::HashMap::new();
    let located: Vec<Located> = list
        .lines()
        .map(|l| parse_located_line(l, &mut names).unwrap())
        .collect();
    assert!(located.iter().all(|l| l.pack == located[0].pack));
    let last = located.iter().max_by_key(|l| l.offset).unwrap();
    let pack = backup.join("packs").join(format!("{}.pack", last.pack));
    assert_eq!(
        std::fs::metadata(&pack).unwrap().len(),
        located.iter().map(|l| l.size).sum::<u64>(),
        "originals back to back"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(last.offset + 1)
        .unwrap();

    fill(&env, 4, 1).await;
    let second = snapshot(&env, &backup).await;
    assert_eq!(
        (second.originals_copied, second.originals_skipped),
        (2, 2),
        "the new original and the one the pack lost are copied"
    );
    assert_eq!(second.packs_written, 1);
    let report = verify(&backup, None, true, &Silent).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.originals, 4);
    let first_again = verify(&backup, Some(&first.snapshot), true, &Silent)
        .await
        .unwrap();
    assert!(!first_again.ok);
    assert_eq!(first_again.problems_total, 1, "{:?}", first_again.problems);
    assert!(
        first_again.problems[0].contains(last.sha256.as_str())
            && first_again.problems[0].contains("truncated"),
        "{:?}",
        first_again.problems
    );
    // A changed byte inside a pack is found by re-hashing, not by sizes.
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&pack, &bytes).unwrap();
    let altered = verify(&backup, None, true, &Silent).await.unwrap();
    assert!(
        altered.problems.iter().any(|p| p.contains("altered")),
        "{:?}",
        altered.problems
    );
    assert!(verify(&backup, None, false, &Silent).await.unwrap().ok);
}

backend_tests!(damaged_snapshots_are_refused_before_the_target_is_touched);

async fn damaged_snapshots_are_refused_before_the_target_is_touched(env: TestEnv) {
    fill(&env, 1, 3).await;
    let backup = env.dir.path().join("backup");
    let made = create(
        &env.db,
        &env.originals,
        &env.dir.path().join("keys"),
        &backup,
        &Silent,
    )
    .await
    .unwrap();
    let snap = backup.join("snapshots").join(&made.snapshot);
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(snap.join(MANIFEST)).unwrap()).unwrap();
    let db_file = manifest
        .files
        .iter()
        .filter(|f| f.path.starts_with("db/"))
        .max_by_key(|f| f.size)
        .unwrap()
        .path
        .clone();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(snap.join(&db_file))
        .unwrap();
    f.set_len(
        manifest
            .files
            .iter()
            .find(|x| x.path == db_file)
            .unwrap()
            .size
            / 2,
    )
    .unwrap();
    let report = verify(&backup, None, true, &Silent).await.unwrap();
    assert!(!report.ok);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&db_file) && p.contains("truncated")),
        "{:?}",
        report.problems
    );
    let target = Target::new(env.db.backend(), env.dir.path()).await;
    let refused = restore(&backup, None, &target.restore_target(), &Silent)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("nothing was restored"), "{refused}");
    assert!(refused.contains(&db_file), "{refused}");
    assert!(
        !target.data_dir.exists(),
        "the target data dir was not even created"
    );
    if env.db.backend() == Backend::Postgres {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&target.url).await.unwrap();
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(tables, 0, "the target database was not touched");
    }
}

/// Originals in an S3 bucket are backed up through the store, and restored into
/// another (empty) bucket through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_originals_back_up_and_restore_through_the_store() {
    use std::sync::Arc;
    let source_s3 = crate::testing::S3Emulator::start().await;
    let target_s3 = crate::testing::S3Emulator::start().await;
    let env = TestEnv::sqlite().await;
    let source = crate::Originals::s3(&source_s3.config()).unwrap();
    let (ledger, task) = crate::Ledger::start(
        env.db.clone(),
        source.clone(),
        env.keys.clone(),
        Arc::new(crate::SystemClock),
        crate::LedgerConfig::default(),
    );
    fill_with(&ledger, 1, 4).await;
    task.shutdown().await;
    let backup = env.dir.path().join("backup");
    let made = create(
        &env.db,
        &source,
        &env.dir.path().join("keys"),
        &backup,
        &Silent,
    )
    .await
    .unwrap();
    assert_eq!((made.originals, made.originals_copied), (4, 4));
    assert!(verify(&backup, None, true, &Silent).await.unwrap().ok);

    let mut target = Target::new(Backend::Sqlite, env.dir.path()).await;
    target.originals = OriginalsConfig::S3(target_s3.config());
    let done = restore(&backup, None, &target.restore_target(), &Silent)
        .await
        .unwrap();
    assert_eq!(done.originals_verified, 4);
    let restored = crate::Originals::s3(&target_s3.config()).unwrap();
    let listed = futures::StreamExt::collect::<Vec<_>>(restored.list()).await;
    assert_eq!(listed.len(), 4);
    // A bucket that is not empty is refused.
    let mut again = Target::new(Backend::Sqlite, &env.dir.path().join("again")).await;
    again.originals = OriginalsConfig::S3(target_s3.config());
    let err = restore(&backup, None, &again.restore_target(), &Silent)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("originals store") && err.contains("not empty"),
        "{err}"
    );
}

/// The retention sweep marks an original purged, then deletes its bytes. A snapshot
/// taken before the mark lists it; if the bytes are gone by the time it is copied,
/// that snapshot is given up (and `create` takes a new one); a missing original that
/// is not purged is damage, and an error. A snapshot taken after the purge does not
/// list it, and restores to a record whose verification counts it as purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originals_purged_during_a_backup_are_not_damage() {
    let env = TestEnv::sqlite().await;
    fill(&env, 1, 3).await;
    let backup = env.dir.path().join("backup");
    let first = snapshot(&env, &backup).await;
    let snap = backup.join("snapshots").join(&first.snapshot);
    let list = std::fs::read_to_string(snap.join(ORIGINALS_LIST)).unwrap();
    let sha = parse_located_line(
        list.lines().next().unwrap(),
        &mut std::collections::HashMap::new(),
    )
    .unwrap()
    .sha256;
    let summary: Manifest =
        serde_json::from_slice(&std::fs::read(snap.join(MANIFEST)).unwrap()).unwrap();

    // A new snapshot directory in another backup dir, wanting what `snap` lists.
    let attempt = |name: &str| {
        let dir = env.dir.path().join(name);
        let new = dir.join("snapshots").join(snapshot_id(&chrono::Utc::now()));
        std::fs::create_dir_all(&new).unwrap();
        let wanted: String = list
            .lines()
            .map(|l| {
                let mut f = l.split(' ');
                list_line(f.next().unwrap(), f.next().unwrap().parse().unwrap())
            })
            .collect();
        std::fs::write(new.join(WANTED), wanted).unwrap();
        (dir, new)
    };
    // Nothing of an attempt that did not finish stays behind.
    let left_behind = |dir: &Path, new: &Path| {
        let packs: Vec<_> = std::fs::read_dir(dir.join("packs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(packs.is_empty(), "{packs:?}");
        assert!(!new.join(ORIGINALS_LIST).exists());
    };

    let copy = async |fresh: &Path, new: &Path| {
        let (db, originals, wanted) = (&env.db, &env.originals, &summary.originals);
        create::copy_originals(db, originals, fresh, new, wanted, &Silent).await
    };

    // Gone from the store but not marked purged: damage, an error.
    env.originals.delete(&sha).await.unwrap();
    let (fresh, new) = attempt("fresh");
    let err = copy(&fresh, &new).await.err().unwrap().to_string();
    assert!(err.contains("missing"), "{err}");
    left_behind(&fresh, &new);

    // Marked purged with its purge entry (as the sweep does before deleting): the
    // snapshot is given up.
    let (ledger, task) = env.ledger(crate::LedgerConfig::default());
    let purge = ledger
        .append(NewEntry {
            actor: Actor::System,
            action: "submission.purge".into(),
            subject: "test:1".into(),
            payload: Some(Payload {
                content: Bytes::from(format!("{{\"purged\":[\"{sha}\"]}}")).into(),
                media_type: "application/json".into(),
                retain_until: None,
            }),
        })
        .await
        .unwrap();
    ledger.checkpoint_now().await.unwrap();
    task.shutdown().await;
    sqlx::query("UPDATE originals SET purged_at = $1, purge_seq = $2 WHERE sha256 = $3")
        .bind(chrono::Utc::now())
        .bind(purge.seq)
        .bind(sha.as_str())
        .execute(match &env.db {
            Db::Sqlite(pool) => pool,
            Db::Postgres(_) => unreachable!(),
        })
        .await
        .unwrap();
    let (fresh, new) = attempt("fresh2");
    match copy(&fresh, &new).await.unwrap() {
        create::Copy::Purged(p) => assert_eq!(p, sha.as_str()),
        create::Copy::Done(_) => panic!("a purged original cannot be copied"),
    }
    left_behind(&fresh, &new);

    // A snapshot taken now leaves it out (and has the purge record), and restores to
    // a record that verifies.
    let second = snapshot(&env, &backup).await;
    assert_eq!(second.originals, 3);
    let target = Target::new(Backend::Sqlite, env.dir.path()).await;
    let done = restore(&backup, None, &target.restore_target(), &Silent)
        .await
        .unwrap();
    assert_eq!((done.originals, done.originals_verified), (3, 4));
}
