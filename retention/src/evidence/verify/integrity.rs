//! The integrity checks: `archive`, `manifest`, `manifest-signature`. Only if they
//! hold are the contents checked.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::evidence::layout::{
    BLOCK, CHECKPOINT_KEYS, MANIFEST, MANIFEST_SIG, REQUIRED, canonical_header, classify,
    header_field, is_sha256_hex, padding, parse_time, read_full,
};
use crate::evidence::{FORMAT, MAX_MEMBER_BYTES, Manifest, manifest_signing_input};
use crate::keys::CheckpointVerifier;
use crate::{Error, Result};

use super::{Counts, Member, Problems, Report, VerifyOptions, member};

/// The `archive` check: reads the archive into `members`; answers whether it is in
/// canonical form (the other checks need that to run at all). `Err` only when
/// reading fails.
pub(super) fn check_archive(
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

pub(super) fn check_manifest(members: &[Member], report: &mut Report) -> Option<Manifest> {
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
pub(super) fn check_signature(
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
