//! The outbox table's statements: claim with a lease, reschedule, and the work that
//! commits together with each forwarding log entry. Every statement that changes a
//! claimed row names the lease owner, so a worker that lost its lease changes nothing.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use retention::ledger::Work;
use retention::{Db, DbConn, on_conn, on_pool};

use super::{AnswerInfo, Status};
use crate::Error;

/// What a row is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// To be delivered to the authority.
    Deliver,
    /// Delivered; waiting for the authority's processing result.
    Poll,
}

impl Phase {
    fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "deliver" => Ok(Phase::Deliver),
            "poll" => Ok(Phase::Poll),
            other => Err(Error::Invalid(format!("unknown outbox phase {other:?}"))),
        }
    }
}

/// What the worker needs to know of a claimed row's submission.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Outgoing {
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub document_type: String,
    pub sha256: String,
    pub hold_until: DateTime<Utc>,
    pub authority_ref: Option<String>,
    /// The employer as the authority knows it.
    pub employer_registration: String,
}

/// A row this worker now holds the lease of.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub submission_id: String,
    pub phase: Phase,
    pub attempts: i64,
    pub submission: Outgoing,
}

impl Claimed {
    /// The row given back unattempted (a stop, or the authority went down before its
    /// turn): due at `now`, its attempts and last error as they were.
    pub fn give_back(self, now: DateTime<Utc>) -> Reschedule {
        Reschedule {
            submission_id: self.submission_id,
            attempts: self.attempts,
            due_at: now,
            last_error: None,
        }
    }
}

/// Leases up to `limit` due rows (due first) to `owner` until `lease_until`.
pub async fn claim(
    db: &Db,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Claimed>, Error> {
    let sql = format!(
        "UPDATE outbox SET lease_owner = $1, lease_until = $2 \
         WHERE submission_id IN (\
            SELECT submission_id FROM outbox \
            WHERE due_at <= $3 AND (lease_until IS NULL OR lease_until < $3) \
            ORDER BY due_at LIMIT $4{})",
        db.skip_locked()
    );
    let leased = on_pool!(db, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(i64::from(limit))
            .execute(pool)
            .await
            .map_err(retention::Error::from)?
            .rows_affected()
    });
    if leased == 0 {
        return Ok(Vec::new());
    }
    // The rows of this claim, with what delivery needs, in one query: this owner's
    // rows carrying exactly this lease.
    #[derive(sqlx::FromRow)]
    struct Row {
        submission_id: String,
        phase: String,
        attempts: i64,
        #[sqlx(flatten)]
        submission: Outgoing,
    }
    let rows: Vec<Row> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT o.submission_id, o.phase, o.attempts, \
                    s.status, s.document_type, s.sha256, s.hold_until, s.authority_ref, \
                    e.registration_number AS employer_registration \
             FROM outbox o JOIN submissions s ON s.id = o.submission_id \
             JOIN employers e ON e.id = s.employer_id \
             WHERE o.lease_owner = $1 AND o.lease_until = $2 ORDER BY o.due_at",
        )
        .bind(owner)
        .bind(lease_until)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    });
    rows.into_iter()
        .map(|r| {
            Ok(Claimed {
                phase: Phase::parse(&r.phase)?,
                submission_id: r.submission_id,
                attempts: r.attempts,
                submission: r.submission,
            })
        })
        .collect()
}

/// When the next unleased row falls due, if any.
pub async fn next_due(db: &Db) -> Result<Option<DateTime<Utc>>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT due_at FROM outbox WHERE lease_owner IS NULL ORDER BY due_at LIMIT 1",
        )
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    }))
}

/// A held row to give back, with its next attempt.
#[derive(Debug, Clone)]
pub struct Reschedule {
    pub submission_id: String,
    pub attempts: i64,
    pub due_at: DateTime<Utc>,
    /// Kept as the row's `last_error` (cut to 1,000 characters); `None` keeps the
    /// previous one.
    pub last_error: Option<String>,
}

