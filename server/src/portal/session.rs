//! Portal sessions: a random 256-bit secret in a cookie (`HttpOnly`,
//! `SameSite=Strict`, `Path=/portal`, and `Secure` with the `__Host-` prefix unless
//! the portal is plain http on loopback); the database keeps only its SHA-256, the
//! user, the passkey that signed in, and a CSRF token. A session ends after
//! `portal.session_idle_secs` without a request, `portal.session_absolute_secs` after
//! sign-in, at sign-out, or when the user is revoked.
//!
//! Every state-changing form carries the session's CSRF token (`csrf`), compared in
//! constant time; a POST whose `Origin` header names another origin is refused too.
//!
//! **Re-confirmation.** Pages and forms that manage credentials (passkeys, API tokens,
//! phone accesses and their PINs) need a passkey assertion from the last
//! `portal.reauth_valid_secs` (sign-in counts): otherwise the page sends the user to
//! `/portal/reauth` first. So a session left open in a browser cannot, alone, mint an
//! API token or add the finder's passkey.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use retention::{Db, Sha256Hex};

use super::Portal;
use super::PortalState;
use super::error::PortalError;
use crate::Error;
use crate::accounts::{self, User, sessions};

pub use mobile_api::http::SourceLimiter;

/// The session cookie's name.
pub fn cookie_name(portal: &Portal) -> &'static str {
    if portal.secure_cookies {
        "__Host-ivan_portal"
    } else {
        "ivan_portal"
    }
}

/// The `Set-Cookie` value for a session secret (or, with `None`, one that clears it).
pub fn set_cookie(portal: &Portal, secret: Option<&str>) -> String {
    let (value, age) = match secret {
        Some(s) => (s, portal.config.session_absolute_secs.to_string()),
        None => ("", "0".to_owned()),
    };
    // `__Host-` cookies must have Path=/; the others are scoped to the portal.
    let (path, secure) = if portal.secure_cookies {
        ("/", "; Secure")
    } else {
        ("/portal", "")
    };
    format!(
        "{}={value}; Path={path}; Max-Age={age}; HttpOnly; SameSite=Strict{secure}",
        cookie_name(portal)
    )
}

/// Starts a session for `user`, signed in with `passkey_id`; returns the cookie secret.
pub async fn start(
    portal: &Portal,
    db: &Db,
    user: &User,
    passkey_id: &str,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    let secret = URL_SAFE_NO_PAD.encode(retention::keys::os_random::<32>()?);
    let csrf = URL_SAFE_NO_PAD.encode(retention::keys::os_random::<32>()?);
    let expires =
        now + Duration::seconds(i64::try_from(portal.config.session_absolute_secs).unwrap_or(3600));
    let id = Sha256Hex::of(secret.as_bytes());
    sessions::insert(
        db,
        sessions::New {
            id_sha256: id.as_str(),
            user_id: &user.id,
            passkey_id,
            csrf_token: &csrf,
            now,
            expires_at: expires,
        },
    )
    .await?;
    Ok(secret)
}

pub use accounts::sessions::{delete_ended, end, reconfirmed};

/// A signed-in user, from the session cookie.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub session: String,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
    /// The session's last passkey assertion (sign-in or re-confirmation).
    pub reauth_at: Option<DateTime<Utc>>,
    /// Whether that was within `portal.reauth_valid_secs`.
    pub recently_confirmed: bool,
}

impl SignedIn {
    /// The session's CSRF token must be `given`.
    pub fn check_csrf(&self, given: &str) -> Result<(), PortalError> {
        if bool::from(subtle::ConstantTimeEq::ct_eq(
            self.csrf.as_bytes(),
            given.as_bytes(),
        )) {
            Ok(())
        } else {
            metrics::counter!("ivan_portal_csrf_refused_total").increment(1);
            Err(PortalError::Csrf)
        }
    }

    /// Credential management needs a recent passkey assertion: `Err` sends the user
    /// to confirm with their passkey, then back to `back` (a portal path).
    pub fn require_recent(&self, back: &str) -> Result<(), PortalError> {
        if self.recently_confirmed {
            Ok(())
        } else {
            Err(PortalError::Reconfirm(back.to_owned()))
        }
    }

    /// Admin pages answer 403 to clerks.
    pub fn require_admin(&self) -> Result<(), PortalError> {
        if self.user.is_admin() {
            Ok(())
        } else {
            Err(PortalError::Forbidden("error-admins-only"))
        }
    }
}

/// A signed-in user of an employer (a clerk or an admin): the extractor of every
/// employer page. A compliance officer gets 403 here.
#[derive(Debug, Clone)]
pub struct EmployerUser {
    pub signed: SignedIn,
    pub employer_id: String,
}

