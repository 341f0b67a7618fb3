//! Legal holds: `ivan admin hold add` (a reason required, logged as `hold.add`) on a
//! filing or on all of an employer's filings keeps them while it is active;
//! releasing it (`hold.release`, a reason required) lets the [`super::sweeper`]
//! purge what has expired in the meantime.
//!
//! On an originals bucket with Object Lock the record's holds are also the
//! storage's: after each change, every original of the filings the hold covers gets
//! an S3 legal hold while any active hold covers a filing that names it, and loses
//! it otherwise ([`apply_to_storage`]). Should the bucket fail meanwhile, the hold is
//! recorded (and keeps the filings from the purge) and the command says so;
//! `ivan admin hold sync` applies every hold again.

use chrono::{DateTime, Utc};
use retention::ledger::{NewEntry, Work};
use retention::{Actor, Clock, Db, Ledger, Originals, Payload, Sha256Hex, on_conn, on_pool};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Longest accepted hold reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// What a hold covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One filing (target: its message id).
    Submission,
    /// All of an employer's filings (target: the employer id).
    Employer,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Submission => "submission",
            Scope::Employer => "employer",
        }
    }
}

/// A legal hold.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Hold {
    pub id: String,
    pub scope: String,
    pub target: String,
    pub reason: String,
    pub created_by: String,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "retention::ledger::serialize_opt_time")]
    pub released_at: Option<DateTime<Utc>>,
    pub released_by: Option<String>,
    pub release_reason: Option<String>,
}

const HOLD_COLUMNS: &str = "id, scope, target, reason, created_by, created_at, released_at, \
     released_by, release_reason";

fn reason(r: &str) -> Result<String, Error> {
    let r = r.trim();
    if r.is_empty() || r.chars().count() > MAX_REASON_CHARS || r.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "a reason is required: 1 to {MAX_REASON_CHARS} characters without control characters"
        )));
    }
    Ok(r.to_owned())
}

