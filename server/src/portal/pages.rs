//! The portal's pages and forms.
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
//! | `GET /portal/account`, `GET /portal/account/passkeys/new`, `POST /portal/account/passkeys`, `POST /portal/account/passkeys/{id}/remove` | passkeys |
//!
//! Ids of another employer answer 404, exactly like ids that do not exist.

use askama::Template;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use retention::ledger::NewEntry;
use retention::{Payload, on_pool};
use serde::Deserialize;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential,
};

use super::PortalState;
use super::ceremony::{self, Binding, Kind, StepUpError};
use super::session::{self, EmployerUser, SignedIn};
use crate::Error;
use crate::accounts::{self, User};
use crate::intake::{Outcome, Problem, SubmitError};
use crate::submissions::{self, Submission};

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
        .route("/portal/sign-in", get(sign_in_page).post(sign_in))
        .route("/portal/sign-out", post(sign_out))
        .route("/portal/enrol", get(enrol_page).post(enrol))
        .route("/portal/dashboard", get(dashboard))
        .route("/portal/submissions", get(submissions_page))
        .route("/portal/submissions/{id}", get(submission_page))
        .route("/portal/submissions/{id}/original", get(original))
        .route("/portal/submissions/{id}/receipt", get(receipt))
        .route("/portal/submissions/{id}/answers/{n}", get(answer))
        .route("/portal/submissions/{id}/cancel", post(cancel))
        .route("/portal/uploads/{id}", get(pending_page))
        .route("/portal/uploads/{id}/approve", post(approve))
        .route("/portal/uploads/{id}/discard", post(discard))
        .route("/portal/reauth", get(reauth_page).post(reauth))
        .route("/portal/account", get(account))
        .route("/portal/account/passkeys/new", get(new_passkey_page))
        .route("/portal/account/passkeys", post(add_passkey))
        .route("/portal/account/passkeys/{id}/remove", post(remove_passkey))
}

/// The upload route: its body may be a whole document (the caller sets its limit).
pub fn upload_routes() -> Router<PortalState> {
    Router::new().route("/portal/upload", get(upload_page).post(upload))
}

/// `next` if it is a portal path made of plain characters, else the dashboard (no
/// open redirects).
fn safe_next(next: &str) -> &str {
    let plain = next
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.?=&".contains(&b));
    if plain && next.starts_with("/portal/") && !next.contains("//") {
        next
    } else {
        "/portal/dashboard"
    }
}

// ---------------------------------------------------------------- errors

/// How a portal request fails: an HTML page with the right status (or, when a page
/// needs a session and there is none, a redirect to sign-in).
#[derive(Debug)]
pub enum PortalError {
    App(Error),
    /// A page needs a session: redirect to sign-in.
    SignInRequired,
    /// A form was posted without a (live) session.
    SessionEnded,
    /// Missing or wrong CSRF token, or a POST from another origin.
    Csrf,
    Forbidden(String),
    /// The step-up was for another action or target.
    WrongApproval,
    /// Credential management needs a fresh passkey confirmation; then back here.
    Reconfirm(String),
}

impl From<Error> for PortalError {
    fn from(e: Error) -> Self {
        Self::App(e)
    }
}

impl From<retention::Error> for PortalError {
    fn from(e: retention::Error) -> Self {
        Self::App(e.into())
    }
}

impl From<StepUpError> for PortalError {
    fn from(e: StepUpError) -> Self {
        match e {
            StepUpError::WrongTarget => Self::WrongApproval,
            StepUpError::Other(e) => Self::App(e),
        }
    }
}

