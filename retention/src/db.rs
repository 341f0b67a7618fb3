//! The one database handle. SQLite is the embedded default, PostgreSQL the production
//! backend; both are chosen by URL. Queries are written once in portable SQL (`$1`
//! placeholders work on both) and instantiated for each backend by [`on_pool!`] /
//! [`on_conn!`]; the few statements that must differ branch here, in one place.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Postgres, Sqlite, Transaction};

use crate::{Error, Result};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// The migrations this build carries for `backend`.
pub(crate) fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE_MIGRATOR,
        Backend::Postgres => &POSTGRES_MIGRATOR,
    }
}

/// The newest migration this build carries for `backend`.
pub fn latest_known(backend: Backend) -> i64 {
    migrator(backend)
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// Arbitrary but fixed key of the PostgreSQL advisory lock that serialises log
/// appends across processes ("ivanlog" in ASCII).
const PG_LEDGER_LOCK: i64 = 0x0069_7661_6e6c_6f67;

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// What [`Db::connect`] does about the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPolicy {
    /// Apply pending migrations (`ivan migrate`, `ivan serve`).
    Apply,
    /// Refuse to work on a schema with pending migrations (CLI tools).
    RequireCurrent,
}

/// The database handle: a pool for one of the two backends.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One connection (usually inside a transaction) of either backend, handed to work
/// that must commit together with a log entry.
#[derive(Debug)]
pub enum DbConn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl DbConn<'_> {
    /// The same connection for a shorter while, so one can be used for several
    /// calls that each take a `DbConn`.
    pub fn reborrow(&mut self) -> DbConn<'_> {
        match self {
            DbConn::Sqlite(c) => DbConn::Sqlite(c),
            DbConn::Postgres(c) => DbConn::Postgres(c),
        }
    }
}

/// Keyset paging: `rows` were read with a limit of `limit + 1`, ordered by key. Keeps
/// the first `limit` and returns the key to continue after when there are more.
pub fn next_page<T>(rows: &mut Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(key)
    } else {
        None
    }
}

