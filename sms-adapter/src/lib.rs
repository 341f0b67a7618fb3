//! # sms-adapter — outbound SMS
//!
//! This crate owns sending one short text message to one phone number, and nothing
//! else (no templates, no queueing, no retry policy: callers decide what to do with
//! an [`Error`], guided by [`Error::is_permanent`]). It depends on no sibling crate.
//!
//! * [`SmsSender`] — the object-safe trait the rest of `ivan` uses, as `Arc<dyn SmsSender>`.
//! * Transports, chosen by [`SmsConfig`] and built by [`build`]:
//!   * [`SmppSender`] — an SMPP client (via `rusmppc`) towards the operator's SMSC;
//!     connects lazily, keeps the session alive with `enquire_link`, reconnects with
//!     capped exponential backoff, and surfaces delivery receipts ([`DeliveryReceipt`]).
//!   * [`HttpGateway`] — a JSON `POST` to an SMS gateway.
//!   * [`FileOutbox`] — **development only**: appends messages to a JSON-lines file.
//! * [`testing`] (feature `testing`) — a small in-process SMSC for tests of this and
//!   other crates.
//!
//! Every transport accepts only what fits one SMS segment: destinations in E.164
//! (`+420601123456`), and texts of at most 160 characters when they are "GSM-7 safe"
//! ASCII (see [`text`]) or 70 UTF-16 code units otherwise.
#![forbid(unsafe_code)]

mod config;
mod error;
mod http;
mod outbox;
pub mod smpp;
pub mod text;

#[cfg(feature = "testing")]
pub mod testing;

use futures::future::BoxFuture;
use tokio::sync::broadcast;

pub use config::{
    DevOutboxConfig, HttpGatewayConfig, Secret, SmppConfig, SmppVersion, SmsConfig, build,
};
pub use error::{Error, Result};
pub use http::HttpGateway;
pub use outbox::FileOutbox;
pub use smpp::{DeliveryReceipt, SmppSender};

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sms {
    /// Destination in E.164 form, e.g. `+420601123456`.
    pub to: String,
    /// The text; must fit one SMS segment (see [`text`]).
    pub text: String,
}

impl Sms {
    pub fn new(to: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            to: to.into(),
            text: text.into(),
        }
    }
}

/// A message the transport accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The transport's [`SmsSender::name`]: `smpp`, `http_gateway` or `dev_outbox`.
    pub transport: &'static str,
    /// The id the SMSC / gateway / outbox gave the message (for matching receipts).
    pub message_id: String,
}

/// Something that sends SMS. Object safe; shared as `Arc<dyn SmsSender>`.
pub trait SmsSender: Send + Sync + std::fmt::Debug {
    /// Sends one message. `Ok` means the SMSC or gateway accepted it, not that it
    /// reached the handset (see [`SmsSender::receipts`]).
    fn send<'a>(&'a self, sms: &'a Sms) -> BoxFuture<'a, Result<Sent, Error>>;

    /// A short transport name: `smpp`, `http_gateway` or `dev_outbox`.
    fn name(&self) -> &'static str;

    /// Delivery receipts, for transports that get them (SMPP bound as transceiver with
    /// `registered_delivery = true`); `None` otherwise. Each call subscribes anew and
    /// sees the receipts arriving from then on.
    fn receipts(&self) -> Option<broadcast::Receiver<DeliveryReceipt>> {
        None
    }

    /// Releases connections gracefully (SMPP: `unbind`), bounded in time. Sending after
    /// `close` is allowed and reconnects.
    fn close<'a>(&'a self) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}
