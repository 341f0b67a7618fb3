//! The compliance officers' pages: the log search (the same search as
//! `GET /api/v1/compliance/log`, with the same mandatory legal basis and reference
//! number, logged the same way) and reading an original from a result. Searches are
//! POSTed (they write an audit entry); the next page re-posts the same form.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::PortalState;
use super::render::{Page, PageResult, page};
use super::session::OfficerUser;
use crate::compliance::{self, Basis, Channel, Filters, FoundEntry};

pub(super) fn routes() -> Router<PortalState> {
    Router::new()
        .route("/portal/compliance", get(search_page).post(search))
        .route("/portal/compliance/originals/{sha256}", post(original))
}

/// The search form, as posted (and re-posted for the next page).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(super) struct SearchForm {
    csrf: String,
    legal_basis: String,
    reference_number: String,
    employer: String,
    person_id: String,
    document_number: String,
    message_id: String,
    action: String,
    /// A day (YYYY-MM-DD): from its start.
    from: String,
    /// A day (YYYY-MM-DD): up to its end.
    to: String,
    before: String,
}

struct Row {
    seq: i64,
    at: String,
    /// Who acted, in words (a portal user by e-mail); `actor_id` as the log has it.
    actor: String,
    actor_id: String,
    action: String,
    subject: String,
    /// The filing the entry is about, in words: document number · employer.
    filing: Option<String>,
    payload: Option<String>,
    purged: bool,
}

#[derive(Template)]
#[template(path = "portal/compliance.html")]
struct SearchPage {
    page: Page,
    csrf: String,
    organisation: String,
    form: SearchForm,
    error: Option<String>,
    searched: bool,
    rows: Vec<Row>,
    query_id: String,
    audit_log_seq: i64,
    next_before: Option<i64>,
}

fn render(
    p: Page,
    signed: &OfficerUser,
    form: SearchForm,
    status: StatusCode,
    error: Option<String>,
) -> PageResult {
    Ok(page(
        status,
        &SearchPage {
            page: p,
            csrf: signed.csrf.clone(),
            organisation: signed.officer.organisation.clone(),
            form,
            error,
            searched: false,
            rows: Vec::new(),
            query_id: String::new(),
            audit_log_seq: 0,
            next_before: None,
        },
    ))
}

async fn search_page(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
    signed: OfficerUser,
) -> PageResult {
    let p = Page::of(&signed, &state, &headers);
    render(p, &signed, SearchForm::default(), StatusCode::OK, None)
}

fn day(s: &str, end: bool) -> Result<Option<DateTime<Utc>>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))?;
    let d = if end { d.succ_opt().unwrap_or(d) } else { d };
    Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()))
}

fn opt(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

async fn search(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
    signed: OfficerUser,
    Form(f): Form<SearchForm>,
) -> PageResult {
    signed.check_csrf(&f.csrf)?;
    let p = Page::of(&signed, &state, &headers);
    let basis = match Basis::new(Some(&f.legal_basis), Some(&f.reference_number)) {
        Ok(b) => b,
        Err(e) => return render(p, &signed, f, StatusCode::BAD_REQUEST, Some(e.to_string())),
    };
    let (from, to) = match (day(&f.from, false), day(&f.to, true)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return render(p, &signed, f, StatusCode::BAD_REQUEST, Some(e));
        }
    };
    let before = match opt(&f.before).map(|b| b.parse::<i64>()) {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(_)) => {
            return render(
                p,
                &signed,
                f,
                StatusCode::BAD_REQUEST,
                Some("bad page position".into()),
            );
        }
    };
    let filters = Filters {
        employer: opt(&f.employer),
        person_id: opt(&f.person_id),
        document_number: opt(&f.document_number),
        message_id: opt(&f.message_id),
        action: opt(&f.action),
        from,
        to,
        before,
        limit: Some(50),
    };
    let found = match compliance::search(
        &state.db,
        state.intake.ledger(),
        &state.persons,
        &signed.officer,
        &basis,
        &filters,
        Channel::Portal,
        state.intake.clock().now(),
    )
    .await
    {
        Ok(found) => found,
        Err(crate::Error::Invalid(m)) => {
            return render(p, &signed, f, StatusCode::BAD_REQUEST, Some(m));
        }
        Err(e) => return Err(e.into()),
    };
    // Each filing named once, by its document number and employer; each portal user
    // by e-mail.
    let emails = crate::accounts::emails_of(
        &state.db,
        &found
            .entries
            .iter()
            .map(|e| e.actor.as_str())
            .collect::<Vec<_>>(),
    )
    .await?;
    let mut filings = std::collections::HashMap::new();
    for e in &found.entries {
        if let Some(id) = e.subject.strip_prefix("submission:")
            && !filings.contains_key(id)
        {
            let label = crate::submissions::label(&state.db, id).await?;
            filings.insert(
                id.to_owned(),
                label.map(|(n, employer)| format!("{n} · {employer}")),
            );
        }
    }
    let rows = found
        .entries
        .into_iter()
        .map(|e: FoundEntry| Row {
            seq: e.seq,
            at: p.when(&e.recorded_at),
            filing: e
                .subject
                .strip_prefix("submission:")
                .and_then(|id| filings.get(id).cloned().flatten()),
            actor: p.actor(&e.actor, &emails),
            actor_id: e.actor,
            action: e.action,
            subject: e.subject,
            purged: e.payload_purged,
            payload: e.payload_sha256,
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &SearchPage {
            csrf: signed.csrf.clone(),
            organisation: signed.officer.organisation.clone(),
            form: SearchForm {
                before: String::new(),
                ..f
            },
            error: None,
            searched: true,
            rows,
            query_id: found.query_id,
            audit_log_seq: found.audit_log_seq,
            next_before: found.next_before,
            page: p,
        },
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReadForm {
    csrf: String,
    legal_basis: String,
    reference_number: String,
}

async fn original(
    State(state): State<PortalState>,
    signed: OfficerUser,
    Path(sha256): Path<String>,
    Form(f): Form<ReadForm>,
) -> PageResult {
    signed.check_csrf(&f.csrf)?;
    let basis = Basis::new(Some(&f.legal_basis), Some(&f.reference_number))?;
    let mut r = crate::api::compliance::read_as_officer(
        &state,
        &signed.officer,
        &basis,
        &sha256,
        "portal:/portal/compliance/originals/{sha256}",
    )
    .await?;
    if let Ok(v) = format!(
        "attachment; filename=\"{}\"",
        &sha256[..sha256.len().min(64)]
    )
    .parse()
    {
        r.headers_mut()
            .insert(axum::http::header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}
