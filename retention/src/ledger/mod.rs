//! The transaction log: append-only, hash-chained, periodically checkpointed.
//!
//! Every append goes through one [`Ledger`] task per process. It takes whatever
//! requests are queued, writes them in **one** database transaction (group commit)
//! holding the backend's append lock (see [`Db`]'s `begin_write`), and answers each
//! caller only after that transaction committed. So concurrent appends — in this
//! process or another (`ivan admin …` beside `ivan serve`) — never fork or gap the
//! chain, and an acknowledged append survives a crash.
//!
//! An append may carry *work*: statements that must commit together with the entry
//! (e.g. the employer row that `employer.create` records). Work runs inside a
//! savepoint, so one caller's failure rolls back only that caller's entry. Work is
//! told the positions its entries get, so a row can name its own log position.
//!
//! Work on the hot path *describes* its rows instead ([`Ledger::append_rows`]): an
//! item of data and a [`RowWriter`] that knows how to write many such items at once.
//! Consecutive appends in a batch with the same writer are a *run*: their entries go
//! in as one multi-row statement and the writer writes all their rows with a few
//! multi-row statements, so a batch costs a few round trips instead of a dozen per
//! append. If the run fails, it is rolled back to its savepoint and written again
//! one append at a time (each in its own savepoint), so only the failing append
//! fails, as with closures.
//!
//! [`Ledger::append_all`] writes a group of entries (e.g. a submission's
//! received → verified → validated → accepted) as consecutive entries of the chain,
//! all or none.
//!
//! Payloads are stored in the [`Originals`] store (durable) before the entry that
//! names their hash is written; a crash in between leaves only an unreferenced blob.
//!
//! The same transaction extends the log's Merkle tree ([`tree`]) by the batch's
//! entries, so the tree always covers exactly the chain.
//!
//! After a batch, if `checkpoint_every_entries` entries have accumulated since the
//! last checkpoint, a signed checkpoint is written in the same transaction; a timer
//! also checkpoints every `checkpoint_interval` when entries are pending.

mod encoding;
pub mod tree;
pub mod verify;
pub mod witness;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use encoding::{
    EntryFields, GENESIS_HASH, checkpoint_note, entry_hash, format_time, serialize_opt_time,
    serialize_time,
};

use crate::db::WriteTx;
use crate::keys::Keys;
use crate::{Actor, Clock, Db, DbConn, Error, Originals, Result, Sha256Hex, on_conn, on_pool};

/// Longest accepted `action` / `subject` / `actor`, in bytes.
pub const MAX_FIELD_LEN: usize = 512;

/// Tuning of the appender and checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// Write a checkpoint once this many entries follow the last one.
    pub checkpoint_every_entries: u64,
    /// …and at least this often while entries are pending (seconds).
    pub checkpoint_interval_secs: u64,
    /// Most entries written in one transaction.
    pub max_batch: usize,
    /// Appends that may wait for the appender before callers are slowed down.
    pub queue_depth: usize,
    /// The log's name in its C2SP checkpoints: their first line, and the name their
    /// signature is made under (docs/LOG.md, "Signed checkpoints"). Default
    /// `ivan.invalid/log/<the first 16 characters of the checkpoint key id>`. It is
    /// the log's identity to witnesses and monitors: set it before the first
    /// checkpoint and never change it (the server refuses to start if it differs
    /// from the one the log's checkpoints carry).
    pub origin: Option<String>,
}

impl LedgerConfig {
    /// The origin checkpoints are signed under: the configured one, or the default
    /// derived from the checkpoint key.
    pub fn origin(&self, keys: &Keys) -> String {
        self.origin.clone().unwrap_or_else(|| {
            let kid = keys.checkpoint_kid();
            format!("ivan.invalid/log/{}", kid.get(..16).unwrap_or(kid))
        })
    }

    /// `Err` says why the configured origin cannot name a log.
    pub fn check_origin(&self) -> std::result::Result<(), String> {
        match &self.origin {
            Some(o) if !signed_note::is_key_name_valid(o) || o.chars().any(char::is_control) => {
                Err(format!(
                    "ledger.origin {o:?} cannot name a log: it must be non-empty, without spaces, '+' or control characters (e.g. \"ivan.example.com/log\")"
                ))
            }
            _ => Ok(()),
        }
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            checkpoint_every_entries: 1000,
            checkpoint_interval_secs: 60,
            max_batch: 512,
            queue_depth: 4096,
            origin: None,
        }
    }
}

/// A payload whose bytes are kept as an original and whose hash the entry records.
#[derive(Debug, Clone)]
pub struct Payload {
    pub content: Content,
    pub media_type: String,
    /// On an originals bucket with Object Lock, keep the bytes write-once until at
    /// least then (default: [`crate::originals::DEFAULT_LOCK_YEARS`] from the write).
    pub retain_until: Option<DateTime<Utc>>,
}

/// A payload's bytes: in memory, or staged in the originals store as they arrived
/// ([`crate::originals::Staged`]: a large document).
#[derive(Debug, Clone)]
pub enum Content {
    Memory(Bytes),
    Staged(Arc<crate::originals::Staged>),
}

impl Payload {
    /// A JSON document as a payload (`application/json`), as most actions record.
    pub fn json(v: &serde_json::Value) -> Payload {
        Payload {
            content: Bytes::from(v.to_string()).into(),
            media_type: "application/json".into(),
            retain_until: None,
        }
    }
}

