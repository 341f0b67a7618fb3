//! Writing a bundle.
//!
//! The manifest comes first in the archive and lists every other member's hash, so
//! everything is known before the first byte is written: the structured members
//! (log entries, checkpoints, receipts, keys, certificates, CRLs, submissions) are
//! built in memory, and originals — the only members that may be large — are
//! listed from their content address (SHA-256 and size, as the originals index
//! knows them) and streamed from the caller's reader one at a time, hashed on the
//! way to prove they are what the manifest says.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::keys::Keys;
use crate::ledger::{Checkpoint, Entry, format_time};
use crate::{Error, Result, Sha256Hex};

use super::layout::{
    BLOCK, CHECKPOINT_KEYS, CHECKPOINTS, CheckpointLine, ENTRIES, EntryLine, MANIFEST,
    MANIFEST_SIG, PROOFS, RECEIPT_KEYS, SUBMISSIONS, canonical_header, certificate_path, crl_path,
    is_message_id, original_path, padding, read_full, receipt_path,
};
use super::{FORMAT, FileRecord, Manifest, manifest_signing_input};

/// An original to include: its content address. The bytes are read from the
/// caller's source when the bundle is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRef {
    pub sha256: Sha256Hex,
    pub size: u64,
}

/// A receipt as handed to the employer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The message id (the receipt's `sub`); names the file `receipts/<id>.jws`.
    pub message_id: String,
    /// The compact JWS, byte-exact.
    pub jws: String,
}

/// What goes into a bundle. Lists may come in any order and may repeat an item
/// (e.g. overlapping chain runs); the writer sorts and de-duplicates them, and
/// refuses two different items under one key (two entries with one `seq`).
#[derive(Debug, Clone)]
pub struct Contents {
    pub created_at: DateTime<Utc>,
    /// The actor making the export, e.g. `user:<officer id>` or `operator:<name>`.
    pub created_by: String,
    /// What the export was made for (a JSON object; carried as is).
    pub query: serde_json::Value,
    /// What the bundle is evidence about, e.g. `submission:<message id>`.
    pub subjects: Vec<String>,
    /// The subjects' entries and the chain links up to a checkpoint
    /// (see [`chain_link_ranges`]).
    pub entries: Vec<Entry>,
    /// The checkpoints that end those runs.
    pub checkpoints: Vec<Checkpoint>,
    /// Originals to include; their bytes come from the writer's `open_original`.
    pub originals: Vec<OriginalRef>,
    /// Payload hashes named by entries whose bytes retention removed.
    pub purged: Vec<Sha256Hex>,
    pub receipts: Vec<Receipt>,
    /// DER certificates (the signer's and its CA's).
    pub certificates: Vec<Vec<u8>>,
    /// DER CRLs.
    pub crls: Vec<Vec<u8>>,
    /// Optional per-filing summary (a JSON array), see `docs/evidence.md`.
    pub submissions: Option<serde_json::Value>,
    /// The entries' and checkpoints' proofs against the newest checkpoint (absent
    /// when the log has no C2SP checkpoint yet).
    pub proofs: Option<super::Proofs>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Archive size in bytes.
    pub bytes: u64,
    /// Members, manifest and signature included.
    pub members: u64,
    /// SHA-256 of `manifest.json`: quote it to identify the bundle.
    pub manifest_sha256: String,
    pub checkpoint_key_ids: Vec<String>,
    pub receipt_key_ids: Vec<String>,
}

enum Body<'a> {
    Bytes(Vec<u8>),
    Original(&'a Sha256Hex),
}

struct Staged<'a> {
    path: String,
    size: u64,
    sha256: String,
    body: Body<'a>,
}

impl Staged<'_> {
    fn bytes(path: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            path: path.into(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            body: Body::Bytes(bytes),
        }
    }
}

fn invalid(msg: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("evidence bundle: {msg}"))
}

