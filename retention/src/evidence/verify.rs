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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::ops::Bound;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::keys::CheckpointVerifier;
use crate::ledger::{Checkpoint, Entry, GENESIS_HASH, MAX_FIELD_LEN, entry_hash, format_time};
use crate::{Error, Result, receipts};

use super::layout::{
    BLOCK, CHECKPOINT_KEYS, CHECKPOINTS, CheckpointLine, ENTRIES, EntryLine, Kind, MANIFEST,
    MANIFEST_SIG, PROOFS, RECEIPT_KEYS, REQUIRED, SUBMISSIONS, canonical_header, classify,
    header_field, is_message_id, is_sha256_hex, padding, parse_time, read_full, submission_subject,
};
use super::{
    DEFAULT_MAX_MEMBER_BYTES, DEFAULT_MAX_MEMBERS, FORMAT, MAX_MEMBER_BYTES, Manifest,
    manifest_signing_input,
};

/// Problems listed per check before the rest are only counted.
const MAX_PROBLEMS: usize = 100;

/// The checks, in the order a report lists them.
const CHECKS: [&str; 13] = [
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
    /// Largest member accepted, in bytes (at most [`MAX_MEMBER_BYTES`]).
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

/// The `archive` check: reads the archive into `members`; answers whether it is in
/// canonical form (the other checks need that to run at all). `Err` only when
/// reading fails.
fn check_archive(
    input: impl Read,
    opts: &VerifyOptions,
    members: &mut Vec<Member>,
    report: &mut Report,
) -> Result<bool> {
    let framing = read_archive(input, opts, members, &mut report.counts)?;
    report.counts.members = members.len() as u64;
    if let Err(problem) = framing {
        report.fail("archive", problem);
        return Ok(false);
    }
    let mut problems = Problems::default();
    for path in REQUIRED {
        if !members.iter().any(|m| m.path == path) {
            problems.push(format!("{path} is missing"));
        }
    }
    report.record(
        "archive",
        format!(
            "{} members, {} bytes, in canonical ustar form and order",
            report.counts.members, report.counts.bytes
        ),
        problems,
    );
    Ok(true)
}

/// Reads the archive block by block into `members`. The outer `Err` is a read
/// failure; the inner one names where the archive leaves the canonical form.
fn read_archive(
    mut input: impl Read,
    opts: &VerifyOptions,
    members: &mut Vec<Member>,
    counts: &mut Counts,
) -> Result<Result<(), String>> {
    let io = |e| Error::io("evidence bundle", e);
    let max_size = opts.max_member_bytes.min(MAX_MEMBER_BYTES);
    let mut block = [0u8; BLOCK];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let at = counts.bytes;
        let n = read_full(&mut input, &mut block).map_err(io)?;
        counts.bytes += n as u64;
        if n < BLOCK {
            return Ok(Err(format!(
                "the archive ends at byte {} without its end marker: it was cut short",
                counts.bytes
            )));
        }
        if block.iter().all(|&b| b == 0) {
            let n = read_full(&mut input, &mut block).map_err(io)?;
            counts.bytes += n as u64;
            if n < BLOCK || block.iter().any(|&b| b != 0) {
                return Ok(Err(format!(
                    "the end marker at byte {at} is not two zero blocks"
                )));
            }
            if read_full(&mut input, &mut [0u8; 1]).map_err(io)? != 0 {
                return Ok(Err(format!(
                    "bytes follow the end marker (at byte {})",
                    counts.bytes
                )));
            }
            if members.is_empty() {
                return Ok(Err("the archive has no members".into()));
            }
            return Ok(Ok(()));
        }

        let index = members.len() as u64 + 1;
        if index > opts.max_members {
            return Ok(Err(format!(
                "more than {} members (the limit)",
                opts.max_members
            )));
        }
        let name = block[..100].split(|&b| b == 0).next().unwrap_or_default();
        let Some((path, kind)) = std::str::from_utf8(name)
            .ok()
            .and_then(|p| Some((p.to_owned(), classify(p)?)))
        else {
            return Ok(Err(format!(
                "member {index} (header at byte {at}) is named {:?}, not a path of the \
                 bundle layout",
                String::from_utf8_lossy(name)
            )));
        };
        let Some(size) = octal_size(&block[124..136]) else {
            return Ok(Err(format!(
                "{path} (header at byte {at}): the size field is not 11 octal digits and a NUL"
            )));
        };
        if size > max_size {
            return Ok(Err(format!(
                "{path} is {size} bytes, more than the {max_size} allowed"
            )));
        }
        let canonical = match canonical_header(&path, size) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(i) = (0..BLOCK).find(|&i| block[i] != canonical[i]) {
            return Ok(Err(format!(
                "{path} (header at byte {at}): header byte {i} ({}) differs from the \
                 canonical header",
                header_field(i)
            )));
        }
        let order = match (index, members.last()) {
            (1, _) if path != MANIFEST => {
                Some(format!("the first member is {path}, not {MANIFEST}"))
            }
            (2, _) if path != MANIFEST_SIG => {
                Some(format!("the second member is {path}, not {MANIFEST_SIG}"))
            }
            (3.., Some(prev))
                if path == MANIFEST || path == MANIFEST_SIG || (index > 3 && path <= prev.path) =>
            {
                Some(format!(
                    "{path} follows {}: after the manifest and its signature, members \
                     come once each, in ascending byte order of their paths",
                    prev.path
                ))
            }
            _ => None,
        };
        if let Some(problem) = order {
            return Ok(Err(problem));
        }

        let buffered = kind.buffered();
        let mut hasher = Sha256::new();
        let mut content = Vec::new();
        let mut head = Vec::new();
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
            let n = read_full(&mut input, &mut buf[..want]).map_err(io)?;
            counts.bytes += n as u64;
            let got = &buf[..n];
            hasher.update(got);
            if buffered {
                content.extend_from_slice(got);
            } else if head.len() < 6 {
                let take = (6 - head.len()).min(n);
                head.extend_from_slice(&got[..take]);
            }
            left -= n as u64;
            if n < want {
                return Ok(Err(format!(
                    "the archive ends at byte {}, inside {path}: it was cut short",
                    counts.bytes
                )));
            }
        }
        let pad = padding(size);
        let n = read_full(&mut input, &mut block[..pad]).map_err(io)?;
        counts.bytes += n as u64;
        if n < pad {
            return Ok(Err(format!(
                "the archive ends at byte {}, inside {path}'s padding: it was cut short",
                counts.bytes
            )));
        }
        if let Some(i) = block[..pad].iter().position(|&b| b != 0) {
            return Ok(Err(format!(
                "{path}: padding byte at {} is not zero",
                counts.bytes - (pad - i) as u64
            )));
        }
        members.push(Member {
            path,
            kind,
            size,
            sha256: hex::encode(hasher.finalize()),
            content,
            head,
        });
    }
}