/// Gives `owner`'s held rows back, each with its next attempt, in one transaction:
/// the failed attempts the worker collected cost one commit, and on SQLite one wait
/// for the write lock, not one each (issue 18: on SQLite each separate write queued
/// behind the log appender's transactions). A row whose lease this owner lost is
/// left alone.
pub async fn reschedule_all(db: &Db, owner: &str, rows: &[Reschedule]) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    on_pool!(db, pool => {
        let mut tx = pool.begin().await.map_err(retention::Error::from)?;
        for row in rows {
            let error = row.last_error.as_deref().map(|e| e.chars().take(1000).collect::<String>());
            sqlx::query(
                "UPDATE outbox SET attempts = $1, due_at = $2, last_error = COALESCE($3, last_error), \
                 lease_owner = NULL, lease_until = NULL \
                 WHERE submission_id = $4 AND lease_owner = $5",
            )
            .bind(row.attempts)
            .bind(row.due_at)
            .bind(error)
            .bind(&row.submission_id)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(retention::Error::from)?;
        }
        tx.commit().await.map_err(retention::Error::from)?;
    });
    Ok(())
}

/// Frees every lease. Only for a database no other worker can use (SQLite: one
/// `ivan serve` per file), where any lease left is a crashed run's.
pub async fn release_all_leases(db: &Db) -> Result<u64, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query(
            "UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL",
        )
        .execute(pool)
        .await
        .map_err(retention::Error::from)?
        .rows_affected()
    }))
}

/// After an outage: deliveries that were backing off become due now.
pub async fn release_held_back(db: &Db, now: DateTime<Utc>) -> Result<u64, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query(
            "UPDATE outbox SET due_at = $1 \
             WHERE phase = 'deliver' AND attempts > 0 AND due_at > $1 AND lease_owner IS NULL",
        )
        .bind(now)
        .execute(pool)
        .await
        .map_err(retention::Error::from)?
        .rows_affected()
    }))
}

/// A state change that commits with its log entry.
#[derive(Debug, Clone)]
pub enum Change {
    /// accepted → forwarding (only if still accepted: a cancel may have won).
    Forwarding,
    /// forwarding → delivered; the row waits for the processing result.
    Delivered {
        authority_ref: String,
        poll_at: chrono::Duration,
    },
    /// forwarding → refused_by_authority; the row is done.
    Refused,
}

fn conflict(why: &str) -> retention::Error {
    retention::Error::Conflict(why.into())
}

/// The work for `changes` on `submission_id`, held by `owner`, in order, each at
/// the time of its own entry (the entries are in the same order).
pub fn change_work(submission_id: String, owner: String, changes: Vec<Change>) -> Work {
    retention::work!(|conn, at| {
        if at.len() != changes.len() {
            return Err(retention::Error::Internal(
                "a transition needs one log entry per change".into(),
            ));
        }
        let held: i64 = on_conn!(&mut conn, c => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM outbox WHERE submission_id = $1 AND lease_owner = $2",
            )
            .bind(&submission_id)
            .bind(&owner)
            .fetch_one(&mut *c)
            .await?
        });
        if held != 1 {
            return Err(conflict("the outbox lease was lost"));
        }
        for (change, at) in changes.into_iter().zip(at.iter().map(|a| a.recorded_at)) {
            match change {
                Change::Forwarding => {
                    let n = on_conn!(&mut conn, c => {
                        sqlx::query(
                            "UPDATE submissions SET status = $1, updated_at = $2 \
                             WHERE id = $3 AND status = $4",
                        )
                        .bind(Status::Forwarding.as_str())
                        .bind(at)
                        .bind(&submission_id)
                        .bind(Status::Accepted.as_str())
                        .execute(&mut *c)
                        .await?
                        .rows_affected()
                    });
                    if n != 1 {
                        return Err(conflict("the submission is no longer accepted"));
                    }
                }
                Change::Delivered {
                    authority_ref,
                    poll_at,
                } => {
                    on_conn!(&mut conn, c => {
                        sqlx::query(
                            "UPDATE submissions SET status = $1, authority_ref = $2, \
                             delivered_at = $3, updated_at = $3 WHERE id = $4",
                        )
                        .bind(Status::Delivered.as_str())
                        .bind(&authority_ref)
                        .bind(at)
                        .bind(&submission_id)
                        .execute(&mut *c)
                        .await?;
                        sqlx::query(
                            "UPDATE outbox SET phase = 'poll', due_at = $1, attempts = 0, \
                             last_error = NULL, lease_owner = NULL, lease_until = NULL \
                             WHERE submission_id = $2",
                        )
                        .bind(at + poll_at)
                        .bind(&submission_id)
                        .execute(&mut *c)
                        .await?;
                    });
                }
                Change::Refused => {
                    on_conn!(&mut conn, c => {
                        sqlx::query(
                            "UPDATE submissions SET status = $1, updated_at = $2 WHERE id = $3",
                        )
                        .bind(Status::RefusedByAuthority.as_str())
                        .bind(at)
                        .bind(&submission_id)
                        .execute(&mut *c)
                        .await?;
                        sqlx::query("DELETE FROM outbox WHERE submission_id = $1")
                            .bind(&submission_id)
                            .execute(&mut *c)
                            .await?;
                    });
                }
            }
        }
        Ok(())
    })
}

