//! `ivan restore DIR`: load a snapshot into an empty target, then prove it with the
//! full log verification.
//!
//! Nothing touches the target until the snapshot has passed its checks (manifest
//! signature, every database and key file re-hashed, every original inside its
//! pack). Then `RESTORE-INCOMPLETE` is written into the target data dir; the
//! database load and the copying of keys and originals run side by side (the packs
//! are read in order, and each original is re-hashed as it is written); the restored record must pass `log verify` and
//! show the manifest's log head and checkpoint. Only then is the marker removed. A
//! failure at any point after the marker leaves it in place: the target must be
//! discarded, and nothing (`ivan serve` included) will use it meanwhile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use sqlx::Connection;

use super::create::blocking;
use super::fsio::{self, ContentDir};
use super::layout::{
    INCOMPLETE_MARKER, KEYS_DIR, MANIFEST, ORIGINALS, ORIGINALS_LIST, SQLITE_FILE, choose_snapshot,
    snapshot_dir,
};
use super::packs::{Found, Located, PACKS, altered, for_each_in_pack_order};
use super::{
    FileRecord, MAX_MANIFEST_BYTES, Manifest, PARALLEL_COPIES, Phase, Progress, pg, seconds,
};
use crate::db::{redact_url, sqlite_path};
use crate::keys::Keys;
use crate::ledger::verify::{self as log_verify, Progress as LogProgress};
use crate::ledger::{self, GENESIS_HASH};
use crate::originals::OriginalsConfig;
use crate::{Backend, Db, Error, MigrationPolicy, Originals, Result};

/// Problems of a damaged snapshot named in the refusal (all: `ivan backup verify`).
const PROBLEMS_NAMED: usize = 5;

/// Where to restore to.
#[derive(Debug, Clone, Copy)]
pub struct RestoreTarget<'a> {
    /// `sqlite://PATH` or `postgres://…`; must be empty.
    pub database_url: &'a str,
    pub max_connections: u32,
    /// The data dir; must hold no keys, no originals and no unfinished restore.
    pub data_dir: &'a Path,
    /// Where the keys go (`<data_dir>/keys`).
    pub keys_dir: &'a Path,
    /// The originals store to fill (must be empty).
    pub originals: &'a OriginalsConfig,
}

/// What `restore` did (the `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    pub snapshot: String,
    pub backend: String,
    pub created_at: String,
    /// Checking the snapshot before touching the target.
    pub check_seconds: f64,
    pub db_seconds: f64,
    pub db_bytes: u64,
    /// PostgreSQL: tables and rows loaded (0 for SQLite, a file copy).
    pub tables: u64,
    pub rows: u64,
    pub keys: u64,
    pub originals: u64,
    /// Bytes of originals copied.
    pub bytes: u64,
    pub originals_seconds: f64,
    /// The log half of the final `log verify` (entries, checkpoints, payload
    /// references): it starts once the database is loaded, beside the originals copy.
    pub log_seconds: f64,
    /// What the final `log verify` took after the copy: the originals half (every
    /// original re-read and re-hashed) and the head and checkpoint comparison.
    pub verify_seconds: f64,
    pub log_entries: u64,
    pub checkpoints: u64,
    pub originals_verified: u64,
    pub tree_size: i64,
    pub head_hash: String,
    pub checkpoint_tree_size: Option<i64>,
    pub key_id: String,
    pub total_seconds: f64,
}

/// The migration versions this build knows for `backend`, ascending.
pub fn known_migrations(backend: Backend) -> Vec<i64> {
    let mut v: Vec<i64> = crate::db::migrator(backend)
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .collect();
    v.sort_unstable();
    v
}

fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Backend::Postgres)
    } else {
        Err(Error::UnsupportedUrl(redact_url(url)))
    }
}

