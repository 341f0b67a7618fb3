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
//! * [`prereg`] — pre-registrations, their pairing with registration forms and the
//!   deadline sweep;
//! * [`sms`] — the durable SMS outbox and its worker (transports: `sms-adapter`);
//! * [`http`] — the `/mobile/v1` router and its OpenAPI document.
//!
//! What needs the intermediary itself — the document rules, recording a filing with
//! its receipt and forwarding it — comes through the [`Host`] trait, which `server`
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

use chrono::NaiveDate;
use futures::future::BoxFuture;
use retention::{Clock, Db, Ledger};

pub use config::MobileConfig;
pub use error::{Error, Finding};
pub use session::PhoneCaller;

/// A pre-registration to record as a filing.
#[derive(Debug, Clone)]
pub struct Filing {
    /// The message id (UUIDv7) the filing gets.
    pub id: String,
    pub caller: PhoneCaller,
    /// The request body exactly as the app sent it.
    pub request: bytes::Bytes,
    pub checked: prereg::Checked,
    /// `phone:<access id>:<Idempotency-Key>`, if the app sent a key.
    pub idempotency_key: Option<String>,
    /// How long the employer has to file the registration form.
    pub deadline: chrono::Duration,
}

/// What the intermediary provides to the mobile channel.
pub trait Host: Send + Sync + std::fmt::Debug + 'static {
    /// The personal id rule of registration forms: a finding if `person_id` breaks it.
    fn check_person(
        &self,
        person_id: &str,
        birth_date: NaiveDate,
        today: NaiveDate,
    ) -> Option<Finding>;

    /// Records the pre-registration as an accepted filing — log entries, submission
    /// row, receipt, forwarding outbox — calling [`prereg::insert`] in the same
    /// transaction.
    fn file(&self, filing: Filing) -> BoxFuture<'_, Result<(), Error>>;

    /// Tells the employer something it must act on (a phone access locked after
    /// sustained PIN guessing): the server logs it and queues mail to the employer's
    /// notification address.
    fn alert_employer(&self, employer_id: &str, text: String) -> BoxFuture<'_, Result<(), Error>>;
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
