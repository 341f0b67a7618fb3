use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A new time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// An employer (a filer) onboarded by the operator.
    EmployerId
);
uuid_id!(
    /// One message through the intermediary: a submission, or an authority answer.
    MessageId
);

/// Who did something that the log records. Rendered as `kind:identifier`, which is
/// the form stored in the log's `actor` column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The intermediary operator at the CLI; the string is the local user name.
    Operator(String),
    /// An employer's payroll software, by API token id.
    ApiToken(String),
    /// A phone user an employer authorised, by phone access id.
    Phone(String),
    /// A portal user (an employer's clerk or admin), by user id.
    User(String),
    /// `ivan` itself (background jobs, checkpoints, forwarding).
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Operator(user) => write!(f, "operator:{user}"),
            Actor::ApiToken(id) => write!(f, "api-token:{id}"),
            Actor::Phone(id) => write!(f, "phone:{id}"),
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::System => f.write_str("system:ivan"),
        }
    }
}

/// One file as a manifest (a backup's, an evidence bundle's) lists it: where it is,
/// and the digest and size it must have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// `/`-separated, relative to what the manifest describes.
    pub path: String,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// Content size in bytes.
    pub size: u64,
}

/// A SHA-256 digest as 64 lowercase hex digits: the key of an original and the
/// form hashes take in the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    /// [`Sha256Hex::of`] from async code: a large body (50 MB: about 35 ms) is hashed
    /// on a blocking thread, not on a runtime worker other requests wait for.
    pub async fn of_bytes(bytes: &bytes::Bytes) -> Self {
        const ON_THE_RUNTIME_AT_MOST: usize = 256 * 1024;
        if bytes.len() <= ON_THE_RUNTIME_AT_MOST {
            return Self::of(bytes);
        }
        let owned = bytes.clone();
        match tokio::task::spawn_blocking(move || Self::of(&owned)).await {
            Ok(sha) => sha,
            // Only a panic in the hash (or a runtime shutting down): hash here.
            Err(_) => Self::of(bytes),
        }
    }

    /// Accepts exactly 64 hex digits (either case; stored lowercase).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_vector() {
        assert_eq!(
            Sha256Hex::of(b"abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn sha256_parse_rejects_bad_input() {
        assert!(Sha256Hex::parse("abc").is_none());
        assert!(Sha256Hex::parse(&"g".repeat(64)).is_none());
        let upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(
            Sha256Hex::parse(upper).map(|h| h.to_string()),
            Some(upper.to_ascii_lowercase())
        );
    }

    #[test]
    fn actor_renders_kind_and_id() {
        assert_eq!(Actor::Operator("root".into()).to_string(), "operator:root");
        assert_eq!(Actor::System.to_string(), "system:ivan");
    }
}
