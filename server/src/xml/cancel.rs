//! Cancelling analysis whose request has gone.
//!
//! A document is analysed on a blocking thread; when its request ends early (the
//! `408` of the request timeout, a client that hung up, shutdown), the async side is
//! dropped but the thread would run on, keeping its share of the analysis budget.
//! [`Cancel`] is the flag between them: the request holds a [`CancelOnDrop`], the
//! analysis checks [`Cancel::check`] between its phases and every few thousand
//! steps inside the XML pre-scan, and stops with [`Cancelled`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared between a request and the analysis it started.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

/// The analysis stopped because its request is gone; nobody is left to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl Cancel {
    /// `Err(Cancelled)` once the request has gone.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.0.load(Ordering::Relaxed) {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// A guard that cancels when dropped (held by the request's future).
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// Cancels its [`Cancel`] when dropped (after a finished analysis, harmlessly).
#[derive(Debug)]
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}