/// Restores snapshot `snapshot` of `dir` (default: the newest complete one) into
/// `target`; see the module docs for the steps and guarantees.
pub async fn restore(
    dir: &Path,
    snapshot: Option<&str>,
    target: &RestoreTarget<'_>,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let (id, _) = choose_snapshot(dir, snapshot)?;
    let snap = snapshot_dir(dir, &id);

    // Cheap refusals first: what the snapshot is, and whether the target is empty.
    let peeked = peek_manifest(&snap, &id)?;
    let backend = backend_of(target.database_url)?;
    if peeked.backend != backend.to_string() {
        return Err(Error::Invalid(format!(
            "snapshot {id} is a {} backup; it restores only into a {} database, not {}",
            peeked.backend,
            peeked.backend,
            redact_url(target.database_url)
        )));
    }
    let known = known_migrations(backend);
    if peeked.migrations != known {
        return Err(Error::Invalid(format!(
            "snapshot {id} has migrations {:?} but this ivan has {:?}: restore with the ivan version that wrote it ({})",
            peeked.migrations, known, peeked.ivan_version
        )));
    }
    check_target_empty(target, backend).await?;

    // The whole snapshot checks out before anything is written.
    let check_started = Instant::now();
    let checking = Prefixed {
        inner: progress,
        prefix: "check",
    };
    let report = super::verify(dir, Some(&id), false, &checking).await?;
    if !report.ok {
        let named: Vec<&str> = report
            .problems
            .iter()
            .take(PROBLEMS_NAMED)
            .map(String::as_str)
            .collect();
        return Err(Error::Invalid(format!(
            "snapshot {id} in {} is damaged or partial; nothing was restored: {}{}",
            dir.display(),
            named.join("; "),
            if report.problems_total > named.len() as u64 {
                format!(
                    " (and {} more; `ivan backup verify` lists them)",
                    report.problems_total - named.len() as u64
                )
            } else {
                String::new()
            }
        )));
    }
    let manifest = report
        .manifest
        .ok_or_else(|| Error::Invalid(format!("snapshot {id}: the manifest was not read")))?;
    if manifest != peeked {
        return Err(Error::Invalid(format!(
            "snapshot {id}: {MANIFEST} changed during the restore's checks"
        )));
    }
    let check_seconds = seconds(check_started);

    // From here on the target is written: the marker first.
    // Like `ivan serve`'s own data dir: for the service account only.
    fsio::create_dirs(target.data_dir, 0o700)?;
    let marker = target.data_dir.join(INCOMPLETE_MARKER);
    let note = format!(
        "A restore of snapshot {id} from {} into this data dir started at {} and has not finished.\n\
         Until it has, this data dir and its database ({}) are not a valid record:\n\
         discard both and run `ivan restore` again.\n",
        dir.display(),
        ledger::format_time(&chrono::Utc::now()),
        redact_url(target.database_url),
    );
    fsio::write_new(&marker, note.as_bytes(), 0o600)?;
    fsio::fsync_dir(target.data_dir)?;

    let outcome = load_and_verify(&snap, &manifest, target, backend, progress).await;
    match outcome {
        Ok(done) => {
            std::fs::remove_file(&marker).map_err(|e| Error::io(&marker, e))?;
            fsio::fsync_dir(target.data_dir)?;
            Ok(RestoreSummary {
                snapshot: id,
                backend: manifest.backend,
                created_at: manifest.created_at,
                check_seconds,
                db_seconds: done.db_seconds,
                db_bytes: done.db_bytes,
                tables: done.tables,
                rows: done.rows,
                keys: done.keys,
                originals: manifest.originals.count,
                bytes: done.bytes,
                originals_seconds: done.originals_seconds,
                log_seconds: done.log_seconds,
                verify_seconds: done.verify_seconds,
                log_entries: done.log_entries,
                checkpoints: done.checkpoints,
                originals_verified: done.originals_verified,
                tree_size: manifest.log.tree_size,
                head_hash: manifest.log.head_hash,
                checkpoint_tree_size: manifest.checkpoint.map(|c| c.tree_size),
                key_id: done.key_id,
                total_seconds: seconds(started),
            })
        }
        Err(e) => Err(Error::Invalid(format!(
            "restore failed: {e}. The target is INCOMPLETE and must not be used: discard its database ({}) and data dir ({}); {} stays there until then",
            redact_url(target.database_url),
            target.data_dir.display(),
            INCOMPLETE_MARKER
        ))),
    }
}

