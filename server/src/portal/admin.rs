//! The portal's pages for the mobile channel and API tokens.
//!
//! | method and path | who | what |
//! |---|---|---|
//! | `GET /portal/phones`, `POST /portal/phones` | admin | phone accesses; authorise a phone |
//! | `POST /portal/phones/{id}/pin` | admin | generate (or regenerate) the PIN, shown once |
//! | `POST /portal/phones/{id}/send` | admin | send the current, unused PIN by SMS |
//! | `POST /portal/phones/{id}/deactivate` | admin | deactivate (the PIN stops working, sessions end) |
//! | `GET /portal/preregistrations?state=&after=` | any user | pre-registrations with deadlines |
//! | `GET /portal/preregistrations/{id}/registration-form` | any user | the prefilled registration form (XML) |
//! | `GET /portal/tokens`, `POST /portal/tokens` | admin | API tokens; create one (shown once) |
//! | `POST /portal/tokens/{id}/revoke` | admin | revoke a token |
//!
//! The same library calls as the API's (`mobile_api::access`, `mobile_api::prereg`,
//! [`crate::employers`]), with the user as the logged actor.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use mobile_api::access;
use mobile_api::prereg;
use serde::Deserialize;

use super::PortalState;
use super::render::{Nav, PageResult, page, see_other, when};
use super::session::EmployerUser;
use super::signin::CsrfForm;
use crate::employers;
use crate::submissions::preregistrations;

pub fn routes() -> Router<PortalState> {
    Router::new()
        .route("/portal/phones", get(phones).post(add_phone))
        .route("/portal/phones/{id}/pin", post(new_pin))
        .route("/portal/phones/{id}/send", post(send_pin))
        .route("/portal/phones/{id}/deactivate", post(deactivate))
        .route("/portal/preregistrations", get(preregistrations))
        .route(
            "/portal/preregistrations/{id}/registration-form",
            get(registration_form),
        )
        .route("/portal/tokens", get(tokens).post(create_token))
        .route("/portal/tokens/{id}/revoke", post(revoke_token))
}

/// A checked, admin-only form post: the session's CSRF token, the role, a recent
/// passkey confirmation (else back to `page` after confirming). (The portal's router
/// has already refused posts from other origins.)
fn admin_post<T: HasCsrf>(
    signed: &EmployerUser,
    form: T,
    page: &str,
) -> Result<T, super::error::PortalError> {
    signed.check_csrf(form.csrf())?;
    signed.require_admin()?;
    signed.require_recent(page)?;
    Ok(form)
}

trait HasCsrf {
    fn csrf(&self) -> &str;
}

impl HasCsrf for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

// ---------------------------------------------------------------- phones

struct PhoneRow {
    id: String,
    phone: String,
    holder_name: String,
    active: bool,
    locked: bool,
    has_pin: bool,
    pin_sendable: bool,
    registered: bool,
    last_login: String,
}

#[derive(Template)]
#[template(path = "portal/phones.html")]
struct PhonesPage {
    nav: Option<Nav>,
    csrf: String,
    notice: Option<&'static str>,
    items: Vec<PhoneRow>,
}

#[derive(Debug, Deserialize)]
struct Done {
    #[serde(default)]
    done: String,
}

async fn phones(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Query(d): Query<Done>,
) -> PageResult {
    signed.require_admin()?;
    signed.require_recent("/portal/phones")?;
    let m = &state.mobile;
    let items = access::list(m.db(), &signed.employer_id)
        .await
        .map_err(crate::Error::from)?
        .into_iter()
        .map(|a| PhoneRow {
            last_login: a
                .last_login_at
                .as_ref()
                .map_or_else(|| "never".into(), when),
            id: a.id,
            phone: a.phone,
            holder_name: a.holder_name,
            active: a.active,
            locked: a.locked,
            has_pin: a.has_pin,
            pin_sendable: a.pin_sendable,
            registered: a.registered,
        })
        .collect();
    let notice = match d.done.as_str() {
        "added" => Some("Phone added. Generate its PIN next."),
        "sent" => Some("The PIN is on its way by SMS."),
        "deactivated" => Some("Deactivated: its PIN no longer works and its sessions have ended."),
        _ => None,
    };
    Ok(page(
        StatusCode::OK,
        &PhonesPage {
            nav: Nav::of(&signed),
            csrf: signed.csrf.clone(),
            notice,
            items,
        },
    ))
}

