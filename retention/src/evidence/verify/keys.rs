//! The `keys` check: which keys signed, and whether the bundle says so.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::evidence::layout::{CHECKPOINT_KEYS, RECEIPT_KEYS};
use crate::keys::CheckpointVerifier;
use crate::ledger::Checkpoint;

use super::{Contents, Problems, ReceiptKeys, Report};

/// The `keys` check: the manifest lists exactly the keys that signed, every
/// checkpoint key is in the bundle (and pinned, with pinned keys), receipt key ids
/// are thumbprints.
pub(super) fn check_keys(
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
