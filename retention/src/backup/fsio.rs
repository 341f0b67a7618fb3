//! File work for backups: hashing while writing or copying, fsyncing files and
//! directories, and the content-addressed directory a restore fills. All blocking:
//! callers run it on `spawn_blocking`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    let mut f = HashingFile::create(path, mode)?;
    f.write(bytes)?;
    let (sha, size, _) = f.finish()?;
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

/// fsyncs the directory `dir` (or a file: opening read-only and syncing works for
/// both).
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

/// A content-addressed directory (`sha256/ab/cd/<hash>`, the local store's layout)
/// that a restore fills. It was checked empty and is not trusted before the restore
/// has finished (see `INCOMPLETE_MARKER`), so each file is written straight under its
/// name, without an fsync of its own, and [`ContentDir::sync_dirs`] makes all of them
/// durable at once with syncfs(2), which is much faster for many small files. A file
/// already there is an error.
#[derive(Debug)]
pub struct ContentDir {
    root: PathBuf,
}

impl ContentDir {
    pub fn fresh(root: &Path) -> Result<Self> {
        create_dirs(root, 0o700)?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.root.join(super::layout::original_rel(sha256))
    }

    /// Writes `bytes` (already checked to hash to `sha256`) as a new file.
    pub fn put_new(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        let dest = self.path_of(sha256);
        let open = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dest)
        };
        let mut file = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(leaf) = dest.parent() {
                    create_dirs(leaf, 0o700)?;
                }
                open()
            }
            other => other,
        }
        .map_err(|e| Error::io(&dest, e))?;
        if let Err(e) = file.write_all(bytes) {
            drop(file);
            let _ = std::fs::remove_file(&dest);
            return Err(Error::io(&dest, e));
        }
        Ok(())
    }

    /// Makes everything written below the root durable (syncs its filesystem).
    pub fn sync_dirs(&self) -> Result<()> {
        syncfs(&self.root)?;
        if let Some(parent) = self.root.parent() {
            fsync_dir(parent)?;
        }
        Ok(())
    }
}

/// Copies `src` to the new file `dst` (0600), checking that it is `size` bytes
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
    let mut out = HashingFile::create_buffered(dst, 0o600, capacity)?;
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