/// Writes the bundle for `contents` to `out`, signing its manifest with the
/// checkpoint key. `open_original` is called once per original, in archive order,
/// and must yield exactly its bytes; memory use is the structured members plus a
/// 64 KiB copy buffer, whatever the originals' sizes.
///
/// On `Err` the output holds a partial archive and must be discarded. Originals that
/// do not match their SHA-256 or size are an error ([`Error::CorruptOriginal`],
/// [`Error::Invalid`]); so are contents that the format cannot represent. The log
/// contents themselves are not checked here: run [`super::verify`] on the result.
pub fn write<W: Write, R: Read>(
    contents: &Contents,
    keys: &Keys,
    mut open_original: impl FnMut(&Sha256Hex) -> io::Result<R>,
    out: W,
) -> Result<Summary> {
    if contents.created_by.is_empty() {
        return Err(invalid("created_by is empty"));
    }
    if !contents.query.is_object() {
        return Err(invalid("the query must be a JSON object"));
    }
    let subjects: BTreeSet<&str> = contents.subjects.iter().map(String::as_str).collect();
    if subjects.is_empty() || subjects.contains("") {
        return Err(invalid("a bundle needs at least one subject, none empty"));
    }

    let entries = unique_by(&contents.entries, |e| e.seq, "log entry")?;
    let checkpoints = unique_by(&contents.checkpoints, |c| c.tree_size, "checkpoint")?;
    let mut staged = vec![
        Staged::bytes(CHECKPOINT_KEYS, pretty(&keys.checkpoint_jwks())?),
        Staged::bytes(RECEIPT_KEYS, pretty(&keys.receipt_jwks())?),
        Staged::bytes(
            ENTRIES,
            json_lines(entries.iter().map(|e| EntryLine::from_entry(e)))?,
        ),
        Staged::bytes(
            CHECKPOINTS,
            json_lines(
                checkpoints
                    .iter()
                    .map(|c| CheckpointLine::from_checkpoint(c)),
            )?,
        ),
    ];

    let mut originals: BTreeMap<&Sha256Hex, u64> = BTreeMap::new();
    for o in &contents.originals {
        if let Some(size) = originals.insert(&o.sha256, o.size)
            && size != o.size
        {
            return Err(invalid(format!(
                "original {} is given with two sizes ({size} and {})",
                o.sha256, o.size
            )));
        }
    }
    let purged: BTreeSet<&Sha256Hex> = contents.purged.iter().collect();
    if let Some(both) = purged.iter().find(|p| originals.contains_key(*p)) {
        return Err(invalid(format!(
            "original {both} is both included and listed as purged"
        )));
    }
    for (sha, size) in &originals {
        staged.push(Staged {
            path: original_path(sha.as_str()),
            size: *size,
            sha256: sha.to_string(),
            body: Body::Original(sha),
        });
    }

    let mut receipts: BTreeMap<&str, &str> = BTreeMap::new();
    let mut receipt_kids = BTreeSet::new();
    for r in &contents.receipts {
        if !is_message_id(&r.message_id) {
            return Err(invalid(format!(
                "receipt message id {:?} is not 1 to 64 of A-Z a-z 0-9 - _",
                r.message_id
            )));
        }
        if let Some(jws) = receipts.insert(&r.message_id, &r.jws)
            && jws != r.jws
        {
            return Err(invalid(format!(
                "two different receipts for message {}",
                r.message_id
            )));
        }
        let kid = jsonwebtoken::decode_header(&r.jws)
            .ok()
            .and_then(|h| h.kid)
            .ok_or_else(|| {
                invalid(format!(
                    "the receipt for message {} is not a compact JWS with a kid",
                    r.message_id
                ))
            })?;
        receipt_kids.insert(kid);
    }
    for (id, jws) in receipts {
        staged.push(Staged::bytes(receipt_path(id), jws.as_bytes().to_vec()));
    }

    for (ders, path) in [
        (
            &contents.certificates,
            certificate_path as fn(&str) -> String,
        ),
        (&contents.crls, crl_path),
    ] {
        let by_hash: BTreeMap<String, &Vec<u8>> = ders
            .iter()
            .map(|d| (hex::encode(Sha256::digest(d)), d))
            .collect();
        for (sha, der) in by_hash {
            staged.push(Staged::bytes(path(&sha), der.clone()));
        }
    }

    if let Some(submissions) = &contents.submissions {
        if !submissions.is_array() {
            return Err(invalid("submissions must be a JSON array"));
        }
        staged.push(Staged::bytes(SUBMISSIONS, pretty(submissions)?));
    }
    if let Some(proofs) = &contents.proofs {
        staged.push(Staged::bytes(PROOFS, pretty(proofs)?));
    }

    staged.sort_by(|a, b| a.path.cmp(&b.path));
    for s in &staged {
        canonical_header(&s.path, s.size).map_err(invalid)?;
    }

    let mut checkpoint_kids: BTreeSet<String> =
        checkpoints.iter().map(|c| c.key_id.clone()).collect();
    checkpoint_kids.insert(keys.checkpoint_kid().to_owned());
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        created_at: format_time(&contents.created_at),
        created_by: contents.created_by.clone(),
        query: contents.query.clone(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        files: staged
            .iter()
            .map(|s| FileRecord {
                path: s.path.clone(),
                sha256: s.sha256.clone(),
                size: s.size,
            })
            .collect(),
        purged: purged.iter().map(|p| p.to_string()).collect(),
        checkpoint_key_ids: checkpoint_kids.into_iter().collect(),
        receipt_key_ids: receipt_kids.into_iter().collect(),
    };
    let manifest_json = pretty(&manifest)?;
    let signature = keys.sign_checkpoint(&manifest_signing_input(&manifest_json));
    let manifest_sig = format!("{signature}\n{}\n", keys.checkpoint_kid());

    let mut out = Out { w: out, bytes: 0 };
    out.member(MANIFEST, &manifest_json)?;
    out.member(MANIFEST_SIG, manifest_sig.as_bytes())?;
    for s in &staged {
        match &s.body {
            Body::Bytes(bytes) => out.member(&s.path, bytes)?,
            Body::Original(sha) => {
                let reader =
                    open_original(sha).map_err(|e| Error::io(format!("original {sha}"), e))?;
                out.original(&s.path, sha, s.size, reader)?;
            }
        }
    }
    out.put("end of archive", &[0; 2 * BLOCK])?;
    out.w.flush().map_err(|e| Error::io("evidence bundle", e))?;
    Ok(Summary {
        bytes: out.bytes,
        members: 2 + staged.len() as u64,
        manifest_sha256: hex::encode(Sha256::digest(&manifest_json)),
        checkpoint_key_ids: manifest.checkpoint_key_ids,
        receipt_key_ids: manifest.receipt_key_ids,
    })
}

