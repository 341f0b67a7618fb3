//! Names and paths of a backup directory, and the `originals.list` line format.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::{Error, Result, Sha256Hex};

pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_SIG: &str = "manifest.sig";
pub const ORIGINALS_LIST: &str = "originals.list";
/// The originals a snapshot needs, `"<sha256> <size>\n"` in hash order, while
/// `backup create` copies them; replaced by the located [`ORIGINALS_LIST`].
pub const WANTED: &str = "originals.wanted";
pub const COMPLETE: &str = "COMPLETE";
pub const SNAPSHOTS: &str = "snapshots";
/// The originals directory of a data dir (the local store's default).
pub const ORIGINALS: &str = "originals";
pub const DB_DIR: &str = "db";
pub const KEYS_DIR: &str = "keys";
pub const SQLITE_FILE: &str = "db/database.sqlite";
pub const LOCK: &str = "backup.lock";

/// Written into the target data dir when a restore starts and removed only when it
/// has finished and verified; while it exists the data dir must not be used.
pub const INCOMPLETE_MARKER: &str = "RESTORE-INCOMPLETE";

/// The id (directory name) of a snapshot started at `t`: `YYYYMMDDTHHMMSSffffffZ`.
/// Fixed width, so ids sort as times do.
pub fn snapshot_id(t: &DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%S%6fZ").to_string()
}

/// Whether `s` has the shape of a snapshot id (and so is safe as a path segment).
pub fn is_snapshot_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 22
        && b[8] == b'T'
        && b[21] == b'Z'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..21].iter().all(u8::is_ascii_digit)
}

pub fn snapshot_dir(dir: &Path, id: &str) -> PathBuf {
    dir.join(SNAPSHOTS).join(id)
}

/// Where an original lives below a store or backup root: `sha256/ab/cd/<hash>`,
/// the originals store's own layout.
pub fn original_rel(sha256: &str) -> String {
    format!("sha256/{}/{}/{sha256}", &sha256[0..2], &sha256[2..4])
}

/// One `originals.wanted` line, newline included.
pub fn list_line(sha256: &str, size: u64) -> String {
    format!("{sha256} {size}\n")
}

/// Parses one `originals.wanted` line (without its newline): a lowercase SHA-256 in
/// hex, one space, the size in decimal.
pub fn parse_list_line(line: &str) -> Option<(Sha256Hex, u64)> {
    let (sha, size) = line.split_once(' ')?;
    let hash = Sha256Hex::parse(sha).filter(|h| h.as_str() == sha)?;
    Some((hash, decimal(size)?))
}

/// A plain decimal `u64` as the lists write numbers: digits only (no sign), at most 20.
pub fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A PostgreSQL identifier the dump handles: lowercase letters, digits and `_`,
/// not starting with a digit (every table and column the migrations create). Quoted
/// anyway where used.
pub fn is_plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

/// The snapshot ids present in `dir`, oldest first (directories of the right shape).
pub fn snapshot_ids(dir: &Path) -> Result<Vec<String>> {
    let root = dir.join(SNAPSHOTS);
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Invalid(format!(
                "{} holds no backup (no {SNAPSHOTS}/ directory)",
                dir.display()
            )));
        }
        Err(e) => return Err(Error::io(&root, e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&root, e))?;
        if let Some(name) = entry.file_name().to_str()
            && is_snapshot_id(name)
            && entry.path().is_dir()
        {
            ids.push(name.to_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

/// The snapshot to work on: `requested` (which must exist), or the newest one with
/// `COMPLETE`. Answers its id and the ids of newer partial snapshots passed over.
pub fn choose_snapshot(dir: &Path, requested: Option<&str>) -> Result<(String, Vec<String>)> {
    if let Some(id) = requested {
        if !is_snapshot_id(id) {
            return Err(Error::Invalid(format!(
                "{id:?} is not a snapshot id (YYYYMMDDTHHMMSSffffffZ)"
            )));
        }
        if !snapshot_dir(dir, id).is_dir() {
            return Err(Error::Invalid(format!(
                "{} has no snapshot {id}",
                dir.display()
            )));
        }
        return Ok((id.to_owned(), Vec::new()));
    }
    let mut partial = Vec::new();
    for id in snapshot_ids(dir)?.into_iter().rev() {
        if snapshot_dir(dir, &id).join(COMPLETE).is_file() {
            return Ok((id, partial));
        }
        partial.push(id);
    }
    Err(Error::Invalid(format!(
        "{} holds no complete snapshot{}",
        dir.display(),
        if partial.is_empty() {
            String::new()
        } else {
            format!(" (partial: {})", partial.join(", "))
        }
    )))
}
