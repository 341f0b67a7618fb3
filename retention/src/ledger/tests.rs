use std::sync::Arc;

use bytes::Bytes;

use super::verify::{Problem, Silent, verify};
use super::*;
use crate::testing::TestEnv;
use crate::{Backend, backend_tests};

fn entry(i: usize) -> NewEntry {
    NewEntry {
        actor: Actor::Operator("test".into()),
        action: "test.append".into(),
        subject: format!("test:{i}"),
        payload: None,
    }
}

async fn check(env: &TestEnv) -> verify::Report {
    verify(
        &env.db,
        &env.originals,
        &env.keys.checkpoint_verifier(),
        &Silent,
    )
    .await
    .unwrap()
}

/// Runs raw SQL that bypasses the append-only triggers (of the entries and of the
/// Merkle tree), as an attacker with database access could.
async fn tamper(env: &TestEnv, sql: &'static str) {
    let drop_triggers: &[&'static str] = match env.db.backend() {
        Backend::Sqlite => &[
            "DROP TRIGGER IF EXISTS log_entries_no_update",
            "DROP TRIGGER IF EXISTS log_entries_no_delete",
            "DROP TRIGGER IF EXISTS log_tree_no_update",
            "DROP TRIGGER IF EXISTS log_tree_no_delete",
        ],
        Backend::Postgres => &[
            "DROP TRIGGER IF EXISTS log_entries_no_update ON log_entries",
            "DROP TRIGGER IF EXISTS log_tree_no_update ON log_tree",
        ],
    };
    for s in drop_triggers.iter().copied().chain([sql]) {
        on_pool!(&env.db, pool => sqlx::query(s).execute(pool).await.map(drop)).unwrap();
    }
}

/// The stored tree is exactly what building it from the chain's entries, one leaf
/// at a time, stores: every hash at its index, nothing more.
async fn assert_tree_covers_chain(env: &TestEnv) {
    let entries = entries_after(&env.db, 0, 1_000_000).await.unwrap();
    let mut built = tree::Frontier::default();
    let mut expected = Vec::new();
    for e in &entries {
        let (start, hashes) = built.push(tree::leaf_hash(&e.entry_hash).unwrap()).unwrap();
        for (i, h) in (start..).zip(hashes) {
            expected.push((i64::try_from(i).unwrap(), h.0.to_vec()));
        }
    }
    let stored: Vec<(i64, Vec<u8>)> = on_pool!(&env.db, pool =>
        sqlx::query_as("SELECT idx, hash FROM log_tree ORDER BY idx").fetch_all(pool).await)
    .unwrap();
    assert_eq!(stored.len(), expected.len(), "{} entries", entries.len());
    assert!(
        stored == expected,
        "the stored tree differs from the chain's"
    );
}

/// Appends `n` entries through an appender of its own, then stops it.
async fn append_some(env: &TestEnv, n: usize) {
    append_checkpointed(env, LedgerConfig::default().checkpoint_every_entries, n).await;
}

/// [`append_some`] with a checkpoint every `every` entries.
async fn append_checkpointed(env: &TestEnv, every: u64, n: usize) {
    let (ledger, task) = env.ledger(LedgerConfig {
        checkpoint_every_entries: every,
        ..Default::default()
    });
    for i in 0..n {
        ledger.append(entry(i)).await.unwrap();
    }
    task.shutdown().await;
}

backend_tests!(
    tiles_serve_the_tree_as_c2sp_tlog_tiles,
    checkpoints_sign_the_trees_head_as_a_c2sp_note,
    a_rewritten_tree_head_is_named_even_when_re_signed,
    a_log_keeps_its_origin,
    inclusion_and_consistency_proofs_hold_for_every_size,
    a_tree_behind_its_chain_is_caught_up_by_the_next_append,
    altered_or_missing_tree_hashes_are_named,
    appends_form_a_verified_chain,
    concurrent_appends_never_fork_or_gap,
    failed_work_rolls_back_only_its_own_entry,
    checkpoints_every_n_entries_and_on_demand,
    altered_entry_is_named,
    removed_tail_is_caught_by_checkpoint,
    corrupt_original_is_named,
    forged_checkpoint_is_named,
    database_refuses_updates_to_the_log,
    shutdown_writes_queued_appends,
    verify_beside_live_appends_sees_no_false_problems,
    grouped_entries_are_consecutive_all_or_nothing,
    described_rows_are_written_per_run_and_fail_alone,
    a_batch_of_one_run_fails_alone_without_a_savepoint,
);

async fn appends_form_a_verified_chain(env: TestEnv) {
    let (ledger, task) = env.ledger(LedgerConfig::default());
    let mut last = None;
    for i in 0..5 {
        let mut e = entry(i);
        if i == 2 {
            e.payload = Some(Payload {
                content: Bytes::from_static(b"<x>payload</x>").into(),
                media_type: "application/xml".into(),
                retain_until: None,
            });
        }
        let a = ledger.append(e).await.unwrap();
        assert_eq!(a.seq, i as i64 + 1);
        last = Some(a);
    }
    task.shutdown().await;
    let entries = entries_after(&env.db, 0, 100).await.unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0].prev_hash, GENESIS_HASH);
    for w in entries.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].entry_hash);
    }
    assert_eq!(entries[4].entry_hash, last.unwrap().entry_hash);
    let payload = entries[2].payload_sha256.clone().unwrap();
    assert_eq!(payload, Sha256Hex::of(b"<x>payload</x>").as_str());
    let got = env
        .originals
        .get(&Sha256Hex::parse(&payload).unwrap())
        .await
        .unwrap();
    assert_eq!(&got[..], b"<x>payload</x>");
    let report = check(&env).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.entries, report.originals), (5, 1));
}

