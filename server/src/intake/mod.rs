//! Intake of signed filings: shape bombs refused while the body arrives
//! ([`early`]), safe XML parsing ([`xml`]), the XML-DSig profile and its
//! verification ([`signature`]; for documents over `intake.streaming_threshold_bytes`
//! with the reference's digest computed while streaming, [`c14n`]), certificate
//! trust and revocation ([`trust`], its signature verifications remembered:
//! [`verified`]), then document checks ([`crate::documents`],
//! chunk by chunk for large documents, read from the file they were staged in:
//! [`source`]), the trust material operators manage
//! ([`material`]), and the pipeline that ties them to storage, log and receipt
//! ([`Intake`]). Not built: periodic refresh of CRLs from a URL, OCSP, CRLs of
//! intermediate CAs (only the issuing CA's CRL is consulted).

use serde::Serialize;

pub mod budget;
pub mod c14n;
pub mod cancel;
pub mod early;
pub mod signature;
pub mod source;
pub mod trust;
pub mod verified;
pub mod xml;

/// Why a filing is refused at one step of intake: a stable dotted `code`, one
/// clear sentence, and where in the document (an element path or a line/column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    pub location: String,
}

impl Refusal {
    pub fn new(
        code: &'static str,
        message: impl Into<String>,
        location: impl Into<String>,
    ) -> Self {
        Self {
            code,
            message: message.into(),
            location: location.into(),
        }
    }
}

pub mod material;
mod pipeline;
#[cfg(test)]
mod signature_tests;

pub use pipeline::{
    Analysis, BodyLease, DEFAULT_STREAMING_THRESHOLD_BYTES, Halt, Intake, IntakeConfig, Outcome,
    Preview, Problem, Refused, Scanned, SubmitError, is_xml,
};
