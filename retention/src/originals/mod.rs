//! The originals store: the exact bytes received (and, later, the authority's answers),
//! content-addressed by SHA-256 so a byte-exact original is never re-serialised and
//! any change to it shows.
//!
//! Keys are `sha256/ab/cd/<64 hex>`. By default the store is a local directory under
//! the data dir; an S3-compatible bucket is chosen by config. A bucket with Object
//! Lock keeps every original as a WORM object ([`worm`]): written locked in
//! compliance mode until its retain-until date (a filing's document: filing time +
//! its type's retention period; anything else [`DEFAULT_LOCK_YEARS`] from the
//! write), legal holds set on it while a filing is held, and deletable only after
//! that. Production refuses a bucket without Object Lock ([`Originals::require_worm`]).
//! A put is durable before it returns (on the local backend the file, the
//! directory it is linked into and every directory the put created are fsynced; the
//! store root and its parent once, when the store is opened), putting the same bytes
//! twice is a no-op, and a get re-checks the hash.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::backup::fsio::fsync_dir;
use crate::{Error, Result, Sha256Hex};

pub mod worm;
pub use worm::{DEFAULT_LOCK_YEARS, ObjectLock};

/// Where originals live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum OriginalsConfig {
    /// A local directory (default: `<data_dir>/originals`).
    Local {
        // Omitted when unset, so layered config (defaults, then a file choosing S3)
        // does not carry a `dir` key into the S3 table.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dir: Option<PathBuf>,
    },
    /// An S3-compatible bucket.
    S3(S3Config),
}

impl Default for OriginalsConfig {
    fn default() -> Self {
        OriginalsConfig::Local { dir: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Endpoint URL for S3-compatible services; `None` means AWS itself.
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint (test emulators only).
    #[serde(default)]
    pub allow_http: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Handle to the originals store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Originals {
    store: Arc<dyn ObjectStore>,
    /// The root directory when the store is local.
    local_root: Option<PathBuf>,
    /// Object Lock requests, when the store is an S3 bucket.
    worm: Option<Arc<worm::Worm>>,
}

/// Above this size a put first asks whether the original is already stored.
const ASK_FIRST_ABOVE_BYTES: usize = 64 * 1024;

/// The store key of an original.
fn key(sha256: &Sha256Hex) -> Path {
    let h = sha256.as_str();
    Path::from(format!("sha256/{}/{}/{}", &h[0..2], &h[2..4], h))
}

impl Originals {
    /// Opens the store `config` names; `data_dir` anchors the default local directory.
    pub fn open(config: &OriginalsConfig, data_dir: &FsPath) -> Result<Self> {
        match config {
            OriginalsConfig::Local { dir } => {
                Self::local(&dir.clone().unwrap_or_else(|| data_dir.join("originals")))
            }
            OriginalsConfig::S3(s3) => Self::s3(s3),
        }
    }

    /// A store in a local directory, created if missing (0700: originals are
    /// personal data; the files and subdirectories the store makes follow the
    /// process umask, which `ivan` sets to 077).
    pub fn local(dir: &FsPath) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, e))?;
        let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        // The root may just have been created: its entry is durable from here on.
        for d in [Some(root.as_path()), root.parent()].into_iter().flatten() {
            fsync_dir(d)?;
        }
        // object_store fsyncs each written file, the directory it is linked into and
        // every directory it creates (up to the first that existed) before a put
        // returns: two fsyncs per original once its directories exist.
        let store = LocalFileSystem::new_with_prefix(&root)?.with_fsync(true);
        Ok(Self {
            store: Arc::new(store),
            local_root: Some(root),
            worm: None,
        })
    }

