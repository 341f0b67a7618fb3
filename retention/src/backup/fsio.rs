//! File work for backups: hashing while writing or copying, temp file + fsync +
//! rename, and fsyncing the directories that changed. All blocking: callers run it
//! on `spawn_blocking`.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Read and write buffer size.
pub const CHUNK: usize = 256 * 1024;

/// A file being written whose SHA-256 and size are computed on the way.
#[derive(Debug)]
pub struct HashingFile {
    path: PathBuf,
    file: std::io::BufWriter<File>,
    hasher: Sha256,
    size: u64,
    newlines: u64,
}

impl HashingFile {
    /// Creates `path` (which must not exist) with `mode`.
    pub fn create(path: &Path, mode: u32) -> Result<Self> {
        Self::create_buffered(path, mode, CHUNK)
    }

    /// [`HashingFile::create`] with a write buffer of `capacity` bytes.
    fn create_buffered(path: &Path, mode: u32, capacity: usize) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_owned(),
            file: std::io::BufWriter::with_capacity(capacity, file),
            hasher: Sha256::new(),
            size: 0,
            newlines: 0,
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        self.newlines += bytes.iter().filter(|b| **b == b'\n').count() as u64;
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Flushes and fsyncs; answers (sha256 hex, size, number of `\n` bytes).
    pub fn finish(self) -> Result<(String, u64, u64)> {
        self.finish_with(true)
    }

    /// [`HashingFile::finish`], fsyncing only when `sync` (otherwise the caller
    /// makes the file durable later, e.g. with [`syncfs`]).
    fn finish_with(self, sync: bool) -> Result<(String, u64, u64)> {
        let file = self
            .file
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        if sync {
            file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        }
        Ok((
            hex::encode(self.hasher.finalize()),
            self.size,
            self.newlines,
        ))
    }
}

/// Writes `bytes` to `path` (which must not exist) with `mode`, fsynced; answers
/// (sha256 hex, size).
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(String, u64)> {
    write_new_with(path, bytes, mode, true)
}

fn write_new_with(path: &Path, bytes: &[u8], mode: u32, sync: bool) -> Result<(String, u64)> {
    let mut f = HashingFile::create(path, mode)?;
    f.write(bytes)?;
    let (sha, size, _) = f.finish_with(sync)?;
    Ok((sha, size))
}

/// Writes back every dirty file and directory of the filesystem holding `path`
/// (syncfs(2)); an error means something written there may not be durable.
pub fn syncfs(path: &Path) -> Result<()> {
    let dir = File::open(path).map_err(|e| Error::io(path, e))?;
    rustix::fs::syncfs(&dir).map_err(|e| Error::io(path, e.into()))
}

/// SHA-256 (hex) and size of the file at `path`, read in chunks.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Creates `dir` and its missing parents with `mode`.
pub fn create_dirs(dir: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

/// A content-addressed directory (`sha256/ab/cd/<hash>`) that files are put into
/// atomically: temp file, fsync, rename. The directories that changed are fsynced
/// once, by [`ContentDir::sync_dirs`], instead of after every file.
///
/// [`ContentDir::unsynced`] skips the fsync of each file: [`ContentDir::sync_dirs`]
/// then makes everything durable at once with syncfs(2), which is much faster for
/// many small files. A crash before that can leave files whose content was lost
/// behind, so the caller must either discard the directory after a crash (a
/// restore, guarded by its marker) or open it with `recheck` the next time (a
/// backup, see [`UNSYNCED_MARKER`]): then a file already there is re-hashed before
/// it is trusted.
#[derive(Debug)]
pub struct ContentDir {
    root: PathBuf,
    dirty: Mutex<BTreeSet<PathBuf>>,
    counter: AtomicU64,
    sync_each: bool,
    recheck: bool,
    fresh: bool,
}

/// In a backup's `originals/` while `backup create` writes files there that are not
/// yet durable; found at the start of the next one, it means a crash, and files
/// already there are re-hashed before they are trusted.
pub const UNSYNCED_MARKER: &str = ".unsynced";

/// What putting one file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Copied(u64),
    /// A file of the right size was there already.
    Present,
}

