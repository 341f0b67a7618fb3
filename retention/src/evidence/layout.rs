//! The archive's layout: member paths and the canonical ustar header, shared by the
//! writer and the verifier so they cannot disagree.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ledger::{Checkpoint, Entry, format_time};

pub(super) const BLOCK: usize = 512;

pub(super) const MANIFEST: &str = "ivan-evidence/manifest.json";
pub(super) const MANIFEST_SIG: &str = "ivan-evidence/manifest.sig";
pub(super) const CHECKPOINT_KEYS: &str = "ivan-evidence/keys/checkpoint-keys.json";
pub(super) const RECEIPT_KEYS: &str = "ivan-evidence/keys/receipt-keys.json";
pub(super) const ENTRIES: &str = "ivan-evidence/log/entries.jsonl";
pub(super) const CHECKPOINTS: &str = "ivan-evidence/log/checkpoints.jsonl";
pub(super) const SUBMISSIONS: &str = "ivan-evidence/submissions.json";
pub(super) const PROOFS: &str = "ivan-evidence/log/proofs.json";
pub(super) const ORIGINALS_DIR: &str = "ivan-evidence/originals/";
pub(super) const RECEIPTS_DIR: &str = "ivan-evidence/receipts/";
pub(super) const CERTIFICATES_DIR: &str = "ivan-evidence/certificates/";
pub(super) const CRLS_DIR: &str = "ivan-evidence/crls/";

/// Members every bundle has besides the manifest and its signature.
pub(super) const REQUIRED: [&str; 4] = [CHECKPOINT_KEYS, RECEIPT_KEYS, ENTRIES, CHECKPOINTS];

/// Longest message id in a receipt's file name.
pub(super) const MAX_MESSAGE_ID_LEN: usize = 64;

/// What a member is, from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Manifest,
    ManifestSig,
    CheckpointKeys,
    ReceiptKeys,
    Entries,
    Checkpoints,
    Submissions,
    Proofs,
    /// `originals/<sha256>`: the name.
    Original(String),
    /// `receipts/<message id>.jws`: the message id.
    Receipt(String),
    /// `certificates/<sha256>.der`: the name's hash.
    Certificate(String),
    /// `crls/<sha256>.der`: the name's hash.
    Crl(String),
}

impl Kind {
    /// Whether the verifier keeps the content (small structured members) rather
    /// than only hashing it as it streams past.
    pub(super) fn buffered(&self) -> bool {
        !matches!(
            self,
            Kind::Original(_) | Kind::Certificate(_) | Kind::Crl(_)
        )
    }
}

/// The kind of the member at `path`, or `None` when the layout has no such path.
pub(super) fn classify(path: &str) -> Option<Kind> {
    Some(match path {
        MANIFEST => Kind::Manifest,
        MANIFEST_SIG => Kind::ManifestSig,
        CHECKPOINT_KEYS => Kind::CheckpointKeys,
        RECEIPT_KEYS => Kind::ReceiptKeys,
        ENTRIES => Kind::Entries,
        CHECKPOINTS => Kind::Checkpoints,
        SUBMISSIONS => Kind::Submissions,
        PROOFS => Kind::Proofs,
        _ => {
            if let Some(name) = path.strip_prefix(ORIGINALS_DIR) {
                is_sha256_hex(name).then(|| Kind::Original(name.to_owned()))?
            } else if let Some(name) = path.strip_prefix(RECEIPTS_DIR) {
                let id = name.strip_suffix(".jws")?;
                is_message_id(id).then(|| Kind::Receipt(id.to_owned()))?
            } else if let Some(name) = path.strip_prefix(CERTIFICATES_DIR) {
                let sha = name.strip_suffix(".der")?;
                is_sha256_hex(sha).then(|| Kind::Certificate(sha.to_owned()))?
            } else if let Some(name) = path.strip_prefix(CRLS_DIR) {
                let sha = name.strip_suffix(".der")?;
                is_sha256_hex(sha).then(|| Kind::Crl(sha.to_owned()))?
            } else {
                return None;
            }
        }
    })
}