/// Which entries a bundle about the entries `subject_seqs` must carry: for each,
/// every entry from it up to and including the first checkpoint at or after it.
/// Answers the runs merged and ascending. Fails when an entry has no checkpoint
/// after it yet (write one first, e.g. `Ledger::checkpoint_now`).
pub fn chain_link_ranges(
    subject_seqs: &[i64],
    checkpoint_sizes: &[i64],
) -> Result<Vec<RangeInclusive<i64>>> {
    let mut sizes = checkpoint_sizes.to_vec();
    sizes.sort_unstable();
    let mut seqs = subject_seqs.to_vec();
    seqs.sort_unstable();
    let mut runs: Vec<RangeInclusive<i64>> = Vec::new();
    for seq in seqs {
        let at = sizes.partition_point(|&s| s < seq);
        let end = *sizes.get(at).ok_or_else(|| {
            Error::Invalid(format!(
                "log entry {seq} is not covered by a checkpoint yet; write one and retry"
            ))
        })?;
        match runs.last_mut() {
            Some(last) if seq <= last.end().saturating_add(1) => {
                *last = *last.start()..=end.max(*last.end());
            }
            _ => runs.push(seq..=end),
        }
    }
    Ok(runs)
}

/// `items` sorted by `key`, exact repeats dropped; two different items under one
/// key are refused.
fn unique_by<'a, T: PartialEq, K: Ord + std::fmt::Display>(
    items: &'a [T],
    key: impl Fn(&T) -> K,
    what: &str,
) -> Result<Vec<&'a T>> {
    let mut sorted: Vec<&T> = items.iter().collect();
    sorted.sort_by_key(|t| key(t));
    let mut out: Vec<&T> = Vec::with_capacity(sorted.len());
    for item in sorted {
        match out.last() {
            Some(prev) if key(prev) == key(item) => {
                if *prev != item {
                    return Err(invalid(format!("two different {what}s at {}", key(item))));
                }
            }
            _ => out.push(item),
        }
    }
    Ok(out)
}

fn pretty(value: &impl Serialize) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(invalid)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn json_lines<T: Serialize>(items: impl Iterator<Item = T>) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for item in items {
        serde_json::to_writer(&mut bytes, &item).map_err(invalid)?;
        bytes.push(b'\n');
    }
    Ok(bytes)
}

struct Out<W> {
    w: W,
    bytes: u64,
}

impl<W: Write> Out<W> {
    fn put(&mut self, what: &str, bytes: &[u8]) -> Result<()> {
        self.w
            .write_all(bytes)
            .map_err(|e| Error::io(format!("evidence bundle, writing {what}"), e))?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn member(&mut self, path: &str, content: &[u8]) -> Result<()> {
        let header = canonical_header(path, content.len() as u64).map_err(invalid)?;
        self.put(path, &header)?;
        self.put(path, content)?;
        self.put(path, &[0; BLOCK][..padding(content.len() as u64)])
    }

    /// Streams exactly `size` bytes of original `sha` from `reader`, checking both.
    fn original(
        &mut self,
        path: &str,
        sha: &Sha256Hex,
        size: u64,
        mut reader: impl Read,
    ) -> Result<()> {
        let header = canonical_header(path, size).map_err(invalid)?;
        self.put(path, &header)?;
        let read_err = |e| Error::io(format!("original {sha}"), e);
        let mut hasher = Sha256::new();
        let mut buf = vec![0; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
            let n = read_full(&mut reader, &mut buf[..want]).map_err(read_err)?;
            hasher.update(&buf[..n]);
            self.put(path, &buf[..n])?;
            left -= n as u64;
            if n < want {
                return Err(invalid(format!(
                    "original {sha} has {} bytes, not the {size} it is listed with",
                    size - left
                )));
            }
        }
        if read_full(&mut reader, &mut [0; 1]).map_err(read_err)? != 0 {
            return Err(invalid(format!(
                "original {sha} is longer than the {size} bytes it is listed with"
            )));
        }
        let actual = hex::encode(hasher.finalize());
        if actual != sha.as_str() {
            return Err(Error::CorruptOriginal {
                sha256: sha.to_string(),
                actual,
            });
        }
        self.put(path, &[0; BLOCK][..padding(size)])
    }
}