#[derive(Template)]
#[template(path = "portal/error.html")]
struct ErrorPage {
    nav: Option<Nav>,
    title: String,
    message: String,
    back: &'static str,
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let (status, message, back) = match self {
            PortalError::SignInRequired => {
                return Redirect::to("/portal/sign-in").into_response();
            }
            PortalError::Reconfirm(back) => {
                return Redirect::to(&format!("/portal/reauth?next={}", safe_next(&back)))
                    .into_response();
            }
            PortalError::SessionEnded => (
                StatusCode::UNAUTHORIZED,
                "Your session has ended. Sign in again; nothing was changed.".to_owned(),
                "/portal/sign-in",
            ),
            PortalError::Csrf => (
                StatusCode::FORBIDDEN,
                "This form was out of date or did not come from this portal, so it was refused \
                 and nothing was changed. Reload the page and try again."
                    .to_owned(),
                "/portal/dashboard",
            ),
            PortalError::Forbidden(m) => (StatusCode::FORBIDDEN, m, "/portal/dashboard"),
            PortalError::WrongApproval => (
                StatusCode::FORBIDDEN,
                "This passkey approval was given for another document or action, so it \
                 approves nothing here. Nothing was changed."
                    .to_owned(),
                "/portal/dashboard",
            ),
            PortalError::App(e) => {
                let status = e.status();
                let message = if status.is_server_error() {
                    tracing::error!(error = %e, "portal request failed");
                    "Something went wrong on our side. Try again later; if you were filing or \
                     cancelling, look at the submission first: it may have gone through."
                        .to_owned()
                } else {
                    e.to_string()
                };
                if let Error::Mobile(mobile_api::Error::TooManyRequests { retry_after }) = &e {
                    let mut resp = page(
                        status,
                        &ErrorPage {
                            nav: None,
                            title: reason(status),
                            message,
                            back: "/portal/sign-in",
                        },
                    );
                    if let Ok(v) = retry_after.as_secs().max(1).to_string().parse() {
                        resp.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                    return resp;
                }
                (status, message, "/portal/dashboard")
            }
        };
        page(
            status,
            &ErrorPage {
                nav: None,
                title: reason(status),
                message,
                back,
            },
        )
        .into_response()
    }
}

fn reason(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_owned()
}

/// Renders a template with a status.
pub(super) fn page<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "portal template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

pub(super) type PageResult = Result<Response, PortalError>;

/// What the header shows for a signed-in user.
pub(super) struct Nav {
    pub(super) email: String,
    pub(super) role: String,
    pub(super) admin: bool,
    pub(super) officer: bool,
    pub(super) csrf: String,
}

impl Nav {
    pub(super) fn of(s: &SignedIn) -> Option<Self> {
        Some(Self {
            email: s.user.email.clone(),
            role: s.user.role.clone(),
            admin: s.user.is_admin(),
            officer: s.user.is_officer(),
            csrf: s.csrf.clone(),
        })
    }
}

pub(super) fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub(super) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn json_attr<T: serde::Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::Invalid(e.to_string()))
}

