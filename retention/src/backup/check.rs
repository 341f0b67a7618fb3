//! `ivan backup verify DIR`: check a snapshot without restoring it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::create::blocking;
use super::fsio;
use super::layout::{
    COMPLETE, KEYS_DIR, MANIFEST, MANIFEST_SIG, ORIGINALS_LIST, SQLITE_FILE, choose_snapshot,
    snapshot_dir,
};
use super::packs::{Found, PACKS, altered, for_each_in_pack_order};
use super::{
    FORMAT, LogHead, MAX_MANIFEST_BYTES, MAX_PROBLEMS, Manifest, POSTGRES_FORMAT, Progress,
    SQLITE_FORMAT, manifest_signing_input, seconds,
};
use crate::Result;
use crate::keys::{CheckpointVerifier, Keys};
use crate::ledger::checkpoint_note;

/// Largest `manifest.sig` read.
const MAX_SIG_BYTES: u64 = 4096;

/// What a verification checked and found (the `--json` output of `backup verify`).
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub snapshot: String,
    /// Newer snapshots without `COMPLETE` that were passed over (default choice only).
    pub partial_snapshots_skipped: Vec<String>,
    pub created_at: Option<String>,
    pub backend: Option<String>,
    /// The checkpoint key that signed the manifest (compare it with the published
    /// `/.well-known/ivan/checkpoint-keys.json`).
    pub key_id: Option<String>,
    pub log: Option<LogHead>,
    pub checkpoint_tree_size: Option<i64>,
    pub files: u64,
    pub file_bytes: u64,
    pub originals: u64,
    pub originals_bytes: u64,
    /// Whether each original was re-hashed (`backup verify`) or only checked to lie
    /// inside its pack (the check `restore` makes before it starts; it hashes while
    /// copying).
    pub originals_rehashed: bool,
    /// The first problems found (at most [`MAX_PROBLEMS`]), one line each.
    pub problems: Vec<String>,
    pub problems_total: u64,
    pub seconds: f64,
    /// The manifest, when it could be read.
    #[serde(skip)]
    pub manifest: Option<Manifest>,
}

impl VerifyReport {
    fn problem(&mut self, p: String) {
        self.problems_total += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
        self.ok = false;
    }
}

/// Checks the snapshot `snapshot` of `dir` (default: the newest complete one):
/// `COMPLETE`, the manifest's signature (with the snapshot's own checkpoint key),
/// every file's size and SHA-256, and every original `originals.list` names — that
/// its pack holds it, and with `rehash` its content. `Err` only when nothing could be checked (no
/// such backup or snapshot); findings are in [`VerifyReport::problems`].
pub async fn verify(
    dir: &Path,
    snapshot: Option<&str>,
    rehash: bool,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let (id, skipped) = choose_snapshot(dir, snapshot)?;
    let snap = snapshot_dir(dir, &id);
    let mut report = VerifyReport {
        ok: true,
        snapshot: id.clone(),
        partial_snapshots_skipped: skipped,
        created_at: None,
        backend: None,
        key_id: None,
        log: None,
        checkpoint_tree_size: None,
        files: 0,
        file_bytes: 0,
        originals: 0,
        originals_bytes: 0,
        originals_rehashed: rehash,
        problems: Vec::new(),
        problems_total: 0,
        seconds: 0.0,
        manifest: None,
    };
    check(dir, &snap, &id, rehash, progress, &mut report).await?;
    report.seconds = seconds(started);
    Ok(report)
}

