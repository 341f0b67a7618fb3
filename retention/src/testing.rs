//! Helpers for tests of this and other crates (feature `testing`): a throw-away
//! PostgreSQL database per test, a temp SQLite file, and [`backend_tests!`] which
//! runs one generic test body on both backends.
//!
//! PostgreSQL is reached at `$IVAN_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); `ops/test.sh` makes sure it runs.
//! A test that needs it fails — never skips — when it is down.
#![allow(clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use sqlx::Connection;
use tempfile::TempDir;

use crate::keys::Keys;
use crate::{Db, Error, Ledger, LedgerConfig, MigrationPolicy, Originals, Result, SystemClock};

pub const PG_URL_ENV: &str = "IVAN_TEST_PG";
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The maintenance database URL tests create their databases through.
pub fn pg_admin_url() -> String {
    std::env::var(PG_URL_ENV).unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// A fresh PostgreSQL database, dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct TempPg {
    admin_url: String,
    name: String,
    url: String,
}

impl TempPg {
    pub async fn create() -> Result<Self> {
        let admin_url = pg_admin_url();
        let name = format!("ivan_t_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .map_err(|source| Error::Connect {
                url: admin_url.clone(),
                source,
            })?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Ok(Self {
            admin_url,
            name,
            url,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// An outage of this database (`accept = false`): it stops accepting connections
    /// and the open ones are ended, as when the server goes down; `true` ends it.
    pub async fn set_accepting_connections(&self, accept: bool) -> Result<()> {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .map_err(|source| Error::Connect {
                url: self.admin_url.clone(),
                source,
            })?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS {accept}",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        if !accept {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            )
            .bind(&self.name)
            .execute(&mut conn)
            .await?;
        }
        conn.close().await?;
        Ok(())
    }
}

impl Drop for TempPg {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs outside async context; use a private runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .ok()?;
                conn.close().await.ok()
            })
        })
        .join();
    }
}

/// The pending sleeps of a [`ManualClock`]: when each ends, by a number of its own.
type Sleeps = Arc<std::sync::Mutex<std::collections::BTreeMap<u64, chrono::DateTime<chrono::Utc>>>>;

/// A clock tests set and move by hand (deadlines, lockouts, retention).
#[derive(Debug)]
pub struct ManualClock {
    time: tokio::sync::watch::Sender<chrono::DateTime<chrono::Utc>>,
    /// When each pending [`crate::Clock::sleep`] ends.
    sleeps: Sleeps,
    next_sleep: std::sync::atomic::AtomicU64,
}

impl ManualClock {
    /// Starts at the system time.
    pub fn new() -> Self {
        Self::at(crate::Clock::now(&SystemClock))
    }

