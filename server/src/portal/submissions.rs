//! The submissions list, one submission, its downloads, and cancel with a step-up.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;

use super::PortalState;
use super::ceremony::{self, Binding};
use super::error::PortalError;
use super::render::{Page, PageResult, json_attr, page, see_other};
use super::session::{EmployerUser, SignedIn};
use super::signin::{CeremonyForm, log_user_event};
use crate::Error;
use crate::error::ProblemEntry;
use crate::submissions::{self, Submission};

/// Rows per page of the submissions list.
pub(super) const PAGE_ROWS: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    state: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    number: String,
    #[serde(default)]
    before: String,
}

pub(super) struct Row {
    id: String,
    document_number: String,
    document_type: String,
    status: String,
    received_at: String,
}

#[derive(Template)]
#[template(path = "portal/submissions.html")]
pub(super) struct SubmissionsPage {
    page: Page,
    /// Whether any filter is set (the filter form then shows open).
    filtered: bool,
    filter: ListQuery,
    states: [&'static str; submissions::Status::ALL.len()],
    types: Vec<&'static str>,
    rows: Vec<Row>,
    next: Option<String>,
}

pub(super) fn day(s: &str, what: &str) -> Result<Option<DateTime<Utc>>, Error> {
    if s.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| Error::Invalid(format!("{what} must be a date (YYYY-MM-DD), not {s:?}")))
}

pub(super) async fn submissions_page(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
    signed: EmployerUser,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let status = if q.state.is_empty() {
        None
    } else {
        Some(
            q.state
                .parse::<submissions::Status>()
                .map_err(|_| Error::Invalid(format!("unknown state {:?}", q.state)))?,
        )
    };
    let types: Vec<&'static str> = crate::documents::DocumentType::ALL
        .into_iter()
        .map(crate::documents::DocumentType::code)
        .chain([mobile_api::prereg::DOCUMENT_TYPE])
        .collect();
    if !q.kind.is_empty() && !types.contains(&q.kind.as_str()) {
        return Err(Error::Invalid(format!("unknown document type {:?}", q.kind)).into());
    }
    if q.number.len() > 40 || !q.number.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::Invalid("a document number has only letters and digits".into()).into());
    }
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let filter = submissions::Filter {
        status,
        document_type: nonempty(&q.kind),
        number_prefix: nonempty(&q.number),
        from: day(&q.from, "from")?,
        to: day(&q.to, "to")?,
        before: nonempty(&q.before),
        newest_first: true,
        limit: PAGE_ROWS + 1,
        ..Default::default()
    };
    let mut rows = submissions::list(&state.db, &signed.employer_id, &filter).await?;
    let next = retention::db::next_page(&mut rows, PAGE_ROWS, |s| s.id.clone()).map(|before| {
        let mut url = url_with(&q);
        url.push_str(&format!("&before={before}"));
        url
    });
    let p = Page::of(&signed, &state, &headers);
    let filtered = [&q.state, &q.kind, &q.from, &q.to, &q.number]
        .iter()
        .any(|f| !f.is_empty());
    Ok(page(
        StatusCode::OK,
        &SubmissionsPage {
            filtered,
            types,
            states: submissions::Status::ALL.map(submissions::Status::as_str),
            rows: rows
                .into_iter()
                .map(|s| Row {
                    received_at: p.when(&s.received_at),
                    id: s.id,
                    document_number: s.document_number,
                    document_type: s.document_type,
                    status: s.status.to_string(),
                })
                .collect(),
            filter: q,
            next,
            page: p,
        },
    ))
}

/// The list URL with the same filters (values are checked ASCII, dates or empty).
pub(super) fn url_with(q: &ListQuery) -> String {
    format!(
        "/portal/submissions?state={}&type={}&from={}&to={}&number={}",
        q.state, q.kind, q.from, q.to, q.number
    )
}

