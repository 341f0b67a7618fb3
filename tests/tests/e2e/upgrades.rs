//! Rolling upgrades on one PostgreSQL (docs/OPERATIONS.md, "Upgrading"): the nodes of
//! one release keep filing while a newer release migrates the schema, and may restart
//! on it, as long as its migrations declare them compatible (expand); a contract
//! migration stops a restarting older node with a message that says why, while the
//! running one keeps serving.
//!
//! The newer release is played by the test: it applies what a newer build's
//! migration does — the schema change, its `schema_compatibility` row and sqlx's
//! record of it — in one transaction, as `sqlx::migrate!` would.

use ivan_e2e::filing::{Filer, file_signed, report, set_attr, set_up};
use ivan_e2e::{Backend, Instance, Server};
use sqlx::PgPool;

/// Files one report through `server` with sender reference `reference`.
async fn file(inst: &Instance, server: &Server, filer: &Filer, reference: &str) -> String {
    let xml = set_attr(
        &report(&filer.registration, 0),
        "senderReference",
        reference,
    );
    file_signed(inst, server, filer, &xml).await
}

/// Applies a newer build's migration `version`: `change`, and the row declaring the
/// oldest migration a build must know to run on it.
async fn migrate_as_a_newer_build(pool: &PgPool, version: i64, oldest: i64, change: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(change.to_owned()))
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO schema_compatibility (version, oldest_compatible) VALUES ($1, $2)")
        .bind(version)
        .bind(oldest)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'a newer build', TRUE, $2, 0)",
    )
    .bind(version)
    .bind(vec![0u8; 48])
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_keep_filing_through_a_compatible_schema_upgrade() {
    let inst = Instance::new(Backend::Postgres).await;
    let filer = set_up(&inst, "12345678").await;
    let known = retention::db::latest_known(retention::Backend::Postgres);
    let env = [("IVAN_INTAKE__HOLD_WINDOW_SECS", "60")];
    let a = inst.serve_with(&env).await;
    let mut b = inst.serve_with(&env).await;
    let mut filed = Vec::new();
    for (i, node) in [&a, &b].into_iter().enumerate() {
        filed.push(file(&inst, node, &filer, &format!("BEFORE-{i}")).await);
    }

    // The newer release migrates: an expand migration, declared compatible.
    let pool = PgPool::connect(&inst.database_url).await.unwrap();
    migrate_as_a_newer_build(
        &pool,
        known + 1,
        known,
        "ALTER TABLE submissions ADD COLUMN channel_note TEXT; \
         CREATE TABLE upgrade_notes (id TEXT PRIMARY KEY, note TEXT NOT NULL);",
    )
    .await;
    // Both nodes keep filing on it, and one restarts on it (a redeploy, a crash).
    for (i, node) in [&a, &b].into_iter().enumerate() {
        filed.push(file(&inst, node, &filer, &format!("DURING-{i}")).await);
    }
    assert!(b.stop().await.success());
    b = inst.serve_with(&env).await;
    assert!(
        b.log().contains("newer than this build"),
        "the restarted node says it runs on a newer schema:\n{}",
        b.log()
    );
    for (i, node) in [&a, &b].into_iter().enumerate() {
        filed.push(file(&inst, node, &filer, &format!("AFTER-{i}")).await);
    }

    // A contract migration: builds of this release may not run on it. A restarting
    // node refuses with a message naming it; the running node keeps filing.
    migrate_as_a_newer_build(
        &pool,
        known + 2,
        known + 2,
        "ALTER TABLE upgrade_notes ALTER COLUMN note DROP NOT NULL;",
    )
    .await;
    assert!(b.stop().await.success());
    let refused = inst.run(&["migrate"]).await;
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("migration {}", known + 2))
            && said.contains("newer than this build"),
        "{said}"
    );
    filed.push(file(&inst, &a, &filer, "CONTRACTED").await);
    assert!(a.stop().await.success());

    // Nothing acknowledged was lost: every filing is stored once, and the log is
    // whole (verified once the test's contract migration is taken back out).
    let stored: Vec<String> = sqlx::query_scalar("SELECT id FROM submissions ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut expected = filed.clone();
    expected.sort();
    assert_eq!(stored, expected);
    for table in ["_sqlx_migrations", "schema_compatibility"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE version = {}",
            known + 2
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let verify = inst.run_ok(&["log", "verify"]).await;
    assert!(verify.starts_with("log OK"), "{verify}");
}
