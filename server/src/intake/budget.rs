//! The intake memory budget, shared fairly between employers.
//!
//! Two pools bound what intake holds in memory at once: **bodies** (filings read
//! into memory, counted from before the first byte is read, by their declared
//! length) and **analysis** (the estimated peak memory of parsing, verifying and
//! checking a document, from the XML pre-scan's count of its nodes). A request takes
//! its body lease, reads the body, pre-scans it, then takes its analysis lease all at
//! once: nobody waits for a pool while holding part of it, so the pools cannot
//! deadlock.
//!
//! Fairness: within each pool one employer may hold at most `employer_share_percent`
//! of it, so one employer's large or hostile documents queue behind each other, not
//! in front of everybody else's. A lease not granted within `budget_wait_secs` is
//! answered `503` with `Retry-After` (the service is busy), not left to the request
//! timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::telemetry::Gauged;

/// Budget units are KiB, so a semaphore's permit count holds any sane budget.
const UNIT: u64 = 1024;

/// One pool of memory.
#[derive(Debug)]
pub struct Pool {
    name: &'static str,
    total: Arc<Semaphore>,
    /// Most units one employer may hold.
    share: u32,
    employers: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Units of a pool held for one request; given back when dropped.
#[derive(Debug)]
pub struct Lease {
    _employer: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
    /// In `ivan_intake_budget_leases` (analyses running) while held.
    _held: Gauged,
}

/// The pool did not have room in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Pool {
    pub fn new(name: &'static str, bytes: usize, employer_share_percent: u8) -> Self {
        let units = u32::try_from((bytes as u64 / UNIT).max(1))
            .unwrap_or(u32::MAX)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        let share =
            (u64::from(units) * u64::from(employer_share_percent.clamp(1, 100)) / 100).max(1);
        Self {
            name,
            total: Arc::new(Semaphore::new(units as usize)),
            share: u32::try_from(share).unwrap_or(units),
            employers: Mutex::new(HashMap::new()),
        }
    }

    /// Holds `bytes` of this pool for `employer` (at most the employer's share: a
    /// document larger than that runs with the share to itself), waiting until
    /// `deadline` at the most.
    pub async fn lease(
        &self,
        employer: &str,
        bytes: u64,
        deadline: Instant,
    ) -> Result<Lease, Busy> {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1))
            .unwrap_or(u32::MAX)
            .min(self.share);
        let own = {
            let mut employers = self
                .employers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            employers
                .entry(employer.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.share as usize)))
                .clone()
        };
        let started = std::time::Instant::now();
        // Documents waiting for a lease.
        let waiting =
            Gauged::new(metrics::gauge!("ivan_intake_budget_waiting", "pool" => self.name));
        let granted = tokio::time::timeout_at(deadline, async {
            let employer = own.acquire_many_owned(units).await.map_err(|_| Busy)?;
            let total = self
                .total
                .clone()
                .acquire_many_owned(units)
                .await
                .map_err(|_| Busy)?;
            Ok::<_, Busy>(Lease {
                _employer: employer,
                _total: total,
                _held: Gauged::new(
                    metrics::gauge!("ivan_intake_budget_leases", "pool" => self.name),
                ),
            })
        })
        .await;
        drop(waiting);
        metrics::histogram!("ivan_intake_budget_wait_seconds", "pool" => self.name)
            .record(started.elapsed().as_secs_f64());
        match granted {
            Ok(Ok(lease)) => Ok(lease),
            _ => {
                metrics::counter!("ivan_intake_budget_busy_total", "pool" => self.name)
                    .increment(1);
                Err(Busy)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn one_employer_cannot_take_more_than_its_share() {
        let pool = Pool::new("test", 100 * 1024, 50);
        // Employer A holds its whole share (50 KiB) …
        let a1 = pool.lease("A", 50 * 1024, soon(100)).await.unwrap();
        // … so its next document waits, however small …
        assert_eq!(pool.lease("A", 1024, soon(50)).await.unwrap_err(), Busy);
        // … while B is served at once from the other half.
        let b = pool.lease("B", 40 * 1024, soon(50)).await.unwrap();
        drop(a1);
        let _a2 = pool.lease("A", 1024, soon(50)).await.unwrap();
        drop(b);
    }

    #[tokio::test]
    async fn a_document_larger_than_the_share_runs_with_the_share() {
        let pool = Pool::new("test", 100 * 1024, 50);
        let big = pool.lease("A", 10 * 1024 * 1024, soon(50)).await.unwrap();
        let _b = pool.lease("B", 50 * 1024, soon(50)).await.unwrap();
        drop(big);
    }
}