/// A ustar size field in the canonical form: 11 octal digits, then NUL.
fn octal_size(field: &[u8]) -> Option<u64> {
    let (last, digits) = field.split_last()?;
    if *last != 0 || digits.len() != 11 || !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    let text = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(text, 8).ok()
}

fn check_manifest(members: &[Member], report: &mut Report) -> Option<Manifest> {
    let mut problems = Problems::default();
    let Some(m) = member(members, MANIFEST) else {
        report.fail("manifest", format!("{MANIFEST} is missing"));
        return None;
    };
    let manifest: Manifest = match serde_json::from_slice(&m.content) {
        Ok(manifest) => manifest,
        Err(e) => {
            report.fail("manifest", format!("{MANIFEST} is not a v1 manifest: {e}"));
            return None;
        }
    };
    if manifest.format != FORMAT {
        problems.push(format!("format is {:?}, not {FORMAT:?}", manifest.format));
    }
    if parse_time(&manifest.created_at).is_none() {
        problems.push(format!(
            "created_at {:?} is not YYYY-MM-DDTHH:MM:SS.ffffffZ",
            manifest.created_at
        ));
    }
    if manifest.created_by.is_empty() {
        problems.push("created_by is empty");
    }
    if !manifest.query.is_object() {
        problems.push("query is not a JSON object");
    }
    if manifest.subjects.is_empty() {
        problems.push("subjects is empty: the bundle is evidence about nothing");
    }
    for (what, list) in [
        ("subjects", &manifest.subjects),
        ("purged", &manifest.purged),
        ("checkpoint_key_ids", &manifest.checkpoint_key_ids),
        ("receipt_key_ids", &manifest.receipt_key_ids),
    ] {
        let mut seen = BTreeSet::new();
        for item in list {
            if item.is_empty() || !seen.insert(item) {
                problems.push(format!("{what} has an empty or repeated item {item:?}"));
            }
        }
    }
    for p in &manifest.purged {
        if !is_sha256_hex(p) {
            problems.push(format!("purged {p:?} is not a SHA-256 in lowercase hex"));
        }
    }

    let archived = members.get(2..).unwrap_or_default();
    let mut listed = BTreeMap::new();
    for f in &manifest.files {
        if listed.insert(f.path.as_str(), f).is_some() {
            problems.push(format!("{} is listed twice", f.path));
        }
    }
    for m in archived {
        match listed.get(m.path.as_str()) {
            None => problems.push(format!(
                "{} is in the archive but not in the manifest",
                m.path
            )),
            Some(f) if f.sha256 != m.sha256 || f.size != m.size => problems.push(format!(
                "{}: its content has SHA-256 {} ({} bytes) but the manifest lists {} ({} bytes)",
                m.path, m.sha256, m.size, f.sha256, f.size
            )),
            Some(_) => {}
        }
    }
    for f in &manifest.files {
        if !archived.iter().any(|m| m.path == f.path) {
            problems.push(format!(
                "{} is listed in the manifest but not in the archive",
                f.path
            ));
        }
    }
    if problems.is_empty()
        && !manifest
            .files
            .iter()
            .map(|f| &f.path)
            .eq(archived.iter().map(|m| &m.path))
    {
        problems.push("the manifest lists the files in another order than the archive");
    }
    report.record(
        "manifest",
        format!(
            "{FORMAT}; lists all {} other members with the SHA-256 and size their content has",
            archived.len()
        ),
        problems,
    );
    report.manifest = Some(manifest.clone());
    Some(manifest)
}

