//! Signature verifications of certificates and CRLs, remembered.
//!
//! Every filing's signing certificate is checked against its CA and the CA's CRL
//! (`trust::check_signer`), and webpki verifies the CA's signature on the
//! certificate once for the path and again with each CRL consulted, plus the CRL's
//! own signature: three ECDSA verifications per filing of the same few bytes, about
//! 6 % of the server's CPU under load (BENCHMARKS.md, issue 18). The algorithms
//! here wrap webpki's and remember, by SHA-256 of everything the verification
//! depends on (algorithm, public key, signed bytes, signature), which verifications
//! succeeded. A verification is a pure function of those inputs, so a remembered
//! success is the answer the algorithm would give again; failures are never
//! remembered. Everything else the chain check does (dates, names, key usage, CRL
//! scope and freshness, revocation) still runs on every filing.
//!
//! At most [`CAPACITY`] successes are kept (32 bytes each); when full the memory
//! is emptied and fills again with what is in use.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};

use rustls_pki_types::{AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm};
use sha2::{Digest, Sha256};

/// Most remembered verifications.
pub const CAPACITY: usize = 4096;

/// webpki's verification algorithms, each remembering its successes; pass these
/// wherever `webpki::ALL_VERIFICATION_ALGS` would go.
pub fn algorithms() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    &ALGORITHMS
}

static REMEMBERING: LazyLock<Vec<Remembering>> = LazyLock::new(|| {
    webpki::ALL_VERIFICATION_ALGS
        .iter()
        .enumerate()
        .map(|(index, inner)| Remembering {
            inner: *inner,
            index: u32::try_from(index).unwrap_or(u32::MAX),
        })
        .collect()
});

static ALGORITHMS: LazyLock<Vec<&'static dyn SignatureVerificationAlgorithm>> =
    LazyLock::new(|| {
        REMEMBERING
            .iter()
            .map(|r| r as &'static dyn SignatureVerificationAlgorithm)
            .collect()
    });

static VERIFIED: LazyLock<Mutex<HashSet<[u8; 32]>>> =
    LazyLock::new(|| Mutex::new(HashSet::with_capacity(CAPACITY)));

#[derive(Debug)]
struct Remembering {
    inner: &'static dyn SignatureVerificationAlgorithm,
    /// Which of webpki's algorithms: part of what is remembered.
    index: u32,
}

impl Remembering {
    fn key(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"ivan/verified-signature/v1\0");
        h.update(self.index.to_be_bytes());
        for part in [public_key, message, signature] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }
}

impl SignatureVerificationAlgorithm for Remembering {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key = self.key(public_key, message, signature);
        let remembered = VERIFIED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key);
        if remembered {
            return Ok(());
        }
        self.inner
            .verify_signature(public_key, message, signature)?;
        let mut verified = VERIFIED.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= CAPACITY {
            verified.clear();
        }
        verified.insert(key);
        Ok(())
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.inner.public_key_alg_id()
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.inner.signature_alg_id()
    }

    fn fips(&self) -> bool {
        self.inner.fips()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count() -> usize {
        VERIFIED.lock().unwrap().len()
    }

    /// A real ECDSA P-256 signature made here, verified through the remembering
    /// algorithm: a success is remembered and answered again; a changed message,
    /// signature or key fails every time, remembered success or not.
    #[test]
    fn a_success_is_remembered_and_a_failure_never_is() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let message = b"tbsCertificate bytes".to_vec();
        let signature = pair.sign(&rng, &message).unwrap().as_ref().to_vec();
        let public = pair.public_key().as_ref().to_vec();

        let p256 = algorithms()
            .iter()
            .find(|a| {
                a.public_key_alg_id() == rustls_pki_types::alg_id::ECDSA_P256
                    && a.signature_alg_id() == rustls_pki_types::alg_id::ECDSA_SHA256
            })
            .expect("webpki verifies ECDSA P-256 with SHA-256");

        let mut bad_message = message.clone();
        bad_message[0] ^= 1;
        let mut bad_signature = signature.clone();
        let last = bad_signature.len() - 1;
        bad_signature[last] ^= 1;
        let other = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .unwrap()
                .as_ref(),
        )
        .unwrap();
        let wrong = [
            (
                public.as_slice(),
                bad_message.as_slice(),
                signature.as_slice(),
            ),
            (
                public.as_slice(),
                message.as_slice(),
                bad_signature.as_slice(),
            ),
            (
                other.public_key().as_ref(),
                message.as_slice(),
                signature.as_slice(),
            ),
        ];

        for (k, m, s) in wrong {
            assert!(p256.verify_signature(k, m, s).is_err());
        }
        assert!(p256.verify_signature(&public, &message, &signature).is_ok());
        assert!(
            VERIFIED.lock().unwrap().contains(
                &REMEMBERING
                    .iter()
                    .find(|r| r.public_key_alg_id() == p256.public_key_alg_id()
                        && r.signature_alg_id() == p256.signature_alg_id())
                    .unwrap()
                    .key(&public, &message, &signature)
            )
        );
        // Remembered: answered again. The failures still fail.
        assert!(p256.verify_signature(&public, &message, &signature).is_ok());
        for (k, m, s) in wrong {
            assert!(p256.verify_signature(k, m, s).is_err());
        }
        assert!(count() <= CAPACITY);
    }
}
