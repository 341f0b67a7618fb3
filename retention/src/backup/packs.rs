//! Pack files: a backup keeps the originals concatenated in a few large files
//! instead of one file each, and a snapshot's `originals.list` says where each one
//! lies. A ten-year record holds tens of millions of originals of a few KiB; as files
//! they made a backup slow to check, restore and copy elsewhere (every one a random
//! read, an inode and a directory entry), as packs they are read sequentially.
//!
//! ```text
//! DIR/packs/<snapshot id>-<nnnn>.pack   originals back to back, raw bytes, no header
//! originals.list line                   "<sha256> <size> <pack> <offset>\n"
//! ```
//!
//! A pack is written once, by the snapshot its name starts with, fsynced before that
//! snapshot is complete, and never changed; later snapshots refer to the originals
//! already in it and put only new ones into packs of their own. Packs of a snapshot
//! that never completed are referred to by nothing (and can be deleted).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fsio;
use super::layout::decimal;
use crate::{Error, Result, Sha256Hex};

/// The directory of a backup that holds the packs.
pub const PACKS: &str = "packs";

/// A pack is closed, and the next one started, once it holds this many bytes (so a
/// pack stays a convenient unit to copy and check; one original is never split).
pub const PACK_BYTES: u64 = 1 << 30;

/// Entries of an `originals.list` sorted and read together: bounds the memory of
/// reading in pack order (about 150 bytes each, so some 80 MB).
pub const SORT_ENTRIES: usize = 512 * 1024;

/// Where one original lies in a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub sha256: Sha256Hex,
    pub size: u64,
    /// The pack's name, without `.pack`.
    pub pack: Arc<str>,
    pub offset: u64,
}

/// The name of pack `n` of snapshot `snapshot`.
pub fn pack_name(snapshot: &str, n: u32) -> String {
    format!("{snapshot}-{n:04}")
}

