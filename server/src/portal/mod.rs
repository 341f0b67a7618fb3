//! The employer portal: server-rendered pages for an employer's clerks and admins,
//! signed in with passkeys (WebAuthn).
//!
//! * [`crate::accounts`] (its own module, below the portal and compliance): users (invited by the operator, `admin` or `clerk`), enrolment
//!   invitations (single use, 24 h, sent through the mail outbox) and passkeys.
//! * [`ceremony`]: WebAuthn ceremonies in progress, kept server-side and single use;
//!   a step-up ceremony is bound to one action on one target.
//! * [`session`]: the session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` unless
//!   the portal is served on loopback over plain HTTP), idle and absolute timeouts,
//!   the per-session CSRF token every form carries.
//! * [`pages`]: sign-in, enrolment, dashboard, submissions, upload and cancel;
//!   [`admin`]: phone accesses, pre-registrations, API tokens (askama templates
//!   under `server/templates/portal`).
//!
//! Pages are in the user's language ([`crate::i18n`]; every template reaches its
//! texts, labels and times through [`render::Page`]); a refusal is a page in that
//! language with the user's navigation ([`error::error_pages`]).
//!
//! Pages work without scripts, except the WebAuthn ceremonies, which need
//! `navigator.credentials` (one small script, `/portal/static/webauthn.js`, the only
//! script the Content-Security-Policy allows).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::Url;

use crate::Error;
use crate::api::AppState;

mod account;
pub mod admin;
pub mod ceremony;
pub mod compliance;
mod dashboard;
pub mod error;
pub mod pages;
pub mod render;
pub mod session;
mod signin;
mod submissions;
mod upload;

/// `[portal]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortalConfig {
    /// Where people reach the portal, e.g. `https://portal.example.net` (the
    /// WebAuthn origin; links in mails). Unset: `http://localhost:<listen port>`,
    /// which only works on this machine. Plain `http` is only accepted for loopback.
    pub public_url: Option<String>,
    /// A session ends after this long without a request (seconds).
    pub session_idle_secs: u64,
    /// …and this long after sign-in, whatever happens (seconds).
    pub session_absolute_secs: u64,
    /// An enrolment link is valid this long (seconds; 24 h).
    pub invitation_valid_secs: u64,
    /// A passkey prompt (registration, sign-in, step-up) must be answered within this
    /// long (seconds).
    pub ceremony_valid_secs: u64,
    /// An uploaded, checked file waits this long for its approval (seconds).
    pub upload_valid_secs: u64,
    /// Sign-in pages and attempts per source address per minute (then `429`).
    pub sign_ins_per_minute_per_source: u32,
    /// Managing passkeys, API tokens and phone accesses needs a passkey assertion
    /// (sign-in or re-confirmation) from the last this many seconds.
    pub reauth_valid_secs: u64,
    /// The time zone the portal (and mail) shows times in: the employers' own (IANA
    /// name, e.g. `Europe/Bratislava`, `Europe/Prague`).
    pub time_zone: String,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            session_idle_secs: 30 * 60,
            session_absolute_secs: 12 * 3600,
            invitation_valid_secs: 24 * 3600,
            ceremony_valid_secs: 5 * 60,
            upload_valid_secs: 30 * 60,
            sign_ins_per_minute_per_source: 30,
            reauth_valid_secs: 600,
            time_zone: "Europe/Bratislava".into(),
        }
    }
}