impl Content {
    pub fn len(&self) -> u64 {
        match self {
            Content::Memory(b) => b.len() as u64,
            Content::Staged(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Bytes> for Content {
    fn from(bytes: Bytes) -> Self {
        Content::Memory(bytes)
    }
}

/// What a caller asks the log to record.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub actor: Actor,
    /// Dotted verb, e.g. `employer.create`.
    pub action: String,
    /// What the action was about, as `kind:id`, e.g. `employer:0193…`.
    pub subject: String,
    pub payload: Option<Payload>,
}

impl NewEntry {
    /// An entry the service itself records (a worker, a sweep), not a person.
    pub fn system(action: &str, subject: String, payload: Option<Payload>) -> Self {
        NewEntry {
            actor: Actor::System,
            action: action.to_owned(),
            subject,
            payload,
        }
    }
}

/// The receipt of an append: where it landed in the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Appended {
    pub seq: i64,
    pub recorded_at: DateTime<Utc>,
    pub entry_hash: String,
    pub payload_sha256: Option<Sha256Hex>,
}

/// A stored log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Entry {
    pub seq: i64,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub payload_sha256: Option<String>,
    pub prev_hash: String,
    pub entry_hash: String,
}

impl Entry {
    pub fn fields(&self) -> EntryFields<'_> {
        EntryFields {
            seq: self.seq,
            recorded_at: &self.recorded_at,
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            payload_sha256: self.payload_sha256.as_deref(),
            prev_hash: &self.prev_hash,
        }
    }
}

/// A stored, signed checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Checkpoint {
    pub tree_size: i64,
    pub head_hash: String,
    pub signed_at: DateTime<Utc>,
    pub key_id: String,
    /// Signature of [`Checkpoint::note`], the chain head's note (format v1).
    pub signature: String,
    /// The C2SP signed note of the Merkle tree's head at `tree_size` (origin, size,
    /// root hash; docs/LOG.md "Signed checkpoints"), signed by the same key. `None`
    /// on checkpoints signed before the tree existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_note: Option<String>,
}

impl Checkpoint {
    pub fn note(&self) -> String {
        checkpoint_note(self.tree_size, &self.head_hash, &self.signed_at)
    }

    /// The tree head in [`Checkpoint::signed_note`], its signature checked with
    /// `keys`: `None` without a note, `Err` naming what does not hold.
    pub fn tree_head(
        &self,
        keys: &crate::keys::CheckpointVerifier,
    ) -> Option<std::result::Result<tree::TreeHead, String>> {
        let note = self.signed_note.as_deref()?;
        Some(
            tree::open_checkpoint(keys, &self.key_id, note).and_then(|head| {
                if u64::try_from(self.tree_size).ok() == Some(head.size()) {
                    Ok(head)
                } else {
                    Err(format!(
                        "its signed note is of a tree of {} entries, not {}",
                        head.size(),
                        self.tree_size
                    ))
                }
            }),
        )
    }
}

/// The columns of `log_checkpoints` a [`Checkpoint`] is read from.
pub(crate) const CHECKPOINT_COLUMNS: &str =
    "tree_size, head_hash, signed_at, key_id, signature, signed_note";

/// Statements to commit together with a group of entries; see the module docs. It is
/// told where its entries will land (their `seq` and `recorded_at`), so what it writes
/// can name its own log position.
pub type Work = Box<dyn for<'c> FnOnce(DbConn<'c>, Landed) -> BoxFuture<'c, Result<()>> + Send>;

/// A [`Work`] from a closure; what [`crate::work!`] expands to.
pub fn work<F>(f: F) -> Work
where
    F: for<'c> FnOnce(DbConn<'c>, Landed) -> BoxFuture<'c, Result<()>> + Send + 'static,
{
    Box::new(f)
}

/// A [`Work`] written as an async block: `work!(|conn, at| { …; Ok(()) })`, where
/// `conn` is the append's transaction ([`DbConn`]) and `at` where its entries
/// [`Landed`]. Like `async move`, it takes what its body names.
#[macro_export]
macro_rules! work {
    (|$conn:ident, $at:ident| $body:block) => {
        $crate::ledger::work(
            move |#[allow(unused_mut)] mut $conn: $crate::DbConn<'_>, $at: $crate::Landed| {
                ::std::boxed::Box::pin(async move $body)
            },
        )
    };
}

/// Where an append's entries landed, in order, and when (the log's clock at the
/// batch): what its [`Work`] is told. Never empty. Derefs to the entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Landed {
    recorded_at: DateTime<Utc>,
    entries: Vec<Appended>,
}

impl Landed {
    /// When the entries were recorded: the time the work's rows should carry.
    pub fn recorded_at(&self) -> DateTime<Utc> {
        self.recorded_at
    }

    /// The first entry's position.
    pub fn seq(&self) -> i64 {
        self.entries.first().map_or(0, |a| a.seq)
    }
}

impl std::ops::Deref for Landed {
    type Target = [Appended];

    fn deref(&self) -> &[Appended] {
        &self.entries
    }
}

