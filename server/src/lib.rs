//! # ivan-server
//!
//! The intermediary itself: the server as a value ([`app::App`]: `build` on a clock,
//! `run` on a listener until a shutdown future resolves) and what starts it
//! ([`startup`], [`serve`]), the `ivan` binary's command line ([`cli`]), the HTTP
//! application ([`http`]) and the employer and compliance APIs ([`api`]),
//! configuration ([`config`]), the employer registry ([`employers`]), portal users
//! ([`accounts`]), intake of signed filings ([`intake`]), the document profiles
//! ([`documents`]), submissions and their lifecycle ([`submissions`]), the person
//! index ([`submissions::persons`]), forwarding to the authority ([`forwarding`]) and its sandbox
//! ([`sandbox`]), mail ([`mail`]), what a running server records for the command line
//! ([`settings`]), the mobile channel's host side ([`preregistrations`]), the employer
//! and officer portal ([`portal`]), compliance — officers, the logged log search and
//! original reads, evidence export, retention, legal holds and the sweeper
//! ([`compliance`]) — and a test PKI and signer for trying things ([`dev`]). The
//! modules' layers are in docs/ARCHITECTURE.md ("Inside `server`"), checked by
//! `ops/layers.py`.
//!
//! ```text
//!             ┌────────────── server (this crate, binary `ivan`) ──────────────┐
//!             │ cli · app · config · http · api · portal · compliance · …       │
//!             └───────┬───────────────────────┬──────────────────────┬─────────┘
//!                     ▼                       ▼                      ▼
//!               mobile-api ───────────►  retention            sms-adapter
//!                     └──────────────────────────────────────────────▲
//! ```
//!
//! **Error policy.** Library code returns [`Error`]; nothing panics on bad input
//! (`unwrap`/`expect`/`panic` are denied outside tests by the workspace lints). The
//! CLI prints an error as one line on stderr and exits non-zero; HTTP handlers turn
//! it into an RFC 9457 problem document in exactly one place ([`error`]), logging
//! internal details instead of sending them.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod api;
pub mod app;
pub mod cli;
pub mod compliance;
pub mod config;
pub mod connections;
pub mod cosigning;
pub mod dev;
pub mod documents;
pub mod employers;
pub mod error;
pub mod failed_attempts;
pub mod forwarding;
pub mod http;
pub mod i18n;
pub mod intake;
pub mod mail;
pub mod portal;
pub mod preregistrations;
pub mod sandbox;
pub mod serve;
pub mod settings;
pub mod startup;
pub mod submissions;
mod telemetry;
pub mod witness;
pub mod xml;

pub use error::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;
