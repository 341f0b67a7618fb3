//! The employer's side of the mobile channel: phone accesses and pre-registrations.
//!
//! | method and path | what |
//! |---|---|
//! | `POST /api/v1/phone-accesses` | authorise a phone `{phone, holder_name}` |
//! | `GET /api/v1/phone-accesses` | the employer's phone accesses |
//! | `DELETE /api/v1/phone-accesses/{id}` | deactivate (its PIN stops working, its sessions end) |
//! | `POST /api/v1/phone-accesses/{id}/pin` | generate a new PIN, shown once in the answer |
//! | `POST /api/v1/phone-accesses/{id}/pin/send` | send the current, unused PIN by SMS |
//! | `GET /api/v1/preregistrations?state=&after=&limit=` | pre-registrations by state |
//! | `GET /api/v1/preregistrations/{id}` | one pre-registration |
//! | `GET /api/v1/preregistrations/{id}/registration-form` | a prefilled, unsigned registration form to complete and sign |

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mobile_api::access::{self, PhoneAccess};
use mobile_api::prereg::{self, Preregistration};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::Authenticated;
use crate::submissions::preregistrations;
use crate::{Error, Result};

/// `POST /api/v1/phone-accesses`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPhoneAccess {
    /// E.164, e.g. `+421901123456`.
    pub phone: String,
    pub holder_name: String,
}

/// A new PIN: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewPin {
    #[serde(flatten)]
    pub access: PhoneAccess,
    pub pin: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneAccessList {
    pub items: Vec<PhoneAccess>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreregQuery {
    /// `received`, `overdue` or `paired`.
    pub state: Option<String>,
    /// Continue after this id.
    pub after: Option<String>,
    /// 1 to 500, default 100.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreregPage {
    pub items: Vec<Preregistration>,
    pub next_after: Option<String>,
}

/// Authorise a phone.
#[utoipa::path(post, path = "/api/v1/phone-accesses", request_body = NewPhoneAccess,
    responses((status = 201, body = PhoneAccess), (status = 400), (status = 401), (status = 409, description = "the phone already has an active access of this employer (other employers' accesses are not disclosed)")))]
pub(super) async fn add(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    body: bytes::Bytes,
) -> Result<Response> {
    let req: NewPhoneAccess = mobile_api::http::parse_json(&body)?;
    let m = &state.mobile;
    let a = access::add(
        m.ledger(),
        m.db(),
        caller.actor(),
        &caller.employer_id,
        &req.phone,
        &req.holder_name,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(a)).into_response())
}

/// The employer's phone accesses.
#[utoipa::path(get, path = "/api/v1/phone-accesses", operation_id = "list_phone_accesses", responses((status = 200, body = PhoneAccessList), (status = 401)))]
pub(super) async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<PhoneAccessList>> {
    let m = &state.mobile;
    Ok(Json(PhoneAccessList {
        items: access::list(m.db(), &caller.employer_id).await?,
    }))
}

/// Deactivate a phone access.
#[utoipa::path(delete, path = "/api/v1/phone-accesses/{id}", params(("id" = String, Path)),
    responses((status = 200, body = PhoneAccess), (status = 401), (status = 404), (status = 409, description = "already deactivated")))]
pub(super) async fn deactivate(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<PhoneAccess>> {
    let m = &state.mobile;
    Ok(Json(
        access::deactivate(m.ledger(), m.db(), caller.actor(), &caller.employer_id, &id).await?,
    ))
}

/// Generate a new PIN (the old one stops working, the phone's sessions end).
#[utoipa::path(post, path = "/api/v1/phone-accesses/{id}/pin", params(("id" = String, Path)),
    responses((status = 201, body = NewPin), (status = 401), (status = 404), (status = 409, description = "deactivated")))]
pub(super) async fn new_pin(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let m = &state.mobile;
    let (a, pin) = access::new_pin(
        m.ledger(),
        m.db(),
        m.pins(),
        caller.actor(),
        &caller.employer_id,
        &id,
    )
    .await?;
    let mut resp = (StatusCode::CREATED, Json(NewPin { access: a, pin })).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// Send the current PIN by SMS (only while it has not been used).
#[utoipa::path(post, path = "/api/v1/phone-accesses/{id}/pin/send", params(("id" = String, Path)),
    responses((status = 202, body = PhoneAccess, description = "queued for sending"), (status = 401), (status = 404),
        (status = 409, description = "no PIN, or it was used already")))]
pub(super) async fn send_pin(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let m = &state.mobile;
    let a = access::send_pin(m.ledger(), m.db(), caller.actor(), &caller.employer_id, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(a)).into_response())
}

/// Pre-registrations, by state.
#[utoipa::path(get, path = "/api/v1/preregistrations", params(PreregQuery),
    responses((status = 200, body = PreregPage), (status = 400), (status = 401)))]
pub(super) async fn preregistrations(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: std::result::Result<Query<PreregQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PreregPage>> {
    let Query(q) = query.map_err(|e| crate::error::bad_query(&e))?;
    let wanted = q
        .state
        .as_deref()
        .map(str::parse::<prereg::State>)
        .transpose()
        .map_err(Error::Invalid)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=super::MAX_PAGE).contains(&limit) {
        return Err(Error::Invalid(format!(
            "limit must be 1 to {}",
            super::MAX_PAGE
        )));
    }
    let filter = prereg::Filter {
        state: wanted,
        after: q.after,
        limit,
        phone_access_id: None,
    };
    let (items, next_after) =
        preregistrations::page(&state.db, &caller.employer_id, &filter).await?;
    Ok(Json(PreregPage { items, next_after }))
}

/// One pre-registration.
#[utoipa::path(get, path = "/api/v1/preregistrations/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Preregistration), (status = 401), (status = 404)))]
pub(super) async fn preregistration(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Preregistration>> {
    Ok(Json(
        preregistrations::get(&state.db, &caller.employer_id, &id).await?,
    ))
}

/// A prefilled, unsigned registration form for a pre-registration.
#[utoipa::path(get, path = "/api/v1/preregistrations/{id}/registration-form", params(("id" = String, Path)),
    responses((status = 200, content_type = "application/xml", body = String), (status = 401), (status = 404)))]
pub(super) async fn registration_form(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let p = preregistrations::get(&state.db, &caller.employer_id, &id).await?;
    registration_form_download(&caller.registration_number, &p)
}

/// The prefilled registration form of `p` as a download (the API's and the portal's).
pub(crate) fn registration_form_download(
    employer_registration_number: &str,
    p: &Preregistration,
) -> Result<Response> {
    let xml = crate::preregistrations::registration_form_xml(employer_registration_number, p)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/xml".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"registration-form-{}.xml\"",
                    p.document_number
                ),
            ),
        ],
        xml,
    )
        .into_response())
}
