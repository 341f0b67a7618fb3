//! Intake of signed filings: shape bombs refused while the body arrives
//! ([`early`]), safe XML parsing ([`crate::xml`]), the XML-DSig profile and its
//! verification ([`signature`]; for documents over `intake.streaming_threshold_bytes`
//! with the reference's digest computed while streaming, [`c14n`]), certificate
//! trust and revocation ([`trust`], its signature verifications remembered:
//! [`verified`]), then document checks ([`crate::documents`],
//! chunk by chunk for large documents, read from the file they were staged in:
//! [`crate::xml::source`]), the trust material operators manage
//! ([`material`]), and the pipeline that ties them to storage, log and receipt
//! ([`Intake`]). Not built: periodic refresh of CRLs from a URL, OCSP, CRLs of
//! intermediate CAs (only the issuing CA's CRL is consulted).

pub mod budget;
pub mod c14n;
pub mod early;
pub mod signature;
pub mod trust;
pub mod verified;

pub use crate::xml::Refusal;

pub mod material;
pub mod ocsp;
mod pipeline;
#[cfg(test)]
mod signature_tests;

pub use pipeline::{
    Analysis, BodyLease, DEFAULT_STREAMING_THRESHOLD_BYTES, Filed, Halt, Intake, IntakeConfig,
    Preview, Refused, Scanned, SubmitError, is_xml,
};