    /// A store in an S3-compatible bucket.
    pub fn s3(config: &S3Config) -> Result<Self> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_allow_http(config.allow_http);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(id) = &config.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build()?;
        let worm = worm::Worm::new(config, store.credentials().clone())?;
        Ok(Self {
            store: Arc::new(store),
            local_root: None,
            worm: Some(Arc::new(worm)),
        })
    }

    /// The Object Lock side of this store when its bucket has Object Lock enabled
    /// (asked once); `None` for a local store or a bucket without it.
    async fn locked(&self) -> Result<Option<&worm::Worm>> {
        match &self.worm {
            Some(w) if w.enabled().await? => Ok(Some(w)),
            _ => Ok(None),
        }
    }

    /// Whether originals are kept as WORM objects (an S3 bucket with Object Lock).
    pub async fn is_worm(&self) -> Result<bool> {
        Ok(self.locked().await?.is_some())
    }

    /// Refuses (with what to do) an S3 bucket without Object Lock, as production
    /// does at start-up; a local store is the operator's to protect and passes.
    pub async fn require_worm(&self) -> Result<()> {
        if self.worm.is_some() && !self.is_worm().await? {
            return Err(Error::Invalid(format!(
                "the originals bucket ({}) has no Object Lock: originals are legal evidence \
                 and must be write-once in production. Create the bucket with Object Lock \
                 enabled (it cannot be turned on for an existing bucket without AWS \
                 support) and point [originals] bucket at it",
                self.store
            )));
        }
        Ok(())
    }

    /// A human description of where originals live.
    pub fn describe(&self) -> String {
        match &self.local_root {
            Some(root) => format!("local directory {}", root.display()),
            None => self.store.to_string(),
        }
    }

    /// Stores `bytes` and returns their SHA-256. Durable when it returns. Storing bytes
    /// that are already there changes nothing.
    pub async fn put(&self, bytes: Bytes) -> Result<Sha256Hex> {
        self.put_until(bytes, None).await
    }

    /// [`Originals::put`], kept as a WORM object until at least `until` (default:
    /// [`DEFAULT_LOCK_YEARS`] from now) on a bucket with Object Lock; an original
    /// already stored has its lock extended if it would end sooner.
    pub async fn put_until(&self, bytes: Bytes, until: Option<DateTime<Utc>>) -> Result<Sha256Hex> {
        let sha256 = Sha256Hex::of_bytes(&bytes).await;
        let location = key(&sha256);
        if let Some(worm) = self.locked().await? {
            let until = until.unwrap_or_else(|| worm::default_retain_until(Utc::now()));
            worm.put(&location, bytes, until).await?;
            return Ok(sha256);
        }
        // A large original already stored is not written again; for a small one,
        // writing it costs less than asking first (and a put is create-only).
        if bytes.len() > ASK_FIRST_ABOVE_BYTES {
            match self.store.head(&location).await {
                Ok(_) => {
                    self.sync_existing(&location).await?;
                    return Ok(sha256);
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&location, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                self.sync_existing(&location).await?;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(sha256)
    }

    /// Makes an original found already stored durable before a put says so: a
    /// concurrent put of the same bytes may have linked it and not yet synced its
    /// directory. (Its parent directories were synced before it was linked.)
    async fn sync_existing(&self, location: &Path) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let file = root.join(location.as_ref());
        tokio::task::spawn_blocking(move || {
            let dir = file.parent().unwrap_or(&file).to_path_buf();
            fsync_dir(&file)?;
            fsync_dir(&dir)
        })
        .await
        .map_err(|e| Error::Internal(format!("fsync task failed: {e}")))?
    }

    /// The bytes stored under `sha256`, after checking they still hash to it.
    pub async fn get(&self, sha256: &Sha256Hex) -> Result<Bytes> {
        let bytes = match self.store.get(&key(sha256)).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::MissingOriginal(sha256.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        hashes_to(sha256, &bytes)?;
        Ok(bytes)
    }

    /// Removes the original with this hash (the retention policy's purge); `false`
    /// when it was not there. On an S3 bucket with Object Lock every version goes,
    /// and a delete before the lock's retain-until date, or under a legal hold, is
    /// refused by the bucket and comes back as [`Error::Conflict`].
    pub async fn delete(&self, sha256: &Sha256Hex) -> Result<bool> {
        if let Some(worm) = self.locked().await? {
            return worm.delete(&key(sha256)).await;
        }
        if !self.contains(sha256).await? {
            return Ok(false);
        }
        match self.store.delete(&key(sha256)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// The Object Lock the original carries; `None` when the store has no Object
    /// Lock or the original is not there.
    pub async fn lock(&self, sha256: &Sha256Hex) -> Result<Option<ObjectLock>> {
        match self.locked().await? {
            Some(worm) => worm.lock(&key(sha256)).await,
            None => Ok(None),
        }
    }

    /// Extends the original's lock to at least `until` (nothing without Object Lock).
    pub async fn retain_until(&self, sha256: &Sha256Hex, until: DateTime<Utc>) -> Result<()> {
        match self.locked().await? {
            Some(worm) => worm.extend(&key(sha256), until).await,
            None => Ok(()),
        }
    }

    /// Turns the storage's legal hold on the original on or off; `false` when the
    /// store has no Object Lock (the record's holds still keep it from the purge).
    pub async fn set_legal_hold(&self, sha256: &Sha256Hex, on: bool) -> Result<bool> {
        match self.locked().await? {
            Some(worm) => worm.legal_hold(&key(sha256), on).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Whether an original with this hash is stored (no content check).
    pub async fn contains(&self, sha256: &Sha256Hex) -> Result<bool> {
        match self.store.head(&key(sha256)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-reads each of `shas` and checks it still hashes to its name: answers, in
    /// order, its size or the error [`Originals::get`] would give. On a local store
    /// the list is cut into `parallel` runs, each read one file after another on one
    /// blocking thread: a thread hand-off per original (as `get` makes) costs more
    /// than reading a small file. Elsewhere `parallel` gets run at a time.
    pub async fn check_many(&self, shas: Vec<Sha256Hex>, parallel: usize) -> Vec<Result<u64>> {
        let Some(root) = &self.local_root else {
            return futures::stream::iter(shas)
                .map(|sha| async move { self.get(&sha).await.map(|b| b.len() as u64) })
                .buffered(parallel.max(1))
                .collect()
                .await;
        };
        let per_run = shas.len().div_ceil(parallel.max(1)).max(1);
        let mut runs = Vec::new();
        let mut shas = shas.into_iter().peekable();
        while shas.peek().is_some() {
            let run: Vec<Sha256Hex> = shas.by_ref().take(per_run).collect();
            let (root, len) = (root.clone(), run.len());
            let task = tokio::task::spawn_blocking(move || {
                run.iter()
                    .map(|sha| check_local(&root, sha))
                    .collect::<Vec<_>>()
            });
            runs.push((task, len));
        }
        let mut out = Vec::new();
        for (task, len) in runs {
            match task.await {
                Ok(checked) => out.extend(checked),
                // One answer per original still, so callers can pair them up.
                Err(e) => out.extend(
                    (0..len).map(|_| Err(Error::Invalid(format!("reading originals: {e}")))),
                ),
            }
        }
        out
    }

    /// Checks the store answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        if let Some(root) = &self.local_root {
            let meta = tokio::fs::metadata(root)
                .await
                .map_err(|e| Error::io(root, e))?;
            if !meta.is_dir() {
                return Err(Error::Invalid(format!(
                    "{} is not a directory",
                    root.display()
                )));
            }
            return Ok(());
        }
        match self.store.head(&Path::from("readyz-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every hash in the store, in no particular order (for orphan checks).
    pub fn list(&self) -> BoxStream<'_, Result<Sha256Hex>> {
        self.store
            .list(Some(&Path::from("sha256")))
            .map(|meta| {
                let meta = meta?;
                let name = meta.location.filename().unwrap_or_default();
                Sha256Hex::parse(name).ok_or_else(|| {
                    Error::Invalid(format!(
                        "unexpected object {} in originals store",
                        meta.location
                    ))
                })
            })
            .boxed()
    }
}

/// A body written into the local store's directory as it arrives and hashed on the
/// way ([`Originals::stage`]), so that a large document is never held in memory
/// whole. It is an unnamed file (`O_TMPFILE`) until [`Originals::put_staged`] links
/// it in as an original without copying it: a process that dies, or a staged body
/// dropped before that, leaves nothing behind.
#[derive(Debug)]
pub struct Staged {
    file: std::fs::File,
    len: u64,
    sha256: Sha256Hex,
    /// The store's root (linking works only within one filesystem).
    root: PathBuf,
}

impl Staged {
    /// The staged bytes: the first [`Staged::len`] bytes of this file.
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn sha256(&self) -> &Sha256Hex {
        &self.sha256
    }

    /// Reads the whole body into memory (where a caller needs it there).
    pub fn bytes(&self) -> Result<Bytes> {
        use std::os::unix::fs::FileExt;
        let len = usize::try_from(self.len)
            .map_err(|_| Error::Invalid("a staged body is too large to read".into()))?;
        let mut out = vec![0; len];
        self.file
            .read_exact_at(&mut out, 0)
            .map_err(|e| Error::io(&self.root, e))?;
        Ok(Bytes::from(out))
    }
}

/// A body being staged ([`Originals::stage`]): gathered a mebibyte at a time, then
/// hashed and written on a blocking thread.
#[derive(Debug)]
pub struct Stager {
    /// `None` after a failed write: the staged body is lost.
    file: Option<std::fs::File>,
    hasher: sha2::Sha256,
    written: u64,
    buffer: Vec<u8>,
    root: PathBuf,
}

/// What a [`Stager`] gathers before it writes.
const STAGE_BUFFER_BYTES: usize = 1024 * 1024;

impl Stager {
    /// Appends `data`.
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= STAGE_BUFFER_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Bytes taken so far.
    pub fn len(&self) -> u64 {
        self.written + self.buffer.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn flush(&mut self) -> Result<()> {
        use sha2::Digest;
        use std::io::Write;
        let Some(mut file) = self.file.take() else {
            return Err(Error::Internal(
                "a staged body was written to after its write failed".into(),
            ));
        };
        let buffer = std::mem::take(&mut self.buffer);
        let mut hasher = std::mem::take(&mut self.hasher);
        let root = self.root.clone();
        let (file, hasher, buffer) = tokio::task::spawn_blocking(move || {
            hasher.update(&buffer);
            file.write_all(&buffer).map_err(|e| Error::io(&root, e))?;
            Ok::<_, Error>((file, hasher, buffer))
        })
        .await
        .map_err(|e| Error::Internal(format!("staging task failed: {e}")))??;
        self.written += buffer.len() as u64;
        self.file = Some(file);
        self.hasher = hasher;
        self.buffer = buffer;
        self.buffer.clear();
        Ok(())
    }

    /// The staged body, written (not yet synced: [`Originals::put_staged`] syncs
    /// what it keeps).
    pub async fn finish(mut self) -> Result<Staged> {
        use sha2::Digest;
        if !self.buffer.is_empty() {
            self.flush().await?;
        }
        let file = self.file.take().ok_or_else(|| {
            Error::Internal("a staged body was finished after its write failed".into())
        })?;
        let digest = std::mem::take(&mut self.hasher).finalize();
        let sha256 = Sha256Hex::parse(&hex::encode(digest))
            .ok_or_else(|| Error::Internal("a staged body's hash is not hex".into()))?;
        Ok(Staged {
            file,
            len: self.written,
            sha256,
            root: self.root,
        })
    }
}

impl Originals {
    /// Starts staging a body in this store ([`Staged`]); an error where the store
    /// cannot stage (an S3 bucket, or a filesystem without `O_TMPFILE`): the caller
    /// then keeps the body in memory.
    pub fn stage(&self) -> Result<Stager> {
        use rustix::fs::{Mode, OFlags};
        let root = self
            .local_root
            .clone()
            .ok_or_else(|| Error::Invalid("only a local originals store stages bodies".into()))?;
        let fd = rustix::fs::open(
            &root,
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .map_err(|e| Error::io(&root, e.into()))?;
        Ok(Stager {
            file: Some(std::fs::File::from(fd)),
            hasher: sha2::Sha256::default(),
            written: 0,
            buffer: Vec::with_capacity(STAGE_BUFFER_BYTES),
            root,
        })
    }

    /// Keeps a staged body as an original ([`Originals::put`] for bytes that were
    /// staged): synced, then linked under its hash in the same directories a put
    /// would use. Durable when it returns; an original already stored stays as it
    /// was.
    pub async fn put_staged(&self, staged: Arc<Staged>) -> Result<Sha256Hex> {
        let root = self.local_root.clone().ok_or_else(|| {
            Error::Invalid("a staged body can be kept only by a local originals store".into())
        })?;
        if root != staged.root {
            return Err(Error::Invalid(format!(
                "a body staged in {} cannot be kept in {}",
                staged.root.display(),
                root.display()
            )));
        }
        let location = key(&staged.sha256);
        let path = root.join(location.as_ref());
        let sha256 = staged.sha256.clone();
        tokio::task::spawn_blocking(move || link_staged(&root, &path, &staged))
            .await
            .map_err(|e| Error::Internal(format!("keeping a staged original failed: {e}")))??;
        Ok(sha256)
    }
}

/// [`Originals::put_staged`] on a blocking thread: sync the file, create (and sync)
/// the directories it goes into, link it in, sync its directory.
fn link_staged(root: &FsPath, path: &FsPath, staged: &Staged) -> Result<()> {
    use rustix::fs::{AtFlags, CWD};
    use std::os::fd::AsRawFd;
    staged.file.sync_all().map_err(|e| Error::io(path, e))?;
    let dir = path.parent().unwrap_or(root);
    // Every directory this creates is synced, and its parent, as a put would.
    let mut missing = Vec::new();
    let mut up = Some(dir);
    while let Some(d) = up
        && d != root
        && !d.exists()
    {
        missing.push(d);
        up = d.parent();
    }
    if !missing.is_empty() {
        crate::backup::fsio::create_dirs(dir, 0o700)?;
        for d in &missing {
            fsync_dir(d)?;
        }
        if let Some(top) = missing.last().and_then(|d| d.parent()) {
            fsync_dir(top)?;
        }
    }
    // An unnamed file is linked through its /proc entry (open(2), O_TMPFILE).
    let from = format!("/proc/self/fd/{}", staged.file.as_raw_fd());
    match rustix::fs::linkat(CWD, from.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW) {
        Ok(()) => {}
        // The same bytes were kept before (or by a concurrent request): made durable
        // as a put finding them would.
        Err(rustix::io::Errno::EXIST) => fsync_dir(path)?,
        Err(e) => return Err(Error::io(path, e.into())),
    }
    fsync_dir(dir)
}

/// [`Originals::check_many`] of one original in the local store at `root`.
fn check_local(root: &FsPath, sha256: &Sha256Hex) -> Result<u64> {
    let path = root.join(key(sha256).as_ref());
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingOriginal(sha256.to_string()));
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    hashes_to(sha256, &bytes)?;
    Ok(bytes.len() as u64)
}

/// `bytes` are the original `sha256` names, or it is corrupt.
fn hashes_to(sha256: &Sha256Hex, bytes: &[u8]) -> Result<()> {
    let actual = Sha256Hex::of(bytes);
    if &actual != sha256 {
        return Err(Error::CorruptOriginal {
            sha256: sha256.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::files_under;

    /// The contract every backend keeps.
    async fn exercise(store: &Originals) -> Sha256Hex {
        store.ping().await.unwrap();
        let bytes = Bytes::from_static(b"<doc>exact bytes \r\n kept</doc>");
        let h1 = store.put(bytes.clone()).await.unwrap();
        assert_eq!(h1, Sha256Hex::of(&bytes));
        let h2 = store.put(bytes.clone()).await.unwrap();
        assert_eq!(h1, h2, "same bytes, same key, no second object");
        assert_eq!(store.get(&h1).await.unwrap(), bytes);
        assert!(store.contains(&h1).await.unwrap());
        let listed: Vec<_> = store.list().collect::<Vec<_>>().await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].as_ref().unwrap(), &h1);
        let absent = Sha256Hex::of(b"never stored");
        assert!(matches!(
            store.get(&absent).await,
            Err(Error::MissingOriginal(_))
        ));
        assert!(!store.contains(&absent).await.unwrap());
        // Many at once: sizes or the errors `get` gives, in order, whatever the runs.
        let h3 = store.put(Bytes::from_static(b"third")).await.unwrap();
        for parallel in [1, 2, 16] {
            let checked = store
                .check_many(vec![h1.clone(), absent.clone(), h3.clone()], parallel)
                .await;
            assert_eq!(checked.len(), 3);
            assert_eq!(*checked[0].as_ref().unwrap(), bytes.len() as u64);
            assert!(matches!(checked[1], Err(Error::MissingOriginal(_))));
            assert_eq!(*checked[2].as_ref().unwrap(), 5);
        }
        assert!(store.check_many(Vec::new(), 4).await.is_empty());
        store.delete(&h3).await.unwrap();
        // Deleting removes it once; the second time there is nothing to delete.
        let gone = store
            .put(Bytes::from_static(b"to be purged"))
            .await
            .unwrap();
        assert!(store.delete(&gone).await.unwrap());
        assert!(!store.contains(&gone).await.unwrap());
        assert!(!store.delete(&gone).await.unwrap());
        h1
    }

    #[tokio::test]
    async fn s3_bucket_keeps_the_same_contract() {
        let s3 = crate::testing::S3Emulator::start().await;
        let store = Originals::s3(&s3.config()).unwrap();
        exercise(&store).await;
        // A large original survives byte-exact.
        let big = Bytes::from(
            (0..3_000_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<_>>(),
        );
        let h = store.put(big.clone()).await.unwrap();
        assert_eq!(store.get(&h).await.unwrap(), big);
    }

    /// Waits (at most 20 s) until the real clock is past `t`: the bucket's locks
    /// run on its own clock.
    async fn until_past(t: DateTime<Utc>) {
        for _ in 0..200 {
            if Utc::now() > t + chrono::TimeDelta::milliseconds(200) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the clock did not pass {t}");
    }

    #[tokio::test]
    async fn an_object_lock_bucket_keeps_originals_write_once_until_their_date() {
        let s3 = crate::testing::S3Emulator::start_locked().await;
        let store = Originals::s3(&s3.config()).unwrap();
        assert!(store.is_worm().await.unwrap());
        store.require_worm().await.unwrap();
        // Written locked in compliance mode, by default for the legal minimum.
        let bytes = Bytes::from_static(b"<doc>filed</doc>");
        let before = Utc::now();
        let h = store.put(bytes.clone()).await.unwrap();
        assert_eq!(store.get(&h).await.unwrap(), bytes);
        let lock = store.lock(&h).await.unwrap().unwrap();
        assert_eq!(lock.mode.as_deref(), Some("COMPLIANCE"));
        let until = lock.retain_until.unwrap();
        assert!(until >= worm::default_retain_until(before) - chrono::TimeDelta::seconds(1));
        assert!(until <= worm::default_retain_until(Utc::now()) + chrono::TimeDelta::seconds(1));
        assert!(!lock.legal_hold);
        // A purge before that date fails at the storage, and leaves the bytes.
        assert!(matches!(store.delete(&h).await, Err(Error::Conflict(_))));
        assert_eq!(store.get(&h).await.unwrap(), bytes);
        // Filed again with a later date: the lock grows; with an earlier one it stays.
        let later = until + chrono::TimeDelta::days(400);
        assert_eq!(
            store.put_until(bytes.clone(), Some(later)).await.unwrap(),
            h
        );
        let grown = store.lock(&h).await.unwrap().unwrap().retain_until.unwrap();
        assert!(grown >= later, "{grown} < {later}");
        store.put_until(bytes.clone(), Some(until)).await.unwrap();
        store.retain_until(&h, until).await.unwrap();
        assert_eq!(
            store.lock(&h).await.unwrap().unwrap().retain_until,
            Some(grown)
        );

        // One whose date passes: a legal hold still keeps it, until released.
        let short = Utc::now() + chrono::TimeDelta::seconds(1);
        let gone = store
            .put_until(Bytes::from_static(b"<doc>short</doc>"), Some(short))
            .await
            .unwrap();
        assert!(store.set_legal_hold(&gone, true).await.unwrap());
        assert!(store.lock(&gone).await.unwrap().unwrap().legal_hold);
        until_past(short + chrono::TimeDelta::seconds(1)).await;
        assert!(matches!(store.delete(&gone).await, Err(Error::Conflict(_))));
        assert!(store.contains(&gone).await.unwrap());
        store.set_legal_hold(&gone, false).await.unwrap();
        // Every version goes: nothing is left to read or list.
        assert!(store.delete(&gone).await.unwrap());
        assert!(!store.contains(&gone).await.unwrap());
        assert!(matches!(
            store.get(&gone).await,
            Err(Error::MissingOriginal(_))
        ));
        assert!(!store.delete(&gone).await.unwrap());
        let listed: Vec<_> = store.list().collect::<Vec<_>>().await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].as_ref().unwrap(), &h);
    }

    #[tokio::test]
    async fn a_bucket_without_object_lock_is_told_apart() {
        let s3 = crate::testing::S3Emulator::start().await;
        let store = Originals::s3(&s3.config()).unwrap();
        assert!(!store.is_worm().await.unwrap());
        let refused = store.require_worm().await.unwrap_err().to_string();
        assert!(refused.contains("has no Object Lock"), "{refused}");
        // Plain objects, no lock and no legal hold to set.
        let h = store.put(Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(store.lock(&h).await.unwrap(), None);
        assert!(!store.set_legal_hold(&h, true).await.unwrap());
        // A local store has nothing to refuse.
        let dir = tempfile::tempdir().unwrap();
        let local = Originals::local(dir.path()).unwrap();
        assert!(!local.is_worm().await.unwrap());
        local.require_worm().await.unwrap();
    }

    #[tokio::test]
    async fn put_get_roundtrip_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Originals::local(dir.path()).unwrap();
        let bytes = Bytes::from_static(b"<doc>exact bytes \r\n kept</doc>");
        let h1 = exercise(&store).await;
        // The file sits where the documented key says.
        let p = dir
            .path()
            .join("sha256")
            .join(&h1.as_str()[0..2])
            .join(&h1.as_str()[2..4])
            .join(h1.as_str());
        assert_eq!(std::fs::read(p).unwrap(), bytes);
    }

    #[tokio::test]
    async fn a_staged_body_is_kept_as_the_original_it_hashes_to_and_nothing_else_shows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Originals::local(dir.path()).unwrap();
        // Frames of odd sizes across the stager's buffer.
        let body: Vec<u8> = (0..3 * STAGE_BUFFER_BYTES + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut stager = store.stage().unwrap();
        for frame in body.chunks(65_521) {
            stager.write(frame).await.unwrap();
        }
        assert_eq!(stager.len(), body.len() as u64);
        let staged = Arc::new(stager.finish().await.unwrap());
        assert_eq!(staged.sha256(), &Sha256Hex::of(&body));
        assert_eq!(staged.len(), body.len() as u64);
        assert_eq!(staged.bytes().unwrap(), body);
        // Unnamed until kept.
        assert!(files_under(dir.path()).is_empty());
        let h = store.put_staged(staged.clone()).await.unwrap();
        assert_eq!(&h, staged.sha256());
        assert_eq!(store.get(&h).await.unwrap(), body);
        // Kept twice, or staged and put as bytes: one original.
        assert_eq!(store.put_staged(staged.clone()).await.unwrap(), h);
        assert_eq!(store.put(Bytes::from(body.clone())).await.unwrap(), h);
        let mut again = store.stage().unwrap();
        again.write(&body).await.unwrap();
        let again = Arc::new(again.finish().await.unwrap());
        assert_eq!(store.put_staged(again).await.unwrap(), h);
        assert_eq!(files_under(dir.path()), vec![h.to_string()]);
        // A body dropped before it is kept leaves nothing.
        let mut dropped = store.stage().unwrap();
        dropped.write(b"<refused/>").await.unwrap();
        drop(dropped.finish().await.unwrap());
        assert_eq!(files_under(dir.path()), vec![h.to_string()]);
        // Another store cannot keep it (a link across filesystems would fail).
        let other_dir = tempfile::tempdir().unwrap();
        let other = Originals::local(other_dir.path()).unwrap();
        assert!(other.put_staged(staged).await.is_err());
    }

    #[tokio::test]
    async fn putting_again_leaves_one_file_and_no_staging() {
        let dir = tempfile::tempdir().unwrap();
        let store = Originals::local(dir.path()).unwrap();
        // A small one is written and refused by the create-only link; a large one
        // is found by asking first.
        let small = Bytes::from_static(b"<doc>small</doc>");
        let large = Bytes::from(vec![b'x'; ASK_FIRST_ABOVE_BYTES + 1]);
        for bytes in [small, large] {
            let h = store.put(bytes.clone()).await.unwrap();
            assert_eq!(store.put(bytes.clone()).await.unwrap(), h);
            assert_eq!(store.get(&h).await.unwrap(), bytes);
        }
        let files = files_under(dir.path());
        assert_eq!(
            files.len(),
            2,
            "one file per original, nothing staged: {files:?}"
        );
        assert!(
            files.iter().all(|f| Sha256Hex::parse(f).is_some()),
            "{files:?}"
        );
    }

    #[tokio::test]
    async fn get_detects_tampering_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        let store = Originals::local(dir.path()).unwrap();
        let h = store.put(Bytes::from_static(b"original")).await.unwrap();
        let p = dir.path().join(format!(
            "sha256/{}/{}/{}",
            &h.as_str()[0..2],
            &h.as_str()[2..4],
            h
        ));
        std::fs::write(&p, b"forged").unwrap();
        assert!(matches!(
            store.get(&h).await,
            Err(Error::CorruptOriginal { .. })
        ));
        assert!(matches!(
            store.check_many(vec![h.clone()], 2).await[0],
            Err(Error::CorruptOriginal { .. })
        ));
        let absent = Sha256Hex::of(b"never stored");
        assert!(matches!(
            store.get(&absent).await,
            Err(Error::MissingOriginal(_))
        ));
        assert!(!store.contains(&absent).await.unwrap());
    }
}
