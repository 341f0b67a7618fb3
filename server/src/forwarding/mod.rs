//! Forwarding accepted filings to the authority, exactly once, and bringing its
//! answers back.
//!
//! ```text
//! accepted ──(hold window ends)──► forwarding ──► delivered ──► processed
//!                                       │              └──────► rejected
//!                                       └──► refused_by_authority (a 4xx: final)
//! ```
//!
//! **The outbox** ([`outbox`]) is a table with one row per submission that still needs
//! the authority. The row is written in the same transaction that accepts the filing
//! and deleted in the one that records its final answer (or its cancel), so forwarding
//! work is never only in memory. A worker *claims* due rows with a lease (PostgreSQL:
//! `FOR UPDATE SKIP LOCKED`, so several `ivan serve` processes share one database
//! without taking each other's rows; SQLite: one server per file, which frees a
//! crashed run's leases at start). Every state change
//! and the rescheduling of a failed attempt check that the lease is still this
//! worker's, so a worker that lost its lease (it stalled longer than `lease_secs`)
//! cannot record anything twice. A crashed worker's rows are taken over when their
//! lease expires.
//!
//! **Exactly once** toward the authority rests on two things: the lease (no two
//! workers hold one message at a time) and the protocol's idempotency key (the message
//! id travels as `X-Ivan-Message-Id`; a message the authority has already seen answers
//! `409` with the same reference, which counts as delivered). A crash between the
//! authority's answer and our commit therefore costs one repeated POST, never a
//! duplicate filing.
//!
//! **Concurrency**: up to `concurrency` attempts run at once as tasks of their own,
//! and a free slot is filled at once from the claimed rows (claiming `batch` more
//! when none is waiting), so one slow request never holds the others back. A failed
//! attempt's next try (its reschedule) is collected and written with the others of
//! the same moment in one transaction ([`outbox::reschedule_all`]); until then the
//! row stays leased to this worker.
//!
//! **Retries** use exponential backoff with full jitter, capped ([`backoff`]). While
//! the authority is wholly down (`outage_after_failures` transient failures in a row)
//! the worker stops sending and sends single probes at growing intervals instead of
//! hammering it; when a probe gets through, held-back messages are made due at once.
//! Nothing is ever dropped: a message still undelivered `deadline_secs` after its hold
//! window ended stays queued and is flagged overdue (`submission.overdue` log entry,
//! metric, mail to the employer and the operator through [`crate::mail`]).
//!
//! **Answers**: after delivery the worker polls the message's state; once it is
//! `processed` or `rejected` it fetches the answer documents, keeps them as originals
//! (`submission.answer` log entries, one per document) and records the final state,
//! all in one transaction.
//!
//! Every transition is a log entry on `submission:<id>` whose actor is `ivan`.
//! Metrics: `ivan_outbox_depth{phase}`, `ivan_outbox_oldest_pending_seconds`,
//! `ivan_outbox_overdue`, `ivan_forwarding_attempts_total{outcome}`,
//! `ivan_forwarding_delivery_seconds` (hold window end → delivered).

pub mod authority;
pub mod packer;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use retention::ledger::{NewEntry, Work};
use retention::{Actor, Appended, Clock, Db, Ledger, Originals, Payload, Sha256Hex};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::Error;
use crate::submissions::{Status, outbox};
use authority::{AuthorityClient, Delivery, Outgoing, Transient};
use outbox::{Claimed, Phase};

/// Most filings in one package.
pub const MAX_PACKAGE_FILINGS: usize = 1000;
/// Largest package (uncompressed): the protocol's body limit.
pub const MAX_PACKAGE_BYTES: usize = 64 * 1024 * 1024;

/// Where the authority is and how to reach it (`[authority]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorityConfig {
    /// `sandbox`: `ivan serve` starts the sandbox authority in-process on a loopback
    /// port and forwards to it (development; refused in production). `remote`: forward
    /// to `base_url`.
    pub mode: AuthorityMode,
    /// The authority's root URL, e.g. `https://authority.example/api` (mode `remote`).
    pub base_url: Option<String>,
    /// PEM certificate `ivan` presents (mutual TLS), with its PEM private key.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// PEM CA certificate(s) the authority's server certificate must chain to; when set,
    /// no other root is trusted.
    pub ca: Option<PathBuf>,
    pub connect_timeout_secs: u64,
    /// Longest any one request to the authority may take.
    pub request_timeout_secs: u64,
    /// The in-process sandbox reports `processed` this long after receipt.
    pub sandbox_process_after_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorityMode {
    Sandbox,
    Remote,
}