/// One answer document about to be recorded.
#[derive(Debug, Clone)]
pub struct Answer {
    pub n: i64,
    pub name: String,
    pub media_type: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub bytes: Bytes,
}

/// The work committing the authority's final answer: one `answers` row per document
/// (their log entries come first, in order), the final status, the row deleted.
pub fn finish_work(
    submission_id: String,
    owner: String,
    final_status: Status,
    documents: Vec<Answer>,
) -> Work {
    retention::work!(|conn, at| {
        let last = at.last().ok_or_else(|| conflict("no log position"))?;
        let deleted = on_conn!(&mut conn, c => {
            sqlx::query("DELETE FROM outbox WHERE submission_id = $1 AND lease_owner = $2")
                .bind(&submission_id)
                .bind(&owner)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        if deleted != 1 {
            return Err(conflict("the outbox lease was lost"));
        }
        for (doc, entry) in documents.iter().zip(at.iter()) {
            on_conn!(&mut conn, c => {
                sqlx::query(
                    "INSERT INTO answers (submission_id, n, name, media_type, sha256, \
                     size_bytes, log_seq, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&submission_id)
                .bind(doc.n)
                .bind(&doc.name)
                .bind(&doc.media_type)
                .bind(&doc.sha256)
                .bind(doc.size_bytes)
                .bind(entry.seq)
                .bind(entry.recorded_at)
                .execute(&mut *c)
                .await?;
            });
        }
        on_conn!(&mut conn, c => {
            sqlx::query("UPDATE submissions SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(final_status.as_str())
                .bind(last.recorded_at)
                .bind(&submission_id)
                .execute(&mut *c)
                .await?;
        });
        crate::mail::enqueue(
            &mut conn,
            crate::mail::Kind::Answer,
            crate::mail::To::Employer,
            &submission_id,
            &|lang: crate::i18n::Lang| {
                let state = lang.label("state", final_status.as_str());
                let count = documents.len();
                lang.t_with("mail-answer", &[("state", &state), ("count", &count)])
            },
            last.recorded_at,
        )
        .await?;
        Ok(())
    })
}

/// Deliveries past their `forward_by` time at `now`, not yet flagged overdue.
pub async fn newly_overdue(db: &Db, now: DateTime<Utc>, limit: i64) -> Result<Vec<String>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT o.submission_id FROM outbox o JOIN submissions s ON s.id = o.submission_id \
             WHERE o.phase = 'deliver' AND o.overdue_at IS NULL AND s.forward_by < $1 \
             ORDER BY s.forward_by LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    }))
}

/// Flags one row overdue, once (a second flag is a conflict, so it is logged once),
/// and queues mail to the employer and, if given, the operator.
pub fn flag_overdue_work(submission_id: String, operator: Option<String>) -> Work {
    retention::work!(|conn, at| {
        let at = at.recorded_at();
        let n = on_conn!(&mut conn, c => {
            sqlx::query(
                "UPDATE outbox SET overdue_at = $1 \
                 WHERE submission_id = $2 AND overdue_at IS NULL AND phase = 'deliver'",
            )
            .bind(at)
            .bind(&submission_id)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        if n != 1 {
            return Err(conflict("already flagged or delivered"));
        }
        let detail = |lang: crate::i18n::Lang| lang.t("mail-overdue");
        crate::mail::enqueue(
            &mut conn,
            crate::mail::Kind::Overdue,
            crate::mail::To::Employer,
            &submission_id,
            &detail,
            at,
        )
        .await?;
        if let Some(operator) = &operator {
            crate::mail::enqueue(
                &mut conn,
                crate::mail::Kind::Overdue,
                crate::mail::To::Address(operator),
                &submission_id,
                &detail,
                at,
            )
            .await?;
        }
        Ok(())
    })
}

/// The outbox's figures for the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    pub deliver: i64,
    pub poll: i64,
    pub overdue: i64,
    /// How long the oldest undelivered filing has been waiting since its hold window ended.
    pub oldest_pending_secs: f64,
}

pub async fn gauges(db: &Db, now: DateTime<Utc>) -> Result<Gauges, Error> {
    let (deliver, poll, overdue): (i64, i64, i64) = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT \
               COALESCE(SUM(CASE WHEN phase = 'deliver' THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN phase = 'poll' THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN overdue_at IS NOT NULL AND phase = 'deliver' THEN 1 ELSE 0 END), 0) \
             FROM outbox",
        )
        .fetch_one(pool)
        .await
        .map_err(retention::Error::from)?
    });
    let oldest: Option<DateTime<Utc>> = on_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT s.hold_until FROM outbox o JOIN submissions s ON s.id = o.submission_id \
             WHERE o.phase = 'deliver' AND s.hold_until <= $1 ORDER BY s.hold_until LIMIT 1",
        )
        .bind(now)
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    });
    Ok(Gauges {
        deliver,
        poll,
        overdue,
        oldest_pending_secs: oldest
            .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
    })
}

