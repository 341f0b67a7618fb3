//! # mobile-api
//!
//! Will own the mobile pre-registration channel (see `DESIGN.md`, "Mobile
//! pre-registration"): phone accesses registered by an employer admin, PINs
//! (random, Argon2id-hashed, delivered by SMS through `sms-adapter`), PIN login
//! with attempt limits and lockout, short-lived JWTs with rotating refresh tokens,
//! pre-registrations (`received` → `paired`) and the pairing with an employer's
//! registration form. It will expose an axum `Router` that `server` mounts under
//! `/mobile/v1`.
//!
//! Nothing is implemented yet: this crate exists so the workspace has its final
//! shape and dependency direction (`server → mobile-api → retention`).
#![forbid(unsafe_code)]