    /// Starts at `t`.
    pub fn at(t: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            time: tokio::sync::watch::channel(t).0,
            sleeps: Arc::default(),
            next_sleep: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Moves the clock forward by `by`, waking the sleepers whose time has come.
    pub fn advance(&self, by: chrono::Duration) {
        self.time.send_modify(|t| *t += by);
    }

    /// Waits until `workers` sleeps are pending and none is due: the workers that
    /// wait on this clock between passes have finished the passes the last
    /// [`ManualClock::advance`] woke them for and gone back to sleep. Panics after
    /// 30 s of real time, naming what it saw.
    pub async fn settled(&self, workers: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let now = crate::Clock::now(self);
            let (pending, due) = {
                let sleeps = self
                    .sleeps
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (sleeps.len(), sleeps.values().filter(|t| **t <= now).count())
            };
            if pending == workers && due == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not settled in 30 s: {pending} sleeps pending ({due} due), {workers} wanted"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

/// A pending sleep's entry in [`ManualClock`], removed when the sleep ends or is
/// dropped.
struct Sleeping {
    id: u64,
    sleeps: Sleeps,
}

impl Drop for Sleeping {
    fn drop(&mut self) {
        self.sleeps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl crate::Clock for ManualClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.time.borrow()
    }

    /// Resolves when [`ManualClock::advance`] has moved the clock `d` past now;
    /// never on its own.
    fn sleep(&self, d: std::time::Duration) -> futures::future::BoxFuture<'static, ()> {
        let until = chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| self.now().checked_add_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        let id = self
            .next_sleep
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sleeps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, until);
        let sleeping = Sleeping {
            id,
            sleeps: self.sleeps.clone(),
        };
        let mut time = self.time.subscribe();
        Box::pin(async move {
            let _sleeping = sleeping;
            let _ = time.wait_for(|t| *t >= until).await;
        })
    }
}

/// A migrated database of one backend, with a temp directory for originals and keys.
#[derive(Debug)]
pub struct TestEnv {
    pub db: Db,
    pub url: String,
    pub originals: Originals,
    pub keys: Arc<Keys>,
    pub dir: TempDir,
    _pg: Option<TempPg>,
}

impl TestEnv {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("ivan.db").display());
        Self::open(url, dir, None).await
    }

    pub async fn postgres() -> Self {
        let pg = TempPg::create()
            .await
            .expect("PostgreSQL for tests (start it with ops/test.sh, or set IVAN_TEST_PG)");
        let dir = tempfile::tempdir().expect("tempdir");
        Self::open(pg.url().to_owned(), dir, Some(pg)).await
    }

    async fn open(url: String, dir: TempDir, pg: Option<TempPg>) -> Self {
        let db = Db::connect(&url, 8, MigrationPolicy::Apply)
            .await
            .expect("connect and migrate");
        let originals = Originals::local(&dir.path().join("originals")).expect("originals");
        let keys = Arc::new(Keys::load_or_generate(&dir.path().join("keys")).expect("keys"));
        Self {
            db,
            url,
            originals,
            keys,
            dir,
            _pg: pg,
        }
    }

    /// Starts an appender on this database.
    pub fn ledger(&self, config: LedgerConfig) -> (Ledger, crate::ledger::LedgerTask) {
        Ledger::start(
            self.db.clone(),
            self.originals.clone(),
            self.keys.clone(),
            Arc::new(SystemClock),
            config,
        )
    }
}

/// A throw-away S3-compatible server (moto) with one empty bucket, killed on drop.
/// The server binary is `$IVAN_TEST_MOTO` or `moto_server` on `PATH` (ops/test.sh
/// installs it into a virtualenv and puts that on `PATH`).
#[derive(Debug)]
pub struct S3Emulator {
    child: std::process::Child,
    pub endpoint: String,
    pub bucket: String,
}

impl S3Emulator {
    /// An emulator whose bucket has no Object Lock.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// An emulator whose bucket was created with Object Lock (and so versioning).
    pub async fn start_locked() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(object_lock: bool) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let bin = std::env::var("IVAN_TEST_MOTO").unwrap_or_else(|_| "moto_server".into());
        let child = std::process::Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} (the S3 emulator; ops/test.sh installs it): {e}")
            });
        let emulator = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: "ivan-test".into(),
        };
        let addr = format!("127.0.0.1:{port}");
        for attempt in 0.. {
            match tokio::net::TcpStream::connect(&addr).await {
                Ok(mut s) => {
                    // moto accepts an unsigned CreateBucket.
                    let lock = if object_lock {
                        "x-amz-bucket-object-lock-enabled: true\r\n"
                    } else {
                        ""
                    };
                    let req = format!(
                        "PUT /{} HTTP/1.1\r\nHost: {addr}\r\n{lock}Content-Length: 0\r\nConnection: close\r\n\r\n",
                        emulator.bucket
                    );
                    s.write_all(req.as_bytes())
                        .await
                        .expect("send CreateBucket");
                    let mut resp = String::new();
                    s.read_to_string(&mut resp)
                        .await
                        .expect("read CreateBucket");
                    assert!(resp.starts_with("HTTP/1.1 200"), "CreateBucket: {resp}");
                    break;
                }
                Err(_) if attempt < 300 => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{bin} did not listen on {addr} within 30 s: {e}"),
            }
        }
        emulator
    }

    pub fn config(&self) -> crate::originals::S3Config {
        crate::originals::S3Config {
            bucket: self.bucket.clone(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            allow_http: true,
        }
    }

    /// The environment that points `ivan` at this bucket (`[originals]`).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("IVAN_ORIGINALS__BACKEND", "s3"),
            ("IVAN_ORIGINALS__BUCKET", self.bucket.as_str()),
            ("IVAN_ORIGINALS__ENDPOINT", self.endpoint.as_str()),
            ("IVAN_ORIGINALS__ACCESS_KEY_ID", "test"),
            ("IVAN_ORIGINALS__SECRET_ACCESS_KEY", "test"),
            ("IVAN_ORIGINALS__ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

impl Drop for S3Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// For each `name`, makes `name::sqlite` and `name::postgres` tests that call the
/// async fn `name(env: TestEnv)` in scope with a fresh database of that backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::testing::TestEnv::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::testing::TestEnv::postgres().await).await;
            }
        }
    )*};
}

