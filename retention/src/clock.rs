use chrono::{DateTime, SubsecRound, Utc};

/// The source of "now". Production uses [`SystemClock`]; tests pass a fixed or
/// stepping clock so deadlines, retention and lockouts are tested without sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current UTC time, truncated to whole microseconds (the precision both
    /// databases keep, so a time read back hashes the same as the time written).
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}
