//! Verifying a bundle offline: no database, no network, only the bytes.
//!
//! The archive is read 512 bytes at a time and every header is compared with the
//! one canonical header for its path and size, so any changed byte shows. Small
//! structured members are kept in memory (each at most `max_member_bytes`);
//! originals, certificates and CRLs are only hashed as they stream past.
//!
//! Checks come in two layers. *Integrity*: the archive is canonical, the manifest
//! lists every member with its hash, and the manifest's signature verifies. Only if
//! that holds are the *contents* checked (chain, checkpoints, receipts, …): findings
//! about bytes that may have been altered would mislead, so those checks are
//! reported as skipped instead.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;

use serde::Serialize;

use crate::keys::CheckpointVerifier;
use crate::{Error, Result};

mod files;
mod integrity;
mod keys;
mod log;

use files::{
    certificates_of, check_der_members, check_originals, check_receipts, check_submissions,
    crls_of, parse_submissions,
};
use integrity::{check_archive, check_manifest, check_signature};
use keys::check_keys;
use log::{check_checkpoints, check_log_entries, check_proofs, check_subjects};

use super::layout::{CHECKPOINT_KEYS, Kind};
use super::{DEFAULT_MAX_MEMBER_BYTES, DEFAULT_MAX_MEMBERS, Manifest};

/// Problems listed per check before the rest are only counted.
const MAX_PROBLEMS: usize = 100;

/// The checks, in the order a report lists them.
pub(super) const CHECKS: [&str; 13] = [
    "archive",
    "manifest",
    "manifest-signature",
    "log-entries",
    "checkpoints",
    "proofs",
    "subjects",
    "originals",
    "receipts",
    "certificates",
    "crls",
    "submissions",
    "keys",
];

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Checkpoint JWKS the caller trusts (e.g. a copy of the intermediary's
    /// `/.well-known/ivan/checkpoint-keys.json`). With it, every checkpoint key the
    /// bundle uses must be one of these; without it, the bundle is only checked
    /// against the keys it carries.
    pub pinned_checkpoint_keys: Option<serde_json::Value>,
    /// Largest member accepted, in bytes (at most
    /// [`MAX_MEMBER_BYTES`](super::MAX_MEMBER_BYTES)).
    pub max_member_bytes: u64,
    /// Most members accepted.
    pub max_members: u64,
    /// Witnesses (their cosignature verifier keys, `ivan witness vkey`) each of which
    /// must have cosigned the checkpoint the bundle's proofs are under.
    pub witnesses: Vec<String>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            pinned_checkpoint_keys: None,
            max_member_bytes: DEFAULT_MAX_MEMBER_BYTES,
            max_members: DEFAULT_MAX_MEMBERS,
            witnesses: Vec::new(),
        }
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
    /// Not run, because an earlier check failed (see its problems).
    Skipped,
}

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name: `archive`, `manifest`, `manifest-signature`, `log-entries`,
    /// `checkpoints`, `proofs`, `subjects`, `originals`, `receipts`, `certificates`, `crls`,
    /// `submissions`, `keys`.
    pub name: &'static str,
    pub outcome: Outcome,
    /// What was established (passed), how much failed, or why it was skipped.
    pub detail: String,
    /// What does not hold, one line each (the first 100).
    pub problems: Vec<String>,
}

/// What the bundle holds, as far as it was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub bytes: u64,
    pub members: u64,
    pub subjects: u64,
    pub entries: u64,
    /// Maximal runs of consecutive entries.
    pub runs: u64,
    pub checkpoints: u64,
    pub originals: u64,
    pub purged: u64,
    pub receipts: u64,
    pub certificates: u64,
    pub crls: u64,
    pub submissions: u64,
}

/// Everything [`verify`] checked. The bundle holds up only if [`Report::ok`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Every check, in a fixed order.
    pub checks: Vec<Check>,
    pub counts: Counts,
    /// The manifest, when it could be read.
    pub manifest: Option<Manifest>,
    /// Whether the checkpoint keys were matched against pinned keys. When false, the
    /// bundle is only shown consistent with the keys it carries.
    pub keys_pinned: bool,
    /// Checkpoint keys that signed the manifest and the checkpoints.
    pub checkpoint_key_ids: Vec<String>,
    /// Receipt keys that signed the receipts.
    pub receipt_key_ids: Vec<String>,
}

