//! Writes a synthetic multi-year record for the restore drill
//! (`ops/drills/restore-drill.sh`): N filings with their whole lifecycle, straight
//! into a PostgreSQL database and a local originals directory that the `ivan` CLI
//! has set up (keys, employer, trust), continuing the log the CLI started.
//!
//! Each filing is what the real service leaves behind for a filing that was
//! accepted, delivered and processed (`server/src/submissions.rs`,
//! `server/src/forwarding`):
//! - the original (contribution-report XML of a size drawn per document type, see
//!   [`Sizes`]; not XML-signed, which does not change what a backup copies),
//! - eight log entries: `submission.receive` (payload: the original),
//!   `.verify`, `.validate`, `.accept`, then after the cancel window `.forward`,
//!   `.deliver` (payload: the authority's JSON answer), and hours later
//!   `.answer` (payload: the authority's answer document) and `.process`
//!   (payload: the authority's state JSON) — interleaved across filings in time
//!   order, hash-chained exactly as the ledger chains them, with a checkpoint signed
//!   by the data dir's checkpoint key every `--checkpoint-every` entries,
//! - its `submissions` row with a receipt signed by the receipt key (ES256), its
//!   `answers` row, two `person_index` rows (keyed with the data dir's key), and an
//!   `originals` row per stored payload (four per filing).
//!
//! The filings span `--years` from the moment the CLI set the record up (log times
//! never go back), so they lie in the future of the machine's clock.
//!
//! Rows are loaded with `COPY` in batches; originals are written without fsync
//! (the drill runs `sync` afterwards). The result passes `ivan log verify`.

use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Duration, TimeZone, Utc};
use clap::Parser;
use ivan_bench::report;
use ivan_server::submissions::persons::PersonIndex;
use retention::keys::Keys;
use retention::ledger::{EntryFields, checkpoint_note, entry_hash, format_time};
use retention::{Actor, Sha256Hex, receipts};
use sqlx::postgres::{PgPool, PgPoolOptions};

#[derive(Debug, Parser)]
struct Args {
    /// PostgreSQL database the CLI has migrated (`ivan admin employer add` did).
    #[arg(long)]
    database_url: String,
    /// The data dir (`keys/`, `originals/`).
    #[arg(long)]
    data_dir: PathBuf,
    /// Filings to write.
    #[arg(long, default_value_t = 1_000_000)]
    filings: u64,
    /// Years the filings are spread over, ending now.
    #[arg(long, default_value_t = 3)]
    years: u32,
    /// Divide every drawn document size by this (1 = realistic sizes).
    #[arg(long, default_value_t = 1)]
    scale: u32,
    /// A signed checkpoint every this many entries (the service's default).
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: i64,
    /// Filings per COPY batch.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
}

/// Deterministic pseudo-random numbers (SplitMix64): the same volume on every run,
/// with no dependency on a seeded-RNG API.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
    /// Log-normal with the given median and shape (Box–Muller).
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        let n = (-2.0 * self.unit().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.unit()).cos();
        median * (sigma * n).exp()
    }
}

/// Document mix and sizes (bytes of the signed XML as employers send it):
/// registration forms are short, contribution reports grow with the payroll
/// (log-normal, long tail up to 8 MiB), pension record sheets in between.
struct Sizes;

impl Sizes {
    fn draw(rng: &mut Rng) -> (&'static str, char, f64) {
        let r = rng.unit();
        if r <= 0.55 {
            ("registration-form", 'R', rng.lognormal(4_500.0, 0.3))
        } else if r <= 0.85 {
            (
                "contribution-report",
                'V',
                rng.lognormal(24_000.0, 1.2).min(8.0 * 1024.0 * 1024.0),
            )
        } else if r <= 0.97 {
            ("pension-record-sheet", 'E', rng.lognormal(12_000.0, 0.4))
        } else {
            ("employer-change", 'Z', rng.lognormal(3_000.0, 0.2))
        }
    }
}

