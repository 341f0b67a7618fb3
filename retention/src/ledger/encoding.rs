//! The canonical encodings that log hashes and checkpoint signatures are computed
//! over. They are part of the evidence format: changing them breaks every stored
//! chain, so they are versioned and documented in `docs/LOG.md`.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first entry: 32 zero bytes, in hex.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const ENTRY_DOMAIN: &[u8] = b"ivan/log-entry/v1\0";

/// UTC time as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fraction digits).
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// [`format_time`] as a serde serializer (`#[serde(serialize_with = …)]`), so JSON
/// shows times exactly as the log encodes them.
pub fn serialize_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

/// [`serialize_time`] for an optional time (`null` when absent).
pub fn serialize_opt_time<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize_time(t, s),
        None => s.serialize_none(),
    }
}

/// The fields an entry hash covers.
#[derive(Debug, Clone, Copy)]
pub struct EntryFields<'a> {
    pub seq: i64,
    pub recorded_at: &'a DateTime<Utc>,
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub payload_sha256: Option<&'a str>,
    pub prev_hash: &'a str,
}

/// `entry_hash = hex(SHA-256(domain ‖ u64be(seq) ‖ field(time) ‖ field(actor) ‖
/// field(action) ‖ field(subject) ‖ field(payload_sha256 or "") ‖ prev_hash raw 32
/// bytes))`, where `field(s) = u32be(len(s)) ‖ utf8(s)`. `None` when `prev_hash` is
/// not 64 hex digits (a stored row that cannot be hashed is itself corrupt).
pub fn entry_hash(f: &EntryFields<'_>) -> Option<String> {
    let prev = hex::decode(f.prev_hash).ok().filter(|p| p.len() == 32)?;
    let seq = u64::try_from(f.seq).ok()?;
    let mut h = Sha256::new();
    h.update(ENTRY_DOMAIN);
    h.update(seq.to_be_bytes());
    for field in [
        format_time(f.recorded_at).as_str(),
        f.actor,
        f.action,
        f.subject,
        f.payload_sha256.unwrap_or(""),
    ] {
        let len = u32::try_from(field.len()).ok()?;
        h.update(len.to_be_bytes());
        h.update(field.as_bytes());
    }
    h.update(&prev);
    Some(hex::encode(h.finalize()))
}

/// The text a checkpoint signature covers:
/// `"ivan/log-checkpoint/v1\n<tree_size>\n<head_hash>\n<signed_at>\n"`.
pub fn checkpoint_note(tree_size: i64, head_hash: &str, signed_at: &DateTime<Utc>) -> String {
    format!(
        "ivan/log-checkpoint/v1\n{tree_size}\n{head_hash}\n{}\n",
        format_time(signed_at)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn fields(t: &DateTime<Utc>) -> EntryFields<'_> {
        EntryFields {
            seq: 1,
            recorded_at: t,
            actor: "operator:root",
            action: "employer.create",
            subject: "employer:0190",
            payload_sha256: None,
            prev_hash: GENESIS_HASH,
        }
    }

    #[test]
    fn known_answer_is_stable() {
        // Pinned: if this changes, every stored chain stops verifying.
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
        assert_eq!(format_time(&t), "2026-11-23T08:00:00.000000Z");
        let mut manual = Sha256::new();
        manual.update(b"ivan/log-entry/v1\0");
        manual.update(1u64.to_be_bytes());
        for s in [
            "2026-11-23T08:00:00.000000Z",
            "operator:root",
            "employer.create",
            "employer:0190",
            "",
        ] {
            manual.update((s.len() as u32).to_be_bytes());
            manual.update(s.as_bytes());
        }
        manual.update([0u8; 32]);
        let h = entry_hash(&fields(&t)).unwrap();
        assert_eq!(h, hex::encode(manual.finalize()));
        // The same value the independent Python example in docs/LOG.md prints.
        assert_eq!(
            h,
            "b8dd65d1e0e333c3a3d6848b36767e2dccee42f3518060612a9ae3685bf6a4c9"
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
        let t2 = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 1).unwrap();
        let base = entry_hash(&fields(&t)).unwrap();
        let pay = "a".repeat(64);
        let prev = "1".repeat(64);
        let variants = [
            EntryFields {
                seq: 2,
                ..fields(&t)
            },
            EntryFields {
                recorded_at: &t2,
                ..fields(&t)
            },
            EntryFields {
                actor: "operator:x",
                ..fields(&t)
            },
            EntryFields {
                action: "employer.creat",
                ..fields(&t)
            },
            EntryFields {
                subject: "employer:0191",
                ..fields(&t)
            },
            EntryFields {
                payload_sha256: Some(&pay),
                ..fields(&t)
            },
            EntryFields {
                prev_hash: &prev,
                ..fields(&t)
            },
        ];
        for v in variants {
            assert_ne!(entry_hash(&v).unwrap(), base, "{v:?}");
        }
        // Length prefixes keep field boundaries: moving a character between fields shows.
        let shifted = EntryFields {
            actor: "operator:roote",
            action: "mployer.create",
            ..fields(&t)
        };
        assert_ne!(entry_hash(&shifted).unwrap(), base);
    }

    #[test]
    fn malformed_prev_hash_cannot_be_hashed() {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
        assert!(
            entry_hash(&EntryFields {
                prev_hash: "zz",
                ..fields(&t)
            })
            .is_none()
        );
    }
}
