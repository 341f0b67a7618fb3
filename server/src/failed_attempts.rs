//! Failed token attempts, counted per source and hour and written to the log in
//! aggregate: one `auth.failures` entry per source, kind of token and hour, with the
//! count (docs/LOG.md, "Failed token attempts"). A guessing client shows in the
//! record without one entry per request, and `ivan_auth_failures_total{kind}` is the
//! alert metric.
//!
//! Counted: a request that presented an employer API token or a compliance officer's
//! token that did not authenticate (a request with no token at all is a client
//! misconfiguration, answered 401 but not counted here). An hour's counts are written
//! a minute or so after it ends, and at a clean stop; a crash loses the counts of the
//! hour it happened in (the metric counted them).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use retention::{Actor, Clock, Ledger, NewEntry, Payload};
use tokio::task::JoinHandle;

/// Distinct (hour, source, kind) counters kept at most; beyond, attempts count
/// under the source `other`, so a client with many addresses costs bounded memory.
const MAX_COUNTERS: usize = 10_000;

/// How often ended hours are looked for.
const FLUSH_EVERY: Duration = Duration::from_secs(60);

/// Which token failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    ApiToken,
    OfficerToken,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ApiToken => "api-token",
            Kind::OfficerToken => "officer-token",
        }
    }
}

type Key = (DateTime<Utc>, String, Kind);

/// The counters, shared by the request handlers and the flusher.
#[derive(Clone)]
pub struct FailedAttempts {
    counts: Arc<Mutex<BTreeMap<Key, u64>>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for FailedAttempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailedAttempts").finish_non_exhaustive()
    }
}

/// The hour `t` falls in.
fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

impl FailedAttempts {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            counts: Arc::default(),
            clock,
        }
    }

    /// Counts one failed attempt with a `kind` token from `source` (unknown: `None`).
    pub fn record(&self, kind: Kind, source: Option<IpAddr>) {
        metrics::counter!("ivan_auth_failures_total", "kind" => kind.as_str()).increment(1);
        let hour = hour_of(self.clock.now());
        let source =
            source.map_or_else(|| "unknown".to_owned(), |ip| ip.to_canonical().to_string());
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (hour, source, kind);
        let key = if counts.len() >= MAX_COUNTERS && !counts.contains_key(&key) {
            (hour, "other".to_owned(), kind)
        } else {
            key
        };
        *counts.entry(key).or_default() += 1;
    }

    /// Takes the counters of the hours before `before` (all of them when `None`).
    fn take(&self, before: Option<DateTime<Utc>>) -> Vec<(Key, u64)> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = match before {
            Some(hour) => counts.split_off(&(hour, String::new(), Kind::ApiToken)),
            None => BTreeMap::new(),
        };
        std::mem::replace(&mut *counts, kept).into_iter().collect()
    }

    /// Writes one `auth.failures` entry per counter of the hours before the current
    /// one (all hours when `all`); counters whose entry could not be written are put
    /// back, to be tried again.
    pub async fn flush(&self, ledger: &Ledger, all: bool) {
        let before = (!all).then(|| hour_of(self.clock.now()));
        for ((hour, source, kind), count) in self.take(before) {
            let payload = serde_json::json!({
                "kind": kind.as_str(),
                "hour": retention::ledger::format_time(&hour),
                "count": count,
            });
            let entry = NewEntry {
                actor: Actor::System,
                action: "auth.failures".into(),
                subject: format!("source:{source}"),
                payload: Some(Payload::json(&payload)),
            };
            if let Err(e) = ledger.append(entry).await {
                tracing::error!(error = %e, source, "could not record failed token attempts; will retry");
                let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
                *counts.entry((hour, source, kind)).or_default() += count;
            }
        }
    }

    /// Writes ended hours' counts every minute until aborted.
    pub fn start(&self, ledger: Ledger) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.flush(&ledger, false).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retention::testing::ManualClock;

    #[test]
    fn counts_per_hour_source_and_kind_and_takes_only_ended_hours() {
        let t = |h: u32, m: u32| {
            chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 5, h, m, 0).unwrap()
        };
        let clock = Arc::new(ManualClock::at(t(9, 10)));
        let f = FailedAttempts::new(clock.clone());
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        f.record(Kind::ApiToken, Some(a));
        f.record(Kind::ApiToken, Some(mapped));
        f.record(Kind::OfficerToken, Some(a));
        f.record(Kind::ApiToken, None);
        clock.advance(TimeDelta::minutes(55));
        f.record(Kind::ApiToken, Some(a));
        let ended = f.take(Some(hour_of(clock.now())));
        assert_eq!(
            ended,
            [
                ((t(9, 0), "192.0.2.7".to_owned(), Kind::ApiToken), 2),
                ((t(9, 0), "192.0.2.7".to_owned(), Kind::OfficerToken), 1),
                ((t(9, 0), "unknown".to_owned(), Kind::ApiToken), 1),
            ]
        );
        assert_eq!(
            f.take(None),
            [((t(10, 0), "192.0.2.7".to_owned(), Kind::ApiToken), 1)]
        );
        // Bounded: past the cap, new sources count as `other`.
        for i in 0..MAX_COUNTERS as u32 + 5 {
            f.record(Kind::ApiToken, Some(IpAddr::from(i.to_be_bytes())));
        }
        let taken = f.take(None);
        assert_eq!(taken.len(), MAX_COUNTERS + 1);
        assert!(taken.contains(&((t(10, 0), "other".to_owned(), Kind::ApiToken), 5)));
    }
}
