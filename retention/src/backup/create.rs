//! `ivan backup create DIR`: a consistent snapshot while the service runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use super::fsio::{self, ContentDir, HashingFile, Put};
use super::layout::{
    COMPLETE, DB_DIR, KEYS_DIR, LOCK, MANIFEST, MANIFEST_SIG, ORIGINALS, ORIGINALS_LIST, SNAPSHOTS,
    SQLITE_FILE, list_line, parse_list_line, snapshot_id,
};
use super::{
    CheckpointRecord, DatabaseDump, FORMAT, FileRecord, LogHead, Manifest, OriginalsSummary,
    PARALLEL_COPIES, POSTGRES_FORMAT, Progress, SQLITE_FORMAT, TableDump, manifest_signing_input,
    pg, seconds,
};
use crate::keys::Keys;
use crate::ledger::{Checkpoint, GENESIS_HASH, format_time};
use crate::{Db, DbConn, Error, Originals, Result, Sha256Hex, on_conn, on_pool};

/// What `backup create` did (the `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct CreateSummary {
    pub snapshot: String,
    pub dir: String,
    pub backend: String,
    pub created_at: String,
    pub log_tree_size: i64,
    pub head_hash: String,
    pub checkpoint_tree_size: Option<i64>,
    /// The checkpoint key that signed the manifest.
    pub key_id: String,
    pub db_bytes: u64,
    pub db_seconds: f64,
    pub keys: u64,
    /// Originals the snapshot needs, and their bytes.
    pub originals: u64,
    pub originals_bytes: u64,
    /// Of those: copied now, and already in DIR from an earlier snapshot.
    pub originals_copied: u64,
    pub originals_skipped: u64,
    pub bytes_copied: u64,
    pub originals_seconds: f64,
    pub total_seconds: f64,
}

/// What the database snapshot says about itself.
struct DbFacts {
    migrations: Vec<i64>,
    head: LogHead,
    checkpoint: Option<CheckpointRecord>,
    database: DatabaseDump,
    files: Vec<FileRecord>,
    originals: OriginalsSummary,
    list_record: FileRecord,
}

/// Snapshots attempted when the retention sweep keeps purging originals a snapshot
/// lists before they are copied (see [`create`]).
const ATTEMPTS: u32 = 3;

/// How one attempt ended.
enum Attempt {
    Done(Box<CreateSummary>),
    /// The retention sweep purged (and deleted) an original the snapshot lists after
    /// the snapshot was taken: that snapshot can never be complete.
    Purged(String),
}