async fn concurrent_appends_never_fork_or_gap(env: TestEnv) {
    let (ledger, task) = env.ledger(LedgerConfig {
        checkpoint_every_entries: 100,
        ..Default::default()
    });
    let mut handles = Vec::new();
    for w in 0..64 {
        let ledger = ledger.clone();
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..20 {
                seqs.push(ledger.append(entry(w * 100 + i)).await.unwrap().seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    task.shutdown().await;
    all.sort();
    assert_eq!(
        all,
        (1..=1280).collect::<Vec<i64>>(),
        "every append acknowledged once"
    );
    assert_eq!(size(&env.db).await.unwrap(), (1280, 1280));
    let report = check(&env).await;
    assert!(report.ok(), "{:?}", report.problems);
    // A checkpoint follows the batch that crossed 100 pending entries; batches hold at
    // most one append per writer, so checkpoints are at most 100 + 64 entries apart.
    assert!(
        report.checkpoints >= 1280 / (100 + 64),
        "{}",
        report.checkpoints
    );
    assert_tree_covers_chain(&env).await;
}

async fn failed_work_rolls_back_only_its_own_entry(env: TestEnv) {
    let (ledger, task) = env.ledger(LedgerConfig::default());
    let work = |fail: bool| -> Work {
        crate::work!(|conn, _at| {
            on_conn!(&mut conn, c => {
                sqlx::query(
                    "INSERT INTO employers (id, name, registration_number, created_at) \
                     VALUES ($1, 'E', $2, '2026-01-01T00:00:00Z')",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(if fail { "dup" } else { "unique-ok" })
                .execute(&mut *c)
                .await?;
            });
            Ok(())
        })
    };
    ledger.append_with(entry(0), work(true)).await.unwrap();
    // Submitted together so they share a batch; the middle one collides.
    let (a, b, c) = tokio::join!(
        ledger.append(entry(1)),
        ledger.append_with(entry(2), work(true)),
        ledger.append_with(entry(3), work(false)),
    );
    task.shutdown().await;
    let (a, c) = (a.unwrap(), c.unwrap());
    let err = b.unwrap_err();
    assert!(err.is_unique_violation(), "{err}");
    assert_eq!((a.seq, c.seq), (2, 3));
    let subjects: Vec<String> = entries_after(&env.db, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.subject)
        .collect();
    assert_eq!(subjects, ["test:0", "test:1", "test:3"]);
    let employers: i64 = on_pool!(&env.db, pool =>
        sqlx::query_scalar("SELECT COUNT(*) FROM employers").fetch_one(pool).await)
    .unwrap();
    assert_eq!(employers, 2);
    assert!(check(&env).await.ok());
    assert_tree_covers_chain(&env).await;
}

async fn checkpoints_every_n_entries_and_on_demand(env: TestEnv) {
    let (ledger, task) = env.ledger(LedgerConfig {
        checkpoint_every_entries: 5,
        ..Default::default()
    });
    for i in 0..12 {
        ledger.append(entry(i)).await.unwrap();
    }
    let cp = ledger.checkpoint_now().await.unwrap().unwrap();
    assert_eq!(cp.tree_size, 12);
    assert!(
        ledger.checkpoint_now().await.unwrap().is_none(),
        "nothing new to checkpoint"
    );
    task.shutdown().await;
    let sizes: Vec<i64> = checkpoints_after(&env.db, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|c| c.tree_size)
        .collect();
    assert_eq!(sizes, [5, 10, 12]);
    let latest = latest_checkpoint(&env.db).await.unwrap().unwrap();
    assert_eq!(latest, cp);
    let report = check(&env).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.checkpoints, 3);
}

async fn altered_entry_is_named(env: TestEnv) {
    append_some(&env, 6).await;
    tamper(
        &env,
        "UPDATE log_entries SET actor = 'operator:mallory' WHERE seq = 4",
    )
    .await;
    let report = check(&env).await;
    assert_eq!(
        report.problems.first(),
        Some(&Problem::Entry {
            seq: 4,
            reason: "content does not match its entry_hash (the entry was altered)".into()
        })
    );
}

async fn removed_tail_is_caught_by_checkpoint(env: TestEnv) {
    append_checkpointed(&env, 4, 8).await;
    tamper(&env, "DELETE FROM log_entries WHERE seq > 6").await;
    let report = check(&env).await;
    assert!(
        matches!(
            report.problems.first(),
            Some(Problem::Checkpoint { tree_size: 8, .. })
        ),
        "{:?}",
        report.problems
    );
}

async fn corrupt_original_is_named(env: TestEnv) {
    let (ledger, task) = env.ledger(LedgerConfig::default());
    let mut e = entry(0);
    e.payload = Some(Payload {
        content: (Bytes::from_static(b"the original")).into(),
        media_type: "text/plain".into(),
        retain_until: None,
    });
    let a = ledger.append(e).await.unwrap();
    task.shutdown().await;
    let h = a.payload_sha256.unwrap();
    let path = env.dir.path().join(format!(
        "originals/sha256/{}/{}/{}",
        &h.as_str()[0..2],
        &h.as_str()[2..4],
        h
    ));
    std::fs::write(path, b"the forgery!").unwrap();
    let report = check(&env).await;
    assert!(
        matches!(report.problems.first(), Some(Problem::Original { sha256, .. }) if sha256 == h.as_str()),
        "{:?}",
        report.problems
    );
}

async fn forged_checkpoint_is_named(env: TestEnv) {
    append_checkpointed(&env, 2, 4).await;
    // Put another checkpoint's (valid) signature on this one.
    on_pool!(&env.db, pool => sqlx::query(
        "UPDATE log_checkpoints SET signature = \
         (SELECT signature FROM log_checkpoints WHERE tree_size = 4) WHERE tree_size = 2")
        .execute(pool).await.map(drop))
    .unwrap();
    let report = check(&env).await;
    assert_eq!(
        report.problems,
        [Problem::Checkpoint {
            tree_size: 2,
            reason: "signature does not verify".into()
        }]
    );
}

async fn database_refuses_updates_to_the_log(env: TestEnv) {
    let (ledger, task) = env.ledger(LedgerConfig::default());
    ledger.append(entry(0)).await.unwrap();
    task.shutdown().await;
    for sql in [
        "UPDATE log_entries SET actor = 'x'",
        "DELETE FROM log_entries",
    ] {
        let err =
            on_pool!(&env.db, pool => sqlx::query(sql).execute(pool).await.map(drop)).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
}

async fn shutdown_writes_queued_appends(env: TestEnv) {
    let (ledger, task) = env.ledger(LedgerConfig::default());
    let ledger = Arc::new(ledger);
    let pending: Vec<_> = (0..50)
        .map(|i| {
            let l = ledger.clone();
            tokio::spawn(async move { l.append(entry(i)).await })
        })
        .collect();
    tokio::task::yield_now().await;
    task.shutdown().await;
    let mut ok = 0;
    for p in pending {
        match p.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert!(matches!(e, Error::LedgerStopped), "{e}"),
        }
    }
    // Whatever was acknowledged is in the log, and nothing else.
    assert_eq!(size(&env.db).await.unwrap().0, ok);
    assert!(check(&env).await.ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_migrations_create_the_same_tables_and_columns() {
    let sqlite = TestEnv::sqlite().await;
    let pg = TestEnv::postgres().await;
    let a = sqlite.db.table_columns().await.unwrap();
    let b = pg.db.table_columns().await.unwrap();
    assert!(a.len() > 20, "{a:?}");
    assert_eq!(a, b);
}

async fn verify_beside_live_appends_sees_no_false_problems(env: TestEnv) {
    let (ledger, task) = env.ledger(LedgerConfig {
        checkpoint_every_entries: 7,
        ..Default::default()
    });
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let l = ledger.clone();
            tokio::spawn(async move {
                for i in 0..150 {
                    l.append(entry(w * 1000 + i)).await.unwrap();
                }
            })
        })
        .collect();
    let mut runs = 0;
    while !writers.iter().all(|w| w.is_finished()) {
        let report = check(&env).await;
        assert!(report.ok(), "while appending: {:?}", report.problems);
        runs += 1;
    }
    for w in writers {
        w.await.unwrap();
    }
    task.shutdown().await;
    assert!(runs > 0);
    let report = check(&env).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 1200);
}

async fn grouped_entries_are_consecutive_all_or_nothing(env: TestEnv) {
    let (ledger, task) = env.ledger(LedgerConfig::default());
    // Work that records the positions it was told, and fails on a duplicate name.
    let work = |name: &'static str| -> Work {
        crate::work!(|conn, at| {
            let seqs: Vec<String> = at.iter().map(|a| a.seq.to_string()).collect();
            on_conn!(&mut conn, c => {
                sqlx::query(
                    "INSERT INTO employers (id, name, registration_number, created_at) \
                     VALUES ($1, $2, $3, '2026-01-01T00:00:00Z')",
                )
                .bind(seqs.join(","))
                .bind(name)
                .bind(name)
                .execute(&mut *c)
                .await?;
            });
            Ok(())
        })
    };
    let group = |tag: usize| (0..3).map(|i| entry(tag * 10 + i)).collect::<Vec<_>>();
    let mut calls = Vec::new();
    for g in 0..6 {
        let l = ledger.clone();
        let name = ["g0", "g1", "g2", "dup", "dup", "g5"][g];
        calls.push(tokio::spawn(async move {
            tokio::join!(
                l.append(entry(100 + g)),
                l.append_all(group(g), Some(work(name))),
            )
        }));
    }
    let mut failed = 0;
    for call in calls {
        let (single, grouped) = call.await.unwrap();
        single.unwrap();
        match grouped {
            Ok(at) => {
                let seqs: Vec<i64> = at.iter().map(|a| a.seq).collect();
                assert_eq!(seqs, [seqs[0], seqs[0] + 1, seqs[0] + 2], "consecutive");
            }
            Err(e) => {
                assert!(e.is_unique_violation(), "{e}");
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 1, "one of the two 'dup' groups fails");
    assert!(ledger.append_all(Vec::new(), None).await.is_err());
    task.shutdown().await;
    let report = check(&env).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 6 + 5 * 3, "the failed group left no entry");
    // The work saw exactly the positions its entries were written at.
    let rows: Vec<(String, String)> = on_pool!(&env.db, pool =>
        sqlx::query_as("SELECT id, name FROM employers").fetch_all(pool).await)
    .unwrap();
    assert_eq!(rows.len(), 5);
    let entries = entries_after(&env.db, 0, 100).await.unwrap();
    for (seqs, _) in rows {
        let seqs: Vec<i64> = seqs.split(',').map(|s| s.parse().unwrap()).collect();
        let subjects: Vec<&str> = seqs
            .iter()
            .map(|s| entries[(*s - 1) as usize].subject.as_str())
            .collect();
        let tag = subjects[0]
            .trim_start_matches("test:")
            .parse::<usize>()
            .unwrap()
            / 10;
        assert_eq!(
            subjects,
            [0, 1, 2].map(|i| format!("test:{}", tag * 10 + i)),
            "{seqs:?}"
        );
    }
}

/// Employers named by the item, one multi-row insert per call; counts its calls
/// and the items of each.
struct Employers(std::sync::Mutex<Vec<usize>>);

impl RowWriter for Employers {
    fn name(&self) -> &'static str {
        "test-employers"
    }

    fn write<'c>(
        &'c self,
        mut conn: DbConn<'c>,
        items: &'c [Described<'c>],
    ) -> BoxFuture<'c, Result<()>> {
        Box::pin(async move {
            self.0.lock().unwrap().push(items.len());
            let rows: Vec<(String, &str)> = items
                .iter()
                .map(|d| {
                    let seqs: Vec<String> = d.at.iter().map(|a| a.seq.to_string()).collect();
                    (seqs.join(","), *d.item.downcast_ref::<&str>().unwrap())
                })
                .collect();
            on_conn!(&mut conn, c => {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO employers (id, name, registration_number, created_at) ",
                );
                insert.push_values(&rows, |mut row, (seqs, name)| {
                    row.push_bind(seqs)
                        .push_bind(*name)
                        .push_bind(*name)
                        .push("'2026-01-01T00:00:00Z'");
                });
                insert.build().execute(&mut *c).await?;
            });
            Ok(())
        })
    }
}

