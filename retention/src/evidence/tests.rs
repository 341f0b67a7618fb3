use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Duration, TimeZone, Utc};

use super::layout::BLOCK;
use super::*;
use crate::keys::Keys;
use crate::ledger::{Checkpoint, Entry, EntryFields, GENESIS_HASH, entry_hash, format_time};
use crate::receipts::{self, Claims};
use crate::{Error, Sha256Hex};

const M1: &str = "0193a000-0000-7000-8000-000000000001";
const M2: &str = "0193a000-0000-7000-8000-000000000002";
const CERT: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x05];
const CRL: &[u8] = &[0x30, 0x81, 0x80, 0x04, 0x7e];

fn time(i: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap() + Duration::microseconds(i * 1_500_123)
}

fn crl() -> Vec<u8> {
    let mut der = CRL.to_vec();
    der.resize(3 + 0x80, 0xab);
    der
}

fn keys() -> (tempfile::TempDir, Keys) {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::load_or_generate(dir.path()).unwrap();
    (dir, keys)
}

/// A log of 10 entries, checkpoints at 4, 8 and 10, and the payloads' bytes.
struct Fixture {
    _dir: tempfile::TempDir,
    keys: Keys,
    chain: Vec<Entry>,
    checkpoints: Vec<Checkpoint>,
    blobs: BTreeMap<Sha256Hex, Bytes>,
}

impl Fixture {
    fn new() -> Self {
        let (dir, keys) = keys();
        let m1 = format!("submission:{M1}");
        let m2 = format!("submission:{M2}");
        let specs: Vec<Spec<'_>> = vec![
            (
                "operator:root",
                "employer.create",
                "employer:e1",
                Some(b"{\"name\":\"Acme\"}"),
            ),
            (
                "api-token:t1",
                "submission.receive",
                &m1,
                Some(b"<report>one</report>"),
            ),
            ("system:ivan", "submission.verify", &m1, None),
            (
                "system:ivan",
                "employer.update",
                "employer:e2",
                Some(b"{\"name\":\"Other\"}"),
            ),
            (
                "api-token:t9",
                "submission.receive",
                "submission:other",
                Some(b"<x/>"),
            ),
            (
                "api-token:t1",
                "submission.receive",
                &m2,
                Some(b"<report>two</report>"),
            ),
            (
                "system:ivan",
                "submission.answer",
                &m2,
                Some(b"<answer>ok</answer>"),
            ),
            ("system:ivan", "server.start", "system:ivan", None),
            ("system:ivan", "server.stop", "system:ivan", None),
            ("operator:root", "employer.suspend", "employer:e1", None),
        ];
        Self::of(dir, keys, specs, &[4, 8, 10])
    }

    /// A fixture of `specs`, with checkpoints at the tree sizes `at`.
    fn of(dir: tempfile::TempDir, keys: Keys, specs: Vec<Spec<'_>>, at: &[usize]) -> Self {
        let (chain, blobs) = chain_of(specs);
        let checkpoints = at
            .iter()
            .map(|n| checkpoint(&keys, &chain[n - 1]))
            .collect();
        Fixture {
            _dir: dir,
            keys,
            chain,
            checkpoints,
            blobs,
        }
    }

    fn entry(&self, seq: i64) -> &Entry {
        &self.chain[seq as usize - 1]
    }

    fn payload(&self, seq: i64) -> Sha256Hex {
        Sha256Hex::parse(self.entry(seq).payload_sha256.as_deref().unwrap()).unwrap()
    }

    fn receipt(&self, keys: &Keys, id: &str, seq: i64) -> Receipt {
        Receipt {
            message_id: id.into(),
            jws: receipts::sign(keys, &self.claims(id, seq)).unwrap(),
        }
    }

    /// The claims of the receipt for entry `seq` (a `submission.receive`).
    fn claims(&self, id: &str, seq: i64) -> Claims {
        let e = self.entry(seq);
        Claims {
            iss: "ivan".into(),
            sub: id.into(),
            employer: "e1".into(),
            document_type: "contribution-report".into(),
            document_number: format!("M26110000{seq:02}"),
            sha256: e.payload_sha256.clone().unwrap(),
            received_at: format_time(&e.recorded_at),
            log_seq: seq,
            entry_hash: Some(e.entry_hash.clone()),
            iat: e.recorded_at.timestamp(),
        }
    }

    /// A bundle about M1 and M2, chosen the way an exporter would.
    fn contents(&self) -> Contents {
        let subject_seqs = [2, 3, 6, 7];
        let sizes: Vec<i64> = self.checkpoints.iter().map(|c| c.tree_size).collect();
        let runs = chain_link_ranges(&subject_seqs, &sizes).unwrap();
        assert_eq!(runs, [2..=4, 6..=8]);
        let entries = runs
            .iter()
            .flat_map(|r| r.clone().map(|s| self.entry(s).clone()))
            .collect();
        let checkpoints = self
            .checkpoints
            .iter()
            .filter(|c| runs.iter().any(|r| *r.end() == c.tree_size))
            .cloned()
            .collect();
        let originals = [2, 6, 7]
            .into_iter()
            .map(|s| {
                let sha = self.payload(s);
                let size = self.blobs[&sha].len() as u64;
                OriginalRef { sha256: sha, size }
            })
            .collect();
        let cert = Sha256Hex::of(CERT).to_string();
        let crl_sha = Sha256Hex::of(&crl()).to_string();
        Contents {
            created_at: time(100),
            created_by: "officer:o1".into(),
            query: serde_json::json!({"employer": "e1", "legal_basis": "audit 2026/17"}),
            subjects: vec![format!("submission:{M2}"), format!("submission:{M1}")],
            entries,
            checkpoints,
            originals,
            purged: vec![],
            receipts: vec![
                self.receipt(&self.keys, M1, 2),
                self.receipt(&self.keys, M2, 6),
            ],
            certificates: vec![CERT.to_vec()],
            crls: vec![crl()],
            submissions: Some(serde_json::json!([
                {"message_id": M1, "employer": "e1", "status": "accepted",
                 "original_sha256": self.payload(2), "certificate_sha256s": [cert],
                 "crl_sha256s": [crl_sha], "answer_sha256s": []},
                {"message_id": M2, "employer": "e1", "status": "answered",
                 "original_sha256": self.payload(6), "answer_sha256s": [self.payload(7)]},
            ])),
            proofs: None,
        }
        .with_proofs_from(self, &self.keys, 10)
    }

    /// The C2SP note of the tree of the first `size` entries, signed by `keys`.
    fn note(&self, keys: &Keys, size: u64) -> String {
        let tree = crate::testing::MemoryTree::of_entries(
            self.chain.iter().map(|e| e.entry_hash.as_str()),
        );
        let text = crate::ledger::tree::checkpoint_text(ORIGIN, size, &tree.root(size)).unwrap();
        keys.sign_note(ORIGIN, &text).unwrap()
    }

    fn write_with(&self, keys: &Keys, contents: &Contents) -> Vec<u8> {
        let mut out = Vec::new();
        let summary = write(contents, keys, |sha| self.open(sha), &mut out).unwrap();
        assert_eq!(summary.bytes, out.len() as u64);
        out
    }

    fn write(&self, contents: &Contents) -> Vec<u8> {
        self.write_with(&self.keys, contents)
    }

    fn open(&self, sha: &Sha256Hex) -> io::Result<Cursor<Bytes>> {
        self.blobs
            .get(sha)
            .cloned()
            .map(Cursor::new)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, sha.to_string()))
    }

    fn pinned(&self) -> VerifyOptions {
        VerifyOptions {
            pinned_checkpoint_keys: Some(self.keys.checkpoint_jwks()),
            ..VerifyOptions::default()
        }
    }
}

