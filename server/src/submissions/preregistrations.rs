//! The pre-registration rows of the submission aggregate: a phone filing is a
//! submission (same id) with a `preregistrations` row; a registration form's
//! registrations are noted in `registration_items` for pairing; `prereg_digests`
//! remembers which employer had which day's overdue list. This module owns those
//! three tables, the pairing and the deadline transitions.
//!
//! Pairing matches employer, person id and kind, with effective dates at most
//! `pairing_tolerance_days` apart, against the registration items noted in the
//! transaction that accepts a registration form ([`note_registrations`]); it runs
//! right after each acceptance and on every sweep, so a crash in between only delays
//! it. Each change is a log entry: `preregistration.pair`, `preregistration.unpair`,
//! `preregistration.overdue`, `preregistration.remind`. The states and the view are
//! the mobile channel's vocabulary ([`mobile_api::prereg`]).

use std::collections::HashSet;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use mobile_api::prereg::{Checked, Filter, Kind, Page, Preregistration, State};
use mobile_api::{MobileConfig, sms};
use retention::ledger::{NewEntry, Work};
use retention::{Actor, Db, DbConn, Ledger, Payload, on_conn, on_pool};

use super::Status;
use crate::documents::RegistrationItem;
use crate::{Error, Result};

/// A registration form that no longer counts for pairing: cancelled by the employer,
/// or refused or rejected by the authority.
const WITHDRAWN: [Status; 3] = [
    Status::Cancelled,
    Status::RefusedByAuthority,
    Status::Rejected,
];

/// [`WITHDRAWN`] as an SQL list. States are written into statements by their names
/// (from the enums, never from input), so each statement reads as what it does.
fn withdrawn() -> String {
    WITHDRAWN.map(|s| format!("'{s}'")).join(", ")
}

const VIEW: &str = "SELECT p.id, p.employer_id, p.phone_access_id, s.document_number, p.person_id, \
    p.surname, p.given_name, p.birth_date, p.kind, p.effective_date, p.state, \
    s.status AS forwarding_status, p.received_at, p.deadline_at, p.paired_with, p.paired_at, s.receipt \
    FROM preregistrations p JOIN submissions s ON s.id = p.id";

/// A pre-registration row to store.
#[derive(Debug, Clone, Copy)]
pub struct NewRow<'a> {
    pub id: &'a str,
    pub employer_id: &'a str,
    pub phone_access_id: &'a str,
    pub checked: &'a Checked,
    pub received_at: DateTime<Utc>,
    /// The registration form is due this long after `received_at`.
    pub deadline: Duration,
}

/// Rows per multi-row statement (12 bound values each): inside both backends'
/// limits on bound parameters.
const INSERT_ROWS: usize = 1000;

/// Stores pre-registration rows (inside the transaction that records their
/// filings), a multi-row statement per thousand: the log appender writes a batch's
/// filings together.
pub async fn insert(conn: &mut DbConn<'_>, rows: &[NewRow<'_>]) -> Result<(), retention::Error> {
    on_conn!(conn, c => {
        for chunk in rows.chunks(INSERT_ROWS) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO preregistrations (id, employer_id, phone_access_id, person_id, surname, \
                 given_name, birth_date, kind, effective_date, received_at, deadline_at, state) ",
            );
            insert.push_values(chunk, |mut row, r| {
                let p = r.checked;
                row.push_bind(r.id)
                    .push_bind(r.employer_id)
                    .push_bind(r.phone_access_id)
                    .push_bind(&p.person_id)
                    .push_bind(&p.surname)
                    .push_bind(&p.given_name)
                    .push_bind(p.birth_date.to_string())
                    .push_bind(p.kind.as_str())
                    .push_bind(p.effective_date.to_string())
                    .push_bind(r.received_at)
                    .push_bind(r.received_at + r.deadline)
                    .push_bind(State::Received.as_str());
            });
            insert.build().execute(&mut *c).await?;
        }
    });
    Ok(())
}

