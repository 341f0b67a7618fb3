//! Limits on PIN guessing, per phone number (issue 17, item 11). Owns the tables
//! `phone_login_throttle` and `unknown_phone_failures`.
//!
//! * **Delay.** The first `pin_failures_before_delay` wrong PINs in a row for a phone
//!   (from any source) are answered at once; after that each further attempt must
//!   wait `pin_delay_base_secs · 2^(n − pin_failures_before_delay)` (at most
//!   `pin_delay_cap_secs`). An attempt made earlier is answered `429` with
//!   `Retry-After`, with no PIN check, no log entry, and it does not count as a wrong
//!   PIN. So an anonymous guesser slows the phone down but cannot lock it cheaply.
//!   While an attempt under delay is being checked, the phone is held for
//!   [`IN_FLIGHT_SECS`], so concurrent attempts cannot all slip through at once.
//! * **Hard lock.** `lock_after_failures` wrong PINs within `lock_window_secs`
//!   (sustained abuse) lock the phone's accesses ([`crate::access`] records it and
//!   alerts the employer).
//! * **Unknown phones.** Refused logins for a phone nobody authorised are counted per
//!   phone and hour in the database, not logged one by one; [`sweep`] turns each
//!   finished hour into one `phone.login-fail-unknown` entry with the count. Counts
//!   are durable as they happen, so a shutdown loses nothing: the first sweep after the
//!   hour ends (after a restart, if need be) logs them.
//!
//! The same rules apply to known and unknown phone numbers, so the answers do not tell
//! them apart. Per-source limits are in [`crate::http::SourceLimiter`].

use chrono::{DateTime, Duration, Utc};
use retention::ledger::{NewEntry, Work};
use retention::{Actor, Db, DbConn, Ledger, Payload, on_conn, on_pool};

use crate::{Error, MobileConfig};

/// How long an attempt under delay holds its phone while its PIN is checked (it sets
/// the real delay, or clears it, when done; a crash meanwhile leaves this wait).
pub const IN_FLIGHT_SECS: i64 = 60;

#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    failures: i64,
    next_attempt_at: Option<DateTime<Utc>>,
}

fn secs(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1_000_000))
}

/// The delay after `failures` wrong PINs in a row, if any.
pub fn delay_after(config: &MobileConfig, failures: i64) -> Option<Duration> {
    let free = i64::from(config.pin_failures_before_delay);
    if failures < free {
        return None;
    }
    let doublings = u32::try_from(failures - free).unwrap_or(u32::MAX).min(40);
    let d = config
        .pin_delay_base_secs
        .saturating_mul(1u64 << doublings)
        .min(config.pin_delay_cap_secs);
    Some(secs(d))
}

fn too_early(until: DateTime<Utc>, now: DateTime<Utc>) -> Error {
    metrics::counter!("ivan_mobile_logins_total", "outcome" => "delayed").increment(1);
    // Whole seconds, rounded up: a client that waits as told is not early.
    let ms = u64::try_from((until - now).num_milliseconds()).unwrap_or(0);
    Error::TooManyRequests {
        retry_after: std::time::Duration::from_secs(ms.div_ceil(1000).max(1)),
    }
}

/// Whether an attempt for `phone` may be checked now; `TooManyRequests` with the wait
/// if it comes before the phone's delay has passed. Under delay, the phone is held
/// for [`IN_FLIGHT_SECS`] until [`failed`] or [`succeeded`] settles it.
pub async fn admit(
    db: &Db,
    config: &MobileConfig,
    phone: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let row: Option<Row> = on_pool!(db, pool => {
        sqlx::query_as("SELECT failures, next_attempt_at FROM phone_login_throttle WHERE phone = $1")
            .bind(phone)
            .fetch_optional(pool)
            .await?
    });
    let Some(row) = row else { return Ok(()) };
    if let Some(until) = row.next_attempt_at
        && until > now
    {
        return Err(too_early(until, now));
    }
    if delay_after(config, row.failures).is_none() {
        return Ok(());
    }
    // Under delay: claim the attempt, so only one of concurrent attempts is checked.
    let claimed = on_pool!(db, pool => {
        sqlx::query(
            "UPDATE phone_login_throttle SET next_attempt_at = $1 \
             WHERE phone = $2 AND (next_attempt_at IS NULL OR next_attempt_at <= $3)",
        )
        .bind(now + Duration::seconds(IN_FLIGHT_SECS))
        .bind(phone)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected()
    });
    if claimed == 1 {
        Ok(())
    } else {
        Err(too_early(now + Duration::seconds(1), now))
    }
}

/// What a wrong PIN for a phone led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// Wrong PINs in a row.
    pub failures: i64,
    /// Wrong PINs in the current sustained-abuse window.
    pub window_failures: i64,
    /// The window reached `lock_after_failures`: lock the phone's accesses.
    pub lock: bool,
}