/// Whether `s` has the shape of a pack name (and so is safe as a path segment).
pub fn is_pack_name(s: &str) -> bool {
    match s.split_once('-') {
        Some((id, n)) => {
            super::layout::is_snapshot_id(id)
                && (4..=9).contains(&n.len())
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

pub fn pack_path(packs: &Path, name: &str) -> PathBuf {
    packs.join(format!("{name}.pack"))
}

/// One `originals.list` line, newline included.
pub fn located_line(l: &Located) -> String {
    format!("{} {} {} {}\n", l.sha256, l.size, l.pack, l.offset)
}

/// Parses one `originals.list` line (without its newline): a lowercase SHA-256 in
/// hex, the size and the pack name and offset, single spaces between. `names` shares
/// one allocation per pack name.
pub fn parse_located_line(line: &str, names: &mut HashMap<String, Arc<str>>) -> Option<Located> {
    let mut parts = line.split(' ');
    let (sha, size, pack, offset) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_pack_name(pack) {
        return None;
    }
    let sha256 = Sha256Hex::parse(sha).filter(|h| h.as_str() == sha)?;
    let pack = match names.get(pack) {
        Some(p) => p.clone(),
        None => {
            let p: Arc<str> = Arc::from(pack);
            names.insert(pack.to_owned(), p.clone());
            p
        }
    };
    Some(Located {
        sha256,
        size: decimal(size)?,
        pack,
        offset: decimal(offset)?,
    })
}

/// Writes new originals into the packs of one snapshot, back to back.
#[derive(Debug)]
pub struct PackWriter {
    dir: PathBuf,
    snapshot: String,
    next: u32,
    current: Option<(Arc<str>, BufWriter<File>, u64)>,
    written: Vec<PathBuf>,
}

impl PackWriter {
    /// Packs of snapshot `snapshot` in `dir` (which exists).
    pub fn new(dir: &Path, snapshot: &str) -> Self {
        Self {
            dir: dir.to_owned(),
            snapshot: snapshot.to_owned(),
            next: 0,
            current: None,
            written: Vec::new(),
        }
    }

    /// Appends `bytes`; answers the pack and the offset they were written at.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(Arc<str>, u64)> {
        if self
            .current
            .as_ref()
            .is_some_and(|(_, _, len)| *len >= PACK_BYTES)
        {
            self.close()?;
        }
        if self.current.is_none() {
            let name: Arc<str> = Arc::from(pack_name(&self.snapshot, self.next));
            self.next += 1;
            let path = pack_path(&self.dir, &name);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            self.written.push(path);
            self.current = Some((name, BufWriter::with_capacity(fsio::CHUNK, file), 0));
        }
        let Some((name, file, len)) = self.current.as_mut() else {
            unreachable!("a pack was just opened");
        };
        let written = &self.written;
        file.write_all(bytes)
            .map_err(|e| Error::io(written.last().map_or(Path::new(""), |p| p), e))?;
        let offset = *len;
        *len += bytes.len() as u64;
        Ok((name.clone(), offset))
    }

    /// Flushes and fsyncs the open pack.
    fn close(&mut self) -> Result<()> {
        if let Some((_, file, _)) = self.current.take() {
            let path = self.written.last().cloned().unwrap_or_default();
            let file = file
                .into_inner()
                .map_err(|e| Error::io(&path, e.into_error()))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    /// Makes every pack written durable (files and directory); answers how many.
    pub fn finish(mut self) -> Result<usize> {
        self.close()?;
        if !self.written.is_empty() {
            fsio::fsync_dir(&self.dir)?;
        }
        Ok(self.written.len())
    }

    /// Removes the packs written so far (the snapshot is given up).
    pub fn discard(mut self) {
        self.current = None;
        for p in &self.written {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What [`for_each_in_pack_order`] found about one original.
#[derive(Debug)]
pub enum Found {
    /// Its bytes, as the pack holds them (not yet checked against the hash).
    Bytes(Vec<u8>),
    /// Its pack is long enough (only sizes were asked for).
    Present,
    /// Why it cannot be read, as one line naming it.
    Problem(String),
}

/// What [`for_each_in_pack_order`] saw of the list itself.
#[derive(Debug, Default)]
pub struct ListFacts {
    pub count: u64,
    pub bytes: u64,
    /// The first line out of hash order (or repeating one).
    pub order_problem: Option<String>,
}

/// Streams the located `list`, and for each original calls `each` with what the
/// packs in `packs` hold for it: its bytes when `read`, else only whether its pack is
/// long enough. Originals are visited in pack order, [`SORT_ENTRIES`] at a time, so
/// the packs are read sequentially. Stops early when `each` answers `false`. A line
/// that does not parse is an error (originals before it may have been visited).
pub fn for_each_in_pack_order(
    packs: &Path,
    list: &Path,
    read: bool,
    mut each: impl FnMut(&Located, Found) -> bool,
) -> Result<ListFacts> {
    let file = File::open(list).map_err(|e| Error::io(list, e))?;
    let reader = std::io::BufReader::with_capacity(fsio::CHUNK, file);
    let mut names = HashMap::new();
    let mut lengths = PackLengths::new(packs);
    let mut facts = ListFacts::default();
    let mut previous: Option<Sha256Hex> = None;
    let mut batch = Vec::with_capacity(SORT_ENTRIES.min(64 * 1024));
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Error::io(list, e))?;
        let l = parse_located_line(&line, &mut names).ok_or_else(|| {
            Error::Invalid(format!(
                "{} line {}: not \"<sha256> <size> <pack> <offset>\"",
                list.display(),
                n + 1
            ))
        })?;
        if facts.order_problem.is_none() && previous.as_ref().is_some_and(|p| *p >= l.sha256) {
            facts.order_problem = Some(format!(
                "{}: {} is out of order or listed twice",
                super::layout::ORIGINALS_LIST,
                l.sha256
            ));
        }
        previous = Some(l.sha256.clone());
        facts.count += 1;
        facts.bytes += l.size;
        batch.push(l);
        if batch.len() >= SORT_ENTRIES && !visit(packs, &mut batch, read, &mut lengths, &mut each) {
            return Ok(facts);
        }
    }
    visit(packs, &mut batch, read, &mut lengths, &mut each);
    Ok(facts)
}

/// Visits `batch` in pack order and empties it; `false` when `each` asked to stop.
fn visit(
    packs: &Path,
    batch: &mut Vec<Located>,
    read: bool,
    lengths: &mut PackLengths,
    each: &mut impl FnMut(&Located, Found) -> bool,
) -> bool {
    batch.sort_unstable_by(|a, b| (&a.pack, a.offset).cmp(&(&b.pack, b.offset)));
    let mut open: Option<(Arc<str>, File)> = None;
    for l in batch.drain(..) {
        let found = locate(packs, &l, read, lengths, &mut open);
        if !each(&l, found) {
            return false;
        }
    }
    true
}

/// What the pack holds for `l`; `open` keeps the pack being read open.
fn locate(
    packs: &Path,
    l: &Located,
    read: bool,
    lengths: &mut PackLengths,
    open: &mut Option<(Arc<str>, File)>,
) -> Found {
    let path = pack_path(packs, &l.pack);
    let length = match lengths.length(&l.pack) {
        Ok(n) => n,
        Err(e) => return Found::Problem(format!("original {}: {e}", l.sha256)),
    };
    if !fits(l, length) {
        return Found::Problem(format!(
            "original {}: {PACKS}/{}.pack is {length} bytes, but the list puts it at {}..+{} (truncated)",
            l.sha256, l.pack, l.offset, l.size
        ));
    }
    if !read {
        return Found::Present;
    }
    if open.as_ref().is_none_or(|(name, _)| *name != l.pack) {
        match File::open(&path) {
            Ok(f) => *open = Some((l.pack.clone(), f)),
            Err(e) => {
                *open = None;
                return Found::Problem(format!("original {}: {}: {e}", l.sha256, path.display()));
            }
        }
    }
    let Some((_, file)) = open.as_ref() else {
        unreachable!("the pack was just opened");
    };
    let Ok(size) = usize::try_from(l.size) else {
        return Found::Problem(format!("original {}: too large to read", l.sha256));
    };
    let mut bytes = vec![0u8; size];
    match file.read_exact_at(&mut bytes, l.offset) {
        Ok(()) => Found::Bytes(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Found::Problem(format!(
            "original {}: {PACKS}/{}.pack ends before {}..+{} (truncated)",
            l.sha256, l.pack, l.offset, l.size
        )),
        Err(e) => Found::Problem(format!("original {}: {}: {e}", l.sha256, path.display())),
    }
}

/// Whether `l` lies inside a pack of `length` bytes.
fn fits(l: &Located, length: u64) -> bool {
    l.offset
        .checked_add(l.size)
        .is_some_and(|end| end <= length)
}

/// Why `bytes`, read for `l`, are not the original it names, if they are not.
pub fn altered(l: &Located, bytes: &[u8]) -> Option<String> {
    let actual = Sha256Hex::of(bytes);
    (actual != l.sha256).then(|| {
        format!(
            "original {}: content in {PACKS}/{}.pack hashes to {actual} (altered)",
            l.sha256, l.pack
        )
    })
}

/// Pack lengths by name, each looked up once (the length, or why there is none).
#[derive(Debug)]
pub struct PackLengths {
    dir: PathBuf,
    known: HashMap<Arc<str>, std::result::Result<u64, String>>,
}

impl PackLengths {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            known: HashMap::new(),
        }
    }

    /// The length of pack `name`, or why it has none (missing, not a file, …).
    pub fn length(&mut self, name: &Arc<str>) -> std::result::Result<u64, String> {
        let dir = &self.dir;
        self.known
            .entry(name.clone())
            .or_insert_with(|| match std::fs::metadata(pack_path(dir, name)) {
                Ok(m) if m.is_file() => Ok(m.len()),
                Ok(_) => Err(format!("{PACKS}/{name}.pack is not a file")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(format!("{PACKS}/{name}.pack is missing"))
                }
                Err(e) => Err(format!("{PACKS}/{name}.pack: {e}")),
            })
            .clone()
    }

    /// Whether the pack `l` names exists and holds all of `l` (for `backup create`,
    /// which trusts an earlier snapshot's original only while its pack holds it).
    pub fn holds(&mut self, l: &Located) -> bool {
        self.length(&l.pack).is_ok_and(|length| fits(l, length))
    }
}

/// The originals of an earlier snapshot's located list, in list order; `None` ends
/// them (the end of the file, or a line that does not parse: the backup then copies
/// the rest again rather than trust it).
pub struct ListReader {
    path: PathBuf,
    lines: std::io::Lines<std::io::BufReader<File>>,
    names: HashMap<String, Arc<str>>,
}

impl ListReader {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_owned(),
            lines: std::io::BufReader::with_capacity(fsio::CHUNK, file).lines(),
            names: HashMap::new(),
        })
    }
}

impl Iterator for ListReader {
    type Item = Located;

    fn next(&mut self) -> Option<Located> {
        let line = match self.lines.next()? {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(list = %self.path.display(), error = %e, "reading an earlier snapshot's list failed; copying the rest of the originals again");
                return None;
            }
        };
        let parsed = parse_located_line(&line, &mut self.names);
        if parsed.is_none() {
            tracing::warn!(list = %self.path.display(), "an earlier snapshot's list has a malformed line; copying the rest of the originals again");
        }
        parsed
    }
}