impl Report {
    /// True when every check passed.
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.outcome == Outcome::Passed)
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.outcome == Outcome::Failed)
    }

    /// Records check `name`: passed with `detail` if `problems` is empty.
    fn record(&mut self, name: &'static str, detail: impl Into<String>, problems: Problems) {
        let (outcome, detail) = if problems.list.is_empty() {
            (Outcome::Passed, detail.into())
        } else {
            let shown = if problems.total > problems.list.len() {
                format!(" (first {} listed)", problems.list.len())
            } else {
                String::new()
            };
            (
                Outcome::Failed,
                format!("{} problem(s){shown}", problems.total),
            )
        };
        self.checks.push(Check {
            name,
            outcome,
            detail,
            problems: problems.list,
        });
    }

    fn fail(&mut self, name: &'static str, problem: String) {
        let mut p = Problems::default();
        p.push(problem);
        self.record(name, "", p);
    }

    /// Marks every check not yet recorded as skipped.
    fn skip_rest(&mut self, why: &str) {
        for name in CHECKS {
            if !self.checks.iter().any(|c| c.name == name) {
                self.checks.push(Check {
                    name,
                    outcome: Outcome::Skipped,
                    detail: why.to_owned(),
                    problems: Vec::new(),
                });
            }
        }
    }

    fn passed(&self, name: &str) -> bool {
        self.checks
            .iter()
            .any(|c| c.name == name && c.outcome == Outcome::Passed)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.ok() {
            "VERIFIED"
        } else {
            "NOT VERIFIED"
        };
        writeln!(f, "evidence bundle: {verdict}")?;
        if let Some(m) = &self.manifest {
            writeln!(f, "created {} by {}", m.created_at, m.created_by)?;
            writeln!(f, "subjects: {}", m.subjects.join(", "))?;
        }
        for c in &self.checks {
            let mark = match c.outcome {
                Outcome::Passed => "ok  ",
                Outcome::Failed => "FAIL",
                Outcome::Skipped => "skip",
            };
            writeln!(f, "  {mark} {}: {}", c.name, c.detail)?;
            for p in &c.problems {
                writeln!(f, "         - {p}")?;
            }
        }
        let c = &self.counts;
        writeln!(
            f,
            "counts: {} members, {} bytes; {} subjects, {} entries in {} runs, {} checkpoints, \
             {} originals, {} purged, {} receipts, {} certificates, {} CRLs, {} filings",
            c.members,
            c.bytes,
            c.subjects,
            c.entries,
            c.runs,
            c.checkpoints,
            c.originals,
            c.purged,
            c.receipts,
            c.certificates,
            c.crls,
            c.submissions
        )?;
        if !self.checkpoint_key_ids.is_empty() {
            let trust = if self.keys_pinned {
                "matched against the pinned keys"
            } else {
                "NOT PINNED: the bundle's own keys; compare these ids with the intermediary's \
                 published checkpoint keys"
            };
            writeln!(
                f,
                "checkpoint keys: {} ({trust})",
                self.checkpoint_key_ids.join(", ")
            )?;
        }
        if !self.receipt_key_ids.is_empty() {
            writeln!(f, "receipt keys: {}", self.receipt_key_ids.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Problems {
    list: Vec<String>,
    total: usize,
}

impl Problems {
    fn push(&mut self, p: impl Into<String>) {
        self.total += 1;
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(p.into());
        }
    }

    fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// A member as read: its hash, size, and (for structured members) its content.
struct Member {
    path: String,
    kind: Kind,
    size: u64,
    sha256: String,
    /// The content of buffered kinds; empty for originals, certificates, CRLs.
    content: Vec<u8>,
    /// The first bytes (up to 6) of unbuffered kinds, for the DER check.
    head: Vec<u8>,
}

/// Verifies the bundle read from `input`. `Err` only when reading fails or the
/// pinned keys are malformed; everything wrong with the bundle is a failed check
/// in the [`Report`].
pub fn verify(input: impl Read, opts: &VerifyOptions) -> Result<Report> {
    let pinned = match &opts.pinned_checkpoint_keys {
        Some(jwks) => Some(
            CheckpointVerifier::from_jwks(jwks)
                .map_err(|e| Error::Invalid(format!("pinned checkpoint keys: {e}")))?,
        ),
        None => None,
    };
    let mut report = Report {
        keys_pinned: pinned.is_some(),
        ..Report::default()
    };

    let mut members = Vec::new();
    if !check_archive(input, opts, &mut members, &mut report)? {
        report.skip_rest(
            "not run: the archive is not in canonical form, so it was altered or \
             damaged (see `archive`)",
        );
        return Ok(report);
    }

    let manifest = check_manifest(&members, &mut report);
    let bundle_keys = member(&members, CHECKPOINT_KEYS).map(|m| {
        serde_json::from_slice(&m.content)
            .map_err(|e| e.to_string())
            .and_then(|jwks| CheckpointVerifier::from_jwks(&jwks))
    });
    let signer = check_signature(&members, bundle_keys.as_ref(), pinned.as_ref(), &mut report);

    let integrity = ["archive", "manifest", "manifest-signature"]
        .iter()
        .all(|name| report.passed(name));
    let (Some(manifest), Some(signer), Some(Ok(bundle_keys)), true) =
        (manifest, signer, bundle_keys, integrity)
    else {
        report.skip_rest(
            "not run: the bundle failed its integrity checks above, so its contents \
             cannot be relied on",
        );
        return Ok(report);
    };
    let verifier = pinned.as_ref().unwrap_or(&bundle_keys);
    let ctx = Contents::new(&members, &manifest);
    // The contents, one check each, in the order of `CHECKS`.
    let (entries, runs) = check_log_entries(&ctx, &mut report);
    let checkpoints = check_checkpoints(
        &ctx,
        &mut report,
        &entries,
        &runs,
        verifier,
        &bundle_keys,
        pinned.as_ref(),
    );
    check_proofs(
        &ctx,
        &mut report,
        &entries,
        &checkpoints,
        verifier,
        &opts.witnesses,
    );
    check_subjects(&ctx, &mut report, &entries);
    // submissions.json is parsed first: it may name originals.
    let mut submission_problems = Problems::default();
    let refs = parse_submissions(&ctx, &mut submission_problems);
    let present = check_originals(&ctx, &mut report, &entries, &refs);
    let receipt_keys = check_receipts(&ctx, &mut report, &entries);
    check_der_members(
        &ctx,
        &mut report,
        "certificates",
        certificates_of,
        "certificate",
    );
    check_der_members(&ctx, &mut report, "crls", crls_of, "CRL");
    check_submissions(&ctx, &mut report, refs, submission_problems, &present);
    check_keys(
        &ctx,
        &mut report,
        &checkpoints,
        signer,
        receipt_keys,
        &bundle_keys,
        pinned.as_ref(),
    );
    Ok(report)
}

fn member<'a>(members: &'a [Member], path: &str) -> Option<&'a Member> {
    members.iter().find(|m| m.path == path)
}

/// The parsed contents the content checks share.
struct Contents<'a> {
    manifest: &'a Manifest,
    members: &'a [Member],
    subjects: BTreeSet<&'a str>,
    purged: BTreeSet<&'a str>,
}

impl<'a> Contents<'a> {
    fn new(members: &'a [Member], manifest: &'a Manifest) -> Self {
        Self {
            manifest,
            members,
            subjects: manifest.subjects.iter().map(String::as_str).collect(),
            purged: manifest.purged.iter().map(String::as_str).collect(),
        }
    }

    fn of_kind(
        &self,
        pick: fn(&Kind) -> Option<&str>,
    ) -> impl Iterator<Item = (&'a str, &'a Member)> {
        self.members
            .iter()
            .filter_map(move |m| pick(&m.kind).map(|name| (name, m)))
    }

    fn content(&self, path: &str) -> &'a [u8] {
        member(self.members, path).map_or(&[], |m| &m.content)
    }
}

/// The receipt keys as `keys/receipt-keys.json` holds them, and the ones that signed receipts.
struct ReceiptKeys {
    jwks: serde_json::Result<serde_json::Value>,
    used: BTreeSet<String>,
}
