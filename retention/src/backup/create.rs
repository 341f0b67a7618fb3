//! `ivan backup create DIR`: a consistent snapshot while the service runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use super::fsio::{self, HashingFile};
use super::layout::{
    COMPLETE, DB_DIR, KEYS_DIR, LOCK, MANIFEST, MANIFEST_SIG, ORIGINALS_LIST, SNAPSHOTS,
    SQLITE_FILE, WANTED, choose_snapshot, is_snapshot_id, list_line, parse_list_line, snapshot_dir,
    snapshot_id,
};
use super::packs::{ListReader, Located, PACKS, PackLengths, PackWriter, located_line};
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
    /// Packs written for the copied originals.
    pub packs_written: u64,
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

    // 3. The originals the snapshot lists: into packs, and where they lie into the list.
    let orig_started = Instant::now();
    let copied = match copy_originals(db, originals, dir, snap, &facts.originals, progress).await? {
        Copy::Done(c) => c,
        Copy::Purged(sha) => return Ok(Attempt::Purged(sha)),
    };
    let originals_seconds = seconds(orig_started);
    let wanted = snap.join(WANTED);
    std::fs::remove_file(&wanted).map_err(|e| Error::io(&wanted, e))?;
    let list = copied
        .list
        .clone()
        .ok_or_else(|| Error::Invalid("the originals list was not written".into()))?;
    let mut originals_summary = facts.originals;
    originals_summary.list_sha256 = list.sha256.clone();
    files.push(list);
    files.sort_by(|a, b| a.path.cmp(&b.path));

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
        originals: originals_summary,
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
        packs_written: copied.packs,
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
    let (migrations, head, checkpoint, originals) = facts?;
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
    let (migrations, head, checkpoint, originals) =
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
    })
}

type Facts = (
    Vec<i64>,
    LogHead,
    Option<CheckpointRecord>,
    OriginalsSummary,
);