impl ContentDir {
    pub fn new(root: &Path) -> Result<Self> {
        create_dirs(root, 0o755)?;
        Ok(Self {
            root: root.to_owned(),
            dirty: Mutex::new(BTreeSet::new()),
            counter: AtomicU64::new(0),
            sync_each: true,
            recheck: false,
            fresh: false,
        })
    }

    /// An empty directory that is not trusted until its caller says so (a restore
    /// target, guarded by its marker): each file is written straight under its name
    /// — no presence check, no temp file and rename — and all are made durable by
    /// [`ContentDir::sync_dirs`]. A file already there is an error.
    pub fn fresh(root: &Path) -> Result<Self> {
        Ok(Self {
            fresh: true,
            ..Self::unsynced(root, false)?
        })
    }

    /// A directory whose files are made durable together, by [`ContentDir::sync_dirs`];
    /// with `recheck`, a file already there counts only if its content hashes right.
    pub fn unsynced(root: &Path, recheck: bool) -> Result<Self> {
        Ok(Self {
            sync_each: false,
            recheck,
            ..Self::new(root)?
        })
    }

    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.root.join(super::layout::original_rel(sha256))
    }

    /// Whether a file for `sha256` of `size` bytes is present (its content is
    /// re-hashed only with `recheck`; `backup verify` does it always).
    pub fn has(&self, sha256: &str, size: u64) -> Result<bool> {
        let path = self.path_of(sha256);
        match std::fs::metadata(&path) {
            Ok(m) if self.recheck && m.is_file() && m.len() == size => {
                Ok(hash_file(&path).map_err(|e| Error::io(&path, e))? == (sha256.to_owned(), size))
            }
            Ok(m) => Ok(m.is_file() && m.len() == size),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Where `sha256` goes, its leaf directory created.
    fn dest_for(&self, sha256: &str) -> Result<(PathBuf, PathBuf)> {
        let dest = self.path_of(sha256);
        let leaf = dest
            .parent()
            .ok_or_else(|| Error::Invalid(format!("no directory for {}", dest.display())))?
            .to_owned();
        if !leaf.is_dir() {
            create_dirs(&leaf, 0o755)?;
        }
        Ok((leaf, dest))
    }

    /// A temp file beside where `sha256` goes (leaf directory created), and the final path.
    fn temp_for(&self, sha256: &str) -> Result<(PathBuf, PathBuf)> {
        let (leaf, dest) = self.dest_for(sha256)?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = leaf.join(format!(".{sha256}.tmp-{}-{n}", std::process::id()));
        Ok((tmp, dest))
    }

    fn commit(&self, tmp: &Path, dest: &Path) -> Result<()> {
        std::fs::rename(tmp, dest).map_err(|e| Error::io(dest, e))?;
        let mut dirty = self
            .dirty
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut dir = dest.parent();
        while let Some(d) = dir {
            if !dirty.insert(d.to_owned()) || d == self.root {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    /// Puts `bytes` (already known to hash to `sha256`) unless present.
    pub fn put_bytes(&self, sha256: &str, bytes: &[u8]) -> Result<Put> {
        if self.has(sha256, bytes.len() as u64)? {
            return Ok(Put::Present);
        }
        let (tmp, dest) = self.temp_for(sha256)?;
        let written = write_new_with(&tmp, bytes, 0o644, self.sync_each);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.commit(&tmp, &dest)?;
        Ok(Put::Copied(bytes.len() as u64))
    }

    /// Copies the file `src`, which must hash to `sha256` and be `size` bytes long,
    /// checking both on the way; nothing is put when they differ. `advance` is told
    /// the bytes as they are copied.
    pub fn put_file(
        &self,
        src: &Path,
        sha256: &str,
        size: u64,
        advance: &dyn Fn(u64),
    ) -> Result<Put> {
        if !self.fresh && self.has(sha256, size)? {
            return Ok(Put::Present);
        }
        // A fresh directory takes the file straight under its name; otherwise a temp
        // file, renamed into place once it checks out.
        let (write_to, rename_to) = if self.fresh {
            (self.dest_for(sha256)?.1, None)
        } else {
            let (tmp, dest) = self.temp_for(sha256)?;
            (tmp, Some(dest))
        };
        let result = copy_checked(src, &write_to, sha256, size, self.sync_each, advance);
        if let Err(e) = result {
            let _ = std::fs::remove_file(&write_to);
            return Err(e);
        }
        if let Some(dest) = rename_to {
            self.commit(&write_to, &dest)?;
        }
        Ok(Put::Copied(size))
    }

    /// fsyncs every directory that gained a file or a subdirectory, deepest first
    /// (an [`ContentDir::unsynced`] one: syncs the whole filesystem instead).
    pub fn sync_dirs(&self) -> Result<()> {
        let dirty = std::mem::take(
            &mut *self
                .dirty
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !self.sync_each {
            return syncfs(&self.root);
        }
        for d in dirty.iter().rev() {
            fsync_dir(d)?;
        }
        if let Some(parent) = self.root.parent() {
            fsync_dir(parent)?;
        }
        Ok(())
    }
}

/// Copies `src` to the new file `dst` (0644), checking that it is `size` bytes
/// hashing to `sha256`; fsyncs `dst` when `sync`.
pub fn copy_checked(
    src: &Path,
    dst: &Path,
    sha256: &str,
    size: u64,
    sync: bool,
    advance: &dyn Fn(u64),
) -> Result<()> {
    let mut input = File::open(src).map_err(|e| Error::io(src, e))?;
    // Buffers sized to the file: most originals are a few KiB, and zeroing two
    // 256 KiB buffers per file would cost more than copying it.
    let capacity = usize::try_from(size)
        .unwrap_or(CHUNK)
        .saturating_add(1)
        .clamp(8192, CHUNK);
    let mut out = HashingFile::create_buffered(dst, 0o644, capacity)?;
    let mut buf = vec![0u8; capacity];
    loop {
        let n = input.read(&mut buf).map_err(|e| Error::io(src, e))?;
        if n == 0 {
            break;
        }
        out.write(&buf[..n])?;
        advance(n as u64);
        if out.size > size {
            break;
        }
    }
    let (actual, actual_size, _) = out.finish_with(sync)?;
    if actual_size != size {
        return Err(Error::Invalid(format!(
            "{}: {actual_size} bytes where {size} were expected (truncated or altered)",
            src.display()
        )));
    }
    if actual != sha256 {
        return Err(Error::Invalid(format!(
            "{}: content hashes to {actual}, not {sha256} (altered)",
            src.display()
        )));
    }
    Ok(())
}

/// Copies a private file (keys): `dst` is created 0600 and fsynced; answers
/// (sha256 hex, size).
pub fn copy_private(src: &Path, dst: &Path) -> Result<(String, u64)> {
    let mut input = File::open(src).map_err(|e| Error::io(src, e))?;
    let mut out = HashingFile::create(dst, 0o600)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = input.read(&mut buf).map_err(|e| Error::io(src, e))?;
        if n == 0 {
            break;
        }
        out.write(&buf[..n])?;
    }
    // `mode` on create is filtered by the umask; keys must be exactly 0600.
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(dst, e))?;
    let (sha, size, _) = out.finish()?;
    Ok((sha, size))
}

/// Every regular file below `root`, as sorted `/`-separated relative paths.
/// Anything else (symlinks, sockets, …) is an error naming it.
pub fn list_files(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_owned(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| {
                Error::Invalid(format!("{}: file name is not UTF-8", path.display()))
            })?;
            let rel = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
            if kind.is_dir() {
                stack.push((path, rel));
            } else if kind.is_file() {
                out.push(rel);
            } else {
                return Err(Error::Invalid(format!(
                    "{}: not a regular file or directory",
                    path.display()
                )));
            }
        }
    }
    out.sort();
    Ok(out)
}
