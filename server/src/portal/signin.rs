//! Signing in and out, enrolment from the mailed link, and re-confirmation.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use retention::Payload;
use retention::ledger::NewEntry;
use serde::Deserialize;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential,
};

use super::PortalState;
use super::ceremony::{self, Binding, Kind};
use super::error::PortalError;
use super::pages::safe_next;
use super::render::{Page, PageResult, ceremony_valid, json_attr, page, see_other};
use super::session::{self, SignedIn};
use super::submissions::{StepUp, approve_step_up, step_up_prompt};
use crate::Error;
use crate::accounts::{self, User};

#[derive(Template)]
#[template(path = "portal/sign_in.html")]
pub(super) struct SignInPage {
    page: Page,
    options: String,
    ceremony: String,
}

pub(super) async fn sign_in_page(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
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
            page: Page::anonymous(&state, &headers),
            options: json_attr(&options)?,
            ceremony: id,
        },
    ))
}

pub(super) fn limit(
    state: &PortalState,
    source: &mobile_api::http::Source,
) -> Result<(), PortalError> {
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
pub(super) struct CeremonyForm {
    pub(super) ceremony: String,
    pub(super) credential: String,
    #[serde(default)]
    pub(super) csrf: String,
}

pub(super) async fn sign_in(
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

pub(super) fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = cookie.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub(super) async fn log_user_event(
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
            payload: Some(Payload::json(&payload)),
        })
        .await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: String,
}

pub(super) async fn sign_out(
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

#[derive(Template)]
#[template(path = "portal/enrol.html")]
pub(super) struct EnrolPage {
    pub(super) page: Page,
    pub(super) heading: String,
    pub(super) action: &'static str,
    pub(super) email: String,
    pub(super) role: String,
    pub(super) options: String,
    pub(super) ceremony: String,
    pub(super) token: String,
    pub(super) csrf: String,
    pub(super) default_name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub(super) fn invalid_link() -> PortalError {
    PortalError::Keyed(StatusCode::NOT_FOUND, "error-invalid-link")
}

/// Starts a passkey registration for `user`; returns the options and ceremony id.
pub(super) async fn start_registration(
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

pub(super) async fn enrol_page(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
    source: mobile_api::http::Source,
    Query(q): Query<TokenQuery>,
) -> PageResult {
    limit(&state, &source)?;
    let now = state.intake.clock().now();
    let (user, _) = accounts::invitation(&state.db, &q.token, now)
        .await?
        .ok_or_else(invalid_link)?;
    let (options, ceremony) = start_registration(&state, &user, Kind::Enrol).await?;
    let p = Page::anonymous(&state, &headers);
    Ok(page(
        StatusCode::OK,
        &EnrolPage {
            heading: p.t("enrol-title"),
            default_name: p.t("enrol-default-name"),
            page: p,
            action: "/portal/enrol",
            email: user.email.clone(),
            role: user.role.clone(),
            options,
            ceremony,
            token: q.token,
            csrf: String::new(),
        },
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct RegisterForm {
    pub(super) ceremony: String,
    pub(super) credential: String,
    pub(super) name: String,
    #[serde(default)]
    pub(super) token: String,
    #[serde(default)]
    pub(super) csrf: String,
}

/// Finishes a registration ceremony for `user`.
pub(super) async fn finish_registration(
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

pub(super) async fn enrol(
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

#[derive(Template)]
#[template(path = "portal/reauth.html")]
pub(super) struct ReauthPage {
    page: Page,
    csrf: String,
    step_up: StepUp,
    next: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct NextQuery {
    #[serde(default)]
    next: String,
}

pub(super) async fn reauth_page(
    State(state): State<PortalState>,
    headers: axum::http::HeaderMap,
    signed: SignedIn,
    Query(q): Query<NextQuery>,
) -> PageResult {
    let step_up = step_up_prompt(&state, &signed, &Binding::reauth(&signed.session)).await?;
    Ok(page(
        StatusCode::OK,
        &ReauthPage {
            page: Page::of(&signed, &state, &headers),
            csrf: signed.csrf.clone(),
            step_up,
            next: safe_next(&q.next).to_owned(),
        },
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct ReauthForm {
    #[serde(flatten)]
    answer: CeremonyForm,
    #[serde(default)]
    next: String,
}

pub(super) async fn reauth(
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