impl PortalConfig {
    /// `time_zone` (checked at load; [`crate::i18n::DEFAULT_ZONE`] should it not parse).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.time_zone.parse().unwrap_or(crate::i18n::DEFAULT_ZONE)
    }

    /// How long an enrolment link stays valid (`invitation_valid_secs`).
    pub fn invitation_valid(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.invitation_valid_secs).unwrap_or(86_400))
    }

    /// The portal's origin: `public_url`, or `http://localhost:<port>`.
    pub fn origin(&self, port: u16) -> Result<Url, Error> {
        let raw = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://localhost:{port}"));
        let url = Url::parse(&raw)
            .map_err(|e| Error::Config(format!("portal.public_url {raw:?}: {e}")))?;
        let host = url
            .host_str()
            .ok_or_else(|| Error::Config(format!("portal.public_url {raw:?} has no host")))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(host) => {}
            _ => {
                return Err(Error::Config(format!(
                    "portal.public_url {raw:?} must be https:// (plain http only on localhost)"
                )));
            }
        }
        if url.path() != "/" || url.query().is_some() {
            return Err(Error::Config(format!(
                "portal.public_url {raw:?} must be an origin (scheme, host, port), without a path"
            )));
        }
        Ok(url)
    }

    pub fn validate(&self, production: bool) -> Result<(), Error> {
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(Error::Config(format!(
                "portal.time_zone {:?} is not an IANA time zone (e.g. Europe/Bratislava)",
                self.time_zone
            )));
        }
        if production && self.public_url.is_none() {
            return Err(Error::Config(
                "production needs portal.public_url (the https origin of the portal)".into(),
            ));
        }
        if let Some(u) = &self.public_url {
            let url = self.origin(0)?;
            if production && url.scheme() != "https" {
                return Err(Error::Config(format!(
                    "portal.public_url {u:?} must be https:// in production"
                )));
            }
        }
        if self.session_idle_secs == 0
            || self.session_absolute_secs < self.session_idle_secs
            || self.invitation_valid_secs == 0
            || self.ceremony_valid_secs == 0
            || self.upload_valid_secs == 0
            || self.sign_ins_per_minute_per_source == 0
            || self.reauth_valid_secs == 0
        {
            return Err(Error::Config(
                "portal: lifetimes and limits must be positive, and session_absolute_secs \
                 at least session_idle_secs"
                    .into(),
            ));
        }
        Ok(())
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What the portal's handlers reach: everything the APIs' do ([`AppState`], through
/// `Deref`) and the portal itself.
#[derive(Debug, Clone)]
pub struct PortalState {
    pub app: AppState,
    pub portal: Portal,
}

impl std::ops::Deref for PortalState {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.app
    }
}