/// Runs `$body` with `$pool` bound to the backend's pool (`&SqlitePool` or `&PgPool`).
/// The body is compiled once per backend, so the same portable query serves both.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite($pool) => $body,
            $crate::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$conn` bound to `&mut SqliteConnection` or `&mut PgConnection`;
/// `$c` is a `&mut DbConn`.
#[macro_export]
macro_rules! on_conn {
    ($c:expr, $conn:ident => $body:expr) => {
        match $c {
            $crate::DbConn::Sqlite(c) => {
                let $conn: &mut _ = &mut **c;
                $body
            }
            $crate::DbConn::Postgres(c) => {
                let $conn: &mut _ = &mut **c;
                $body
            }
        }
    };
}

/// A write transaction that holds the log-append lock of its backend.
#[derive(Debug)]
pub(crate) enum WriteTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl WriteTx {
    pub(crate) fn conn(&mut self) -> DbConn<'_> {
        match self {
            WriteTx::Sqlite(t) => DbConn::Sqlite(&mut *t),
            WriteTx::Postgres(t) => DbConn::Postgres(&mut *t),
        }
    }

    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            WriteTx::Sqlite(t) => t.commit().await?,
            WriteTx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The database file a `sqlite:` URL names; `None` for other URLs and in-memory SQLite.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") {
        return None;
    }
    let opts = SqliteConnectOptions::from_str(url).ok()?;
    let name = opts.get_filename();
    (name.as_os_str() != ":memory:" && !name.as_os_str().is_empty()).then(|| name.to_path_buf())
}

impl Db {
    /// Opens the database named by `url` (`sqlite://PATH` or `postgres://…`), checks it
    /// answers, and applies or checks migrations as `policy` says.
    pub async fn connect(url: &str, max_connections: u32, policy: MigrationPolicy) -> Result<Db> {
        let connect_err = |source| Error::Connect {
            url: redact_url(url),
            source,
        };
        let db = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(connect_err)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await
                .map_err(connect_err)?;
            Db::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url).map_err(connect_err)?;
            // One direct connection first: a pool reports only "timed out", this names
            // the cause (refused, unknown database, authentication).
            let probe =
                tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(&opts))
                    .await
                    .map_err(|_| connect_err(sqlx::Error::PoolTimedOut))?
                    .map_err(connect_err)?;
            probe.close().await.map_err(connect_err)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(2))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(connect_err)?;
            Db::Postgres(pool)
        } else {
            return Err(Error::UnsupportedUrl(redact_url(url)));
        };
        // A newer build may have migrated the schema further (a rolling upgrade):
        // that is fine when each newer migration says this build may run on it.
        let newer = db.check_newer_migrations().await?;
        match policy {
            MigrationPolicy::Apply if newer == 0 => db.migrate().await?,
            MigrationPolicy::Apply | MigrationPolicy::RequireCurrent => {
                let pending = db.pending_migrations().await?;
                if pending > 0 && newer > 0 {
                    // Ours would be applied after newer ones: out of order.
                    return Err(Error::Invalid(format!(
                        "the database has {newer} migration(s) newer than this build but lacks \
                         {pending} of this build's; migrate it with the newest build"
                    )));
                }
                if pending > 0 {
                    return Err(Error::SchemaOutdated { pending });
                }
            }
        }
        if newer > 0 {
            tracing::warn!(
                newer,
                known = latest_known(db.backend()),
                "the database schema has migrations newer than this build, each declared \
                 compatible with it (a rolling upgrade in progress); run the newer build here \
                 soon"
            );
        }
        Ok(db)
    }

    /// Checks the applied migrations this build does not carry (a newer build's) against
    /// `schema_compatibility`: each must declare that builds knowing this build's newest
    /// migration may run on it. Returns how many there are.
    pub async fn check_newer_migrations(&self) -> Result<usize> {
        let known = latest_known(self.backend());
        let applied = self.applied_migrations().await?;
        let newer: Vec<i64> = applied.into_iter().filter(|v| *v > known).collect();
        for &version in &newer {
            let declared: Option<i64> = on_pool!(self, pool => {
                sqlx::query_scalar(
                    "SELECT oldest_compatible FROM schema_compatibility WHERE version = $1",
                )
                .bind(version)
                .fetch_optional(pool)
                .await?
            });
            match declared {
                Some(oldest) if oldest <= known => {}
                Some(oldest) => {
                    return Err(Error::SchemaTooNew {
                        version,
                        declared: format!(
                            "which needs builds that know migration {oldest} or later"
                        ),
                        known,
                    });
                }
                None => {
                    return Err(Error::SchemaTooNew {
                        version,
                        declared: "which declares no compatibility with older builds".into(),
                        known,
                    });
                }
            }
        }
        Ok(newer.len())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The row-locking clause that lets several workers claim rows from one queue
    /// without waiting on, or taking, each other's rows: `FOR UPDATE SKIP LOCKED` on
    /// PostgreSQL; nothing on SQLite, where a write transaction already excludes every
    /// other writer (and only one `ivan serve` may use a database file).
    pub fn skip_locked(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Applies every pending migration of this backend's set.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await?,
            Db::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    /// How many of this backend's migrations are not applied yet.
    pub async fn pending_migrations(&self) -> Result<usize> {
        let applied = self.applied_migrations().await?;
        Ok(migrator(self.backend())
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
            .count())
    }

    /// The versions of the migrations applied to this database (by any build).
    async fn applied_migrations(&self) -> Result<Vec<i64>> {
        Ok(on_pool!(self, pool => {
            let mut conn = pool.acquire().await?;
            conn.ensure_migrations_table("_sqlx_migrations").await?;
            conn.list_applied_migrations("_sqlx_migrations").await?.into_iter().map(|m| m.version).collect()
        }))
    }

    /// Checks the database answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))?;
        Ok(())
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }

    /// Begins the transaction the log appender writes in, holding the backend's
    /// append lock until commit: `BEGIN IMMEDIATE` on SQLite (the database write
    /// lock), a transaction-scoped advisory lock on PostgreSQL. Appenders in several
    /// processes (a server and a CLI command) therefore never interleave.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx> {
        Ok(match self {
            Db::Sqlite(pool) => WriteTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            // The transaction and the lock in one round trip (a simple query of two
            // statements): the appender begins one per batch.
            Db::Postgres(pool) => WriteTx::Postgres(
                pool.begin_with(sqlx::AssertSqlSafe(format!(
                    "BEGIN; SELECT pg_advisory_xact_lock({PG_LEDGER_LOCK})"
                )))
                .await?,
            ),
        })
    }

    /// The names and columns of every table (migration bookkeeping excluded),
    /// sorted, as `(table, column)` pairs. Used to prove the twin schemas agree.
    pub async fn table_columns(&self) -> Result<Vec<(String, String)>> {
        let mut cols: Vec<(String, String)> =
            match self {
                Db::Sqlite(pool) => {
                    sqlx::query_as(
                        "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
                     AND m.name <> '_sqlx_migrations'",
                    )
                    .fetch_all(pool)
                    .await?
                }
                Db::Postgres(pool) => sqlx::query_as(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
                )
                .fetch_all(pool)
                .await?,
            };
        cols.sort();
        Ok(cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 0005 rebuilds SQLite's `submissions` table (to make
    /// `signer_fingerprint` nullable): an installation with filings must keep every
    /// row, every reference to it, and foreign-key enforcement.
    #[tokio::test]
    async fn sqlite_0005_rebuild_keeps_rows_references_and_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteConnectOptions::from_str(&format!(
            "sqlite://{}",
            dir.path().join("old.db").display()
        ))
        .unwrap()
        .create_if_missing(true)
        .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .unwrap();
        SQLITE_MIGRATOR.run_to(4, &pool).await.unwrap();
        let t = "2026-11-01T10:00:00.000000Z";
        for sql in [
            format!(
                "INSERT INTO originals VALUES ('{}', 5, 'application/xml', '{t}')",
                "a".repeat(64)
            ),
            format!(
                "INSERT INTO originals VALUES ('{}', 5, 'application/xml', '{t}')",
                "b".repeat(64)
            ),
            format!(
                "INSERT INTO employers (id, name, registration_number, created_at) VALUES ('e1', 'E', 'EMP-1', '{t}')"
            ),
            format!(
                "INSERT INTO employer_certificates VALUES ('f1', 'e1', 's', 'i', '1', '{t}', '{t}', x'00', '{t}')"
            ),
            format!(
                "INSERT INTO submissions VALUES ('s1', 'e1', 'contribution-report', 'V2611000001', 'delivered', '{}', 5, \
                 '{t}', '{t}', 'REF-1', NULL, 'f1', NULL, 7, 'jws', '[]', '{t}', 'A-1', '{t}')",
                "a".repeat(64)
            ),
            format!(
                "INSERT INTO outbox (submission_id, phase, due_at, attempts, created_at) VALUES ('s1', 'poll', '{t}', 0, '{t}')"
            ),
            format!(
                "INSERT INTO mail_outbox (id, kind, recipient, subject, body, submission_id, created_at, due_at, attempts) \
                     VALUES ('m1', 'receipt', 'a@b.c', 's', 'b', 's1', '{t}', '{t}', 0)"
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
        }
        SQLITE_MIGRATOR.run(&pool).await.unwrap();

        let row: (String, Option<String>, String, i64, Option<String>) = sqlx::query_as(
            "SELECT document_number, signer_fingerprint, status, log_seq, authority_ref FROM submissions WHERE id = 's1'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            row,
            (
                "V2611000001".into(),
                Some("f1".into()),
                "delivered".into(),
                7,
                Some("A-1".into())
            )
        );
        let dangling: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(dangling.is_empty(), "{dangling:?}");
        let on: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(on, 1, "foreign keys are enforced again after the rebuild");
        // The references still bind to the rebuilt table: a row naming no submission
        // is refused, and a submission without a signer is now allowed.
        let orphan = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO outbox (submission_id, phase, due_at, attempts, created_at) VALUES ('nope', 'deliver', '{t}', 0, '{t}')"
        )))
        .execute(&pool)
        .await;
        assert!(orphan.is_err(), "outbox still references submissions");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO submissions (id, employer_id, document_type, document_number, status, sha256, size_bytes, \
             received_at, hold_until, signer_fingerprint, log_seq, receipt, warnings, updated_at) \
             VALUES ('s2', 'e1', 'preregistration', 'P2611000001', 'accepted', '{}', 5, '{t}', '{t}', NULL, 8, 'jws', '[]', '{t}')",
            "b".repeat(64)
        )))
        .execute(&pool)
        .await
        .unwrap();
    }

    /// Migration 0016 gives every filing accepted before it a `forward_by` of its
    /// hold window's end + 2 h (the deadline the forwarder applied to it), readable as
    /// a time, on both backends.
    #[tokio::test]
    async fn forward_by_0016_gives_earlier_filings_the_2_h_deadline() {
        let hold_until = "2026-11-01T10:00:00.123456Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap();
        let expected = "2026-11-01T12:00:00.123Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap();
        let insert = "INSERT INTO submissions (id, employer_id, document_type, document_number, \
             status, sha256, size_bytes, received_at, hold_until, signer_fingerprint, log_seq, \
             receipt, warnings, updated_at) VALUES ('s1', 'e1', 'contribution-report', \
             'V2611000001', 'accepted', 'aa', 5, $1, $1, NULL, 7, 'jws', '[]', $1)";
        let employer = "INSERT INTO employers (id, name, registration_number, created_at) \
             VALUES ('e1', 'E', 'EMP-1', $1)";
        let original = "INSERT INTO originals (sha256, size_bytes, media_type, stored_at) \
             VALUES ('aa', 5, 'application/xml', $1)";

        // A filing recorded under migration 0015, then the rest applied.
        let upgraded = async |db: &Db| -> chrono::DateTime<chrono::Utc> {
            on_pool!(db, pool => migrator(db.backend()).run_to(15, pool).await.unwrap());
            for sql in [original, employer, insert] {
                on_pool!(db, pool => sqlx::query(sql).bind(hold_until).execute(pool).await.map(drop).unwrap());
            }
            db.migrate().await.unwrap();
            on_pool!(db, pool => sqlx::query_scalar("SELECT forward_by FROM submissions WHERE id = 's1'")
                .fetch_one(pool)
                .await
                .unwrap())
        };

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let opts = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let sqlite = Db::Sqlite(SqlitePoolOptions::new().connect_with(opts).await.unwrap());
        // SQLite's date arithmetic keeps milliseconds.
        assert_eq!(upgraded(&sqlite).await, expected);
        // Stored in the form times are compared in (RFC 3339): later than an earlier
        // bound time, earlier than a later one.
        let overdue = "SELECT COUNT(*) FROM submissions WHERE forward_by < $1";
        for (at, n) in [
            (expected - chrono::Duration::seconds(1), 0),
            (expected + chrono::Duration::milliseconds(1), 1),
        ] {
            let count: i64 = on_pool!(&sqlite, pool => sqlx::query_scalar(overdue)
                .bind(at)
                .fetch_one(pool)
                .await
                .unwrap());
            assert_eq!(count, n, "{at}");
        }

        let pg = crate::testing::TempPg::create().await.unwrap();
        let postgres = Db::Postgres(PgPoolOptions::new().connect(pg.url()).await.unwrap());
        let got = upgraded(&postgres).await;
        assert_eq!(got, hold_until + chrono::Duration::hours(2));
        postgres.close().await;
    }

    /// From 0017 on, every migration says which builds may run on the schema it
    /// leaves, in its own file (docs/OPERATIONS.md, "Upgrading").
    #[test]
    fn every_migration_from_0017_declares_its_compatibility() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            for m in migrator(backend).iter().filter(|m| m.version >= 17) {
                let row = format!(
                    "INSERT INTO schema_compatibility (version, oldest_compatible) VALUES ({},",
                    m.version
                );
                assert!(
                    m.sql.as_str().contains(&row),
                    "{backend} migration {} ({}) does not declare its compatibility: {row} …",
                    m.version,
                    m.description
                );
            }
        }
    }

    /// A newer build's migration that declares this build compatible is tolerated (the
    /// node keeps starting during a rolling upgrade); one that does not, or declares
    /// no compatibility, stops it with a message naming the migration.
    #[tokio::test]
    async fn newer_migrations_are_tolerated_only_when_declared_compatible() {
        let sqlite = crate::testing::TestEnv::sqlite().await;
        let pg = crate::testing::TestEnv::postgres().await;
        for (env, url) in [(&sqlite, sqlite.url.clone()), (&pg, pg.url.clone())] {
            let known = latest_known(env.db.backend());
            let newer = |version: i64, oldest: Option<i64>| {
                let db = env.db.clone();
                async move {
                    on_pool!(&db, pool => {
                        sqlx::query(
                            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                             execution_time) VALUES ($1, 'a newer build', TRUE, $2, 0)",
                        )
                        .bind(version)
                        .bind(vec![0u8; 48])
                        .execute(pool)
                        .await
                        .unwrap();
                        if let Some(oldest) = oldest {
                            sqlx::query("INSERT INTO schema_compatibility VALUES ($1, $2)")
                                .bind(version)
                                .bind(oldest)
                                .execute(pool)
                                .await
                                .unwrap();
                        }
                    })
                }
            };
            newer(known + 1, Some(known)).await;
            for policy in [MigrationPolicy::Apply, MigrationPolicy::RequireCurrent] {
                let db = Db::connect(&url, 2, policy).await.unwrap();
                assert_eq!(db.check_newer_migrations().await.unwrap(), 1);
                db.close().await;
            }
            newer(known + 2, Some(known + 1)).await;
            let err = Db::connect(&url, 2, MigrationPolicy::Apply)
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::SchemaTooNew { version, .. } if version == known + 2),
                "{err}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("migration {}", known + 1)),
                "{err}"
            );
            on_pool!(&env.db, pool => sqlx::query("UPDATE schema_compatibility SET oldest_compatible = $1 WHERE version = $2")
                .bind(known).bind(known + 2).execute(pool).await.map(drop).unwrap());
            newer(known + 3, None).await;
            let err = Db::connect(&url, 2, MigrationPolicy::RequireCurrent)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("declares no compatibility"), "{err}");
        }
    }

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact_url("postgres://ivan:s3cret@db:5432/ivan"),
            "postgres://ivan:***@db:5432/ivan"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(
            redact_url("sqlite://./data/ivan.db"),
            "sqlite://./data/ivan.db"
        );
    }
}
