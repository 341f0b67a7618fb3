//! Witnesses: cosignatures on the log's checkpoints (C2SP tlog-cosignature v1,
//! Ed25519), the witness's side of C2SP tlog-witness `add-checkpoint`, and the
//! cosignatures the log keeps (`log_cosignatures`).
//!
//! A witness keeps, per log it follows, the newest checkpoint it cosigned, and cosigns
//! a newer one only with a consistency proof from that one (docs/LOG.md,
//! "Witnesses"). Whoever holds the database and the checkpoint key can rewrite the
//! log and sign new checkpoints, but no witness cosigns a history that does not
//! extend the one it saw.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::tree::{Hash, TreeHead};
use crate::{Db, Error, Result, on_pool};

/// Signed-note algorithm byte of Ed25519 cosignatures (C2SP tlog-cosignature).
pub const COSIGNATURE_V1: u8 = 0x04;

/// Most consistency proof lines a request may carry (C2SP tlog-witness).
const MAX_PROOF_LINES: usize = 63;

/// The key id of Ed25519 cosigner `key` named `name`: the first four bytes of
/// SHA-256(name ‖ "\n" ‖ 0x04 ‖ key).
fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    signed_note::key_id(name, &encoded(key))
}

fn encoded(key: &VerifyingKey) -> Vec<u8> {
    let mut e = vec![COSIGNATURE_V1];
    e.extend_from_slice(key.as_bytes());
    e
}

/// What an Ed25519 cosignature signs: a header line, a time line, then the
/// checkpoint's text.
fn cosigned_message(time: u64, text: &[u8]) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {time}\n").into_bytes();
    m.extend_from_slice(text);
    m
}

/// A witness's signing key under its name.
pub struct Cosigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Cosigner {
    /// `Err` when `name` cannot name a signer (empty, spaces, `+`).
    pub fn new(name: &str, key: SigningKey) -> std::result::Result<Self, String> {
        if !signed_note::is_key_name_valid(name) || name.chars().any(char::is_control) {
            return Err(format!(
                "{name:?} cannot name a witness: it must be non-empty, without spaces, '+' or control characters"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, &key.verifying_key()),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key logs and clients are configured with:
    /// `<name>+<key id, 8 hex digits>+<base64 of 0x04 ‖ public key>`.
    pub fn vkey(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.id,
            STANDARD.encode(encoded(&self.key.verifying_key()))
        )
    }

    /// The signature line (ending in a newline) cosigning checkpoint `text` at
    /// `time` (seconds since the epoch).
    pub fn cosign(&self, text: &str, time: u64) -> String {
        let sig = self.key.sign(&cosigned_message(time, text.as_bytes()));
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("\u{2014} {} {}\n", self.name, STANDARD.encode(blob))
    }
}

/// Checks Ed25519 cosignatures of one witness (a [`signed_note::Verifier`]).
#[derive(Debug, Clone)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// From a verifier key as [`Cosigner::vkey`] writes it. `Err` says what is wrong.
    pub fn new(vkey: &str) -> std::result::Result<Self, String> {
        let bad = |why: &str| format!("witness key {vkey:?}: {why}");
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not <name>+<key id>+<key>"));
        };
        if !signed_note::is_key_name_valid(name) {
            return Err(bad("the name is empty or has spaces"));
        }
        let id = u32::from_str_radix(id, 16)
            .ok()
            .filter(|_| id.len() == 8)
            .ok_or_else(|| bad("the key id is not 8 hex digits"))?;
        let raw = STANDARD
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        let Some((&COSIGNATURE_V1, key)) = raw.split_first() else {
            return Err(bad("not an Ed25519 cosignature key (type 0x04)"));
        };
        let key = <[u8; 32]>::try_from(key)
            .ok()
            .and_then(|k| VerifyingKey::from_bytes(&k).ok())
            .ok_or_else(|| bad("not an Ed25519 public key"))?;
        if key_id(name, &key) != id {
            return Err(bad("the key id does not match the name and key"));
        }
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl signed_note::Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((time, sig)) = sig.split_first_chunk::<8>() else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(sig) else {
            return false;
        };
        self.key
            .verify(&cosigned_message(u64::from_be_bytes(*time), msg), &sig)
            .is_ok()
    }
}

