//! Backup, backup verification and restore of the whole record: the database, the
//! originals and the signing keys (`ivan backup create|verify`, `ivan restore`).
//!
//! A backup directory holds any number of snapshots that share the originals, kept
//! in pack files (see `packs.rs`), so each new snapshot copies only the originals the
//! newest complete snapshot before it does not hold:
//!
//! ```text
//! DIR/backup.lock                            held while `backup create` writes
//! DIR/packs/<snapshot id>-<nnnn>.pack        originals back to back, written once, shared
//! DIR/snapshots/<YYYYMMDDTHHMMSSffffffZ>/
//!     manifest.json    what the snapshot is, and {path, sha256, size} of every file
//!     manifest.sig     Ed25519 signature of the manifest by the checkpoint key
//!     originals.list   "<sha256> <size> <pack> <offset>\n" per original the snapshot
//!                      needs, sorted by hash
//!     db/…             SQLite: database.sqlite (VACUUM INTO);
//!                      PostgreSQL: <table>.copy per table (COPY text format)
//!     keys/…           a copy of the key directory (secrets: protect the backup)
//!     COMPLETE         written last; a snapshot without it is partial
//! ```
//!
//! *Consistency while the service runs*: the database is copied first, as one
//! snapshot (SQLite `VACUUM INTO`; PostgreSQL one `REPEATABLE READ READ ONLY`
//! transaction), and the log head, the latest checkpoint and the list of originals
//! come from that same snapshot. Originals are stored before the log entry that names
//! them commits, so every original the snapshot lists exists when it is copied
//! afterwards; originals added later are not needed by this snapshot.
//!
//! [`create`] writes a snapshot, [`verify`] checks one without restoring, and
//! [`restore`] loads one into an empty target and ends with the full log verification.
//! The format is specified in `docs/BACKUP.md`.

mod check;
mod create;
pub(crate) mod fsio;
mod layout;
mod packs;
mod pg;
mod restore;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use check::{VerifyReport, verify};
pub use create::{CreateSummary, create};
pub use layout::{
    COMPLETE, INCOMPLETE_MARKER, MANIFEST, MANIFEST_SIG, ORIGINALS_LIST, parse_list_line,
    snapshot_id,
};
pub use restore::{RestoreSummary, RestoreTarget, restore};

/// `format` of the manifests this ivan writes and reads (v2: the originals in packs;
/// v1, one file per original, was never released).
pub const FORMAT: &str = "ivan-backup/v2";

/// The first line of the text `manifest.sig` signs; see [`manifest_signing_input`].
pub const MANIFEST_SIGNATURE_DOMAIN: &str = "ivan/backup-manifest/v1\n";

/// Originals copied (and hashed) at the same time.
pub const PARALLEL_COPIES: usize = 16;

/// Largest `manifest.json` read (it lists the database and key files, not originals).
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Problems a verification lists before it only counts them.
pub const MAX_PROBLEMS: usize = 100;

/// `manifest.json`. Written with `serde_json`'s pretty printer plus a final newline;
/// the signature covers the exact bytes, never a re-serialization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The snapshot's directory name (its creation time, `YYYYMMDDTHHMMSSffffffZ`).
    pub snapshot: String,
    /// When the snapshot was started (`YYYY-MM-DDTHH:MM:SS.ffffffZ`).
    pub created_at: String,
    /// The `ivan` version that wrote it.
    pub ivan_version: String,
    /// `sqlite` or `postgres`: a snapshot restores only into the same backend.
    pub backend: String,
    /// Versions of the database migrations applied in the snapshot, ascending.
    pub migrations: Vec<i64>,
    /// The log's head inside the snapshot.
    pub log: LogHead,
    /// The latest signed checkpoint inside the snapshot (none on a fresh log).
    pub checkpoint: Option<CheckpointRecord>,
    /// How the database is stored under `db/`.
    pub database: DatabaseDump,
    /// Every file of the snapshot except `manifest.json`, `manifest.sig` and
    /// `COMPLETE`, sorted by path.
    pub files: Vec<FileRecord>,
    /// The originals the snapshot needs (listed in `originals.list`).
    pub originals: OriginalsSummary,
}

/// The log head: the number of entries and the last entry's hash (64 zeros if none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogHead {
    pub tree_size: i64,
    pub head_hash: String,
}

/// A signed checkpoint as the manifest carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRecord {
    pub tree_size: i64,
    pub head_hash: String,
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as the checkpoint note encodes it.
    pub signed_at: String,
    pub key_id: String,
    pub signature: String,
}

impl From<&crate::ledger::Checkpoint> for CheckpointRecord {
    fn from(cp: &crate::ledger::Checkpoint) -> Self {
        Self {
            tree_size: cp.tree_size,
            head_hash: cp.head_hash.clone(),
            signed_at: crate::ledger::format_time(&cp.signed_at),
            key_id: cp.key_id.clone(),
            signature: cp.signature.clone(),
        }
    }
}

/// The database part of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseDump {
    /// `sqlite-file` (`db/database.sqlite`) or `postgres-copy-text` (`db/<table>.copy`,
    /// PostgreSQL `COPY` text format, UTF-8, `DateStyle` ISO, time zone UTC).
    pub format: String,
    /// PostgreSQL: every table of the schema except the migrations' own
    /// (`_sqlx_migrations`, `schema_compatibility`), by name.
    /// Empty for SQLite (the file holds everything).
    pub tables: Vec<TableDump>,
}

/// One PostgreSQL table in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDump {
    pub name: String,
    /// The file under the snapshot, e.g. `db/log_entries.copy`.
    pub file: String,
    /// The columns, in the order the file has them.
    pub columns: Vec<String>,
    pub rows: u64,
}

/// One file as the manifest lists it; its path is relative to the snapshot
/// directory, `/`-separated, e.g. `keys/receipt-es256.pem`.
pub use crate::FileRecord;

/// What `originals.list` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginalsSummary {
    pub count: u64,
    /// Sum of the originals' sizes.
    pub bytes: u64,
    /// SHA-256 of `originals.list`.
    pub list_sha256: String,
}

pub const SQLITE_FORMAT: &str = "sqlite-file";
pub const POSTGRES_FORMAT: &str = "postgres-copy-text";

/// The bytes `manifest.sig` signs:
/// `"ivan/backup-manifest/v1\n" ‖ hex(SHA-256(manifest.json)) ‖ "\n"`.
pub fn manifest_signing_input(manifest_json: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    format!(
        "{MANIFEST_SIGNATURE_DOMAIN}{}\n",
        hex::encode(Sha256::digest(manifest_json))
    )
    .into_bytes()
}

/// Progress feedback: one bar per phase (phases may run at the same time).
pub trait Progress: Sync {
    /// Starts a phase counting up to `total` (`bytes`: the unit is bytes, not items).
    fn phase(&self, name: &str, total: u64, bytes: bool) -> Box<dyn Phase>;
}

/// A running phase.
pub trait Phase: Send + Sync {
    fn advance(&self, n: u64);
    fn finish(&self);
}

/// Progress that shows nothing.
#[derive(Debug, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: &str, _: u64, _: bool) -> Box<dyn Phase> {
        Box::new(Silent)
    }
}

impl Phase for Silent {
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// Seconds since `start`, rounded to milliseconds (for summaries).
fn seconds(start: std::time::Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}
