//! The dashboard: counts by state, overdue forwarding, pre-registrations due, expiring certificates.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use retention::on_pool;

use super::PortalState;
use super::render::{Nav, PageResult, page, see_other, when};
use super::session::SignedIn;

pub(super) struct DuePrereg {
    surname: String,
    given_name: String,
    kind: String,
    deadline: String,
    state: String,
}

#[derive(Template)]
#[template(path = "portal/dashboard.html")]
pub(super) struct DashboardPage {
    nav: Option<Nav>,
    employer: String,
    counts: Vec<(String, i64)>,
    overdue: Vec<(String, String, String)>,
    preregs: Vec<DuePrereg>,
    certs: Vec<(String, String)>,
}

pub(super) type PreregRow = (String, String, String, DateTime<Utc>, String);

pub(super) async fn dashboard(State(state): State<PortalState>, signed: SignedIn) -> PageResult {
    // Compliance officers belong to no employer: their home is the log search.
    let Some(employer) = signed.user.employer_id.clone() else {
        return Ok(see_other("/portal/compliance"));
    };
    let now = state.intake.clock().now();
    let (name, counts, overdue, preregs, certs) = on_pool!(&state.db, pool => {
        let name: String = sqlx::query_scalar("SELECT name FROM employers WHERE id = $1")
            .bind(&employer)
            .fetch_one(pool)
            .await
            .map_err(retention::Error::from)?;
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM submissions WHERE employer_id = $1 GROUP BY status ORDER BY status",
        )
        .bind(&employer)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?;
        let overdue: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT s.id, s.document_number, o.overdue_at FROM outbox o \
             JOIN submissions s ON s.id = o.submission_id \
             WHERE s.employer_id = $1 AND o.overdue_at IS NOT NULL ORDER BY o.overdue_at LIMIT 50",
        )
        .bind(&employer)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?;
        let preregs: Vec<PreregRow> = sqlx::query_as(
            "SELECT surname, given_name, kind, deadline_at, state FROM preregistrations \
             WHERE employer_id = $1 AND state <> 'paired' AND deadline_at < $2 \
             ORDER BY deadline_at LIMIT 50",
        )
        .bind(&employer)
        .bind(now + Duration::days(1))
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?;
        let certs: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT subject, not_after FROM employer_certificates WHERE employer_id = $1 \
             AND not_after < $2 ORDER BY not_after",
        )
        .bind(&employer)
        .bind(now + Duration::days(60))
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?;
        (name, counts, overdue, preregs, certs)
    });
    Ok(page(
        StatusCode::OK,
        &DashboardPage {
            nav: Nav::of(&signed),
            employer: name,
            counts,
            overdue: overdue
                .into_iter()
                .map(|(id, n, at)| (id, n, when(&at)))
                .collect(),
            preregs: preregs
                .into_iter()
                .map(|(surname, given_name, kind, deadline, state)| DuePrereg {
                    surname,
                    given_name,
                    kind,
                    deadline: when(&deadline),
                    state,
                })
                .collect(),
            certs: certs
                .into_iter()
                .map(|(s, t)| {
                    let verb = if t <= now { "expired" } else { "valid until" };
                    (s, format!("{verb} {}", when(&t)))
                })
                .collect(),
        },
    ))
}
