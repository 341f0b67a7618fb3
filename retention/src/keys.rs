//! Signing keys, generated on first start into `<data_dir>/keys` (directory 0700,
//! files 0600) and never logged:
//!
//! * `checkpoint-ed25519.pem` — signs log checkpoints (Ed25519, PKCS#8 PEM);
//! * `receipt-es256.pem` — signs submission receipts (ECDSA P-256 / ES256, PKCS#8 PEM).
//!
//! Public halves are published as JWKS (RFC 7517); key ids are RFC 7638 thumbprints,
//! so anyone can recompute them from the public key alone.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::TryRng;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

pub const CHECKPOINT_KEY_FILE: &str = "checkpoint-ed25519.pem";
pub const RECEIPT_KEY_FILE: &str = "receipt-es256.pem";

/// `N` bytes from the operating system's random source.
pub fn os_random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Error::Internal(format!("the OS random source failed: {e}")))?;
    Ok(bytes)
}

/// The intermediary's signing keys.
pub struct Keys {
    checkpoint: SigningKey,
    checkpoint_kid: String,
    receipt_pem: String,
    receipt_public: p256::PublicKey,
    receipt_kid: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private material.
        f.debug_struct("Keys")
            .field("checkpoint_kid", &self.checkpoint_kid)
            .field("receipt_kid", &self.receipt_kid)
            .finish_non_exhaustive()
    }
}

/// Public keys that verify checkpoint signatures, by key id.
#[derive(Debug, Clone, Default)]
pub struct CheckpointVerifier {
    keys: BTreeMap<String, VerifyingKey>,
}

impl CheckpointVerifier {
    /// Whether `signature_b64` is a valid signature of `message` by key `kid`.
    /// `Err` names what is wrong (unknown key, malformed signature).
    pub fn verify(&self, kid: &str, message: &[u8], signature_b64: &str) -> Result<bool, String> {
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| format!("signed by unknown key {kid}"))?;
        let raw = STANDARD
            .decode(signature_b64)
            .map_err(|e| format!("signature is not base64: {e}"))?;
        let sig = Signature::from_slice(&raw).map_err(|e| format!("malformed signature: {e}"))?;
        Ok(key.verify(message, &sig).is_ok())
    }

    /// Builds a verifier from a checkpoint JWKS, as served at
    /// `/.well-known/ivan/checkpoint-keys.json` or carried in an evidence bundle.
    /// Every key must be Ed25519 (`kty: OKP`, `crv: Ed25519`) and its `kid` must be
    /// the RFC 7638 thumbprint of its public key (recomputed here), so equal key ids
    /// always mean equal keys. `Err` names the offending key.
    pub fn from_jwks(jwks: &serde_json::Value) -> Result<Self, String> {
        let list = jwks
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or("JWKS has no \"keys\" array")?;
        if list.is_empty() {
            return Err("JWKS has no keys".into());
        }
        let mut keys = BTreeMap::new();
        for (i, jwk) in list.iter().enumerate() {
            let member = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str);
            let kid = member("kid").ok_or_else(|| format!("key #{i} has no kid"))?;
            if member("kty") != Some("OKP") || member("crv") != Some("Ed25519") {
                return Err(format!("key {kid} is not an Ed25519 (OKP) key"));
            }
            if member("alg").is_some_and(|alg| alg != "EdDSA") {
                return Err(format!("key {kid} is not for EdDSA"));
            }
            if member("use").is_some_and(|u| u != "sig") {
                return Err(format!("key {kid} is not a signing key"));
            }
            let x = member("x").ok_or_else(|| format!("key {kid} has no x"))?;
            let raw = URL_SAFE_NO_PAD
                .decode(x)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| format!("key {kid}: x is not 32 bytes of base64url"))?;
            let key = VerifyingKey::from_bytes(&raw)
                .map_err(|e| format!("key {kid}: not an Ed25519 public key: {e}"))?;
            let thumbprint = thumbprint(&okp_jwk_members(&key));
            if kid != thumbprint {
                return Err(format!(
                    "key {kid}: kid is not the key's RFC 7638 thumbprint ({thumbprint})"
                ));
            }
            if keys.insert(kid.to_owned(), key).is_some() {
                return Err(format!("key {kid} appears twice"));
            }
        }
        Ok(Self { keys })
    }

    /// Verifies `note`, a C2SP signed note that key `kid` signed under the name
    /// `name` (for a checkpoint: the log's origin); answers the note's text. The
    /// note's other signatures (a witness's) are not checked here. `Err` says what is
    /// wrong: an unknown key, a malformed note, no signature by that key, or one that
    /// does not verify.
    pub fn verify_note(&self, kid: &str, name: &str, note: &str) -> Result<String, String> {
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| format!("signed by unknown key {kid}"))?;
        let verifier = note_verifier(name, key)?;
        let parsed = signed_note::Note::from_bytes(note.as_bytes())
            .map_err(|e| format!("not a signed note: {e}"))?;
        let list = signed_note::VerifierList::new(vec![Box::new(verifier)]);
        parsed.verify(&list).map_err(|e| match e {
            signed_note::NoteError::UnverifiedNote => {
                format!("the note carries no signature by key {kid} named {name}")
            }
            e => format!("the note's signature does not verify: {e}"),
        })?;
        String::from_utf8(parsed.text().to_vec()).map_err(|e| format!("not UTF-8: {e}"))
    }

    /// The key ids this verifier knows, in ascending order.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