/// The log's origin in the fixtures' C2SP checkpoints.
const ORIGIN: &str = "ivan.test/log";

impl Contents {
    /// These contents with C2SP notes on their checkpoints and the proofs of their
    /// entries and checkpoints against the checkpoint of the first `newest` entries
    /// of `f`'s chain, all signed by `keys`, as an exporter makes them.
    fn with_proofs_from(mut self, f: &Fixture, keys: &Keys, newest: u64) -> Contents {
        use base64::Engine;
        let b64 = |hs: Vec<tlog_tiles::Hash>| {
            hs.iter()
                .map(|h| base64::engine::general_purpose::STANDARD.encode(h.0))
                .collect()
        };
        let tree =
            crate::testing::MemoryTree::of_entries(f.chain.iter().map(|e| e.entry_hash.as_str()));
        for cp in &mut self.checkpoints {
            cp.signed_note = Some(f.note(keys, cp.tree_size as u64));
        }
        self.proofs = Some(Proofs {
            checkpoint: f.note(keys, newest),
            inclusion: self
                .entries
                .iter()
                .map(|e| InclusionProof {
                    seq: e.seq,
                    proof: b64(tlog_tiles::prove_record(newest, e.seq as u64 - 1, &tree).unwrap()),
                })
                .collect(),
            consistency: self
                .checkpoints
                .iter()
                .map(|c| ConsistencyProof {
                    tree_size: c.tree_size,
                    proof: if c.tree_size as u64 == newest {
                        Vec::new()
                    } else {
                        b64(tlog_tiles::prove_tree(newest, c.tree_size as u64, &tree).unwrap())
                    },
                })
                .collect(),
        });
        self
    }
}

