//! Pre-registrations: a phone user's preliminary hire or termination, filed at once
//! and paired later with the employer's registration form.
//!
//! ```text
//! received ──(deadline passes)──► overdue
//!    └──────────────┬──────────────────┘
//!                   └──(a matching registration form is accepted)──► paired
//! ```
//!
//! A pre-registration is also a submission (document type `preregistration`, same
//! id): the server records it with a receipt and forwards it through the same
//! outbox as signed filings ([`crate::Host::file`]). This module owns the
//! pre-registration row, its validation, its listing, the pairing and the deadline
//! sweep. Pairing matches employer, person id and kind, with effective dates at most
//! `pairing_tolerance_days` apart, against the registration items the server notes
//! in the transaction that accepts a registration form ([`note_registrations`]); it
//! runs right after each acceptance and on every sweep, so a crash in between only
//! delays it. Each change is a log entry: `preregistration.pair`,
//! `preregistration.overdue`, `preregistration.remind`.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use retention::ledger::{NewEntry, Work};
use retention::{Actor, Db, DbConn, Ledger, Payload, on_conn, on_pool};
use serde::{Deserialize, Serialize};

use crate::error::Finding;
use crate::{Error, Host, MobileConfig, sms};

/// The document type pre-registrations are filed and forwarded as.
pub const DOCUMENT_TYPE: &str = "preregistration";

pub mod state {
    pub const RECEIVED: &str = "received";
    pub const OVERDUE: &str = "overdue";
    pub const PAIRED: &str = "paired";
    pub const ALL: [&str; 3] = [RECEIVED, OVERDUE, PAIRED];
}

/// Longest surname / given name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// What the app sends (`POST /mobile/v1/preregistrations`).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Personal identification number, digits only (9 or 10).
    pub person_id: String,
    pub surname: String,
    pub given_name: String,
    /// `YYYY-MM-DD`.
    pub birth_date: String,
    /// `hire` or `termination`.
    pub kind: String,
    /// `YYYY-MM-DD`: the first day of work (hire) or the last (termination).
    pub effective_date: String,
}

/// A validated pre-registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    pub person_id: String,
    pub surname: String,
    pub given_name: String,
    pub birth_date: NaiveDate,
    pub kind: Kind,
    pub effective_date: NaiveDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Hire,
    Termination,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hire => "hire",
            Kind::Termination => "termination",
        }
    }
}

/// Most days an effective date may lie before or after the day of filing.
pub const MAX_EFFECTIVE_DAYS_AWAY: i64 = 366;

/// Checks a request the way registration forms are checked (the personal id rule
/// comes from the host, which owns the document rules); all findings at once.
pub fn validate(req: &Request, today: NaiveDate, host: &dyn Host) -> Result<Checked, Error> {
    let mut findings = Vec::new();
    let mut name = |v: &str, field: &str| {
        let v = v.trim();
        if v.is_empty() || v.chars().count() > MAX_NAME_CHARS || v.chars().any(char::is_control) {
            findings.push(Finding::new(
                "person.name",
                format!(
                    "{field} must be 1 to {MAX_NAME_CHARS} characters without control characters"
                ),
                &format!("/{field}"),
            ));
        }
        v.to_owned()
    };
    let surname = name(&req.surname, "surname");
    let given_name = name(&req.given_name, "given_name");
    let mut date = |v: &str, field: &str| match NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            findings.push(Finding::new(
                "date.format",
                format!("{field} must be a date YYYY-MM-DD, not {v:?}"),
                &format!("/{field}"),
            ));
            None
        }
    };
    let birth = date(&req.birth_date, "birth_date");
    let effective = date(&req.effective_date, "effective_date");
    let kind = match req.kind.trim() {
        "hire" => Some(Kind::Hire),
        "termination" => Some(Kind::Termination),
        other => {
            findings.push(Finding::new(
                "kind",
                format!("kind must be \"hire\" or \"termination\", not {other:?}"),
                "/kind",
            ));
            None
        }
    };
    if let Some(b) = birth
        && b > today
    {
        findings.push(Finding::new(
            "date.future",
            format!("the birth date {b} is in the future"),
            "/birth_date",
        ));
    }
    if let Some(b) = birth
        && let Some(f) = host.check_person(req.person_id.trim(), b, today)
    {
        findings.push(f);
    }
    if birth.is_none() && req.person_id.trim().is_empty() {
        findings.push(Finding::new(
            "person.id.format",
            "person_id is required",
            "/person_id",
        ));
    }
    if let (Some(e), Some(b)) = (effective, birth)
        && e <= b
    {
        findings.push(Finding::new(
            "dates.before-birth",
            format!("the effective date {e} is not after the birth date {b}"),
            "/effective_date",
        ));
    }
    if let Some(e) = effective
        && (e - today).num_days().abs() > MAX_EFFECTIVE_DAYS_AWAY
    {
        findings.push(Finding::new(
            "date.range",
            format!("the effective date {e} is more than {MAX_EFFECTIVE_DAYS_AWAY} days from today ({today})"),
            "/effective_date",
        ));
    }
    match (findings.is_empty(), birth, effective, kind) {
        (true, Some(birth_date), Some(effective_date), Some(kind)) => Ok(Checked {
            person_id: req.person_id.trim().to_owned(),
            surname,
            given_name,
            birth_date,
            kind,
            effective_date,
        }),
        _ => Err(Error::Findings(findings)),
    }
}