impl Default for AuthorityConfig {
    fn default() -> Self {
        Self {
            mode: AuthorityMode::Sandbox,
            base_url: None,
            client_cert: None,
            client_key: None,
            ca: None,
            connect_timeout_secs: 10,
            request_timeout_secs: 60,
            sandbox_process_after_ms: 2000,
        }
    }
}

/// How the outbox worker behaves (`[forwarding]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardingConfig {
    /// Run the outbox worker in this process.
    pub enabled: bool,
    /// A filing not delivered this long after its hold window ended is overdue
    /// (seconds; default 2 h). Each filing's deadline is fixed when it is accepted.
    pub deadline_secs: u64,
    /// The deadline of particular document types (`"contribution-report" = 86400`),
    /// in seconds; the others have `deadline_secs`.
    pub deadline_secs_by_type: std::collections::BTreeMap<String, u64>,
    /// How long a claimed row stays this worker's; must exceed the longest attempt.
    pub lease_secs: u64,
    /// Rows claimed at once.
    pub batch: u32,
    /// Attempts running at once.
    pub concurrency: usize,
    /// First retry delay ceiling; doubles per attempt (full jitter below it).
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_cap_secs: u64,
    /// First state query this long after delivery; then backing off up to `poll_cap_secs`.
    pub poll_interval_ms: u64,
    pub poll_cap_secs: u64,
    /// Look for due work this often when idle.
    pub idle_ms: u64,
    /// This many transient failures in a row (no success between them, across all
    /// attempts) mean the authority is down. High enough that a flaky but working
    /// authority (30 % failures: 0.3^10 ≈ 6·10⁻⁶) does not trip it.
    pub outage_after_failures: u32,
    /// Longest pause between probes while the authority is down.
    pub outage_probe_cap_secs: u64,
    /// Filings per package (`POST /v1/packages`, [`packer`]); 0 or 1 (the default):
    /// one `POST /v1/messages` per filing, for authorities without packages.
    pub package_max_filings: usize,
    /// A package leaves once its filings reach this many bytes (uncompressed).
    pub package_max_bytes: usize,
    /// … or this long after its first filing came (milliseconds).
    pub package_max_wait_ms: u64,
    /// `gzip` (default) or `identity`; a `415` answer to gzip turns it off.
    pub package_encoding: authority::Encoding,
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            deadline_secs: crate::submissions::DEFAULT_FORWARD_DEADLINE_SECS,
            deadline_secs_by_type: std::collections::BTreeMap::new(),
            lease_secs: 300,
            batch: 32,
            concurrency: 8,
            retry_base_ms: 1000,
            retry_cap_secs: 600,
            poll_interval_ms: 2000,
            poll_cap_secs: 300,
            idle_ms: 500,
            outage_after_failures: 10,
            outage_probe_cap_secs: 60,
            package_max_filings: 0,
            package_max_bytes: 16 * 1024 * 1024,
            package_max_wait_ms: 200,
            package_encoding: authority::Encoding::Gzip,
        }
    }
}