async fn check(
    dir: &Path,
    snap: &Path,
    id: &str,
    rehash: bool,
    progress: &dyn Progress,
    report: &mut VerifyReport,
) -> Result<()> {
    let complete = read_small(&snap.join(COMPLETE), 1024);
    if complete.is_err() {
        report.problem(format!(
            "snapshot {id} is partial: {COMPLETE} is missing (the backup did not finish)"
        ));
    }
    let json = match read_small(&snap.join(MANIFEST), MAX_MANIFEST_BYTES) {
        Ok(j) => j,
        Err(e) => {
            report.problem(format!("{MANIFEST}: {e}"));
            return Ok(());
        }
    };
    let manifest: Manifest = match serde_json::from_slice(&json) {
        Ok(m) => m,
        Err(e) => {
            report.problem(format!("{MANIFEST}: not a backup manifest: {e}"));
            return Ok(());
        }
    };
    if manifest.format != FORMAT {
        report.problem(format!(
            "{MANIFEST}: format {:?} is not {FORMAT:?}",
            manifest.format
        ));
        return Ok(());
    }
    if manifest.snapshot != id {
        report.problem(format!(
            "{MANIFEST}: names snapshot {} but lies in {id}",
            manifest.snapshot
        ));
    }
    report.created_at = Some(manifest.created_at.clone());
    report.backend = Some(manifest.backend.clone());
    report.log = Some(manifest.log.clone());
    report.checkpoint_tree_size = manifest.checkpoint.as_ref().map(|c| c.tree_size);
    if let Ok(complete) = complete {
        let expected = format!("{}\n", hex_sha(&json));
        if complete != expected.as_bytes() {
            report.problem(format!(
                "{COMPLETE} does not name this {MANIFEST} (it belongs to another manifest)"
            ));
        }
    }

    // The signature, with the snapshot's own checkpoint key.
    let verifier = match Keys::load(&snap.join(KEYS_DIR)) {
        Ok(keys) => {
            report.key_id = Some(keys.checkpoint_kid().to_owned());
            Some(keys.checkpoint_verifier())
        }
        Err(e) => {
            report.problem(format!("the snapshot's keys: {e}"));
            None
        }
    };
    if let Some(verifier) = &verifier {
        check_signature(snap, &json, verifier, report);
        check_checkpoint(&manifest, verifier, report);
    }
    check_layout(&manifest, report);

    // Every file, and nothing else.
    let total: u64 = manifest.files.iter().map(|f| f.size).sum();
    let phase = progress.phase("files", total, true);
    for f in &manifest.files {
        if !safe_rel(&f.path) {
            report.problem(format!("{MANIFEST}: unsafe path {:?}", f.path));
            continue;
        }
        let path = snap.join(&f.path);
        let hashed = blocking(move || Ok(fsio::hash_file(&path))).await?;
        phase.advance(f.size);
        report.files += 1;
        report.file_bytes += f.size;
        match hashed {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.problem(format!("{}: missing", f.path));
            }
            Err(e) => report.problem(format!("{}: {e}", f.path)),
            Ok((_, size)) if size != f.size => report.problem(format!(
                "{}: {size} bytes but the manifest says {} (truncated or altered)",
                f.path, f.size
            )),
            Ok((sha, _)) if sha != f.sha256 => report.problem(format!(
                "{}: content hashes to {sha}, not {} as the manifest says (altered)",
                f.path, f.sha256
            )),
            Ok(_) => {}
        }
    }
    phase.finish();
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    let present = {
        let snap = snap.to_owned();
        blocking(move || fsio::list_files(&snap)).await
    };
    match present {
        Ok(present) => {
            for rel in present {
                if ![MANIFEST, MANIFEST_SIG, COMPLETE].contains(&rel.as_str())
                    && !listed.contains(rel.as_str())
                {
                    report.problem(format!("{rel}: not in the manifest"));
                }
            }
        }
        Err(e) => report.problem(e.to_string()),
    }

    // The originals.
    let list_record = manifest.files.iter().find(|f| f.path == ORIGINALS_LIST);
    match list_record {
        None => report.problem(format!("{MANIFEST}: does not list {ORIGINALS_LIST}")),
        Some(r) if r.sha256 != manifest.originals.list_sha256 => report.problem(format!(
            "{MANIFEST}: {ORIGINALS_LIST} is listed with hash {} but the originals summary says {}",
            r.sha256, manifest.originals.list_sha256
        )),
        Some(_) => {
            check_originals(dir, snap, &manifest, rehash, progress, report).await?;
        }
    }
    report.manifest = Some(manifest);
    Ok(())
}

fn check_signature(
    snap: &Path,
    json: &[u8],
    verifier: &CheckpointVerifier,
    report: &mut VerifyReport,
) {
    let sig = match read_small(&snap.join(MANIFEST_SIG), MAX_SIG_BYTES) {
        Ok(s) => s,
        Err(e) => {
            report.problem(format!("{MANIFEST_SIG}: {e}"));
            return;
        }
    };
    let text = String::from_utf8_lossy(&sig);
    let mut lines = text.lines();
    let (Some(signature), Some(kid), None) = (lines.next(), lines.next(), lines.next()) else {
        report.problem(format!("{MANIFEST_SIG}: not \"<signature>\\n<key id>\\n\""));
        return;
    };
    match verifier.verify(kid, &manifest_signing_input(json), signature) {
        Ok(true) => {}
        Ok(false) => report.problem(format!(
            "{MANIFEST_SIG}: the signature does not verify: {MANIFEST} was altered"
        )),
        Err(reason) => report.problem(format!(
            "{MANIFEST_SIG}: {reason} (not the snapshot's checkpoint key)"
        )),
    }
}