/// Checks `manifest.sig`; answers the key id that signed when it verifies.
fn check_signature(
    members: &[Member],
    bundle_keys: Option<&Result<CheckpointVerifier, String>>,
    pinned: Option<&CheckpointVerifier>,
    report: &mut Report,
) -> Option<String> {
    const NAME: &str = "manifest-signature";
    let (Some(manifest), Some(sig)) = (member(members, MANIFEST), member(members, MANIFEST_SIG))
    else {
        report.fail(NAME, "the manifest or its signature is missing".into());
        return None;
    };
    let parsed = std::str::from_utf8(&sig.content)
        .ok()
        .and_then(|t| t.strip_suffix('\n'))
        .and_then(|t| t.split_once('\n'))
        .filter(|(sig, kid)| {
            !kid.is_empty()
                && !kid.contains(char::is_whitespace)
                && STANDARD
                    .decode(sig)
                    .is_ok_and(|raw| raw.len() == 64 && STANDARD.encode(&raw) == *sig)
        });
    let Some((signature, kid)) = parsed else {
        report.fail(
            NAME,
            format!("{MANIFEST_SIG} is not \"<base64 Ed25519 signature>\\n<key id>\\n\""),
        );
        return None;
    };
    let bundle_keys = match bundle_keys {
        Some(Ok(keys)) => keys,
        Some(Err(e)) => {
            report.fail(NAME, format!("{CHECKPOINT_KEYS}: {e}"));
            return None;
        }
        None => {
            report.fail(NAME, format!("{CHECKPOINT_KEYS} is missing"));
            return None;
        }
    };
    let mut problems = Problems::default();
    if !bundle_keys.key_ids().any(|k| k == kid) {
        problems.push(format!(
            "the manifest is signed by key {kid}, which is not in {CHECKPOINT_KEYS}"
        ));
    }
    if let Some(pinned) = pinned
        && !pinned.key_ids().any(|k| k == kid)
    {
        problems.push(format!(
            "the manifest is signed by key {kid}, which is not among the pinned checkpoint keys"
        ));
    }
    let verifier = pinned.unwrap_or(bundle_keys);
    if problems.is_empty() {
        match verifier.verify(kid, &manifest_signing_input(&manifest.content), signature) {
            Ok(true) => {}
            Ok(false) => problems.push(format!(
                "the signature by key {kid} does not verify: the manifest was altered"
            )),
            Err(e) => problems.push(e),
        }
    }
    let detail = if pinned.is_some() {
        format!("{MANIFEST} is signed by checkpoint key {kid}, one of the pinned keys")
    } else {
        format!(
            "{MANIFEST} is signed by checkpoint key {kid} from the bundle's own \
             {CHECKPOINT_KEYS} (no pinned keys given)"
        )
    };
    let ok = problems.is_empty();
    report.record(NAME, detail, problems);
    ok.then(|| kid.to_owned())
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

fn originals_of(k: &Kind) -> Option<&str> {
    match k {
        Kind::Original(n) => Some(n),
        _ => None,
    }
}

fn receipts_of(k: &Kind) -> Option<&str> {
    match k {
        Kind::Receipt(n) => Some(n),
        _ => None,
    }
}

fn certificates_of(k: &Kind) -> Option<&str> {
    match k {
        Kind::Certificate(n) => Some(n),
        _ => None,
    }
}

fn crls_of(k: &Kind) -> Option<&str> {
    match k {
        Kind::Crl(n) => Some(n),
        _ => None,
    }
}

/// The `log-entries` check: `log/entries.jsonl` parses, and its entries chain
/// ([`check_chain`]); answers them by seq and their runs.
fn check_log_entries(
    ctx: &Contents<'_>,
    report: &mut Report,
) -> (BTreeMap<i64, Entry>, Vec<(i64, i64)>) {
    let mut problems = Problems::default();
    let entries = parse_lines::<EntryLine>(ctx.content(ENTRIES), ENTRIES, &mut problems)
        .into_iter()
        .filter_map(|(line, e)| match e.into_entry() {
            Ok(e) => Some(e),
            Err(why) => {
                problems.push(format!("{ENTRIES} line {line}: {why}"));
                None
            }
        })
        .collect::<Vec<_>>();
    let (entries, runs) = check_chain(entries, &mut problems);
    report.counts.entries = entries.len() as u64;
    report.counts.runs = runs.len() as u64;
    report.record(
        "log-entries",
        format!(
            "{} entries in {} run(s): every entry_hash recomputes, each run links by \
             prev_hash, recorded_at never goes back",
            entries.len(),
            runs.len()
        ),
        problems,
    );
    (entries, runs)
}

/// The `checkpoints` check: `log/checkpoints.jsonl` parses, each checkpoint holds
/// ([`check_each_checkpoint`]), and every run of entries ends at one; answers them.
fn check_checkpoints(
    ctx: &Contents<'_>,
    report: &mut Report,
    entries: &BTreeMap<i64, Entry>,
    runs: &[(i64, i64)],
    verifier: &CheckpointVerifier,
    bundle_keys: &CheckpointVerifier,
    pinned: Option<&CheckpointVerifier>,
) -> Vec<Checkpoint> {
    let mut problems = Problems::default();
    let checkpoints =
        parse_lines::<CheckpointLine>(ctx.content(CHECKPOINTS), CHECKPOINTS, &mut problems)
            .into_iter()
            .filter_map(|(line, c)| match c.into_checkpoint() {
                Ok(c) => Some(c),
                Err(why) => {
                    problems.push(format!("{CHECKPOINTS} line {line}: {why}"));
                    None
                }
            })
            .collect::<Vec<_>>();
    let vouched = check_each_checkpoint(
        &checkpoints,
        entries,
        ctx,
        verifier,
        bundle_keys,
        pinned,
        &mut problems,
    );
    for (start, end) in runs {
        if !vouched.contains(end) {
            problems.push(format!(
                "entries {start}..={end} end at entry {end}, which no valid checkpoint in the \
                 bundle vouches for"
            ));
        }
    }
    report.counts.checkpoints = checkpoints.len() as u64;
    report.record(
        "checkpoints",
        format!(
            "{} signed checkpoint(s) match their entries' hashes; each of the {} run(s) ends \
             at one",
            checkpoints.len(),
            runs.len()
        ),
        problems,
    );
    checkpoints
}

/// The `proofs` check ([`verify_proofs`]).
fn check_proofs(
    ctx: &Contents<'_>,
    report: &mut Report,
    entries: &BTreeMap<i64, Entry>,
    checkpoints: &[Checkpoint],
    verifier: &CheckpointVerifier,
    witnesses: &[String],
) {
    let mut problems = Problems::default();
    let detail = verify_proofs(
        ctx,
        entries,
        checkpoints,
        verifier,
        witnesses,
        &mut problems,
    );
    report.record("proofs", detail, problems);
}

/// The `subjects` check: each subject of the manifest has entries in the bundle.
fn check_subjects(ctx: &Contents<'_>, report: &mut Report, entries: &BTreeMap<i64, Entry>) {
    let mut problems = Problems::default();
    let mut about = 0u64;
    for s in &ctx.manifest.subjects {
        let n = entries.values().filter(|e| &e.subject == s).count();
        if n == 0 {
            problems.push(format!("subject {s} has no entry in the bundle"));
        }
        about += n as u64;
    }
    report.counts.subjects = ctx.manifest.subjects.len() as u64;
    report.record(
        "subjects",
        format!(
            "each of the {} subject(s) has entries in the bundle ({about} entries about them)",
            ctx.subjects.len()
        ),
        problems,
    );
}

/// The `originals` check: every original is what its name says and is named, every
/// payload of the subjects' entries is included or purged; answers the originals
/// by name.
fn check_originals<'a>(
    ctx: &Contents<'a>,
    report: &mut Report,
    entries: &BTreeMap<i64, Entry>,
    refs: &SubmissionRefs,
) -> BTreeMap<&'a str, &'a Member> {
    let mut problems = Problems::default();
    let present: BTreeMap<&str, &Member> = ctx.of_kind(originals_of).collect();
    let named: BTreeSet<&str> = entries
        .values()
        .filter_map(|e| e.payload_sha256.as_deref())
        .chain(refs.originals.iter().map(|(_, sha)| sha.as_str()))
        .collect();
    let mut absent_purged = 0u64;
    for e in entries
        .values()
        .filter(|e| ctx.subjects.contains(e.subject.as_str()))
    {
        let Some(sha) = e.payload_sha256.as_deref() else {
            continue;
        };
        if present.contains_key(sha) {
            continue;
        }
        if ctx.purged.contains(sha) {
            absent_purged += 1;
        } else {
            problems.push(format!(
                "entry {} ({} on {}) names payload {sha}, which is neither in originals/ nor \
                 listed as purged",
                e.seq, e.action, e.subject
            ));
        }
    }
    for (name, m) in &present {
        if m.sha256 != *name {
            problems.push(format!("{}: its content hashes to {}", m.path, m.sha256));
        }
        if !named.contains(name) {
            problems.push(format!(
                "{} is named by no entry in the bundle and not by {SUBMISSIONS}",
                m.path
            ));
        }
    }
    for p in &ctx.purged {
        if present.contains_key(p) {
            problems.push(format!(
                "{p} is listed as purged but its original is included"
            ));
        }
        if !named.contains(p) {
            problems.push(format!(
                "{p} is listed as purged but nothing in the bundle names it"
            ));
        }
    }
    report.counts.originals = present.len() as u64;
    report.counts.purged = ctx.purged.len() as u64;
    report.record(
        "originals",
        format!(
            "{} original(s) hash to their names and are named by entries; every payload of \
             the subjects' entries is included or purged ({absent_purged} purged)",
            present.len()
        ),
        problems,
    );
    present
}