impl Keys {
    /// Loads the keys from `dir`, generating any that are missing (first start).
    pub fn load_or_generate(dir: &Path) -> Result<Self> {
        create_private_dir(dir)?;
        Self::open(dir, true)
    }

    /// Loads the keys from `dir`; a missing key is an error (verification must never
    /// mint a new key).
    pub fn load(dir: &Path) -> Result<Self> {
        Self::open(dir, false)
    }

    fn open(dir: &Path, generate: bool) -> Result<Self> {
        let missing = |path: &Path| {
            key_err(
                path,
                "does not exist (keys are created by the first `ivan serve`; is the data dir right?)",
            )
        };
        let cp_path = dir.join(CHECKPOINT_KEY_FILE);
        let cp_pem = load_or_create(&cp_path, || {
            if !generate {
                return Err(missing(&cp_path));
            }
            new_ed25519_pem(&cp_path)
        })?;
        let checkpoint = SigningKey::from_pkcs8_pem(&cp_pem).map_err(|e| key_err(&cp_path, e))?;

        let rc_path = dir.join(RECEIPT_KEY_FILE);
        let receipt_pem = load_or_create(&rc_path, || {
            if !generate {
                return Err(missing(&rc_path));
            }
            new_es256_pem(&rc_path)
        })?;
        let receipt_public = {
            use p256::pkcs8::DecodePrivateKey as _;
            p256::SecretKey::from_pkcs8_pem(&receipt_pem)
                .map_err(|e| key_err(&rc_path, e))?
                .public_key()
        };
        // The receipt key must also load where receipts are signed.
        jsonwebtoken::EncodingKey::from_ec_pem(receipt_pem.as_bytes())
            .map_err(|e| key_err(&rc_path, e))?;

        let checkpoint_kid = thumbprint(&okp_jwk_members(&checkpoint.verifying_key()));
        let receipt_kid = thumbprint(&ec_jwk_members(&receipt_public));
        Ok(Self {
            checkpoint,
            checkpoint_kid,
            receipt_pem,
            receipt_public,
            receipt_kid,
        })
    }

    pub fn checkpoint_kid(&self) -> &str {
        &self.checkpoint_kid
    }

    /// Base64 Ed25519 signature of `message` with the checkpoint key.
    pub fn sign_checkpoint(&self, message: &[u8]) -> String {
        STANDARD.encode(self.checkpoint.sign(message).to_bytes())
    }

