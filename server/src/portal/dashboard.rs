//! The dashboard: counts by state, overdue forwarding, pre-registrations due, expiring certificates.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Duration;

use super::PortalState;
use super::render::{Page, PageResult, page, see_other};
use super::session::SignedIn;
use crate::employers;
use crate::intake::material;
use crate::submissions::{self, outbox, preregistrations};

pub(super) struct DuePrereg {
    surname: String,
    given_name: String,
    kind: &'static str,
    deadline: String,
    state: &'static str,
}

#[derive(Template)]
#[template(path = "portal/dashboard.html")]
pub(super) struct DashboardPage {
    page: Page,
    employer: String,
    counts: Vec<(&'static str, i64)>,
    overdue: Vec<(String, String, String)>,
    preregs: Vec<DuePrereg>,
    certs: Vec<(String, String)>,
}

/// Rows per warning list.
const ROWS: i64 = 50;

pub(super) async fn dashboard(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
    signed: SignedIn,
) -> PageResult {
    // Compliance officers belong to no employer: their home is the log search.
    let Some(employer) = signed.user.employer_id.clone() else {
        return Ok(see_other("/portal/compliance"));
    };
    let now = state.intake.clock().now();
    let db = &state.db;
    let page_ = Page::of(&signed, &state, &headers);
    let name = employers::get(db, &employer)
        .await?
        .ok_or_else(|| crate::Error::NotFound("the employer no longer exists".into()))?
        .name;
    let counts = submissions::count_by_status(db, &employer).await?;
    let overdue = outbox::overdue_of(db, &employer, ROWS).await?;
    let preregs =
        preregistrations::due_before(db, &employer, now + Duration::days(1), ROWS).await?;
    let certs = material::expiring_certs(db, &employer, now + Duration::days(60)).await?;
    Ok(page(
        StatusCode::OK,
        &DashboardPage {
            employer: name,
            counts: counts.into_iter().map(|(s, n)| (s.as_str(), n)).collect(),
            overdue: overdue
                .into_iter()
                .map(|(id, n, at)| (id, n, page_.when(&at)))
                .collect(),
            preregs: preregs
                .into_iter()
                .map(|p| DuePrereg {
                    surname: p.surname,
                    given_name: p.given_name,
                    kind: p.kind.as_str(),
                    deadline: page_.when(&p.deadline_at),
                    state: p.state.as_str(),
                })
                .collect(),
            certs: certs
                .into_iter()
                .map(|c| {
                    let key = if c.not_after <= now {
                        "dashboard-cert-expired"
                    } else {
                        "dashboard-cert-valid-until"
                    };
                    (c.subject, page_.t1(key, "at", &page_.when(&c.not_after)))
                })
                .collect(),
            page: page_,
        },
    ))
}