/// The receipt keys as `keys/receipt-keys.json` holds them, and the ones that signed receipts.
struct ReceiptKeys {
    jwks: serde_json::Result<serde_json::Value>,
    used: BTreeSet<String>,
}

/// The `receipts` check: each receipt verifies and matches its entry
/// ([`check_receipt`]); answers the receipt keys for the `keys` check.
fn check_receipts(
    ctx: &Contents<'_>,
    report: &mut Report,
    entries: &BTreeMap<i64, Entry>,
) -> ReceiptKeys {
    let mut problems = Problems::default();
    let receipt_jwks = serde_json::from_slice::<serde_json::Value>(ctx.content(RECEIPT_KEYS));
    let mut used_receipt_kids = BTreeSet::new();
    let mut receipts = 0u64;
    for (id, m) in ctx.of_kind(receipts_of) {
        receipts += 1;
        let Ok(jws) = std::str::from_utf8(&m.content) else {
            problems.push(format!("{}: not text", m.path));
            continue;
        };
        if let Some(kid) = jsonwebtoken::decode_header(jws).ok().and_then(|h| h.kid) {
            if !ctx.manifest.receipt_key_ids.contains(&kid) {
                problems.push(format!(
                    "{}: signed by key {kid}, which the manifest does not list",
                    m.path
                ));
            }
            used_receipt_kids.insert(kid);
        }
        let claims = match &receipt_jwks {
            Ok(jwks) => receipts::verify(jws, jwks),
            Err(e) => Err(Error::Invalid(format!("{RECEIPT_KEYS}: {e}"))),
        };
        match claims {
            Ok(claims) => check_receipt(id, &m.path, &claims, ctx, entries, &mut problems),
            Err(e) => problems.push(format!("{}: {e}", m.path)),
        }
    }
    report.counts.receipts = receipts;
    report.record(
        "receipts",
        format!(
            "{receipts} receipt(s) verify (ES256) with {RECEIPT_KEYS} and match their \
             submission.receive entries (message, log_seq, sha256, received_at; the sha256 of \
             a pre-registration is its submission.accept entry's document)"
        ),
        problems,
    );
    ReceiptKeys {
        jwks: receipt_jwks,
        used: used_receipt_kids,
    }
}

/// The `certificates` or `crls` check (`name`), for the members `pick` names: each
/// hashes to its name and is one DER SEQUENCE.
fn check_der_members(
    ctx: &Contents<'_>,
    report: &mut Report,
    name: &'static str,
    pick: fn(&Kind) -> Option<&str>,
    what: &str,
) {
    let mut problems = Problems::default();
    let mut n = 0u64;
    for (sha, m) in ctx.of_kind(pick) {
        n += 1;
        if m.sha256 != sha {
            problems.push(format!("{}: its content hashes to {}", m.path, m.sha256));
        }
        if let Err(why) = der_sequence(&m.head, m.size) {
            problems.push(format!("{}: {why}", m.path));
        }
    }
    if name == "certificates" {
        report.counts.certificates = n;
    } else {
        report.counts.crls = n;
    }
    report.record(
        name,
        format!(
            "{n} {what}(s) hash to their names and are DER SEQUENCEs (not validated as X.509 here)"
        ),
        problems,
    );
}