/// Writes the rows of many appends at once; see the module docs. Implemented by
/// the owner of the rows' tables, for one kind of item.
pub trait RowWriter: Send + Sync + 'static {
    /// Appends whose writers have the same name are written together.
    fn name(&self) -> &'static str;

    /// Writes the rows of `items` (each with its entries' positions, in order), in
    /// as few statements as it can. On error the ledger rolls back whatever it
    /// wrote and calls it again with each item alone.
    fn write<'c>(
        &'c self,
        conn: DbConn<'c>,
        items: &'c [Described<'c>],
    ) -> BoxFuture<'c, Result<()>>;
}

/// One append's item, as a [`RowWriter`] sees it.
#[derive(Debug)]
pub struct Described<'a> {
    /// What [`Ledger::append_rows`] was given; the writer downcasts it.
    pub item: &'a (dyn std::any::Any + Send + Sync),
    /// Where the append's entries landed, in order.
    pub at: &'a [Appended],
}

/// What an append commits beside its entries.
enum Job {
    Closure(Work),
    Rows {
        writer: &'static dyn RowWriter,
        item: Arc<dyn std::any::Any + Send + Sync>,
    },
}

impl Job {
    fn writer(&self) -> Option<&'static str> {
        match self {
            Job::Rows { writer, .. } => Some(writer.name()),
            Job::Closure(_) => None,
        }
    }
}

struct PayloadMeta {
    sha256: Sha256Hex,
    size: i64,
    media_type: String,
}

struct PendingEntry {
    actor: String,
    action: String,
    subject: String,
    payload: Option<PayloadMeta>,
}

/// One caller's group of entries: consecutive in the chain, all or none written.
struct PendingAppend {
    entries: Vec<PendingEntry>,
    work: Option<Job>,
    reply: oneshot::Sender<Result<Vec<Appended>>>,
}

enum Request {
    Append(PendingAppend),
    Checkpoint(oneshot::Sender<Result<Option<Checkpoint>>>),
}

/// Handle for appending to the log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Request>,
    originals: Originals,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Request::Append(_) => "Append",
            Request::Checkpoint(_) => "Checkpoint",
        })
    }
}

/// The running appender; [`LedgerTask::shutdown`] drains queued appends and stops it.
#[derive(Debug)]
pub struct LedgerTask {
    /// Answers when the appender's thread has written what was queued and ended.
    appender: oneshot::Receiver<()>,
    ticker: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

impl LedgerTask {
    /// Stops accepting appends, writes the ones already queued, and waits for that.
    pub async fn shutdown(self) {
        self.ticker.abort();
        let _ = self.stop.send(());
        if self.appender.await.is_err() {
            tracing::error!("log appender thread failed");
        }
    }
}

impl Ledger {
    /// Starts the appender for `db`.
    pub fn start(
        db: Db,
        originals: Originals,
        keys: Arc<Keys>,
        clock: Arc<dyn Clock>,
        config: LedgerConfig,
    ) -> (Ledger, LedgerTask) {
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let (stop_tx, stop_rx) = oneshot::channel();
        let interval = Duration::from_secs(config.checkpoint_interval_secs.max(1));
        let appender = Appender {
            origin: config.origin(&keys),
            db,
            keys,
            clock,
            config,
            frontier: std::sync::Mutex::new(None),
        };
        let (done_tx, done_rx) = oneshot::channel();
        // The appender is the serial part of every filing, so it runs on a thread of
        // its own with its own runtime: a batch is a chain of round trips to the
        // database, and on the shared runtime each wake-up waited in the queue
        // behind request tasks (about a millisecond per round trip at full load).
        let spawned = std::thread::Builder::new()
            .name("ivan-log-appender".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "the log appender's runtime did not start");
                        return;
                    }
                };
                rt.block_on(async move {
                    let appender = appender.own_connections();
                    let own = matches!(appender.db, Db::Postgres(_)).then(|| appender.db.clone());
                    appender.run(rx, stop_rx).await;
                    if let Some(db) = own {
                        db.close().await;
                    }
                });
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            // Appends then fail (their channel is closed) rather than hang.
            tracing::error!(error = %e, "the log appender's thread did not start");
        }
        let weak = tx.downgrade();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(tx) = weak.upgrade() else { return };
                let (reply, _) = oneshot::channel();
                if tx.send(Request::Checkpoint(reply)).await.is_err() {
                    return;
                }
            }
        });
        let task = LedgerTask {
            appender: done_rx,
            ticker,
            stop: stop_tx,
        };
        (Ledger { tx, originals }, task)
    }

    pub fn originals(&self) -> &Originals {
        &self.originals
    }

    /// Records `entry`; returns once it is committed.
    pub async fn append(&self, entry: NewEntry) -> Result<Appended> {
        first(self.submit(vec![entry], None).await?)
    }

    /// Records `entries` as consecutive entries of the chain and has `writer` write
    /// `item`'s rows in the same transaction, together with those of the other
    /// appends of its batch that name the same writer (see the module docs): all of
    /// this append or none of it. Returns the entries' positions in order.
    pub async fn append_rows(
        &self,
        entries: Vec<NewEntry>,
        writer: &'static dyn RowWriter,
        item: Arc<dyn std::any::Any + Send + Sync>,
    ) -> Result<Vec<Appended>> {
        if entries.is_empty() {
            return Err(Error::Invalid("an append needs at least one entry".into()));
        }
        self.submit(entries, Some(Job::Rows { writer, item })).await
    }

    /// Records `entry` and commits `work` in the same transaction; if `work` fails,
    /// neither is written and its error is returned.
    pub async fn append_with(&self, entry: NewEntry, work: Work) -> Result<Appended> {
        first(self.submit(vec![entry], Some(Job::Closure(work))).await?)
    }

    /// Like [`Ledger::append_with`] for a change that must be recorded once: when
    /// `work` finds it already made (it answers [`Error::Conflict`]), nothing is
    /// written and the answer is `Ok(false)`, so racing workers or requests record a
    /// change exactly once.
    pub async fn append_once(&self, entry: NewEntry, work: Work) -> Result<bool> {
        match self.append_with(entry, work).await {
            Ok(_) => Ok(true),
            Err(Error::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records `entries` as consecutive entries of the chain, with `work`, in one
    /// transaction: all of them or none. Returns their positions in order.
    pub async fn append_all(
        &self,
        entries: Vec<NewEntry>,
        work: Option<Work>,
    ) -> Result<Vec<Appended>> {
        if entries.is_empty() {
            return Err(Error::Invalid("an append needs at least one entry".into()));
        }
        self.submit(entries, work.map(Job::Closure)).await
    }

    /// Writes a checkpoint now if entries follow the last one; returns it.
    pub async fn checkpoint_now(&self) -> Result<Option<Checkpoint>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Checkpoint(reply))
            .await
            .map_err(|_| Error::LedgerStopped)?;
        rx.await.map_err(|_| Error::LedgerStopped)?
    }

    async fn submit(&self, entries: Vec<NewEntry>, work: Option<Job>) -> Result<Vec<Appended>> {
        let mut pending_entries = Vec::with_capacity(entries.len());
        for entry in entries {
            let actor = entry.actor.to_string();
            for (name, value) in [
                ("actor", &actor),
                ("action", &entry.action),
                ("subject", &entry.subject),
            ] {
                if value.is_empty() || value.len() > MAX_FIELD_LEN {
                    return Err(Error::Invalid(format!(
                        "log entry {name} must be 1 to {MAX_FIELD_LEN} bytes"
                    )));
                }
            }
            let payload = match entry.payload {
                Some(p) => {
                    let size = i64::try_from(p.content.len())
                        .map_err(|_| Error::Invalid("payload too large".into()))?;
                    let sha256 = match p.content {
                        Content::Memory(bytes) => {
                            self.originals.put_until(bytes, p.retain_until).await?
                        }
                        Content::Staged(staged) => self.originals.put_staged(staged).await?,
                    };
                    Some(PayloadMeta {
                        sha256,
                        size,
                        media_type: p.media_type,
                    })
                }
                None => None,
            };
            pending_entries.push(PendingEntry {
                actor,
                action: entry.action,
                subject: entry.subject,
                payload,
            });
        }
        let (reply, rx) = oneshot::channel();
        let pending = PendingAppend {
            entries: pending_entries,
            work,
            reply,
        };
        self.tx
            .send(Request::Append(pending))
            .await
            .map_err(|_| Error::LedgerStopped)?;
        rx.await.map_err(|_| Error::LedgerStopped)?
    }
}