/// One log entry to make: `(actor, action, subject, payload)`.
type Spec<'a> = (&'a str, &'a str, &'a str, Option<&'a [u8]>);

/// A hash chain of `specs` from seq 1, entry `i` recorded at `time(i)`, and the
/// payloads' bytes by hash.
fn chain_of(specs: Vec<Spec<'_>>) -> (Vec<Entry>, BTreeMap<Sha256Hex, Bytes>) {
    let mut chain: Vec<Entry> = Vec::new();
    let mut blobs = BTreeMap::new();
    for (i, (actor, action, subject, payload)) in specs.into_iter().enumerate() {
        let seq = i as i64 + 1;
        let prev_hash = chain
            .last()
            .map_or(GENESIS_HASH.to_owned(), |e| e.entry_hash.clone());
        let payload_sha256 = payload.map(|p| {
            let sha = Sha256Hex::of(p);
            blobs.insert(sha.clone(), Bytes::copy_from_slice(p));
            sha.to_string()
        });
        let recorded_at = time(seq);
        let entry_hash = entry_hash(&EntryFields {
            seq,
            recorded_at: &recorded_at,
            actor,
            action,
            subject,
            payload_sha256: payload_sha256.as_deref(),
            prev_hash: &prev_hash,
        })
        .unwrap();
        chain.push(Entry {
            seq,
            recorded_at,
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            payload_sha256,
            prev_hash,
            entry_hash,
        });
    }
    (chain, blobs)
}

fn checkpoint(keys: &Keys, head: &Entry) -> Checkpoint {
    let mut cp = Checkpoint {
        tree_size: head.seq,
        head_hash: head.entry_hash.clone(),
        signed_at: head.recorded_at + Duration::milliseconds(3),
        key_id: keys.checkpoint_kid().to_owned(),
        signature: String::new(),
        signed_note: None,
    };
    cp.signature = keys.sign_checkpoint(cp.note().as_bytes());
    cp
}

fn check(bundle: &[u8], opts: &VerifyOptions) -> Report {
    verify(bundle, opts).unwrap()
}

fn outcome(r: &Report, name: &str) -> Outcome {
    r.checks.iter().find(|c| c.name == name).unwrap().outcome
}

/// Asserts that `name` failed with a problem containing `needle`.
fn assert_fails(r: &Report, name: &str, needle: &str) {
    assert!(!r.ok(), "{r}");
    let c = r.checks.iter().find(|c| c.name == name).unwrap();
    assert_eq!(c.outcome, Outcome::Failed, "{r}");
    assert!(
        c.problems.iter().any(|p| p.contains(needle)),
        "no problem with {needle:?} in {name}:\n{r}"
    );
}

#[test]
fn a_written_bundle_verifies_and_the_report_says_what_was_checked() {
    let f = Fixture::new();
    let contents = f.contents();
    let bundle = f.write(&contents);
    assert_eq!(bundle.len() % BLOCK, 0);
    assert_eq!(f.write(&contents), bundle, "writing is deterministic");

    let r = check(&bundle, &f.pinned());
    assert!(r.ok(), "{r}");
    // Every check ran and the report lists them in the order of `CHECKS`.
    let names: Vec<&str> = r.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, super::verify::CHECKS);
    assert_eq!(
        r.counts,
        Counts {
            bytes: bundle.len() as u64,
            members: 15,
            subjects: 2,
            entries: 6,
            runs: 2,
            checkpoints: 2,
            originals: 3,
            purged: 0,
            receipts: 2,
            certificates: 1,
            crls: 1,
            submissions: 2,
        }
    );
    assert!(r.keys_pinned);
    assert_eq!(r.checkpoint_key_ids, [f.keys.checkpoint_kid()]);
    assert_eq!(r.receipt_key_ids, [f.keys.receipt_kid()]);
    let m = r.manifest.as_ref().unwrap();
    assert_eq!(m.created_by, "officer:o1");
    assert_eq!(
        m.subjects,
        [format!("submission:{M1}"), format!("submission:{M2}")]
    );
    let text = r.to_string();
    assert!(text.starts_with("evidence bundle: VERIFIED"), "{text}");
    assert!(text.contains("matched against the pinned keys"), "{text}");

    // Without pinned keys it holds too, and says it is only self-consistent.
    let r = check(&bundle, &VerifyOptions::default());
    assert!(r.ok(), "{r}");
    assert!(!r.keys_pinned);
    assert!(r.to_string().contains("NOT PINNED"), "{r}");

    // Ordinary tar readers read it: same members, same order, same bytes.
    let mut archive = tar::Archive::new(Cursor::new(&bundle));
    let mut paths = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if let Some(name) = path.strip_prefix("ivan-evidence/originals/") {
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            assert_eq!(f.blobs[&Sha256Hex::parse(name).unwrap()], bytes);
        }
        paths.push(path);
    }
    assert_eq!(
        paths[..2],
        ["ivan-evidence/manifest.json", "ivan-evidence/manifest.sig"]
    );
    assert!(paths[2..].is_sorted());
    assert_eq!(
        paths[2..],
        m.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>()
    );
}

