//! The checks of the files the log entries and `submissions.json` name: `originals`,
//! `receipts`, `certificates`, `crls`, `submissions`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::evidence::layout::{
    Kind, RECEIPT_KEYS, SUBMISSIONS, is_message_id, is_sha256_hex, submission_subject,
};
use crate::ledger::{Entry, format_time};
use crate::{Error, receipts};

use super::{Contents, Member, Problems, ReceiptKeys, Report, member};

/// The `originals` check: every original is what its name says and is named, every
/// payload of the subjects' entries is included or purged; answers the originals
/// by name.
pub(super) fn check_originals<'a>(
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

/// The `receipts` check: each receipt verifies and matches its entry
/// ([`check_receipt`]); answers the receipt keys for the `keys` check.
pub(super) fn check_receipts(
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
pub(super) fn check_der_members(
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
pub(super) fn check_submissions(
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

pub(super) fn certificates_of(k: &Kind) -> Option<&str> {
    match k {
        Kind::Certificate(n) => Some(n),
        _ => None,
    }
}

pub(super) fn crls_of(k: &Kind) -> Option<&str> {
    match k {
        Kind::Crl(n) => Some(n),
        _ => None,
    }
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
pub(super) struct SubmissionRefs {
    filings: u64,
    originals: Vec<(String, String)>,
    certificates: Vec<(String, String)>,
    crls: Vec<(String, String)>,
}

pub(super) fn parse_submissions(ctx: &Contents<'_>, problems: &mut Problems) -> SubmissionRefs {
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