struct Appender {
    /// The name checkpoints are signed under ([`LedgerConfig::origin`]).
    origin: String,
    db: Db,
    keys: Arc<Keys>,
    clock: Arc<dyn Clock>,
    config: LedgerConfig,
    /// The tree as of the last batch this appender committed; checked against the
    /// head at the start of every batch (another process may have appended since).
    frontier: std::sync::Mutex<Option<tree::Frontier>>,
}

#[derive(Clone)]
struct Head {
    seq: i64,
    hash: String,
    recorded_at: Option<DateTime<Utc>>,
}

impl Appender {
    /// This appender with connections of its own, made on its own runtime so the
    /// database's answers wake it there (PostgreSQL: a pool of one connection with
    /// the same options; SQLite connections are not tied to a runtime).
    fn own_connections(self) -> Self {
        let db = match &self.db {
            Db::Sqlite(_) => self.db.clone(),
            Db::Postgres(pool) => Db::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(pool.options().get_acquire_timeout())
                    .connect_lazy_with((*pool.connect_options()).clone()),
            ),
        };
        Self { db, ..self }
    }

    async fn run(self, mut rx: mpsc::Receiver<Request>, mut stop: oneshot::Receiver<()>) {
        loop {
            let first = tokio::select! {
                biased;
                _ = &mut stop => break,
                r = rx.recv() => match r {
                    Some(r) => r,
                    None => return,
                },
            };
            let batch = self.fill(first, &mut rx);
            self.process(batch).await;
        }
        // Shutting down: refuse new appends, write what is already queued.
        rx.close();
        while let Some(first) = rx.recv().await {
            let batch = self.fill(first, &mut rx);
            self.process(batch).await;
        }
    }

    fn fill(&self, first: Request, rx: &mut mpsc::Receiver<Request>) -> Vec<Request> {
        let mut batch = vec![first];
        while batch.len() < self.config.max_batch.max(1) {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        batch
    }

    async fn process(&self, batch: Vec<Request>) {
        let mut appends = Vec::new();
        let mut cp_waiters = Vec::new();
        for r in batch {
            match r {
                Request::Append(a) => appends.push(a),
                Request::Checkpoint(w) => cp_waiters.push(w),
            }
        }
        let started = std::time::Instant::now();
        let result = self.write(&mut appends, !cp_waiters.is_empty()).await;
        // The appender is serial: batch time bounds the log's throughput.
        metrics::histogram!("ivan_log_batch_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok((outcomes, checkpoint)) => {
                let written: usize = outcomes.iter().flatten().map(Vec::len).sum();
                metrics::counter!("ivan_log_appends_total").increment(written as u64);
                metrics::histogram!("ivan_log_batch_size").record(appends.len() as f64);
                if let Some(cp) = &checkpoint {
                    metrics::counter!("ivan_log_checkpoints_total").increment(1);
                    tracing::debug!(tree_size = cp.tree_size, "log checkpoint signed");
                }
                for (a, outcome) in appends.into_iter().zip(outcomes) {
                    let _ = a.reply.send(outcome);
                }
                for w in cp_waiters {
                    let _ = w.send(Ok(checkpoint.clone()));
                }
            }
            Err(e) => {
                metrics::counter!("ivan_log_append_failures_total").increment(1);
                tracing::error!(error = %e, batch = appends.len(), "log batch failed; nothing of it was written");
                for a in appends {
                    let _ = a.reply.send(Err(e.with_context("log append failed")));
                }
                for w in cp_waiters {
                    let _ = w.send(Err(e.with_context("checkpoint failed")));
                }
            }
        }
    }

    /// One transaction: the batch's entries (each with its work) and, when due, a
    /// checkpoint. Per-append failures of work are returned in the outcome list;
    /// an `Err` means nothing was written.
    ///
    /// A batch whose appends all describe rows for one writer (filings only, the
    /// usual batch) is first written without a savepoint, two round trips fewer; if
    /// that fails, the transaction is rolled back and the batch written again one
    /// append at a time, each in its savepoint, so a failing append still fails
    /// alone.
    async fn write(
        &self,
        appends: &mut [PendingAppend],
        checkpoint_requested: bool,
    ) -> Result<(Vec<Result<Vec<Appended>>>, Option<Checkpoint>)> {
        let first = appends
            .first()
            .and_then(|a| a.work.as_ref())
            .and_then(Job::writer);
        let one_writer = first.is_some()
            && appends
                .iter()
                .all(|a| a.work.as_ref().and_then(Job::writer) == first);
        if one_writer {
            if let Some(done) = self
                .write_tx(appends, checkpoint_requested, Runs::Bare)
                .await?
            {
                return Ok(done);
            }
            tracing::debug!(
                appends = appends.len(),
                "a batch of one run failed; writing it one append at a time"
            );
            return self
                .write_tx(appends, checkpoint_requested, Runs::Never)
                .await?
                .ok_or_else(|| Error::Internal("a batch written one at a time gave up".into()));
        }
        self.write_tx(appends, checkpoint_requested, Runs::InSavepoints)
            .await?
            .ok_or_else(|| Error::Internal("a batch with savepoints gave up".into()))
    }

    /// [`Appender::write`] in one transaction, runs written as `runs` says.
    /// `Ok(None)`: a bare run failed and the transaction was rolled back.
    async fn write_tx(
        &self,
        appends: &mut [PendingAppend],
        checkpoint_requested: bool,
        runs: Runs,
    ) -> Result<Option<(Vec<Result<Vec<Appended>>>, Option<Checkpoint>)>> {
        let mut tx = self.db.begin_write().await?;
        let (mut head, last_cp) = read_head(&mut tx).await?;
        let mut frontier = self.frontier_at(&mut tx, &head).await?;

        let mut outcomes = Vec::with_capacity(appends.len());
        let mut i = 0;
        while i < appends.len() {
            // A run: consecutive appends whose rows one writer writes together.
            let mut j = i + 1;
            if let Some(name) = appends[i].work.as_ref().and_then(Job::writer) {
                while j < appends.len()
                    && appends[j].work.as_ref().and_then(Job::writer) == Some(name)
                {
                    j += 1;
                }
            }
            let as_run = match runs {
                Runs::Bare => true,
                Runs::InSavepoints => j - i > 1,
                Runs::Never => false,
            };
            if as_run {
                let savepoint = runs == Runs::InSavepoints;
                match self
                    .write_run(&mut tx, &mut head, &mut appends[i..j], savepoint)
                    .await?
                {
                    Some(written) => {
                        outcomes.extend(written.into_iter().map(Ok));
                        i = j;
                        continue;
                    }
                    // Dropping the transaction rolls it back.
                    None if !savepoint => return Ok(None),
                    None => {}
                }
            }
            // One at a time: a single append, or a run that failed as a whole.
            for a in &mut appends[i..j] {
                outcomes.push(self.write_one(&mut tx, &mut head, a).await?);
            }
            i = j;
        }

        // The tree grows by the entries written, in order.
        let mut pushed = Vec::new();
        for appended in outcomes.iter().flatten().flatten() {
            pushed.push(frontier.push_entry(appended.seq, &appended.entry_hash)?);
        }
        tree::insert(tx.conn(), &pushed).await?;

        let pending = u64::try_from(head.seq - last_cp).unwrap_or(0);
        let due = pending >= self.config.checkpoint_every_entries.max(1)
            || (checkpoint_requested && pending > 0);
        let checkpoint = if due {
            let signed_at = self.clock.now();
            let note = checkpoint_note(head.seq, &head.hash, &signed_at);
            let text = tree::checkpoint_text(&self.origin, frontier.size(), &frontier.root()?)?;
            let cp = Checkpoint {
                tree_size: head.seq,
                head_hash: head.hash.clone(),
                signed_at,
                key_id: self.keys.checkpoint_kid().to_owned(),
                signature: self.keys.sign_checkpoint(note.as_bytes()),
                signed_note: Some(self.keys.sign_note(&self.origin, &text)?),
            };
            on_conn!(&mut tx.conn(), c => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO log_checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
                )))
                .bind(cp.tree_size)
                .bind(&cp.head_hash)
                .bind(cp.signed_at)
                .bind(&cp.key_id)
                .bind(&cp.signature)
                .bind(&cp.signed_note)
                .execute(&mut *c)
                .await?;
            });
            Some(cp)
        } else {
            None
        };
        tx.commit().await?;
        *self
            .frontier
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(frontier);
        Ok(Some((outcomes, checkpoint)))
    }

    /// The tree of the `head.seq` entries in `tx`: the one this appender left if
    /// nothing was appended since, else read (and caught up) from the database.
    async fn frontier_at(&self, tx: &mut WriteTx, head: &Head) -> Result<tree::Frontier> {
        let size = u64::try_from(head.seq)
            .map_err(|_| Error::Internal(format!("log head {} is negative", head.seq)))?;
        let cached = self
            .frontier
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match cached {
            Some(f) if f.size() == size => Ok(f),
            _ => tree::frontier_at(tx, size).await,
        }
    }
}