/// Each member's (header offset, content range), from the archive's headers.
fn member_spans(bundle: &[u8]) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut spans = Vec::new();
    let mut at = 0;
    while bundle[at..at + BLOCK].iter().any(|&b| b != 0) {
        let size = std::str::from_utf8(&bundle[at + 124..at + 135]).unwrap();
        let size = usize::from_str_radix(size, 8).unwrap();
        spans.push((at, at + BLOCK..at + BLOCK + size));
        at += BLOCK + size.div_ceil(BLOCK) * BLOCK;
    }
    spans
}

/// Flips one bit of each chosen byte in turn (on all cores) and asserts that
/// verification fails every time. Every byte of headers, padding, the end marker
/// and `manifest.sig` is chosen; of other members' content, the first and last 64
/// bytes and every `stride`-th byte between. (Each content flip costs an Ed25519
/// verification, ~13 ms in a debug build.)
fn assert_flips_are_caught(stride: usize) {
    let f = Fixture::new();
    let bundle = f.write(&f.contents());
    let opts = f.pinned();
    let spans = member_spans(&bundle);
    let sig_at = spans[1].0;
    let positions: Vec<usize> = (0..bundle.len())
        .filter(|&i| match spans.iter().find(|(_, c)| c.contains(&i)) {
            Some((at, c)) if *at != sig_at => {
                i < c.start + 64 || i + 64 >= c.end || (i - c.start) % stride == 0
            }
            _ => true,
        })
        .collect();
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let caught_by: BTreeMap<&str, usize> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (bundle, opts, positions) = (&bundle, &opts, &positions);
                s.spawn(move || {
                    let mut caught_by: BTreeMap<&str, usize> = BTreeMap::new();
                    for &i in positions.iter().skip(t).step_by(threads) {
                        let mut bad = bundle.clone();
                        bad[i] ^= 0x01;
                        let r = check(&bad, opts);
                        assert!(!r.ok(), "flipping byte {i} went unnoticed:\n{r}");
                        let first = r.failures().next().unwrap().name;
                        *caught_by.entry(first).or_default() += 1;
                    }
                    caught_by
                })
            })
            .collect();
        let mut total = BTreeMap::new();
        for w in workers {
            for (k, v) in w.join().unwrap() {
                *total.entry(k).or_default() += v;
            }
        }
        total
    });
    // Every layer takes part: framing, the manifest's hashes, the signature.
    for layer in ["archive", "manifest", "manifest-signature"] {
        assert!(caught_by.contains_key(layer), "{caught_by:?}");
    }
    assert_eq!(caught_by.values().sum::<usize>(), positions.len());
    eprintln!(
        "{} of {} bytes flipped, all caught, in {:?}: {caught_by:?}",
        positions.len(),
        bundle.len(),
        started.elapsed()
    );
}

#[test]
fn flipped_bytes_are_caught() {
    assert_flips_are_caught(8);
}

/// The same for every byte of the bundle (about 2 minutes in a debug build):
/// `cargo test -p retention --lib every_flipped_byte -- --ignored`.
#[test]
#[ignore]
fn every_flipped_byte_is_caught() {
    assert_flips_are_caught(1);
}

#[test]
fn a_cut_short_or_extended_bundle_fails() {
    let f = Fixture::new();
    let bundle = f.write(&f.contents());
    let opts = VerifyOptions::default();
    let cuts = (0..bundle.len())
        .step_by(37)
        .chain((0..bundle.len()).step_by(BLOCK));
    for cut in cuts {
        let r = check(&bundle[..cut], &opts);
        assert_eq!(
            outcome(&r, "archive"),
            Outcome::Failed,
            "cut at {cut}:\n{r}"
        );
    }
    for tail in [&b"\0"[..], &[0; BLOCK], &[0; 2 * BLOCK], b"garbage"] {
        let mut long = bundle.clone();
        long.extend_from_slice(tail);
        assert_fails(&check(&long, &opts), "archive", "follow the end marker");
    }
    // The members without the end marker.
    let r = check(&bundle[..bundle.len() - 2 * BLOCK], &opts);
    assert_fails(&r, "archive", "without its end marker");
    assert_fails(&check(&[0; 2 * BLOCK], &opts), "archive", "no members");
}