fn ceremony_valid(state: &PortalState) -> Duration {
    Duration::seconds(i64::try_from(state.portal.config.ceremony_valid_secs).unwrap_or(300))
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

// ---------------------------------------------------------------- sign-in

#[derive(Template)]
#[template(path = "portal/sign_in.html")]
struct SignInPage {
    nav: Option<Nav>,
    options: String,
    ceremony: String,
}

async fn sign_in_page(
    State(state): State<PortalState>,
    source: mobile_api::http::Source,
) -> PageResult {
    limit(&state, &source)?;
    let (mut options, auth) = state
        .portal
        .webauthn
        .start_discoverable_authentication()
        .map_err(|e| Error::Invalid(format!("cannot start the passkey prompt: {e}")))?;
    // A button press asks for the passkey directly (not the autofill UI).
    options.mediation = None;
    let now = state.intake.clock().now();
    let id = ceremony::put(
        &state.db,
        Kind::SignIn,
        None,
        None,
        &auth,
        now,
        ceremony_valid(&state),
    )
    .await?;
    Ok(page(
        StatusCode::OK,
        &SignInPage {
            nav: None,
            options: json_attr(&options)?,
            ceremony: id,
        },
    ))
}

fn limit(state: &PortalState, source: &mobile_api::http::Source) -> Result<(), PortalError> {
    if let Some(ip) = source.0 {
        state
            .portal
            .limiter
            .check(ip)
            .map_err(|e| PortalError::App(Error::Mobile(e)))?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct CeremonyForm {
    ceremony: String,
    credential: String,
    #[serde(default)]
    csrf: String,
}

async fn sign_in(
    State(state): State<PortalState>,
    source: mobile_api::http::Source,
    Form(f): Form<CeremonyForm>,
) -> PageResult {
    limit(&state, &source)?;
    let now = state.intake.clock().now();
    let refused = || {
        metrics::counter!("ivan_portal_sign_in_refused_total").increment(1);
        PortalError::App(Error::Invalid(
            "That passkey did not sign you in: it is not registered here, its user was \
             revoked, or the prompt expired. Try again."
                .into(),
        ))
    };
    let (auth, _): (DiscoverableAuthentication, _) =
        ceremony::take(&state.db, &f.ceremony, Kind::SignIn, None, now).await?;
    let answer: PublicKeyCredential = ceremony::credential(&f.credential)?;
    let webauthn = &state.portal.webauthn;
    let (handle, cred_id) = webauthn
        .identify_discoverable_authentication(&answer)
        .map_err(|_| refused())?;
    let user = accounts::user_by_handle(&state.db, &handle)
        .await?
        .ok_or_else(refused)?;
    let mut key = accounts::passkey(&state.db, &user.id, &accounts::credential_id(cred_id))
        .await?
        .ok_or_else(refused)?;
    let result = webauthn
        .finish_discoverable_authentication_v2(&answer, auth, &key.passkey)
        .map_err(|e| {
            tracing::warn!(user = %user.id, error = %e, "portal sign-in assertion refused");
            refused()
        })?;
    key.passkey.update_credential(&result);
    accounts::passkey_used(&state.db, &key, now).await?;
    let secret = session::start(&state.portal, &state.db, &user, &key.id, now).await?;
    log_user_event(
        &state,
        &user,
        "user.sign-in",
        serde_json::json!({ "passkey_id": key.id }),
    )
    .await?;
    Ok(with_cookie(
        see_other("/portal/dashboard"),
        &session::set_cookie(&state.portal, Some(&secret)),
    ))
}

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = cookie.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn log_user_event(
    state: &PortalState,
    user: &User,
    action: &str,
    payload: serde_json::Value,
) -> Result<(), Error> {
    state
        .intake
        .ledger()
        .append(NewEntry {
            actor: user.actor(),
            action: action.into(),
            subject: format!("user:{}", user.id),
            payload: Some(Payload {
                content: Bytes::from(payload.to_string()).into(),
                media_type: "application/json".into(),
            }),
        })
        .await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: String,
}

async fn sign_out(
    State(state): State<PortalState>,
    signed: SignedIn,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    signed.check_csrf(&f.csrf)?;
    let now = state.intake.clock().now();
    session::end(&state.db, &signed.session, now).await?;
    log_user_event(&state, &signed.user, "user.sign-out", serde_json::json!({})).await?;
    Ok(with_cookie(
        see_other("/portal/sign-in"),
        &session::set_cookie(&state.portal, None),
    ))
}

// ---------------------------------------------------------------- enrolment

#[derive(Template)]
#[template(path = "portal/enrol.html")]
struct EnrolPage {
    nav: Option<Nav>,
    heading: &'static str,
    action: &'static str,
    email: String,
    role: String,
    options: String,
    ceremony: String,
    token: String,
    csrf: String,
    default_name: &'static str,
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

fn invalid_link() -> PortalError {
    PortalError::App(Error::NotFound(
        "This enrolment link is not valid: it was used already, has expired, or is \
         incomplete. Ask your operator for a new invitation."
            .into(),
    ))
}

/// Starts a passkey registration for `user`; returns the options and ceremony id.
async fn start_registration(
    state: &PortalState,
    user: &User,
    kind: Kind,
) -> Result<(String, String), PortalError> {
    let handle = uuid::Uuid::parse_str(&user.webauthn_handle)
        .map_err(|e| Error::Invalid(format!("stored user handle: {e}")))?;
    let existing = accounts::passkeys(&state.db, &user.id)
        .await?
        .into_iter()
        .map(|k| k.passkey.cred_id().clone())
        .collect::<Vec<_>>();
    let (options, reg) = state
        .portal
        .webauthn
        .start_passkey_registration(
            handle,
            &user.email,
            &user.email,
            (!existing.is_empty()).then_some(existing),
        )
        .map_err(|e| Error::Invalid(format!("cannot start the passkey prompt: {e}")))?;
    let now = state.intake.clock().now();
    let id = ceremony::put(
        &state.db,
        kind,
        Some(&user.id),
        None,
        &reg,
        now,
        ceremony_valid(state),
    )
    .await?;
    Ok((json_attr(&options)?, id))
}

async fn enrol_page(
    State(state): State<PortalState>,
    source: mobile_api::http::Source,
    Query(q): Query<TokenQuery>,
) -> PageResult {
    limit(&state, &source)?;
    let now = state.intake.clock().now();
    let (user, _) = accounts::invitation(&state.db, &q.token, now)
        .await?
        .ok_or_else(invalid_link)?;
    let (options, ceremony) = start_registration(&state, &user, Kind::Enrol).await?;
    Ok(page(
        StatusCode::OK,
        &EnrolPage {
            nav: None,
            heading: "Register your passkey",
            action: "/portal/enrol",
            email: user.email.clone(),
            role: user.role.clone(),
            options,
            ceremony,
            token: q.token,
            csrf: String::new(),
            default_name: "my passkey",
        },
    ))
}

#[derive(Debug, Deserialize)]
struct RegisterForm {
    ceremony: String,
    credential: String,
    name: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// Finishes a registration ceremony for `user`.
async fn finish_registration(
    state: &PortalState,
    user: &User,
    kind: Kind,
    f: &RegisterForm,
) -> Result<webauthn_rs::prelude::Passkey, PortalError> {
    let now = state.intake.clock().now();
    let (reg, _): (PasskeyRegistration, _) =
        ceremony::take(&state.db, &f.ceremony, kind, Some(&user.id), now).await?;
    let answer: RegisterPublicKeyCredential = ceremony::credential(&f.credential)?;
    Ok(state
        .portal
        .webauthn
        .finish_passkey_registration(&answer, &reg)
        .map_err(|e| Error::Invalid(format!("the passkey could not be registered: {e}")))?)
}

async fn enrol(
    State(state): State<PortalState>,
    source: mobile_api::http::Source,
    Form(f): Form<RegisterForm>,
) -> PageResult {
    limit(&state, &source)?;
    let now = state.intake.clock().now();
    // The link's secret is this form's CSRF protection: it is needed again here.
    let (user, invitation) = accounts::invitation(&state.db, &f.token, now)
        .await?
        .ok_or_else(invalid_link)?;
    let passkey = finish_registration(&state, &user, Kind::Enrol, &f).await?;
    let id = accounts::add_passkey(
        state.intake.ledger(),
        &user,
        Some(&invitation),
        &passkey,
        &f.name,
        now,
    )
    .await?;
    // The passkey is registered now; if signing in fails, say so.
    let signed_in = async {
        let secret = session::start(&state.portal, &state.db, &user, &id, now).await?;
        log_user_event(
            &state,
            &user,
            "user.sign-in",
            serde_json::json!({ "passkey_id": id, "enrolment": true }),
        )
        .await?;
        Ok::<_, Error>(secret)
    }
    .await;
    let secret = signed_in.map_err(|e| {
        tracing::error!(error = %e, user = %user.id, "sign-in after enrolment failed");
        PortalError::App(Error::Unavailable(
            "Your passkey is registered, but signing you in failed. Sign in with it on the \
             sign-in page."
                .into(),
        ))
    })?;
    Ok(with_cookie(
        see_other("/portal/dashboard"),
        &session::set_cookie(&state.portal, Some(&secret)),
    ))
}

// ---------------------------------------------------------------- account

struct KeyRow {
    id: String,
    name: String,
    created: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "portal/account.html")]
struct AccountPage {
    nav: Option<Nav>,
    email: String,
    role: String,
    session_ends: String,
    keys: Vec<KeyRow>,
    csrf: String,
}

async fn account(State(state): State<PortalState>, signed: SignedIn) -> PageResult {
    signed.require_recent("/portal/account")?;
    let keys = accounts::passkeys(&state.db, &signed.user.id)
        .await?
        .into_iter()
        .map(|k| KeyRow {
            id: k.id,
            name: k.name,
            created: when(&k.created_at),
            last_used: k.last_used_at.as_ref().map_or_else(|| "never".into(), when),
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &AccountPage {
            nav: Nav::of(&signed),
            email: signed.user.email.clone(),
            role: signed.user.role.clone(),
            session_ends: when(&signed.expires_at),
            keys,
            csrf: signed.csrf.clone(),
        },
    ))
}

async fn new_passkey_page(State(state): State<PortalState>, signed: SignedIn) -> PageResult {
    signed.require_recent("/portal/account")?;
    let (options, ceremony) = start_registration(&state, &signed.user, Kind::AddPasskey).await?;
    Ok(page(
        StatusCode::OK,
        &EnrolPage {
            nav: Nav::of(&signed),
            heading: "Add a passkey",
            action: "/portal/account/passkeys",
            email: signed.user.email.clone(),
            role: signed.user.role.clone(),
            options,
            ceremony,
            token: String::new(),
            csrf: signed.csrf.clone(),
            default_name: "another passkey",
        },
    ))
}

async fn add_passkey(
    State(state): State<PortalState>,
    signed: SignedIn,
    Form(f): Form<RegisterForm>,
) -> PageResult {
    signed.check_csrf(&f.csrf)?;
    signed.require_recent("/portal/account")?;
    let passkey = finish_registration(&state, &signed.user, Kind::AddPasskey, &f).await?;
    let now = state.intake.clock().now();
    accounts::add_passkey(
        state.intake.ledger(),
        &signed.user,
        None,
        &passkey,
        &f.name,
        now,
    )
    .await?;
    Ok(see_other("/portal/account"))
}

async fn remove_passkey(
    State(state): State<PortalState>,
    signed: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    signed.check_csrf(&f.csrf)?;
    signed.require_recent("/portal/account")?;
    let now = state.intake.clock().now();
    accounts::remove_passkey(state.intake.ledger(), &signed.user, &id, now).await?;
    Ok(see_other("/portal/account"))
}

// ---------------------------------------------------------------- dashboard

struct DuePrereg {
    surname: String,
    given_name: String,
    kind: String,
    deadline: String,
    state: String,
}

#[derive(Template)]
#[template(path = "portal/dashboard.html")]
struct DashboardPage {
    nav: Option<Nav>,
    employer: String,
    counts: Vec<(String, i64)>,
    overdue: Vec<(String, String, String)>,
    preregs: Vec<DuePrereg>,
    certs: Vec<(String, String)>,
}

type PreregRow = (String, String, String, DateTime<Utc>, String);

async fn dashboard(State(state): State<PortalState>, signed: SignedIn) -> PageResult {
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

// ---------------------------------------------------------------- submissions

/// Rows per page of the submissions list.
const PAGE_ROWS: i64 = 50;

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
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

struct Row {
    id: String,
    document_number: String,
    document_type: String,
    status: String,
    received_at: String,
}

#[derive(Template)]
#[template(path = "portal/submissions.html")]
struct SubmissionsPage {
    nav: Option<Nav>,
    filter: ListQuery,
    states: [&'static str; submissions::Status::ALL.len()],
    types: Vec<&'static str>,
    rows: Vec<Row>,
    next: Option<String>,
}

fn day(s: &str, what: &str) -> Result<Option<DateTime<Utc>>, Error> {
    if s.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| Error::Invalid(format!("{what} must be a date (YYYY-MM-DD), not {s:?}")))
}

async fn submissions_page(
    State(state): State<PortalState>,
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
    Ok(page(
        StatusCode::OK,
        &SubmissionsPage {
            nav: Nav::of(&signed),
            types,
            states: submissions::Status::ALL.map(submissions::Status::as_str),
            rows: rows
                .into_iter()
                .map(|s| Row {
                    received_at: when(&s.received_at),
                    id: s.id,
                    document_number: s.document_number,
                    document_type: s.document_type,
                    status: s.status.to_string(),
                })
                .collect(),
            filter: q,
            next,
        },
    ))
}

/// The list URL with the same filters (values are checked ASCII, dates or empty).
fn url_with(q: &ListQuery) -> String {
    format!(
        "/portal/submissions?state={}&type={}&from={}&to={}&number={}",
        q.state, q.kind, q.from, q.to, q.number
    )
}

async fn own(state: &PortalState, signed: &EmployerUser, id: &str) -> Result<Submission, Error> {
    submissions::get(&state.db, &signed.employer_id, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no submission {id}")))
}

struct CancelForm {
    remaining: String,
    until: String,
    options: String,
    ceremony: String,
}

#[derive(Template)]
#[template(path = "portal/submission.html")]
struct SubmissionPage {
    nav: Option<Nav>,
    s: Submission,
    notice: Option<&'static str>,
    warnings: Vec<Problem>,
    history: Vec<submissions::Step>,
    answers: Vec<crate::submissions::AnswerInfo>,
    cancel: Option<CancelForm>,
    csrf: String,
}

#[derive(Debug, Deserialize)]
struct Notice {
    #[serde(default)]
    done: String,
}

fn remaining(d: Duration) -> String {
    let m = d.num_minutes().max(0);
    format!("{} h {:02} min", m / 60, m % 60)
}

async fn submission_page(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path(id): Path<String>,
    Query(n): Query<Notice>,
) -> PageResult {
    let s = own(&state, &signed, &id).await?;
    let now = state.intake.clock().now();
    let cancel = if s.status == submissions::Status::Accepted && s.hold_until > now {
        let (ceremony, options) = step_up_prompt(&state, &signed, &Binding::cancel(&s.id)).await?;
        Some(CancelForm {
            remaining: remaining(s.hold_until - now),
            until: when(&s.hold_until),
            options,
            ceremony,
        })
    } else {
        None
    };
    let warnings = serde_json::from_str(&s.warnings).unwrap_or_default();
    let history = submissions::history(&state.db, &s.id).await?;
    let answers = crate::submissions::answers(&state.db, &s.id).await?;
    let notice = match n.done.as_str() {
        "filed" => Some("Filed. The signed receipt is below."),
        "repeated" => Some("These exact bytes had been filed already: this is that filing."),
        "cancelled" => Some("Cancelled. It will not be forwarded."),
        _ => None,
    };
    Ok(page(
        StatusCode::OK,
        &SubmissionPage {
            nav: Nav::of(&signed),
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

async fn original(
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

async fn receipt(
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

async fn answer(
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
fn attachment(r: &mut Response, name: &str) {
    if let Ok(v) = format!("attachment; filename=\"{name}\"").parse() {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
}

async fn cancel(
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
async fn step_up_prompt(
    state: &PortalState,
    signed: &SignedIn,
    binding: &Binding,
) -> Result<(String, String), PortalError> {
    let now = state.intake.clock().now();
    let (ceremony, options) =
        ceremony::start_step_up(&state.portal, &state.db, &signed.user, binding, now).await?;
    Ok((ceremony, json_attr(&options)?))
}

/// Checks the passkey's answer to the prompt for `binding` and records which passkey
/// approved what (`user.step-up`, with the assertion as evidence). Called before the
/// action it approves, whose own entries name the user as actor, so a change never
/// stands without its evidence.
async fn approve_step_up(
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

// ---------------------------------------------------------------- re-confirmation

#[derive(Template)]
#[template(path = "portal/reauth.html")]
struct ReauthPage {
    nav: Option<Nav>,
    csrf: String,
    options: String,
    ceremony: String,
    next: String,
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    #[serde(default)]
    next: String,
}

async fn reauth_page(
    State(state): State<PortalState>,
    signed: SignedIn,
    Query(q): Query<NextQuery>,
) -> PageResult {
    let (ceremony, options) =
        step_up_prompt(&state, &signed, &Binding::reauth(&signed.session)).await?;
    Ok(page(
        StatusCode::OK,
        &ReauthPage {
            nav: Nav::of(&signed),
            csrf: signed.csrf.clone(),
            options,
            ceremony,
            next: safe_next(&q.next).to_owned(),
        },
    ))
}

#[derive(Debug, Deserialize)]
struct ReauthForm {
    #[serde(flatten)]
    answer: CeremonyForm,
    #[serde(default)]
    next: String,
}

async fn reauth(
    State(state): State<PortalState>,
    signed: SignedIn,
    Form(f): Form<ReauthForm>,
) -> PageResult {
    signed.check_csrf(&f.answer.csrf)?;
    let now = state.intake.clock().now();
    approve_step_up(
        &state,
        &signed,
        &f.answer,
        &Binding::reauth(&signed.session),
    )
    .await?;
    session::reconfirmed(&state.db, &signed.session, now).await?;
    Ok(see_other(safe_next(&f.next)))
}

// ---------------------------------------------------------------- upload

struct Findings {
    headline: String,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

#[derive(Template)]
#[template(path = "portal/upload.html")]
struct UploadPage {
    nav: Option<Nav>,
    csrf: String,
    max_mib: usize,
    result: Option<Findings>,
}

fn upload_form(state: &PortalState, signed: &EmployerUser, result: Option<Findings>) -> UploadPage {
    UploadPage {
        nav: Nav::of(signed),
        csrf: signed.csrf.clone(),
        max_mib: state.intake.config().max_document_bytes / (1024 * 1024),
        result,
    }
}

async fn upload_page(State(state): State<PortalState>, signed: EmployerUser) -> PageResult {
    Ok(page(StatusCode::OK, &upload_form(&state, &signed, None)))
}

async fn upload(
    State(state): State<PortalState>,
    signed: EmployerUser,
    mut form: Multipart,
) -> PageResult {
    let (mut csrf, mut file) = (None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| Error::Invalid(format!("the upload form is malformed: {e}")))?
    {
        match field.name() {
            Some("csrf") => {
                csrf = Some(
                    field
                        .text()
                        .await
                        .map_err(|e| Error::Invalid(format!("the upload form: {e}")))?,
                );
            }
            Some("file") => {
                // The CSRF token comes first in the form; a file before it is refused
                // unread.
                signed.check_csrf(csrf.as_deref().unwrap_or(""))?;
                let name = field.file_name().unwrap_or("upload.xml").to_owned();
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| Error::Invalid(format!("the file did not arrive whole: {e}")))?;
                file = Some((name, bytes));
            }
            _ => {}
        }
    }
    signed.check_csrf(csrf.as_deref().unwrap_or(""))?;
    let Some((name, body)) = file.filter(|(_, b)| !b.is_empty()) else {
        return Err(Error::Invalid("choose a file to upload".into()).into());
    };
    let caller = signed.caller(&state.db).await?;
    let preview = state.intake.check(&caller, &body).await?;
    if let Some(first) = preview.repeated {
        return Ok(see_other(&format!("/portal/submissions/{}", first.id)));
    }
    if !preview.errors.is_empty() {
        let headline = format!(
            "{name} cannot be filed: {} problem(s). Nothing was stored.",
            preview.errors.len()
        );
        let status = if preview.status.is_client_error() {
            preview.status
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        return Ok(page(
            status,
            &upload_form(
                &state,
                &signed,
                Some(Findings {
                    headline,
                    errors: preview.errors,
                    warnings: preview.warnings,
                }),
            ),
        ));
    }
    let now = state.intake.clock().now();
    let id = hex::encode(retention::keys::os_random::<16>()?);
    let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
    let expires = now
        + Duration::seconds(i64::try_from(state.portal.config.upload_valid_secs).unwrap_or(1800));
    on_pool!(&state.db, pool => {
        sqlx::query("DELETE FROM portal_uploads WHERE expires_at < $1")
            .bind(now)
            .execute(pool)
            .await
            .map_err(retention::Error::from)?;
        sqlx::query(
            "INSERT INTO portal_uploads (id, user_id, employer_id, file_name, sha256, body, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(&signed.user.id)
        .bind(&signed.employer_id)
        .bind(&name)
        .bind(&preview.sha256)
        .bind(body.as_ref())
        .bind(now)
        .bind(expires)
        .execute(pool)
        .await
        .map_err(retention::Error::from)?;
    });
    Ok(see_other(&format!("/portal/uploads/{id}")))
}

/// A checked upload waiting for approval; only its uploader sees it.
struct Pending {
    file_name: String,
    sha256: String,
    body: Bytes,
}

async fn pending(state: &PortalState, signed: &EmployerUser, id: &str) -> Result<Pending, Error> {
    let now = state.intake.clock().now();
    let row: Option<(String, String, Vec<u8>)> = on_pool!(&state.db, pool => {
        sqlx::query_as(
            "SELECT file_name, sha256, body FROM portal_uploads \
             WHERE id = $1 AND user_id = $2 AND employer_id = $3 AND expires_at > $4",
        )
        .bind(id)
        .bind(&signed.user.id)
        .bind(&signed.employer_id)
        .bind(now)
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    });
    let (file_name, sha256, body) = row.ok_or_else(|| {
        Error::NotFound(format!(
            "no upload {id} waiting for your approval (uploads wait {} minutes)",
            state.portal.config.upload_valid_secs / 60
        ))
    })?;
    Ok(Pending {
        file_name,
        sha256,
        body: Bytes::from(body),
    })
}

async fn drop_pending(state: &PortalState, id: &str) -> Result<(), Error> {
    on_pool!(&state.db, pool => {
        sqlx::query("DELETE FROM portal_uploads WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map_err(retention::Error::from)?;
    });
    Ok(())
}

#[derive(Template)]
#[template(path = "portal/pending.html")]
struct PendingPage {
    nav: Option<Nav>,
    id: String,
    file_name: String,
    document_type: String,
    sha256: String,
    warnings: Vec<Problem>,
    options: String,
    ceremony: String,
    csrf: String,
}

async fn pending_page(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path(id): Path<String>,
) -> PageResult {
    let p = pending(&state, &signed, &id).await?;
    // Checked again: trust material may have changed since the upload.
    let caller = signed.caller(&state.db).await?;
    let preview = state.intake.check(&caller, &p.body).await?;
    if let Some(first) = preview.repeated {
        drop_pending(&state, &id).await?;
        return Ok(see_other(&format!("/portal/submissions/{}", first.id)));
    }
    if !preview.errors.is_empty() {
        // Kept until it expires or is discarded: the problem may pass (a CRL about to
        // be renewed); approving it now would only be refused.
        let headline = format!(
            "{} cannot be filed now: {} problem(s). Nothing was filed.",
            p.file_name,
            preview.errors.len()
        );
        return Ok(page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &upload_form(
                &state,
                &signed,
                Some(Findings {
                    headline,
                    errors: preview.errors,
                    warnings: preview.warnings,
                }),
            ),
        ));
    }
    let (ceremony, options) =
        step_up_prompt(&state, &signed, &Binding::approve_upload(&p.sha256)).await?;
    Ok(page(
        StatusCode::OK,
        &PendingPage {
            nav: Nav::of(&signed),
            id,
            file_name: p.file_name,
            document_type: preview.document_type.unwrap_or_default(),
            sha256: p.sha256,
            warnings: preview.warnings,
            options,
            ceremony,
            csrf: signed.csrf.clone(),
        },
    ))
}

async fn approve(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path(id): Path<String>,
    Form(f): Form<CeremonyForm>,
) -> PageResult {
    signed.check_csrf(&f.csrf)?;
    let p = pending(&state, &signed, &id).await?;
    approve_step_up(&state, &signed, &f, &Binding::approve_upload(&p.sha256)).await?;
    let caller = signed.caller(&state.db).await?;
    // The upload's id is the idempotency key: approving twice files once.
    let key_name = format!("portal-upload:{id}");
    let outcome = state
        .intake
        .submit(&caller, Some("application/xml"), Some(&key_name), p.body)
        .await;
    match outcome {
        Ok(outcome) => {
            let (s, done) = match outcome {
                Outcome::Created(s) => {
                    metrics::counter!("ivan_submissions_accepted_total").increment(1);
                    (s, "filed")
                }
                Outcome::Repeated(s) => (s, "repeated"),
            };
            // Filed: a leftover pending row only waits for its expiry.
            if let Err(e) = drop_pending(&state, &id).await {
                tracing::warn!(error = %e, upload = %id, "pending upload not removed");
            }
            Ok(see_other(&format!(
                "/portal/submissions/{}?done={done}",
                s.id
            )))
        }
        Err(SubmitError::Refused(r)) => {
            if let Err(e) = drop_pending(&state, &id).await {
                tracing::warn!(error = %e, upload = %id, "pending upload not removed");
            }
            #[derive(Deserialize, Default)]
            struct Answered {
                #[serde(default)]
                errors: Vec<Problem>,
                #[serde(default)]
                warnings: Vec<Problem>,
            }
            let doc: Answered = serde_json::from_slice(&r.body).unwrap_or_default();
            Ok(page(
                r.status,
                &upload_form(
                    &state,
                    &signed,
                    Some(Findings {
                        headline: format!("{} was refused at filing.", p.file_name),
                        errors: doc.errors,
                        warnings: doc.warnings,
                    }),
                ),
            ))
        }
        Err(SubmitError::Internal(e)) => Err(e.into()),
    }
}

async fn discard(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    signed.check_csrf(&f.csrf)?;
    pending(&state, &signed, &id).await?;
    drop_pending(&state, &id).await?;
    Ok(see_other("/portal/upload"))
}
