use std::path::PathBuf;
use std::time::Duration;

use crate::smpp::status;

/// Everything that can go wrong sending an SMS. Messages are one line and name the
/// thing at fault. [`Error::is_permanent`] tells whether retrying the same message
/// could ever succeed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SMS configuration is unusable (found when building the sender).
    #[error("SMS configuration: {0}")]
    Config(String),
    #[error("invalid destination {to:?}: expected E.164, e.g. +420601123456")]
    InvalidDestination { to: String },
    #[error("invalid SMS text: {0}")]
    InvalidText(String),
    #[error("SMS text too long for one segment: {len} {encoding} characters, at most {max}")]
    TextTooLong {
        len: usize,
        max: usize,
        encoding: &'static str,
    },

    /// TCP connection to the SMSC failed, or the SMPP session broke.
    #[error("SMSC {address}: {reason}")]
    SmppConnection { address: String, reason: String },
    /// The SMSC refused the bind (wrong `system_id` / password, not allowed, …).
    #[error("SMSC {address} refused bind as {system_id:?}: {status_name} (0x{status:08X})")]
    SmppBind {
        address: String,
        system_id: String,
        status: u32,
        status_name: String,
    },
    /// The SMSC answered `submit_sm` with an error status.
    #[error("SMSC rejected the message: {status_name} (0x{status:08X})")]
    SmppRejected { status: u32, status_name: String },
    /// Earlier connection attempts failed; the sender waits before trying again.
    #[error("SMSC {address} is unreachable; next connection attempt in {retry_in:?} ({last})")]
    SmppBackoff {
        address: String,
        retry_in: Duration,
        last: String,
    },
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },

    /// The gateway answered with a non-2xx status.
    #[error("SMS gateway answered HTTP {status}: {body}")]
    HttpStatus { status: u16, body: String },
    /// The request to the gateway failed (connect, TLS, I/O, …).
    #[error("SMS gateway: {0}")]
    Http(String),
    /// The gateway accepted the request but its answer could not be understood.
    #[error("SMS gateway answered 2xx but {0}")]
    HttpResponse(String),

    #[error("SMS outbox {path}: {source}")]
    Outbox {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// True when retrying the same message can never succeed: the destination or text
    /// is invalid, the configuration is unusable, the SMSC rejected the message with a
    /// permanent status, or the gateway answered 4xx (other than 408 and 429).
    ///
    /// Everything else — connection, bind, timeouts, throttling (`ESME_RTHROTTLED`,
    /// `ESME_RMSGQFUL`), gateway 5xx/408/429, file I/O — is transient.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Config(_)
            | Error::InvalidDestination { .. }
            | Error::InvalidText(_)
            | Error::TextTooLong { .. } => true,
            Error::SmppRejected { status, .. } => status::is_permanent(*status),
            Error::HttpStatus { status, .. } => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
            Error::SmppConnection { .. }
            | Error::SmppBind { .. }
            | Error::SmppBackoff { .. }
            | Error::Timeout { .. }
            | Error::Http(_)
            | Error::HttpResponse(_)
            | Error::Outbox { .. } => false,
        }
    }

    /// True when the error is transient (the negation of [`Error::is_permanent`]).
    pub fn is_transient(&self) -> bool {
        !self.is_permanent()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