/// The `submissions` check: what `submissions.json` names ([`parse_submissions`], whose
/// problems it reports) is in the bundle.
fn check_submissions(
    ctx: &Contents<'_>,
    report: &mut Report,
    refs: SubmissionRefs,
    submission_problems: Problems,
    present: &BTreeMap<&str, &Member>,
) {
    let mut problems = submission_problems;
    let certificates: BTreeSet<&str> = ctx.of_kind(certificates_of).map(|(n, _)| n).collect();
    let crls: BTreeSet<&str> = ctx.of_kind(crls_of).map(|(n, _)| n).collect();
    for (at, sha) in &refs.originals {
        if !present.contains_key(sha.as_str()) && !ctx.purged.contains(sha.as_str()) {
            problems.push(format!(
                "{at} names original {sha}, which is neither included nor listed as purged"
            ));
        }
    }
    for (at, sha) in &refs.certificates {
        if !certificates.contains(sha.as_str()) {
            problems.push(format!(
                "{at} names certificate {sha}, which is not included"
            ));
        }
    }
    for (at, sha) in &refs.crls {
        if !crls.contains(sha.as_str()) {
            problems.push(format!("{at} names CRL {sha}, which is not included"));
        }
    }
    report.counts.submissions = refs.filings;
    let detail = if member(ctx.members, SUBMISSIONS).is_some() {
        format!(
            "{} filing(s) in {SUBMISSIONS}; their messages are subjects and their originals, \
             certificates and CRLs are included (or purged)",
            refs.filings
        )
    } else {
        format!("no {SUBMISSIONS} (it is optional)")
    };
    report.record("submissions", detail, problems);
}

/// The `keys` check: the manifest lists exactly the keys that signed, every
/// checkpoint key is in the bundle (and pinned, with pinned keys), receipt key ids
/// are thumbprints.
fn check_keys(
    ctx: &Contents<'_>,
    report: &mut Report,
    checkpoints: &[Checkpoint],
    manifest_signer: String,
    receipt_keys: ReceiptKeys,
    bundle_keys: &CheckpointVerifier,
    pinned: Option<&CheckpointVerifier>,
) {
    let ReceiptKeys {
        jwks: receipt_jwks,
        used: used_receipt_kids,
    } = receipt_keys;
    let mut used_checkpoint_kids: BTreeSet<String> =
        checkpoints.iter().map(|c| c.key_id.clone()).collect();
    used_checkpoint_kids.insert(manifest_signer);
    let mut problems = Problems::default();
    let listed: BTreeSet<&String> = ctx.manifest.checkpoint_key_ids.iter().collect();
    if listed != used_checkpoint_kids.iter().collect() {
        problems.push(format!(
            "the manifest lists checkpoint keys [{}] but [{}] signed",
            join(&listed),
            join(&used_checkpoint_kids)
        ));
    }
    let listed: BTreeSet<&String> = ctx.manifest.receipt_key_ids.iter().collect();
    if listed != used_receipt_kids.iter().collect() {
        problems.push(format!(
            "the manifest lists receipt keys [{}] but [{}] signed",
            join(&listed),
            join(&used_receipt_kids)
        ));
    }
    for kid in &used_checkpoint_kids {
        if !bundle_keys.key_ids().any(|k| k == kid) {
            problems.push(format!("checkpoint key {kid} is not in {CHECKPOINT_KEYS}"));
        }
        if let Some(pinned) = pinned
            && !pinned.key_ids().any(|k| k == kid)
        {
            problems.push(format!("checkpoint key {kid} is not among the pinned keys"));
        }
    }
    match &receipt_jwks {
        Ok(jwks) => {
            let keys = jwks.get("keys").and_then(|k| k.as_array());
            for jwk in keys.map(Vec::as_slice).unwrap_or_default() {
                let kid = jwk.get("kid").and_then(|k| k.as_str()).unwrap_or_default();
                if jwk_thumbprint(jwk).as_deref() != Some(kid) {
                    problems.push(format!(
                        "{RECEIPT_KEYS}: kid {kid:?} is not its key's RFC 7638 thumbprint"
                    ));
                }
            }
            if keys.is_none() {
                problems.push(format!("{RECEIPT_KEYS} has no \"keys\" array"));
            }
        }
        Err(e) => problems.push(format!("{RECEIPT_KEYS}: {e}")),
    }
    let cp_kids = join(&used_checkpoint_kids);
    let rc_kids = join(&used_receipt_kids);
    let detail = if pinned.is_some() {
        format!(
            "checkpoint key(s) {cp_kids} are pinned keys; receipt key(s) [{rc_kids}] are vouched \
             for by the signed manifest; key ids are RFC 7638 thumbprints"
        )
    } else {
        format!(
            "NOT PINNED: checkpoint key(s) {cp_kids} are the bundle's own, so this proves \
             integrity relative to them only; compare these ids with the intermediary's \
             published keys (/.well-known/ivan/checkpoint-keys.json) or verify with pinned \
             keys. Receipt key(s) [{rc_kids}] are vouched for by the signed manifest"
        )
    };
    report.checkpoint_key_ids = used_checkpoint_kids.into_iter().collect();
    report.receipt_key_ids = used_receipt_kids.into_iter().collect();
    report.record("keys", detail, problems);
}

fn join<T: AsRef<str>>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|s| s.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a JSON Lines member: one object per line, each line ending in `\n`.
fn parse_lines<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &str,
    problems: &mut Problems,
) -> Vec<(usize, T)> {
    let mut out = Vec::new();
    let Some(body) = bytes.strip_suffix(b"\n") else {
        if !bytes.is_empty() {
            problems.push(format!("{path} does not end with a newline"));
        }
        return out;
    };
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        match serde_json::from_slice(line) {
            Ok(item) => out.push((i + 1, item)),
            Err(e) => problems.push(format!("{path} line {}: {e}", i + 1)),
        }
    }
    out
}

