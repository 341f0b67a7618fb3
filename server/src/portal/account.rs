//! The account page: a user's passkeys.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::PortalState;
use super::ceremony::Kind;
use super::render::{Nav, PageResult, page, see_other, when};
use super::session::SignedIn;
use super::signin::{CsrfForm, EnrolPage, RegisterForm, finish_registration, start_registration};
use crate::accounts::{self};

pub(super) struct KeyRow {
    id: String,
    name: String,
    created: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "portal/account.html")]
pub(super) struct AccountPage {
    nav: Option<Nav>,
    email: String,
    role: String,
    session_ends: String,
    keys: Vec<KeyRow>,
    csrf: String,
}

pub(super) async fn account(State(state): State<PortalState>, signed: SignedIn) -> PageResult {
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

pub(super) async fn new_passkey_page(
    State(state): State<PortalState>,
    signed: SignedIn,
) -> PageResult {
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

pub(super) async fn add_passkey(
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

pub(super) async fn remove_passkey(
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