/// Writes a new snapshot of the record into `dir` (created if missing): the
/// database of `db` first, then the originals it lists from `originals` (only those
/// not in `dir` yet), the key directory `keys_dir`, and the signed manifest.
///
/// If the retention sweep purges an original between the database snapshot and its
/// copy, that snapshot is discarded and a new one taken (which no longer lists it),
/// up to [`ATTEMPTS`] times. On any other failure the snapshot stays without
/// `COMPLETE` (partial) and the error says so.
pub async fn create(
    db: &Db,
    originals: &Originals,
    keys_dir: &Path,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<CreateSummary> {
    let started = Instant::now();
    let keys = Keys::load(keys_dir)?;
    fsio::create_dirs(&dir.join(SNAPSHOTS), 0o700)?;
    let _lock = lock(dir)?;
    let mut purged = String::new();
    for _ in 0..ATTEMPTS {
        let now = Utc::now();
        let id = snapshot_id(&now);
        let snap = dir.join(SNAPSHOTS).join(&id);
        std::fs::create_dir(&snap).map_err(|e| Error::io(&snap, e))?;
        match attempt(
            db, originals, &keys, keys_dir, dir, &snap, now, started, progress,
        )
        .await
        {
            Ok(Attempt::Done(summary)) => return Ok(*summary),
            Ok(Attempt::Purged(sha)) => {
                tracing::info!(sha256 = %sha, snapshot = %id, "an original was purged during the backup; taking a new snapshot");
                std::fs::remove_dir_all(&snap).map_err(|e| Error::io(&snap, e))?;
                purged = sha;
            }
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "backup failed: {e}; snapshot {} is partial (no {COMPLETE}) and can be deleted",
                    snap.display()
                )));
            }
        }
    }
    Err(Error::Conflict(format!(
        "the retention sweep purged originals during each of {ATTEMPTS} backup attempts (last: {purged}); run the backup again"
    )))
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    db: &Db,
    originals: &Originals,
    keys: &Keys,
    keys_dir: &Path,
    dir: &Path,
    snap: &Path,
    now: chrono::DateTime<Utc>,
    started: Instant,
    progress: &dyn Progress,
) -> Result<Attempt> {
    let id = snapshot_id(&now);
    fsio::create_dirs(&snap.join(DB_DIR), 0o700)?;
    // 1. The database, as one snapshot; everything else is decided by it.
    let db_started = Instant::now();
    let facts = match db {
        Db::Sqlite(pool) => sqlite_snapshot(pool, snap, progress).await?,
        Db::Postgres(pool) => postgres_snapshot(pool, snap, progress).await?,
    };
    let db_seconds = seconds(db_started);
    let db_bytes = facts.files.iter().map(|f| f.size).sum();

    // 2. The keys.
    let mut files = facts.files;
    files.push(facts.list_record);
    let key_files = copy_keys(keys_dir, &snap.join(KEYS_DIR)).await?;
    let copied = Keys::load(&snap.join(KEYS_DIR))?;
    if copied.checkpoint_kid() != keys.checkpoint_kid() {
        return Err(Error::Invalid(format!(
            "the key directory changed while it was copied (checkpoint key {} became {})",
            keys.checkpoint_kid(),
            copied.checkpoint_kid()
        )));
    }
    let key_count = key_files.len() as u64;
    files.extend(key_files);
    files.sort_by(|a, b| a.path.cmp(&b.path));

    // 3. The originals the snapshot lists.
    let orig_started = Instant::now();
    let copied = match copy_originals(db, originals, dir, snap, &facts.originals, progress).await? {
        Copy::Done(c) => c,
        Copy::Purged(sha) => return Ok(Attempt::Purged(sha)),
    };
    let originals_seconds = seconds(orig_started);

    // 4. The manifest, its signature, and COMPLETE last.
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        snapshot: id.clone(),
        created_at: format_time(&now),
        ivan_version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: db.backend().to_string(),
        migrations: facts.migrations,
        log: facts.head,
        checkpoint: facts.checkpoint,
        database: facts.database,
        files,
        originals: facts.originals,
    };
    let mut json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Invalid(format!("manifest: {e}")))?;
    json.push(b'\n');
    fsio::write_new(&snap.join(MANIFEST), &json, 0o644)?;
    let signature = keys.sign_checkpoint(&manifest_signing_input(&json));
    let sig = format!("{signature}\n{}\n", keys.checkpoint_kid());
    fsio::write_new(&snap.join(MANIFEST_SIG), sig.as_bytes(), 0o644)?;
    fsio::fsync_dir(snap)?;
    let manifest_sha = sha_hex(&json);
    fsio::write_new(
        &snap.join(COMPLETE),
        format!("{manifest_sha}\n").as_bytes(),
        0o644,
    )?;
    fsio::fsync_dir(snap)?;
    fsio::fsync_dir(&dir.join(SNAPSHOTS))?;
    Ok(Attempt::Done(Box::new(CreateSummary {
        snapshot: id.clone(),
        dir: dir.display().to_string(),
        backend: manifest.backend,
        created_at: manifest.created_at,
        log_tree_size: manifest.log.tree_size,
        head_hash: manifest.log.head_hash,
        checkpoint_tree_size: manifest.checkpoint.as_ref().map(|c| c.tree_size),
        key_id: keys.checkpoint_kid().to_owned(),
        db_bytes,
        db_seconds,
        keys: key_count,
        originals: manifest.originals.count,
        originals_bytes: manifest.originals.bytes,
        originals_copied: copied.copied,
        originals_skipped: copied.skipped,
        bytes_copied: copied.bytes,
        originals_seconds,
        total_seconds: seconds(started),
    })))
}