/// Reads, from the snapshot `conn` sees: the applied migrations, the log head, the
/// latest checkpoint, and the originals still kept (written to `originals.wanted`,
/// which the copy turns into `originals.list`; the summary's `list_sha256` is filled
/// in then).
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
    let checkpoint: Option<Checkpoint> = crate::ledger::latest_checkpoint_on(&mut conn).await?;
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
    let path = snap.join(WANTED);
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
    written?;
    phase.finish();
    Ok((
        migrations,
        head,
        checkpoint.as_ref().map(CheckpointRecord::from),
        OriginalsSummary {
            count,
            bytes,
            list_sha256: String::new(),
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
    /// Packs written.
    pub(super) packs: u64,
    /// The located `originals.list` written.
    pub(super) list: Option<FileRecord>,
}

/// How copying a snapshot's originals ended.
pub(super) enum Copy {
    Done(Copied),
    /// This original was purged after the snapshot was taken: its bytes are gone.
    Purged(String),
}

/// What to do with one wanted original, decided in list order.
enum Job {
    /// An earlier snapshot's pack holds it.
    Have(Located),
    /// Copy it from the store.
    Fetch(Sha256Hex, u64),
}

/// One wanted original, ready to be listed.
enum Item {
    Have(Located),
    New(Sha256Hex, u64, bytes::Bytes),
    /// Everything was sent: finish the packs and the list.
    End,
}

/// Writes the located `originals.list` for the originals `originals.wanted` names:
/// those the newest complete snapshot's packs already hold are listed where they are,
/// the others are read from `originals` (`PARALLEL_COPIES` at a time; the store
/// checks each hash) and appended to new packs of this snapshot. An original missing
/// from the store is an error, unless the live database `db` says the retention
/// sweep purged it since the snapshot ([`Copy::Purged`]). Whenever it does not end
/// with [`Copy::Done`], the packs it wrote and the list are removed again.
pub(super) async fn copy_originals(
    db: &Db,
    originals: &Originals,
    dir: &Path,
    snap: &Path,
    summary: &OriginalsSummary,
    progress: &dyn Progress,
) -> Result<Copy> {
    let packs = dir.join(PACKS);
    fsio::create_dirs(&packs, 0o755)?;
    let snapshot = snap
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| is_snapshot_id(n))
        .ok_or_else(|| Error::Invalid(format!("{}: not a snapshot directory", snap.display())))?
        .to_owned();
    // The newest complete snapshot (this one is not complete yet).
    let previous = choose_snapshot(dir, None)
        .ok()
        .map(|(id, _)| snapshot_dir(dir, &id).join(ORIGINALS_LIST));
    let phase: Arc<dyn super::Phase> = Arc::from(progress.phase("originals", summary.bytes, true));

    let (jobs_tx, mut jobs_rx) = tokio::sync::mpsc::channel::<Job>(4 * PARALLEL_COPIES);
    let planner = {
        let (wanted, packs) = (snap.join(WANTED), packs.clone());
        tokio::task::spawn_blocking(move || plan(&wanted, previous.as_deref(), &packs, &jobs_tx))
    };
    let (items_tx, items_rx) = tokio::sync::mpsc::channel::<Item>(4 * PARALLEL_COPIES);
    let writer = {
        let (list, phase) = (snap.join(ORIGINALS_LIST), phase.clone());
        tokio::task::spawn_blocking(move || write_list(&list, &packs, &snapshot, items_rx, &*phase))
    };
    let jobs = futures::stream::poll_fn(move |cx| jobs_rx.poll_recv(cx));
    let fetched = jobs
        .map(|job| async move {
            Ok::<_, Error>(match job {
                Job::Have(l) => Ok(Item::Have(l)),
                Job::Fetch(sha, size) => match originals.get(&sha).await {
                    Ok(bytes) => Ok(Item::New(sha, size, bytes)),
                    Err(Error::MissingOriginal(_)) if purged_since(db, &sha).await? => Err(sha),
                    Err(e) => return Err(e),
                },
            })
        })
        .buffered(PARALLEL_COPIES);
    let (mut failed, mut purged) = (None, None);
    {
        let mut fetched = std::pin::pin!(fetched);
        while let Some(item) = fetched.next().await {
            match item {
                Ok(Ok(item)) => {
                    if items_tx.send(item).await.is_err() {
                        break; // the writer failed; it says why
                    }
                }
                Ok(Err(sha)) => {
                    purged = Some(sha);
                    break;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
    } // dropping the job stream stops the planner
    let planned = planner
        .await
        .map_err(|e| Error::Invalid(format!("planning the copy: {e}")))
        .and_then(|r| r);
    if failed.is_none() && purged.is_none() && planned.is_ok() {
        let _ = items_tx.send(Item::End).await;
    }
    drop(items_tx);
    let written = writer
        .await
        .map_err(|e| Error::Invalid(format!("writing the packs: {e}")))
        .and_then(|r| r);
    phase.finish();
    if let Some(e) = failed {
        return Err(e);
    }
    planned?;
    if let Some(sha) = purged {
        return Ok(Copy::Purged(sha.to_string()));
    }
    written?
        .map(Copy::Done)
        .ok_or_else(|| Error::Invalid("copying the originals stopped before the end".into()))
}

/// Reads `wanted` ("<sha256> <size>" in hash order) beside the `previous` located
/// list (also in hash order) and sends one job per wanted original, in order.
fn plan(
    wanted: &Path,
    previous: Option<&Path>,
    packs: &Path,
    jobs: &tokio::sync::mpsc::Sender<Job>,
) -> Result<()> {
    use std::io::BufRead;
    let file = std::fs::File::open(wanted).map_err(|e| Error::io(wanted, e))?;
    let lines = std::io::BufReader::with_capacity(fsio::CHUNK, file).lines();
    let mut earlier = previous
        .filter(|p| p.is_file())
        .map(ListReader::open)
        .transpose()?
        .into_iter()
        .flatten()
        .peekable();
    let mut lengths = PackLengths::new(packs);
    for (n, line) in lines.enumerate() {
        let line = line.map_err(|e| Error::io(wanted, e))?;
        let (sha, size) = parse_list_line(&line).ok_or_else(|| {
            Error::Invalid(format!("{} line {}: malformed", wanted.display(), n + 1))
        })?;
        while earlier.next_if(|l| l.sha256 < sha).is_some() {}
        let job = match earlier.peek() {
            Some(l) if l.sha256 == sha && l.size == size && lengths.holds(l) => {
                Job::Have(l.clone())
            }
            _ => Job::Fetch(sha, size),
        };
        if jobs.blocking_send(job).is_err() {
            break; // the copy stopped
        }
    }
    Ok(())
}

/// Writes the located list and the new packs from `items`, in order. Answers what
/// it wrote once [`Item::End`] arrives; without it (the copy stopped) removes the
/// packs and the list and answers `None`.
fn write_list(
    list: &Path,
    packs: &Path,
    snapshot: &str,
    mut items: tokio::sync::mpsc::Receiver<Item>,
    phase: &dyn super::Phase,
) -> Result<Option<Copied>> {
    let mut file = HashingFile::create(list, 0o644)?;
    let mut writer = PackWriter::new(packs, snapshot);
    let mut copied = Copied::default();
    let mut write = || -> Result<bool> {
        while let Some(item) = items.blocking_recv() {
            let located = match item {
                Item::Have(l) => {
                    copied.skipped += 1;
                    l
                }
                Item::New(sha256, size, bytes) => {
                    if bytes.len() as u64 != size {
                        return Err(Error::Invalid(format!(
                            "original {sha256} is {} bytes but the database says {size}",
                            bytes.len()
                        )));
                    }
                    let (pack, offset) = writer.append(&bytes)?;
                    copied.copied += 1;
                    copied.bytes += size;
                    Located {
                        sha256,
                        size,
                        pack,
                        offset,
                    }
                }
                Item::End => return Ok(true),
            };
            file.write(located_line(&located).as_bytes())?;
            phase.advance(located.size);
        }
        Ok(false)
    };
    match write() {
        Ok(true) => {
            copied.packs = writer.finish()? as u64;
            let (sha256, size, _) = file.finish()?;
            copied.list = Some(FileRecord {
                path: ORIGINALS_LIST.to_owned(),
                sha256,
                size,
            });
            Ok(Some(copied))
        }
        outcome => {
            writer.discard();
            drop(file);
            let _ = std::fs::remove_file(list);
            outcome.map(|_| None)
        }
    }
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