impl ForwardingConfig {
    /// Checks the settings against each other and the authority's timeouts.
    pub fn validate(&self, authority: &AuthorityConfig) -> Result<(), Error> {
        let longest = authority.connect_timeout_secs + authority.request_timeout_secs;
        // Delivery (one request) or answer fetching (a state query and documents).
        if self.lease_secs < 4 * longest {
            return Err(Error::Config(format!(
                "forwarding.lease_secs ({}) must be at least 4 × (authority.connect_timeout_secs + \
                 authority.request_timeout_secs) = {}, or a slow attempt could outlive its lease",
                self.lease_secs,
                4 * longest
            )));
        }
        if self.batch == 0 || self.concurrency == 0 || self.outage_after_failures == 0 {
            return Err(Error::Config(
                "forwarding.batch, concurrency and outage_after_failures must be at least 1".into(),
            ));
        }
        if self.retry_base_ms == 0 || self.idle_ms == 0 || self.poll_interval_ms == 0 {
            return Err(Error::Config(
                "forwarding.retry_base_ms, idle_ms and poll_interval_ms must be at least 1".into(),
            ));
        }
        if self.package_max_filings > MAX_PACKAGE_FILINGS
            || (self.package_max_filings > 1
                && (self.package_max_bytes == 0
                    || self.package_max_bytes > MAX_PACKAGE_BYTES
                    || self.package_max_wait_ms == 0))
        {
            return Err(Error::Config(format!(
                "forwarding.package_max_filings must be at most {MAX_PACKAGE_FILINGS}, and with \
                 packages package_max_bytes 1 to {MAX_PACKAGE_BYTES} and package_max_wait_ms \
                 at least 1"
            )));
        }
        let known: Vec<&str> = crate::documents::DocumentType::codes()
            .chain([mobile_api::prereg::DOCUMENT_TYPE])
            .collect();
        let by_type = &self.deadline_secs_by_type;
        crate::documents::check_type_names("forwarding.deadline_secs_by_type", by_type, &known)
            .map_err(Error::Config)?;
        if self.deadline_secs == 0 || by_type.values().any(|&secs| secs == 0) {
            return Err(Error::Config(
                "forwarding.deadline_secs (and each of deadline_secs_by_type) must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The package limits, when filings travel in packages.
    pub fn packages(&self) -> Option<packer::PackageLimits> {
        (self.package_max_filings > 1).then(|| packer::PackageLimits {
            max_filings: self.package_max_filings,
            max_bytes: self.package_max_bytes,
            max_wait: Duration::from_millis(self.package_max_wait_ms),
            encoding: self.package_encoding,
        })
    }

    /// The deadlines accepted filings are given.
    pub fn deadlines(&self) -> crate::submissions::ForwardDeadlines {
        crate::submissions::ForwardDeadlines {
            default_secs: self.deadline_secs,
            by_type: self.deadline_secs_by_type.clone(),
        }
    }
}

pub use retention::queue::backoff;

/// The authority is "down" after a run of transient failures: the worker then sends
/// one probe at a time, spaced by a growing pause, until one gets through.
#[derive(Debug, Default)]
struct Outage {
    failures_in_row: u32,
    /// Set while the authority is considered down: when the next probe is due, on
    /// the worker's clock.
    probe_at: Option<DateTime<Utc>>,
    probes: u32,
}

impl Outage {
    fn is_down(&self) -> bool {
        self.probe_at.is_some()
    }

    /// Records how attempts ended. Returns `true` when the authority just came
    /// back after an outage.
    fn record(
        &mut self,
        outcomes: &[Attempt],
        config: &ForwardingConfig,
        now: DateTime<Utc>,
    ) -> bool {
        let mut recovered = false;
        for outcome in outcomes {
            match outcome {
                Attempt::Done => {
                    recovered |= self.is_down();
                    *self = Outage::default();
                }
                Attempt::Transient { answered } => {
                    if *answered > 0 {
                        // Some requests of this attempt were answered: the authority
                        // is up; only the last request failed.
                        recovered |= self.is_down();
                        *self = Outage::default();
                    }
                    self.failures_in_row += 1;
                    if self.failures_in_row >= config.outage_after_failures {
                        if !self.is_down() {
                            tracing::warn!(
                                failures = self.failures_in_row,
                                "the authority looks down: holding back deliveries, probing"
                            );
                        }
                        let pause = backoff(
                            self.probes,
                            Duration::from_millis(config.retry_base_ms),
                            Duration::from_secs(config.outage_probe_cap_secs.max(1)),
                            1.0,
                        );
                        self.probes = self.probes.saturating_add(1);
                        self.probe_at = Some(now + chrono_of(pause));
                    }
                }
                Attempt::Skipped => {}
            }
        }
        if recovered {
            tracing::info!("the authority answers again: releasing held-back deliveries");
        }
        recovered
    }
}

/// How one attempt on one row ended, as far as outage detection cares. Outage
/// detection counts failed *requests* in a row: an attempt that made several requests
/// (a state query, then documents) and failed at the last one still shows the
/// authority answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// The authority answered (taken, refused, state, documents).
    Done,
    /// Worth retrying: a request failed after `answered` requests of the same attempt
    /// had succeeded.
    Transient { answered: u32 },
    /// Nothing was asked of the authority (lease lost, cancelled, our own error).
    Skipped,
}

/// The outbox worker of one `ivan serve`.
#[derive(Debug, Clone)]
pub struct Forwarder {
    db: Db,
    ledger: Ledger,
    originals: Originals,
    client: AuthorityClient,
    clock: Arc<dyn Clock>,
    config: Arc<ForwardingConfig>,
    /// Identifies this worker's leases.
    owner: Arc<str>,
    /// Overdue mail also goes here (`mail.operator`).
    operator_mail: Option<String>,
    /// Set when filings travel in packages.
    packer: Option<packer::Packer>,
}

/// The running worker; [`ForwarderTask::shutdown`] lets attempts in flight finish.
#[derive(Debug)]
pub struct ForwarderTask {
    handle: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl ForwarderTask {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "forwarding worker failed");
        }
    }
}

impl Forwarder {
    pub fn new(
        db: Db,
        ledger: Ledger,
        originals: Originals,
        client: AuthorityClient,
        clock: Arc<dyn Clock>,
        config: ForwardingConfig,
        operator_mail: Option<String>,
    ) -> Self {
        let owner = format!("{}:{}", std::process::id(), uuid::Uuid::now_v7());
        Self {
            db,
            ledger,
            originals,
            client,
            clock,
            config: Arc::new(config),
            owner: owner.into(),
            operator_mail,
            packer: None,
        }
    }