/// Notes the registrations of accepted registration forms — `(submission id,
/// employer id, its items)` — inside the transaction that accepts them, for
/// pairing; multi-row statements, as [`insert`].
pub async fn note_registrations(
    conn: &mut DbConn<'_>,
    forms: &[(&str, &str, &[RegistrationItem])],
) -> Result<(), retention::Error> {
    let rows: Vec<(&str, i64, &str, &RegistrationItem)> = forms
        .iter()
        .flat_map(|(submission_id, employer_id, items)| {
            items.iter().enumerate().map(move |(n, item)| {
                let n = i64::try_from(n + 1).unwrap_or(i64::MAX);
                (*submission_id, n, *employer_id, item)
            })
        })
        .collect();
    on_conn!(conn, c => {
        for chunk in rows.chunks(INSERT_ROWS) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO registration_items (submission_id, n, employer_id, person_id, kind, effective_date) ",
            );
            insert.push_values(chunk, |mut row, (submission_id, n, employer_id, item)| {
                row.push_bind(*submission_id)
                    .push_bind(*n)
                    .push_bind(*employer_id)
                    .push_bind(&item.person_id)
                    .push_bind(&item.kind)
                    .push_bind(item.effective_date.map(|d| d.to_string()));
            });
            insert.build().execute(&mut *c).await?;
        }
    });
    Ok(())
}

/// Erases the personal data of submission `id` kept beside it — its registration
/// items, a pre-registration's person — when its retention period ends (in the
/// transaction of its `submission.purge` entry).
pub async fn erase(conn: &mut DbConn<'_>, id: &str) -> Result<(), retention::Error> {
    on_conn!(conn, c => {
        sqlx::query("DELETE FROM registration_items WHERE submission_id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?;
        sqlx::query(
            "UPDATE preregistrations SET person_id = '', surname = '', given_name = '', \
             birth_date = '' WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// The employer's pre-registrations, oldest first.
pub async fn list(db: &Db, employer_id: &str, f: &Filter) -> Result<Vec<Preregistration>> {
    let sql = format!(
        "{VIEW} WHERE p.employer_id = $1 AND ($2 IS NULL OR p.state = $2) AND ($3 IS NULL OR p.id > $3) \
         AND ($5 IS NULL OR p.phone_access_id = $5) ORDER BY p.id LIMIT $4"
    );
    Ok(on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(employer_id)
            .bind(f.state.map(State::as_str))
            .bind(&f.after)
            .bind(f.limit)
            .bind(&f.phone_access_id)
            .fetch_all(pool)
            .await?
    }))
}

/// One page of the employer's pre-registrations (at most `f.limit`) and the id to
/// continue after, if there are more.
pub async fn page(db: &Db, employer_id: &str, f: &Filter) -> Result<Page> {
    let mut items = list(
        db,
        employer_id,
        &Filter {
            limit: f.limit + 1,
            ..f.clone()
        },
    )
    .await?;
    let next_after = retention::db::next_page(&mut items, f.limit, |p| p.id.clone());
    Ok((items, next_after))
}

/// The employer's pre-registration `id` (another employer's is `NotFound`).
pub async fn get(db: &Db, employer_id: &str, id: &str) -> Result<Preregistration> {
    let sql = format!("{VIEW} WHERE p.employer_id = $1 AND p.id = $2");
    let found: Option<Preregistration> = on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(employer_id)
            .bind(id)
            .fetch_optional(pool)
            .await?
    });
    found.ok_or_else(|| Error::NotFound(format!("no pre-registration {id}")))
}

/// The employer's unpaired pre-registrations due before `before`, soonest first, at
/// most `limit`: what its dashboard warns about.
pub async fn due_before(
    db: &Db,
    employer_id: &str,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Preregistration>> {
    let sql = format!(
        "{VIEW} WHERE p.employer_id = $1 AND p.state <> $2 AND p.deadline_at < $3 ORDER BY p.deadline_at LIMIT $4"
    );
    Ok(on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(employer_id)
            .bind(State::Paired.as_str())
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await?
    }))
}

/// The ids of the employer's pre-registrations paired with registration form `form_id`.
pub async fn paired_with(db: &Db, employer_id: &str, form_id: &str) -> Result<Vec<String>> {
    Ok(on_pool!(db, pool => {
        sqlx::query_scalar("SELECT id FROM preregistrations WHERE employer_id = $1 AND paired_with = $2 ORDER BY id")
            .bind(employer_id)
            .bind(form_id)
            .fetch_all(pool)
            .await?
    }))
}