/// Starts an append whose work holds the appender for 300 ms, so the appends made
/// next queue up behind it and are written as one batch.
async fn hold_appender(ledger: &Ledger) -> tokio::task::JoinHandle<Result<Appended>> {
    let slow = crate::work!(|_conn, _at| {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    });
    let l = ledger.clone();
    let first = tokio::spawn(async move { l.append_with(entry(98), slow).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    first
}

async fn described_rows_are_written_per_run_and_fail_alone(env: TestEnv) {
    let (ledger, task) = env.ledger(LedgerConfig::default());
    let writer: &'static Employers = Box::leak(Box::new(Employers(Default::default())));
    let first = hold_appender(&ledger).await;
    let append = |l: &Ledger, tag: usize, name: &'static str| {
        let l = l.clone();
        async move {
            let group = (0..2).map(|i| entry(tag * 10 + i)).collect();
            l.append_rows(group, writer, Arc::new(name)).await
        }
    };
    // One batch, with a closure append in the middle (two runs), and one duplicate
    // name in the second run.
    let names = ["a", "b", "c", "d", "c", "e"];
    let mut calls = Vec::new();
    for (tag, name) in names.iter().enumerate() {
        calls.push(tokio::spawn(append(&ledger, tag, name)));
        if tag == 2 {
            let l = ledger.clone();
            calls.push(tokio::spawn(async move {
                l.append_all(vec![entry(99)], None).await
            }));
        }
    }
    let mut failed = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(at) => {
                let seqs: Vec<i64> = at.iter().map(|a| a.seq).collect();
                assert_eq!(
                    seqs.len() as i64,
                    seqs.last().unwrap() - seqs[0] + 1,
                    "consecutive"
                );
            }
            Err(e) => {
                assert!(e.is_unique_violation(), "{e}");
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 1, "only the second 'c' fails");
    first.await.unwrap().unwrap();
    task.shutdown().await;
    let report = check(&env).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 2 + 5 * 2, "the failed append left no entry");
    // Each row names exactly the positions of its own entries.
    let rows: Vec<(String, String)> = on_pool!(&env.db, pool =>
        sqlx::query_as("SELECT id, name FROM employers ORDER BY name").fetch_all(pool).await)
    .unwrap();
    let written: Vec<&str> = rows.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(written, ["a", "b", "c", "d", "e"]);
    let entries = entries_after(&env.db, 0, 100).await.unwrap();
    for (seqs, name) in &rows {
        let seqs: Vec<usize> = seqs.split(',').map(|s| s.parse().unwrap()).collect();
        let subject = |s: usize| {
            entries[s - 1]
                .subject
                .trim_start_matches("test:")
                .to_owned()
        };
        let tag: usize = subject(seqs[0]).parse::<usize>().unwrap() / 10;
        assert_eq!(names[tag], name, "{seqs:?}");
        for (i, s) in seqs.iter().enumerate() {
            assert_eq!(subject(*s), (tag * 10 + i).to_string(), "{name}");
        }
    }
    // Calls of the writer: several items at once (the runs), then one at a time
    // after the run with the duplicate failed.
    let calls = writer.0.lock().unwrap().clone();
    assert!(calls.iter().any(|n| *n > 1), "{calls:?}");
    assert!(calls.contains(&1), "{calls:?}");
    assert_tree_covers_chain(&env).await;
}