/// The manifest's checkpoint is signed by the snapshot's key and fits its log head.
fn check_checkpoint(manifest: &Manifest, verifier: &CheckpointVerifier, report: &mut VerifyReport) {
    let Some(cp) = &manifest.checkpoint else {
        return;
    };
    let signed_at = match chrono::DateTime::parse_from_rfc3339(&cp.signed_at) {
        Ok(t) => t.with_timezone(&chrono::Utc),
        Err(e) => {
            report.problem(format!("{MANIFEST}: checkpoint signed_at: {e}"));
            return;
        }
    };
    let note = checkpoint_note(cp.tree_size, &cp.head_hash, &signed_at);
    match verifier.verify(&cp.key_id, note.as_bytes(), &cp.signature) {
        Ok(true) => {}
        Ok(false) => report.problem(format!(
            "{MANIFEST}: the checkpoint at tree size {} does not verify",
            cp.tree_size
        )),
        Err(reason) => report.problem(format!(
            "{MANIFEST}: the checkpoint at tree size {}: {reason}",
            cp.tree_size
        )),
    }
    if cp.tree_size > manifest.log.tree_size
        || (cp.tree_size == manifest.log.tree_size && cp.head_hash != manifest.log.head_hash)
    {
        report.problem(format!(
            "{MANIFEST}: the checkpoint at tree size {} does not fit the log head at {}",
            cp.tree_size, manifest.log.tree_size
        ));
    }
}

/// The database files the manifest's format needs are listed.
fn check_layout(manifest: &Manifest, report: &mut VerifyReport) {
    let listed = |p: &str| manifest.files.iter().any(|f| f.path == p);
    let fine = match (manifest.backend.as_str(), manifest.database.format.as_str()) {
        ("sqlite", SQLITE_FORMAT) => {
            if !listed(SQLITE_FILE) {
                report.problem(format!("{MANIFEST}: does not list {SQLITE_FILE}"));
            }
            true
        }
        ("postgres", POSTGRES_FORMAT) => {
            if manifest.database.tables.is_empty() {
                report.problem(format!("{MANIFEST}: lists no tables"));
            }
            for t in &manifest.database.tables {
                if !listed(&t.file) {
                    report.problem(format!(
                        "{MANIFEST}: table {} has file {}, which it does not list",
                        t.name, t.file
                    ));
                }
            }
            true
        }
        _ => false,
    };
    if !fine {
        report.problem(format!(
            "{MANIFEST}: backend {:?} with database format {:?} is not known",
            manifest.backend, manifest.database.format
        ));
    }
    if !manifest.files.iter().any(|f| f.path.starts_with("keys/")) {
        report.problem(format!("{MANIFEST}: lists no keys"));
    }
}

/// Every original in `originals.list`: listed once, in hash order; its pack long
/// enough to hold it; with `rehash`, its bytes there hashing to its name (the packs
/// read in order). The count and byte total match the manifest.
async fn check_originals(
    dir: &Path,
    snap: &Path,
    manifest: &Manifest,
    rehash: bool,
    progress: &dyn Progress,
    report: &mut VerifyReport,
) -> Result<()> {
    let phase: Arc<dyn super::Phase> = Arc::from(if rehash {
        progress.phase("originals", manifest.originals.bytes, true)
    } else {
        progress.phase("originals", manifest.originals.count, false)
    });
    let (packs, list) = (dir.join(PACKS), snap.join(ORIGINALS_LIST));
    let advance = phase.clone();
    let checked = blocking(move || {
        let mut problems = Problems::default();
        let facts = for_each_in_pack_order(&packs, &list, rehash, |l, found| {
            match found {
                Found::Bytes(bytes) => {
                    if let Some(p) = altered(l, &bytes) {
                        problems.push(p);
                    }
                }
                Found::Present => {}
                Found::Problem(p) => problems.push(p),
            }
            advance.advance(if rehash { l.size } else { 1 });
            true
        });
        Ok((facts, problems))
    })
    .await?;
    phase.finish();
    let (facts, problems) = checked;
    for p in problems.first {
        report.problem(p);
    }
    report.problems_total += problems.more;
    let facts = match facts {
        Ok(f) => f,
        Err(e) => {
            report.problem(e.to_string());
            return Ok(());
        }
    };
    if let Some(p) = facts.order_problem {
        report.problem(p);
    }
    report.originals = facts.count;
    report.originals_bytes = facts.bytes;
    if facts.count != manifest.originals.count || facts.bytes != manifest.originals.bytes {
        report.problem(format!(
            "{ORIGINALS_LIST}: {} originals of {} bytes, but the manifest says {} of {}",
            facts.count, facts.bytes, manifest.originals.count, manifest.originals.bytes
        ));
    }
    Ok(())
}

/// Problems found off the async threads: the first [`MAX_PROBLEMS`], then a count.
#[derive(Debug, Default)]
struct Problems {
    first: Vec<String>,
    more: u64,
}

impl Problems {
    fn push(&mut self, p: String) {
        if self.first.len() < MAX_PROBLEMS {
            self.first.push(p);
        } else {
            self.more += 1;
        }
    }
}

/// A relative `/`-separated path with no `.`/`..`/empty segment.
fn safe_rel(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

/// Reads a file of at most `limit` bytes.
fn read_small(path: &Path, limit: u64) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "missing".to_owned()
        } else {
            e.to_string()
        }
    })?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    Ok(bytes)
}

fn hex_sha(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
pub(super) fn is_safe_rel(p: &str) -> bool {
    safe_rel(p)
}