#[test]
fn keys_other_than_the_pinned_ones_fail() {
    let f = Fixture::new();
    let (_dir, other) = keys();
    // Everything signed by another key set: the log's checkpoints and receipts too.
    let mut contents = f.contents();
    let sizes: Vec<i64> = contents.checkpoints.iter().map(|c| c.tree_size).collect();
    contents.checkpoints = sizes
        .iter()
        .map(|&n| checkpoint(&other, f.entry(n)))
        .collect();
    contents.receipts = vec![f.receipt(&other, M1, 2), f.receipt(&other, M2, 6)];
    let contents = contents.with_proofs_from(&f, &other, 10);
    let bundle = f.write_with(&other, &contents);

    let r = check(&bundle, &VerifyOptions::default());
    assert!(r.ok(), "self-consistent without pinned keys:\n{r}");
    assert!(!r.keys_pinned);
    assert_eq!(r.checkpoint_key_ids, [other.checkpoint_kid()]);
    let keys = r.checks.iter().find(|c| c.name == "keys").unwrap();
    assert!(keys.detail.starts_with("NOT PINNED"), "{r}");

    let r = check(&bundle, &f.pinned());
    assert_fails(
        &r,
        "manifest-signature",
        "not among the pinned checkpoint keys",
    );
    assert_eq!(outcome(&r, "checkpoints"), Outcome::Skipped);

    // Ivan's checkpoints under another signer's manifest: the checkpoints fail.
    let mut contents = f.contents();
    contents.receipts.clear();
    let bundle = f.write_with(&other, &contents);
    let r = check(&bundle, &VerifyOptions::default());
    assert_fails(
        &r,
        "checkpoints",
        "is not in ivan-evidence/keys/checkpoint-keys.json",
    );

    // Malformed pinned keys are the caller's error, not the bundle's.
    let bad = VerifyOptions {
        pinned_checkpoint_keys: Some(serde_json::json!({"keys": "none"})),
        ..VerifyOptions::default()
    };
    assert!(verify(&bundle[..], &bad).is_err());
}

#[test]
fn a_run_that_does_not_end_at_a_checkpoint_fails() {
    let f = Fixture::new();
    let mut contents = f.contents();
    contents.checkpoints.retain(|c| c.tree_size != 8);
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(&r, "checkpoints", "entries 6..=8 end at entry 8");

    // One entry past the checkpoint.
    let mut contents = f.contents();
    contents.entries.push(f.entry(9).clone());
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(&r, "checkpoints", "entries 6..=9 end at entry 9");

    // A checkpoint whose entry is not in the bundle.
    let mut contents = f.contents();
    contents.checkpoints.push(f.checkpoints[2].clone());
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(
        &r,
        "checkpoints",
        "entry 10, which it vouches for, is not in the bundle",
    );

    // A forged checkpoint signature.
    let mut contents = f.contents();
    contents.checkpoints[0].signed_at += Duration::seconds(1);
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(&r, "checkpoints", "signature does not verify");
}

#[test]
fn an_altered_or_broken_chain_fails() {
    let f = Fixture::new();
    let mut contents = f.contents();
    contents.entries[1].actor = "system:other".into();
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(
        &r,
        "log-entries",
        "entry 3: its content does not match its entry_hash",
    );

    // Re-hashed after the change: the link to the next entry breaks instead.
    let e = &mut contents.entries[1];
    e.entry_hash = entry_hash(&e.fields()).unwrap();
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(
        &r,
        "log-entries",
        "entry 4: prev_hash does not match entry 3",
    );

    // An entry missing from the middle of a run splits it; the first part has no checkpoint.
    let mut contents = f.contents();
    contents.entries.retain(|e| e.seq != 3);
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(&r, "checkpoints", "entries 2..=2 end at entry 2");
}

#[test]
fn a_receipt_that_does_not_match_its_entry_fails() {
    let f = Fixture::new();
    let mut contents = f.contents();
    // Signed, but pointing at the verification entry.
    let claims = Claims {
        log_seq: 3,
        ..f.claims(M1, 2)
    };
    contents.receipts[0].jws = receipts::sign(&f.keys, &claims).unwrap();
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(&r, "receipts", "action is \"submission.verify\"");
    // Its own entry, but naming another entry's hash as its leaf.
    let claims = Claims {
        entry_hash: Some("ab".repeat(32)),
        ..f.claims(M1, 2)
    };
    contents.receipts[0].jws = receipts::sign(&f.keys, &claims).unwrap();
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(&r, "receipts", "but the receipt says abab");

    // Claims another document's hash and time.
    let mut contents = f.contents();
    let mut receipt = f.receipt(&f.keys, M1, 6);
    receipt.message_id = M1.into();
    contents.receipts[0] = receipt;
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(&r, "receipts", "does not match the receipt");

    // Filed under another message.
    let mut contents = f.contents();
    contents.receipts[0].message_id = M2.into();
    contents.receipts.truncate(1);
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(&r, "receipts", "its sub is");

    // Signed by a key the bundle does not carry.
    let (_dir, other) = keys();
    let mut contents = f.contents();
    contents.receipts[1] = f.receipt(&other, M2, 6);
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(&r, "receipts", "receipt does not verify");
}