#[derive(Debug, Deserialize)]
struct NewPhone {
    #[serde(default)]
    csrf: String,
    phone: String,
    holder_name: String,
}

impl HasCsrf for NewPhone {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn add_phone(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Form(f): Form<NewPhone>,
) -> PageResult {
    let f = admin_post(&signed, f, "/portal/phones")?;
    let m = &state.mobile;
    access::add(
        m.ledger(),
        m.db(),
        signed.user.actor(),
        &signed.employer_id,
        &f.phone,
        &f.holder_name,
    )
    .await
    .map_err(crate::Error::from)?;
    Ok(see_other("/portal/phones?done=added"))
}

#[derive(Template)]
#[template(path = "portal/secret.html")]
struct SecretPage {
    nav: Option<Nav>,
    heading: String,
    intro: String,
    secret: String,
    warning: &'static str,
    follow_up: Option<(String, &'static str)>,
    csrf: String,
    back: &'static str,
}

async fn new_pin(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    admin_post(&signed, f, "/portal/phones")?;
    let m = &state.mobile;
    let (a, pin) = access::new_pin(
        m.ledger(),
        m.db(),
        m.pins(),
        signed.user.actor(),
        &signed.employer_id,
        &id,
    )
    .await
    .map_err(crate::Error::from)?;
    Ok(page(
        StatusCode::OK,
        &SecretPage {
            nav: Nav::of(&signed),
            heading: format!("PIN for {}", a.phone),
            intro: format!(
                "The PIN for {} ({}). Tell it to them, or send it by SMS:",
                a.holder_name, a.phone
            ),
            secret: pin,
            warning: "This PIN is shown only now. Any earlier PIN of this phone no longer works.",
            follow_up: Some((format!("/portal/phones/{}/send", a.id), "Send it by SMS")),
            csrf: signed.csrf.clone(),
            back: "/portal/phones",
        },
    ))
}

async fn send_pin(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    change_phone(&state, &signed, &id, f, access::send_pin, "sent").await
}

async fn deactivate(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    change_phone(&state, &signed, &id, f, access::deactivate, "deactivated").await
}

/// An admin's change `change` of phone access `id` (by the signed-in user, for its
/// employer), then back to the list saying `done`.
async fn change_phone(
    state: &PortalState,
    signed: &EmployerUser,
    id: &str,
    f: CsrfForm,
    change: impl AsyncFnOnce(
        &retention::Ledger,
        &retention::Db,
        retention::Actor,
        &str,
        &str,
    ) -> Result<access::PhoneAccess, mobile_api::Error>,
    done: &str,
) -> PageResult {
    admin_post(signed, f, "/portal/phones")?;
    let m = &state.mobile;
    change(
        m.ledger(),
        m.db(),
        signed.user.actor(),
        &signed.employer_id,
        id,
    )
    .await
    .map_err(crate::Error::from)?;
    Ok(see_other(&format!("/portal/phones?done={done}")))
}

// ---------------------------------------------------------------- pre-registrations

/// Rows per page of the pre-registrations list.
const PAGE_ROWS: i64 = 50;

struct PreregRow {
    id: String,
    document_number: String,
    person_id: String,
    surname: String,
    given_name: String,
    kind: &'static str,
    effective_date: String,
    deadline: String,
    state: &'static str,
    paired_with: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/preregistrations.html")]
struct PreregsPage {
    nav: Option<Nav>,
    states: [&'static str; prereg::State::ALL.len()],
    state: String,
    items: Vec<PreregRow>,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PreregQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    after: String,
}

async fn preregistrations(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Query(q): Query<PreregQuery>,
) -> PageResult {
    let wanted = (!q.state.is_empty())
        .then(|| q.state.parse::<prereg::State>())
        .transpose()
        .map_err(|_| crate::Error::Invalid(format!("unknown state {:?}", q.state)))?;
    let filter = prereg::Filter {
        state: wanted,
        after: (!q.after.is_empty()).then(|| q.after.clone()),
        limit: PAGE_ROWS,
        phone_access_id: None,
    };
    let (items, next) = preregistrations::page(&state.db, &signed.employer_id, &filter).await?;
    Ok(page(
        StatusCode::OK,
        &PreregsPage {
            nav: Nav::of(&signed),
            states: prereg::State::ALL.map(prereg::State::as_str),
            next: next
                .map(|after| format!("/portal/preregistrations?state={}&after={after}", q.state)),
            state: q.state,
            items: items
                .into_iter()
                .map(|p| PreregRow {
                    deadline: when(&p.deadline_at),
                    id: p.id,
                    document_number: p.document_number,
                    person_id: p.person_id,
                    surname: p.surname,
                    given_name: p.given_name,
                    kind: p.kind.as_str(),
                    effective_date: p.effective_date,
                    state: p.state.as_str(),
                    paired_with: p.paired_with,
                })
                .collect(),
        },
    ))
}

async fn registration_form(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path(id): Path<String>,
) -> PageResult {
    let p = preregistrations::get(&state.db, &signed.employer_id, &id).await?;
    let caller = signed.caller(&state.db).await?;
    Ok(crate::api::phones::registration_form_download(
        &caller.registration_number,
        &p,
    )?)
}

// ---------------------------------------------------------------- API tokens

struct TokenRow {
    id: String,
    label: String,
    allowed: String,
    created: String,
    created_by: String,
    revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/tokens.html")]
struct TokensPage {
    nav: Option<Nav>,
    csrf: String,
    notice: Option<&'static str>,
    items: Vec<TokenRow>,
}

async fn tokens(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Query(d): Query<Done>,
) -> PageResult {
    signed.require_admin()?;
    signed.require_recent("/portal/tokens")?;
    let items = employers::list_tokens(&state.db, &signed.employer_id)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            label: t.label.unwrap_or_default(),
            allowed: if t.allowed_ips.is_empty() {
                "any address".into()
            } else {
                t.allowed_ips.join(", ")
            },
            created: when(&t.created_at),
            created_by: t.created_by.unwrap_or_default(),
            revoked: t.revoked_at.as_ref().map(when),
            id: t.id,
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &TokensPage {
            nav: Nav::of(&signed),
            csrf: signed.csrf.clone(),
            notice: (d.done == "revoked").then_some("Revoked: the token no longer works."),
            items,
        },
    ))
}

#[derive(Debug, Deserialize)]
struct NewToken {
    #[serde(default)]
    csrf: String,
    label: String,
    #[serde(default)]
    allowed: String,
}

impl HasCsrf for NewToken {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn create_token(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Form(f): Form<NewToken>,
) -> PageResult {
    let f = admin_post(&signed, f, "/portal/tokens")?;
    let allowed: Vec<String> = f
        .allowed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let created = employers::create_token(
        state.intake.ledger(),
        state.intake.clock(),
        signed.user.actor(),
        &signed.employer_id,
        &f.label,
        &allowed,
    )
    .await?;
    let mut r = page(
        StatusCode::CREATED,
        &SecretPage {
            nav: Nav::of(&signed),
            heading: format!("API token \u{201c}{}\u{201d}", created.label),
            intro: if created.allowed_ips.is_empty() {
                "Give this token to your payroll software. It works from any address:".into()
            } else {
                format!(
                    "Give this token to your payroll software. It works only from {}:",
                    created.allowed_ips.join(", ")
                )
            },
            secret: created.api_token,
            warning: "This token is shown only now; ivan keeps only its hash.",
            follow_up: None,
            csrf: signed.csrf.clone(),
            back: "/portal/tokens",
        },
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

async fn revoke_token(
    State(state): State<PortalState>,
    signed: EmployerUser,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    admin_post(&signed, f, "/portal/tokens")?;
    employers::revoke_token(
        state.intake.ledger(),
        signed.user.actor(),
        &signed.employer_id,
        &id,
    )
    .await?;
    Ok(see_other("/portal/tokens?done=revoked"))
}
