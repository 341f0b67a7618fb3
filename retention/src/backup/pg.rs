//! PostgreSQL dump and load with `COPY`, text format.
//!
//! Text rather than binary: the text format is specified independently of server
//! version and machine architecture, so a snapshot taken today loads into the
//! PostgreSQL of ten years from now; it is exact for every type the schema uses
//! (text, bigint, bytea as hex, timestamptz to the microsecond with the session pinned
//! to `DateStyle` ISO and time zone UTC); and an operator can read it. Binary would
//! be only marginally faster here: the bulk of a backup is originals, not rows.
//!
//! Tables are loaded in foreign-key order, computed from the target's catalog
//! ([`fk_order`]), inside one transaction. Primary-key, unique and foreign-key
//! constraints and the secondary indexes are dropped first and re-created after the
//! data is in (keys, then indexes, then foreign keys), which is much faster than
//! maintaining them row by row; re-creating them checks every row, so the load still
//! refuses rows that break a key or a reference, and the transaction leaves nothing
//! behind. Check and not-null constraints stay in force throughout. (No `TRUNCATE` +
//! `COPY … FREEZE`: the log's append-only trigger refuses `TRUNCATE`, rightly.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};

use super::fsio::{CHUNK, HashingFile};
use super::layout::{DB_DIR, is_plain_identifier};
use super::{FileRecord, Phase, TableDump};
use crate::{Error, Result};

/// Session settings that make the text format unambiguous, for dump and load alike.
const SESSION: [&str; 5] = [
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 3",
    "SET LOCAL bytea_output = 'hex'",
];

/// Memory for rebuilding indexes after a load.
const LOAD_MAINTENANCE_WORK_MEM: &str = "SET LOCAL maintenance_work_mem = '256MB'";

/// `"name"`: the identifier quoted (it is checked to be plain, see
/// [`is_plain_identifier`], so this is only belt and braces).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn checked(name: &str, what: &str) -> Result<()> {
    if is_plain_identifier(name) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} {name:?} is not a plain identifier; the backup handles only [a-z_][a-z0-9_]*"
        )))
    }
}

pub async fn set_session(conn: &mut PgConnection) -> Result<()> {
    for sql in SESSION {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The tables the migrations themselves write (sqlx's record of them and
/// `schema_compatibility`): a restore's migrations make them, so a dump leaves them out.
const MIGRATIONS_OWN: &str = "('_sqlx_migrations', 'schema_compatibility')";

/// Every table of the current schema except the migration bookkeeping, sorted by
/// name, with its columns in attribute order (generated columns excluded).
pub async fn tables(conn: &mut PgConnection) -> Result<Vec<(String, Vec<String>)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.relname::text, a.attname::text FROM pg_class c \
         JOIN pg_attribute a ON a.attrelid = c.oid \
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') \
         AND c.relname NOT IN {MIGRATIONS_OWN} AND a.attnum > 0 AND NOT a.attisdropped \
         AND a.attgenerated = '' \
         ORDER BY c.relname, a.attnum"
    )))
    .fetch_all(&mut *conn)
    .await?;
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (table, column) in rows {
        checked(&table, "table")?;
        checked(&column, "column")?;
        match out.last_mut() {
            Some((t, cols)) if *t == table => cols.push(column),
            _ => out.push((table, vec![column])),
        }
    }
    Ok(out)
}

/// Refuses a schema with sequences: their values are not carried by the table data,
/// and the schema has none today. A migration that adds one must extend the backup.
pub async fn refuse_sequences(conn: &mut PgConnection) -> Result<()> {
    let seqs: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class \
         WHERE relnamespace = current_schema()::regnamespace AND relkind = 'S' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    if seqs.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "the schema has sequences ({}), which this backup format does not carry",
            seqs.join(", ")
        )))
    }
}

/// Writes `COPY table (columns) TO STDOUT` into `snapshot/db/<table>.copy`; answers
/// the file record and the number of rows.
pub async fn dump_table(
    conn: &mut PgConnection,
    snapshot: &Path,
    table: &str,
    columns: &[String],
    phase: &dyn Phase,
) -> Result<(FileRecord, u64)> {
    let rel = format!("{DB_DIR}/{table}.copy");
    let path = snapshot.join(&rel);
    let cols: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let statement = format!("COPY {} ({}) TO STDOUT", quote(table), cols.join(", "));
    // The database streams into a channel; a blocking task writes and hashes, so
    // reading and writing overlap and the runtime's threads never block on disk.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let writer_path = path.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<(String, u64, u64)> {
        let mut file = HashingFile::create(&writer_path, 0o644)?;
        while let Some(chunk) = rx.blocking_recv() {
            file.write(&chunk)?;
        }
        file.finish()
    });
    let streamed: Result<()> = async {
        let mut stream = conn.copy_out_raw(&statement).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            phase.advance(chunk.len() as u64);
            if tx.send(chunk).await.is_err() {
                // The writer stopped (its error is reported below); drain the rest so
                // the connection stays usable.
                while stream.next().await.is_some() {}
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Error::Invalid(format!("writing {}: {e}", path.display())))?;
    streamed?;
    let (sha256, size, rows) = written?;
    Ok((
        FileRecord {
            path: rel,
            sha256,
            size,
        },
        rows,
    ))
}