    /// The verifier for checkpoints signed by this key set.
    pub fn checkpoint_verifier(&self) -> CheckpointVerifier {
        let mut keys = BTreeMap::new();
        keys.insert(self.checkpoint_kid.clone(), self.checkpoint.verifying_key());
        CheckpointVerifier { keys }
    }

    /// The checkpoint key as a C2SP signed-note verifier key named `name`
    /// (`<name>+<key id, 8 hex digits>+<base64 of 0x01 ‖ public key>`): what a
    /// witness or monitor is configured with.
    pub fn checkpoint_vkey(&self, name: &str) -> String {
        signed_note::new_ed25519_verifier_key(name, &self.checkpoint.verifying_key())
    }

    /// `text` as a C2SP signed note (text, blank line, signature line) signed by the
    /// checkpoint key under the name `name`. `text` must be valid note text: UTF-8
    /// lines without control characters, ending in a newline.
    pub fn sign_note(&self, name: &str, text: &str) -> Result<String> {
        sign_note(&self.checkpoint, name, text)
    }

    pub fn receipt_kid(&self) -> &str {
        &self.receipt_kid
    }

    /// The receipt signing key, for `jsonwebtoken` (ES256).
    pub fn receipt_encoding_key(&self) -> Result<jsonwebtoken::EncodingKey> {
        jsonwebtoken::EncodingKey::from_ec_pem(self.receipt_pem.as_bytes()).map_err(|e| {
            Error::Key {
                path: PathBuf::from(RECEIPT_KEY_FILE),
                reason: e.to_string(),
            }
        })
    }

    /// JWKS with the receipt verification key (served at `/.well-known/jwks.json`).
    pub fn receipt_jwks(&self) -> serde_json::Value {
        let mut jwk = ec_jwk_members(&self.receipt_public);
        jwk.insert("kid", self.receipt_kid.clone());
        jwk.insert("alg", "ES256".into());
        jwk.insert("use", "sig".into());
        serde_json::json!({ "keys": [jwk] })
    }

    /// JWKS with the checkpoint verification key
    /// (served at `/.well-known/ivan/checkpoint-keys.json`).
    pub fn checkpoint_jwks(&self) -> serde_json::Value {
        let mut jwk = okp_jwk_members(&self.checkpoint.verifying_key());
        jwk.insert("kid", self.checkpoint_kid.clone());
        jwk.insert("alg", "EdDSA".into());
        jwk.insert("use", "sig".into());
        serde_json::json!({ "keys": [jwk] })
    }
}

/// Signed-note algorithm byte of Ed25519 keys (C2SP signed-note).
const NOTE_ED25519: u8 = 0x01;

/// The C2SP signed-note key id of Ed25519 key `key` named `name`: the first four
/// bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ key).
fn note_key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut encoded = vec![NOTE_ED25519];
    encoded.extend_from_slice(key.as_bytes());
    signed_note::key_id(name, &encoded)
}

/// An Ed25519 signed-note verifier for `key` named `name`.
fn note_verifier(name: &str, key: &VerifyingKey) -> Result<signed_note::StandardVerifier, String> {
    if !signed_note::is_key_name_valid(name) {
        return Err(format!(
            "{name:?} is not a signed-note key name (empty, or with a space or '+')"
        ));
    }
    signed_note::StandardVerifier::new(&signed_note::new_ed25519_verifier_key(name, key))
        .map_err(|e| format!("cannot build a verifier for {name}: {e}"))
}

/// `text` as a C2SP signed note by `key` named `name`; see [`Keys::sign_note`].
fn sign_note(key: &SigningKey, name: &str, text: &str) -> Result<String> {
    let signer = NoteSigner {
        name,
        id: note_key_id(name, &key.verifying_key()),
        key,
    };
    let bad = |e: signed_note::NoteError| Error::Internal(format!("cannot sign note: {e}"));
    let mut note = signed_note::Note::new(text.as_bytes(), &[]).map_err(bad)?;
    note.add_sigs(&[&signer]).map_err(bad)?;
    String::from_utf8(note.to_bytes())
        .map_err(|e| Error::Internal(format!("signed note is not UTF-8: {e}")))
}

