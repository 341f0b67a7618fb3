//! How a portal request fails: the error type and its page.

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::ceremony::StepUpError;
use axum::extract::FromRequestParts;

use super::PortalState;
use super::pages::safe_next;
use super::render::{self, Page};
use super::session::SignedIn;
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
    /// Not for this user: the key of the message saying whose page it is.
    Forbidden(&'static str),
    /// The step-up was for another action or target.
    WrongApproval,
    /// Credential management needs a fresh passkey confirmation; then back here.
    Reconfirm(String),
    /// A refusal in the portal's own words: the status and its message's key.
    Keyed(StatusCode, &'static str),
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
    page: Page,
    title: String,
    message: String,
    back: &'static str,
}

/// What a portal error page says, kept on the response until [`error_pages`] renders
/// it in the reader's language with their navigation.
#[derive(Debug, Clone)]
pub struct ErrorText {
    message: Message,
    back: &'static str,
}

#[derive(Debug, Clone)]
enum Message {
    /// A message of the portal's own (`server/locales`).
    Key(&'static str),
    /// A lower layer's words (a refused value, a missing record), as they are.
    Text(String),
}

impl ErrorText {
    fn render(&self, status: StatusCode, page_: Page) -> Response {
        let message = match &self.message {
            Message::Key(key) => page_.t(key),
            Message::Text(text) => text.clone(),
        };
        let title = page_
            .lang
            .try_t(&format!("error-title-{}", status.as_u16()))
            .unwrap_or_else(|| page_.t("error-title-other"));
        render::page(
            status,
            &ErrorPage {
                page: page_,
                title,
                message,
                back: self.back,
            },
        )
    }
}

/// Whether `path` is the portal's (`/portal` and below).
pub fn is_portal_path(path: &str) -> bool {
    path == "/portal" || path.starts_with("/portal/")
}

/// The portal's "not found" page (an unknown portal address).
pub fn not_found() -> Response {
    PortalError::Keyed(StatusCode::NOT_FOUND, "error-not-found").into_response()
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let keyed = |status, key| (status, Message::Key(key), "/portal/dashboard");
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
                Message::Key("error-session-ended"),
                "/portal/sign-in",
            ),
            PortalError::Csrf => keyed(StatusCode::FORBIDDEN, "error-csrf"),
            PortalError::Forbidden(key) => keyed(StatusCode::FORBIDDEN, key),
            PortalError::WrongApproval => keyed(StatusCode::FORBIDDEN, "error-wrong-approval"),
            PortalError::Keyed(status, key) => keyed(status, key),
            PortalError::App(e) => {
                let status = e.status();
                let message = if status.is_server_error() {
                    tracing::error!(error = %e, "portal request failed");
                    Message::Key("error-ours")
                } else if status == StatusCode::NOT_FOUND {
                    // Unknown and another employer's ids read alike, in the reader's words.
                    Message::Key("error-not-found")
                } else {
                    Message::Text(e.to_string())
                };
                let back = match &e {
                    Error::Mobile(mobile_api::Error::TooManyRequests { .. }) => "/portal/sign-in",
                    _ => "/portal/dashboard",
                };
                let text = ErrorText { message, back };
                // Rendered now in English without navigation; `error_pages` renders
                // it again for the reader.
                let mut resp = text.render(status, Page::plain());
                if let Error::Mobile(mobile_api::Error::TooManyRequests { retry_after }) = &e
                    && let Ok(v) = retry_after.as_secs().max(1).to_string().parse()
                {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    crate::error::retry_later(&mut resp);
                }
                resp.extensions_mut().insert(text);
                return resp;
            }
        };
        let text = ErrorText { message, back };
        let mut resp = text.render(status, Page::plain());
        resp.extensions_mut().insert(text);
        resp
    }
}

/// Layer of the whole application: renders every portal error page again in the
/// reader's language, with their navigation when they are signed in (a 403 keeps
/// the menu; a 404 of an unknown portal address is a page, not JSON).
pub async fn error_pages(
    axum::extract::State(state): axum::extract::State<PortalState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Only portal addresses have portal error pages: the APIs pay nothing here.
    if !is_portal_path(req.uri().path()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let (method, uri, headers) = (
        parts.method.clone(),
        parts.uri.clone(),
        parts.headers.clone(),
    );
    let resp = next
        .run(axum::extract::Request::from_parts(parts, body))
        .await;
    let Some(text) = resp.extensions().get::<ErrorText>().cloned() else {
        return resp;
    };
    let mut probe = axum::http::Request::builder().method(method).uri(uri);
    if let Some(h) = probe.headers_mut() {
        *h = headers.clone();
    }
    let Ok(probe) = probe.body(()) else {
        return resp;
    };
    let (mut parts, ()) = probe.into_parts();
    let page_ = match SignedIn::from_request_parts(&mut parts, &state).await {
        Ok(signed) => Page::of(&signed, &state, &headers),
        Err(_) => Page::anonymous(&state, &headers),
    };
    let (mut head, _) = resp.into_parts();
    let fresh = text.render(head.status, page_);
    let (fresh_head, body) = fresh.into_parts();
    head.headers.remove(header::CONTENT_LENGTH);
    for (k, v) in &fresh_head.headers {
        head.headers.insert(k, v.clone());
    }
    Response::from_parts(head, body)
}