/// A pre-registration as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Preregistration {
    pub id: String,
    #[serde(skip)]
    pub employer_id: String,
    pub phone_access_id: String,
    pub document_number: String,
    pub person_id: String,
    pub surname: String,
    pub given_name: String,
    pub birth_date: String,
    pub kind: String,
    pub effective_date: String,
    /// `received`, `overdue` or `paired`.
    pub state: String,
    /// Where forwarding to the authority stands (the submission's status).
    pub forwarding_status: String,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    #[schema(value_type = String)]
    pub received_at: DateTime<Utc>,
    /// The registration form is due by then.
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    #[schema(value_type = String)]
    pub deadline_at: DateTime<Utc>,
    /// The registration form it was paired with (its message id).
    pub paired_with: Option<String>,
    #[serde(serialize_with = "retention::ledger::serialize_opt_time")]
    #[schema(value_type = Option<String>)]
    pub paired_at: Option<DateTime<Utc>>,
    /// The signed receipt (compact JWS).
    pub receipt: String,
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
                    .push_bind(state::RECEIVED);
            });
            insert.build().execute(&mut *c).await?;
        }
    });
    Ok(())
}

/// One registration of an accepted registration form, as pairing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationItem {
    pub person_id: String,
    /// `hire`, `termination`, `interruption`, `change` or `cancellation`.
    pub kind: String,
    pub effective_date: Option<NaiveDate>,
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

/// Filter and page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub state: Option<String>,
    /// Continue after this id (ids are time-ordered).
    pub after: Option<String>,
    pub limit: i64,
    /// Only those filed from this phone access: what a phone user may see (least
    /// privilege); `None` for the employer's own listings.
    pub phone_access_id: Option<String>,
}

/// The employer's pre-registrations, oldest first.
pub async fn list(db: &Db, employer_id: &str, f: &Filter) -> Result<Vec<Preregistration>, Error> {
    let sql = format!(
        "{VIEW} WHERE p.employer_id = $1 AND ($2 IS NULL OR p.state = $2) AND ($3 IS NULL OR p.id > $3) \
         AND ($5 IS NULL OR p.phone_access_id = $5) ORDER BY p.id LIMIT $4"
    );
    Ok(on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(employer_id)
            .bind(&f.state)
            .bind(&f.after)
            .bind(f.limit)
            .bind(&f.phone_access_id)
            .fetch_all(pool)
            .await?
    }))
}

/// One page of the employer's pre-registrations (at most `f.limit`) and the id to
/// continue after, if there are more.
pub async fn page(
    db: &Db,
    employer_id: &str,
    f: &Filter,
) -> Result<(Vec<Preregistration>, Option<String>), Error> {
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
pub async fn get(db: &Db, employer_id: &str, id: &str) -> Result<Preregistration, Error> {
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

/// The ids of the employer's pre-registrations paired with registration form `form_id`.
pub async fn paired_with(db: &Db, employer_id: &str, form_id: &str) -> Result<Vec<String>, Error> {
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
) -> Result<Option<Preregistration>, Error> {
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
) -> Result<usize, Error> {
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
        kind: String,
    }
    let rows: Vec<Candidate> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT p.id, p.effective_date, r.submission_id AS form, r.effective_date AS form_date, \
             p.person_id, p.kind \
             FROM preregistrations p \
             JOIN registration_items r ON r.employer_id = p.employer_id AND r.person_id = p.person_id AND r.kind = p.kind \
             JOIN submissions s ON s.id = r.submission_id \
             WHERE p.state <> 'paired' AND ($1 IS NULL OR p.id = $1) AND ($2 IS NULL OR r.submission_id = $2) \
             AND s.status NOT IN ('cancelled', 'refused_by_authority', 'rejected') \
             ORDER BY p.id, r.submission_id",
        )
        .bind(prereg_id)
        .bind(form_id)
        .fetch_all(pool)
        .await?
    });
    let mut paired = 0;
    let mut done = std::collections::HashSet::new();
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
        let (pid, form) = (c.id.clone(), c.form.clone());
        let work: Work = retention::work!(|conn, at| {
            let now = at.recorded_at();
            let changed = on_conn!(&mut conn, c => {
                sqlx::query(
                    "UPDATE preregistrations SET state = 'paired', paired_with = $1, paired_at = $2 \
                     WHERE id = $3 AND state <> 'paired'",
                )
                .bind(&form)
                .bind(now)
                .bind(&pid)
                .execute(&mut *c)
                .await?
                .rows_affected()
            });
            if changed == 1 {
                Ok(())
            } else {
                Err(retention::Error::Conflict("already paired".into()))
            }
        });
        let payload = serde_json::json!({
            "preregistration": c.id, "registration_form": c.form, "person_id": c.person_id, "kind": c.kind,
        });
        if ledger
            .append_once(entry("preregistration.pair", &c.id, Some(payload)), work)
            .await?
        {
            paired += 1;
            metrics::counter!("ivan_preregistrations_paired_total").increment(1);
            tracing::info!(preregistration = %c.id, registration_form = %c.form, "pre-registration paired");
        }
        done.insert(c.id.clone());
    }
    Ok(paired)
}

