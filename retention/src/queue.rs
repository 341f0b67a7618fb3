//! Leased work queues in a table: the claim and the retry bookkeeping shared by the
//! mail outbox and the SMS outbox (one piece of code for the idea).
//!
//! A queue table has the columns `id`, `due_at`, `attempts`, `last_error`,
//! `lease_owner`, `lease_until` and a "done" column (e.g. `sent_at`) that is NULL while
//! the row still has work. A worker *claims* due rows by setting its owner and a lease
//! end in one statement (with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several
//! workers never take the same row); it then either finishes a row (its own statement,
//! usually in a log entry's transaction, guarded by `lease_owner`) or [`retry`]s it
//! later. A worker that dies leaves rows whose lease simply runs out.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use crate::{Db, Result, on_pool};

/// One queue table.
#[derive(Debug, Clone, Copy)]
pub struct Queue {
    /// The table name.
    pub table: &'static str,
    /// The column that is NULL while a row still has work.
    pub done_column: &'static str,
    /// The columns a claim returns (what the worker reads into its row type).
    pub columns: &'static str,
    /// Rows claimed at most at once.
    pub batch: i64,
}

/// Claims up to a batch of due rows (oldest due first) for `owner` until
/// `lease_until` and returns their columns, read as `R`.
pub async fn claim<R>(
    db: &Db,
    q: Queue,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<Vec<R>>
where
    R: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    let (table, done, columns) = (q.table, q.done_column, q.columns);
    let sql = format!(
        "UPDATE {table} SET lease_owner = $1, lease_until = $2 \
         WHERE id IN (SELECT id FROM {table} \
            WHERE {done} IS NULL AND due_at <= $3 AND (lease_until IS NULL OR lease_until < $3) \
            ORDER BY due_at LIMIT $4{}) \
         RETURNING {columns}",
        db.skip_locked()
    );
    Ok(on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(q.batch)
            .fetch_all(pool)
            .await?
    }))
}

/// Gives a claimed row back for another attempt at `due`, counting the attempt and
/// keeping `error` (cut to 1000 characters) for operators. Does nothing if `owner`
/// no longer holds the row.
pub async fn retry(
    db: &Db,
    q: Queue,
    id: &str,
    owner: &str,
    due: DateTime<Utc>,
    error: &str,
) -> Result<()> {
    let sql = format!(
        "UPDATE {} SET attempts = attempts + 1, due_at = $1, last_error = $2, \
         lease_owner = NULL, lease_until = NULL WHERE id = $3 AND lease_owner = $4",
        q.table
    );
    on_pool!(db, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(due)
            .bind(error.chars().take(1000).collect::<String>())
            .bind(id)
            .bind(owner)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// When a row that has failed `attempts` times is due again: after a full-jitter
/// [`backoff`] from `now` (answered too, for the log line).
pub fn next_due(
    now: DateTime<Utc>,
    attempts: i64,
    base: Duration,
    cap: Duration,
) -> (DateTime<Utc>, Duration) {
    let attempt = u32::try_from(attempts).unwrap_or(u32::MAX);
    let delay = backoff(attempt, base, cap, rand::random::<f64>());
    let wait = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    (
        now.checked_add_signed(wait)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
        delay,
    )
}

/// Full-jitter exponential backoff: a uniformly random delay in
/// `[0, min(cap, base · 2^attempt)]`, where `unit` is a random number in `[0, 1)`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let ceiling = base
        .checked_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// A queue worker's loop: runs `round` (which handles a batch and says how many rows
/// it claimed) again at once while there is work, after `idle` when there was none,
/// until `stopped` turns true. A failed round is logged and retried after `idle`.
pub async fn run_worker<F, Fut, E>(
    name: &str,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    idle: Duration,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<usize, E>>,
    E: std::fmt::Display,
{
    tracing::info!("{name} started");
    loop {
        if *stopped.borrow() {
            break;
        }
        let busy = match round().await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::error!(error = %e, "{name}: round failed");
                false
            }
        };
        if !busy {
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                r = stopped.changed() => if r.is_err() || *stopped.borrow() { break },
            }
        }
    }
    tracing::info!("{name} stopped");
}