/// A pre-registration filed from the mobile app (server `submissions::record`,
/// `Origin::Phone`): `submission.receive` holds the app's JSON request, and the receipt
/// covers the XML document the intermediary generated from it, which is the payload
/// of the filing's `submission.accept` entry.
#[test]
fn a_preregistration_receipt_covers_the_document_its_accept_entry_names() {
    let (dir, keys) = keys();
    let m = format!("submission:{M1}");
    let request: &[u8] = br#"{"person_id":"9206154122","kind":"hire"}"#;
    let document: &[u8] = b"<Preregistration><PersonalId>9206154122</PersonalId></Preregistration>";
    let other: &[u8] = b"<Preregistration><PersonalId>7801011236</PersonalId></Preregistration>";
    let specs: Vec<Spec<'_>> = vec![
        ("phone:a1", "submission.receive", &m, Some(request)),
        ("system:ivan", "submission.validate", &m, None),
        ("system:ivan", "submission.accept", &m, Some(document)),
        (
            "system:ivan",
            "submission.accept",
            "submission:other",
            Some(other),
        ),
    ];
    let f = Fixture::of(dir, keys, specs, &[4]);
    let bundle_with = |sha256: Sha256Hex| {
        let claims = Claims {
            document_type: "preregistration".into(),
            sha256: sha256.to_string(),
            ..f.claims(M1, 1)
        };
        let contents = Contents {
            created_at: time(100),
            created_by: "officer:o1".into(),
            query: serde_json::json!({"message_id": [M1], "legal_basis": "audit 2026/17"}),
            subjects: vec![m.clone()],
            entries: f.chain.clone(),
            checkpoints: f.checkpoints.clone(),
            originals: [f.payload(1), f.payload(3)]
                .into_iter()
                .map(|sha| OriginalRef {
                    size: f.blobs[&sha].len() as u64,
                    sha256: sha,
                })
                .collect(),
            purged: vec![],
            receipts: vec![Receipt {
                message_id: M1.into(),
                jws: receipts::sign(&f.keys, &claims).unwrap(),
            }],
            certificates: vec![],
            crls: vec![],
            proofs: None,
            submissions: Some(serde_json::json!([
                {"message_id": M1, "employer": "e1", "status": "accepted",
                 "document_type": "preregistration",
                 "original_sha256": f.payload(3), "answer_sha256s": []},
            ])),
        };
        f.write(&contents)
    };

    let r = check(&bundle_with(f.payload(3)), &f.pinned());
    assert!(r.ok(), "{r}");
    assert_eq!(outcome(&r, "receipts"), Outcome::Passed);
    assert_eq!(r.counts.receipts, 1);

    // Another filing's accepted document is not this receipt's.
    let r = check(&bundle_with(f.payload(4)), &f.pinned());
    assert_fails(&r, "receipts", "does not match the receipt");
    // Nor is a document no entry names.
    let r = check(&bundle_with(Sha256Hex::of(b"<x/>")), &f.pinned());
    assert_fails(&r, "receipts", "does not match the receipt");
}

#[test]
fn purged_payloads_are_expected_missing_ones_are_not() {
    let f = Fixture::new();
    let doc2 = f.payload(6);
    let mut contents = f.contents();
    contents.originals.retain(|o| o.sha256 != doc2);
    contents.purged.push(doc2.clone());
    let r = check(&f.write(&contents), &f.pinned());
    assert!(r.ok(), "{r}");
    assert_eq!((r.counts.originals, r.counts.purged), (2, 1));

    let mut contents = f.contents();
    contents.originals.retain(|o| o.sha256 != doc2);
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(
        &r,
        "originals",
        &format!("entry 6 (submission.receive on submission:{M2}) names payload {doc2}"),
    );
    assert_fails(&r, "submissions", "neither included nor listed as purged");

    // Purging something nothing names, or including an original nothing names.
    let mut contents = f.contents();
    let stray = Sha256Hex::of(b"stray");
    contents.purged.push(stray.clone());
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(&r, "originals", "nothing in the bundle names it");
    let mut contents = f.contents();
    let mut f2 = Fixture::new();
    f2.blobs.insert(stray.clone(), Bytes::from_static(b"stray"));
    contents.originals.push(OriginalRef {
        sha256: stray,
        size: 5,
    });
    let mut out = Vec::new();
    write(
        &contents,
        &f.keys,
        |sha| f2.open(sha).or_else(|_| f.open(sha)),
        &mut out,
    )
    .unwrap();
    assert_fails(
        &check(&out, &f.pinned()),
        "originals",
        "is named by no entry",
    );
}

