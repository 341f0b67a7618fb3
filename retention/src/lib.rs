//! # retention — the record
//!
//! Everything `ivan` sells is trust in what it recorded. This crate owns that record:
//!
//! * [`Db`] — the one database handle, SQLite (embedded default) or PostgreSQL, chosen
//!   by URL, with twin migration sets in `migrations/{sqlite,postgres}`.
//! * [`originals`] — the content-addressed store of original bytes (SHA-256 keys),
//!   a local directory by default or an S3-compatible bucket.
//! * [`ledger`] — the append-only, hash-chained transaction log with its single
//!   group-committing appender and signed checkpoints, and the verifier behind
//!   `ivan log verify`.
//! * [`keys`] — the signing keys (checkpoints: Ed25519; receipts: ES256) kept in the
//!   data directory, and their public JWKS.
//! * [`queue`] — leased work queues in a table (the mail and SMS outboxes).
//! * identity types every log entry names: [`Actor`], [`EmployerId`], [`MessageId`].
//!
//! Time comes in through a [`Clock`] so deadlines and retention can be tested without
//! sleeping. Errors are one [`Error`] enum; HTTP mapping happens in `server`.
//!
//! Later issues add here: receipts, retention policy and legal holds, backup/restore.
#![forbid(unsafe_code)]

pub mod backup;
mod clock;
pub mod db;
mod error;
pub mod evidence;
mod ids;
pub mod keys;
pub mod ledger;
pub mod originals;
pub mod queue;
pub mod receipts;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use clock::{Clock, SystemClock};
pub use db::{Backend, Db, DbConn, MigrationPolicy};
pub use error::{Error, Result};
pub use ids::{Actor, EmployerId, MessageId, Sha256Hex};
pub use ledger::{Appended, Ledger, LedgerConfig, NewEntry, Payload};
pub use originals::Originals;
