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
//! * [`receipts`] — signed receipts (compact JWS, ES256) for stored filings.
//! * [`queue`] — leased work queues in a table (the mail and SMS outboxes).
//! * [`evidence`] — evidence bundles: the canonical archive about a set of filings
//!   (`ivan evidence export`) and its offline verifier (`ivan evidence verify`).
//! * [`backup`] — consistent snapshots of the database, originals and keys, their
//!   verification, and restore (`ivan backup create|verify`, `ivan restore`).
//! * identity types every log entry names: [`Actor`], [`EmployerId`], [`MessageId`].
//!
//! The retention *policy* (what is purged when, legal holds, the sweeper) lives in
//! `server` (`compliance::sweeper`), which owns the submission lifecycle; this crate
//! gives it the primitives: [`Originals::delete`] and a `log verify` that reports
//! purged payloads as such.
//!
//! Time comes in through a [`Clock`] so deadlines and retention can be tested without
//! sleeping. Errors are one [`Error`] enum; HTTP mapping happens in `server`.
#![forbid(unsafe_code)]

pub mod backup;
mod clock;
pub mod db;
mod error;
pub mod evidence;
mod ids;
pub mod keys;
pub mod ledger;
mod names;
pub mod originals;
pub mod queue;
pub mod receipts;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use clock::{Clock, Periodic, SystemClock};
pub use db::{Backend, Db, DbConn, MigrationPolicy};
pub use error::{Error, Kind as ErrorKind, Result, conflict_on_duplicate, io_unavailable};
pub use ids::{Actor, EmployerId, FileRecord, MessageId, Sha256Hex};
pub use ledger::{
    Appended, Content, Described, Landed, Ledger, LedgerConfig, NewEntry, Payload, RowWriter,
};
pub use originals::Originals;
