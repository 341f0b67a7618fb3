//! Rendering pages: a template with its status, the header, times, redirects.

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Duration, Utc};

use super::PortalState;
use super::error::PortalError;
use super::session::SignedIn;
use crate::Error;

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

pub(super) fn json_attr<T: serde::Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::Invalid(e.to_string()))
}

pub(super) fn ceremony_valid(state: &PortalState) -> Duration {
    Duration::seconds(i64::try_from(state.portal.config.ceremony_valid_secs).unwrap_or(300))
}