    pub fn start(mut self) -> ForwarderTask {
        if let Some(limits) = self.config.packages() {
            self.packer = Some(packer::Packer::start(self.client.clone(), limits));
        }
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(self.run(stopped));
        ForwarderTask { handle, stop }
    }

    async fn run(self, mut stopped: watch::Receiver<bool>) {
        tracing::info!(authority = %self.client.base_url(), owner = %self.owner, "forwarding worker started");
        if self.db.backend() == retention::db::Backend::Sqlite {
            // One server per SQLite file: leases still held are a crashed run's.
            match outbox::release_all_leases(&self.db).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(rows = n, "took over the outbox leases of a previous run"),
                Err(e) => tracing::error!(error = %e, "could not release stale leases"),
            }
        }
        let idle = Duration::from_millis(self.config.idle_ms);
        let sweep_every = Duration::from_secs(5);
        // Attempts waiting for their package are idle: a package can only fill up
        // with as many running at once.
        let concurrency = self
            .config
            .concurrency
            .max(self.config.packages().map_or(0, |p| p.max_filings));
        // The worker's timers run on its clock (a test's manual clock moves them); only
        // the few milliseconds rows wait to be given back together are real time.
        let mut next_sweep = self.clock.now();
        let mut outage = Outage::default();
        // Claimed rows not started yet, attempts running, and rows to give back.
        let mut ready: VecDeque<Claimed> = VecDeque::new();
        let mut running: JoinSet<Ended> = JoinSet::new();
        let mut again = Again::default();
        // When to look for due rows again; `None`: as soon as there is room.
        let mut look_at: Option<DateTime<Utc>> = None;
        // Set when told to stop, or when the one who could tell is gone.
        let mut told = false;
        loop {
            let stopping = told || *stopped.borrow();
            if stopping {
                // Rows claimed but not started go back as they were.
                let now = self.clock.now();
                again.extend(ready.drain(..).map(|row| row.give_back(now)));
                if running.is_empty() {
                    self.flush(&mut again).await;
                    break;
                }
            } else if self.clock.now() >= next_sweep {
                if let Err(e) = self.sweep().await {
                    tracing::error!(error = %e, "outbox sweep failed");
                }
                next_sweep = self.clock.now() + chrono_of(sweep_every);
            }
            // While the authority is down, one probe at a time, when it is due.
            let room = match outage.probe_at {
                None => concurrency,
                Some(at) if at <= self.clock.now() && running.is_empty() => 1,
                Some(_) => 0,
            };
            if !stopping {
                while running.len() < room {
                    let Some(row) = ready.pop_front() else { break };
                    let me = self.clone();
                    running.spawn(async move { me.attempt(row).await });
                }
                if running.len() < room
                    && ready.is_empty()
                    && look_at.is_none_or(|at| at <= self.clock.now())
                {
                    let limit = if outage.is_down() {
                        1
                    } else {
                        self.config.batch
                    };
                    let now = self.clock.now();
                    let lease_until = now + secs(self.config.lease_secs);
                    match outbox::claim(&self.db, &self.owner, now, lease_until, limit).await {
                        Ok(rows) if !rows.is_empty() => {
                            ready.extend(rows);
                            look_at = None;
                            continue;
                        }
                        Ok(_) => {
                            // Nothing due: look again when the next row falls due
                            // (retries are often due in milliseconds), or after
                            // `idle` for rows yet to come.
                            let mut wait = idle;
                            if let Ok(Some(next)) = outbox::next_due(&self.db).await {
                                let until = (next - self.clock.now()).to_std().unwrap_or_default();
                                wait = until.clamp(Duration::from_millis(10), idle);
                            }
                            look_at = Some(self.clock.now() + chrono_of(wait));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "claiming outbox rows failed");
                            look_at = Some(
                                self.clock.now() + chrono_of(idle.max(Duration::from_secs(1))),
                            );
                        }
                    }
                }
            }
            if again.due(concurrency, running.is_empty()) {
                self.flush(&mut again).await;
                // Rows given back may be due soon.
                look_at = None;
                continue;
            }
            let now = self.clock.now();
            let mut wake = if stopping {
                now + chrono_of(sweep_every)
            } else {
                next_sweep
            };
            // Only what this loop could act on sets the wake-up: a look for due rows
            // while there is room for them, a probe while none is running. (Waking
            // for a look it cannot take, with every slot busy or the authority down,
            // spun the loop until room came back.)
            let can_claim = !stopping && running.len() < room && ready.is_empty();
            // (A probe already due waits for a row to fall due: `look_at`.)
            let probe_at = outage.probe_at.filter(|at| running.is_empty() && *at > now);
            for at in [look_at.filter(|_| can_claim), probe_at]
                .into_iter()
                .flatten()
            {
                wake = wake.min(at);
            }
            let wait = (wake - now).to_std().unwrap_or_default();
            let give_back_at = again.deadline();
            tokio::select! {
                Some(joined) = running.join_next(), if !running.is_empty() => {
                    let ended = joined.unwrap_or_else(|e| {
                        // The row stays leased until its lease ends.
                        tracing::error!(error = %e, "a forwarding attempt failed");
                        Attempt::Skipped.into()
                    });
                    let was_down = outage.is_down();
                    let recovered =
                        outage.record(&[ended.attempt], &self.config, self.clock.now());
                    again.extend(ended.again);
                    if outage.is_down() && !was_down {
                        // Rows claimed before the authority went down wait for it.
                        let now = self.clock.now();
                        again.extend(ready.drain(..).map(|row| row.give_back(now)));
                    }
                    if recovered {
                        self.flush(&mut again).await;
                        let now = self.clock.now();
                        match outbox::release_held_back(&self.db, now).await {
                            Ok(n) => tracing::info!(messages = n, "held-back deliveries due now"),
                            Err(e) => {
                                tracing::error!(error = %e, "could not release held-back deliveries")
                            }
                        }
                        look_at = None;
                    }
                }
                () = self.clock.sleep(wait) => {}
                () = sleep_until_some(give_back_at), if give_back_at.is_some() => {}
                changed = stopped.changed(), if !stopping => told = changed.is_err(),
            }
        }
        tracing::info!("forwarding worker stopped");
    }

    /// Gives the rows in `again` back, in one transaction.
    async fn flush(&self, again: &mut Again) {
        let rows = again.take();
        if let Err(e) = outbox::reschedule_all(&self.db, &self.owner, &rows).await {
            tracing::error!(rows = rows.len(), error = %e, "could not reschedule; the rows are retried when their lease ends");
        }
    }

    /// One attempt on one claimed row; every failure is handled here. The row's
    /// next attempt, if any, is for the caller to write with others ([`Again`]).
    async fn attempt(&self, row: Claimed) -> Ended {
        let id = row.submission_id.clone();
        let result = match row.phase {
            Phase::Deliver => self.deliver(&row).await.map(Ended::from),
            Phase::Poll => self.poll(&row).await,
        };
        match result {
            Ok(ended) => ended,
            Err(Failure::Transient(reason, answered)) => {
                let attempts = row.attempts.saturating_add(1);
                let own = match row.phase {
                    Phase::Deliver => backoff(
                        u32::try_from(row.attempts).unwrap_or(u32::MAX),
                        Duration::from_millis(self.config.retry_base_ms),
                        secs_std(self.config.retry_cap_secs),
                        rand::random::<f64>(),
                    ),
                    Phase::Poll => poll_delay(&self.config, row.attempts),
                };
                // The authority's Retry-After is honoured, within our own cap.
                let delay = reason.retry_after.map_or(own, |wait| {
                    own.max(wait.min(secs_std(self.config.retry_cap_secs)))
                });
                tracing::warn!(submission = %id, phase = ?row.phase, attempts, retry_in_ms = delay.as_millis() as u64, reason = %reason, "authority attempt failed; will retry");
                metrics::counter!("ivan_forwarding_attempts_total", "outcome" => "transient")
                    .increment(1);
                Ended {
                    attempt: if reason.echo {
                        Attempt::Skipped
                    } else {
                        Attempt::Transient { answered }
                    },
                    again: Some(outbox::Reschedule {
                        submission_id: id,
                        attempts,
                        due_at: self.clock.now() + chrono_of(delay),
                        last_error: Some(reason.reason),
                    }),
                }
            }
            Err(Failure::Internal(e)) => {
                // Our own trouble (database, originals store): retry later, release the row.
                tracing::error!(submission = %id, error = %e, "forwarding attempt failed inside ivan");
                metrics::counter!("ivan_forwarding_attempts_total", "outcome" => "internal")
                    .increment(1);
                Ended {
                    attempt: Attempt::Skipped,
                    again: Some(outbox::Reschedule {
                        submission_id: id,
                        attempts: row.attempts,
                        due_at: self.clock.now() + chrono_of(Duration::from_secs(30)),
                        last_error: Some(format!("internal: {e}")),
                    }),
                }
            }
        }
    }

    async fn deliver(&self, row: &Claimed) -> Result<Attempt, Failure> {
        let s = &row.submission;
        // A first attempt records accepted → forwarding together with the
        // authority's answer, in one append (the lease held on the row keeps a
        // cancel out meanwhile: `outbox::dequeue`); a retry records it first, so the
        // status says the filing is on its way while it is retried.
        let forward_with_answer = s.status == Status::Accepted && row.attempts == 0;
        if s.status == Status::Accepted && !forward_with_answer {
            let transition = self
                .transition(
                    row,
                    false,
                    "submission.forward",
                    None,
                    outbox::Change::Forwarding,
                )
                .await;
            match transition {
                Ok(_) => {}
                Err(Error::Record(retention::Error::Conflict(why))) => {
                    tracing::info!(submission = %row.submission_id, %why, "not forwarded");
                    return Ok(Attempt::Skipped);
                }
                Err(e) => return Err(Failure::Internal(e)),
            }
        }
        let hash = Sha256Hex::parse(&s.sha256)
            .ok_or_else(|| Failure::Internal(Error::Invalid("malformed stored hash".into())))?;
        let body = self
            .originals
            .get(&hash)
            .await
            .map_err(|e| Failure::Internal(e.into()))?;
        let delivery = match &self.packer {
            Some(packer) => {
                packer
                    .deliver(packer::Parcel {
                        message_id: row.submission_id.clone(),
                        employer: s.employer_registration.clone(),
                        document_type: s.document_type.clone(),
                        body,
                    })
                    .await
            }
            None => {
                self.client
                    .deliver(&Outgoing {
                        message_id: &row.submission_id,
                        employer: &s.employer_registration,
                        document_type: &s.document_type,
                        body,
                    })
                    .await
            }
        };
        match delivery? {
            Delivery::Taken {
                authority_ref,
                status: code,
                body,
            } => {
                metrics::counter!("ivan_forwarding_attempts_total", "outcome" => "delivered")
                    .increment(1);
                let appended = self
                    .transition(
                        row,
                        forward_with_answer,
                        "submission.deliver",
                        Some(Payload {
                            content: body.into(),
                            media_type: "application/json".into(),
                            retain_until: None,
                        }),
                        outbox::Change::Delivered {
                            authority_ref: authority_ref.clone(),
                            poll_at: chrono_of(Duration::from_millis(self.config.poll_interval_ms)),
                        },
                    )
                    .await
                    .map_err(Failure::Internal)?;
                let waited = (appended.recorded_at - s.hold_until)
                    .num_milliseconds()
                    .max(0);
                metrics::histogram!("ivan_forwarding_delivery_seconds")
                    .record(waited as f64 / 1000.0);
                tracing::info!(submission = %row.submission_id, %authority_ref, status = code, "delivered to the authority");
                Ok(Attempt::Done)
            }
            Delivery::Refused {
                status: code,
                media_type,
                body,
            } => {
                metrics::counter!("ivan_forwarding_attempts_total", "outcome" => "refused")
                    .increment(1);
                tracing::warn!(submission = %row.submission_id, status = code, "the authority refused the filing");
                self.transition(
                    row,
                    forward_with_answer,
                    "submission.authority-refuse",
                    Some(Payload {
                        content: body.into(),
                        media_type,
                        retain_until: None,
                    }),
                    outbox::Change::Refused,
                )
                .await
                .map_err(Failure::Internal)?;
                Ok(Attempt::Done)
            }
        }
    }

    async fn poll(&self, row: &Claimed) -> Result<Ended, Failure> {
        let authority_ref = row.submission.authority_ref.clone().ok_or_else(|| {
            Failure::Internal(Error::Invalid(
                "delivered without an authority reference".into(),
            ))
        })?;
        let (state, raw) = self.client.state(&authority_ref).await?;
        let final_action = match state.state.as_str() {
            "processed" => "submission.process",
            "rejected" => "submission.reject",
            "processing" => {
                let due = self.clock.now() + chrono_of(poll_delay(&self.config, row.attempts));
                return Ok(Ended {
                    attempt: Attempt::Done,
                    again: Some(outbox::Reschedule {
                        submission_id: row.submission_id.clone(),
                        attempts: row.attempts.saturating_add(1),
                        due_at: due,
                        last_error: None,
                    }),
                });
            }
            other => {
                return Err(Failure::Transient(
                    Transient::new(format!("the authority reports an unknown state {other:?}")),
                    1,
                ));
            }
        };
        let mut documents = Vec::with_capacity(state.documents.len());
        for doc in &state.documents {
            // The state query and the documents before this one were answered.
            let answered = u32::try_from(documents.len() + 1).unwrap_or(u32::MAX);
            let (media_type, bytes) = self
                .client
                .document(&doc.href)
                .await
                .map_err(|t| Failure::Transient(t, answered))?;
            documents.push(outbox::Answer {
                n: doc.n,
                name: doc.name.clone(),
                media_type,
                sha256: Sha256Hex::of(&bytes).as_str().to_owned(),
                size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
                bytes,
            });
        }
        let subject = format!("submission:{}", row.submission_id);
        let mut entries: Vec<NewEntry> = documents
            .iter()
            .map(|d| NewEntry {
                actor: Actor::System,
                action: "submission.answer".into(),
                subject: subject.clone(),
                payload: Some(Payload {
                    content: d.bytes.clone().into(),
                    media_type: d.media_type.clone(),
                    retain_until: None,
                }),
            })
            .collect();
        entries.push(NewEntry {
            actor: Actor::System,
            action: final_action.into(),
            subject,
            payload: Some(Payload {
                content: raw.into(),
                media_type: "application/json".into(),
                retain_until: None,
            }),
        });
        let final_status = if final_action == "submission.process" {
            Status::Processed
        } else {
            Status::Rejected
        };
        let work = outbox::finish_work(
            row.submission_id.clone(),
            self.owner.to_string(),
            final_status,
            documents,
        );
        match self.ledger.append_all(entries, Some(work)).await {
            Ok(_) => {
                tracing::info!(submission = %row.submission_id, state = %state.state, "the authority's answer is in");
                Ok(Attempt::Done.into())
            }
            Err(retention::Error::Conflict(why)) => {
                tracing::warn!(submission = %row.submission_id, %why, "answer not recorded: lease lost");
                Ok(Attempt::Skipped.into())
            }
            Err(e) => Err(Failure::Internal(e.into())),
        }
    }

    /// Appends `action` for the row's submission and applies `change` in the same
    /// transaction, provided this worker still holds the row's lease; with
    /// `forward_first`, `submission.forward` (accepted → forwarding) just before it,
    /// in the same append. Returns the position of `action`'s entry.
    async fn transition(
        &self,
        row: &Claimed,
        forward_first: bool,
        action: &str,
        payload: Option<Payload>,
        change: outbox::Change,
    ) -> Result<Appended, Error> {
        let subject = format!("submission:{}", row.submission_id);
        let entry = |action: &str, payload| NewEntry {
            actor: Actor::System,
            action: action.into(),
            subject: subject.clone(),
            payload,
        };
        let (mut entries, mut changes) = (Vec::new(), Vec::new());
        if forward_first {
            entries.push(entry("submission.forward", None));
            changes.push(outbox::Change::Forwarding);
        }
        entries.push(entry(action, payload));
        changes.push(change);
        let work: Work =
            outbox::change_work(row.submission_id.clone(), self.owner.to_string(), changes);
        let mut appended = self.ledger.append_all(entries, Some(work)).await?;
        appended
            .pop()
            .ok_or_else(|| Error::Internal("the log returned no position".into()))
    }

    /// Flags overdue deliveries (once each) and refreshes the outbox gauges.
    async fn sweep(&self) -> Result<(), Error> {
        let now = self.clock.now();
        for id in outbox::newly_overdue(&self.db, now, 100).await? {
            let work = outbox::flag_overdue_work(id.clone(), self.operator_mail.clone());
            if self
                .ledger
                .append_once(
                    NewEntry {
                        actor: Actor::System,
                        action: "submission.overdue".into(),
                        subject: format!("submission:{id}"),
                        payload: None,
                    },
                    work,
                )
                .await?
            {
                metrics::counter!("ivan_forwarding_overdue_total").increment(1);
                tracing::warn!(submission = %id, "forwarding is overdue: not delivered by its forward_by time");
            }
        }
        let gauges = outbox::gauges(&self.db, now).await?;
        metrics::gauge!("ivan_outbox_depth", "phase" => "deliver").set(gauges.deliver as f64);
        metrics::gauge!("ivan_outbox_depth", "phase" => "poll").set(gauges.poll as f64);
        metrics::gauge!("ivan_outbox_overdue").set(gauges.overdue as f64);
        metrics::gauge!("ivan_outbox_oldest_pending_seconds").set(gauges.oldest_pending_secs);
        Ok(())
    }
}

