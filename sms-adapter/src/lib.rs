//! # sms-adapter
//!
//! Will own outbound SMS: an `SmsSender` trait, the real transports (an SMPP client
//! towards the operator's SMSC, an HTTP gateway) and a development outbox that keeps
//! messages in a file instead of sending them. It depends on no sibling crate.
//!
//! Nothing is implemented yet: this crate exists so the workspace has its final
//! shape and dependency direction (`server → sms-adapter`, `mobile-api → sms-adapter`).
#![forbid(unsafe_code)]
