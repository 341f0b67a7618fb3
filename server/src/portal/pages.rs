//! The portal's routes (each page's handlers are in their own module: `signin`,
//! `account`, `dashboard`, `submissions`, `upload`) and its static files.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /portal/sign-in`, `POST /portal/sign-in` | sign in with a passkey |
//! | `POST /portal/sign-out` | end the session |
//! | `GET /portal/enrol?token=…`, `POST /portal/enrol` | register the first passkey from the e-mailed link |
//! | `GET /portal/dashboard` | counts by state, overdue forwarding, pre-registrations due, expiring certificates |
//! | `GET /portal/submissions?state=&type=&from=&to=&number=&before=` | own submissions, newest first, paged |
//! | `GET /portal/submissions/{id}` | one submission: history, warnings, answers, cancel (step-up) |
//! | `GET /portal/submissions/{id}/original`, `/receipt`, `/answers/{n}` | downloads |
//! | `POST /portal/submissions/{id}/cancel` | cancel inside the window (step-up bound to the message id) |
//! | `GET /portal/upload`, `POST /portal/upload` | choose a file; the API's checks, nothing stored if it fails |
//! | `GET /portal/uploads/{id}`, `POST …/approve`, `POST …/discard` | approve a checked upload (step-up bound to its SHA-256) |
//! | `POST /portal/account/language` | keep the user's portal language |
//! | `GET /portal/account`, `GET /portal/account/passkeys/new`, `POST /portal/account/passkeys`, `POST /portal/account/passkeys/{id}/remove` | passkeys |
//!
//! Ids of another employer answer 404, exactly like ids that do not exist.
use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};

use super::{PortalState, account, dashboard, signin, submissions, upload};

/// The portal's routes.
pub fn routes() -> Router<PortalState> {
    Router::new()
        .route(
            "/portal",
            get(|| async { Redirect::to("/portal/dashboard") }),
        )
        .route(
            "/portal/",
            get(|| async { Redirect::to("/portal/dashboard") }),
        )
        .route("/portal/static/portal.css", get(css))
        .route("/portal/static/webauthn.js", get(js))
        .route(
            "/portal/sign-in",
            get(signin::sign_in_page).post(signin::sign_in),
        )
        .route("/portal/sign-out", post(signin::sign_out))
        .route("/portal/enrol", get(signin::enrol_page).post(signin::enrol))
        .route("/portal/dashboard", get(dashboard::dashboard))
        .route("/portal/submissions", get(submissions::submissions_page))
        .route(
            "/portal/submissions/{id}",
            get(submissions::submission_page),
        )
        .route(
            "/portal/submissions/{id}/original",
            get(submissions::original),
        )
        .route(
            "/portal/submissions/{id}/receipt",
            get(submissions::receipt),
        )
        .route(
            "/portal/submissions/{id}/answers/{n}",
            get(submissions::answer),
        )
        .route("/portal/submissions/{id}/cancel", post(submissions::cancel))
        .route("/portal/uploads/{id}", get(upload::pending_page))
        .route("/portal/uploads/{id}/approve", post(upload::approve))
        .route("/portal/uploads/{id}/discard", post(upload::discard))
        .route(
            "/portal/reauth",
            get(signin::reauth_page).post(signin::reauth),
        )
        .route("/portal/account", get(account::account))
        .route("/portal/account/language", post(account::set_language))
        .route(
            "/portal/account/passkeys/new",
            get(account::new_passkey_page),
        )
        .route("/portal/account/passkeys", post(account::add_passkey))
        .route(
            "/portal/account/passkeys/{id}/remove",
            post(account::remove_passkey),
        )
}

/// The upload route: its body may be a whole document (the caller sets its limit).
pub fn upload_routes() -> Router<PortalState> {
    Router::new().route(
        "/portal/upload",
        get(upload::upload_page).post(upload::upload),
    )
}

/// `next` if it is a portal path made of plain characters, else the dashboard (no
/// open redirects).
pub(super) fn safe_next(next: &str) -> &str {
    let plain = next
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.?=&".contains(&b));
    if plain && next.starts_with("/portal/") && !next.contains("//") {
        next
    } else {
        "/portal/dashboard"
    }
}

// ---------------------------------------------------------------- static

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/portal.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/webauthn.js"),
    )
}