/// How an attempt ended: what outage detection counts, and the row's next attempt
/// when it stays in the outbox with no change recorded.
#[derive(Debug)]
struct Ended {
    attempt: Attempt,
    again: Option<outbox::Reschedule>,
}

impl From<Attempt> for Ended {
    fn from(attempt: Attempt) -> Self {
        Ended {
            attempt,
            again: None,
        }
    }
}

/// Rows to give back to the outbox, written together: when as many as attempts run
/// at once are waiting, when nothing is running any more, or [`Again::WITHIN`] after
/// the first of them. Until then a row stays leased to this worker, so nobody takes
/// it early; a crash leaves it to its lease's end, as any claimed row.
#[derive(Debug, Default)]
struct Again {
    rows: Vec<outbox::Reschedule>,
    since: Option<Instant>,
}

impl Again {
    const WITHIN: Duration = Duration::from_millis(20);

    fn extend(&mut self, rows: impl IntoIterator<Item = outbox::Reschedule>) {
        let before = self.rows.len();
        self.rows.extend(rows);
        if before == 0 && !self.rows.is_empty() {
            self.since = Some(Instant::now());
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + Self::WITHIN)
    }

    fn due(&self, concurrency: usize, idle: bool) -> bool {
        !self.rows.is_empty()
            && (idle
                || self.rows.len() >= concurrency
                || self.deadline().is_some_and(|at| at <= Instant::now()))
    }