/// The manifest as it is on disk, unchecked (for the early refusals).
fn peek_manifest(snap: &Path, id: &str) -> Result<Manifest> {
    use std::io::Read;
    let path = snap.join(MANIFEST);
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| {
            Error::Invalid(format!(
                "snapshot {id}: cannot read {MANIFEST}: {e}; nothing was restored"
            ))
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Invalid(format!(
            "snapshot {id}: {MANIFEST} is not a backup manifest ({e}); nothing was restored"
        ))
    })
}

fn not_empty(what: String) -> Error {
    Error::Conflict(format!(
        "{what}: restore only into an empty target (a new database and a new data dir)"
    ))
}

/// Refuses a target that holds anything: a database with tables, keys, originals,
/// or an earlier unfinished restore.
async fn check_target_empty(target: &RestoreTarget<'_>, backend: Backend) -> Result<()> {
    let marker = target.data_dir.join(INCOMPLETE_MARKER);
    if marker.exists() {
        return Err(Error::Conflict(format!(
            "{} exists: an earlier restore into {} did not finish; discard that data dir and its database first",
            marker.display(),
            target.data_dir.display()
        )));
    }
    if dir_has_entries(target.keys_dir)? {
        return Err(not_empty(format!(
            "the key directory {} is not empty",
            target.keys_dir.display()
        )));
    }
    match target.originals {
        OriginalsConfig::Local { dir } => {
            let root = dir
                .clone()
                .unwrap_or_else(|| target.data_dir.join(ORIGINALS));
            if dir_has_entries(&root)? {
                return Err(not_empty(format!(
                    "the originals directory {} is not empty",
                    root.display()
                )));
            }
        }
        OriginalsConfig::S3(s3) => {
            let store = Originals::s3(s3)?;
            if let Some(first) = store.list().next().await {
                first?;
                return Err(not_empty(format!(
                    "the originals store {} is not empty",
                    store.describe()
                )));
            }
        }
    }
    match backend {
        Backend::Sqlite => {
            let path = sqlite_path(target.database_url).ok_or_else(|| {
                Error::Invalid("an in-memory SQLite database cannot be restored into".into())
            })?;
            for p in [
                path.clone(),
                PathBuf::from(format!("{}-wal", path.display())),
            ] {
                match std::fs::metadata(&p) {
                    Ok(m) if m.len() > 0 => {
                        return Err(not_empty(format!(
                            "the database file {} exists",
                            p.display()
                        )));
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&p, e)),
                }
            }
        }
        Backend::Postgres => {
            let url = target.database_url;
            let connect_err = |source| Error::Connect {
                url: redact_url(url),
                source,
            };
            let mut conn =
                tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(url))
                    .await
                    .map_err(|_| connect_err(sqlx::Error::PoolTimedOut))?
                    .map_err(connect_err)?;
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT relname::text FROM pg_class \
                 WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p') \
                 ORDER BY 1 LIMIT 5",
            )
            .fetch_all(&mut conn)
            .await?;
            conn.close().await?;
            if !tables.is_empty() {
                return Err(not_empty(format!(
                    "the database {} has tables ({}…)",
                    redact_url(url),
                    tables.join(", ")
                )));
            }
        }
    }
    Ok(())
}

fn dir_has_entries(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(dir, e)),
    }
}