/// Checks the entries (ascending, each well formed and hashing right, linked
/// within runs); answers them by seq and the runs as (first, last) seq.
fn check_chain(
    entries: Vec<Entry>,
    problems: &mut Problems,
) -> (BTreeMap<i64, Entry>, Vec<(i64, i64)>) {
    let mut by_seq: BTreeMap<i64, Entry> = BTreeMap::new();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    let mut kept: Vec<Entry> = Vec::with_capacity(entries.len());
    for e in entries {
        if let Some(p) = kept.last()
            && e.seq <= p.seq
        {
            problems.push(format!(
                "entry {} follows entry {}: entries come once each, in ascending seq order",
                e.seq, p.seq
            ));
            continue;
        }
        kept.push(e);
    }
    let mut last: Option<&Entry> = None;
    for e in &kept {
        let seq = e.seq;
        let fault = |why: String| format!("entry {seq}: {why}");
        if seq < 1 {
            problems.push(fault("seq is not positive".into()));
        }
        for (name, value) in [
            ("actor", &e.actor),
            ("action", &e.action),
            ("subject", &e.subject),
        ] {
            if value.is_empty() || value.len() > MAX_FIELD_LEN {
                problems.push(fault(format!("{name} is not 1 to {MAX_FIELD_LEN} bytes")));
            }
        }
        if let Some(p) = &e.payload_sha256
            && !is_sha256_hex(p)
        {
            problems.push(fault(format!(
                "payload_sha256 {p:?} is not a SHA-256 in lowercase hex"
            )));
        }
        for (name, value) in [("prev_hash", &e.prev_hash), ("entry_hash", &e.entry_hash)] {
            if !is_sha256_hex(value) {
                problems.push(fault(format!("{name} is not 64 lowercase hex digits")));
            }
        }
        match entry_hash(&e.fields()) {
            Some(h) if h == e.entry_hash => {}
            _ => problems.push(fault(
                "its content does not match its entry_hash (the entry was altered)".into(),
            )),
        }
        match last {
            Some(p) if p.seq + 1 == seq => {
                if e.prev_hash != p.entry_hash {
                    problems.push(fault(format!(
                        "prev_hash does not match entry {}'s hash (chain broken)",
                        p.seq
                    )));
                }
                if e.recorded_at < p.recorded_at {
                    problems.push(fault(format!(
                        "recorded_at is earlier than entry {}'s",
                        p.seq
                    )));
                }
                if let Some(run) = runs.last_mut() {
                    run.1 = seq;
                }
            }
            _ => {
                if seq == 1 && e.prev_hash != GENESIS_HASH {
                    problems.push(fault("the first entry's prev_hash is not 64 zeros".into()));
                }
                runs.push((seq, seq));
            }
        }
        last = Some(e);
    }
    for e in kept {
        by_seq.insert(e.seq, e);
    }
    (by_seq, runs)
}

/// Checks each checkpoint; answers the tree sizes of those that hold.
fn check_each_checkpoint(
    checkpoints: &[Checkpoint],
    entries: &BTreeMap<i64, Entry>,
    ctx: &Contents<'_>,
    verifier: &CheckpointVerifier,
    bundle_keys: &CheckpointVerifier,
    pinned: Option<&CheckpointVerifier>,
    problems: &mut Problems,
) -> BTreeSet<i64> {
    let mut vouched = BTreeSet::new();
    let mut prev: Option<i64> = None;
    for cp in checkpoints {
        let size = cp.tree_size;
        let fault = |why: String| format!("checkpoint at tree size {size}: {why}");
        if prev.is_some_and(|p| size <= p) {
            problems.push(fault(
                "checkpoints are not in ascending tree_size order, each once".into(),
            ));
            continue;
        }
        prev = Some(size);
        let mut ok = true;
        match entries.get(&size) {
            None => {
                problems.push(fault(format!(
                    "entry {size}, which it vouches for, is not in the bundle"
                )));
                ok = false;
            }
            Some(e) if e.entry_hash != cp.head_hash => {
                problems.push(fault(format!(
                    "head_hash {} differs from entry {size}'s hash {} (the log was rewritten)",
                    cp.head_hash, e.entry_hash
                )));
                ok = false;
            }
            Some(_) => {}
        }
        if !ctx.manifest.checkpoint_key_ids.contains(&cp.key_id) {
            problems.push(fault(format!(
                "key {} is not listed in the manifest",
                cp.key_id
            )));
            ok = false;
        }
        if !bundle_keys.key_ids().any(|k| k == cp.key_id) {
            problems.push(fault(format!(
                "key {} is not in {CHECKPOINT_KEYS}",
                cp.key_id
            )));
            ok = false;
        }
        if pinned.is_some_and(|p| !p.key_ids().any(|k| k == cp.key_id)) {
            problems.push(fault(format!(
                "key {} is not among the pinned keys",
                cp.key_id
            )));
            ok = false;
        }
        match verifier.verify(&cp.key_id, cp.note().as_bytes(), &cp.signature) {
            Ok(true) => {}
            Ok(false) => {
                problems.push(fault("its signature does not verify".into()));
                ok = false;
            }
            Err(e) => {
                problems.push(fault(e));
                ok = false;
            }
        }
        if ok {
            vouched.insert(size);
        }
    }
    vouched
}

