//! How a portal request fails: the error type and its page.

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::ceremony::StepUpError;
use super::pages::safe_next;
use super::render::{Nav, page};
use crate::Error;

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
pub(super) struct ErrorPage {
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

pub(super) fn reason(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_owned()
}
