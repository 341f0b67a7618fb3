//! `ivan log verify`: recompute the whole chain, check every checkpoint and every
//! original. Reads in pages, so memory stays flat however long the log is.

use std::fmt;

use crate::keys::CheckpointVerifier;
use crate::{Db, Error, Originals, Result, Sha256Hex, on_pool};

use super::{
    Checkpoint, Entry, GENESIS_HASH, checkpoints_after, entries_after, entry_hash,
    latest_checkpoint, size, tree,
};

const PAGE: i64 = 2000;
/// Originals read and re-hashed side by side by [`verify_originals`] (runs of a
/// page, see [`Originals::check_many`]). Each is held whole while it is hashed, so
/// memory peaks at this many times the largest original
/// (16 × the 50 MiB intake limit in the worst case; a few hundred KiB typically).
const CONCURRENT_READS: usize = 16;
/// Problems listed before the verifier stops collecting more.
const MAX_PROBLEMS: usize = 100;

/// Something that does not hold. The first one in a report is the first bad place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Entry { seq: i64, reason: String },
    Checkpoint { tree_size: i64, reason: String },
    Original { sha256: String, reason: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Entry { seq, reason } => write!(f, "log entry {seq}: {reason}"),
            Problem::Checkpoint { tree_size, reason } => {
                write!(f, "checkpoint at tree size {tree_size}: {reason}")
            }
            Problem::Original { sha256, reason } => write!(f, "original {sha256}: {reason}"),
        }
    }
}

/// What was checked and what failed.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub entries: u64,
    pub checkpoints: u64,
    pub originals: u64,
    /// Originals the retention policy purged: their hashes stay in the log and the
    /// index, their bytes are gone by design (not a problem) — each one checked
    /// against the `submission.purge` entry that lists it.
    pub purged: u64,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, p: Problem) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }
}

/// Progress feedback (a terminal progress bar in the CLI).
pub trait Progress {
    fn phase(&self, name: &str, total: u64);
    fn advance(&self, n: u64);
}

/// Progress that shows nothing.
#[derive(Debug, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// Checks the record. `Err` only when the check itself could not run (database
/// unreachable); findings are in [`Report::problems`].
pub async fn verify(
    db: &Db,
    originals: &Originals,
    keys: &CheckpointVerifier,
    progress: &dyn Progress,
) -> Result<Report> {
    // The chain (database reads and hashing) and the originals (file reads) are
    // checked side by side, under one progress phase counting both.
    let (count, _) = size(db).await?;
    let stored = stored_count(db).await?;
    progress.phase(
        "log entries and originals",
        u64::try_from(count.saturating_add(stored)).unwrap_or(0),
    );
    let (chain, files) = tokio::join!(
        check_log(db, keys, progress),
        check_originals(db, originals, progress)
    );
    Ok(Report::merged(chain?, files?))
}

/// The log half of [`verify`]: every entry re-chained, every checkpoint signature,
/// every payload an entry names indexed. Its own progress phase.
pub async fn verify_log(
    db: &Db,
    keys: &CheckpointVerifier,
    progress: &dyn Progress,
) -> Result<Report> {
    let (count, _) = size(db).await?;
    progress.phase("log entries", u64::try_from(count).unwrap_or(0));
    check_log(db, keys, progress).await
}

/// The originals half of [`verify`]: every stored original re-hashed, every purged
/// one justified by its purge entry. Its own progress phase.
pub async fn verify_stored_originals(
    db: &Db,
    originals: &Originals,
    progress: &dyn Progress,
) -> Result<Report> {
    let stored = stored_count(db).await?;
    progress.phase("originals", u64::try_from(stored).unwrap_or(0));
    check_originals(db, originals, progress).await
}

/// Rows of the originals index (the progress total of the originals half).
async fn stored_count(db: &Db) -> Result<i64> {
    Ok(on_pool!(db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM originals").fetch_one(pool).await?
    }))
}