/// The signature lines among `lines` that are valid cosignatures of checkpoint
/// `text` by one of `witnesses` (others are ignored), as (witness name, line).
/// `Err` when a line by a known witness does not verify, or none is by one.
pub fn cosignatures_of(
    text: &str,
    lines: &str,
    witnesses: &[CosignatureVerifier],
) -> std::result::Result<Vec<(String, String)>, String> {
    let note = signed_note::Note::from_bytes(format!("{text}\n{lines}").as_bytes())
        .map_err(|e| format!("not signature lines of a note: {e}"))?;
    let list = signed_note::VerifierList::new(
        witnesses
            .iter()
            .map(|w| Box::new(w.clone()) as Box<dyn signed_note::Verifier>)
            .collect(),
    );
    let (verified, _) = note
        .verify(&list)
        .map_err(|e| format!("the cosignatures do not verify: {e}"))?;
    verified
        .iter()
        .map(|s| {
            String::from_utf8(s.to_bytes())
                .map(|line| (s.name().to_owned(), line))
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Why a witness refuses a checkpoint, with the HTTP status C2SP tlog-witness gives
/// each case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request is malformed (or the old size is above the checkpoint's).
    BadRequest(String),
    /// 403: no signature by the log's key verifies.
    Unverified(String),
    /// 404: the witness does not follow a log of this origin.
    UnknownLog(String),
    /// 409 `text/x.tlog.size`: the old size is not the one the witness cosigned last.
    OldSize { latest: u64 },
    /// 409: the checkpoint has the size of the last cosigned one but another root.
    Forked,
    /// 422: the consistency proof does not lead from the cosigned tree to this one.
    Inconsistent(String),
    /// 503: the witness's own failure (its state could not be read or written);
    /// nothing was cosigned, ask again later.
    Unavailable(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Unverified(_) => 403,
            Refusal::UnknownLog(_) => 404,
            Refusal::OldSize { .. } | Refusal::Forked => 409,
            Refusal::Inconsistent(_) => 422,
            Refusal::Unavailable(_) => 503,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BadRequest(why)
            | Refusal::Unverified(why)
            | Refusal::UnknownLog(why)
            | Refusal::Unavailable(why) => f.write_str(why),
            Refusal::OldSize { latest } => writeln!(f, "{latest}"),
            Refusal::Forked => f.write_str(
                "this checkpoint has the size of the one cosigned last but another root: the log forked",
            ),
            Refusal::Inconsistent(why) => write!(
                f,
                "the consistency proof does not lead from the cosigned checkpoint to this one: {why}"
            ),
        }
    }
}

/// An `add-checkpoint` request, parsed.
struct Request {
    old: u64,
    proof: Vec<Hash>,
    /// The checkpoint's text (without signatures).
    text: String,
    checkpoint: TreeHead,
}

/// The newest checkpoint cosigned for one log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Witnessed {
    size: u64,
    /// Root hash, standard base64.
    root: String,
}

/// The witness's state file: per log origin, the newest checkpoint cosigned.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    logs: BTreeMap<String, Witnessed>,
}

/// A witness (C2SP tlog-witness) of the logs whose keys it is given.
pub struct Witness {
    cosigner: Cosigner,
    logs: BTreeMap<String, signed_note::StandardVerifier>,
    state_path: PathBuf,
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("cosigner", &self.cosigner)
            .field("logs", &self.logs.keys().collect::<Vec<_>>())
            .field("state_path", &self.state_path)
            .finish_non_exhaustive()
    }
}