/// The extractor of pages for one kind of user: [`SignedIn`] narrowed by `$narrow`
/// (an `Option` of the narrowed user), else 403 with `$refusal`. It derefs to the
/// `SignedIn` it narrows.
macro_rules! narrowed_extractor {
    ($ty:ident, $refusal:literal, |$signed:ident| $narrow:expr) => {
        impl std::ops::Deref for $ty {
            type Target = SignedIn;
            fn deref(&self) -> &SignedIn {
                &self.signed
            }
        }

        impl FromRequestParts<PortalState> for $ty {
            type Rejection = PortalError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &PortalState,
            ) -> Result<Self, PortalError> {
                let $signed = SignedIn::from_request_parts(parts, state).await?;
                $narrow.ok_or_else(|| PortalError::Forbidden($refusal))
            }
        }
    };
}

narrowed_extractor!(EmployerUser, "error-employers-only", |signed| {
    let employer_id = signed.user.employer_id.clone();
    employer_id.map(|employer_id| EmployerUser {
        signed,
        employer_id,
    })
});

impl EmployerUser {
    /// The caller as intake and the submissions module know it.
    pub async fn caller(&self, db: &Db) -> Result<crate::employers::Caller, Error> {
        let registration_number = crate::employers::get(db, &self.employer_id)
            .await?
            .ok_or_else(|| Error::NotFound("the employer no longer exists".into()))?
            .registration_number;
        Ok(crate::employers::Caller {
            employer_id: self.employer_id.clone(),
            registration_number,
            actor: self.user.actor(),
        })
    }
}

/// A signed-in compliance officer: the extractor of the compliance pages. Employers'
/// users get 403 here.
#[derive(Debug, Clone)]
pub struct OfficerUser {
    pub signed: SignedIn,
    pub officer: crate::compliance::officers::Officer,
}

narrowed_extractor!(OfficerUser, "error-officers-only", |signed| {
    let officer = crate::compliance::officers::Officer::of_user(&signed.user);
    officer.map(|officer| OfficerUser { signed, officer })
});

/// The value of the cookie `name`, if the request has it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<PortalState> for SignedIn {
    type Rejection = PortalError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &PortalState,
    ) -> Result<Self, PortalError> {
        let portal = &state.portal;
        let now = state.intake.clock().now();
        let required = || {
            if parts.method == Method::GET {
                PortalError::SignInRequired
            } else {
                PortalError::SessionEnded
            }
        };
        let Some(secret) = cookie(&parts.headers, cookie_name(portal)) else {
            return Err(required());
        };
        let id = Sha256Hex::of(secret.as_bytes());
        let Some(sessions::Live {
            user_id,
            csrf_token: csrf,
            last_seen_at: last_seen,
            expires_at,
            reauth_at,
        }) = sessions::live(&state.db, id.as_str()).await?
        else {
            return Err(required());
        };
        let idle = Duration::seconds(i64::try_from(portal.config.session_idle_secs).unwrap_or(60));
        if expires_at <= now || last_seen + idle <= now {
            end(&state.db, id.as_str(), now).await?;
            return Err(required());
        }
        // Note activity at most once a minute: fewer writes, same idle timeout.
        if now - last_seen > Duration::seconds(60) {
            sessions::touch(&state.db, id.as_str(), now).await?;
        }
        let user = accounts::user(&state.db, &user_id)
            .await?
            .ok_or_else(required)?;
        let window =
            Duration::seconds(i64::try_from(portal.config.reauth_valid_secs).unwrap_or(600));
        Ok(SignedIn {
            user,
            session: id.as_str().to_owned(),
            csrf,
            expires_at,
            reauth_at,
            recently_confirmed: reauth_at.is_some_and(|t| t + window > now),
        })
    }
}

/// Layer of the portal's router: refuses every state-changing request whose `Origin`
/// names another site, before any handler runs. Browsers send `Origin` with every
/// POST; a request without one (not a browser) still needs the CSRF token.
pub async fn refuse_foreign_origin(
    axum::extract::State(portal): axum::extract::State<Portal>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !matches!(*req.method(), Method::GET | Method::HEAD)
        && let Err(refused) = check_origin(&portal, req.headers())
    {
        return refused.into_response();
    }
    next.run(req).await
}

fn check_origin(portal: &Portal, headers: &HeaderMap) -> Result<(), PortalError> {
    match headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => Ok(()),
        Some(o) if o == portal.origin.as_str().trim_end_matches('/') => Ok(()),
        Some(o) => {
            tracing::warn!(origin = o, "portal POST from another origin refused");
            Err(PortalError::Csrf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_strict_and_secure_off_loopback() {
        let local = Portal::new(&super::super::PortalConfig::default(), 8080).unwrap();
        let c = set_cookie(&local, Some("abc"));
        assert!(c.starts_with("ivan_portal=abc; Path=/portal;"), "{c}");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"));
        assert!(!c.contains("Secure"));
        let remote = Portal::new(
            &super::super::PortalConfig {
                public_url: Some("https://p.example".into()),
                ..Default::default()
            },
            1,
        )
        .unwrap();
        let c = set_cookie(&remote, Some("abc"));
        assert!(c.starts_with("__Host-ivan_portal=abc; Path=/;"), "{c}");
        assert!(c.ends_with("; Secure"));
        assert!(set_cookie(&remote, None).contains("Max-Age=0"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; ivan_portal=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h, "ivan_portal"), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
