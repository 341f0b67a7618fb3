use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use futures::future::BoxFuture;

/// The source of "now". Production uses [`SystemClock`]; tests pass a fixed or
/// stepping clock so deadlines, retention and lockouts are tested without sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current UTC time, truncated to whole microseconds (the precision both
    /// databases keep, so a time read back hashes the same as the time written).
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once `d` of this clock's time has passed: what a worker waits on
    /// between passes, so a test's manual clock wakes it by moving forward (and it
    /// sleeps until then), with no real time spent. The system clock sleeps.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}