struct Done {
    db_seconds: f64,
    db_bytes: u64,
    tables: u64,
    rows: u64,
    keys: u64,
    bytes: u64,
    originals_seconds: f64,
    log_seconds: f64,
    verify_seconds: f64,
    log_entries: u64,
    checkpoints: u64,
    originals_verified: u64,
    key_id: String,
}

async fn load_and_verify(
    snap: &Path,
    manifest: &Manifest,
    target: &RestoreTarget<'_>,
    backend: Backend,
    progress: &dyn Progress,
) -> Result<Done> {
    let files: BTreeMap<String, FileRecord> = manifest
        .files
        .iter()
        .map(|f| (f.path.clone(), f.clone()))
        .collect();
    // The database, and the files, side by side. The log half of the verification
    // needs only the database, so it runs as soon as that is in, while originals may
    // still be copied; it checks the checkpoints with the snapshot's own keys, the
    // bytes `copy_keys` puts into the target (it checks them against the manifest).
    let database = async {
        let t = Instant::now();
        let loaded = load_database(snap, manifest, &files, target, backend, progress).await?;
        let db_seconds = seconds(t);
        let t = Instant::now();
        let db = Db::connect(
            target.database_url,
            target.max_connections,
            MigrationPolicy::RequireCurrent,
        )
        .await?;
        let keys = Keys::load(&snap.join(KEYS_DIR))?;
        let bars = LogBars {
            progress,
            current: Mutex::new(None),
        };
        let chain = log_verify::verify_log(&db, &keys.checkpoint_verifier(), &bars).await;
        bars.finish();
        match chain {
            Ok(chain) => Ok::<_, Error>((loaded, db_seconds, db, chain, seconds(t))),
            Err(e) => {
                db.close().await;
                Err(e)
            }
        }
    };
    let originals = async {
        let keys = copy_keys(snap, &manifest.files, target.keys_dir).await?;
        let t = Instant::now();
        let bytes = copy_originals(snap, manifest, target, progress).await?;
        Ok::<_, Error>((keys, bytes, seconds(t)))
    };
    let ((loaded, db_seconds, db, chain, log_seconds), (keys, bytes, originals_seconds)) =
        tokio::try_join!(database, originals)?;

    // The restored record must verify, and be the snapshot's.
    let t = Instant::now();
    let checked = verify_restored(&db, chain, manifest, target, progress).await;
    db.close().await;
    let (report, key_id) = checked?;
    Ok(Done {
        db_seconds,
        db_bytes: loaded.bytes,
        tables: loaded.tables,
        rows: loaded.rows,
        keys,
        bytes,
        originals_seconds,
        log_seconds,
        verify_seconds: seconds(t),
        log_entries: report.entries,
        checkpoints: report.checkpoints,
        originals_verified: report.originals,
        key_id,
    })
}