/// The checkpoint key signing notes under one name.
struct NoteSigner<'a> {
    name: &'a str,
    id: u32,
    key: &'a SigningKey,
}

impl signed_note::Signer for NoteSigner<'_> {
    fn name(&self) -> &str {
        self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

/// A new Ed25519 private key as PKCS#8 PEM.
fn new_ed25519_pem(path: &Path) -> Result<String> {
    SigningKey::from_bytes(&os_random::<32>()?)
        .to_pkcs8_pem(Default::default())
        .map(|pem| pem.to_string())
        .map_err(|e| key_err(path, e))
}

/// Loads the Ed25519 (PKCS#8 PEM) private key at `path`, generating it on first use
/// like the keys above (its directory 0700, the file 0600). For keys of other roles
/// (a witness's).
pub fn ed25519_key(path: &Path) -> Result<SigningKey> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let pem = load_or_create(path, || new_ed25519_pem(path))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| key_err(path, e))
}

/// A new ECDSA P-256 private key as PKCS#8 PEM.
fn new_es256_pem(path: &Path) -> Result<String> {
    use p256::pkcs8::EncodePrivateKey as _;
    let secret = loop {
        // A uniformly random scalar; rejection of 0 / >= n is astronomically rare.
        if let Ok(s) = p256::SecretKey::from_slice(&os_random::<32>()?) {
            break s;
        }
    };
    secret
        .to_pkcs8_pem(Default::default())
        .map(|pem| pem.to_string())
        .map_err(|e| key_err(path, e))
}

/// Loads the ES256 (P-256, PKCS#8 PEM) private key `file` in the key directory `dir`,
/// generating it on first use like the keys above. For keys other crates own (the
/// mobile API's session-token key).
pub fn es256_key(dir: &Path, file: &str) -> Result<String> {
    create_private_dir(dir)?;
    let path = dir.join(file);
    let pem = load_or_create(&path, || new_es256_pem(&path))?;
    jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| key_err(&path, e))?;
    Ok(pem)
}

/// Loads the secret `file` (`N` random bytes, base64) in the key directory `dir`,
/// generating it on first use (0600, never overwritten). For secrets other crates own
/// (the PIN pepper and sealing key).
pub fn secret<const N: usize>(dir: &Path, file: &str) -> Result<[u8; N]> {
    create_private_dir(dir)?;
    let path = dir.join(file);
    let text = load_or_create(&path, || Ok(STANDARD.encode(os_random::<N>()?) + "\n"))?;
    STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or_else(|| key_err(&path, format!("is not {N} bytes of base64")))
}

fn key_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Key {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The JWK members that RFC 7638 hashes, sorted (BTreeMap) as it requires.
fn okp_jwk_members(key: &VerifyingKey) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("crv", "Ed25519".to_owned()),
        ("kty", "OKP".to_owned()),
        ("x", URL_SAFE_NO_PAD.encode(key.as_bytes())),
    ])
}

fn ec_jwk_members(key: &p256::PublicKey) -> BTreeMap<&'static str, String> {
    let point = key.to_encoded_point(false);
    let enc = |c: Option<&[u8]>| URL_SAFE_NO_PAD.encode(c.unwrap_or_default());
    BTreeMap::from([
        ("crv", "P-256".to_owned()),
        ("kty", "EC".to_owned()),
        ("x", enc(point.x().map(|x| &x[..]))),
        ("y", enc(point.y().map(|y| &y[..]))),
    ])
}

/// RFC 7638 JWK thumbprint: base64url(SHA-256(JSON of the required members, sorted,
/// no white space)).
fn thumbprint(members: &BTreeMap<&'static str, String>) -> String {
    let json = serde_json::to_string(members).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes()))
}

fn create_private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