/// Puts a hold on a filing or an employer's filings; logged as `hold.add` (subject
/// the filing or the employer) in the same transaction.
pub async fn add_hold(
    ledger: &Ledger,
    db: &Db,
    clock: &dyn Clock,
    actor: Actor,
    scope: Scope,
    target: &str,
    why: &str,
) -> Result<Hold, Error> {
    let why = reason(why)?;
    let table = match scope {
        Scope::Submission => "SELECT id FROM submissions WHERE id = $1",
        Scope::Employer => "SELECT id FROM employers WHERE id = $1",
    };
    let exists: Option<String> = on_pool!(db, pool => {
        sqlx::query_scalar(table)
            .bind(target)
            .fetch_optional(pool)
            .await
            .map_err(retention::Error::from)?
    });
    if exists.is_none() {
        return Err(Error::NotFound(format!("no {} {target}", scope.as_str())));
    }
    let hold = Hold {
        id: uuid::Uuid::now_v7().to_string(),
        scope: scope.as_str().to_owned(),
        target: target.to_owned(),
        reason: why,
        created_by: actor.to_string(),
        created_at: clock.now(),
        released_at: None,
        released_by: None,
        release_reason: None,
    };
    let row = hold.clone();
    let work: Work = retention::work!(|conn, _at| {
        on_conn!(&mut conn, c => {
            sqlx::query(
                "INSERT INTO legal_holds (id, scope, target, reason, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&row.id)
            .bind(&row.scope)
            .bind(&row.target)
            .bind(&row.reason)
            .bind(&row.created_by)
            .bind(row.created_at)
            .execute(&mut *c)
            .await?;
        });
        Ok(())
    });
    ledger
        .append_with(
            NewEntry {
                actor,
                action: "hold.add".into(),
                subject: format!("{}:{target}", scope.as_str()),
                payload: Some(Payload::json(&serde_json::json!({
                    "hold": hold.id,
                    "scope": hold.scope,
                    "target": hold.target,
                    "reason": hold.reason,
                }))),
            },
            work,
        )
        .await?;
    applied(ledger, db, &hold).await?;
    Ok(hold)
}

/// Releases an active hold; logged as `hold.release`. `NotFound` when there is no
/// such active hold.
pub async fn release_hold(
    ledger: &Ledger,
    db: &Db,
    clock: &dyn Clock,
    actor: Actor,
    id: &str,
    why: &str,
) -> Result<Hold, Error> {
    let why = reason(why)?;
    let Some(hold) = holds(db, false)
        .await?
        .into_iter()
        .find(|h| h.id == id && h.released_at.is_none())
    else {
        return Err(Error::NotFound(format!("no active legal hold {id}")));
    };
    let now = clock.now();
    let (hid, by, r) = (hold.id.clone(), actor.to_string(), why.clone());
    let work: Work = retention::work!(|conn, _at| {
        let n = on_conn!(&mut conn, c => {
            sqlx::query(
                "UPDATE legal_holds SET released_at = $1, released_by = $2, release_reason = $3 \
                 WHERE id = $4 AND released_at IS NULL",
            )
            .bind(now)
            .bind(&by)
            .bind(&r)
            .bind(&hid)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(retention::Error::Conflict(format!(
                "legal hold {hid} was released meanwhile"
            )));
        }
        Ok(())
    });
    ledger
        .append_with(
            NewEntry {
                actor: actor.clone(),
                action: "hold.release".into(),
                subject: format!("{}:{}", hold.scope, hold.target),
                payload: Some(Payload::json(&serde_json::json!({
                    "hold": hold.id,
                    "reason": why,
                }))),
            },
            work,
        )
        .await?;
    let released = Hold {
        released_at: Some(now),
        released_by: Some(actor.to_string()),
        release_reason: Some(why),
        ..hold
    };
    applied(ledger, db, &released).await?;
    Ok(released)
}

/// [`apply_to_storage`] after `hold` was recorded: a failure says the record
/// already holds it and how to apply it again.
async fn applied(ledger: &Ledger, db: &Db, hold: &Hold) -> Result<(), Error> {
    match apply_to_storage(db, ledger.originals(), hold).await {
        Ok(n) => {
            if n > 0 {
                tracing::info!(hold = %hold.id, originals = n, "storage legal holds applied");
            }
            Ok(())
        }
        Err(e) => Err(Error::Unavailable(format!(
            "the change to legal hold {} is recorded (the record's holds are what keeps \
             filings from the purge), but the originals bucket's legal holds were not \
             updated: {e}. Run `ivan admin hold sync` once the bucket answers",
            hold.id
        ))),
    }
}

/// On an originals bucket with Object Lock, makes the S3 legal hold of every
/// original of the filings `hold` covers match the record: on while an active hold
/// covers any filing whose log names it, off otherwise. Answers how many originals
/// it set (none without Object Lock).
pub async fn apply_to_storage(db: &Db, originals: &Originals, hold: &Hold) -> Result<u64, Error> {
    if !originals.is_worm().await? {
        return Ok(0);
    }
    let shas: Vec<String> = on_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT DISTINCT e.payload_sha256 FROM log_entries e \
             JOIN submissions s ON e.subject = 'submission:' || s.id \
             JOIN originals o ON o.sha256 = e.payload_sha256 \
             WHERE o.purged_at IS NULL \
             AND (($1 = 'submission' AND s.id = $2) OR ($1 = 'employer' AND s.employer_id = $2)) \
             ORDER BY e.payload_sha256",
        )
        .bind(&hold.scope)
        .bind(&hold.target)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    });
    let mut set = 0;
    for sha in shas {
        let Some(hash) = Sha256Hex::parse(&sha) else {
            continue;
        };
        let holding: i64 = on_pool!(db, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM log_entries e \
                 JOIN submissions s ON e.subject = 'submission:' || s.id \
                 JOIN legal_holds h ON h.released_at IS NULL AND \
                 ((h.scope = 'submission' AND h.target = s.id) \
                  OR (h.scope = 'employer' AND h.target = s.employer_id)) \
                 WHERE e.payload_sha256 = $1",
            )
            .bind(&sha)
            .fetch_one(pool)
            .await
            .map_err(retention::Error::from)?
        });
        originals.set_legal_hold(&hash, holding > 0).await?;
        set += 1;
    }
    Ok(set)
}

/// Legal holds, oldest first (only active ones if `active_only`).
pub async fn holds(db: &Db, active_only: bool) -> Result<Vec<Hold>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as::<_, Hold>(sqlx::AssertSqlSafe(format!(
            "SELECT {HOLD_COLUMNS} FROM legal_holds WHERE ($1 = 0 OR released_at IS NULL) ORDER BY id"
        )))
        .bind(i64::from(active_only))
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    }))
}
