//! The sweeper that purges what has expired: the retention policy
//! ([`crate::documents::retention`]) says how long payloads are kept,
//! [`super::holds`] what is kept longer.
//!
//! A filing's **transaction ends** when the authority's final answer is recorded
//! (`processed` or `rejected`, which implies it was delivered); its payloads — the
//! document as received, the authority's answers, the JSON payloads of its log
//! entries — are kept `retention.years` (per document type; default
//! `retention.default_years` = 10, never less than 10) from that moment. Filings that
//! never reached a final answer (accepted, forwarding, delivered, cancelled, refused
//! by the authority) are never purged automatically.
//!
//! The **sweeper** (every `retention.sweep_interval_secs`, and on demand) purges each
//! expired, unheld filing in one transaction with its `submission.purge` entry (actor
//! `system:ivan`; payload: the purged hashes and why): the filing and its originals
//! are marked purged, its person-index rows and the personal fields kept beside it
//! (registration items, a pre-registration's person) are removed; then the bytes are
//! deleted from the originals store. The log keeps every entry and every hash, so
//! `ivan log verify` still passes and reports purged payloads as such. A payload that
//! something else still needs (the same bytes filed again, by another filing that is
//! not purged) is kept. Time comes from a [`Clock`], so tests move ten years ahead
//! without waiting.
//!
//! The sweeper also catches up the person index for filings recorded before it
//! existed, and runs the [`Chore`]s it is given after each sweep: the portal's
//! housekeeping (`portal::housekeeping`, which owns those tables and sits above
//! compliance, so the app hands it in).
//!
//! This is server code rather than the `retention` crate's (as DESIGN.md places
//! "retention policy and legal holds") because the policy is about the submission
//! lifecycle, which the server owns; the crate provides the primitives it uses
//! (`Originals::delete`, a purge-aware `log verify`).

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use retention::ledger::{NewEntry, Work};
use retention::{Actor, Clock, Db, Ledger, Payload, Sha256Hex, on_pool};
use serde::Serialize;

use crate::Error;
use crate::documents::retention::{MIN_YEARS, RetentionConfig, years_before};
use crate::submissions::persons::{self, PersonIndex};
use crate::submissions::{self, Status};

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// Filings whose payloads were purged.
    pub purged_filings: Vec<String>,
    /// Originals deleted from the store.
    pub purged_originals: u64,
    /// Payloads kept because something not purged still names them.
    pub shared_kept: u64,
    /// Expired filings kept by a legal hold.
    pub held: u64,
    /// Filings newly added to the person index.
    pub persons_indexed: u64,
    /// Portal rows removed (expired ceremonies and uploads, old ended sessions).
    pub housekeeping_rows: u64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Candidate {
    id: String,
    employer_id: String,
    document_type: String,
    updated_at: DateTime<Utc>,
}

/// Everything the sweeper needs.
#[derive(Debug, Clone)]
pub struct Sweeper {
    pub db: Db,
    pub ledger: Ledger,
    pub clock: Arc<dyn Clock>,
    pub config: RetentionConfig,
    pub persons: PersonIndex,
    /// Run after each sweep, their removed rows counted in [`Swept::housekeeping_rows`].
    pub chores: Vec<Chore>,
}

/// Housekeeping of a module above compliance that the sweeper runs after each sweep
/// (the app hands it in): deletes expired rows as of `now`, returns how many.
pub type Chore = for<'a> fn(&'a Db, DateTime<Utc>) -> BoxFuture<'a, Result<u64, Error>>;

const ENDED: [Status; 2] = [Status::Processed, Status::Rejected];