/// One step of a filing's life still to be logged.
#[derive(Debug, PartialEq, Eq)]
struct Pending {
    at: DateTime<Utc>,
    filing: u64,
    step: u8,
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // BinaryHeap is a max-heap: the earliest step first.
        (other.at, other.filing, other.step).cmp(&(self.at, self.filing, self.step))
    }
}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A filing between its acceptance and its final answer.
struct Filing {
    id: String,
    document_type: &'static str,
    document_number: String,
    sha256: String,
    size: i64,
    received_at: DateTime<Utc>,
    receive_seq: i64,
    /// The receive entry's hash: the receipt's leaf.
    receive_hash: String,
    authority_ref: String,
    delivered_at: Option<DateTime<Utc>>,
    answer: Option<(String, i64, i64, DateTime<Utc>)>,
    /// Written with the submission row they reference.
    person_keys: [String; 2],
}

/// The COPY text of one batch, per table.
#[derive(Default)]
struct Batch {
    originals: String,
    submissions: String,
    answers: String,
    person_index: String,
    log_entries: String,
    checkpoints: String,
    filings: usize,
}

struct Writer {
    pool: PgPool,
    root: PathBuf,
    keys: Keys,
    persons: PersonIndex,
    actor: String,
    employer_id: String,
    fingerprint: String,
    seq: i64,
    head: String,
    last_time: DateTime<Utc>,
    checkpoint_every: i64,
    scale: u32,
    batch: Batch,
    bytes: u64,
    /// What `bytes` would be at `--scale 1`.
    full_bytes: u64,
    files: u64,
    entries: u64,
    checkpoints: u64,
}

fn ts(t: &DateTime<Utc>) -> String {
    format_time(t)
}

impl Writer {
    /// Stores an original (no fsync: the drill syncs once) and its row.
    fn original(&mut self, bytes: &[u8], media_type: &str, at: &DateTime<Utc>) -> Result<String> {
        let sha = Sha256Hex::of(bytes).as_str().to_owned();
        let dir = self.root.join("sha256").join(&sha[0..2]).join(&sha[2..4]);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(&sha);
        let mut f = std::fs::File::create_new(&path)
            .with_context(|| format!("{} (duplicate content?)", path.display()))?;
        f.write_all(bytes)?;
        writeln!(
            self.batch.originals,
            "{sha}\t{}\t{media_type}\t{}\t\\N",
            bytes.len(),
            ts(at)
        )?;
        self.bytes += bytes.len() as u64;
        self.full_bytes += bytes.len() as u64
            * u64::from(if media_type == "application/xml" {
                self.scale
            } else {
                1
            });
        self.files += 1;
        Ok(sha)
    }

    /// Appends one log entry to the chain; a checkpoint every `checkpoint_every`.
    fn entry(
        &mut self,
        at: DateTime<Utc>,
        actor: &str,
        action: &str,
        subject: &str,
        payload: Option<&str>,
    ) -> Result<i64> {
        // The ledger never goes back in time; neither does the drill.
        let at = at.max(self.last_time);
        self.last_time = at;
        self.seq += 1;
        let hash = entry_hash(&EntryFields {
            seq: self.seq,
            recorded_at: &at,
            actor,
            action,
            subject,
            payload_sha256: payload,
            prev_hash: &self.head,
        })
        .context("entry hash")?;
        writeln!(
            self.batch.log_entries,
            "{}\t{}\t{actor}\t{action}\t{subject}\t{}\t{}\t{hash}",
            self.seq,
            ts(&at),
            payload.unwrap_or("\\N"),
            self.head
        )?;
        self.head = hash;
        self.entries += 1;
        if self.seq % self.checkpoint_every == 0 {
            self.checkpoint()?;
        }
        Ok(self.seq)
    }