async fn load_database(
    snap: &Path,
    manifest: &Manifest,
    files: &BTreeMap<String, FileRecord>,
    target: &RestoreTarget<'_>,
    backend: Backend,
    progress: &dyn Progress,
) -> Result<pg::Loaded> {
    let total: u64 = match backend {
        Backend::Sqlite => files.get(SQLITE_FILE).map_or(0, |f| f.size),
        Backend::Postgres => manifest
            .database
            .tables
            .iter()
            .filter_map(|t| files.get(&t.file))
            .map(|f| f.size)
            .sum(),
    };
    let phase: Arc<dyn Phase> = Arc::from(progress.phase("database", total, true));
    let loaded = match backend {
        Backend::Sqlite => {
            let record = files
                .get(SQLITE_FILE)
                .ok_or_else(|| Error::Invalid(format!("{MANIFEST} does not list {SQLITE_FILE}")))?
                .clone();
            let path = sqlite_path(target.database_url).ok_or_else(|| {
                Error::Invalid("an in-memory SQLite database cannot be restored into".into())
            })?;
            let src = snap.join(SQLITE_FILE);
            let advance = phase.clone();
            blocking(move || {
                let parent = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                    _ => PathBuf::from("."),
                };
                fsio::create_dirs(&parent, 0o700)?;
                let tmp = PathBuf::from(format!("{}.restore-tmp", path.display()));
                let _ = std::fs::remove_file(&tmp);
                let copied =
                    fsio::copy_checked(&src, &tmp, &record.sha256, record.size, true, &|n| {
                        advance.advance(n)
                    });
                if let Err(e) = copied {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
                std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
                fsio::fsync_dir(&parent)?;
                Ok(pg::Loaded {
                    tables: 0,
                    rows: 0,
                    bytes: record.size,
                })
            })
            .await?
        }
        Backend::Postgres => {
            // The schema comes from this build's migrations (checked equal to the
            // snapshot's), the rows from the snapshot.
            let db = Db::connect(
                target.database_url,
                target.max_connections.max(2),
                MigrationPolicy::Apply,
            )
            .await?;
            let loaded = match &db {
                Db::Postgres(pool) => {
                    pg::load(pool, snap, &manifest.database.tables, files, &*phase).await
                }
                Db::Sqlite(_) => Err(Error::Invalid("not a PostgreSQL database".into())),
            };
            db.close().await;
            loaded?
        }
    };
    phase.finish();
    Ok(loaded)
}

/// Copies the snapshot's `keys/` into the key directory (0700, files 0600), checking
/// each file against the manifest.
async fn copy_keys(snap: &Path, files: &[FileRecord], keys_dir: &Path) -> Result<u64> {
    let keys: Vec<FileRecord> = files
        .iter()
        .filter(|f| f.path.starts_with(&format!("{KEYS_DIR}/")))
        .cloned()
        .collect();
    let snap = snap.to_owned();
    let keys_dir = keys_dir.to_owned();
    blocking(move || {
        fsio::create_dirs(&keys_dir, 0o700)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&keys_dir, e))?;
        for f in &keys {
            let rel = &f.path[KEYS_DIR.len() + 1..];
            let dst = keys_dir.join(rel);
            if let Some(parent) = dst.parent() {
                fsio::create_dirs(parent, 0o700)?;
            }
            let (sha, size) = fsio::copy_private(&snap.join(&f.path), &dst)?;
            if sha != f.sha256 || size != f.size {
                return Err(Error::Invalid(format!(
                    "{}: changed since it was checked (now {size} bytes hashing to {sha})",
                    f.path
                )));
            }
        }
        fsio::fsync_dir(&keys_dir)?;
        if let Some(parent) = keys_dir.parent() {
            fsio::fsync_dir(parent)?;
        }
        Ok(keys.len() as u64)
    })
    .await
}

/// Originals handed from the pack reader to a writer at a time (fewer thread
/// hand-offs than one each): up to this many, or fewer once they hold
/// [`BATCH_BYTES`]. Memory is bounded by about `3 × writers` batches.
const BATCH: usize = 64;
const BATCH_BYTES: usize = 4 << 20;