pub(super) async fn own(
    state: &PortalState,
    signed: &EmployerUser,
    id: &str,
) -> Result<Submission, Error> {
    submissions::get(&state.db, &signed.employer_id, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no submission {id}")))
}

pub(super) struct CancelForm {
    remaining: String,
    until: String,
    step_up: StepUp,
}

#[derive(Template)]
#[template(path = "portal/submission.html")]
pub(super) struct SubmissionPage {
    page: Page,
    s: Submission,
    received_at: String,
    /// When it must reach the authority (its `forward_by`).
    forward_by: String,
    notice: Option<String>,
    warnings: Vec<ProblemEntry>,
    history: Vec<HistoryRow>,
    answers: Vec<crate::submissions::AnswerInfo>,
    cancel: Option<CancelForm>,
    csrf: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Notice {
    #[serde(default)]
    done: String,
}

/// One step of a submission's history as people read it; the ids are in the
/// details.
pub(super) struct HistoryRow {
    status: String,
    at: String,
    actor: String,
    actor_id: String,
    log_seq: i64,
}

pub(super) fn remaining(d: Duration) -> String {
    let m = d.num_minutes().max(0);
    format!("{} h {:02} min", m / 60, m % 60)
}

pub(super) async fn submission_page(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
    signed: EmployerUser,
    Path(id): Path<String>,
    Query(n): Query<Notice>,
) -> PageResult {
    let s = own(&state, &signed, &id).await?;
    let p = Page::of(&signed, &state, &headers);
    let now = state.intake.clock().now();
    let cancel = if s.status == submissions::Status::Accepted && s.hold_until > now {
        let step_up = step_up_prompt(&state, &signed, &Binding::cancel(&s.id)).await?;
        Some(CancelForm {
            remaining: remaining(s.hold_until - now),
            until: p.when(&s.hold_until),
            step_up,
        })
    } else {
        None
    };
    let warnings = serde_json::from_str(&s.warnings).unwrap_or_default();
    let steps = submissions::history(&state.db, &s.id).await?;
    let emails = crate::accounts::emails_of(
        &state.db,
        &steps.iter().map(|s| s.actor.as_str()).collect::<Vec<_>>(),
    )
    .await?;
    let history = steps
        .into_iter()
        .map(|h| HistoryRow {
            at: p.when_text(&h.at),
            actor: p.actor(&h.actor, &emails),
            status: h.status,
            actor_id: h.actor,
            log_seq: h.log_seq,
        })
        .collect();
    let answers = crate::submissions::answers(&state.db, &s.id).await?;
    let notice = match n.done.as_str() {
        "filed" => Some(p.t("submission-filed")),
        "repeated" => Some(p.t("submission-repeated")),
        "cancelled" => Some(p.t("submission-cancelled")),
        _ => None,
    };
    Ok(page(
        StatusCode::OK,
        &SubmissionPage {
            forward_by: p.when(&s.forward_by),
            received_at: p.when(&s.received_at),
            page: p,
            s,
            notice,
            warnings,
            history,
            answers,
            cancel,
            csrf: signed.csrf.clone(),
        },
    ))
}

pub(super) async fn original(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path(id): Path<String>,
) -> PageResult {
    let s = own(&state, &signed, &id).await?;
    let read = crate::compliance::Read {
        reader: signed.user.actor(),
        subject: format!("submission:{}", s.id),
        route: "portal:/portal/submissions/{id}/original",
        basis: None,
    };
    let mut r = crate::api::stored_bytes(&state, &s.sha256, "application/xml".into(), read).await?;
    attachment(&mut r, &format!("{}.xml", s.document_number));
    Ok(r)
}

pub(super) async fn receipt(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path(id): Path<String>,
) -> PageResult {
    let s = own(&state, &signed, &id).await?;
    let mut r = (
        [(header::CONTENT_TYPE, "application/jose")],
        s.receipt.clone(),
    )
        .into_response();
    attachment(&mut r, &format!("{}-receipt.jws", s.document_number));
    Ok(r)
}

pub(super) async fn answer(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path((id, n)): Path<(String, i64)>,
) -> PageResult {
    let s = own(&state, &signed, &id).await?;
    let info = crate::submissions::answers(&state.db, &s.id)
        .await?
        .into_iter()
        .find(|a| a.n == n)
        .ok_or_else(|| Error::NotFound(format!("submission {id} has no answer {n}")))?;
    let read = crate::compliance::Read {
        reader: signed.user.actor(),
        subject: format!("submission:{}", s.id),
        route: "portal:/portal/submissions/{id}/answers/{n}",
        basis: None,
    };
    let mut r = crate::api::stored_bytes(&state, &info.sha256, info.media_type, read).await?;
    attachment(&mut r, &format!("{}-answer-{n}", s.document_number));
    Ok(r)
}

/// Marks a download as a file to save (names are document numbers: ASCII).
pub(super) fn attachment(r: &mut Response, name: &str) {
    if let Ok(v) = format!("attachment; filename=\"{name}\"").parse() {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
}

pub(super) async fn cancel(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path(id): Path<String>,
    Form(f): Form<CeremonyForm>,
) -> PageResult {
    signed.check_csrf(&f.csrf)?;
    let s = own(&state, &signed, &id).await?;
    let now = state.intake.clock().now();
    approve_step_up(&state, &signed, &f, &Binding::cancel(&s.id)).await?;
    let caller = signed.caller(&state.db).await?;
    submissions::cancel(state.intake.ledger(), &state.db, &caller, &s.id, now).await?;
    Ok(see_other(&format!(
        "/portal/submissions/{}?done=cancelled",
        s.id
    )))
}

/// A passkey prompt approving `binding`: the ceremony id and the options for the page.
/// A passkey prompt on a page: the ceremony's id and its options (as a JSON
/// attribute) for `webauthn.js`.
pub(super) struct StepUp {
    pub(super) ceremony: String,
    pub(super) options: String,
}

pub(super) async fn step_up_prompt(
    state: &PortalState,
    signed: &SignedIn,
    binding: &Binding,
) -> Result<StepUp, PortalError> {
    let now = state.intake.clock().now();
    let (ceremony, options) =
        ceremony::start_step_up(&state.portal, &state.db, &signed.user, binding, now).await?;
    let options = json_attr(&options)?;
    Ok(StepUp { ceremony, options })
}

/// Checks the passkey's answer to the prompt for `binding` and records which passkey
/// approved what (`user.step-up`, with the assertion as evidence). Called before the
/// action it approves, whose own entries name the user as actor, so a change never
/// stands without its evidence.
pub(super) async fn approve_step_up(
    state: &PortalState,
    signed: &SignedIn,
    f: &CeremonyForm,
    binding: &Binding,
) -> Result<(), PortalError> {
    let now = state.intake.clock().now();
    let approval = ceremony::finish_step_up(
        &state.portal,
        &state.db,
        &signed.user,
        &f.ceremony,
        &f.credential,
        binding,
        now,
    )
    .await?;
    log_user_event(state, &signed.user, "user.step-up", approval.evidence).await?;
    Ok(())
}