/// The queue row written when a submission is accepted (called from its work).
pub async fn enqueue(
    conn: &mut DbConn<'_>,
    submission_id: &str,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), retention::Error> {
    enqueue_many(conn, &[(submission_id, due_at, now)]).await
}

/// [`enqueue`] for many submissions (id, due, now), in a few multi-row statements.
pub async fn enqueue_many(
    conn: &mut DbConn<'_>,
    rows: &[(&str, DateTime<Utc>, DateTime<Utc>)],
) -> Result<(), retention::Error> {
    on_conn!(conn, c => {
        for chunk in rows.chunks(1000) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO outbox (submission_id, phase, due_at, attempts, created_at) ",
            );
            insert.push_values(chunk, |mut row, (id, due_at, now)| {
                row.push_bind(*id)
                    .push("'deliver'")
                    .push_bind(*due_at)
                    .push("0")
                    .push_bind(*now);
            });
            insert.build().execute(&mut *c).await?;
        }
    });
    Ok(())
}

/// Drops the queue row of a cancelled submission (called from the cancel's work).
/// A row a worker holds a lease on at `now` is being delivered: the cancel is then
/// refused (a first attempt records `submission.forward` only once the authority
/// answered, so this, not the status, is what keeps a filing being sent from being
/// cancelled).
pub async fn dequeue(
    conn: &mut DbConn<'_>,
    submission_id: &str,
    now: DateTime<Utc>,
) -> Result<(), retention::Error> {
    let deleted = on_conn!(conn, c => {
        sqlx::query(
            "DELETE FROM outbox WHERE submission_id = $1 AND phase = 'deliver' \
             AND (lease_until IS NULL OR lease_until < $2)",
        )
        .bind(submission_id)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if deleted != 1 {
        return Err(conflict("the submission is being forwarded"));
    }
    Ok(())
}

pub(crate) async fn answers(db: &Db, submission_id: &str) -> Result<Vec<AnswerInfo>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT n, name, media_type, sha256, size_bytes, received_at, log_seq \
             FROM answers WHERE submission_id = $1 ORDER BY n",
        )
        .bind(submission_id)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    }))
}

/// One row of `ivan admin outbox list`.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Row {
    pub submission_id: String,
    pub document_number: String,
    pub phase: String,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub due_at: DateTime<Utc>,
    pub attempts: i64,
    pub lease_owner: Option<String>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "retention::ledger::serialize_opt_time")]
    pub overdue_at: Option<DateTime<Utc>>,
}

/// The employer's filings whose forwarding is overdue, longest first, at most
/// `limit`: `(submission id, document number, overdue since)`.
pub async fn overdue_of(
    db: &Db,
    employer_id: &str,
    limit: i64,
) -> Result<Vec<(String, String, DateTime<Utc>)>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT s.id, s.document_number, o.overdue_at FROM outbox o \
             JOIN submissions s ON s.id = o.submission_id \
             WHERE s.employer_id = $1 AND o.overdue_at IS NOT NULL ORDER BY o.overdue_at LIMIT $2",
        )
        .bind(employer_id)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    }))
}

/// The whole queue, due first (for operators).
pub async fn list(db: &Db, limit: i64) -> Result<Vec<Row>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT o.submission_id, s.document_number, o.phase, o.due_at, o.attempts, \
                    o.lease_owner, o.last_error, o.overdue_at \
             FROM outbox o JOIN submissions s ON s.id = o.submission_id \
             ORDER BY o.due_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    }))
}