/// How [`Appender::write_tx`] writes runs of appends with the same row writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runs {
    /// The whole batch is one run, written without a savepoint.
    Bare,
    /// Each run of two or more in a savepoint, one at a time if it fails.
    InSavepoints,
    /// One append at a time, each in its savepoint.
    Never,
}

impl Appender {
    /// `entries` chained after `head`: their rows and positions, and the new head.
    fn chain(&self, head: &Head, entries: &[PendingEntry]) -> Result<(Vec<Entry>, Head)> {
        let mut at = head.clone();
        let mut rows = Vec::with_capacity(entries.len());
        for p in entries {
            let prev_hash = at.hash.clone();
            let now = self.clock.now();
            // Times never go backwards in the log, even if the wall clock does.
            let recorded_at = at.recorded_at.map_or(now, |prev| prev.max(now));
            let seq = at.seq + 1;
            let payload_sha256 = p.payload.as_ref().map(|p| p.sha256.as_str().to_owned());
            let entry_hash = entry_hash(&EntryFields {
                seq,
                recorded_at: &recorded_at,
                actor: &p.actor,
                action: &p.action,
                subject: &p.subject,
                payload_sha256: payload_sha256.as_deref(),
                prev_hash: &prev_hash,
            })
            .ok_or_else(|| Error::Internal(format!("log head {} has a malformed hash", at.seq)))?;
            at = Head {
                seq,
                hash: entry_hash.clone(),
                recorded_at: Some(recorded_at),
            };
            rows.push(Entry {
                seq,
                recorded_at,
                actor: p.actor.clone(),
                action: p.action.clone(),
                subject: p.subject.clone(),
                payload_sha256,
                prev_hash,
                entry_hash,
            });
        }
        Ok((rows, at))
    }