/// The log half, under whatever progress phase the caller set.
async fn check_log(db: &Db, keys: &CheckpointVerifier, progress: &dyn Progress) -> Result<Report> {
    let mut chain = Report::default();
    verify_chain(db, keys, progress, &mut chain).await?;
    verify_payload_references(db, &mut chain).await?;
    Ok(chain)
}

/// The originals half, under whatever progress phase the caller set.
async fn check_originals(
    db: &Db,
    originals: &Originals,
    progress: &dyn Progress,
) -> Result<Report> {
    let mut files = Report::default();
    verify_originals(db, originals, progress, &mut files).await?;
    Ok(files)
}

impl Report {
    /// One report of [`verify_log`]'s and [`verify_stored_originals`]'s: the
    /// chain's problems first, as [`verify`] orders them.
    pub fn merged(chain: Report, files: Report) -> Report {
        let mut report = Report {
            entries: chain.entries,
            checkpoints: chain.checkpoints,
            originals: files.originals,
            purged: files.purged,
            problems: Vec::new(),
        };
        for p in chain.problems.into_iter().chain(files.problems) {
            report.problem(p);
        }
        report
    }
}

async fn verify_chain(
    db: &Db,
    keys: &CheckpointVerifier,
    progress: &dyn Progress,
    report: &mut Report,
) -> Result<()> {
    // The server may append while we verify. Fix the extent first: the newest
    // checkpoint, then the newest entry (a checkpoint commits with its entries, so
    // `max_seq >= cp_limit` unless entries were removed). Later appends are not checked.
    let latest = latest_checkpoint(db).await?;
    let cp_limit = latest.as_ref().map_or(0, |cp| cp.tree_size);
    // The log's name: the one its newest C2SP checkpoint carries (and the server
    // signs under), else the first one's (checkpoints written while we verify);
    // every C2SP checkpoint must carry it.
    let mut origin = latest
        .and_then(|cp| cp.signed_note)
        .map(|note| tree::note_origin(&note).to_owned());
    let (_, max_seq) = size(db).await?;
    let mut prev: Option<Entry> = None;
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    let mut cp_cursor = 0i64;
    let mut cp_exhausted = false;
    // The next page is read on another task while this one is hashed, so the
    // database read and decode overlap the chain check instead of alternating.
    let fetch = |after: i64| {
        let db = db.clone();
        tokio::spawn(async move { entries_after(&db, after, PAGE).await })
    };
    let mut next = fetch(0);
    let mut tree = TreeCheck::default();
    'pages: loop {
        let page = next
            .await
            .map_err(|e| Error::Invalid(format!("reading the log: {e}")))??;
        let Some(last) = page.last() else {
            break;
        };
        next = fetch(last.seq);
        progress.advance(page.len() as u64);
        for e in page {
            if e.seq > max_seq {
                break 'pages;
            }
            report.entries += 1;
            if let Some(reason) = chain_fault(prev.as_ref(), &e) {
                report.problem(Problem::Entry { seq: e.seq, reason });
                break 'pages;
            }
            tree.push(&e)?;
            // Checkpoints are read alongside, a page at a time.
            loop {
                if checkpoints.is_empty() && !cp_exhausted {
                    checkpoints = checkpoints_after(db, cp_cursor, PAGE).await?;
                    checkpoints.reverse();
                    cp_exhausted = checkpoints.is_empty();
                }
                match checkpoints.last() {
                    Some(cp) if cp.tree_size <= e.seq => {
                        if let Some(cp) = checkpoints.pop() {
                            cp_cursor = cp.tree_size;
                            report.checkpoints += 1;
                            let root = tree.built.root()?;
                            check_checkpoint(&cp, &e, &root, keys, &mut origin, report);
                        }
                    }
                    _ => break,
                }
            }
            prev = Some(e);
        }
        tree.compare(db, report).await?;
    }
    tree.compare(db, report).await?;
    // Checkpoints beyond the last good entry: the log was cut short (or the chain
    // broke before them). Either way they vouch for entries that are not there intact.
    let last = prev.map_or(0, |e| e.seq);
    let beyond = match checkpoints.last() {
        Some(cp) => Some(cp.clone()),
        None => checkpoints_after(db, last.max(cp_cursor), 1).await?.pop(),
    };
    if let Some(cp) = beyond.filter(|cp| cp.tree_size <= cp_limit)
        && report.problems.is_empty()
    {
        report.problem(Problem::Checkpoint {
            tree_size: cp.tree_size,
            reason: format!(
                "vouches for {} entries but the log has only {last}: entries were removed",
                cp.tree_size
            ),
        });
    }
    Ok(())
}

