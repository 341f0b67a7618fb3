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
        match policy {
            MigrationPolicy::Apply => db.migrate().await?,
            MigrationPolicy::RequireCurrent => {
                let pending = db.pending_migrations().await?;
                if pending > 0 {
                    return Err(Error::SchemaOutdated { pending });
                }
            }
        }
        Ok(db)
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
        async fn pending<C: Migrate>(conn: &mut C, migrator: &Migrator) -> Result<usize> {
            conn.ensure_migrations_table("_sqlx_migrations").await?;
            let applied: Vec<i64> = conn
                .list_applied_migrations("_sqlx_migrations")
                .await?
                .into_iter()
                .map(|m| m.version)
                .collect();
            Ok(migrator
                .iter()
                .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
                .count())
        }
        match self {
            Db::Sqlite(pool) => pending(&mut *pool.acquire().await?, &SQLITE_MIGRATOR).await,
            Db::Postgres(pool) => pending(&mut *pool.acquire().await?, &POSTGRES_MIGRATOR).await,
        }
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
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PG_LEDGER_LOCK)
                    .execute(&mut *tx)
                    .await?;
                WriteTx::Postgres(tx)
            }
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