impl Witness {
    /// A witness signing with `cosigner` for the logs whose C2SP verifier keys
    /// (`ivan log vkey`) are `log_vkeys`, remembering what it cosigned in
    /// `state_path` (created if missing).
    pub fn open(cosigner: Cosigner, log_vkeys: &[String], state_path: &Path) -> Result<Self> {
        let mut logs = BTreeMap::new();
        for vkey in log_vkeys {
            let v = signed_note::StandardVerifier::new(vkey)
                .map_err(|e| Error::Invalid(format!("log key {vkey:?}: {e}")))?;
            let origin = signed_note::Verifier::name(&v).to_owned();
            if logs.insert(origin.clone(), v).is_some() {
                return Err(Error::Invalid(format!(
                    "two keys for the log {origin:?}: a witness follows each log under one key"
                )));
            }
        }
        let state = match std::fs::read(state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Invalid(format!(
                    "{} is not a witness state file: {e}",
                    state_path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(Error::io(state_path, e)),
        };
        Ok(Self {
            cosigner,
            logs,
            state_path: state_path.to_owned(),
            state: tokio::sync::Mutex::new(state),
        })
    }

    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    /// C2SP tlog-witness `add-checkpoint`: checks `body` (old size line, consistency
    /// proof lines, empty line, signed checkpoint) against the newest checkpoint
    /// cosigned for its log and, when it extends it, records it (durably, before
    /// answering) and answers the cosignature line. The check and the record are one
    /// step: concurrent requests never roll the record back.
    pub async fn add_checkpoint(
        &self,
        body: &[u8],
        now: u64,
    ) -> std::result::Result<String, Refusal> {
        let Request {
            old,
            proof,
            text,
            checkpoint,
        } = self.request(body)?;
        let origin = checkpoint.origin();
        let size = checkpoint.size();
        let mut state = self.state.lock().await;
        let latest = state.logs.get(origin).cloned();
        let latest_size = latest.as_ref().map_or(0, |w| w.size);
        if old != latest_size {
            return Err(Refusal::OldSize {
                latest: latest_size,
            });
        }
        let root = checkpoint.hash();
        match &latest {
            None => {}
            Some(w) => {
                let witnessed = STANDARD
                    .decode(&w.root)
                    .ok()
                    .and_then(|h| <[u8; 32]>::try_from(h).ok())
                    .map(Hash)
                    .ok_or_else(|| {
                        Refusal::Unavailable("the witness's state file is damaged".into())
                    })?;
                if old == size {
                    if witnessed != *root {
                        return Err(Refusal::Forked);
                    }
                } else {
                    tlog_tiles::check_tree(&proof, size, *root, old, witnessed)
                        .map_err(|e| Refusal::Inconsistent(e.to_string()))?;
                }
            }
        }
        state.logs.insert(
            origin.to_owned(),
            Witnessed {
                size,
                root: STANDARD.encode(root.0),
            },
        );
        let json = serde_json::to_vec_pretty(&*state)
            .map_err(|e| Refusal::Unavailable(format!("cannot write the state: {e}")))?;
        let path = self.state_path.clone();
        let saved = tokio::task::spawn_blocking(move || write_durably(&path, &json))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = saved {
            // Not recorded: not cosigned, and the record stays as it was.
            match latest {
                Some(w) => state.logs.insert(origin.to_owned(), w),
                None => state.logs.remove(origin),
            };
            tracing::error!(error = %e, "the witness could not record a checkpoint");
            return Err(Refusal::Unavailable(format!(
                "the witness could not record it: {e}"
            )));
        }
        Ok(self.cosigner.cosign(&text, now))
    }

    /// The parts of an `add-checkpoint` body, its checkpoint's signature by the
    /// log's key checked (before any await: the note types are not `Send`).
    fn request(&self, body: &[u8]) -> std::result::Result<Request, Refusal> {
        let bad = |why: String| Refusal::BadRequest(why);
        let body = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8".into()))?;
        let (head, note) = body
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint".into()))?;
        let mut lines = head.split('\n');
        let old: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .filter(|n| *n == "0" || !n.starts_with('0'))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad("the first line is not `old <size>`".into()))?;
        let proof = lines
            .map(|l| {
                STANDARD
                    .decode(l)
                    .ok()
                    .and_then(|h| <[u8; 32]>::try_from(h).ok())
                    .map(Hash)
                    .ok_or_else(|| bad(format!("proof line {l:?} is not a base64 hash")))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if old == 0 && !proof.is_empty() {
            return Err(bad("a proof from size 0 must be empty".into()));
        }
        if proof.len() > MAX_PROOF_LINES {
            return Err(bad(format!("more than {MAX_PROOF_LINES} proof lines")));
        }
        let note = signed_note::Note::from_bytes(note.as_bytes())
            .map_err(|e| bad(format!("the checkpoint is not a signed note: {e}")))?;
        let text = std::str::from_utf8(note.text())
            .map_err(|_| bad("the checkpoint is not UTF-8".into()))?
            .to_owned();
        let origin = super::tree::note_origin(&text);
        let log = self.logs.get(origin).ok_or_else(|| {
            Refusal::UnknownLog(format!("this witness does not follow {origin:?}"))
        })?;
        let list = signed_note::VerifierList::new(vec![Box::new(log.clone())]);
        note.verify(&list).map_err(|e| {
            Refusal::Unverified(format!("no valid signature by the log's key: {e}"))
        })?;
        let checkpoint = TreeHead::from_bytes(text.as_bytes())
            .map_err(|e| bad(format!("not a C2SP checkpoint: {e}")))?;
        let size = checkpoint.size();
        if old > size {
            return Err(bad(format!(
                "old size {old} is above the checkpoint's {size}"
            )));
        }
        Ok(Request {
            old,
            proof,
            text,
            checkpoint,
        })
    }
}

/// Replaces the file at `path` with `bytes`: a synced temporary file renamed over
/// it, then the directory synced.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

/// Keeps cosignature `line` by `witness` on the checkpoint of `tree_size` (once: a
/// second one by the same witness is ignored).
pub async fn store_cosignature(
    db: &Db,
    tree_size: i64,
    witness: &str,
    line: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    on_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO log_cosignatures (tree_size, witness, signature, received_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size, witness) DO NOTHING",
        )
        .bind(tree_size)
        .bind(witness)
        .bind(line)
        .bind(at)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// `cp`'s C2SP note with the cosignature lines kept on it appended (as served and
/// exported); `None` when it has no note.
pub async fn cosigned_note(db: &Db, cp: &super::Checkpoint) -> Result<Option<String>> {
    let Some(mut note) = cp.signed_note.clone() else {
        return Ok(None);
    };
    for line in cosignatures(db, cp.tree_size).await? {
        note += &line;
    }
    Ok(Some(note))
}

/// The cosignature lines kept on the checkpoint of `tree_size`, by witness name.
pub async fn cosignatures(db: &Db, tree_size: i64) -> Result<Vec<String>> {
    Ok(on_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT signature FROM log_cosignatures WHERE tree_size = $1 ORDER BY witness",
        )
        .bind(tree_size)
        .fetch_all(pool)
        .await?
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keys;
    use crate::ledger::tree::checkpoint_text;

    use crate::testing::MemoryTree as Tree;

    /// A tree of `n` leaves made from `seed`.
    fn tree_of(seed: u8, n: u64) -> Tree {
        let mut t = Tree::default();
        for i in 0..n {
            t.push(tlog_tiles::record_hash(&[seed, i as u8]));
        }
        t
    }

    const ORIGIN: &str = "ivan.test/log";

    fn checkpoint(keys: &Keys, tree: &Tree, size: u64) -> String {
        keys.sign_note(
            ORIGIN,
            &checkpoint_text(ORIGIN, size, &tree.root(size)).unwrap(),
        )
        .unwrap()
    }

    fn request(keys: &Keys, tree: &Tree, old: u64, size: u64) -> Vec<u8> {
        let mut body = format!("old {old}\n");
        if old > 0 && old < size {
            for h in tlog_tiles::prove_tree(size, old, tree).unwrap() {
                body += &format!("{}\n", STANDARD.encode(h.0));
            }
        }
        body += "\n";
        body += &checkpoint(keys, tree, size);
        body.into_bytes()
    }

    /// The vkey of a cosigner in the wild (transparency-dev/formats' tests): our
    /// parser takes it and recomputes its key id.
    #[test]
    fn a_published_cosignature_vkey_parses() {
        let v = CosignatureVerifier::new(
            "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
        )
        .unwrap();
        assert_eq!(v.name(), "remora.n621.de");
        for bad in [
            "remora.n621.de+da77ade8+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
            // The same key as a plain Ed25519 (0x01) note key.
            "remora.n621.de+da77ade7+AevN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
            "remora.n621.de+da77ade7",
            "remora n621+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
        ] {
            assert!(CosignatureVerifier::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cosignatures_verify_only_for_their_text_and_key() {
        let w = Cosigner::new("witness.test/w1", SigningKey::from_bytes(&[7; 32])).unwrap();
        let other = Cosigner::new("witness.test/w2", SigningKey::from_bytes(&[8; 32])).unwrap();
        let v = CosignatureVerifier::new(&w.vkey()).unwrap();
        let text = "ivan.test/log\n5\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n";
        let line = w.cosign(text, 1_800_000_000);
        // The line: key id, big-endian time, Ed25519 over the v1 message.
        let blob = STANDARD
            .decode(line.trim_end().rsplit(' ').next().unwrap())
            .unwrap();
        assert_eq!(blob.len(), 4 + 8 + 64);
        assert_eq!(&blob[4..12], &1_800_000_000u64.to_be_bytes());
        let message = format!("cosignature/v1\ntime 1800000000\n{text}");
        SigningKey::from_bytes(&[7; 32])
            .verifying_key()
            .verify_strict(
                message.as_bytes(),
                &Signature::from_slice(&blob[12..]).unwrap(),
            )
            .unwrap();
        let got = cosignatures_of(
            text,
            &(line.clone() + &other.cosign(text, 1)),
            std::slice::from_ref(&v),
        )
        .unwrap();
        assert_eq!(got, [("witness.test/w1".to_owned(), line.clone())]);
        let other_text = text.replace('5', "6");
        assert!(cosignatures_of(&other_text, &line, std::slice::from_ref(&v)).is_err());
        assert!(cosignatures_of(text, &other.cosign(text, 1), &[v]).is_err());
        assert!(Cosigner::new("two words", SigningKey::from_bytes(&[7; 32])).is_err());
    }

    /// C2SP tlog-witness add-checkpoint, case by case, and the record surviving a
    /// restart.
    #[tokio::test]
    async fn a_witness_cosigns_only_what_extends_what_it_cosigned() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_generate(&dir.path().join("log")).unwrap();
        let impostor = Keys::load_or_generate(&dir.path().join("impostor")).unwrap();
        let state = dir.path().join("witness.json");
        let cosigner =
            || Cosigner::new("witness.test/w1", SigningKey::from_bytes(&[9; 32])).unwrap();
        let open = || Witness::open(cosigner(), &[keys.checkpoint_vkey(ORIGIN)], &state).unwrap();
        let w = open();
        let v = CosignatureVerifier::new(&w.cosigner().vkey()).unwrap();
        let tree = tree_of(1, 12);
        let text = |t: &Tree, size| checkpoint_text(ORIGIN, size, &t.root(size)).unwrap();

        let line = w
            .add_checkpoint(&request(&keys, &tree, 0, 5), 100)
            .await
            .unwrap();
        assert_eq!(
            cosignatures_of(&text(&tree, 5), &line, std::slice::from_ref(&v))
                .unwrap()
                .len(),
            1
        );
        // Not from the size it cosigned: told which size that is.
        let e = w
            .add_checkpoint(&request(&keys, &tree, 0, 7), 101)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.to_string()), (409, "5\n".to_owned()));
        let line = w
            .add_checkpoint(&request(&keys, &tree, 5, 9), 102)
            .await
            .unwrap();
        assert_eq!(
            cosignatures_of(&text(&tree, 9), &line, std::slice::from_ref(&v))
                .unwrap()
                .len(),
            1
        );
        // The same checkpoint again is cosigned again (a newer time).
        w.add_checkpoint(&request(&keys, &tree, 9, 9), 103)
            .await
            .unwrap();

        // Another history signed with the log's own key: refused, record unchanged.
        let rewritten = tree_of(2, 12);
        let e = w
            .add_checkpoint(&request(&keys, &rewritten, 9, 9), 104)
            .await
            .unwrap_err();
        assert_eq!(e, Refusal::Forked);
        let e = w
            .add_checkpoint(&request(&keys, &rewritten, 9, 12), 105)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 422, "{e}");
        // A proof of the real log's, with the rewritten checkpoint: still refused.
        let mut body = String::from_utf8(request(&keys, &tree, 9, 12)).unwrap();
        let real_cp = checkpoint(&keys, &tree, 12);
        body = body.replace(&real_cp, &checkpoint(&keys, &rewritten, 12));
        assert_eq!(
            w.add_checkpoint(body.as_bytes(), 106)
                .await
                .unwrap_err()
                .status(),
            422
        );

        // Signed by another key, another log, malformed: 403, 404, 400.
        let e = w
            .add_checkpoint(&request(&impostor, &tree, 9, 12), 107)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 403, "{e}");
        let other_origin = impostor
            .sign_note(
                "other.test/log",
                &checkpoint_text("other.test/log", 3, &tree.root(3)).unwrap(),
            )
            .unwrap();
        let e = w
            .add_checkpoint(format!("old 0\n\n{other_origin}").as_bytes(), 108)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 404, "{e}");
        for body in [
            "old 10\n\n".to_owned() + &checkpoint(&keys, &tree, 9),
            "old 09\n\n".to_owned() + &checkpoint(&keys, &tree, 9),
            "old 9\nnot-a-hash\n\n".to_owned() + &checkpoint(&keys, &tree, 10),
            "old 9\n".to_owned() + &checkpoint(&keys, &tree, 10),
            "old 9\n\nnot a note\n".to_owned(),
        ] {
            let e = w.add_checkpoint(body.as_bytes(), 109).await.unwrap_err();
            assert_eq!(e.status(), 400, "{body}: {e}");
        }

        // The record is on disk: a restarted witness still stands at 9.
        drop(w);
        let w = open();
        let e = w
            .add_checkpoint(&request(&keys, &tree, 0, 12), 110)
            .await
            .unwrap_err();
        assert_eq!(e, Refusal::OldSize { latest: 9 });
        w.add_checkpoint(&request(&keys, &tree, 9, 12), 111)
            .await
            .unwrap();
    }
}