    /// One append in its own savepoint: its entries, then its work; a failing work
    /// rolls both back and is this append's outcome. `Err`: the transaction failed.
    async fn write_one(
        &self,
        tx: &mut WriteTx,
        head: &mut Head,
        a: &mut PendingAppend,
    ) -> Result<Result<Vec<Appended>>> {
        let (rows, at) = self.chain(head, &a.entries)?;
        let appended = positions(&rows, &a.entries);
        exec(tx, "SAVEPOINT ivan_append").await?;
        // Entries (and their originals' index rows) first, so the work's rows may
        // reference them; a failing work rolls both back.
        let payloads: Vec<Option<&PayloadMeta>> =
            a.entries.iter().map(|p| p.payload.as_ref()).collect();
        let r = match insert_entries(tx, &rows, &payloads).await {
            Ok(()) => match a.work.take() {
                Some(Job::Closure(work)) => {
                    let landed = Landed {
                        // An append has at least one entry (`submit` refuses none).
                        recorded_at: appended
                            .first()
                            .map_or_else(|| self.clock.now(), |a| a.recorded_at),
                        entries: appended.clone(),
                    };
                    work(tx.conn(), landed).await
                }
                Some(Job::Rows { writer, item }) => {
                    let described = [Described {
                        item: item.as_ref(),
                        at: &appended,
                    }];
                    writer.write(tx.conn(), &described).await
                }
                None => Ok(()),
            },
            Err(e) => Err(e),
        };
        if r.is_err() {
            exec(tx, "ROLLBACK TO SAVEPOINT ivan_append").await?;
        }
        exec(tx, "RELEASE SAVEPOINT ivan_append").await?;
        if r.is_ok() {
            *head = at;
        }
        Ok(r.map(|()| appended))
    }