impl Sweeper {
    /// One sweep: purges every expired, unheld, ended filing (in rounds of
    /// `sweep_batch`), then housekeeping.
    pub async fn sweep(&self) -> Result<Swept, Error> {
        let started = std::time::Instant::now();
        let now = self.clock.now();
        let mut swept = Swept::default();
        // Nothing can be older than the shortest allowed period without being past it
        // for some type; the exact per-type cutoff is applied below.
        let earliest_cutoff = years_before(now, MIN_YEARS);
        let mut after = String::new();
        loop {
            let batch: Vec<Candidate> = on_pool!(&self.db, pool => {
                sqlx::query_as(
                    "SELECT s.id, s.employer_id, s.document_type, s.updated_at FROM submissions s \
                     WHERE s.purged_at IS NULL AND s.delivered_at IS NOT NULL \
                     AND s.status IN ($1, $2) AND s.updated_at < $3 AND s.id > $4 \
                     ORDER BY s.id LIMIT $5",
                )
                .bind(ENDED[0].as_str())
                .bind(ENDED[1].as_str())
                .bind(earliest_cutoff)
                .bind(&after)
                .bind(self.config.sweep_batch)
                .fetch_all(pool)
                .await
                .map_err(retention::Error::from)?
            });
            let Some(last) = batch.last() else { break };
            after = last.id.clone();
            for c in batch {
                let cutoff = years_before(now, self.config.years_for(&c.document_type));
                if c.updated_at >= cutoff {
                    continue;
                }
                if self.held(&c).await? {
                    swept.held += 1;
                    continue;
                }
                self.purge(&c, now, &mut swept).await?;
            }
        }
        swept.persons_indexed = u64::try_from(
            persons::catch_up(
                &self.db,
                self.ledger.originals(),
                &self.persons,
                now,
                self.config.sweep_batch,
            )
            .await?,
        )
        .unwrap_or(0);
        swept.housekeeping_rows = self.housekeeping(now).await?;
        metrics::histogram!("ivan_retention_sweep_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("ivan_retention_purged_filings_total")
            .increment(swept.purged_filings.len() as u64);
        Ok(swept)
    }

    async fn held(&self, c: &Candidate) -> Result<bool, Error> {
        let n: i64 = on_pool!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM legal_holds WHERE released_at IS NULL AND \
                 ((scope = 'submission' AND target = $1) OR (scope = 'employer' AND target = $2))",
            )
            .bind(&c.id)
            .bind(&c.employer_id)
            .fetch_one(pool)
            .await
            .map_err(retention::Error::from)?
        });
        Ok(n > 0)
    }

    /// Whether the payload `sha` is named by anything that is not a purged filing or
    /// `except` (the filing being purged).
    async fn needed_elsewhere(&self, sha: &str, except: &str) -> Result<bool, Error> {
        let n: i64 = on_pool!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM log_entries e WHERE e.payload_sha256 = $1 \
                 AND e.subject <> $2 \
                 AND NOT EXISTS (SELECT 1 FROM submissions s \
                      WHERE e.subject = 'submission:' || s.id AND s.purged_at IS NOT NULL)",
            )
            .bind(sha)
            .bind(format!("submission:{except}"))
            .fetch_one(pool)
            .await
            .map_err(retention::Error::from)?
        });
        let referenced: i64 = on_pool!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM crls WHERE sha256 = $1) + \
                 (SELECT COUNT(*) FROM submissions WHERE sha256 = $1 AND id <> $2 AND purged_at IS NULL) + \
                 (SELECT COUNT(*) FROM answers a JOIN submissions s ON s.id = a.submission_id \
                  WHERE a.sha256 = $1 AND s.id <> $2 AND s.purged_at IS NULL)",
            )
            .bind(sha)
            .bind(except)
            .fetch_one(pool)
            .await
            .map_err(retention::Error::from)?
        });
        Ok(n > 0 || referenced > 0)
    }

    async fn purge(
        &self,
        c: &Candidate,
        now: DateTime<Utc>,
        swept: &mut Swept,
    ) -> Result<(), Error> {
        let shas: Vec<String> = on_pool!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT DISTINCT e.payload_sha256 FROM log_entries e \
                 JOIN originals o ON o.sha256 = e.payload_sha256 \
                 WHERE e.subject = $1 AND o.purged_at IS NULL ORDER BY e.payload_sha256",
            )
            .bind(format!("submission:{}", c.id))
            .fetch_all(pool)
            .await
            .map_err(retention::Error::from)?
        });
        let mut purge = Vec::new();
        let mut kept = Vec::new();
        for sha in shas {
            if self.needed_elsewhere(&sha, &c.id).await? {
                kept.push(sha);
            } else {
                purge.push(sha);
            }
        }
        let years = self.config.years_for(&c.document_type);
        let payload = serde_json::json!({
            "reason": "retention period ended",
            "document_type": c.document_type,
            "retention_years": years,
            "transaction_ended_at": retention::ledger::format_time(&c.updated_at),
            "purged": purge,
            "kept_shared": kept,
        });
        let (id, rows) = (c.id.clone(), purge.clone());
        let work: Work = retention::work!(|conn, at| {
            submissions::mark_purged(&mut conn, &id, now).await?;
            retention::ledger::mark_purged(&mut conn, &rows, now, at.seq()).await?;
            // The personal data kept beside the filing goes with its payloads.
            persons::forget(&mut conn, &id).await
        });
        let recorded = self
            .ledger
            .append_once(
                NewEntry {
                    actor: Actor::System,
                    action: "submission.purge".into(),
                    subject: format!("submission:{}", c.id),
                    payload: Some(Payload::json(&payload)),
                },
                work,
            )
            .await?;
        if !recorded {
            return Ok(());
        }
        // The record now says purged; the bytes go after the commit. A failure here
        // leaves bytes that the record no longer needs; the next sweep retries.
        for sha in &purge {
            if let Some(h) = Sha256Hex::parse(sha) {
                match self.ledger.originals().delete(&h).await {
                    Ok(true) => swept.purged_originals += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(sha256 = %sha, error = %e, "purged original not deleted yet; retried next sweep");
                    }
                }
            }
        }
        swept.shared_kept += kept.len() as u64;
        swept.purged_filings.push(c.id.clone());
        Ok(())
    }

    /// Deletes the bytes of originals marked purged that are still in the store (a
    /// sweep interrupted after its commit), then runs the chores; returns the rows
    /// they removed.
    async fn housekeeping(&self, now: DateTime<Utc>) -> Result<u64, Error> {
        let recent = now - chrono::Duration::days(30);
        let leftover = retention::ledger::purged_since(&self.db, recent).await?;
        for sha in leftover {
            if let Some(h) = Sha256Hex::parse(&sha)
                && let Err(e) = self.ledger.originals().delete(&h).await
            {
                tracing::warn!(sha256 = %sha, error = %e, "purged original not deleted yet");
            }
        }
        let mut rows = 0;
        for chore in &self.chores {
            rows += chore(&self.db, now).await?;
        }
        Ok(rows)
    }

    /// Runs [`Sweeper::sweep`] every `sweep_interval_secs` (the first a minute after
    /// start, or sooner if the interval is shorter) until shut down.
    pub fn start(self) -> retention::Periodic {
        let every = StdDuration::from_secs(self.config.sweep_interval_secs);
        let first = StdDuration::from_secs(60).min(every);
        let clock = self.clock.clone();
        let sweeper = Arc::new(self);
        retention::Periodic::start("retention sweep", clock, first, every, move || {
            let sweeper = sweeper.clone();
            async move {
                let s = sweeper.sweep().await?;
                if !s.purged_filings.is_empty() {
                    tracing::info!(
                        filings = s.purged_filings.len(),
                        originals = s.purged_originals,
                        held = s.held,
                        "retention sweep purged expired filings"
                    );
                }
                Ok::<_, Error>(())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    use crate::compliance::holds::{Scope, add_hold, holds, release_hold};
    use crate::submissions::{Accepting, Origin};
    use retention::LedgerConfig;
    use retention::ledger::verify;
    use retention::testing::{ManualClock, TestEnv};

    retention::backend_tests!(sweeper_purges_exactly_the_expired_unheld_ended_filings);

    const YEAR: i64 = 365;

    async fn employer(ledger: &Ledger, reg: &str) -> String {
        crate::employers::add(ledger, &retention::SystemClock, Actor::System, "E", reg)
            .await
            .unwrap()
            .employer
            .id
    }

    /// Records a filing of `bytes` and moves it to `state`, its transaction ending at
    /// `ended` (set by hand: the log's own times are real).
    #[allow(clippy::too_many_arguments)]
    async fn filing(
        env: &TestEnv,
        ledger: &Ledger,
        persons: &PersonIndex,
        employer: &str,
        bytes: &str,
        document_type: &str,
        state: Status,
        ended: DateTime<Utc>,
    ) -> (String, String) {
        let original = Bytes::from(bytes.to_owned());
        let sha = Sha256Hex::of(&original).to_string();
        let s = crate::submissions::record(
            ledger,
            env.keys.clone(),
            Accepting {
                id: retention::MessageId::new().to_string(),
                employer_id: employer.to_owned(),
                actor: Actor::System,
                origin: Origin::Signed {
                    registrations: Vec::new(),
                },
                document_type: document_type.to_owned(),
                number_prefix: 'R',
                original: original.into(),
                sha256: sha.clone(),
                sender_reference: None,
                idempotency_key: None,
                signer_fingerprint: None,
                crl_sha256: None,
                ocsp_response: None,
                signed_digest: None,
                warnings: "[]".into(),
                hold_window: chrono::Duration::zero(),
                forward_within: chrono::Duration::hours(2),
                retain_until: chrono::Utc::now(),
                person_keys: persons.keys_of(["7005151000"]),
                persons_later: false,
            },
        )
        .await
        .unwrap();
        let delivered = (state != Status::Cancelled).then_some(ended);
        on_pool!(&env.db, pool => {
            sqlx::query("UPDATE submissions SET status = $1, delivered_at = $2, updated_at = $3 WHERE id = $4")
                .bind(state.as_str())
                .bind(delivered)
                .bind(ended)
                .bind(&s.id)
                .execute(pool)
                .await
                .unwrap();
        });
        (s.id, sha)
    }

    async fn purged_at(env: &TestEnv, sha: &str) -> Option<DateTime<Utc>> {
        on_pool!(&env.db, pool => {
            sqlx::query_scalar("SELECT purged_at FROM originals WHERE sha256 = $1")
                .bind(sha)
                .fetch_one(pool)
                .await
                .unwrap()
        })
    }

    async fn sweeper_purges_exactly_the_expired_unheld_ended_filings(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let persons = PersonIndex::with_key([3; 32]);
        let clock = Arc::new(ManualClock::new());
        let now = clock.now();
        let e1 = employer(&ledger, "R-1").await;
        let e2 = employer(&ledger, "R-2").await;
        let long_ago = now - chrono::Duration::days(11 * YEAR);
        let recently = now - chrono::Duration::days(9 * YEAR);
        let cr = "contribution-report";
        let f = async |emp: &str, body: &str, ty: &str, state: Status, ended| {
            filing(&env, &ledger, &persons, emp, body, ty, state, ended).await
        };
        // Ended eleven years ago, nothing holding it: purged, with its answer.
        let (a, a_sha) = f(&e1, "<a/>", cr, Status::Processed, long_ago).await;
        let answer = Bytes::from_static(b"<answer>processed</answer>");
        let answer_sha = Sha256Hex::of(&answer).to_string();
        ledger
            .append(NewEntry {
                actor: Actor::System,
                action: "submission.answer".into(),
                subject: format!("submission:{a}"),
                payload: Some(Payload {
                    content: answer.into(),
                    media_type: "application/xml".into(),
                    retain_until: None,
                }),
            })
            .await
            .unwrap();
        // Ended nine years ago: not yet.
        let (b, _) = f(&e1, "<b/>", cr, Status::Processed, recently).await;
        // Expired, but held (the filing; the employer).
        let (c, c_sha) = f(&e1, "<c/>", cr, Status::Rejected, long_ago).await;
        let (d, _) = f(&e2, "<d/>", cr, Status::Processed, long_ago).await;
        // Expired but never ended: delivered without a final answer; cancelled.
        let (g, _) = f(&e1, "<g/>", cr, Status::Delivered, long_ago).await;
        let (h, _) = f(&e1, "<h/>", cr, Status::Cancelled, long_ago).await;
        // Kept 50 years by its type.
        let (p, _) = f(
            &e1,
            "<p/>",
            "pension-record-sheet",
            Status::Processed,
            long_ago,
        )
        .await;
        // The same bytes filed by two employers: one expired, the other recent.
        let (i, shared) = f(&e1, "<shared/>", cr, Status::Processed, long_ago).await;
        let (j, _) = f(&e2, "<shared/>", cr, Status::Processed, recently).await;

        let hold = async |scope, target: &str, why| {
            let operator = Actor::Operator("t".into());
            add_hold(
                &ledger,
                &env.db,
                clock.as_ref(),
                operator,
                scope,
                target,
                why,
            )
            .await
        };
        let hold_c = hold(Scope::Submission, &c, "litigation 12/2026")
            .await
            .unwrap();
        let hold_e2 = hold(Scope::Employer, &e2, "audit of R-2").await.unwrap();
        // A hold needs a reason and a target that exists.
        for (scope, target, why) in [
            (Scope::Submission, c.as_str(), " "),
            (Scope::Submission, "no-such-filing", "x"),
            (Scope::Employer, "no-such-employer", "x"),
        ] {
            assert!(hold(scope, target, why).await.is_err());
        }

        let mut config = RetentionConfig::default();
        config.years.insert("pension-record-sheet".into(), 50);
        config.sweep_batch = 2; // several rounds
        config.validate().unwrap();
        let sweeper = Sweeper {
            db: env.db.clone(),
            ledger: ledger.clone(),
            clock: clock.clone(),
            config,
            persons: persons.clone(),
            chores: Vec::new(),
        };
        let swept = sweeper.sweep().await.unwrap();
        let mut expected = vec![a.clone(), i.clone()];
        expected.sort();
        let mut got = swept.purged_filings.clone();
        got.sort();
        assert_eq!(got, expected, "{swept:?}");
        assert_eq!(swept.held, 2);
        assert_eq!(swept.purged_originals, 2, "a's document and answer");
        assert_eq!(swept.shared_kept, 1, "i's bytes are j's too");
        for keep in [&b, &c, &d, &g, &h, &p, &j] {
            let purged: Option<DateTime<Utc>> = on_pool!(&env.db, pool => {
                sqlx::query_scalar("SELECT purged_at FROM submissions WHERE id = $1").bind(keep).fetch_one(pool).await.unwrap()
            });
            assert!(purged.is_none(), "{keep} was purged");
        }
        // a's payloads are gone from the store, marked in the index, and reading them
        // says so; the shared bytes and the held filing's are intact.
        let originals = ledger.originals();
        // The full `log verify` over the record as it stands.
        let verify_log = async || {
            verify::verify(
                &env.db,
                originals,
                &env.keys.checkpoint_verifier(),
                &verify::Silent,
            )
            .await
            .unwrap()
        };
        for sha in [&a_sha, &answer_sha] {
            assert!(purged_at(&env, sha).await.is_some());
            assert!(
                !originals
                    .contains(&Sha256Hex::parse(sha).unwrap())
                    .await
                    .unwrap()
            );
            let read = crate::compliance::Read {
                reader: Actor::System,
                subject: format!("submission:{a}"),
                route: "test",
                basis: None,
            };
            assert!(matches!(
                crate::compliance::read_original(&env.db, &ledger, sha, read).await,
                Err(Error::Gone(_))
            ));
        }
        for sha in [&shared, &c_sha] {
            assert!(purged_at(&env, sha).await.is_none());
            assert!(
                originals
                    .contains(&Sha256Hex::parse(sha).unwrap())
                    .await
                    .unwrap()
            );
        }
        // The person index no longer links anyone to a purged filing.
        let key = persons.key_of("7005151000");
        let named = persons::submissions_naming(&env.db, &key).await.unwrap();
        assert!(!named.contains(&a) && named.contains(&b), "{named:?}");
        // The purge is in the log, and the log still verifies, purges shown as such.
        let purge: (String, Option<String>) = on_pool!(&env.db, pool => {
            sqlx::query_as("SELECT actor, payload_sha256 FROM log_entries WHERE action = 'submission.purge' AND subject = $1")
                .bind(format!("submission:{a}"))
                .fetch_one(pool)
                .await
                .unwrap()
        });
        assert_eq!(purge.0, "system:ivan");
        let body = originals
            .get(&Sha256Hex::parse(&purge.1.unwrap()).unwrap())
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["purged"].as_array().unwrap().len(), 2, "{body}");
        let report = verify_log().await;
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.purged, 2);

        // purged_at is not chained: marking an original purged by hand (to hide its
        // deletion) does not pass, with no purge entry or with one that does not list it.
        let a_purge_seq: i64 = on_pool!(&env.db, pool => {
            sqlx::query_scalar("SELECT seq FROM log_entries WHERE action = 'submission.purge' AND subject = $1")
                .bind(format!("submission:{a}"))
                .fetch_one(pool)
                .await
                .unwrap()
        });
        for forged in [None, Some(a_purge_seq)] {
            on_pool!(&env.db, pool => {
                sqlx::query("UPDATE originals SET purged_at = $1, purge_seq = $2 WHERE sha256 = $3")
                    .bind(clock.now())
                    .bind(forged)
                    .bind(&c_sha)
                    .execute(pool)
                    .await
                    .unwrap();
            });
            let report = verify_log().await;
            assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
            assert!(
                report.problems[0].to_string().contains(c_sha.as_str()),
                "{}",
                report.problems[0]
            );
        }
        on_pool!(&env.db, pool => {
            sqlx::query("UPDATE originals SET purged_at = NULL, purge_seq = NULL WHERE sha256 = $1")
                .bind(&c_sha)
                .execute(pool)
                .await
                .unwrap();
        });

        // Sweeping again changes nothing; releasing the employer's hold lets d go.
        assert!(sweeper.sweep().await.unwrap().purged_filings.is_empty());
        let release = async |id: &str, why| {
            release_hold(&ledger, &env.db, clock.as_ref(), Actor::System, id, why).await
        };
        assert!(release(&hold_e2.id, "").await.is_err());
        release(&hold_e2.id, "audit closed").await.unwrap();
        let again = release(&hold_e2.id, "again").await;
        assert!(matches!(again, Err(Error::NotFound(_))), "{again:?}");
        let swept = sweeper.sweep().await.unwrap();
        assert_eq!(swept.purged_filings, vec![d.clone()]);
        assert_eq!(swept.held, 1, "c is still held");
        let active = holds(&env.db, true).await.unwrap();
        assert_eq!(
            active.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
            vec![hold_c.id.clone()]
        );
        assert_eq!(holds(&env.db, false).await.unwrap().len(), 2);
        // Ten more years: b (and j, and with it the shared bytes) expire too.
        clock.advance(chrono::Duration::days(2 * YEAR));
        let swept = sweeper.sweep().await.unwrap();
        let mut got = swept.purged_filings.clone();
        got.sort();
        let mut expected = vec![b.clone(), j.clone()];
        expected.sort();
        assert_eq!(got, expected);
        assert!(purged_at(&env, &shared).await.is_some());
        let report = verify_log().await;
        assert!(report.ok(), "{:?}", report.problems);
        task.shutdown().await;
    }

    #[test]
    fn config_refuses_less_than_ten_years_and_unknown_types() {
        assert!(RetentionConfig::default().validate().is_ok());
        let mut c = RetentionConfig {
            default_years: 9,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        c.default_years = 10;
        c.years.insert("contribution-report".into(), 5);
        assert!(c.validate().is_err());
        c.years.clear();
        c.years.insert("payslip".into(), 12);
        assert!(c.validate().is_err());
        c.years.clear();
        c.years.insert("pension-record-sheet".into(), 50);
        assert!(c.validate().is_ok());
        assert_eq!(c.years_for("pension-record-sheet"), 50);
        assert_eq!(c.years_for("contribution-report"), 10);
    }
}