#[test]
fn unresolved_submission_references_and_bad_der_fail() {
    let f = Fixture::new();
    let mut contents = f.contents();
    contents.certificates.clear();
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(&r, "submissions", "names certificate");

    let mut contents = f.contents();
    contents.crls = vec![vec![0x31, 0x00], vec![0x30, 0x05, 0x00]];
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(&r, "crls", "does not start with a DER SEQUENCE");
    assert_fails(&r, "crls", "its DER length says 7 bytes but the file has 3");

    let mut contents = f.contents();
    contents.subjects.push("submission:never".into());
    let r = check(&f.write(&contents), &f.pinned());
    assert_fails(&r, "subjects", "subject submission:never has no entry");
}

#[test]
fn limits_are_enforced_before_reading() {
    let f = Fixture::new();
    let bundle = f.write(&f.contents());
    let small = VerifyOptions {
        max_member_bytes: 100,
        ..VerifyOptions::default()
    };
    assert_fails(
        &check(&bundle, &small),
        "archive",
        "more than the 100 allowed",
    );
    let few = VerifyOptions {
        max_members: 3,
        ..VerifyOptions::default()
    };
    assert_fails(&check(&bundle, &few), "archive", "more than 3 members");
}

#[test]
fn the_same_members_in_another_tar_form_fail() {
    let f = Fixture::new();
    let bundle = f.write(&f.contents());
    let mut repacked = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(Cursor::new(&bundle));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let mut data = Vec::new();
        io::Read::read_to_end(&mut entry, &mut data).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        repacked.append_data(&mut header, path, &data[..]).unwrap();
    }
    let repacked = repacked.into_inner().unwrap();
    let r = check(&repacked, &VerifyOptions::default());
    assert_fails(&r, "archive", "differs from the canonical header");

    // Members out of order.
    let mut contents = f.contents();
    contents.submissions = None;
    let bundle = f.write(&contents);
    let mut members: Vec<&[u8]> = member_spans(&bundle)
        .into_iter()
        .map(|(at, c)| &bundle[at..c.end.next_multiple_of(BLOCK)])
        .collect();
    members.swap(2, 3);
    let mut swapped = members.concat();
    swapped.extend_from_slice(&[0; 2 * BLOCK]);
    assert_fails(
        &check(&swapped, &VerifyOptions::default()),
        "archive",
        "ascending byte order",
    );
}

#[test]
fn the_writer_refuses_what_the_format_cannot_hold() {
    let f = Fixture::new();
    let attempt = |contents: &Contents| {
        write(contents, &f.keys, |sha| f.open(sha), io::sink())
            .unwrap_err()
            .to_string()
    };
    let mut contents = f.contents();
    contents.receipts[0].message_id = "../x".into();
    assert!(attempt(&contents).contains("message id"));

    let mut contents = f.contents();
    let mut twin = contents.entries[0].clone();
    twin.actor = "x:y".into();
    contents.entries.push(twin);
    assert!(attempt(&contents).contains("two different log entrys at 2"));

    // Repeats of the same entry (overlapping runs) are fine.
    let mut contents = f.contents();
    contents.entries.push(contents.entries[0].clone());
    assert!(check(&f.write(&contents), &f.pinned()).ok());

    let mut contents = f.contents();
    contents.originals[0].size += 1;
    assert!(
        attempt(&contents).contains("not the"),
        "{}",
        attempt(&contents)
    );
    let mut contents = f.contents();
    contents.originals[0].size -= 1;
    assert!(attempt(&contents).contains("longer"));
    let mut contents = f.contents();
    let sha = contents.originals[0].sha256.clone();
    let err = write(
        &contents,
        &f.keys,
        |_| Ok(Cursor::new(vec![b'x'; f.blobs[&sha].len()])),
        io::sink(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::CorruptOriginal { .. }), "{err}");

    contents.query = serde_json::json!("not an object");
    assert!(attempt(&contents).contains("query"));
}

#[test]
fn chain_link_ranges_reach_the_next_checkpoint_and_merge() {
    assert_eq!(
        chain_link_ranges(&[8, 2, 11, 3], &[4, 10, 20]).unwrap(),
        [2..=4, 8..=20]
    );
    assert_eq!(chain_link_ranges(&[4], &[4, 10]).unwrap(), [4..=4]);
    assert_eq!(chain_link_ranges(&[4, 5], &[4, 10]).unwrap(), [4..=10]);
    assert!(chain_link_ranges(&[11], &[4, 10]).is_err());
}

