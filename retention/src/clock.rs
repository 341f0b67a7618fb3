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

/// A job run on a [`Clock`] at an interval until it is shut down: the sweeps and
/// checks a server runs in the background. On a test's manual clock it runs when the
/// clock is moved past its next time.
#[derive(Debug)]
pub struct Periodic {
    handle: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Periodic {
    /// Runs `job` after `first` (at once when zero), then every `every`, on `clock`.
    /// A failed run is logged under `name` and the next run tries again.
    pub fn start<F, Fut, E>(
        name: &'static str,
        clock: std::sync::Arc<dyn Clock>,
        first: Duration,
        every: Duration,
        mut job: F,
    ) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send,
        E: std::fmt::Display,
    {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(async move {
            let mut wait = first;
            loop {
                if !wait.is_zero() {
                    tokio::select! {
                        () = clock.sleep(wait) => {}
                        r = stopped.changed() => if r.is_err() || *stopped.borrow() { return },
                    }
                }
                if *stopped.borrow() {
                    return;
                }
                if let Err(e) = job().await {
                    tracing::error!(error = %e, "{name} failed; tried again next time");
                }
                wait = every;
            }
        });
        Periodic { handle, stop }
    }

    /// Stops it, letting a run in progress finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "a background task failed");
        }
    }
}