fn sha_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Only one `backup create` writes into a directory at a time.
fn lock(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Conflict(format!(
            "another `ivan backup create` is writing into {} (lock {} is held)",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// SQLite: `VACUUM INTO` a consistent copy (it reads in one transaction, beside a
/// running server's writes), then read everything else from that copy.
async fn sqlite_snapshot(
    pool: &sqlx::SqlitePool,
    snap: &Path,
    progress: &dyn Progress,
) -> Result<DbFacts> {
    let phase = progress.phase("database", 0, true);
    let path = snap.join(SQLITE_FILE);
    let target = path
        .to_str()
        .ok_or_else(|| Error::Invalid(format!("{}: path is not UTF-8", path.display())))?
        .to_owned();
    sqlx::query("VACUUM INTO $1")
        .bind(&target)
        .execute(pool)
        .await?;
    let hashed = path.clone();
    let (sha256, size) = tokio::task::spawn_blocking(move || {
        std::fs::File::open(&hashed)
            .and_then(|f| f.sync_all())
            .and_then(|()| fsio::hash_file(&hashed))
            .map_err(|e| Error::io(&hashed, e))
    })
    .await
    .map_err(|e| Error::Invalid(format!("hashing the database copy: {e}")))??;
    fsio::fsync_dir(&snap.join(DB_DIR))?;
    phase.advance(size);
    phase.finish();
    let opts = SqliteConnectOptions::new().filename(&path).read_only(true);
    let mut conn = SqliteConnection::connect_with(&opts).await?;
    let facts = read_facts(DbConn::Sqlite(&mut conn), snap, progress).await;
    conn.close().await?;
    let (migrations, head, checkpoint, originals, list_record) = facts?;
    Ok(DbFacts {
        migrations,
        head,
        checkpoint,
        database: DatabaseDump {
            format: SQLITE_FORMAT.to_owned(),
            tables: Vec::new(),
        },
        files: vec![FileRecord {
            path: SQLITE_FILE.to_owned(),
            sha256,
            size,
        }],
        originals,
        list_record,
    })
}

/// PostgreSQL: every table, the log head, the checkpoint and the originals list
/// read in one `REPEATABLE READ READ ONLY` transaction: one consistent snapshot.
async fn postgres_snapshot(
    pool: &sqlx::PgPool,
    snap: &Path,
    progress: &dyn Progress,
) -> Result<DbFacts> {
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    pg::set_session(&mut tx).await?;
    pg::refuse_sequences(&mut tx).await?;
    // The first statement fixes the snapshot; everything below sees the same one.
    let (migrations, head, checkpoint, originals, list_record) =
        read_facts(DbConn::Postgres(&mut tx), snap, progress).await?;
    let tables = pg::tables(&mut tx).await?;
    let phase = progress.phase("database", 0, true);
    let mut files = Vec::new();
    let mut dumps = Vec::new();
    for (name, columns) in tables {
        let (record, rows) = pg::dump_table(&mut tx, snap, &name, &columns, &*phase).await?;
        dumps.push(TableDump {
            name,
            file: record.path.clone(),
            columns,
            rows,
        });
        files.push(record);
    }
    phase.finish();
    tx.rollback().await?;
    fsio::fsync_dir(&snap.join(DB_DIR))?;
    Ok(DbFacts {
        migrations,
        head,
        checkpoint,
        database: DatabaseDump {
            format: POSTGRES_FORMAT.to_owned(),
            tables: dumps,
        },
        files,
        originals,
        list_record,
    })
}

type Facts = (
    Vec<i64>,
    LogHead,
    Option<CheckpointRecord>,
    OriginalsSummary,
    FileRecord,
);

/// Reads, from the snapshot `conn` sees: the applied migrations, the log head, the
/// latest checkpoint, and the originals still kept (written to `originals.list`).
async fn read_facts(mut conn: DbConn<'_>, snap: &Path, progress: &dyn Progress) -> Result<Facts> {
    let migrations: Vec<i64> = on_conn!(&mut conn, c => {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut *c)
            .await?
    });
    let head: Option<(i64, String)> = on_conn!(&mut conn, c => {
        sqlx::query_as("SELECT seq, entry_hash FROM log_entries ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *c)
            .await?
    });
    let head = head.map_or_else(
        || LogHead {
            tree_size: 0,
            head_hash: GENESIS_HASH.to_owned(),
        },
        |(tree_size, head_hash)| LogHead {
            tree_size,
            head_hash,
        },
    );
    let checkpoint: Option<Checkpoint> = on_conn!(&mut conn, c => {
        sqlx::query_as(
            "SELECT tree_size, head_hash, signed_at, key_id, signature FROM log_checkpoints \
             ORDER BY tree_size DESC LIMIT 1",
        )
        .fetch_optional(&mut *c)
        .await?
    });
    // Hex digits sort the same in every collation; "C" on PostgreSQL makes it certain.
    let sql = match conn {
        DbConn::Sqlite(_) => {
            "SELECT sha256, size_bytes FROM originals WHERE purged_at IS NULL ORDER BY sha256"
        }
        DbConn::Postgres(_) => {
            "SELECT sha256, size_bytes FROM originals WHERE purged_at IS NULL \
             ORDER BY sha256 COLLATE \"C\""
        }
    };
    let path = snap.join(ORIGINALS_LIST);
    let phase = progress.phase("originals list", 0, false);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
    let writer_path = path.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<(String, u64)> {
        let mut file = HashingFile::create(&writer_path, 0o644)?;
        while let Some(chunk) = rx.blocking_recv() {
            file.write(chunk.as_bytes())?;
        }
        let (sha, size, _) = file.finish()?;
        Ok((sha, size))
    });
    let listed: Result<(u64, u64)> = on_conn!(&mut conn, c => {
        async {
            let mut rows = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql)).fetch(&mut *c);
            let (mut count, mut bytes, mut pending) = (0u64, 0u64, 0u64);
            let mut chunk = String::with_capacity(64 * 1024);
            while let Some((sha, size)) = rows.try_next().await? {
                let size = u64::try_from(size).map_err(|_| {
                    Error::Invalid(format!("original {sha} has a negative size in the database"))
                })?;
                if Sha256Hex::parse(&sha).is_none_or(|h| h.as_str() != sha) {
                    return Err(Error::Invalid(format!(
                        "the originals table holds {sha:?}, which is not a lowercase SHA-256"
                    )));
                }
                chunk.push_str(&list_line(&sha, size));
                count += 1;
                bytes += size;
                pending += 1;
                if chunk.len() >= 60 * 1024 {
                    phase.advance(std::mem::take(&mut pending));
                    if tx.send(std::mem::take(&mut chunk)).await.is_err() {
                        break;
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(chunk).await;
            }
            Ok((count, bytes))
        }
        .await
    });
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Error::Invalid(format!("writing {}: {e}", path.display())))?;
    let (count, bytes) = listed?;
    let (list_sha256, list_size) = written?;
    phase.finish();
    Ok((
        migrations,
        head,
        checkpoint.as_ref().map(CheckpointRecord::from),
        OriginalsSummary {
            count,
            bytes,
            list_sha256: list_sha256.clone(),
        },
        FileRecord {
            path: ORIGINALS_LIST.to_owned(),
            sha256: list_sha256,
            size: list_size,
        },
    ))
}

/// Copies every file of the key directory into `dest` (0700), files 0600.
async fn copy_keys(keys_dir: &Path, dest: &Path) -> Result<Vec<FileRecord>> {
    let keys_dir = keys_dir.to_owned();
    let dest = dest.to_owned();
    tokio::task::spawn_blocking(move || -> Result<Vec<FileRecord>> {
        fsio::create_dirs(&dest, 0o700)?;
        let mut out = Vec::new();
        for rel in fsio::list_files(&keys_dir)? {
            // Half-written key files of a concurrent first start are not keys yet.
            if rel.contains(".tmp") {
                continue;
            }
            let target = dest.join(&rel);
            if let Some(parent) = target.parent() {
                fsio::create_dirs(parent, 0o700)?;
            }
            let (sha256, size) = fsio::copy_private(&keys_dir.join(&rel), &target)?;
            out.push(FileRecord {
                path: format!("{KEYS_DIR}/{rel}"),
                sha256,
                size,
            });
        }
        fsio::fsync_dir(&dest)?;
        Ok(out)
    })
    .await
    .map_err(|e| Error::Invalid(format!("copying the keys: {e}")))?
}

#[derive(Debug, Default)]
pub(super) struct Copied {
    pub(super) copied: u64,
    pub(super) skipped: u64,
    pub(super) bytes: u64,
}

/// How copying a snapshot's originals ended.
pub(super) enum Copy {
    Done(Copied),
    /// This original was purged after the snapshot was taken: its bytes are gone.
    Purged(String),
}

/// One original's fate.
enum One {
    Put(Put),
    Purged(Sha256Hex),
}

/// Copies the originals `originals.list` names into `DIR/originals`, skipping those
/// already there, `PARALLEL_COPIES` at a time; the store re-checks each hash. An
/// original missing from the store is an error, unless the live database `db` says
/// the retention sweep purged it since the snapshot ([`Copy::Purged`]).
pub(super) async fn copy_originals(
    db: &Db,
    originals: &Originals,
    dir: &Path,
    snap: &Path,
    summary: &OriginalsSummary,
    progress: &dyn Progress,
) -> Result<Copy> {
    // Files are written without an fsync each and made durable by one syncfs at
    // the end; the marker says so until then, and a crash leaves it for the next
    // run, which then re-hashes what it finds instead of trusting it.
    let root = dir.join(ORIGINALS);
    fsio::create_dirs(&root, 0o755)?;
    let marker = root.join(fsio::UNSYNCED_MARKER);
    let recheck = marker.exists();
    if !recheck {
        fsio::write_new(&marker, b"", 0o644)?;
        fsio::fsync_dir(&root)?;
    }
    let content = Arc::new(ContentDir::unsynced(&root, recheck)?);
    let phase: Arc<dyn super::Phase> = Arc::from(progress.phase("originals", summary.bytes, true));
    let list = list_stream(snap.join(ORIGINALS_LIST)).await?;
    let outcomes = list
        .map(|line| {
            let content = content.clone();
            let phase = phase.clone();
            async move {
                let (sha, size) = line?;
                let present = {
                    let content = content.clone();
                    let sha = sha.clone();
                    blocking(move || content.has(sha.as_str(), size)).await?
                };
                if present {
                    phase.advance(size);
                    return Ok(One::Put(Put::Present));
                }
                let bytes = match originals.get(&sha).await {
                    Ok(b) => b,
                    Err(Error::MissingOriginal(_)) if purged_since(db, &sha).await? => {
                        return Ok(One::Purged(sha));
                    }
                    Err(e) => return Err(e),
                };
                if bytes.len() as u64 != size {
                    return Err(Error::Invalid(format!(
                        "original {sha} is {} bytes but the database says {size}",
                        bytes.len()
                    )));
                }
                let put = blocking(move || content.put_bytes(sha.as_str(), &bytes)).await?;
                phase.advance(size);
                Ok(One::Put(put))
            }
        })
        .buffer_unordered(PARALLEL_COPIES);
    let mut outcomes = std::pin::pin!(outcomes);
    let mut copied = Copied::default();
    let mut purged = None;
    while let Some(one) = outcomes.try_next().await? {
        match one {
            One::Put(Put::Copied(n)) => {
                copied.copied += 1;
                copied.bytes += n;
            }
            One::Put(Put::Present) => copied.skipped += 1,
            One::Purged(sha) => {
                purged = Some(sha);
                break;
            }
        }
    }
    let syncing = content.clone();
    blocking(move || -> Result<()> {
        syncing.sync_dirs()?;
        std::fs::remove_file(&marker).map_err(|e| Error::io(&marker, e))?;
        fsio::fsync_dir(&root)
    })
    .await?;
    phase.finish();
    Ok(match purged {
        Some(sha) => Copy::Purged(sha.to_string()),
        None => Copy::Done(copied),
    })
}

/// Whether the live database marks `sha` purged (the sweep commits the mark, then
/// deletes the bytes).
async fn purged_since(db: &Db, sha: &Sha256Hex) -> Result<bool> {
    let purged: Option<bool> = on_pool!(db, pool => {
        sqlx::query_scalar("SELECT purged_at IS NOT NULL FROM originals WHERE sha256 = $1")
            .bind(sha.as_str())
            .fetch_optional(pool)
            .await?
    });
    Ok(purged == Some(true))
}

/// Runs blocking file work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Invalid(format!("file task failed: {e}")))?
}

/// The entries of an `originals.list`, parsed, streamed line by line.
pub(super) async fn list_stream(
    path: PathBuf,
) -> Result<impl futures::Stream<Item = Result<(Sha256Hex, u64)>>> {
    use tokio::io::AsyncBufReadExt;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Error::io(&path, e))?;
    let lines = tokio::io::BufReader::with_capacity(fsio::CHUNK, file).lines();
    // After the first error the stream ends.
    Ok(futures::stream::unfold(
        (lines, path, 0u64, false),
        |(mut lines, path, n, failed)| async move {
            if failed {
                return None;
            }
            match lines.next_line().await {
                Ok(Some(line)) => {
                    let item = parse_list_line(&line).ok_or_else(|| {
                        Error::Invalid(format!(
                            "{} line {}: not \"<sha256> <size>\"",
                            path.display(),
                            n + 1
                        ))
                    });
                    let failed = item.is_err();
                    Some((item, (lines, path, n + 1, failed)))
                }
                Ok(None) => None,
                Err(e) => Some((Err(Error::io(&path, e)), (lines, path, n + 1, true))),
            }
        },
    ))
}
