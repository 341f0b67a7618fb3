//! The account page: a user's language and passkeys.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};

use super::PortalState;
use super::ceremony::Kind;
use super::render::{Page, PageResult, page, see_other};
use super::session::SignedIn;
use super::signin::{CsrfForm, EnrolPage, RegisterForm, finish_registration, start_registration};
use crate::accounts::{self};
use crate::i18n::Lang;

pub(super) struct KeyRow {
    id: String,
    name: String,
    created: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "portal/account.html")]
pub(super) struct AccountPage {
    page: Page,
    notice: Option<String>,
    email: String,
    role: String,
    session_ends: String,
    languages: [Lang; 3],
    keys: Vec<KeyRow>,
    csrf: String,
}

/// What was just done, for the notice at the top (`?done=`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct Done {
    done: String,
}

pub(super) async fn account(
    State(state): State<PortalState>,
    headers: HeaderMap,
    signed: SignedIn,
    Query(done): Query<Done>,
) -> PageResult {
    signed.require_recent("/portal/account")?;
    let p = Page::of(&signed, &state, &headers);
    let notice = match done.done.as_str() {
        "passkey" => Some(p.t("account-passkey-added-notice")),
        "language" => Some(p.t("account-language-saved")),
        _ => None,
    };
    let keys = accounts::passkeys(&state.db, &signed.user.id)
        .await?
        .into_iter()
        .map(|k| KeyRow {
            id: k.id,
            name: k.name,
            created: p.when(&k.created_at),
            last_used: k
                .last_used_at
                .as_ref()
                .map_or_else(|| p.t("never"), |t| p.when(t)),
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &AccountPage {
            notice,
            email: signed.user.email.clone(),
            role: signed.user.role.clone(),
            session_ends: p.when(&signed.expires_at),
            languages: Lang::ALL,
            keys,
            csrf: signed.csrf.clone(),
            page: p,
        },
    ))
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct LanguageForm {
    csrf: String,
    language: String,
}

/// Keeps the user's choice of language; every page of theirs is in it from now on.
pub(super) async fn set_language(
    State(state): State<PortalState>,
    signed: SignedIn,
    Form(f): Form<LanguageForm>,
) -> PageResult {
    signed.check_csrf(&f.csrf)?;
    let lang: Lang = f
        .language
        .parse()
        .map_err(|e| crate::Error::Invalid(format!("language {e}")))?;
    accounts::set_language(&state.db, &signed.user.id, lang.tag()).await?;
    Ok(see_other("/portal/account?done=language"))
}

pub(super) async fn new_passkey_page(
    State(state): State<PortalState>,
    headers: HeaderMap,
    signed: SignedIn,
) -> PageResult {
    signed.require_recent("/portal/account")?;
    let (options, ceremony) = start_registration(&state, &signed.user, Kind::AddPasskey).await?;
    let p = Page::of(&signed, &state, &headers);
    Ok(page(
        StatusCode::OK,
        &EnrolPage {
            heading: p.t("account-passkey-add"),
            default_name: p.t("account-passkey-another"),
            page: p,
            action: "/portal/account/passkeys",
            email: signed.user.email.clone(),
            role: signed.user.role.clone(),
            options,
            ceremony,
            token: String::new(),
            csrf: signed.csrf.clone(),
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
    Ok(see_other("/portal/account?done=passkey"))
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