/// Reads the key file at `path`, or creates it (0600, fsynced, never overwriting a
/// file another process wrote meanwhile) with what `generate` returns.
fn load_or_create(path: &Path, generate: impl FnOnce() -> Result<String>) -> Result<String> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(key_err(
                    path,
                    format!("is readable by others (mode {mode:04o}); run chmod 600 on it"),
                ));
            }
            return std::fs::read_to_string(path).map_err(|e| Error::io(path, e));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    let pem = generate()?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    let linked = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
    match linked {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| Error::io(dir, e))?;
            }
            tracing::info!(path = %path.display(), "generated a new signing key");
            Ok(pem)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_with_private_modes_and_reloads_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let kdir = dir.path().join("keys");
        let a = Keys::load_or_generate(&kdir).unwrap();
        let b = Keys::load_or_generate(&kdir).unwrap();
        assert_eq!(a.checkpoint_kid(), b.checkpoint_kid());
        assert_eq!(a.receipt_kid(), b.receipt_kid());
        for f in [CHECKPOINT_KEY_FILE, RECEIPT_KEY_FILE] {
            let mode = std::fs::metadata(kdir.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let dmode = std::fs::metadata(&kdir).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
    }

    /// The example of golang.org/x/mod/sumdb/note, the reference implementation of
    /// C2SP signed notes: key, text and the exact signed note (Ed25519 signatures
    /// are deterministic, so ours must match byte for byte).
    const GO_SKEY: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn go_key() -> SigningKey {
        let raw = STANDARD.decode(GO_SKEY).unwrap();
        assert_eq!(raw[0], NOTE_ED25519);
        SigningKey::from_bytes(&raw[1..].try_into().unwrap())
    }

    #[test]
    fn signed_notes_match_the_reference_implementations_example() {
        let key = go_key();
        assert_eq!(
            signed_note::new_ed25519_verifier_key("PeterNeumann", &key.verifying_key()),
            GO_VKEY
        );
        assert_eq!(
            note_key_id("PeterNeumann", &key.verifying_key()),
            0xc74f20a3
        );
        assert_eq!(sign_note(&key, "PeterNeumann", GO_TEXT).unwrap(), GO_NOTE);

        let kid = "go-example";
        let v = CheckpointVerifier {
            keys: BTreeMap::from([(kid.to_owned(), key.verifying_key())]),
        };
        assert_eq!(
            v.verify_note(kid, "PeterNeumann", GO_NOTE).unwrap(),
            GO_TEXT
        );
        // Another name, another key id: the signature is not the key's under it.
        let err = v.verify_note(kid, "PaulNeumann", GO_NOTE).unwrap_err();
        assert!(err.contains("no signature by key"), "{err}");
        let err = v.verify_note("other", "PeterNeumann", GO_NOTE).unwrap_err();
        assert!(err.contains("unknown key"), "{err}");
        // One changed character of the text.
        let forged = GO_NOTE.replacen("cryptography", "cryptographs", 1);
        let err = v.verify_note(kid, "PeterNeumann", &forged).unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
        let err = v.verify_note(kid, "PeterNeumann", GO_TEXT).unwrap_err();
        assert!(err.contains("not a signed note"), "{err}");
        assert!(v.verify_note(kid, "Peter Neumann", GO_NOTE).is_err());
    }

    /// The verifier-key example of the C2SP signed-note specification.
    #[test]
    fn signed_notes_verify_the_specifications_example() {
        let vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
        let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let raw = STANDARD.decode(vkey.rsplit('+').next().unwrap()).unwrap();
        let key = VerifyingKey::from_bytes(&raw[1..].try_into().unwrap()).unwrap();
        let v = CheckpointVerifier {
            keys: BTreeMap::from([("k".to_owned(), key)]),
        };
        assert_eq!(
            v.verify_note("k", "example.com/foo", note).unwrap(),
            "This is an example message.\n"
        );
        assert_eq!(
            signed_note::new_ed25519_verifier_key("example.com/foo", &key),
            vkey
        );
    }

    #[test]
    fn load_never_generates() {
        let dir = tempfile::tempdir().unwrap();
        let err = Keys::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(!dir.path().join(CHECKPOINT_KEY_FILE).exists());
        let made = Keys::load_or_generate(dir.path()).unwrap();
        assert_eq!(
            Keys::load(dir.path()).unwrap().checkpoint_kid(),
            made.checkpoint_kid()
        );
    }

    #[test]
    fn refuses_a_key_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        Keys::load_or_generate(dir.path()).unwrap();
        let p = dir.path().join(CHECKPOINT_KEY_FILE);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keys::load_or_generate(dir.path()).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn checkpoint_signatures_verify_and_forgeries_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_generate(dir.path()).unwrap();
        let sig = keys.sign_checkpoint(b"note");
        let v = keys.checkpoint_verifier();
        assert_eq!(v.verify(keys.checkpoint_kid(), b"note", &sig), Ok(true));
        assert_eq!(v.verify(keys.checkpoint_kid(), b"other", &sig), Ok(false));
        assert!(v.verify("nope", b"note", &sig).is_err());
    }

    #[test]
    fn jwks_publish_public_parts_only_and_receipts_verify_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_generate(dir.path()).unwrap();
        let jwks = keys.receipt_jwks();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["kid"], keys.receipt_kid());
        assert!(jwk.get("d").is_none());
        // A token signed with the private key verifies with the published JWK.
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(keys.receipt_kid().to_owned());
        let claims = serde_json::json!({"sub": "x", "exp": 4_000_000_000u64});
        let token =
            jsonwebtoken::encode(&header, &claims, &keys.receipt_encoding_key().unwrap()).unwrap();
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        let dk = jsonwebtoken::DecodingKey::from_jwk(&parsed).unwrap();
        let v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        jsonwebtoken::decode::<serde_json::Value>(&token, &dk, &v).unwrap();
        assert_eq!(keys.checkpoint_jwks()["keys"][0]["crv"], "Ed25519");
    }

    #[test]
    fn checkpoint_verifier_from_published_jwks() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_generate(dir.path()).unwrap();
        let v = CheckpointVerifier::from_jwks(&keys.checkpoint_jwks()).unwrap();
        assert_eq!(v.key_ids().collect::<Vec<_>>(), [keys.checkpoint_kid()]);
        let sig = keys.sign_checkpoint(b"note");
        assert_eq!(v.verify(keys.checkpoint_kid(), b"note", &sig), Ok(true));

        // A kid that is not the key's thumbprint is refused.
        let mut jwks = keys.checkpoint_jwks();
        jwks["keys"][0]["kid"] = "someone-else".into();
        let err = CheckpointVerifier::from_jwks(&jwks).unwrap_err();
        assert!(err.contains("thumbprint"), "{err}");
        // Another key under this kid is refused too.
        let other_dir = tempfile::tempdir().unwrap();
        let other = Keys::load_or_generate(other_dir.path()).unwrap();
        let mut jwks = keys.checkpoint_jwks();
        jwks["keys"][0]["x"] = other.checkpoint_jwks()["keys"][0]["x"].clone();
        assert!(CheckpointVerifier::from_jwks(&jwks).is_err());
        // Not Ed25519, empty, malformed.
        assert!(CheckpointVerifier::from_jwks(&keys.receipt_jwks()).is_err());
        assert!(CheckpointVerifier::from_jwks(&serde_json::json!({"keys": []})).is_err());
        assert!(CheckpointVerifier::from_jwks(&serde_json::json!([])).is_err());
    }

    #[test]
    fn thumbprint_matches_rfc7638_example_shape() {
        // RFC 8037 appendix A.3: thumbprint of the Ed25519 example key.
        let members = BTreeMap::from([
            ("crv", "Ed25519".to_owned()),
            ("kty", "OKP".to_owned()),
            (
                "x",
                "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".to_owned(),
            ),
        ]);
        assert_eq!(
            thumbprint(&members),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