/// A batch of row appends only is written without a savepoint; when one of them
/// fails, the batch is written again one at a time and only that one fails.
async fn a_batch_of_one_run_fails_alone_without_a_savepoint(env: TestEnv) {
    let (ledger, task) = env.ledger(LedgerConfig::default());
    let writer: &'static Employers = Box::leak(Box::new(Employers(Default::default())));
    let first = hold_appender(&ledger).await;
    let names = ["a", "b", "a", "c"];
    let mut calls = Vec::new();
    for (tag, name) in names.into_iter().enumerate() {
        let l = ledger.clone();
        calls.push(tokio::spawn(async move {
            let group = (0..2).map(|i| entry(tag * 10 + i)).collect();
            l.append_rows(group, writer, Arc::new(name)).await
        }));
    }
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap().map(|at| at.len()));
    }
    first.await.unwrap().unwrap();
    task.shutdown().await;
    // Whichever 'a' came second fails, alone.
    let failed: Vec<usize> = (0..names.len())
        .filter(|&i| match &outcomes[i] {
            Ok(n) => {
                assert_eq!(*n, 2, "{outcomes:?}");
                false
            }
            Err(e) => {
                assert!(e.is_unique_violation(), "{e}");
                true
            }
        })
        .collect();
    assert!(failed == [0] || failed == [2], "{outcomes:?}");
    // The batch (or the part of it holding both 'a's) was tried whole and failed,
    // then written one append at a time.
    let calls = writer.0.lock().unwrap().clone();
    assert!(calls.iter().any(|n| *n > 1), "{calls:?}");
    assert!(calls.ends_with(&[1, 1]), "{calls:?}");
    let report = check(&env).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 1 + 3 * 2, "the failed append left no entry");
    let rows: Vec<(String,)> = on_pool!(&env.db, pool =>
        sqlx::query_as("SELECT name FROM employers ORDER BY name").fetch_all(pool).await)
    .unwrap();
    let written: Vec<&str> = rows.iter().map(|(n,)| n.as_str()).collect();
    assert_eq!(written, ["a", "b", "c"]);
    assert_tree_covers_chain(&env).await;
}

