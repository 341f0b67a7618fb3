//! Evidence bundles: the record about a set of filings, exported as one file that a
//! third party can check offline, with no database and no `ivan`.
//!
//! A bundle is one uncompressed POSIX ustar archive in a canonical form (fixed
//! headers, fixed member order, zero padding, nothing after the end marker), so
//! that [`verify`] can reject any changed byte. Its members (all under
//! `ivan-evidence/`):
//!
//! | member | content |
//! |---|---|
//! | `manifest.json` | what the bundle is about, and `{path, sha256, size}` of every other member |
//! | `manifest.sig` | Ed25519 signature of the manifest by the checkpoint key |
//! | `keys/checkpoint-keys.json`, `keys/receipt-keys.json` | the public keys (JWKS) |
//! | `log/entries.jsonl`, `log/checkpoints.jsonl` | the subjects' log entries, with the chain links up to a signed checkpoint |
//! | `originals/<sha256>` | payload bytes, byte-exact |
//! | `receipts/<message id>.jws` | the receipts handed to the employer |
//! | `certificates/<sha256>.der`, `crls/<sha256>.der` | what a document's signature was checked with |
//! | `submissions.json` (optional) | the exporter's summary of each filing |
//! | `log/proofs.json` (optional) | every entry's inclusion proof under the newest checkpoint, and each checkpoint's consistency with it |
//!
//! [`write`] builds a bundle from [`Contents`]; [`verify`] checks one from any
//! reader and answers a [`Report`] naming every check. The format is specified in
//! `docs/evidence.md`, for people who write their own verifier.

mod layout;
mod verify;
mod write;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use verify::{Check, Counts, Outcome, Report, VerifyOptions, verify};
pub use write::{Contents, OriginalRef, Receipt, Summary, chain_link_ranges, write};

/// `format` of a v1 manifest.
pub const FORMAT: &str = "ivan-evidence/v1";

/// The first line of the text `manifest.sig` signs; see [`manifest_signing_input`].
pub const MANIFEST_SIGNATURE_DOMAIN: &str = "ivan/evidence-manifest/v1\n";

/// Default largest member [`verify`] accepts (1 GiB).
pub const DEFAULT_MAX_MEMBER_BYTES: u64 = 1 << 30;

/// Default largest number of members [`verify`] accepts.
pub const DEFAULT_MAX_MEMBERS: u64 = 1_000_000;

/// Largest member the canonical form can hold: ustar's 11 octal size digits
/// (8 GiB − 1 byte; larger sizes would need a non-canonical extension).
pub const MAX_MEMBER_BYTES: u64 = 0o777_7777_7777;

/// `manifest.json`: what the bundle is about and what it holds.
///
/// Written with `serde_json`'s pretty printer in this field order, plus a final
/// newline; [`verify`] checks the signature over the exact bytes, not a
/// re-serialization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// When the bundle was made (`YYYY-MM-DDTHH:MM:SS.ffffffZ`).
    pub created_at: String,
    /// Who made it, as an actor string (e.g. `user:<officer id>` or `operator:<name>`).
    pub created_by: String,
    /// What the export was made for (filter, legal basis, reference); carried as is.
    pub query: serde_json::Value,
    /// What the bundle is evidence about, as log subjects (`submission:<message id>`).
    pub subjects: Vec<String>,
    /// Every member except `manifest.json` and `manifest.sig`, in archive order.
    pub files: Vec<FileRecord>,
    /// Payload hashes that entries in the bundle name but whose bytes the retention
    /// policy removed: their absence from `originals/` is expected.
    pub purged: Vec<String>,
    /// Checkpoint keys that signed the manifest and the checkpoints, ascending.
    pub checkpoint_key_ids: Vec<String>,
    /// Receipt keys that signed the receipts, ascending.
    pub receipt_key_ids: Vec<String>,
}

/// `log/proofs.json`: what ties the bundle's entries and checkpoints to the log's
/// newest checkpoint when the bundle was made (docs/evidence.md). Hashes are
/// standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proofs {
    /// That checkpoint: a C2SP signed note by the checkpoint key, with the witnesses'
    /// cosignatures it had.
    pub checkpoint: String,
    /// For every entry in `log/entries.jsonl`: its RFC 9162 inclusion proof (leaf
    /// `seq - 1`) in the tree of `checkpoint`.
    pub inclusion: Vec<InclusionProof>,
    /// For every checkpoint in `log/checkpoints.jsonl` that has a `signed_note`: the
    /// RFC 9162 consistency proof from its tree to the tree of `checkpoint`.
    pub consistency: Vec<ConsistencyProof>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub seq: i64,
    pub proof: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub tree_size: i64,
    pub proof: Vec<String>,
}

/// One member as the manifest lists it; its path is the full path in the archive,
/// e.g. `ivan-evidence/log/entries.jsonl`.
pub use crate::FileRecord;

/// The bytes `manifest.sig` signs:
/// `"ivan/evidence-manifest/v1\n" ‖ hex(SHA-256(manifest.json)) ‖ "\n"`.
pub fn manifest_signing_input(manifest_json: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    format!(
        "{MANIFEST_SIGNATURE_DOMAIN}{}\n",
        hex::encode(Sha256::digest(manifest_json))
    )
    .into_bytes()
}