    /// A run of appends with the same writer, in one savepoint (or none, when the
    /// caller rolls back the whole transaction if it fails): all entries in a few
    /// multi-row statements, then one call of the writer for all items.
    /// `Ok(None)`: something in it failed and nothing of it is written (the caller
    /// writes its appends one at a time). `Err`: the transaction failed.
    async fn write_run(
        &self,
        tx: &mut WriteTx,
        head: &mut Head,
        run: &mut [PendingAppend],
        savepoint: bool,
    ) -> Result<Option<Vec<Vec<Appended>>>> {
        let mut at = head.clone();
        let mut rows = Vec::new();
        let mut appended = Vec::with_capacity(run.len());
        for a in run.iter() {
            let (these, next) = self.chain(&at, &a.entries)?;
            appended.push(positions(&these, &a.entries));
            rows.extend(these);
            at = next;
        }
        let writer = match run.first().and_then(|a| a.work.as_ref()) {
            Some(Job::Rows { writer, .. }) => *writer,
            _ => return Ok(None),
        };
        let described: Vec<Described<'_>> = run
            .iter()
            .zip(&appended)
            .filter_map(|(a, at)| match &a.work {
                Some(Job::Rows { item, .. }) => Some(Described {
                    item: item.as_ref(),
                    at,
                }),
                _ => None,
            })
            .collect();
        if savepoint {
            exec(tx, "SAVEPOINT ivan_run").await?;
        }
        let payloads: Vec<Option<&PayloadMeta>> = run
            .iter()
            .flat_map(|a| a.entries.iter().map(|p| p.payload.as_ref()))
            .collect();
        let r = match insert_entries(tx, &rows, &payloads).await {
            Ok(()) => writer.write(tx.conn(), &described).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &r {
            tracing::debug!(error = %e, appends = run.len(), "a run of appends failed together; writing them one at a time");
            if savepoint {
                exec(tx, "ROLLBACK TO SAVEPOINT ivan_run").await?;
                exec(tx, "RELEASE SAVEPOINT ivan_run").await?;
            }
            return Ok(None);
        }
        if savepoint {
            exec(tx, "RELEASE SAVEPOINT ivan_run").await?;
        }
        *head = at;
        Ok(Some(appended))
    }
}

/// What callers are told about `rows` (of `entries`).
fn positions(rows: &[Entry], entries: &[PendingEntry]) -> Vec<Appended> {
    rows.iter()
        .zip(entries)
        .map(|(e, p)| Appended {
            seq: e.seq,
            recorded_at: e.recorded_at,
            entry_hash: e.entry_hash.clone(),
            payload_sha256: p.payload.as_ref().map(|p| p.sha256.clone()),
        })
        .collect()
}

async fn exec(tx: &mut WriteTx, sql: &'static str) -> Result<()> {
    on_conn!(&mut tx.conn(), c => sqlx::query(sql).execute(&mut *c).await.map(drop))?;
    Ok(())
}

/// The log's head and the size of its newest checkpoint (0 when none), in one
/// round trip: the appender asks at the start of every batch, holding the lock.
async fn read_head(tx: &mut WriteTx) -> Result<(Head, i64)> {
    type Row = (
        Option<i64>,
        Option<String>,
        Option<DateTime<Utc>>,
        Option<i64>,
    );
    let (seq, hash, at, last_cp): Row = on_conn!(&mut tx.conn(), c => {
        sqlx::query_as(
            "SELECT h.seq, h.entry_hash, h.recorded_at, \
             (SELECT MAX(tree_size) FROM log_checkpoints) \
             FROM (SELECT 1) AS one LEFT JOIN \
             (SELECT seq, entry_hash, recorded_at FROM log_entries ORDER BY seq DESC LIMIT 1) AS h \
             ON TRUE",
        )
        .fetch_one(&mut *c)
        .await?
    });
    let head = match (seq, hash) {
        (Some(seq), Some(hash)) => Head {
            seq,
            hash,
            recorded_at: at,
        },
        _ => Head {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
            recorded_at: None,
        },
    };
    Ok((head, last_cp.unwrap_or(0)))
}

/// Rows per multi-row statement: well inside both backends' limits on bound
/// parameters (SQLite 32,766; PostgreSQL 65,535) at 8 columns.
const INSERT_ROWS: usize = 1000;

/// Inserts `rows` (the `payloads` of their entries beside them, in order) and the
/// originals' index rows of their payloads, a few multi-row statements in all.
async fn insert_entries(
    tx: &mut WriteTx,
    rows: &[Entry],
    payloads: &[Option<&PayloadMeta>],
) -> Result<()> {
    // Each original once (its first entry's time), as one row per entry would.
    let mut seen = std::collections::HashSet::new();
    let originals: Vec<(&PayloadMeta, DateTime<Utc>)> = rows
        .iter()
        .zip(payloads)
        .filter_map(|(e, p)| p.map(|p| (p, e.recorded_at)))
        .filter(|(p, _)| seen.insert(p.sha256.as_str()))
        .collect();
    on_conn!(&mut tx.conn(), c => {
        for chunk in originals.chunks(INSERT_ROWS) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO originals (sha256, size_bytes, media_type, stored_at) ",
            );
            insert.push_values(chunk, |mut row, (p, at)| {
                row.push_bind(p.sha256.as_str())
                    .push_bind(p.size)
                    .push_bind(&p.media_type)
                    .push_bind(*at);
            });
            insert.push(" ON CONFLICT (sha256) DO NOTHING");
            insert.build().execute(&mut *c).await?;
        }
        for chunk in rows.chunks(INSERT_ROWS) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO log_entries \
                 (seq, recorded_at, actor, action, subject, payload_sha256, prev_hash, entry_hash) ",
            );
            insert.push_values(chunk, |mut row, e| {
                row.push_bind(e.seq)
                    .push_bind(e.recorded_at)
                    .push_bind(&e.actor)
                    .push_bind(&e.action)
                    .push_bind(&e.subject)
                    .push_bind(&e.payload_sha256)
                    .push_bind(&e.prev_hash)
                    .push_bind(&e.entry_hash);
            });
            insert.build().execute(&mut *c).await?;
        }
    });
    Ok(())
}

