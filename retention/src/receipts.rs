//! Signed receipts: what `ivan` hands an employer when it has durably taken a
//! filing. A receipt is a compact JWS (ES256, `kid` = the receipt key's RFC 7638
//! thumbprint, public key at `/.well-known/jwks.json`) over [`Claims`], so anyone can
//! check it offline, years later, with only the JWKS.
//!
//! A receipt is signed once, inside the transaction that records the submission, and
//! stored byte-exact; a repeated submission gets the stored receipt back, never a
//! new one.

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::Keys;
use crate::{Error, Result};

/// `typ` of receipt JWS headers.
pub const RECEIPT_TYPE: &str = "ivan-receipt+jwt";

/// What a receipt asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: `ivan`.
    pub iss: String,
    /// The message id of the submission.
    pub sub: String,
    /// Employer id.
    pub employer: String,
    /// Document type code, e.g. `contribution-report`.
    pub document_type: String,
    /// Human document number, e.g. `R2611000123`.
    pub document_number: String,
    /// SHA-256 (lowercase hex) of the original bytes as received.
    pub sha256: String,
    /// Received-at time, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC); the time of the
    /// `submission.receive` log entry.
    pub received_at: String,
    /// Position of the `submission.receive` entry in the transaction log (its leaf
    /// index in the log's Merkle tree is `log_seq - 1`).
    pub log_seq: i64,
    /// That entry's `entry_hash`: the leaf whose inclusion proof shows the filing is
    /// in the log (docs/LOG.md, "Checking a receipt offline"). Absent on receipts
    /// issued before the Merkle tree existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_hash: Option<String>,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
}

/// Signs `claims` with the receipt key.
pub fn sign(keys: &Keys, claims: &Claims) -> Result<String> {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(keys.receipt_kid().to_owned());
    header.typ = Some(RECEIPT_TYPE.to_owned());
    jsonwebtoken::encode(&header, claims, &keys.receipt_encoding_key()?)
        .map_err(|e| Error::Internal(format!("cannot sign receipt: {e}")))
}

/// Verifies a receipt against a JWKS document (as served at `/.well-known/jwks.json`)
/// and returns its claims.
pub fn verify(jws: &str, jwks: &serde_json::Value) -> Result<Claims> {
    let bad = |why: String| Error::Invalid(format!("receipt does not verify: {why}"));
    let header = jsonwebtoken::decode_header(jws).map_err(|e| bad(e.to_string()))?;
    if header.alg != Algorithm::ES256 {
        return Err(bad(format!("algorithm {:?} is not ES256", header.alg)));
    }
    let kid = header.kid.ok_or_else(|| bad("no kid".into()))?;
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(jwks.clone()).map_err(|e| bad(format!("bad JWKS: {e}")))?;
    let jwk = set
        .find(&kid)
        .ok_or_else(|| bad(format!("unknown key {kid}")))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(e.to_string()))?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.set_issuer(&["ivan"]);
    jsonwebtoken::decode::<Claims>(jws, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            iss: "ivan".into(),
            sub: "0193".into(),
            employer: "e1".into(),
            document_type: "contribution-report".into(),
            document_number: "M2611000001".into(),
            sha256: "ab".repeat(32),
            received_at: "2026-11-23T10:00:00.000000Z".into(),
            log_seq: 7,
            entry_hash: None,
            iat: 1_795_000_000,
        }
    }

    #[test]
    fn receipts_verify_with_the_published_jwks_only() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_generate(dir.path()).unwrap();
        let jws = sign(&keys, &claims()).unwrap();
        assert_eq!(verify(&jws, &keys.receipt_jwks()).unwrap(), claims());

        let other_dir = tempfile::tempdir().unwrap();
        let other = Keys::load_or_generate(other_dir.path()).unwrap();
        assert!(verify(&jws, &other.receipt_jwks()).is_err(), "another key");

        // Any change to the payload breaks it.
        let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
        let forged = Claims {
            log_seq: 8,
            ..claims()
        };
        use base64::Engine;
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged).unwrap());
        assert!(verify(&parts.join("."), &keys.receipt_jwks()).is_err());
    }
}