/// Counts a wrong PIN (or an unknown phone) for `phone` and sets its next delay.
pub async fn failed(
    db: &Db,
    config: &MobileConfig,
    phone: &str,
    now: DateTime<Utc>,
) -> Result<Failed, Error> {
    let cutoff = now - secs(config.lock_window_secs);
    // One atomic upsert counts it, so concurrent wrong PINs are all counted.
    let (failures, window_failures): (i64, i64) = on_pool!(db, pool => {
        sqlx::query_as(
            "INSERT INTO phone_login_throttle AS t (phone, failures, next_attempt_at, window_start, window_failures, last_failure_at) \
             VALUES ($1, 1, NULL, $2, 1, $2) ON CONFLICT (phone) DO UPDATE SET failures = t.failures + 1, \
             window_failures = CASE WHEN t.window_start > $3 THEN t.window_failures + 1 ELSE 1 END, \
             window_start = CASE WHEN t.window_start > $3 THEN t.window_start ELSE $2 END, \
             last_failure_at = $2 RETURNING failures, window_failures",
        )
        .bind(phone)
        .bind(now)
        .bind(cutoff)
        .fetch_one(pool)
        .await?
    });
    let next = delay_after(config, failures).map(|d| now + d);
    on_pool!(db, pool => {
        sqlx::query("UPDATE phone_login_throttle SET next_attempt_at = $1 WHERE phone = $2")
            .bind(next)
            .bind(phone)
            .execute(pool)
            .await?;
    });
    Ok(Failed {
        failures,
        window_failures,
        lock: window_failures >= i64::from(config.lock_after_failures),
    })
}

/// The right PIN: the phone's delay ends (the sustained-abuse window is kept).
pub async fn succeeded(db: &Db, phone: &str) -> Result<(), Error> {
    on_pool!(db, pool => {
        sqlx::query("UPDATE phone_login_throttle SET failures = 0, next_attempt_at = NULL WHERE phone = $1")
            .bind(phone)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Forgets a phone's failures (inside the transaction of a new PIN: the old PIN is
/// gone, and so is the reason to delay or lock).
pub async fn reset(conn: &mut DbConn<'_>, phone: &str) -> Result<(), retention::Error> {
    on_conn!(conn, c => {
        sqlx::query("DELETE FROM phone_login_throttle WHERE phone = $1")
            .bind(phone)
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

/// The hour a refused login for an unknown phone is counted in.
pub fn hour_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H").to_string()
}

/// Counts a refused login for a phone nobody authorised (`phone` is `invalid` for a
/// malformed number) in its hour, instead of a log entry per attempt.
pub async fn count_unknown(
    db: &Db,
    phone: &str,
    source: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    metrics::counter!("ivan_mobile_unknown_phone_logins_total").increment(1);
    on_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO unknown_phone_failures (phone, hour, attempts, last_source) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (phone, hour) DO UPDATE SET attempts = unknown_phone_failures.attempts + 1, \
             last_source = excluded.last_source",
        )
        .bind(phone)
        .bind(hour_of(now))
        .bind(source)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Logs each finished hour of unknown-phone failures as one `phone.login-fail-unknown`
/// entry `{hour, attempts, last_source}` (subject `phone:<number>`) and deletes its
/// row in the same transaction; forgets per-phone delays idle for longer than the
/// lock window. Returns how many entries were written.
pub async fn sweep(
    ledger: &Ledger,
    db: &Db,
    config: &MobileConfig,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    let current = hour_of(now);
    let rows: Vec<(String, String, i64, String)> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT phone, hour, attempts, last_source FROM unknown_phone_failures WHERE hour < $1 \
             ORDER BY hour, phone LIMIT 1000",
        )
        .bind(&current)
        .fetch_all(pool)
        .await?
    });
    let mut logged = 0;
    for (phone, hour, attempts, last_source) in rows {
        let (p, h) = (phone.clone(), hour.clone());
        let work: Work = retention::work!(|conn, _at| {
            let gone = on_conn!(&mut conn, c => {
                sqlx::query("DELETE FROM unknown_phone_failures WHERE phone = $1 AND hour = $2 AND attempts = $3")
                    .bind(&p)
                    .bind(&h)
                    .bind(attempts)
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
            });
            if gone == 1 {
                Ok(())
            } else {
                // Logged meanwhile, or still counting: the next sweep sees it.
                Err(retention::Error::Conflict("counted meanwhile".into()))
            }
        });
        let payload =
            serde_json::json!({ "hour": hour, "attempts": attempts, "last_source": last_source });
        let entry = NewEntry {
            actor: Actor::System,
            action: "phone.login-fail-unknown".into(),
            subject: format!("phone:{phone}"),
            payload: Some(Payload::json(&payload)),
        };
        if ledger.append_once(entry, work).await? {
            logged += 1;
        }
    }
    let idle = now - secs(config.lock_window_secs) - secs(config.pin_delay_cap_secs);
    on_pool!(db, pool => {
        sqlx::query("DELETE FROM phone_login_throttle WHERE last_failure_at < $1")
            .bind(idle)
            .execute(pool)
            .await?;
    });
    Ok(logged)
}