fn entry(action: &str, id: &str, payload: Option<serde_json::Value>) -> NewEntry {
    NewEntry {
        actor: Actor::System,
        action: action.to_owned(),
        subject: format!("preregistration:{id}"),
        payload: payload.map(|p| Payload {
            content: bytes::Bytes::from(p.to_string().into_bytes()).into(),
            media_type: "application/json".into(),
        }),
    }
}

/// Pre-registrations paired with a registration form that was since cancelled, or
/// refused or rejected by the authority, go back to `received` (the sweep flags them
/// overdue again if their deadline has passed), logged as `preregistration.unpair`.
/// Returns how many.
pub async fn unpair_withdrawn(ledger: &Ledger, db: &Db) -> Result<usize, Error> {
    let rows: Vec<(String, String, String)> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT p.id, p.paired_with, s.status FROM preregistrations p JOIN submissions s ON s.id = p.paired_with \
             WHERE p.state = 'paired' AND s.status IN ('cancelled', 'refused_by_authority', 'rejected') ORDER BY p.id",
        )
        .fetch_all(pool)
        .await?
    });
    let mut n = 0;
    for (id, form, status) in rows {
        let (pid, fid) = (id.clone(), form.clone());
        let work: Work = retention::work!(|conn, _at| {
            let changed = on_conn!(&mut conn, c => {
                sqlx::query(
                    "UPDATE preregistrations SET state = 'received', paired_with = NULL, paired_at = NULL, \
                     overdue_at = NULL WHERE id = $1 AND paired_with = $2 AND state = 'paired'",
                )
                .bind(&pid)
                .bind(&fid)
                .execute(&mut *c)
                .await?
                .rows_affected()
            });
            if changed == 1 {
                Ok(())
            } else {
                Err(retention::Error::Conflict("no longer paired".into()))
            }
        });
        let payload = serde_json::json!({ "registration_form": form, "form_status": status });
        if ledger
            .append_once(entry("preregistration.unpair", &id, Some(payload)), work)
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
) -> Result<(usize, usize), Error> {
    unpair_withdrawn(ledger, db).await?;
    pair(ledger, db, PairScope::All, config.pairing_tolerance_days).await?;
    let overdue: Vec<(String, DateTime<Utc>)> = on_pool!(db, pool => {
        sqlx::query_as("SELECT id, deadline_at FROM preregistrations WHERE state = 'received' AND deadline_at <= $1 ORDER BY id LIMIT 500")
            .bind(now)
            .fetch_all(pool)
            .await?
    });
    let mut flagged = 0;
    for (id, deadline) in overdue {
        let pid = id.clone();
        let work: Work = retention::work!(|conn, at| {
            let now = at.recorded_at();
            let changed = on_conn!(&mut conn, c => {
                sqlx::query("UPDATE preregistrations SET state = 'overdue', overdue_at = $1 WHERE id = $2 AND state = 'received'")
                    .bind(now)
                    .bind(&pid)
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
            });
            if changed == 1 {
                Ok(())
            } else {
                Err(retention::Error::Conflict("no longer received".into()))
            }
        });
        let payload =
            serde_json::json!({ "deadline_at": retention::ledger::format_time(&deadline) });
        if ledger
            .append_once(entry("preregistration.overdue", &id, Some(payload)), work)
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
        phone: String,
        document_number: String,
        kind: String,
        effective_date: String,
        deadline_at: DateTime<Utc>,
    }
    let due: Vec<Due> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT p.id, p.phone_access_id, a.phone, s.document_number, p.kind, p.effective_date, p.deadline_at \
             FROM preregistrations p JOIN phone_accesses a ON a.id = p.phone_access_id \
             JOIN submissions s ON s.id = p.id \
             WHERE p.state = 'received' AND p.reminded_at IS NULL AND p.deadline_at <= $1 \
             AND a.deactivated_at IS NULL ORDER BY p.id LIMIT 500",
        )
        .bind(now + Duration::seconds(i64::try_from(config.reminder_before_secs).unwrap_or(86_400)))
        .fetch_all(pool)
        .await?
    });
    let mut reminded = 0;
    for d in due {
        let text = reminder_text(
            &d.document_number,
            &d.kind,
            &d.effective_date,
            &d.deadline_at,
        );
        let (pid, access, phone, body) = (
            d.id.clone(),
            d.phone_access_id.clone(),
            d.phone.clone(),
            text.clone(),
        );
        let work: Work = retention::work!(|conn, at| {
            let now = at.recorded_at();
            let changed = on_conn!(&mut conn, c => {
                sqlx::query("UPDATE preregistrations SET reminded_at = $1 WHERE id = $2 AND reminded_at IS NULL AND state = 'received'")
                    .bind(now)
                    .bind(&pid)
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
            });
            if changed != 1 {
                return Err(retention::Error::Conflict("already reminded".into()));
            }
            sms::enqueue(
                &mut conn,
                sms::Kind::Reminder,
                &access,
                &phone,
                Some(&body),
                now,
            )
            .await
        });
        let payload = serde_json::json!({ "to": d.phone, "text": text });
        if ledger
            .append_once(entry("preregistration.remind", &d.id, Some(payload)), work)
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
    kind: &str,
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
) -> Result<Vec<(String, Vec<Preregistration>)>, Error> {
    let day = now.date_naive().to_string();
    let sql = format!(
        "{VIEW} WHERE p.state = 'overdue' AND NOT EXISTS \
         (SELECT 1 FROM prereg_digests d WHERE d.employer_id = p.employer_id AND d.day = $1) \
         ORDER BY p.employer_id, p.id LIMIT 5000"
    );
    let rows: Vec<Preregistration> = on_pool!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&day).fetch_all(pool).await?
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

