//! PINs: generation (OS random), Argon2id hashing with a server-side pepper under a
//! bounded number of concurrent hashes, and sealing (AES-256-GCM) of a PIN that has
//! not been used yet, so the employer can still have it sent by SMS.
//!
//! The pepper and the sealing key are 32 random bytes each, kept 0600 in the key
//! directory (`pin-pepper.b64`, `pin-seal.b64`), generated on first start. Losing the
//! pepper invalidates every PIN (employers generate new ones); it is part of the
//! backup like the signing keys.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use tokio::sync::Semaphore;

use crate::{Error, MobileConfig};

pub const PEPPER_FILE: &str = "pin-pepper.b64";
pub const SEAL_FILE: &str = "pin-seal.b64";

/// PIN generation, hashing and sealing with this server's secrets.
pub struct Pins {
    digits: u32,
    pepper: [u8; 32],
    params: Params,
    seal: RandomizedNonceKey,
    slots: Arc<Semaphore>,
    wait: Duration,
    /// A hash of a PIN nobody has, verified when the phone is unknown so that an
    /// unknown phone and a wrong PIN cost the same time.
    decoy: String,
}

impl std::fmt::Debug for Pins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pins")
            .field("digits", &self.digits)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Pins {
    /// Loads (or creates) the pepper and sealing key in `key_dir`.
    pub fn load(key_dir: &Path, config: &MobileConfig) -> Result<Self, Error> {
        let pepper = retention::keys::secret::<32>(key_dir, PEPPER_FILE)?;
        let seal_key = retention::keys::secret::<32>(key_dir, SEAL_FILE)?;
        Self::new(pepper, seal_key, config)
    }

    pub fn new(pepper: [u8; 32], seal_key: [u8; 32], config: &MobileConfig) -> Result<Self, Error> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(|e| Error::Invalid(format!("Argon2 parameters: {e}")))?;
        let seal = RandomizedNonceKey::new(&AES_256_GCM, &seal_key)
            .map_err(|_| Error::Invalid("PIN sealing key rejected".into()))?;
        let mut pins = Self {
            digits: config.pin_digits,
            pepper,
            params,
            seal,
            slots: Arc::new(Semaphore::new(config.max_concurrent_hashes)),
            wait: Duration::from_millis(config.hash_wait_ms),
            decoy: String::new(),
        };
        pins.decoy = pins.hash_now(&pins.generate()?)?;
        Ok(pins)
    }

    /// A new uniformly random PIN of the configured number of digits.
    pub fn generate(&self) -> Result<String, Error> {
        let mut pin = String::with_capacity(self.digits as usize);
        while pin.len() < self.digits as usize {
            // Rejection sampling: bytes 250..=255 would bias the digits.
            for b in retention::keys::os_random::<16>()? {
                if b < 250 && pin.len() < self.digits as usize {
                    pin.push(char::from(b'0' + b % 10));
                }
            }
        }
        Ok(pin)
    }

    fn argon2(&self) -> Result<Argon2<'_>, Error> {
        Argon2::new_with_secret(
            &self.pepper,
            Algorithm::Argon2id,
            Version::V0x13,
            self.params.clone(),
        )
        .map_err(|e| Error::Invalid(format!("Argon2: {e}")))
    }

    fn hash_now(&self, pin: &str) -> Result<String, Error> {
        let salt = retention::keys::os_random::<16>()?;
        self.argon2()?
            .hash_password_with_salt(pin.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Invalid(format!("Argon2: {e}")))
    }

    fn verify_now(&self, pin: &str, hash: Option<&str>) -> bool {
        let Ok(argon2) = self.argon2() else {
            return false;
        };
        let matched = argon2
            .verify_password(pin.as_bytes(), hash.unwrap_or(&self.decoy))
            .is_ok();
        matched && hash.is_some()
    }

    /// Takes a hashing slot, waiting at most the configured time.
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                metrics::counter!("ivan_mobile_pin_hash_busy_total").increment(1);
                Err(Error::Unavailable(
                    "the server is busy checking PINs; try again shortly".into(),
                ))
            }
        }
    }

    /// The Argon2id PHC string of `pin`, computed off the async threads.
    pub async fn hash(self: &Arc<Self>, pin: String) -> Result<String, Error> {
        let _permit = self.slot().await?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.hash_now(&pin))
            .await
            .map_err(|e| Error::Unavailable(format!("PIN hashing failed: {e}")))?
    }

    /// Whether `pin` matches `hash`. With no hash (unknown phone, no PIN) a decoy hash
    /// is verified instead, so every answer takes one Argon2id computation.
    pub async fn verify(
        self: &Arc<Self>,
        pin: String,
        hash: Option<String>,
    ) -> Result<bool, Error> {
        let _permit = self.slot().await?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.verify_now(&pin, hash.as_deref()))
            .await
            .map_err(|e| Error::Unavailable(format!("PIN check failed: {e}")))
    }

    /// The PIN encrypted for storage until it is used: nonce ‖ ciphertext ‖ tag. The
    /// access id is bound as associated data, so a sealed PIN cannot be moved to
    /// another access.
    pub fn seal(&self, access_id: &str, pin: &str) -> Result<Vec<u8>, Error> {
        let mut buf = pin.as_bytes().to_vec();
        let nonce = self
            .seal
            .seal_in_place_append_tag(Aad::from(access_id.as_bytes()), &mut buf)
            .map_err(|_| Error::Invalid("sealing the PIN failed".into()))?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// The PIN back from [`Pins::seal`]'s output.
    pub fn unseal(&self, access_id: &str, sealed: &[u8]) -> Result<String, Error> {
        let bad = || Error::Invalid("the stored PIN cannot be opened (wrong sealing key?)".into());
        if sealed.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut buf = ct.to_vec();
        let plain = self
            .seal
            .open_in_place(nonce, Aad::from(access_id.as_bytes()), &mut buf)
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }

    /// The Argon2id parameters in use, e.g. `m=19456 KiB, t=2, p=1`.
    pub fn describe(&self) -> String {
        format!(
            "Argon2id m={} KiB, t={}, p={}",
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins() -> Arc<Pins> {
        Arc::new(Pins::new([7; 32], [9; 32], &MobileConfig::default()).unwrap())
    }

    #[test]
    fn pins_are_digits_of_the_configured_length_and_differ() {
        let p = pins();
        let a = p.generate().unwrap();
        let b = p.generate().unwrap();
        assert_eq!(a.len(), 8);
        assert!(a.bytes().all(|c| c.is_ascii_digit()));
        assert_ne!(
            a, b,
            "two 8-digit PINs in a row are (almost surely) different"
        );
    }

    #[tokio::test]
    async fn hash_verifies_only_the_right_pin_and_needs_the_pepper() {
        let p = pins();
        let hash = p.hash("12345678".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            p.verify("12345678".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !p.verify("12345679".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!p.verify("12345678".into(), None).await.unwrap());
        let other = Arc::new(Pins::new([8; 32], [9; 32], &MobileConfig::default()).unwrap());
        assert!(
            !other.verify("12345678".into(), Some(hash)).await.unwrap(),
            "a hash made with another pepper must not verify"
        );
    }

    #[test]
    fn sealed_pins_open_only_for_their_access() {
        let p = pins();
        let sealed = p.seal("acc-1", "24681357").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"24681357"));
        assert_eq!(p.unseal("acc-1", &sealed).unwrap(), "24681357");
        assert!(p.unseal("acc-2", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert!(p.unseal("acc-1", &tampered).is_err());
    }

    #[test]
    fn weak_argon2_parameters_are_refused() {
        let weak = MobileConfig {
            argon2_memory_kib: 4096,
            ..MobileConfig::default()
        };
        assert!(weak.validate().is_err());
        assert!(MobileConfig::default().validate().is_ok());
    }
}
