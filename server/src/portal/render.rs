//! Rendering pages: a template with its status, the header, times, redirects.

use askama::Template;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Duration, Utc};

use super::PortalState;
use super::error::PortalError;
use super::session::SignedIn;
use crate::Error;
use crate::i18n::Lang;

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

/// What every page has around its content: the language it is in, the time zone
/// its times are shown in, and the signed-in user's navigation (none before
/// sign-in). Templates reach texts through it (`page.t(KEY)`).
pub(super) struct Page {
    pub(super) lang: Lang,
    tz: chrono_tz::Tz,
    pub(super) nav: Option<Nav>,
}

impl Page {
    /// The page of a signed-in user: their language (or their browser's).
    pub(super) fn of(s: &SignedIn, state: &PortalState, headers: &HeaderMap) -> Self {
        let lang = s
            .user
            .language
            .as_deref()
            .and_then(Lang::from_tag)
            .unwrap_or_else(|| browser_lang(headers));
        Self {
            lang,
            tz: state.portal.config.tz(),
            nav: Some(Nav {
                email: s.user.email.clone(),
                role: s.user.role.clone(),
                admin: s.user.is_admin(),
                officer: s.user.is_officer(),
                csrf: s.csrf.clone(),
            }),
        }
    }

    /// A page in English without navigation, where no request is at hand.
    pub(super) fn plain() -> Self {
        Self {
            lang: Lang::En,
            tz: crate::i18n::DEFAULT_ZONE,
            nav: None,
        }
    }

    /// A page before sign-in: the browser's language.
    pub(super) fn anonymous(state: &PortalState, headers: &HeaderMap) -> Self {
        Self {
            lang: browser_lang(headers),
            tz: state.portal.config.tz(),
            nav: None,
        }
    }

    pub(super) fn t(&self, key: &str) -> String {
        self.lang.t(key)
    }

    pub(super) fn t_with(
        &self,
        key: &str,
        args: &[(&'static str, &dyn std::fmt::Display)],
    ) -> String {
        self.lang.t_with(key, args)
    }

    /// A message with one argument (what templates call).
    pub(super) fn t1(&self, key: &str, name: &'static str, value: &str) -> String {
        self.lang.t_with(key, &[(name, &value)])
    }

    /// A message with two arguments (what templates call).
    pub(super) fn t2(
        &self,
        key: &str,
        n1: &'static str,
        v1: &str,
        n2: &'static str,
        v2: &str,
    ) -> String {
        self.lang.t_with(key, &[(n1, &v1), (n2, &v2)])
    }

    /// A time as the portal shows it (`2026-12-05 11:26 CET`).
    pub(super) fn when(&self, t: &DateTime<Utc>) -> String {
        crate::i18n::when(t, self.tz)
    }

    /// [`Page::when`] of a time kept as RFC 3339 text (the log's); as it is if it
    /// does not parse.
    pub(super) fn when_text(&self, t: &str) -> String {
        DateTime::parse_from_rfc3339(t)
            .map_or_else(|_| t.to_owned(), |t| self.when(&t.with_timezone(&Utc)))
    }

    /// A submission's or pre-registration's state in words.
    pub(super) fn state(&self, state: &str) -> String {
        self.lang.label("state", state)
    }

    /// A document type in words.
    pub(super) fn doc_type(&self, code: &str) -> String {
        self.lang.label("type", code)
    }

    /// A role in words.
    pub(super) fn role(&self, role: &str) -> String {
        self.lang.label("role", role)
    }

    /// Who acted, in words: a portal user by e-mail (from `emails`), the operator by
    /// name, ivan itself, the authority, the employer's software; the id as it is
    /// for anything else.
    pub(super) fn actor(
        &self,
        actor: &str,
        emails: &std::collections::HashMap<String, String>,
    ) -> String {
        match actor.split_once(':') {
            Some(("user", id)) => emails
                .get(id)
                .cloned()
                .unwrap_or_else(|| self.t("actor-user")),
            Some(("operator", name)) => self.t_with("actor-operator", &[("name", &name)]),
            Some(("system", _)) => self.t("actor-system"),
            Some(("authority", _)) => self.t("actor-authority"),
            Some(("api-token", _)) => self.t("actor-api"),
            Some(("phone", _)) => self.t("actor-phone"),
            _ => actor.to_owned(),
        }
    }
}

/// The browser's language (`Accept-Language`), English without one.
fn browser_lang(headers: &HeaderMap) -> Lang {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Lang::En, Lang::negotiate)
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