/// The answer to a repeated `Idempotency-Key`: the first filing if the content is the
/// same (every field the app sent, as validated), else `IdempotencyConflict` naming it.
fn repeat(first: Preregistration, checked: &Checked) -> Result<(Preregistration, bool), Error> {
    let same = first.person_id == checked.person_id
        && first.surname == checked.surname
        && first.given_name == checked.given_name
        && first.birth_date == checked.birth_date.to_string()
        && first.kind == checked.kind.as_str()
        && first.effective_date == checked.effective_date.to_string();
    if same {
        Ok((first, false))
    } else {
        Err(Error::IdempotencyConflict {
            first: first.id,
            document_number: first.document_number,
        })
    }
}

/// Files a pre-registration for the phone user `caller` from the request body as
/// sent. With an idempotency key already used by this access, returns the first
/// filing (`false`: nothing new), or `IdempotencyConflict` if the request differs
/// from it in any field.
pub async fn file(
    mobile: &crate::Mobile,
    caller: &crate::PhoneCaller,
    body: bytes::Bytes,
    idempotency_key: Option<&str>,
) -> Result<(Preregistration, bool), Error> {
    let req: Request = serde_json::from_slice(&body)
        .map_err(|e| Error::Invalid(format!("the body is not a pre-registration: {e}")))?;
    let today = mobile.clock().now().date_naive();
    let checked = match validate(&req, today, mobile.host().as_ref()) {
        Ok(c) => c,
        Err(Error::Findings(findings)) => {
            // Like a refused filing: no row, one entry naming the refused bytes.
            let payload = serde_json::json!({ "request": String::from_utf8_lossy(&body), "errors": findings });
            mobile
                .ledger()
                .append(NewEntry {
                    actor: caller.actor(),
                    action: "preregistration.refuse".into(),
                    subject: format!("payload:{}", retention::Sha256Hex::of(&body)),
                    payload: Some(Payload {
                        content: bytes::Bytes::from(payload.to_string().into_bytes()).into(),
                        media_type: "application/json".into(),
                    }),
                })
                .await?;
            return Err(Error::Findings(findings));
        }
        Err(e) => return Err(e),
    };
    let key = match idempotency_key {
        Some(k) if k.is_empty() || k.len() > 200 || !k.bytes().all(|b| b.is_ascii_graphic()) => {
            return Err(Error::Invalid(
                "Idempotency-Key must be 1 to 200 visible ASCII characters".into(),
            ));
        }
        Some(k) => Some(format!("phone:{}:{k}", caller.access_id)),
        None => None,
    };
    if let Some(k) = &key
        && let Some(first) = find_by_idempotency_key(mobile.db(), &caller.employer_id, k).await?
    {
        return repeat(first, &checked);
    }
    let id = uuid::Uuid::now_v7().to_string();
    let deadline = Duration::seconds(
        i64::try_from(mobile.config().pairing_deadline_secs).unwrap_or(i64::MAX / 1000),
    );
    let checked_again = checked.clone();
    let filed = mobile
        .host()
        .file(crate::Filing {
            id: id.clone(),
            caller: caller.clone(),
            request: body,
            checked: checked.clone(),
            idempotency_key: key.clone(),
            deadline,
        })
        .await;
    match filed {
        Ok(()) => {}
        // A concurrent retry with the same key won the race: answer with its filing.
        Err(Error::Record(e)) if e.is_unique_violation() && key.is_some() => {
            if let Some(k) = &key
                && let Some(first) =
                    find_by_idempotency_key(mobile.db(), &caller.employer_id, k).await?
            {
                return repeat(first, &checked_again);
            }
            return Err(Error::Record(e));
        }
        Err(e) => return Err(e),
    }
    metrics::counter!("ivan_preregistrations_total").increment(1);
    // The registration form may already be there.
    pair(
        mobile.ledger(),
        mobile.db(),
        PairScope::Preregistration(&id),
        mobile.config().pairing_tolerance_days,
    )
    .await?;
    Ok((get(mobile.db(), &caller.employer_id, &id).await?, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Kit, hire};

    retention::backend_tests!(
        a_phone_user_lists_only_what_it_filed,
        a_reused_idempotency_key_with_other_content_conflicts
    );

    fn all(phone_access_id: Option<String>) -> Filter {
        Filter {
            state: None,
            after: None,
            limit: 50,
            phone_access_id,
        }
    }

    async fn a_phone_user_lists_only_what_it_filed(env: retention::testing::TestEnv) {
        let kit = Kit::new(env, MobileConfig::default()).await;
        let employer = kit.employer("EMP-1").await;
        let (a, _) = kit.phone(&employer, "+421901000001").await;
        let (b, _) = kit.phone(&employer, "+421901000002").await;
        let (pa, _) = file(&kit.mobile, &Kit::caller(&a), hire("9206154122", "A"), None)
            .await
            .unwrap();
        let (pb, _) = file(&kit.mobile, &Kit::caller(&b), hire("9206154122", "B"), None)
            .await
            .unwrap();
        let ids = |v: Vec<Preregistration>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
        let db = kit.mobile.db();
        assert_eq!(
            ids(list(db, &employer, &all(Some(a.id.clone()))).await.unwrap()),
            vec![pa.id.clone()]
        );
        assert_eq!(
            ids(list(db, &employer, &all(Some(b.id.clone()))).await.unwrap()),
            vec![pb.id.clone()]
        );
        assert_eq!(
            ids(list(db, &employer, &all(None)).await.unwrap()),
            vec![pa.id, pb.id]
        );
        kit.task.shutdown().await;
    }

    async fn a_reused_idempotency_key_with_other_content_conflicts(
        env: retention::testing::TestEnv,
    ) {
        let kit = Kit::new(env, MobileConfig::default()).await;
        let employer = kit.employer("EMP-1").await;
        let (a, _) = kit.phone(&employer, "+421901000001").await;
        let c = Kit::caller(&a);
        let (first, created) = file(&kit.mobile, &c, hire("9206154122", "Novák"), Some("k"))
            .await
            .unwrap();
        assert!(created);
        let (again, created) = file(&kit.mobile, &c, hire("9206154122", "Novák"), Some("k"))
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again.id, first.id);
        // Only the surname differs: refused, naming the first filing.
        match file(&kit.mobile, &c, hire("9206154122", "Nováková"), Some("k")).await {
            Err(Error::IdempotencyConflict {
                first: named,
                document_number,
            }) => {
                assert_eq!(named, first.id);
                assert_eq!(document_number, first.document_number);
            }
            other => panic!("expected IdempotencyConflict, got {other:?}"),
        }
        assert_eq!(
            list(kit.mobile.db(), &employer, &all(None))
                .await
                .unwrap()
                .len(),
            1
        );
        kit.task.shutdown().await;
    }
}