/// `log/proofs.json`: every entry's inclusion and every C2SP checkpoint's
/// consistency with the newest checkpoint, whose signature (and the required
/// witnesses' cosignatures) must verify. Answers what was established.
fn verify_proofs(
    ctx: &Contents<'_>,
    entries: &BTreeMap<i64, Entry>,
    checkpoints: &[Checkpoint],
    verifier: &CheckpointVerifier,
    witnesses: &[String],
    problems: &mut Problems,
) -> String {
    use crate::ledger::tree;
    let Some(m) = member(ctx.members, PROOFS) else {
        if !witnesses.is_empty() {
            problems.push(format!(
                "witness cosignatures are required, but the bundle has no {PROOFS}"
            ));
        }
        return format!("no {PROOFS} (bundles made before the log's Merkle tree have none)");
    };
    let proofs: super::Proofs = match serde_json::from_slice(&m.content) {
        Ok(p) => p,
        Err(e) => {
            problems.push(format!("{PROOFS}: {e}"));
            return "unreadable".into();
        }
    };
    let decode = |what: &str, hashes: &[String], problems: &mut Problems| {
        let decoded: Option<Vec<tree::Hash>> = hashes
            .iter()
            .map(|h| {
                STANDARD
                    .decode(h)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(tree::Hash)
            })
            .collect();
        if decoded.is_none() {
            problems.push(format!(
                "{PROOFS}: {what}: a hash is not 32 bytes of base64"
            ));
        }
        decoded
    };
    // The newest checkpoint, signed by one of the checkpoint keys.
    let Some(head) = verifier
        .key_ids()
        .find_map(|kid| tree::open_checkpoint(verifier, kid, &proofs.checkpoint).ok())
    else {
        problems.push(format!(
            "{PROOFS}: its checkpoint is not a C2SP checkpoint signed by a checkpoint key"
        ));
        return "not checked: the checkpoint does not verify".into();
    };
    let (size, root) = (head.size(), *head.hash());
    let mut by_seq: BTreeMap<i64, &[String]> = BTreeMap::new();
    for p in &proofs.inclusion {
        if by_seq.insert(p.seq, &p.proof).is_some() {
            problems.push(format!(
                "{PROOFS}: two inclusion proofs for entry {}",
                p.seq
            ));
        }
    }
    for e in entries.values() {
        let Some(proof) = by_seq.remove(&e.seq) else {
            problems.push(format!("entry {}: no inclusion proof", e.seq));
            continue;
        };
        let Some(proof) = decode(&format!("entry {}", e.seq), proof, problems) else {
            continue;
        };
        let mut raw = [0u8; 32];
        let included = hex::decode_to_slice(&e.entry_hash, &mut raw).is_ok()
            && u64::try_from(e.seq - 1).is_ok_and(|leaf| {
                tlog_tiles::check_record(&proof, size, root, leaf, tlog_tiles::record_hash(&raw))
                    .is_ok()
            });
        if !included {
            problems.push(format!(
                "entry {}: its inclusion proof does not lead to the root of the checkpoint of {size} entries",
                e.seq
            ));
        }
    }
    for seq in by_seq.keys() {
        problems.push(format!(
            "{PROOFS}: an inclusion proof for entry {seq}, which the bundle does not carry"
        ));
    }
    let mut by_size: BTreeMap<i64, &[String]> = proofs
        .consistency
        .iter()
        .map(|c| (c.tree_size, c.proof.as_slice()))
        .collect();
    let mut consistent = 0;
    for cp in checkpoints {
        let Some(older) = cp.tree_head(verifier) else {
            continue;
        };
        let at = |why: String| format!("checkpoint at tree size {}: {why}", cp.tree_size);
        let older = match older {
            Ok(h) => h,
            Err(e) => {
                problems.push(at(e));
                continue;
            }
        };
        if older.origin() != head.origin() {
            problems.push(at(format!(
                "it names the log {:?}, the newest checkpoint {:?}",
                older.origin(),
                head.origin()
            )));
        }
        let Some(proof) = by_size.remove(&cp.tree_size) else {
            problems.push(at("no consistency proof to the newest checkpoint".into()));
            continue;
        };
        let Some(proof) = decode(&at("consistency".into()), proof, problems) else {
            continue;
        };
        let ok = if older.size() == size {
            proof.is_empty() && older.hash() == &root
        } else {
            tlog_tiles::check_tree(&proof, size, root, older.size(), *older.hash()).is_ok()
        };
        if ok {
            consistent += 1;
        } else {
            problems.push(at(format!(
                "the newest checkpoint ({size} entries) does not extend it"
            )));
        }
    }
    for size in by_size.keys() {
        problems.push(format!(
            "{PROOFS}: a consistency proof from tree size {size}, which no checkpoint with a signed note in the bundle has"
        ));
    }
    let text = proofs
        .checkpoint
        .split_once("\n\n")
        .map(|(t, _)| format!("{t}\n"))
        .unwrap_or_default();
    let lines = proofs
        .checkpoint
        .split_once("\n\n")
        .map(|(_, l)| l)
        .unwrap_or_default();
    let mut cosigned = Vec::new();
    for vkey in witnesses {
        let verifier = match crate::ledger::witness::CosignatureVerifier::new(vkey) {
            Ok(v) => v,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        match crate::ledger::witness::cosignatures_of(&text, lines, std::slice::from_ref(&verifier))
        {
            Ok(found) if !found.is_empty() => cosigned.push(verifier.name().to_owned()),
            _ => problems.push(format!(
                "the checkpoint of {size} entries is not cosigned by the witness {}",
                verifier.name()
            )),
        }
    }
    format!(
        "{} entries proven in the log {:?} of {size} entries (its checkpoint verifies); {consistent} \
         checkpoint(s) consistent with it{}",
        entries.len(),
        head.origin(),
        if cosigned.is_empty() {
            String::new()
        } else {
            format!("; cosigned by {}", cosigned.join(", "))
        }
    )
}

fn check_receipt(
    id: &str,
    path: &str,
    claims: &receipts::Claims,
    ctx: &Contents<'_>,
    entries: &BTreeMap<i64, Entry>,
    problems: &mut Problems,
) {
    let subject = submission_subject(id);
    if claims.sub != id {
        problems.push(format!(
            "{path}: its sub is {:?}, not the message id {id}",
            claims.sub
        ));
    }
    if !ctx.subjects.contains(subject.as_str()) {
        problems.push(format!("{path}: {subject} is not a subject of the bundle"));
    }
    let Some(e) = entries.get(&claims.log_seq) else {
        problems.push(format!(
            "{path}: log entry {} (its log_seq) is not in the bundle",
            claims.log_seq
        ));
        return;
    };
    let mut differs = Vec::new();
    if e.subject != subject {
        differs.push(format!("subject is {:?}, not {subject:?}", e.subject));
    }
    if e.action != "submission.receive" {
        differs.push(format!(
            "action is {:?}, not \"submission.receive\"",
            e.action
        ));
    }
    if e.payload_sha256.as_deref() != Some(claims.sha256.as_str())
        && !covers_generated_document(e, &subject, &claims.sha256, entries)
    {
        differs.push(format!(
            "payload_sha256 is {:?}, and the filing's first submission.accept entry \
             does not name it either, but the receipt says {}",
            e.payload_sha256, claims.sha256
        ));
    }
    if let Some(h) = &claims.entry_hash
        && *h != e.entry_hash
    {
        differs.push(format!(
            "entry_hash is {}, but the receipt says {h}",
            e.entry_hash
        ));
    }
    let recorded_at = format_time(&e.recorded_at);
    if recorded_at != claims.received_at {
        differs.push(format!(
            "recorded_at is {recorded_at}, but the receipt says received_at {}",
            claims.received_at
        ));
    }
    if !differs.is_empty() {
        problems.push(format!(
            "{path}: entry {} does not match the receipt: {}",
            e.seq,
            differs.join("; ")
        ));
    }
}

/// Whether the receipt's `sha256` is the document the intermediary generated from the
/// request `receive` holds: a pre-registration filed from the mobile app is received
/// as the app's JSON request, and the XML document made from it (what the receipt
/// covers and what is forwarded) is the payload of the filing's first
/// `submission.accept` entry after `receive`.
fn covers_generated_document(
    receive: &Entry,
    subject: &str,
    sha256: &str,
    entries: &BTreeMap<i64, Entry>,
) -> bool {
    entries
        .range((Bound::Excluded(receive.seq), Bound::Unbounded))
        .map(|(_, e)| e)
        .find(|e| e.subject == subject && e.action == "submission.accept")
        .is_some_and(|accept| accept.payload_sha256.as_deref() == Some(sha256))
}

/// What `submissions.json` names, each with where (for messages).
#[derive(Default)]
struct SubmissionRefs {
    filings: u64,
    originals: Vec<(String, String)>,
    certificates: Vec<(String, String)>,
    crls: Vec<(String, String)>,
}

fn parse_submissions(ctx: &Contents<'_>, problems: &mut Problems) -> SubmissionRefs {
    let mut refs = SubmissionRefs::default();
    let Some(m) = member(ctx.members, SUBMISSIONS) else {
        return refs;
    };
    let value: serde_json::Value = match serde_json::from_slice(&m.content) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("{SUBMISSIONS}: {e}"));
            return refs;
        }
    };
    let Some(filings) = value.as_array() else {
        problems.push(format!("{SUBMISSIONS} is not a JSON array"));
        return refs;
    };
    for (i, filing) in filings.iter().enumerate() {
        refs.filings += 1;
        let at = format!("{SUBMISSIONS}[{i}]");
        let Some(obj) = filing.as_object() else {
            problems.push(format!("{at} is not a JSON object"));
            continue;
        };
        match obj.get("message_id").and_then(|v| v.as_str()) {
            Some(id) if is_message_id(id) => {
                if !ctx.subjects.contains(submission_subject(id).as_str()) {
                    problems.push(format!("{at}: message {id} is not a subject of the bundle"));
                }
            }
            _ => problems.push(format!("{at}: message_id is missing or malformed")),
        }
        let mut hashes = |field: &str, many: bool, into: &mut Vec<(String, String)>| {
            let Some(v) = obj.get(field).filter(|v| !v.is_null()) else {
                return;
            };
            let items: Vec<&serde_json::Value> = match (many, v.as_array()) {
                (true, Some(list)) => list.iter().collect(),
                (false, _) => vec![v],
                (true, None) => {
                    problems.push(format!("{at}: {field} is not an array"));
                    return;
                }
            };
            for item in items {
                match item.as_str() {
                    Some(sha) if is_sha256_hex(sha) => into.push((at.clone(), sha.to_owned())),
                    _ => problems.push(format!(
                        "{at}: {field} holds something other than a SHA-256 in lowercase hex"
                    )),
                }
            }
        };
        hashes("original_sha256", false, &mut refs.originals);
        hashes("answer_sha256s", true, &mut refs.originals);
        hashes("certificate_sha256s", true, &mut refs.certificates);
        hashes("crl_sha256s", true, &mut refs.crls);
    }
    refs
}