/// The pre-registration an access filed with this idempotency key, if any.
pub async fn find_by_idempotency_key(
    db: &Db,
    employer_id: &str,
    key: &str,
) -> Result<Option<Preregistration>> {
    let sql = format!("{VIEW} WHERE s.employer_id = $1 AND s.idempotency_key = $2");
    Ok(on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(employer_id)
            .bind(key)
            .fetch_optional(pool)
            .await?
    }))
}

/// Which pre-registrations and forms [`pair`] looks at.
#[derive(Debug, Clone, Copy)]
pub enum PairScope<'a> {
    /// Every unpaired pre-registration (the sweep).
    All,
    /// One pre-registration, just filed.
    Preregistration(&'a str),
    /// The registrations of one registration form, just accepted.
    Form(&'a str),
}

/// Pairs the unpaired pre-registrations in `scope` that have a matching accepted
/// registration form. Returns how many were paired.
pub async fn pair(
    ledger: &Ledger,
    db: &Db,
    scope: PairScope<'_>,
    tolerance_days: u32,
) -> Result<usize> {
    let (prereg_id, form_id) = match scope {
        PairScope::All => (None, None),
        PairScope::Preregistration(id) => (Some(id), None),
        PairScope::Form(id) => (None, Some(id)),
    };
    #[derive(sqlx::FromRow)]
    struct Candidate {
        id: String,
        effective_date: String,
        form: String,
        form_date: Option<String>,
        person_id: String,
        #[sqlx(try_from = "String")]
        kind: Kind,
    }
    let sql = format!(
        "SELECT p.id, p.effective_date, r.submission_id AS form, r.effective_date AS form_date, \
         p.person_id, p.kind \
         FROM preregistrations p \
         JOIN registration_items r ON r.employer_id = p.employer_id AND r.person_id = p.person_id AND r.kind = p.kind \
         JOIN submissions s ON s.id = r.submission_id \
         WHERE p.state <> '{paired}' AND ($1 IS NULL OR p.id = $1) AND ($2 IS NULL OR r.submission_id = $2) \
         AND s.status NOT IN ({withdrawn}) \
         ORDER BY p.id, r.submission_id",
        paired = State::Paired,
        withdrawn = withdrawn()
    );
    let rows: Vec<Candidate> = on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(prereg_id)
            .bind(form_id)
            .fetch_all(pool)
            .await?
    });
    let mut paired = 0;
    let mut done = HashSet::new();
    for c in rows {
        let close = match (
            NaiveDate::parse_from_str(&c.effective_date, "%Y-%m-%d"),
            c.form_date
                .as_deref()
                .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d")),
        ) {
            (Ok(a), Some(Ok(b))) => (a - b).num_days().abs() <= i64::from(tolerance_days),
            _ => false,
        };
        if !close || done.contains(&c.id) {
            continue;
        }
        let payload = serde_json::json!({
            "preregistration": c.id, "registration_form": c.form, "person_id": c.person_id, "kind": c.kind,
        });
        let paired_now = change(
            ledger,
            "preregistration.pair",
            &c.id,
            format!(
                "UPDATE preregistrations SET state = '{paired}', paired_with = $3, paired_at = $1 \
                 WHERE id = $2 AND state <> '{paired}'",
                paired = State::Paired
            ),
            Some(c.form.clone()),
            payload,
            None,
        )
        .await?;
        if paired_now {
            paired += 1;
            metrics::counter!("ivan_preregistrations_paired_total").increment(1);
            tracing::info!(preregistration = %c.id, registration_form = %c.form, "pre-registration paired");
        }
        done.insert(c.id.clone());
    }
    Ok(paired)
}

/// The reminder SMS a change queues in its transaction.
struct Reminder {
    access_id: String,
    phone: String,
    text: String,
}