/// The portal's routes with their security headers and body limit (uploads up to
/// the intake limit plus the form's overhead).
pub fn router(portal: &Portal, intake: &crate::intake::IntakeConfig) -> axum::Router<PortalState> {
    use axum::http::{HeaderName, HeaderValue, header};
    use tower_http::set_header::SetResponseHeaderLayer;
    let limit = intake.max_document_bytes.saturating_add(64 * 1024);
    let mut headers: Vec<(HeaderName, &'static str)> = vec![
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // `same-origin`, not `no-referrer`: with the latter, browsers send `Origin: null`
        // on form posts, and the origin check needs the real one.
        (header::REFERRER_POLICY, "same-origin"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=(), payment=()",
        ),
    ];
    if portal.secure_cookies {
        headers.push((
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ));
    }
    // Forms are small; only the upload carries a document. Both limits refuse an
    // oversized body before it is read (and before any handler runs).
    let small = 64 * 1024;
    let mut router = pages::routes()
        .merge(admin::routes())
        .merge(compliance::routes())
        .layer(axum::extract::DefaultBodyLimit::max(small))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(small))
        .merge(
            pages::upload_routes()
                .layer(axum::extract::DefaultBodyLimit::max(limit))
                .layer(tower_http::limit::RequestBodyLimitLayer::new(limit)),
        );
    for (name, value) in headers {
        router = router.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    // Pages change with every request (sessions, CSRF tokens): never cached.
    router
        .layer(axum::middleware::from_fn_with_state(
            portal.clone(),
            session::refuse_foreign_origin,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

/// Where the portal origin used for a link comes from; see [`link_origin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginSource {
    /// `portal.public_url` in this command's configuration.
    Configured,
    /// Recorded by the last `ivan serve` on this database ([`crate::settings`]).
    Recorded,
    /// Neither: `http://localhost:<this command's listen port>`, which may not be
    /// where the server runs.
    Guessed,
}

/// The portal origin for links a command outside the server mails (enrolment links
/// of `ivan admin user invite` and `ivan admin officer add`): `portal.public_url` if
/// configured; else the origin the last `ivan serve` recorded in the database; else
/// a guess from `listen_port` (the caller warns, naming `portal.public_url`).
pub async fn link_origin(
    config: &PortalConfig,
    listen_port: u16,
    db: &retention::Db,
) -> Result<(Url, OriginSource), Error> {
    if config.public_url.is_some() {
        return Ok((config.origin(listen_port)?, OriginSource::Configured));
    }
    if let Some(recorded) = crate::settings::get(db, crate::settings::PORTAL_ORIGIN).await? {
        match Url::parse(&recorded) {
            Ok(url) => return Ok((url, OriginSource::Recorded)),
            Err(e) => tracing::warn!(%recorded, error = %e, "ignoring the recorded portal origin"),
        }
    }
    Ok((config.origin(listen_port)?, OriginSource::Guessed))
}

/// What the portal's handlers share.
#[derive(Clone)]
pub struct Portal {
    pub config: PortalConfig,
    pub origin: Url,
    pub webauthn: Arc<webauthn_rs::Webauthn>,
    /// Cookies carry `Secure` (and the `__Host-` prefix) unless the origin is plain
    /// http on loopback.
    pub secure_cookies: bool,
    pub(crate) limiter: Arc<session::SourceLimiter>,
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal")
            .field("origin", &self.origin.as_str())
            .finish_non_exhaustive()
    }
}

impl Portal {
    /// The portal of a server listening on `port`.
    pub fn new(config: &PortalConfig, port: u16) -> Result<Self, Error> {
        let origin = config.origin(port)?;
        let rp_id = origin
            .host_str()
            .ok_or_else(|| Error::Config("portal.public_url has no host".into()))?
            .to_owned();
        let webauthn = webauthn_rs::WebauthnBuilder::new(&rp_id, &origin)
            .and_then(|b| {
                b.rp_name("ivan")
                    .timeout(std::time::Duration::from_secs(config.ceremony_valid_secs))
                    .build()
            })
            .map_err(|e| Error::Config(format!("WebAuthn relying party {rp_id}: {e}")))?;
        Ok(Self {
            config: config.clone(),
            secure_cookies: origin.scheme() == "https",
            origin,
            webauthn: Arc::new(webauthn),
            limiter: Arc::new(session::SourceLimiter::new(
                config.sign_ins_per_minute_per_source,
            )),
        })
    }

    /// An absolute link into the portal.
    pub fn link(&self, path_and_query: &str) -> String {
        format!(
            "{}{}",
            self.origin.as_str().trim_end_matches('/'),
            path_and_query
        )
    }
}

/// The portal's housekeeping, a chore of the retention sweeper
/// ([`crate::compliance::sweeper::Chore`]): deletes expired WebAuthn ceremonies and
/// pending uploads, and sessions ended (or expired) more than a day ago. Returns the
/// rows removed.
pub fn housekeeping(
    db: &retention::Db,
    now: chrono::DateTime<chrono::Utc>,
) -> futures::future::BoxFuture<'_, Result<u64, Error>> {
    Box::pin(async move {
        Ok(ceremony::delete_expired(db, now).await?
            + upload::delete_expired(db, now).await?
            + session::delete_ended(db, now - chrono::Duration::days(1)).await?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    retention::backend_tests!(housekeeping_removes_only_what_has_expired);

    async fn housekeeping_removes_only_what_has_expired(env: retention::testing::TestEnv) {
        let now = chrono::Utc::now();
        let (past, future) = (
            now - chrono::Duration::hours(1),
            now + chrono::Duration::hours(1),
        );
        let two_days_ago = now - chrono::Duration::days(2);
        retention::on_pool!(&env.db, pool => {
            sqlx::query("INSERT INTO employers (id, name, registration_number, created_at) VALUES ('e', 'E', 'EMP-1', $1)")
                .bind(now).execute(pool).await.unwrap();
            sqlx::query("INSERT INTO users (id, employer_id, email, role, webauthn_handle, created_at) \
                         VALUES ('u', 'e', 'a@example.test', 'admin', 'h', $1)")
                .bind(now).execute(pool).await.unwrap();
            for (id, expires) in [("c-old", past), ("c-new", future)] {
                sqlx::query("INSERT INTO webauthn_ceremonies (id, kind, state, created_at, expires_at) \
                             VALUES ($1, 'sign-in', '{}', $2, $3)")
                    .bind(id).bind(past).bind(expires).execute(pool).await.unwrap();
                sqlx::query("INSERT INTO portal_uploads (id, user_id, employer_id, file_name, sha256, body, created_at, expires_at) \
                             VALUES ($1, 'u', 'e', 'f.xml', 's', $2, $3, $4)")
                    .bind(id).bind(b"x".to_vec()).bind(past).bind(expires).execute(pool).await.unwrap();
            }
            // Ended two days ago (gone), an hour ago (kept a day), still on (kept);
            // expired two days ago without being ended (gone).
            for (id, ended, expires) in [
                ("s-ended-long-ago", Some(two_days_ago), future),
                ("s-ended-lately", Some(past), future),
                ("s-on", None, future),
                ("s-expired", None, two_days_ago),
            ] {
                sqlx::query("INSERT INTO portal_sessions (id_sha256, user_id, passkey_id, csrf_token, \
                             created_at, last_seen_at, expires_at, ended_at) VALUES ($1, 'u', 'k', 'c', $2, $2, $3, $4)")
                    .bind(id).bind(two_days_ago).bind(expires).bind(ended).execute(pool).await.unwrap();
            }
        });
        assert_eq!(housekeeping(&env.db, now).await.unwrap(), 4);
        let left = |table: &'static str, key: &'static str| {
            let db = env.db.clone();
            async move {
                let sql = format!("SELECT {key} FROM {table} ORDER BY {key}");
                let ids: Vec<String> = retention::on_pool!(&db, pool => {
                    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await.unwrap()
                });
                ids
            }
        };
        assert_eq!(left("webauthn_ceremonies", "id").await, ["c-new"]);
        assert_eq!(left("portal_uploads", "id").await, ["c-new"]);
        assert_eq!(
            left("portal_sessions", "id_sha256").await,
            ["s-ended-lately", "s-on"]
        );
        assert_eq!(
            housekeeping(&env.db, now).await.unwrap(),
            0,
            "nothing left to remove"
        );
    }

    #[test]
    fn origins_must_be_https_except_on_loopback() {
        let with = |u: &str| PortalConfig {
            public_url: Some(u.into()),
            ..PortalConfig::default()
        };
        assert_eq!(
            PortalConfig::default().origin(8080).unwrap().as_str(),
            "http://localhost:8080/"
        );
        for ok in [
            "https://portal.example.net",
            "http://127.0.0.1:9",
            "http://[::1]:9",
        ] {
            assert!(with(ok).origin(1).is_ok(), "{ok}");
        }
        for bad in [
            "http://portal.example.net",
            "ftp://localhost",
            "https://x.example/portal",
            "nonsense",
        ] {
            assert!(with(bad).origin(1).is_err(), "{bad}");
        }
        assert!(PortalConfig::default().validate(true).is_err());
        assert!(with("https://p.example").validate(true).is_ok());
        assert!(with("http://localhost:1").validate(true).is_err());
        let p = Portal::new(&with("https://p.example"), 1).unwrap();
        assert!(p.secure_cookies);
        assert_eq!(p.link("/portal/x?y=1"), "https://p.example/portal/x?y=1");
    }
}
