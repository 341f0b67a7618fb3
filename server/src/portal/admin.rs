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
use super::render::{Page, PageResult, page, see_other};
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
    page: Page,
    csrf: String,
    notice: Option<String>,
    items: Vec<PhoneRow>,
}

#[derive(Debug, Deserialize)]
struct Done {
    #[serde(default)]
    done: String,
}

async fn phones(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
    signed: EmployerUser,
    Query(d): Query<Done>,
) -> PageResult {
    signed.require_admin()?;
    signed.require_recent("/portal/phones")?;
    let p = Page::of(&signed, &state, &headers);
    let m = &state.mobile;
    let items = access::list(m.db(), &signed.employer_id)
        .await
        .map_err(crate::Error::from)?
        .into_iter()
        .map(|a| PhoneRow {
            last_login: a
                .last_login_at
                .as_ref()
                .map_or_else(|| p.t("never"), |t| p.when(t)),
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
        "added" => Some(p.t("phones-added")),
        "sent" => Some(p.t("phones-sent")),
        "deactivated" => Some(p.t("phones-deactivated-notice")),
        _ => None,
    };
    Ok(page(
        StatusCode::OK,
        &PhonesPage {
            page: p,
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
    page: Page,
    heading: String,
    intro: String,
    secret: String,
    warning: String,
    follow_up: Option<(String, String)>,
    csrf: String,
    back: &'static str,
}

async fn new_pin(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
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
    let p = Page::of(&signed, &state, &headers);
    Ok(page(
        StatusCode::OK,
        &SecretPage {
            heading: p.t1("pin-heading", "phone", &a.phone),
            intro: p.t2("pin-intro", "holder", &a.holder_name, "phone", &a.phone),
            secret: pin,
            warning: p.t("pin-warning"),
            follow_up: Some((format!("/portal/phones/{}/send", a.id), p.t("pin-send"))),
            page: p,
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
    page: Page,
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
    headers: axum::http::HeaderMap,
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
    let p = Page::of(&signed, &state, &headers);
    Ok(page(
        StatusCode::OK,
        &PreregsPage {
            states: prereg::State::ALL.map(prereg::State::as_str),
            next: next
                .map(|after| format!("/portal/preregistrations?state={}&after={after}", q.state)),
            state: q.state,
            items: items
                .into_iter()
                .map(|r| PreregRow {
                    deadline: p.when(&r.deadline_at),
                    id: r.id,
                    document_number: r.document_number,
                    person_id: r.person_id,
                    surname: r.surname,
                    given_name: r.given_name,
                    kind: r.kind.as_str(),
                    effective_date: r.effective_date,
                    state: r.state.as_str(),
                    paired_with: r.paired_with,
                })
                .collect(),
            page: p,
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
    created_by_id: String,
    revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/tokens.html")]
struct TokensPage {
    page: Page,
    csrf: String,
    notice: Option<String>,
    items: Vec<TokenRow>,
}

async fn tokens(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
    signed: EmployerUser,
    Query(d): Query<Done>,
) -> PageResult {
    signed.require_admin()?;
    signed.require_recent("/portal/tokens")?;
    let p = Page::of(&signed, &state, &headers);
    let tokens = employers::list_tokens(&state.db, &signed.employer_id).await?;
    let emails = crate::accounts::emails_of(
        &state.db,
        &tokens
            .iter()
            .filter_map(|t| t.created_by.as_deref())
            .collect::<Vec<_>>(),
    )
    .await?;
    let items = tokens
        .into_iter()
        .map(|t| {
            let created_by_id = t.created_by.unwrap_or_default();
            TokenRow {
                label: t.label.unwrap_or_default(),
                allowed: if t.allowed_ips.is_empty() {
                    p.t("tokens-any-address")
                } else {
                    t.allowed_ips.join(", ")
                },
                created: p.when(&t.created_at),
                created_by: p.actor(&created_by_id, &emails),
                created_by_id,
                revoked: t.revoked_at.as_ref().map(|r| p.when(r)),
                id: t.id,
            }
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &TokensPage {
            csrf: signed.csrf.clone(),
            notice: (d.done == "revoked").then(|| p.t("tokens-revoked-notice")),
            items,
            page: p,
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
    headers: axum::http::HeaderMap,
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
    let p = Page::of(&signed, &state, &headers);
    let mut r = page(
        StatusCode::CREATED,
        &SecretPage {
            heading: p.t1("token-heading", "label", &created.label),
            intro: if created.allowed_ips.is_empty() {
                p.t("token-intro-any")
            } else {
                p.t1(
                    "token-intro-from",
                    "addresses",
                    &created.allowed_ips.join(", "),
                )
            },
            secret: created.api_token,
            warning: p.t("token-warning"),
            page: p,
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