/// Every file under `dir` (its subdirectories included), by name: what a store or a
/// data directory holds.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("a readable directory") {
            let e = e.expect("a directory entry");
            if e.file_type().expect("its type").is_dir() {
                dirs.push(e.path());
            } else {
                files.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    files
}

/// RFC 9162 §2.1.1's Merkle tree hash of entries whose `entry_hash` bytes are
/// `leaves`, written from the RFC's definition: the reference the stored tree
/// ([`crate::ledger::tree`], computed with `tlog_tiles`' stored-hash arithmetic) is
/// tested against, in this crate and end to end.
pub fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    match leaves.len() {
        0 => {}
        1 => {
            h.update([0u8]);
            h.update(leaves[0]);
        }
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            h.update([1u8]);
            h.update(mth(&leaves[..k]));
            h.update(mth(&leaves[k..]));
        }
    }
    h.finalize().into()
}

/// A log's Merkle tree in memory, every stored hash kept: proofs about any size of
/// it, for tests that have no database (witness requests, evidence bundles).
#[derive(Debug, Default)]
pub struct MemoryTree {
    frontier: crate::ledger::tree::Frontier,
    stored: Vec<tlog_tiles::Hash>,
}

impl tlog_tiles::HashReader for MemoryTree {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> std::result::Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.stored
                    .get(*i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl MemoryTree {
    /// The tree of these entry hashes (hex), in order.
    pub fn of_entries<'a>(entry_hashes: impl IntoIterator<Item = &'a str>) -> Self {
        let mut t = Self::default();
        for h in entry_hashes {
            t.push(crate::ledger::tree::leaf_hash(h).expect("an entry hash"));
        }
        t
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: tlog_tiles::Hash) {
        let (_, hashes) = self.frontier.push(leaf).expect("a leaf");
        self.stored.extend(hashes);
    }

    /// The root of the first `size` leaves.
    pub fn root(&self, size: u64) -> tlog_tiles::Hash {
        tlog_tiles::tree_hash(size, self).expect("a size within the tree")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Clock;

    #[tokio::test]
    async fn a_manual_clock_wakes_its_sleepers_when_moved_past_them() {
        let clock = Arc::new(ManualClock::new());
        let sleep = clock.sleep(std::time::Duration::from_secs(60));
        let woke = tokio::spawn(sleep);
        clock.settled(1).await;
        clock.advance(chrono::Duration::seconds(59));
        // Not yet due: still pending, so settled.
        clock.settled(1).await;
        assert!(!woke.is_finished());
        clock.advance(chrono::Duration::seconds(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), woke)
            .await
            .expect("woken when its time came")
            .unwrap();
        clock.settled(0).await;
    }
}