/// `log/proofs.json`: every entry proven in the newest checkpoint's tree, every C2SP
/// checkpoint consistent with it, the checkpoint signed by a checkpoint key, and the
/// required witnesses' cosignatures on it; each thing that does not hold is named.
#[test]
fn proofs_tie_every_entry_and_checkpoint_to_the_newest_checkpoint() {
    use crate::ledger::witness::Cosigner;
    let f = Fixture::new();
    let contents = f.contents();
    let r = check(&f.write(&contents), &f.pinned());
    assert!(r.ok(), "{r}");
    let proofs = r.checks.iter().find(|c| c.name == "proofs").unwrap();
    assert!(
        proofs
            .detail
            .contains("6 entries proven in the log \"ivan.test/log\" of 10 entries")
            && proofs.detail.contains("2 checkpoint(s) consistent"),
        "{}",
        proofs.detail
    );
    let with = |edit: &dyn Fn(&mut Proofs)| {
        let mut c = contents.clone();
        edit(c.proofs.as_mut().unwrap());
        check(&f.write(&c), &f.pinned())
    };
    // An entry's proof replaced by another's.
    let r = with(&|p| p.inclusion[0].proof = p.inclusion[1].proof.clone());
    assert_fails(
        &r,
        "proofs",
        "entry 2: its inclusion proof does not lead to the root",
    );
    // A stored entry rewritten, its own hash recomputed (so the chain shows only a
    // broken link): its inclusion under the signed root fails.
    let mut c = contents.clone();
    let e = &mut c.entries[0];
    e.actor = "operator:forged".into();
    e.entry_hash = entry_hash(&e.fields()).unwrap();
    let r = check(&f.write(&c), &f.pinned());
    assert_fails(
        &r,
        "proofs",
        "entry 2: its inclusion proof does not lead to the root",
    );
    // A missing proof, and one for an entry the bundle does not carry.
    let r = with(&|p| p.inclusion[0].seq = 9);
    assert_fails(&r, "proofs", "entry 2: no inclusion proof");
    assert_fails(&r, "proofs", "an inclusion proof for entry 9");
    // The newest checkpoint over another history, signed with the real key.
    let other = Fixture::of(
        tempfile::tempdir().unwrap(),
        Keys::load_or_generate(tempfile::tempdir().unwrap().path()).unwrap(),
        (0..10)
            .map(|_| ("system:ivan", "server.start", "system:ivan", None))
            .collect(),
        &[10],
    );
    let forged = {
        let tree = crate::testing::MemoryTree::of_entries(
            other.chain.iter().map(|e| e.entry_hash.as_str()),
        );
        let text = crate::ledger::tree::checkpoint_text(ORIGIN, 10, &tree.root(10)).unwrap();
        f.keys.sign_note(ORIGIN, &text).unwrap()
    };
    let r = with(&|p| p.checkpoint = forged.clone());
    assert_fails(
        &r,
        "proofs",
        "does not lead to the root of the checkpoint of 10 entries",
    );
    assert_fails(&r, "proofs", "does not extend it");
    // Signed by a key that is not a checkpoint key.
    let foreign = other.note(&other.keys, 10);
    let r = with(&|p| p.checkpoint = foreign.clone());
    assert_fails(
        &r,
        "proofs",
        "not a C2SP checkpoint signed by a checkpoint key",
    );
    // A checkpoint's consistency proof missing.
    let r = with(&|p| {
        p.consistency.remove(0);
    });
    assert_fails(
        &r,
        "proofs",
        "checkpoint at tree size 4: no consistency proof",
    );

    // Witnesses: required ones must have cosigned the newest checkpoint.
    let w = Cosigner::new(
        "witness.test/w1",
        ed25519_dalek::SigningKey::from_bytes(&[5; 32]),
    )
    .unwrap();
    let opts = VerifyOptions {
        witnesses: vec![w.vkey()],
        ..f.pinned()
    };
    let r = check(&f.write(&contents), &opts);
    assert_fails(&r, "proofs", "not cosigned by the witness witness.test/w1");
    let mut cosigned = contents.clone();
    let p = cosigned.proofs.as_mut().unwrap();
    let text = p.checkpoint.split_once("\n\n").unwrap().0.to_owned() + "\n";
    p.checkpoint += &w.cosign(&text, 1_800_000_000);
    let r = check(&f.write(&cosigned), &opts);
    assert!(r.ok(), "{r}");
    assert!(r.to_string().contains("cosigned by witness.test/w1"), "{r}");
    // Without proofs, witnesses cannot be required; an older bundle still verifies.
    let mut none = contents.clone();
    none.proofs = None;
    assert!(check(&f.write(&none), &f.pinned()).ok());
    assert_fails(&check(&f.write(&none), &opts), "proofs", "has no");
}
