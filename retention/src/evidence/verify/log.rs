//! The checks of the log in the bundle: `log-entries`, `checkpoints`, `proofs`,
//! `subjects`.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::evidence::Proofs;
use crate::evidence::layout::{
    CHECKPOINT_KEYS, CHECKPOINTS, CheckpointLine, ENTRIES, EntryLine, PROOFS, is_sha256_hex,
};
use crate::keys::CheckpointVerifier;
use crate::ledger::{Checkpoint, Entry, GENESIS_HASH, MAX_FIELD_LEN, entry_hash};

use super::{Contents, Problems, Report, member};

/// The `log-entries` check: `log/entries.jsonl` parses, and its entries chain
/// ([`check_chain`]); answers them by seq and their runs.
pub(super) fn check_log_entries(
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
pub(super) fn check_checkpoints(
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
pub(super) fn check_proofs(
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
pub(super) fn check_subjects(
    ctx: &Contents<'_>,
    report: &mut Report,
    entries: &BTreeMap<i64, Entry>,
) {
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
    let proofs: Proofs = match serde_json::from_slice(&m.content) {
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
