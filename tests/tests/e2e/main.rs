//! The end-to-end suite as one test binary (one link, one process; cargo builds one
//! binary per file under `tests/`). Each module is one area; most drive the real
//! `ivan` binary as a child process (signals, kill -9, two processes on one database,
//! file locks need one), and those about time build the server in-process
//! ([`ivan_e2e::Instance::serve_in_process`]) on a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod backup;
mod browser_smoke;
mod certificate_status;
mod cli;
mod compliance;
mod failover;
mod faults;
mod forwarding;
mod front_door;
mod hostile_documents;
mod mail;
mod mobile;
mod openapi;
mod outages;
mod portal;
mod record;
mod signed_content;
mod submissions;
mod telemetry;
mod tokens;
mod upgrades;
mod worm;
