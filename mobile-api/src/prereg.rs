//! Pre-registrations: a phone user's preliminary hire or termination, filed at once
//! and paired later with the employer's registration form.
//!
//! ```text
//! received ──(deadline passes)──► overdue
//!    └──────────────┬──────────────────┘
//!                   └──(a matching registration form is accepted)──► paired
//! ```
//!
//! This module is the channel's vocabulary: what the app sends ([`Request`]), how it
//! is checked ([`validate`]), the states, and the pre-registration as the APIs show
//! it ([`Preregistration`]). A pre-registration is also a submission (document type
//! `preregistration`, same id), so its row, its pairing with registration forms and
//! its deadline sweep belong to the server's submission aggregate
//! (`server::submissions::preregistrations`); the channel files and lists through
//! the [`crate::Host`].

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::error::Finding;

/// The document type pre-registrations are filed and forwarded as.
pub const DOCUMENT_TYPE: &str = "preregistration";

retention::named_enum! {
    /// Where a pre-registration stands: `received` when filed, `overdue` once its
    /// deadline passes without a registration form, `paired` when a matching one is
    /// accepted.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    #[schema(as = PreregistrationState)]
    pub enum State("pre-registration state") {
        /// Filed; the registration form is not there yet.
        Received = "received",
        /// Past its deadline without a registration form.
        Overdue = "overdue",
        /// A matching registration form was accepted.
        Paired = "paired",
    }
}

retention::named_enum! {
    /// What a pre-registration announces.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    #[schema(as = PreregistrationKind)]
    pub enum Kind("pre-registration kind") {
        Hire = "hire",
        Termination = "termination",
    }
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

/// Most days an effective date may lie before or after the day of filing.
pub const MAX_EFFECTIVE_DAYS_AWAY: i64 = 366;

/// The personal id rule of registration forms (the server owns the document rules):
/// `(person id, birth date, today)`, a finding if the id breaks it.
pub type PersonRule<'a> = &'a dyn Fn(&str, NaiveDate, NaiveDate) -> Option<Finding>;

/// Checks a request the way registration forms are checked; all findings at once.
pub fn validate(
    req: &Request,
    today: NaiveDate,
    person_rule: PersonRule<'_>,
) -> Result<Checked, Error> {
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
    let kind = match req.kind.trim().parse::<Kind>() {
        Ok(kind) => Some(kind),
        Err(_) => {
            findings.push(Finding::new(
                "kind",
                format!(
                    "kind must be \"hire\" or \"termination\", not {:?}",
                    req.kind.trim()
                ),
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
        && let Some(f) = person_rule(req.person_id.trim(), b, today)
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
    #[sqlx(try_from = "String")]
    pub kind: Kind,
    pub effective_date: String,
    #[sqlx(try_from = "String")]
    pub state: State,
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

/// One page of pre-registrations and the id to continue after, if there are more.
pub type Page = (Vec<Preregistration>, Option<String>);

/// Filter and page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub state: Option<State>,
    /// Continue after this id (ids are time-ordered).
    pub after: Option<String>,
    pub limit: i64,
    /// Only those filed from this phone access: what a phone user may see (least
    /// privilege); `None` for the employer's own listings.
    pub phone_access_id: Option<String>,
}