/// 64 lowercase hex digits.
pub(super) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// 1 to 64 of `A-Z a-z 0-9 - _` (message ids are UUIDs).
pub(super) fn is_message_id(s: &str) -> bool {
    (1..=MAX_MESSAGE_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) fn original_path(sha256: &str) -> String {
    format!("{ORIGINALS_DIR}{sha256}")
}

pub(super) fn receipt_path(message_id: &str) -> String {
    format!("{RECEIPTS_DIR}{message_id}.jws")
}

pub(super) fn certificate_path(sha256: &str) -> String {
    format!("{CERTIFICATES_DIR}{sha256}.der")
}

pub(super) fn crl_path(sha256: &str) -> String {
    format!("{CRLS_DIR}{sha256}.der")
}

/// The subject of the log entries about message `id`.
pub(super) fn submission_subject(id: &str) -> String {
    format!("submission:{id}")
}

/// The one header a member with this path and size may have: ustar, regular file,
/// mode 0644, uid/gid 0, no owner names, mtime 0, path in `name` (no prefix).
pub(super) fn canonical_header(path: &str, size: u64) -> Result<[u8; BLOCK], String> {
    if path.len() >= 100 {
        return Err(format!("path {path:?} is 100 bytes or longer"));
    }
    if size > super::MAX_MEMBER_BYTES {
        return Err(format!(
            "{path}: {size} bytes is more than a ustar header can hold"
        ));
    }
    let mut h = tar::Header::new_ustar();
    h.set_path(path)
        .map_err(|e| format!("path {path:?} cannot be stored: {e}"))?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let bytes = *h.as_bytes();
    // `set_path` normalises (e.g. drops `./`); the stored name must be the path itself.
    if bytes[..path.len()] != *path.as_bytes() || bytes[path.len()] != 0 {
        return Err(format!("path {path:?} is not in normal form"));
    }
    Ok(bytes)
}

/// The ustar header field holding byte `offset` of a header block.
pub(super) fn header_field(offset: usize) -> &'static str {
    match offset {
        0..100 => "name",
        100..108 => "mode",
        108..116 => "uid",
        116..124 => "gid",
        124..136 => "size",
        136..148 => "mtime",
        148..156 => "checksum",
        156 => "typeflag",
        157..257 => "linkname",
        257..263 => "magic",
        263..265 => "version",
        265..297 => "uname",
        297..329 => "gname",
        329..337 => "devmajor",
        337..345 => "devminor",
        345..500 => "prefix",
        _ => "padding",
    }
}

/// Zero bytes after `size` content bytes up to the next block boundary.
pub(super) fn padding(size: u64) -> usize {
    // `size % 512` is below 512, so the cast cannot truncate.
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

/// A log entry as a line of `log/entries.jsonl` (times in the log's text form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EntryLine {
    pub seq: i64,
    pub recorded_at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub payload_sha256: Option<String>,
    pub prev_hash: String,
    pub entry_hash: String,
}

impl EntryLine {
    pub(super) fn from_entry(e: &Entry) -> Self {
        Self {
            seq: e.seq,
            recorded_at: format_time(&e.recorded_at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            subject: e.subject.clone(),
            payload_sha256: e.payload_sha256.clone(),
            prev_hash: e.prev_hash.clone(),
            entry_hash: e.entry_hash.clone(),
        }
    }

    pub(super) fn into_entry(self) -> Result<Entry, String> {
        let recorded_at = parse_time(&self.recorded_at).ok_or_else(|| {
            format!(
                "recorded_at {:?} is not YYYY-MM-DDTHH:MM:SS.ffffffZ",
                self.recorded_at
            )
        })?;
        Ok(Entry {
            seq: self.seq,
            recorded_at,
            actor: self.actor,
            action: self.action,
            subject: self.subject,
            payload_sha256: self.payload_sha256,
            prev_hash: self.prev_hash,
            entry_hash: self.entry_hash,
        })
    }
}

/// A checkpoint as a line of `log/checkpoints.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckpointLine {
    pub tree_size: i64,
    pub head_hash: String,
    pub signed_at: String,
    pub key_id: String,
    pub signature: String,
    /// The C2SP checkpoint note ([`Checkpoint::signed_note`]), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_note: Option<String>,
}

impl CheckpointLine {
    pub(super) fn from_checkpoint(c: &Checkpoint) -> Self {
        Self {
            tree_size: c.tree_size,
            head_hash: c.head_hash.clone(),
            signed_at: format_time(&c.signed_at),
            key_id: c.key_id.clone(),
            signature: c.signature.clone(),
            signed_note: c.signed_note.clone(),
        }
    }

    pub(super) fn into_checkpoint(self) -> Result<Checkpoint, String> {
        let signed_at = parse_time(&self.signed_at).ok_or_else(|| {
            format!(
                "signed_at {:?} is not YYYY-MM-DDTHH:MM:SS.ffffffZ",
                self.signed_at
            )
        })?;
        Ok(Checkpoint {
            tree_size: self.tree_size,
            head_hash: self.head_hash,
            signed_at,
            key_id: self.key_id,
            signature: self.signature,
            signed_note: self.signed_note,
        })
    }
}

/// A time in exactly the log's text form (`format_time`), or `None`.
pub(super) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    (format_time(&t) == s).then_some(t)
}

/// Reads until `buf` is full or the input ends; answers how many bytes it read.
pub(super) fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