/// Whether a file of `size` bytes starting with `head` is exactly one DER SEQUENCE.
fn der_sequence(head: &[u8], size: u64) -> Result<(), String> {
    let [0x30, first, rest @ ..] = head else {
        return Err("does not start with a DER SEQUENCE (0x30)".into());
    };
    let (header, length) = if *first < 0x80 {
        (2u64, u64::from(*first))
    } else {
        let n = usize::from(first & 0x7f);
        let Some(octets) = rest.get(..n).filter(|_| (1..=4).contains(&n)) else {
            return Err("its DER length is indefinite or too long".into());
        };
        if octets.first() == Some(&0) || (n == 1 && octets.first().is_some_and(|&b| b < 0x80)) {
            return Err("its length is not in minimal (DER) form".into());
        }
        let length = octets
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        (2 + n as u64, length)
    };
    if header + length != size {
        return Err(format!(
            "its DER length says {} bytes but the file has {size}",
            header + length
        ));
    }
    Ok(())
}

/// RFC 7638 thumbprint of a JWK given as JSON (EC, OKP or RSA), or `None`.
fn jwk_thumbprint(jwk: &serde_json::Value) -> Option<String> {
    let names: &[&str] = match jwk.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        _ => return None,
    };
    let mut members = BTreeMap::new();
    for name in names {
        members.insert(*name, jwk.get(*name)?.as_str()?);
    }
    let json = serde_json::to_string(&members).ok()?;
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes())))
}