/// Orders `tables` so that every table comes after the tables it references
/// (`edges` are `(referencing, referenced)`; references to oneself or to tables not
/// listed are ignored). Among tables free to go, by name, so the order is stable.
/// A reference cycle is an error naming the tables in it.
pub fn fk_order(tables: &[String], edges: &[(String, String)]) -> Result<Vec<String>> {
    let known: BTreeSet<&str> = tables.iter().map(String::as_str).collect();
    let mut waits_for: BTreeMap<&str, BTreeSet<&str>> =
        known.iter().map(|t| (*t, BTreeSet::new())).collect();
    for (child, parent) in edges {
        if child != parent && known.contains(child.as_str()) && known.contains(parent.as_str()) {
            waits_for
                .entry(child.as_str())
                .or_default()
                .insert(parent.as_str());
        }
    }
    let mut order: Vec<String> = Vec::with_capacity(tables.len());
    let mut done: BTreeSet<&str> = BTreeSet::new();
    while done.len() < known.len() {
        let ready: Vec<&str> = waits_for
            .iter()
            .filter(|(t, parents)| !done.contains(*t) && parents.iter().all(|p| done.contains(p)))
            .map(|(t, _)| *t)
            .collect();
        if ready.is_empty() {
            let stuck: Vec<&str> = known.difference(&done).copied().collect();
            return Err(Error::Invalid(format!(
                "foreign keys form a cycle among {}; cannot order the load",
                stuck.join(", ")
            )));
        }
        for t in ready {
            done.insert(t);
            order.push(t.to_owned());
        }
    }
    Ok(order)
}

/// `(referencing table, referenced table)` for every foreign key in the schema.
async fn fk_edges(conn: &mut PgConnection) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT c.relname::text, p.relname::text FROM pg_constraint k \
         JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid \
         WHERE k.contype = 'f' AND c.relnamespace = current_schema()::regnamespace",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// `(name, definition)` of the indexes that back no constraint.
async fn secondary_indexes(conn: &mut PgConnection) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT ic.relname::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
         JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid \
         WHERE t.relnamespace = current_schema()::regnamespace \
         AND t.relname NOT IN {MIGRATIONS_OWN} \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
         ORDER BY 1"
    )))
    .fetch_all(&mut *conn)
    .await?)
}

/// A primary-key, unique or foreign-key constraint, as the catalog defines it.
struct KeyConstraint {
    table: String,
    name: String,
    definition: String,
    foreign: bool,
}

impl KeyConstraint {
    async fn drop(&self, conn: &mut PgConnection) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            quote(&self.table),
            quote(&self.name)
        )))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn add(&self, conn: &mut PgConnection) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}",
            quote(&self.table),
            quote(&self.name),
            self.definition
        )))
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            Error::Invalid(format!(
                "table {}: the loaded rows break {} ({}): {e}",
                self.table, self.name, self.definition
            ))
        })?;
        Ok(())
    }
}

/// The schema's primary-key, unique and foreign-key constraints (checks and
/// not-null stay in force during the load: they cost little per row).
async fn key_constraints(conn: &mut PgConnection) -> Result<Vec<KeyConstraint>> {
    let rows: Vec<(String, String, String, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT t.relname::text, k.conname::text, pg_get_constraintdef(k.oid), k.contype = 'f' \
         FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid \
         WHERE t.relnamespace = current_schema()::regnamespace \
         AND t.relname NOT IN {MIGRATIONS_OWN} AND k.contype IN ('p', 'u', 'f') \
         ORDER BY 1, 2"
    )))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(table, name, definition, foreign)| {
            checked(&table, "table")?;
            checked(&name, "constraint")?;
            Ok(KeyConstraint {
                table,
                name,
                definition,
                foreign,
            })
        })
        .collect()
}

/// What [`load`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Loaded {
    pub tables: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// Loads the dumped `tables` from `snapshot` into the (migrated, empty) database of