const ENTRY_COLUMNS: &str =
    "seq, recorded_at, actor, action, subject, payload_sha256, prev_hash, entry_hash";

/// Up to `limit` entries with `seq > after`, in order.
pub async fn entries_after(db: &Db, after: i64, limit: i64) -> Result<Vec<Entry>> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM log_entries WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?
    }))
}

/// The last `n` entries, oldest first.
pub async fn last_entries(db: &Db, n: i64) -> Result<Vec<Entry>> {
    let mut rows: Vec<Entry> = on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM log_entries ORDER BY seq DESC LIMIT $1"
        )))
        .bind(n)
        .fetch_all(pool)
        .await?
    });
    rows.reverse();
    Ok(rows)
}

/// Number of entries and the highest sequence number (0 when empty).
pub async fn size(db: &Db) -> Result<(i64, i64)> {
    let (count, max): (i64, Option<i64>) = on_pool!(db, pool => {
        sqlx::query_as("SELECT COUNT(*), MAX(seq) FROM log_entries")
            .fetch_one(pool)
            .await?
    });
    Ok((count, max.unwrap_or(0)))
}

/// Up to `limit` checkpoints with `tree_size > after`, in order.
pub async fn checkpoints_after(db: &Db, after: i64, limit: i64) -> Result<Vec<Checkpoint>> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM log_checkpoints \
             WHERE tree_size > $1 ORDER BY tree_size LIMIT $2"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?
    }))
}

/// The first checkpoint at or after entry `seq`: the one that vouches for it.
pub async fn covering_checkpoint(db: &Db, seq: i64) -> Result<Option<Checkpoint>> {
    Ok(checkpoints_after(db, seq - 1, 1).await?.pop())
}

/// The most recent checkpoint, if any.
pub async fn latest_checkpoint(db: &Db) -> Result<Option<Checkpoint>> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(latest_checkpoint_sql())).fetch_optional(pool).await?
    }))
}

/// [`latest_checkpoint`] on a connection (inside a transaction).
pub async fn latest_checkpoint_on(conn: &mut DbConn<'_>) -> Result<Option<Checkpoint>> {
    Ok(on_conn!(conn, c => {
        sqlx::query_as(sqlx::AssertSqlSafe(latest_checkpoint_sql())).fetch_optional(&mut *c).await?
    }))
}

fn latest_checkpoint_sql() -> String {
    format!("SELECT {CHECKPOINT_COLUMNS} FROM log_checkpoints ORDER BY tree_size DESC LIMIT 1")
}

/// Refuses `origin` when the log's newest C2SP checkpoint was signed under another:
/// a log keeps one name for life (witnesses and monitors know it by it).
pub async fn check_origin(db: &Db, origin: &str) -> Result<()> {
    let Some(note) = latest_checkpoint(db).await?.and_then(|cp| cp.signed_note) else {
        return Ok(());
    };
    let published = tree::note_origin(&note);
    if published == origin {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "the log's checkpoints are signed under the origin {published:?}, but the configuration says {origin:?}: \
         a log keeps one origin for life (witnesses know it by it); set [ledger] origin = {published:?}"
    )))
}

/// Marks the `originals` rows (which [`Ledger`] appends write) of `shas` purged at `at` by the log entry `purge_seq`
/// (in the transaction of that entry); the bytes are deleted after it commits
/// ([`crate::Originals::delete`]).
pub async fn mark_purged(
    conn: &mut crate::DbConn<'_>,
    shas: &[String],
    at: chrono::DateTime<chrono::Utc>,
    purge_seq: i64,
) -> Result<()> {
    crate::on_conn!(conn, c => {
        for sha in shas {
            sqlx::query("UPDATE originals SET purged_at = $1, purge_seq = $2 WHERE sha256 = $3")
                .bind(at)
                .bind(purge_seq)
                .bind(sha)
                .execute(&mut *c)
                .await?;
        }
    });
    Ok(())
}

/// The originals marked purged after `since`: those whose bytes a sweep interrupted
/// after its commit may have left in the store.
pub async fn purged_since(
    db: &crate::Db,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>> {
    Ok(crate::on_pool!(db, pool => {
        sqlx::query_scalar("SELECT sha256 FROM originals WHERE purged_at IS NOT NULL AND purged_at > $1")
            .bind(since)
            .fetch_all(pool)
            .await?
    }))
}

#[cfg(test)]
mod tests;

fn first(mut appended: Vec<Appended>) -> Result<Appended> {
    appended
        .pop()
        .ok_or_else(|| Error::Internal("the log returned no position".into()))
}