/// One change of pre-registration `id`, logged as `action` with `payload` and made in
/// that entry's transaction: `update` binds `$1` to the entry's time, `$2` to `id`
/// and `$3` to `other` if given; its `WHERE` names the state the change leaves, so it
/// changes exactly one row, or none when a concurrent pass made it first (then
/// nothing is logged either and this returns `false`). A reminder is queued with it.
async fn change(
    ledger: &Ledger,
    action: &str,
    id: &str,
    update: String,
    other: Option<String>,
    payload: serde_json::Value,
    reminder: Option<Reminder>,
) -> Result<bool> {
    let (pid, what) = (id.to_owned(), action.to_owned());
    let work: Work = retention::work!(|conn, at| {
        let now = at.recorded_at();
        let changed = on_conn!(&mut conn, c => {
            let query = sqlx::query(sqlx::AssertSqlSafe(update)).bind(now).bind(&pid);
            let query = match &other {
                Some(other) => query.bind(other),
                None => query,
            };
            query.execute(&mut *c).await?.rows_affected()
        });
        if changed != 1 {
            return Err(retention::Error::Conflict(format!("{what}: already made")));
        }
        match reminder {
            Some(r) => {
                sms::enqueue(
                    &mut conn,
                    sms::Kind::Reminder,
                    &r.access_id,
                    &r.phone,
                    Some(&r.text),
                    now,
                )
                .await
            }
            None => Ok(()),
        }
    });
    let entry = NewEntry {
        actor: Actor::System,
        action: action.to_owned(),
        subject: format!("preregistration:{id}"),
        payload: Some(Payload::json(&payload)),
    };
    Ok(ledger.append_once(entry, work).await?)
}

/// Pre-registrations paired with a registration form that was since cancelled, or
/// refused or rejected by the authority, go back to `received` (the sweep flags them
/// overdue again if their deadline has passed), logged as `preregistration.unpair`.
/// Returns how many.
pub async fn unpair_withdrawn(ledger: &Ledger, db: &Db) -> Result<usize> {
    let sql = format!(
        "SELECT p.id, p.paired_with, s.status FROM preregistrations p JOIN submissions s ON s.id = p.paired_with \
         WHERE p.state = '{paired}' AND s.status IN ({withdrawn}) ORDER BY p.id",
        paired = State::Paired,
        withdrawn = withdrawn()
    );
    let rows: Vec<(String, String, String)> = on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?
    });
    let mut n = 0;
    for (id, form, status) in rows {
        let payload = serde_json::json!({ "registration_form": form, "form_status": status });
        if change(
            ledger,
            "preregistration.unpair",
            &id,
            format!(
                "UPDATE preregistrations SET state = '{received}', paired_with = NULL, paired_at = NULL, \
                 overdue_at = NULL WHERE id = $2 AND paired_with = $3 AND state = '{paired}'",
                received = State::Received,
                paired = State::Paired
            ),
            Some(form.clone()),
            payload,
            None,
        )
        .await?
        {
            n += 1;
        }
    }
    Ok(n)
}