    fn take(&mut self) -> Vec<outbox::Reschedule> {
        self.since = None;
        std::mem::take(&mut self.rows)
    }
}

/// Why an attempt did not complete.
#[derive(Debug)]
enum Failure {
    /// A request failed after `.1` requests of the same attempt were answered.
    Transient(Transient, u32),
    Internal(Error),
}

impl From<Transient> for Failure {
    fn from(t: Transient) -> Self {
        Failure::Transient(t, 0)
    }
}

fn poll_delay(config: &ForwardingConfig, attempts: i64) -> Duration {
    let base = Duration::from_millis(config.poll_interval_ms);
    let n = u32::try_from(attempts.clamp(0, 30)).unwrap_or(30);
    base.checked_mul(1u32 << n)
        .unwrap_or(Duration::MAX)
        .min(secs_std(config.poll_cap_secs))
}

fn secs(s: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

fn secs_std(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Sleeps until `at` (never resolves for `None`).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_full_jitter() {
        let base = Duration::from_millis(1000);
        let cap = Duration::from_secs(600);
        assert_eq!(backoff(0, base, cap, 0.0), Duration::ZERO);
        assert_eq!(backoff(0, base, cap, 1.0), base);
        assert_eq!(backoff(3, base, cap, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(3, base, cap, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(20, base, cap, 1.0), cap);
        assert_eq!(backoff(u32::MAX, base, cap, 1.0), cap);
    }

    #[test]
    fn polls_back_off_to_their_cap() {
        let c = ForwardingConfig::default();
        assert_eq!(poll_delay(&c, 0), Duration::from_secs(2));
        assert_eq!(poll_delay(&c, 1), Duration::from_secs(4));
        assert_eq!(poll_delay(&c, 40), Duration::from_secs(300));
    }

    #[test]
    fn an_outage_opens_after_a_run_of_failures_and_closes_on_success() {
        let c = ForwardingConfig {
            outage_after_failures: 3,
            ..ForwardingConfig::default()
        };
        let mut o = Outage::default();
        let failed = Attempt::Transient { answered: 0 };
        assert!(!o.record(&[failed, failed], &c, Utc::now()));
        assert!(!o.is_down());
        // An attempt whose earlier requests were answered breaks the run.
        o.record(&[Attempt::Transient { answered: 1 }], &c, Utc::now());
        o.record(&[failed], &c, Utc::now());
        assert!(!o.is_down());
        // Skipped attempts neither break nor extend the run.
        o.record(&[Attempt::Skipped, failed], &c, Utc::now());
        assert!(o.is_down());
        assert!(
            o.record(&[Attempt::Done], &c, Utc::now()),
            "recovery is reported once"
        );
        assert!(!o.is_down());
        assert!(!o.record(&[Attempt::Done], &c, Utc::now()));
    }

    #[test]
    fn lease_must_outlive_the_slowest_attempt() {
        let a = AuthorityConfig::default();
        let ok = ForwardingConfig::default();
        assert!(ok.validate(&a).is_ok());
        let short = ForwardingConfig {
            lease_secs: 60,
            ..ForwardingConfig::default()
        };
        let err = short.validate(&a).unwrap_err().to_string();
        assert!(err.contains("lease_secs"), "{err}");
    }
}