/// Copies every original the snapshot lists into the target store: one thread reads
/// the packs in order and hands batches to writer threads, which re-hash each
/// original and write it. Answers the bytes copied.
async fn copy_originals(
    snap: &Path,
    manifest: &Manifest,
    target: &RestoreTarget<'_>,
    progress: &dyn Progress,
) -> Result<u64> {
    let phase: Arc<dyn Phase> =
        Arc::from(progress.phase("originals", manifest.originals.bytes, true));
    let packs = snap
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(PACKS))
        .ok_or_else(|| Error::Invalid(format!("{}: no backup directory", snap.display())))?;
    // A local store is written directly (each file straight under its name, one
    // syncfs at the end: the store was checked empty and the target is not trusted
    // before the restore finishes, see INCOMPLETE_MARKER), by as many writers as
    // there are cores; any other store through its own `put`, PARALLEL_COPIES at once.
    let (sink, writers) = match target.originals {
        OriginalsConfig::Local { dir } => (
            Sink::Local(ContentDir::fresh(
                &dir.clone()
                    .unwrap_or_else(|| target.data_dir.join(ORIGINALS)),
            )?),
            std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)),
        ),
        OriginalsConfig::S3(_) => (
            Sink::Store(
                Originals::open(target.originals, target.data_dir)?,
                tokio::runtime::Handle::current(),
            ),
            PARALLEL_COPIES,
        ),
    };
    let sink = Arc::new(sink);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(2 * writers);
    let rx = Arc::new(Mutex::new(rx));
    let mut handles = Vec::new();
    for _ in 0..writers {
        let (rx, sink, stop, phase) = (rx.clone(), sink.clone(), stop.clone(), phase.clone());
        handles.push(tokio::task::spawn_blocking(move || {
            write_batches(&rx, &sink, &stop, &*phase)
        }));
    }
    drop(rx); // once every writer has ended, the reader's sends fail
    let list = snap.join(ORIGINALS_LIST);
    let reading = stop.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(BATCH);
        let mut batch_bytes = 0;
        let mut problem = None;
        let facts = for_each_in_pack_order(&packs, &list, true, |l, found| match found {
            Found::Bytes(bytes) => {
                batch_bytes += bytes.len();
                batch.push((l.clone(), bytes));
                if batch.len() < BATCH && batch_bytes < BATCH_BYTES {
                    return true;
                }
                batch_bytes = 0;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                !reading.load(Ordering::Relaxed) && tx.send(full).is_ok()
            }
            Found::Present => true,
            Found::Problem(p) => {
                problem = Some(p);
                false
            }
        });
        if problem.is_none() && !batch.is_empty() {
            let _ = tx.send(batch);
        }
        (facts, problem)
    });
    let read = reader.await;
    let mut bytes = 0u64;
    let mut failed = None;
    for h in handles {
        match h.await {
            Ok(Ok(n)) => bytes += n,
            Ok(Err(e)) => {
                failed.get_or_insert(e);
            }
            Err(e) => {
                failed.get_or_insert(Error::Invalid(format!("writing originals: {e}")));
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let (facts, problem) = read.map_err(|e| Error::Invalid(format!("reading the packs: {e}")))?;
    if let Some(p) = problem {
        return Err(Error::Invalid(p));
    }
    let facts = facts?;
    if facts.count != manifest.originals.count || bytes != manifest.originals.bytes {
        return Err(Error::Invalid(format!(
            "{ORIGINALS_LIST} changed since it was checked: {} originals of {bytes} bytes copied, the manifest says {} of {}",
            facts.count, manifest.originals.count, manifest.originals.bytes
        )));
    }
    blocking(move || match &*sink {
        Sink::Local(local) => local.sync_dirs(),
        Sink::Store(..) => Ok(()),
    })
    .await?;
    phase.finish();
    Ok(bytes)
}

/// Originals read from the packs, on their way to a writer.
type Batch = Vec<(Located, Vec<u8>)>;

/// Where restored originals go.
enum Sink {
    Local(ContentDir),
    /// Any other store, driven from the writer threads on this runtime.
    Store(Originals, tokio::runtime::Handle),
}

/// One writer thread: takes batches until the reader is done (or `stop`), checks
/// each original's hash and writes it. Answers the bytes written; the first error
/// sets `stop` for everyone.
fn write_batches(
    batches: &Mutex<std::sync::mpsc::Receiver<Batch>>,
    sink: &Sink,
    stop: &std::sync::atomic::AtomicBool,
    phase: &dyn Phase,
) -> Result<u64> {
    let mut written = 0u64;
    let mut write = || -> Result<()> {
        loop {
            let next = batches
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .recv();
            let Ok(batch) = next else {
                return Ok(()); // the reader has finished
            };
            for (l, bytes) in batch {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if let Some(p) = altered(&l, &bytes) {
                    return Err(Error::Invalid(p));
                }
                match sink {
                    Sink::Local(dir) => dir.put_new(l.sha256.as_str(), &bytes)?,
                    Sink::Store(store, runtime) => {
                        runtime.block_on(store.put(bytes.into()))?;
                    }
                }
                written += l.size;
                phase.advance(l.size);
            }
        }
    };
    let outcome = write();
    if outcome.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    outcome.map(|()| written)
}

/// Completes the full log verification of the restored record — `chain`, the log
/// half, has run already — with the originals half, and compares its head and latest
/// checkpoint with the manifest's. Answers the report and the key id.
async fn verify_restored(
    db: &Db,
    chain: log_verify::Report,
    manifest: &Manifest,
    target: &RestoreTarget<'_>,
    progress: &dyn Progress,
) -> Result<(log_verify::Report, String)> {
    let originals = Originals::open(target.originals, target.data_dir)?;
    let keys = Keys::load(target.keys_dir)?;
    let bars = LogBars {
        progress,
        current: Mutex::new(None),
    };
    let files = log_verify::verify_stored_originals(db, &originals, &bars).await;
    bars.finish();
    let report = log_verify::Report::merged(chain, files?);
    if !report.ok() {
        let named: Vec<String> = report
            .problems
            .iter()
            .take(PROBLEMS_NAMED)
            .map(ToString::to_string)
            .collect();
        return Err(Error::Invalid(format!(
            "the restored record does not verify: {}",
            named.join("; ")
        )));
    }
    let (count, max_seq) = ledger::size(db).await?;
    let head = ledger::last_entries(db, 1).await?;
    let head_hash = head
        .first()
        .map_or_else(|| GENESIS_HASH.to_owned(), |e| e.entry_hash.clone());
    if count != manifest.log.tree_size
        || max_seq != manifest.log.tree_size
        || head_hash != manifest.log.head_hash
    {
        return Err(Error::Invalid(format!(
            "the restored log ends at entry {max_seq} with hash {head_hash}, but the snapshot's head is entry {} with hash {}",
            manifest.log.tree_size, manifest.log.head_hash
        )));
    }
    let checkpoint = ledger::latest_checkpoint(db)
        .await?
        .as_ref()
        .map(super::CheckpointRecord::from);
    if checkpoint != manifest.checkpoint {
        return Err(Error::Invalid(format!(
            "the restored log's latest checkpoint ({}) is not the snapshot's ({})",
            checkpoint.as_ref().map_or_else(
                || "none".to_owned(),
                |c| format!("tree size {}", c.tree_size)
            ),
            manifest.checkpoint.as_ref().map_or_else(
                || "none".to_owned(),
                |c| format!("tree size {}", c.tree_size)
            ),
        )));
    }
    Ok((report, keys.checkpoint_kid().to_owned()))
}

/// Phases named `<prefix> <name>`.
struct Prefixed<'a> {
    inner: &'a dyn Progress,
    prefix: &'a str,
}

impl Progress for Prefixed<'_> {
    fn phase(&self, name: &str, total: u64, bytes: bool) -> Box<dyn Phase> {
        self.inner
            .phase(&format!("{} {name}", self.prefix), total, bytes)
    }
}

/// The log verifier's phases as bars of their own.
struct LogBars<'a> {
    progress: &'a dyn Progress,
    current: Mutex<Option<Box<dyn Phase>>>,
}

impl LogBars<'_> {
    fn finish(&self) {
        if let Some(p) = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            p.finish();
        }
    }
}

impl LogProgress for LogBars<'_> {
    fn phase(&self, name: &str, total: u64) {
        self.finish();
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(self.progress.phase(&format!("verify {name}"), total, false));
    }

    fn advance(&self, n: u64) {
        if let Some(p) = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            p.advance(n);
        }
    }
}