/// One sweep: undoes pairings with withdrawn forms, pairs what can be paired, flags
/// pre-registrations past their deadline as overdue, and queues the phone user's SMS reminder for those due within
/// `reminder_before_secs`.
/// Returns (overdue flagged, reminders queued).
pub async fn sweep(
    ledger: &Ledger,
    db: &Db,
    config: &MobileConfig,
    now: DateTime<Utc>,
) -> Result<(usize, usize)> {
    unpair_withdrawn(ledger, db).await?;
    pair(ledger, db, PairScope::All, config.pairing_tolerance_days).await?;
    let overdue: Vec<(String, DateTime<Utc>)> = on_pool!(db, pool => {
        sqlx::query_as("SELECT id, deadline_at FROM preregistrations WHERE state = $2 AND deadline_at <= $1 ORDER BY id LIMIT 500")
            .bind(now)
            .bind(State::Received.as_str())
            .fetch_all(pool)
            .await?
    });
    let mut flagged = 0;
    for (id, deadline) in overdue {
        let payload =
            serde_json::json!({ "deadline_at": retention::ledger::format_time(&deadline) });
        if change(
            ledger,
            "preregistration.overdue",
            &id,
            format!(
                "UPDATE preregistrations SET state = '{overdue}', overdue_at = $1 \
                 WHERE id = $2 AND state = '{received}'",
                overdue = State::Overdue,
                received = State::Received
            ),
            None,
            payload,
            None,
        )
        .await?
        {
            flagged += 1;
            metrics::counter!("ivan_preregistrations_overdue_total").increment(1);
        }
    }

    #[derive(sqlx::FromRow)]
    struct Due {
        id: String,
        phone_access_id: String,
        document_number: String,
        #[sqlx(try_from = "String")]
        kind: Kind,
        effective_date: String,
        deadline_at: DateTime<Utc>,
    }
    let due_by =
        now + Duration::seconds(i64::try_from(config.reminder_before_secs).unwrap_or(86_400));
    // Pages of 500; those whose phone access was deactivated get no reminder, and
    // must not hold back the ones after them.
    let mut due: Vec<(Due, String)> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page: Vec<Due> = on_pool!(db, pool => {
            sqlx::query_as(
                "SELECT p.id, p.phone_access_id, s.document_number, p.kind, p.effective_date, p.deadline_at \
                 FROM preregistrations p JOIN submissions s ON s.id = p.id \
                 WHERE p.state = $2 AND p.reminded_at IS NULL AND p.deadline_at <= $1 \
                 AND ($3 IS NULL OR p.id > $3) ORDER BY p.id LIMIT 500",
            )
            .bind(due_by)
            .bind(State::Received.as_str())
            .bind(&after)
            .fetch_all(pool)
            .await?
        });
        let full = page.len() == 500;
        after = page.last().map(|d| d.id.clone());
        let accesses: Vec<&str> = page.iter().map(|d| d.phone_access_id.as_str()).collect();
        let phones = mobile_api::access::active_phones(db, &accesses).await?;
        due.extend(page.into_iter().filter_map(|d| {
            phones
                .get(&d.phone_access_id)
                .cloned()
                .map(|phone| (d, phone))
        }));
        if !full || due.len() >= 500 {
            break;
        }
    }
    let mut reminded = 0;
    for (d, phone) in due {
        let text = reminder_text(
            &d.document_number,
            d.kind,
            &d.effective_date,
            &d.deadline_at,
        );
        let payload = serde_json::json!({ "to": phone, "text": text });
        let sms = Reminder {
            access_id: d.phone_access_id.clone(),
            phone,
            text,
        };
        if change(
            ledger,
            "preregistration.remind",
            &d.id,
            format!(
                "UPDATE preregistrations SET reminded_at = $1 \
                 WHERE id = $2 AND reminded_at IS NULL AND state = '{received}'",
                received = State::Received
            ),
            None,
            payload,
            Some(sms),
        )
        .await?
        {
            reminded += 1;
        }
    }
    Ok((flagged, reminded))
}

/// The reminder SMS: ASCII only, so it fits one 160-character segment.
pub fn reminder_text(
    document_number: &str,
    kind: Kind,
    effective_date: &str,
    deadline: &DateTime<Utc>,
) -> String {
    format!(
        "ivan reminder: pre-registration {document_number} ({kind} {effective_date}) still needs the employer's registration form by {} UTC.",
        deadline.format("%Y-%m-%d %H:%M")
    )
}

/// Employers with overdue pre-registrations that have not had today's digest yet,
/// each with its overdue list.
pub async fn digests_due(
    db: &Db,
    now: DateTime<Utc>,
) -> Result<Vec<(String, Vec<Preregistration>)>> {
    let day = now.date_naive().to_string();
    let sql = format!(
        "{VIEW} WHERE p.state = $2 AND NOT EXISTS \
         (SELECT 1 FROM prereg_digests d WHERE d.employer_id = p.employer_id AND d.day = $1) \
         ORDER BY p.employer_id, p.id LIMIT 5000"
    );
    let rows: Vec<Preregistration> = on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&day)
            .bind(State::Overdue.as_str())
            .fetch_all(pool)
            .await?
    });
    let mut out: Vec<(String, Vec<Preregistration>)> = Vec::new();
    for p in rows {
        match out.last_mut() {
            Some((e, list)) if *e == p.employer_id => list.push(p),
            _ => out.push((p.employer_id.clone(), vec![p])),
        }
    }
    Ok(out)
}

/// Marks today's digest of an employer as sent (inside the transaction that queues
/// it); `Conflict` if it already was.
pub async fn mark_digest(
    conn: &mut DbConn<'_>,
    employer_id: &str,
    now: DateTime<Utc>,
) -> Result<(), retention::Error> {
    let inserted = on_conn!(conn, c => {
        sqlx::query("INSERT INTO prereg_digests (employer_id, day) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(employer_id)
            .bind(now.date_naive().to_string())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    if inserted == 1 {
        Ok(())
    } else {
        Err(retention::Error::Conflict(
            "today's digest was already sent".into(),
        ))
    }
}
