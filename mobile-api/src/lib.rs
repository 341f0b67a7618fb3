//! # mobile-api
//!
//! The mobile pre-registration channel (see `DESIGN.md`, "Mobile pre-registration"):
//!
//! * [`access`] — phone accesses an employer registers, their PINs ([`pin`]: random,
//!   Argon2id with a pepper, sealed until first use so they can be sent by SMS) and
//!   PIN logins; [`throttle`] limits PIN guessing per phone number (exponential delay,
//!   a lock only after sustained abuse) and aggregates unknown-phone failures;
//! * [`session`] — ES256 access tokens and rotating refresh tokens with reuse
//!   detection;
//! * [`prereg`] — what a pre-registration is: the request, its checks, its states
//!   and its view (the server stores, pairs and sweeps them: they are submissions);
//! * [`sms`] — the durable SMS outbox and its worker (transports: `sms-adapter`);
//! * [`http`] — the `/mobile/v1` router and its OpenAPI document.
//!
//! What needs the intermediary itself — filing a pre-registration (the document
//! rules, recording it with its receipt, forwarding, pairing) and listing them —
//! comes through the [`Host`] trait, which `server`
//! implements (`server → mobile-api`, never back). Errors are one [`Error`] enum;
//! HTTP mapping to problem documents happens in `server`.
#![forbid(unsafe_code)]

pub mod access;
mod config;
mod error;
pub mod http;
pub mod pin;
pub mod prereg;
pub mod session;
pub mod sms;
#[cfg(test)]
mod testkit;
pub mod throttle;

use std::sync::Arc;

use futures::future::BoxFuture;
use retention::{Clock, Db, Ledger};

pub use config::MobileConfig;
pub use error::{Error, Finding};
pub use session::PhoneCaller;

/// What the intermediary provides to the mobile channel: pre-registrations are
/// submissions, so the server files and lists them.
pub trait Host: Send + Sync + std::fmt::Debug + 'static {
    /// Files a pre-registration for the phone user `caller` from the request body
    /// exactly as the app sent it: validated ([`prereg::validate`]), recorded as an
    /// accepted filing with its receipt and forwarded, and paired if its registration
    /// form is already there. With an idempotency key this access already used,
    /// returns the first filing (`false`: nothing new), or `IdempotencyConflict` if
    /// the request differs from it in any field.
    fn file<'a>(
        &'a self,
        caller: &'a PhoneCaller,
        body: bytes::Bytes,
        idempotency_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(prereg::Preregistration, bool), Error>>;

    /// One page of the employer's pre-registrations (at most `filter.limit`), oldest
    /// first, and the id to continue after if there are more.
    fn list<'a>(
        &'a self,
        employer_id: &'a str,
        filter: &'a prereg::Filter,
    ) -> BoxFuture<'a, Result<prereg::Page, Error>>;

    /// Tells the employer something it must act on (a phone access locked after
    /// sustained PIN guessing): the server logs it and queues mail to the employer's
    /// notification address, in the employer's language.
    fn alert_employer(&self, employer_id: &str, alert: Alert) -> BoxFuture<'_, Result<(), Error>>;
}

/// What the mobile channel tells an employer ([`Host::alert_employer`]): the facts;
/// the host words them in the employer's language. `Display` is the English text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// A phone access locked after `failures` wrong PINs within `window_hours`.
    PhoneLocked {
        access_id: String,
        phone: String,
        failures: i64,
        window_hours: u64,
    },
}

impl std::fmt::Display for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Alert::PhoneLocked {
                access_id,
                phone,
                failures,
                window_hours,
            } => write!(
                f,
                "The phone access {access_id} ({phone}) was locked after {failures} wrong PINs \
                 within {window_hours} hours, which looks like someone guessing its PIN. Its \
                 sessions have ended. Check with the phone user, then generate a new PIN \
                 (POST /api/v1/phone-accesses/{access_id}/pin) to unlock it."
            ),
        }
    }
}

/// Everything the mobile channel's handlers and workers share.
#[derive(Debug, Clone)]
pub struct Mobile {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    pins: Arc<pin::Pins>,
    sessions: session::Sessions,
    config: MobileConfig,
    host: Arc<dyn Host>,
    limiter: http::SourceLimiter,
}

impl Mobile {
    /// Loads (or creates on first start) the PIN pepper, sealing key and session key
    /// in `key_dir`.
    pub fn new(
        db: Db,
        ledger: Ledger,
        clock: Arc<dyn Clock>,
        key_dir: &std::path::Path,
        config: MobileConfig,
        host: Arc<dyn Host>,
    ) -> Result<Self, Error> {
        config.validate().map_err(Error::Invalid)?;
        let pins = Arc::new(pin::Pins::load(key_dir, &config)?);
        let sessions = session::Sessions::load(key_dir, &config, clock.clone())?;
        let limiter = http::SourceLimiter::new(config.logins_per_minute_per_source);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                ledger,
                clock,
                pins,
                sessions,
                config,
                host,
                limiter,
            }),
        })
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }
    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }
    pub fn pins(&self) -> &Arc<pin::Pins> {
        &self.inner.pins
    }
    pub fn sessions(&self) -> &session::Sessions {
        &self.inner.sessions
    }
    pub fn config(&self) -> &MobileConfig {
        &self.inner.config
    }
    pub fn host(&self) -> &Arc<dyn Host> {
        &self.inner.host
    }

    /// The SMS worker for this channel, sending through `sender`.
    pub fn sms_worker(&self, sender: Arc<dyn sms_adapter::SmsSender>) -> sms::SmsWorker {
        sms::SmsWorker::new(
            self.inner.db.clone(),
            self.inner.ledger.clone(),
            self.inner.clock.clone(),
            self.inner.pins.clone(),
            sender,
            &self.inner.config,
        )
    }
}