/// A log whose entries were written before the tree existed (here: its tree rows
/// removed, as the migration that adds the table finds an existing log), and a
/// second appender beside the first (another process): each append finds the tree
/// where the chain is and extends it from there.
async fn a_tree_behind_its_chain_is_caught_up_by_the_next_append(env: TestEnv) {
    append_some(&env, 37).await;
    assert_tree_covers_chain(&env).await;
    tamper(&env, "DELETE FROM log_tree").await;

    let (first, first_task) = env.ledger(LedgerConfig::default());
    let (second, second_task) = env.ledger(LedgerConfig::default());
    first.append(entry(100)).await.unwrap();
    assert_tree_covers_chain(&env).await;
    for i in 0..10 {
        let ledger = if i % 3 == 0 { &second } else { &first };
        ledger.append(entry(200 + i)).await.unwrap();
    }
    first_task.shutdown().await;
    second_task.shutdown().await;
    assert_eq!(size(&env.db).await.unwrap(), (48, 48));
    assert_tree_covers_chain(&env).await;
}

/// `log verify` rebuilds the tree from the verified chain and names the entry whose
/// stored tree hash was altered or removed; a tree that merely ends early (not yet
/// caught up) is not a fault.
async fn altered_or_missing_tree_hashes_are_named(env: TestEnv) {
    append_some(&env, 12).await;
    assert!(check(&env).await.ok());
    // Entry 6 is leaf 5: its leaf hash is stored at index stored_hash_index(0, 5) = 8.
    assert_eq!(tlog_tiles::stored_hash_index(0, 5), 8);
    tamper(
        &env,
        "UPDATE log_tree SET hash = (SELECT hash FROM log_tree WHERE idx = 0) WHERE idx = 8",
    )
    .await;
    let report = check(&env).await;
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    match &report.problems[0] {
        Problem::Entry { seq: 6, reason } => assert!(reason.contains("Merkle tree"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A hash removed from the middle is missing; the tail removed is only behind.
    tamper(&env, "DELETE FROM log_tree WHERE idx = 8").await;
    let report = check(&env).await;
    match &report.problems[..] {
        [Problem::Entry { seq: 6, reason }] => assert!(reason.contains("missing"), "{reason}"),
        other => panic!("{other:?}"),
    }
    tamper(&env, "DELETE FROM log_tree WHERE idx >= 8").await;
    let report = check(&env).await;
    assert!(report.ok(), "{:?}", report.problems);
    // The next append catches the tree up.
    let (ledger, task) = env.ledger(LedgerConfig::default());
    ledger.append(entry(99)).await.unwrap();
    task.shutdown().await;
    assert_tree_covers_chain(&env).await;
    assert!(check(&env).await.ok());
}

/// RFC 9162 §2.1.3.2, written from the RFC: independent of `tlog_tiles`.
fn rfc_verify_inclusion(
    leaf_index: u64,
    tree_size: u64,
    leaf: [u8; 32],
    proof: &[tlog_tiles::Hash],
    root: [u8; 32],
) -> bool {
    use sha2::{Digest, Sha256};
    let node = |l: &[u8], r: &[u8]| -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([1u8]);
        h.update(l);
        h.update(r);
        h.finalize().into()
    };
    if leaf_index >= tree_size {
        return false;
    }
    let (mut f, mut s, mut r) = (leaf_index, tree_size - 1, leaf);
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node(&p.0, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node(&r, &p.0);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == root
}

/// Proofs served from the stored tree: every leaf's inclusion in trees of several
/// sizes checks with an RFC 9162 verifier written here, every pair of sizes is
/// consistent, and a wrong leaf or a size the tree has not reached is refused.
async fn inclusion_and_consistency_proofs_hold_for_every_size(env: TestEnv) {
    append_some(&env, 23).await;
    let entries = entries_after(&env.db, 0, 100).await.unwrap();
    let leaves: Vec<tlog_tiles::Hash> = entries
        .iter()
        .map(|e| tree::leaf_hash(&e.entry_hash).unwrap())
        .collect();
    let mut roots = vec![tlog_tiles::EMPTY_HASH];
    for size in 1..=23u64 {
        let mut built = tree::Frontier::default();
        for l in &leaves[..size as usize] {
            built.push(*l).unwrap();
        }
        for leaf in 0..size {
            let p = tree::inclusion(&env.db, leaf, size).await.unwrap();
            assert_eq!(p.root, built.root().unwrap(), "size {size}");
            assert!(
                rfc_verify_inclusion(leaf, size, leaves[leaf as usize].0, &p.proof, p.root.0),
                "leaf {leaf} of {size}"
            );
            let other = leaves[((leaf + 1) % 23) as usize];
            assert!(!rfc_verify_inclusion(
                leaf, size, other.0, &p.proof, p.root.0
            ));
        }
        roots.push(built.root().unwrap());
    }
    for second in 1..=23u64 {
        for first in 1..=second {
            let p = tree::consistency(&env.db, first, second).await.unwrap();
            assert_eq!(p.root, roots[second as usize]);
            tlog_tiles::check_tree(&p.proof, second, p.root, first, roots[first as usize])
                .unwrap_or_else(|e| panic!("{first} → {second}: {e}"));
            if first > 1 && first < second {
                let wrong = roots[first as usize - 1];
                assert!(tlog_tiles::check_tree(&p.proof, second, p.root, first, wrong).is_err());
            }
        }
    }
    for (leaf, size) in [
        (23, 23),
        (0, 24),
        (5, 100),
        (0, u64::MAX),
        (1 << 62, 1 << 63),
    ] {
        let e = tree::inclusion(&env.db, leaf, size).await.unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
    }
    for (first, second) in [(5, 4), (0, 4), (3, 24), (1, u64::MAX)] {
        let e = tree::consistency(&env.db, first, second).await.unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
    }
}

/// Every checkpoint also signs the Merkle tree's head as a C2SP tlog-checkpoint
/// (origin, size, the RFC 9162 root of the entries it covers) with the checkpoint
/// key under the origin; checkpoints from before the tree (no note) still verify.
async fn checkpoints_sign_the_trees_head_as_a_c2sp_note(env: TestEnv) {
    let config = LedgerConfig {
        checkpoint_every_entries: 3,
        origin: Some("ivan.example.com/log".into()),
        ..Default::default()
    };
    let (ledger, task) = env.ledger(config.clone());
    for i in 0..7 {
        ledger.append(entry(i)).await.unwrap();
    }
    ledger.checkpoint_now().await.unwrap();
    task.shutdown().await;
    let entries = entries_after(&env.db, 0, 100).await.unwrap();
    let raw: Vec<[u8; 32]> = entries
        .iter()
        .map(|e| hex::decode(&e.entry_hash).unwrap().try_into().unwrap())
        .collect();
    let cps = checkpoints_after(&env.db, 0, 10).await.unwrap();
    assert_eq!(
        cps.iter().map(|c| c.tree_size).collect::<Vec<_>>(),
        [3, 6, 7]
    );
    let verifier = env.keys.checkpoint_verifier();
    for cp in &cps {
        let note = cp.signed_note.as_deref().unwrap();
        let size = cp.tree_size as usize;
        let root = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            crate::testing::mth(&raw[..size]),
        );
        let text = format!("ivan.example.com/log\n{size}\n{root}\n");
        let (body, sig) = note.split_once("\n\n").unwrap();
        assert_eq!(format!("{body}\n"), text);
        assert!(sig.starts_with("\u{2014} ivan.example.com/log "), "{sig}");
        let head = cp.tree_head(&verifier).unwrap().unwrap();
        assert_eq!(
            (head.origin(), head.size()),
            ("ivan.example.com/log", size as u64)
        );
        // The published verifier key checks it with nothing but the note format.
        let vkey = env.keys.checkpoint_vkey("ivan.example.com/log");
        let v = signed_note::StandardVerifier::new(&vkey).unwrap();
        let list = signed_note::VerifierList::new(vec![Box::new(v)]);
        signed_note::Note::from_bytes(note.as_bytes())
            .unwrap()
            .verify(&list)
            .unwrap();
    }
    assert!(check(&env).await.ok());
    check_origin(&env.db, "ivan.example.com/log").await.unwrap();
    // Checkpoints signed before the tree existed carry no note and still verify.
    on_pool!(&env.db, pool => sqlx::query(
        "UPDATE log_checkpoints SET signed_note = NULL WHERE tree_size = 3")
        .execute(pool).await.map(drop))
    .unwrap();
    let report = check(&env).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.checkpoints, 3);
}

/// Whoever holds the database and the checkpoint key can re-sign a tree head, but
/// not one that matches entries it did not keep: a note with another root, or a
/// note signed under another origin or by nobody we know, is named.
async fn a_rewritten_tree_head_is_named_even_when_re_signed(env: TestEnv) {
    append_checkpointed(&env, 4, 8).await;
    let origin = LedgerConfig::default().origin(&env.keys);
    let forge = |note: String| async {
        on_pool!(&env.db, pool => sqlx::query(
            "UPDATE log_checkpoints SET signed_note = $1 WHERE tree_size = 4")
            .bind(note)
            .execute(pool).await.map(drop))
        .unwrap();
        let report = check(&env).await;
        match &report.problems[..] {
            [
                Problem::Checkpoint {
                    tree_size: 4,
                    reason,
                },
            ] => reason.clone(),
            other => panic!("{other:?}"),
        }
    };
    // The root of 4 other leaves, signed with the real key under the real origin.
    let other_root = tree::Hash(crate::testing::mth(&[[7u8; 32]; 4]));
    let text = tree::checkpoint_text(&origin, 4, &other_root).unwrap();
    let reason = forge(env.keys.sign_note(&origin, &text).unwrap()).await;
    assert!(reason.contains("is not the root"), "{reason}");
    // The right size of another tree: the size must match too.
    let cp8 = checkpoints_after(&env.db, 7, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let reason = forge(cp8.signed_note.unwrap()).await;
    assert!(reason.contains("tree of 8 entries, not 4"), "{reason}");
    // The right head under another origin: the log has one name.
    let root = tree::inclusion(&env.db, 0, 4).await.unwrap().root;
    let text = tree::checkpoint_text("elsewhere.example/log", 4, &root).unwrap();
    let reason = forge(env.keys.sign_note("elsewhere.example/log", &text).unwrap()).await;
    assert!(reason.contains("names the log"), "{reason}");
    // Signed by a key we do not know, under our origin.
    let other = crate::testing::TestEnv::sqlite().await;
    let text = tree::checkpoint_text(&origin, 4, &root).unwrap();
    let reason = forge(other.keys.sign_note(&origin, &text).unwrap()).await;
    assert!(reason.contains("no signature by key"), "{reason}");
    // The genuine head, signed again, is accepted again.
    on_pool!(&env.db, pool => sqlx::query(
        "UPDATE log_checkpoints SET signed_note = $1 WHERE tree_size = 4")
        .bind(env.keys.sign_note(&origin, &text).unwrap())
        .execute(pool).await.map(drop))
    .unwrap();
    let report = check(&env).await;
    assert!(report.ok(), "{:?}", report.problems);
}

/// The origin is the log's identity: the appender signs under the configured one,
/// and a server configured with another is refused while the log carries the first.
async fn a_log_keeps_its_origin(env: TestEnv) {
    assert!(
        LedgerConfig::default()
            .origin(&env.keys)
            .starts_with("ivan.invalid/log/")
    );
    check_origin(&env.db, "anything.example/log").await.unwrap();
    let (ledger, task) = env.ledger(LedgerConfig {
        origin: Some("first.example/log".into()),
        ..Default::default()
    });
    ledger.append(entry(0)).await.unwrap();
    ledger.checkpoint_now().await.unwrap().unwrap();
    task.shutdown().await;
    check_origin(&env.db, "first.example/log").await.unwrap();
    let e = check_origin(&env.db, "second.example/log")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("origin = \"first.example/log\""),
        "{e}"
    );
    for bad in ["", "two words", "a+b", "line\nbreak"] {
        let config = LedgerConfig {
            origin: Some(bad.into()),
            ..Default::default()
        };
        assert!(config.check_origin().is_err(), "{bad:?}");
    }
    assert!(LedgerConfig::default().check_origin().is_ok());
}

/// Appends `n` entries from 16 concurrent writers (batched: quicker than one by one).
async fn append_many(env: &TestEnv, n: usize) {
    let (ledger, task) = env.ledger(LedgerConfig::default());
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let l = ledger.clone();
            tokio::spawn(async move {
                for i in (w..n).step_by(16) {
                    l.append(entry(i)).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    task.shutdown().await;
}

/// The tiles of a tree of 600 entries, as C2SP tlog-tiles defines them: level-0
/// tiles of leaf hashes, a level-1 tile of the roots of full level-0 tiles, entry
/// bundles of the entry hashes; tiles the tree does not hold yet are absent; and
/// tlog_tiles' tile reader, which authenticates every tile against the root,
/// computes proofs from them alone.
async fn tiles_serve_the_tree_as_c2sp_tlog_tiles(env: TestEnv) {
    use tree::{TileRef, tile};
    append_many(&env, 600).await;
    let entries = entries_after(&env.db, 0, 1000).await.unwrap();
    let raw: Vec<[u8; 32]> = entries
        .iter()
        .map(|e| hex::decode(&e.entry_hash).unwrap().try_into().unwrap())
        .collect();
    let leaves: Vec<tree::Hash> = entries
        .iter()
        .map(|e| tree::leaf_hash(&e.entry_hash).unwrap())
        .collect();
    let parse = |p: &str| TileRef::parse(p).unwrap_or_else(|| panic!("{p}"));
    let get = |p: &'static str| {
        let db = env.db.clone();
        async move { tile(&db, parse(p)).await.unwrap() }
    };
    let concat = |hs: &[tree::Hash]| hs.iter().flat_map(|h| h.0).collect::<Vec<u8>>();

    assert_eq!(get("0/000").await.unwrap(), concat(&leaves[..256]));
    assert_eq!(get("0/001").await.unwrap(), concat(&leaves[256..512]));
    assert_eq!(get("0/002.p/88").await.unwrap(), concat(&leaves[512..600]));
    assert_eq!(get("0/002.p/5").await.unwrap(), concat(&leaves[512..517]));
    let level1 = [
        crate::testing::mth(&raw[..256]),
        crate::testing::mth(&raw[256..512]),
    ];
    assert_eq!(get("1/000.p/2").await.unwrap(), level1.concat());
    let bundle = get("entries/002.p/88").await.unwrap();
    assert_eq!(bundle.len(), 88 * 34);
    for (chunk, e) in bundle.chunks(34).zip(&raw[512..]) {
        assert_eq!(&chunk[..2], &[0, 32]);
        assert_eq!(&chunk[2..], e);
    }
    assert_eq!(get("entries/000").await.unwrap().len(), 256 * 34);
    // Not held yet: the full tile 2, a partial wider than the tree, level 1 full.
    for p in [
        "0/002",
        "0/002.p/89",
        "0/003.p/1",
        "1/000",
        "2/000.p/1",
        "entries/002.p/89",
    ] {
        assert_eq!(get(p).await, None, "{p}");
    }
    // Paths as C2SP writes them, and nothing else.
    assert_eq!(
        TileRef::parse("3/x001/x234/067.p/8"),
        Some(TileRef {
            level: Some(3),
            index: 1_234_067,
            width: 8
        })
    );
    assert_eq!(
        TileRef::parse("entries/x001/000"),
        Some(TileRef {
            level: None,
            index: 1000,
            width: 256
        })
    );
    for bad in [
        "",
        "0",
        "00/000",
        "01/000",
        "64/000",
        "0/0",
        "0/0000",
        "0/x000",
        "0/001/000",
        "0/x1/000",
        "0/000.p/0",
        "0/000.p/256",
        "0/000.p/012",
        "0/000.p",
        "0/000/.p/1",
        "x/000",
        "entries",
        "0/x999/x999/x999/x999/x999/x999/x999/000",
    ] {
        assert_eq!(TileRef::parse(bad), None, "{bad:?}");
    }

    // An independent client: tlog_tiles' reader authenticates the tiles against the
    // root and computes proofs from them alone.
    struct Served(std::collections::HashMap<(u8, u64, u32), Vec<u8>>);
    impl tlog_tiles::TileReader for Served {
        fn height(&self) -> u8 {
            8
        }
        fn read_tiles(
            &self,
            tiles: &[tlog_tiles::Tile],
        ) -> std::result::Result<Vec<Vec<u8>>, tlog_tiles::Error> {
            tiles
                .iter()
                .map(|t| {
                    self.0
                        .get(&(t.level(), t.level_index(), t.width()))
                        .cloned()
                        .ok_or(tlog_tiles::Error::IndexesNotInTree)
                })
                .collect()
        }
        fn save_tiles(&self, _: &[tlog_tiles::Tile], _: &[Vec<u8>]) {}
    }
    let mut served = std::collections::HashMap::new();
    for (l, n, w) in [(0u8, 0u64, 256u32), (0, 1, 256), (0, 2, 88), (1, 0, 2)] {
        let t = TileRef {
            level: Some(l),
            index: n,
            width: w,
        };
        served.insert((l, n, w), tile(&env.db, t).await.unwrap().unwrap());
    }
    let served = Served(served);
    let root = tree::Hash(crate::testing::mth(&raw));
    let reader = tlog_tiles::TileHashReader::new(600, root, &served);
    assert_eq!(tlog_tiles::tree_hash(600, &reader).unwrap(), root);
    for leaf in [0u64, 255, 256, 511, 599] {
        let proof = tlog_tiles::prove_record(600, leaf, &reader).unwrap();
        tlog_tiles::check_record(&proof, 600, root, leaf, leaves[leaf as usize]).unwrap();
    }
    // Tiles that do not add up to the root are refused by the reader.
    let wrong = tlog_tiles::TileHashReader::new(600, leaves[0], &served);
    assert!(tlog_tiles::tree_hash(600, &wrong).is_err());
}