/// The stored Merkle tree ([`tree`]) against the one the verified entries make:
/// each stored hash must be the one building the tree from the chain puts there. A
/// stored tree that ends early is not a fault (a log migrated from before the tree
/// existed is caught up by its next append); a differing hash is, named by the entry
/// whose append stored it.
#[derive(Default)]
struct TreeCheck {
    built: tree::Frontier,
    /// Hashes built and not yet compared: stored index, hash, the entry that made it.
    pending: Vec<(u64, tree::Hash, i64)>,
    /// The stored tree ended or differed: nothing more to compare.
    done: bool,
}

impl TreeCheck {
    fn push(&mut self, e: &Entry) -> Result<()> {
        let (start, hashes) = self.built.push_entry(e.seq, &e.entry_hash)?;
        if !self.done {
            self.pending
                .extend((start..).zip(hashes).map(|(i, h)| (i, h, e.seq)));
        }
        Ok(())
    }

    async fn compare(&mut self, db: &Db, report: &mut Report) -> Result<()> {
        let (Some(first), Some(last)) = (self.pending.first(), self.pending.last()) else {
            return Ok(());
        };
        let stored = tree::stored_between(db, first.0, last.0).await?;
        for (i, built, seq) in self.pending.drain(..) {
            let Some(hash) = stored.get(&i) else {
                // The stored tree ends here, or has a gap.
                if tree::stored_above(db, i).await? {
                    report.problem(Problem::Entry {
                        seq,
                        reason: format!("its hash at index {i} of the Merkle tree is missing"),
                    });
                }
                self.done = true;
                return Ok(());
            };
            if *hash != built {
                report.problem(Problem::Entry {
                    seq,
                    reason: format!(
                        "the Merkle tree's hash at index {i} is not the one its entries make (the tree was altered)"
                    ),
                });
                self.done = true;
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Why `e` does not follow `prev` in a sound chain, if it does not.
fn chain_fault(prev: Option<&Entry>, e: &Entry) -> Option<String> {
    let (expected_seq, expected_prev) = match prev {
        Some(p) => (p.seq + 1, p.entry_hash.as_str()),
        None => (1, GENESIS_HASH),
    };
    if e.seq != expected_seq {
        return Some(format!(
            "expected entry {expected_seq} next; entries {expected_seq}..{} are missing",
            e.seq - 1
        ));
    }
    if e.prev_hash != expected_prev {
        return Some("prev_hash does not match the entry before it (chain broken)".into());
    }
    if let Some(p) = &e.payload_sha256
        && Sha256Hex::parse(p).is_none_or(|h| h.as_str() != p)
    {
        return Some(format!(
            "payload_sha256 {p:?} is not a SHA-256 in lowercase hex"
        ));
    }
    match entry_hash(&e.fields()) {
        Some(h) if h == e.entry_hash => {}
        Some(_) => {
            return Some("content does not match its entry_hash (the entry was altered)".into());
        }
        None => return Some("prev_hash is malformed".into()),
    }
    if let Some(p) = prev
        && e.recorded_at < p.recorded_at
    {
        return Some("recorded_at is earlier than the entry before it".into());
    }
    None
}

/// Checks checkpoint `cp` against entry `e` (the one at its tree size) and the root
/// `root` the verified entries up to it make: its chain-head signature, and its C2SP
/// tree head where it has one (signature, size, root, and the log's `origin`).
fn check_checkpoint(
    cp: &Checkpoint,
    e: &Entry,
    root: &tree::Hash,
    keys: &CheckpointVerifier,
    origin: &mut Option<String>,
    report: &mut Report,
) {
    let mut fault = |reason: String| {
        report.problem(Problem::Checkpoint {
            tree_size: cp.tree_size,
            reason,
        });
    };
    if cp.tree_size != e.seq {
        return fault("names a tree size with no entry".into());
    }
    if cp.head_hash != e.entry_hash {
        return fault(format!(
            "head hash {} differs from entry {}'s hash {} (the log was rewritten)",
            cp.head_hash, e.seq, e.entry_hash
        ));
    }
    match keys.verify(&cp.key_id, cp.note().as_bytes(), &cp.signature) {
        Ok(true) => {}
        Ok(false) => return fault("signature does not verify".into()),
        Err(reason) => return fault(reason),
    }
    match cp.tree_head(keys) {
        None => {}
        Some(Err(reason)) => fault(reason),
        Some(Ok(head)) if head.hash() != root => fault(format!(
            "its signed note's root hash {} is not the root {root} of the entries it covers (the log was rewritten)",
            head.hash()
        )),
        Some(Ok(head)) => match origin {
            Some(o) if o != head.origin() => fault(format!(
                "its signed note names the log {:?}, the log's newest checkpoint {o:?}",
                head.origin()
            )),
            Some(_) => {}
            None => *origin = Some(head.origin().to_owned()),
        },
    }
}

/// Every entry that names a payload must have it indexed as an original.
async fn verify_payload_references(db: &Db, report: &mut Report) -> Result<()> {
    let missing: Vec<(i64, String)> = on_pool!(db, pool => {
        sqlx::query_as(
            // Materialized: one hash anti-join over both tables, where the planner
            // would otherwise probe the index once per entry for the sake of LIMIT.
            "WITH missing AS MATERIALIZED (\
               SELECT e.seq, e.payload_sha256 FROM log_entries e \
               WHERE e.payload_sha256 IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM originals o WHERE o.sha256 = e.payload_sha256)) \
             SELECT seq, payload_sha256 FROM missing ORDER BY seq LIMIT 10",
        )
        .fetch_all(pool)
        .await?
    });
    for (seq, sha) in missing {
        report.problem(Problem::Entry {
            seq,
            reason: format!("its payload {sha} is not in the originals index"),
        });
    }
    Ok(())
}

async fn verify_originals(
    db: &Db,
    originals: &Originals,
    progress: &dyn Progress,
    report: &mut Report,
) -> Result<()> {
    let mut purges = PurgeEntries::default();
    let mut after = String::new();
    loop {
        type Row = (
            String,
            i64,
            Option<chrono::DateTime<chrono::Utc>>,
            Option<i64>,
        );
        let page: Vec<Row> = on_pool!(db, pool => {
            sqlx::query_as(
                "SELECT sha256, size_bytes, purged_at, purge_seq FROM originals WHERE sha256 > $1 ORDER BY sha256 LIMIT $2",
            )
            .bind(&after)
            .bind(PAGE)
            .fetch_all(pool)
            .await?
        });
        let Some((last, _, _, _)) = page.last() else {
            break;
        };
        after = last.clone();
        // Purged ones are checked against their purge entries in order; the stored
        // ones are read and re-hashed `CONCURRENT_READS` at a time (reading is bound
        // by file opens and disk latency, not by the hashing). Problems keep the
        // page's hash order.
        let mut found: Vec<(usize, Problem)> = Vec::new();
        let mut stored: Vec<(usize, String, Sha256Hex, i64)> = Vec::new();
        for (i, (sha, size, purged_at, purge_seq)) in page.into_iter().enumerate() {
            report.originals += 1;
            if purged_at.is_some() {
                report.purged += 1;
                progress.advance(1);
                if let Some(reason) = purges.unjustified(db, originals, &sha, purge_seq).await? {
                    found.push((
                        i,
                        Problem::Original {
                            sha256: sha,
                            reason,
                        },
                    ));
                }
                continue;
            }
            match Sha256Hex::parse(&sha) {
                Some(hash) => stored.push((i, sha, hash, size)),
                None => {
                    progress.advance(1);
                    found.push((
                        i,
                        Problem::Original {
                            sha256: sha,
                            reason: "index key is not a SHA-256".into(),
                        },
                    ));
                }
            }
        }
        let checked = originals
            .check_many(
                stored.iter().map(|(_, _, hash, _)| hash.clone()).collect(),
                CONCURRENT_READS,
            )
            .await;
        progress.advance(stored.len() as u64);
        for ((i, sha, _, size), c) in stored.into_iter().zip(checked) {
            let reason = match c {
                Ok(len) if i64::try_from(len).ok() == Some(size) => continue,
                Ok(len) => format!("size is {len} but the index says {size}"),
                Err(e @ (Error::CorruptOriginal { .. } | Error::MissingOriginal(_))) => {
                    e.to_string()
                }
                Err(e) => return Err(e),
            };
            found.push((
                i,
                Problem::Original {
                    sha256: sha,
                    reason,
                },
            ));
        }
        found.sort_by_key(|(i, _)| *i);
        for (_, p) in found {
            report.problem(p);
        }
    }
    Ok(())
}

/// The `submission.purge` entries purged originals name, read as needed: `purged_at`
/// is not chained, so a purged original counts as purged only if the chained entry
/// its `purge_seq` names is a `submission.purge` whose payload lists it. Keeps the
/// lists of the last few entries read (originals come in hash order, not by purge).
#[derive(Default)]
struct PurgeEntries {
    lists: std::collections::HashMap<i64, Result<Vec<String>, String>>,
}

impl PurgeEntries {
    const CACHED: usize = 1024;

    /// Why `sha`, marked purged with `purge_seq`, is not a proper purge; `None` if it is.
    async fn unjustified(
        &mut self,
        db: &Db,
        originals: &Originals,
        sha: &str,
        purge_seq: Option<i64>,
    ) -> Result<Option<String>> {
        let Some(seq) = purge_seq else {
            return Ok(Some(
                "marked purged, but no submission.purge entry is named for it".into(),
            ));
        };
        if !self.lists.contains_key(&seq) {
            if self.lists.len() >= Self::CACHED {
                self.lists.clear();
            }
            let list = Self::read(db, originals, seq).await?;
            self.lists.insert(seq, list);
        }
        Ok(match self.lists.get(&seq) {
            Some(Ok(list)) if list.iter().any(|h| h == sha) => None,
            Some(Ok(_)) => Some(format!(
                "marked purged by log entry {seq}, whose payload does not list it"
            )),
            Some(Err(reason)) => Some(format!("marked purged by log entry {seq}, but {reason}")),
            None => Some(format!(
                "marked purged by log entry {seq}, which was not read"
            )),
        })
    }

    /// The `purged` list of the purge entry at `seq`, or why there is none.
    async fn read(db: &Db, originals: &Originals, seq: i64) -> Result<Result<Vec<String>, String>> {
        let row: Option<(String, Option<String>)> = on_pool!(db, pool => {
            sqlx::query_as("SELECT action, payload_sha256 FROM log_entries WHERE seq = $1")
                .bind(seq)
                .fetch_optional(pool)
                .await?
        });
        let Some((action, payload)) = row else {
            return Ok(Err("there is no such entry".into()));
        };
        if action != "submission.purge" {
            return Ok(Err(format!(
                "that entry is a {action}, not a submission.purge"
            )));
        }
        let Some(hash) = payload.as_deref().and_then(Sha256Hex::parse) else {
            return Ok(Err("that entry has no payload".into()));
        };
        let bytes = match originals.get(&hash).await {
            Ok(b) => b,
            Err(e @ (Error::CorruptOriginal { .. } | Error::MissingOriginal(_))) => {
                return Ok(Err(format!("its payload cannot be read: {e}")));
            }
            Err(e) => return Err(e),
        };
        #[derive(serde::Deserialize)]
        struct Purge {
            purged: Vec<String>,
        }
        Ok(serde_json::from_slice::<Purge>(&bytes)
            .map(|p| p.purged)
            .map_err(|e| format!("its payload is not a purge record: {e}")))
    }
}