    fn checkpoint(&mut self) -> Result<()> {
        let at = self.last_time;
        let note = checkpoint_note(self.seq, &self.head, &at);
        let signature = self.keys.sign_checkpoint(note.as_bytes());
        writeln!(
            self.batch.checkpoints,
            "{}\t{}\t{}\t{}\t{signature}",
            self.seq,
            self.head,
            ts(&at),
            self.keys.checkpoint_kid()
        )?;
        self.checkpoints += 1;
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        let mut tx = self.pool.begin().await?;
        for (table, columns, data) in [
            (
                "originals",
                "sha256, size_bytes, media_type, stored_at, purged_at",
                &batch.originals,
            ),
            (
                "submissions",
                "id, employer_id, document_type, document_number, status, sha256, size_bytes, \
                 received_at, hold_until, sender_reference, idempotency_key, signer_fingerprint, \
                 crl_sha256, log_seq, receipt, warnings, updated_at, authority_ref, delivered_at, \
                 persons_indexed_at, purged_at",
                &batch.submissions,
            ),
            (
                "answers",
                "submission_id, n, name, media_type, sha256, size_bytes, log_seq, received_at",
                &batch.answers,
            ),
            (
                "person_index",
                "person_key, submission_id",
                &batch.person_index,
            ),
            (
                "log_entries",
                "seq, recorded_at, actor, action, subject, payload_sha256, prev_hash, entry_hash",
                &batch.log_entries,
            ),
            (
                "log_checkpoints",
                "tree_size, head_hash, signed_at, key_id, signature",
                &batch.checkpoints,
            ),
        ] {
            if data.is_empty() {
                continue;
            }
            let mut copy = tx
                .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN"))
                .await?;
            copy.send(data.as_bytes()).await?;
            copy.finish()
                .await
                .with_context(|| format!("COPY {table}"))?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Logs step `step` of `f`; answers the next step and when it happens.
    fn step(
        &mut self,
        rng: &mut Rng,
        scale: u32,
        f: &mut Filing,
        step: u8,
        at: DateTime<Utc>,
    ) -> Result<Option<(u8, DateTime<Utc>)>> {
        let subject = format!("submission:{}", f.id);
        let system = Actor::System.to_string();
        Ok(match step {
            // Cancel window (1 h), then forwarding.
            0 => {
                self.entry(at, &system, "submission.forward", &subject, None)?;
                Some((
                    1,
                    at + Duration::milliseconds(300 + (rng.next() % 2000) as i64),
                ))
            }
            1 => {
                let body = format!(
                    "{{\"authority_ref\":\"{}\",\"status\":\"received\",\"received_at\":\"{}\"}}",
                    f.authority_ref,
                    ts(&at)
                );
                let sha = self.original(body.as_bytes(), "application/json", &at)?;
                self.entry(at, &system, "submission.deliver", &subject, Some(&sha))?;
                f.delivered_at = Some(at);
                // The authority processes within 1 to 24 hours.
                Some((
                    2,
                    at + Duration::seconds(3600 + (rng.next() % (23 * 3600)) as i64),
                ))
            }
            _ => {
                let size = (rng.lognormal(1_800.0, 0.3) / f64::from(scale)).max(200.0) as usize;
                let mut answer = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ProcessingResult \
                     xmlns=\"urn:ivan:authority:1\" reference=\"{}\" documentNumber=\"{}\" \
                     result=\"processed\">\n",
                    f.authority_ref, f.document_number
                );
                while answer.len() < size {
                    answer.push_str("  <Note code=\"OK\">Accepted into the register.</Note>\n");
                }
                answer.push_str("</ProcessingResult>\n");
                let sha = self.original(answer.as_bytes(), "application/xml", &at)?;
                let seq = self.entry(at, &system, "submission.answer", &subject, Some(&sha))?;
                f.answer = Some((sha, answer.len() as i64, seq, at));
                let state = format!(
                    "{{\"reference\":\"{}\",\"state\":\"processed\",\"documents\":[{{\"n\":1,\
                     \"name\":\"result.xml\",\"href\":\"/documents/{}/1\"}}],\"at\":\"{}\"}}",
                    f.authority_ref,
                    f.authority_ref,
                    ts(&at)
                );
                let sha = self.original(state.as_bytes(), "application/json", &at)?;
                self.entry(at, &system, "submission.process", &subject, Some(&sha))?;
                self.finish(f, at)?;
                None
            }
        })
    }

    /// The filing's rows, once its final answer is in.
    fn finish(&mut self, f: &Filing, at: DateTime<Utc>) -> Result<()> {
        let claims = receipts::Claims {
            iss: "ivan".into(),
            sub: f.id.clone(),
            employer: self.employer_id.clone(),
            document_type: f.document_type.into(),
            document_number: f.document_number.clone(),
            sha256: f.sha256.clone(),
            received_at: ts(&f.received_at),
            log_seq: f.receive_seq,
            entry_hash: Some(f.receive_hash.clone()),
            iat: f.received_at.timestamp(),
        };
        let receipt = receipts::sign(&self.keys, &claims)?;
        writeln!(
            self.batch.submissions,
            "{}\t{}\t{}\t{}\tprocessed\t{}\t{}\t{}\t{}\t\\N\t\\N\t{}\t\\N\t{}\t{receipt}\t[]\t{}\t{}\t{}\t{}\t\\N",
            f.id,
            self.employer_id,
            f.document_type,
            f.document_number,
            f.sha256,
            f.size,
            ts(&f.received_at),
            ts(&(f.received_at + Duration::hours(1))),
            self.fingerprint,
            f.receive_seq,
            ts(&at),
            f.authority_ref,
            ts(&f.delivered_at.context("delivered")?),
            ts(&f.received_at),
        )?;
        let (sha, size, seq, answered) = f.answer.as_ref().context("answer")?;
        writeln!(
            self.batch.answers,
            "{}\t1\tresult.xml\tapplication/xml\t{sha}\t{size}\t{seq}\t{}",
            f.id,
            ts(answered)
        )?;
        for key in &f.person_keys {
            writeln!(self.batch.person_index, "{key}\t{}", f.id)?;
        }
        self.batch.filings += 1;
        Ok(())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.scale == 0 || args.checkpoint_every < 1 || args.years == 0 {
        bail!("--scale, --checkpoint-every and --years must be at least 1");
    }
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await
        .context("connecting to the drill database")?;
    let (employer_id, registration): (String, String) =
        sqlx::query_as("SELECT id, registration_number FROM employers ORDER BY created_at LIMIT 1")
            .fetch_one(&pool)
            .await
            .context("no employer: run `ivan admin employer add` first")?;
    let (token,): (String,) =
        sqlx::query_as("SELECT id FROM api_tokens WHERE employer_id = $1 LIMIT 1")
            .bind(&employer_id)
            .fetch_one(&pool)
            .await?;
    let (fingerprint,): (String,) =
        sqlx::query_as("SELECT fingerprint FROM employer_certificates WHERE employer_id = $1")
            .bind(&employer_id)
            .fetch_one(&pool)
            .await
            .context("no employer certificate: run `ivan admin cert add` first")?;
    let head: Option<(i64, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT seq, entry_hash, recorded_at FROM log_entries ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&pool)
    .await?;
    let (seq, head, last_time) = head.unwrap_or((
        0,
        retention::ledger::GENESIS_HASH.into(),
        Utc.timestamp_opt(0, 0).unwrap(),
    ));
    let keys_dir = args.data_dir.join("keys");
    let keys = Keys::load(&keys_dir).context("loading the data dir's keys")?;
    let persons = PersonIndex::load_or_generate(&keys_dir)?;
    let root = args.data_dir.join("originals");
    if !root.is_dir() {
        bail!("{} is not a directory", root.display());
    }

    // The log's times never go back, and the CLI's setup entries are from now: the
    // synthetic years start there (ahead of the machine's clock, which nothing in a
    // backup or restore depends on).
    let start = last_time.max(Utc::now()) + Duration::seconds(1);
    let end = start + Duration::days(365 * i64::from(args.years));
    let spacing_ms = (end - start).num_milliseconds() / args.filings.max(1) as i64;
    let mut w = Writer {
        pool,
        root,
        keys,
        persons,
        actor: Actor::ApiToken(token).to_string(),
        employer_id,
        fingerprint,
        seq,
        head,
        last_time,
        checkpoint_every: args.checkpoint_every,
        scale: args.scale,
        batch: Batch::default(),
        bytes: 0,
        full_bytes: 0,
        files: 0,
        entries: 0,
        checkpoints: 0,
    };
    let mut rng = Rng(0x1A7A_2026);
    let mut pending: BinaryHeap<Pending> = BinaryHeap::new();
    let mut open: HashMap<u64, Filing> = HashMap::new();
    let mut counters: HashMap<(char, String), u64> = HashMap::new();
    let began = Instant::now();
    let mut reported = Instant::now();

    for i in 0..=args.filings {
        // Everything due before this filing arrives (the last round drains the rest).
        let now = if i < args.filings {
            start
                + Duration::milliseconds(
                    i as i64 * spacing_ms + (rng.next() % spacing_ms.max(1) as u64) as i64 / 2,
                )
        } else {
            DateTime::<Utc>::MAX_UTC
        };
        while pending.peek().is_some_and(|p| p.at <= now) {
            let p = pending.pop().context("peeked")?;
            let mut f = open.remove(&p.filing).context("open filing")?;
            match w.step(&mut rng, args.scale, &mut f, p.step, p.at)? {
                Some((step, at)) => {
                    pending.push(Pending {
                        at,
                        filing: p.filing,
                        step,
                    });
                    open.insert(p.filing, f);
                }
                None => {
                    if w.batch.filings >= args.batch {
                        w.flush().await?;
                    }
                }
            }
        }
        if i == args.filings {
            break;
        }
        let (document_type, prefix, size) = Sizes::draw(&mut rng);
        let size = (size / f64::from(args.scale)).max(800.0) as usize;
        let reference = format!("SYN-{i:09}");
        let body = report(&registration, &reference, size);
        let period = now.format("%y%m").to_string();
        let n = counters.entry((prefix, period.clone())).or_insert(0);
        *n += 1;
        let document_number = format!("{prefix}{period}{n:06}");
        let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            now.timestamp() as u64,
            now.timestamp_subsec_nanos(),
        ))
        .to_string();
        let sha256 = w.original(body.as_bytes(), "application/xml", &now)?;
        let subject = format!("submission:{id}");
        let actor = w.actor.clone();
        let receive_seq = w.entry(now, &actor, "submission.receive", &subject, Some(&sha256))?;
        let receive_hash = w.head.clone();
        let system = Actor::System.to_string();
        for action in [
            "submission.verify",
            "submission.validate",
            "submission.accept",
        ] {
            w.entry(now, &system, action, &subject, None)?;
        }
        let person_keys =
            [i as usize, i as usize + 7].map(|n| w.persons.key_of(&ivan_bench::personal_id(n)));
        open.insert(
            i,
            Filing {
                id,
                document_type,
                document_number,
                sha256,
                size: body.len() as i64,
                received_at: now,
                receive_seq,
                receive_hash,
                authority_ref: format!("A{:012}", i + 1),
                delivered_at: None,
                answer: None,
                person_keys,
            },
        );
        pending.push(Pending {
            at: now + Duration::hours(1),
            filing: i,
            step: 0,
        });
        if reported.elapsed().as_secs() >= 10 {
            reported = Instant::now();
            eprintln!(
                "synth-volume: {i} of {} filings, {} entries, {:.1} GB, {:.0} s",
                args.filings,
                w.entries,
                w.bytes as f64 / 1e9,
                began.elapsed().as_secs_f64()
            );
        }
    }
    if w.seq % w.checkpoint_every != 0 {
        w.checkpoint()?;
    }
    w.flush().await?;
    // Keep the document number sequences ahead of what the drill used.
    for ((prefix, period), last) in &counters {
        sqlx::query(
            "INSERT INTO document_counters (prefix, period, last) VALUES ($1, $2, $3) \
             ON CONFLICT (prefix, period) DO UPDATE SET last = GREATEST(document_counters.last, EXCLUDED.last)",
        )
        .bind(prefix.to_string())
        .bind(period)
        .bind(*last as i64)
        .execute(&w.pool)
        .await?;
    }
    println!(
        "{}",
        serde_json::json!({
            "filings": args.filings,
            "years": args.years,
            "scale": args.scale,
            "log_entries": w.entries,
            "checkpoints": w.checkpoints,
            "originals": w.files,
            "originals_bytes": w.bytes,
            "originals_bytes_unscaled": w.full_bytes,
            "seconds": (began.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        })
    );
    Ok(())
}