/// `pool`, in one transaction; `files` are the manifest's records, against which
/// every file is checked as it streams (a mismatch aborts before commit). Then
/// `ANALYZE`.
pub async fn load(
    pool: &PgPool,
    snapshot: &Path,
    tables: &[TableDump],
    files: &BTreeMap<String, FileRecord>,
    phase: &dyn Phase,
) -> Result<Loaded> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    set_session(&mut tx).await?;
    sqlx::query(LOAD_MAINTENANCE_WORK_MEM)
        .execute(&mut *tx)
        .await?;
    let target: BTreeMap<String, Vec<String>> = tables_map(&mut tx).await?;
    let dumped: BTreeMap<&str, &TableDump> = tables.iter().map(|t| (t.name.as_str(), t)).collect();
    let missing: Vec<&str> = target
        .keys()
        .map(String::as_str)
        .filter(|t| !dumped.contains_key(t))
        .collect();
    let extra: Vec<&str> = dumped
        .keys()
        .copied()
        .filter(|t| !target.contains_key(*t))
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(Error::Invalid(format!(
            "the snapshot's tables do not match the schema: not in the snapshot: [{}]; not in the schema: [{}]",
            missing.join(", "),
            extra.join(", ")
        )));
    }
    let names: Vec<String> = target.keys().cloned().collect();
    let order = fk_order(&names, &fk_edges(&mut tx).await?)?;
    // Keys and indexes go before the load and come back after it: building an index
    // from sorted data and checking a foreign key with one join are far faster than
    // doing either row by row. Foreign keys are dropped first (they depend on the
    // keys they reference) and re-added last.
    let constraints = key_constraints(&mut tx).await?;
    for c in constraints.iter().filter(|c| c.foreign) {
        c.drop(&mut tx).await?;
    }
    for c in constraints.iter().filter(|c| !c.foreign) {
        c.drop(&mut tx).await?;
    }
    let indexes = secondary_indexes(&mut tx).await?;
    for (name, _) in &indexes {
        checked(name, "index")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX {}", quote(name))))
            .execute(&mut *tx)
            .await?;
    }
    let mut loaded = Loaded::default();
    for name in &order {
        let Some(dump) = dumped.get(name.as_str()) else {
            continue;
        };
        let record = files.get(&dump.file).ok_or_else(|| {
            Error::Invalid(format!(
                "table {name}: its file {} is not in the manifest",
                dump.file
            ))
        })?;
        for c in &dump.columns {
            checked(c, "column")?;
        }
        let rows = copy_in(&mut tx, snapshot, dump, record, phase).await?;
        if rows != dump.rows {
            return Err(Error::Invalid(format!(
                "table {name}: loaded {rows} rows where the manifest says {}",
                dump.rows
            )));
        }
        loaded.tables += 1;
        loaded.rows += rows;
        loaded.bytes += record.size;
    }
    for c in constraints.iter().filter(|c| !c.foreign) {
        c.add(&mut tx).await?;
    }
    for (_, definition) in &indexes {
        sqlx::query(sqlx::AssertSqlSafe(definition.clone()))
            .execute(&mut *tx)
            .await?;
    }
    for c in constraints.iter().filter(|c| c.foreign) {
        c.add(&mut tx).await?;
    }
    tx.commit().await?;
    sqlx::query("ANALYZE").execute(&mut *conn).await?;
    Ok(loaded)
}

async fn tables_map(conn: &mut PgConnection) -> Result<BTreeMap<String, Vec<String>>> {
    Ok(tables(conn).await?.into_iter().collect())
}

/// Streams one table file into `COPY … FROM STDIN`, checking it against `record`.
async fn copy_in(
    conn: &mut PgConnection,
    snapshot: &Path,
    dump: &TableDump,
    record: &FileRecord,
    phase: &dyn Phase,
) -> Result<u64> {
    let path: PathBuf = snapshot.join(&record.path);
    let cols: Vec<String> = dump.columns.iter().map(|c| quote(c)).collect();
    let statement = format!(
        "COPY {} ({}) FROM STDIN",
        quote(&dump.name),
        cols.join(", ")
    );
    // A blocking task reads and hashes; the chunks go to the server as they come.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let reader_path = path.clone();
    let reader = tokio::task::spawn_blocking(move || -> Result<(String, u64)> {
        use sha2::{Digest, Sha256};
        use std::io::Read;
        let mut file = std::fs::File::open(&reader_path).map_err(|e| Error::io(&reader_path, e))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = file
                .read(&mut buf)
                .map_err(|e| Error::io(&reader_path, e))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            hasher.update(&buf);
            size += n as u64;
            if tx.blocking_send(Bytes::from(buf)).is_err() {
                break;
            }
        }
        Ok((hex::encode(hasher.finalize()), size))
    });
    let mut copy = conn.copy_in_raw(&statement).await?;
    let mut send_error = None;
    while let Some(chunk) = rx.recv().await {
        phase.advance(chunk.len() as u64);
        if let Err(e) = copy.send(chunk).await {
            send_error = Some(e);
            break;
        }
    }
    drop(rx);
    let read = reader
        .await
        .map_err(|e| Error::Invalid(format!("reading {}: {e}", path.display())))?;
    let fault = match (&send_error, &read) {
        (Some(e), _) => Some(format!("table {}: {e}", dump.name)),
        (None, Err(e)) => Some(e.to_string()),
        (None, Ok((sha, size))) if *size != record.size || *sha != record.sha256 => Some(format!(
            "{}: {size} bytes hashing to {sha}, but the manifest says {} bytes hashing to {} (altered since the check)",
            record.path, record.size, record.sha256
        )),
        _ => None,
    };
    if let Some(fault) = fault {
        // The server answers the abort with an error; the fault is what matters.
        let _ = copy.abort(fault.clone()).await;
        return Err(Error::Invalid(fault));
    }
    Ok(copy.finish().await?)
}
