//! The front door: accepting TCP connections under explicit limits, and serving
//! HTTP/1.1 on them.
//!
//! `axum::serve` has no limits of its own: an idle or slow client holds a socket (and
//! a file descriptor) for as long as it likes, so enough of them stop the server for
//! everyone. Here every connection is bounded:
//!
//! - **header read timeout** (`http.header_read_timeout_secs`): a connection that has
//!   not sent a complete request head this long after it opened, or after its
//!   previous response (an idle keep-alive connection), is closed;
//! - **request timeout** (`http.request_timeout_secs`, in [`crate::http`]): a request
//!   whose body or handling takes longer is answered `408`;
//! - **connection caps**: at most `http.max_connections` open at once, and at most
//!   `http.max_connections_per_source` from one client address (trusted proxies are
//!   exempt from the per-source cap). A connection over a cap is closed at once, before
//!   anything is read from it, so it costs a file descriptor for microseconds;
//! - the process's open-file limit is raised to its hard limit at start, and the
//!   global cap is lowered (with a warning) to leave room for the database, the
//!   originals store and logs.
//!
//! HTTP/1.1 only: every client of ours (payroll software, the portal's browsers, the
//! mobile app, reverse proxies) speaks it, and cleartext HTTP/2 would bring idle
//! streams these limits do not cover.
//!
//! Shutdown: the listener closes at once (new connections are refused), every open
//! connection is asked to finish its request in flight and close, and
//! [`serve`] returns when all have closed or the grace period is over.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// `[http]`: the front door's limits (config key `http`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest accepted request body of the operational endpoints and the portal's
    /// forms (the submission endpoints take `intake.max_document_bytes`).
    pub body_limit_bytes: usize,
    /// Largest accepted JSON body of the employer and mobile APIs.
    pub json_body_limit_bytes: usize,
    /// A connection that has not sent a complete request head this long after it
    /// opened, or after its previous response (idle keep-alive), is closed.
    pub header_read_timeout_secs: u64,
    /// Most connections open at once; one more is closed at once. Lowered at start
    /// to what the process's open-file limit allows.
    pub max_connections: usize,
    /// Most connections open at once from one client address (trusted proxies are
    /// exempt).
    pub max_connections_per_source: usize,
    /// A request still running after this long is answered 408.
    pub request_timeout_secs: u64,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub shutdown_grace_secs: u64,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed:
    /// a request from one of them counts as coming from the address it forwarded
    /// (for the sign-in and login rate limits, API-token allow-lists and the log).
    /// Empty: the TCP peer, always.
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 10 * 1024 * 1024,
            json_body_limit_bytes: 64 * 1024,
            header_read_timeout_secs: 10,
            max_connections: 8192,
            max_connections_per_source: 256,
            request_timeout_secs: 30,
            shutdown_grace_secs: 30,
            trusted_proxies: Vec::new(),
        }
    }
}

/// File descriptors kept free of connections for the database pool, the originals
/// store, log files and the CLI-side work of the server.
const RESERVED_FDS: u64 = 256;

/// Limits of the front door, from `[http]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    /// Peers exempt from the per-source cap (`http.trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub shutdown_grace: Duration,
}

impl Limits {
    pub fn from_config(http: &HttpConfig, trusted_proxies: Vec<ipnet::IpNet>) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(http.header_read_timeout_secs),
            max_connections: http.max_connections,
            max_connections_per_source: http.max_connections_per_source,
            trusted_proxies,
            shutdown_grace: Duration::from_secs(http.shutdown_grace_secs),
        }
    }

    /// Raises the soft open-file limit to the hard one and lowers `max_connections`
    /// to what the result leaves after `RESERVED_FDS` (descriptors kept for the
    /// database, files and logs).
    pub fn fit_open_file_limit(mut self) -> Self {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            let raised = rustix::process::Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => limit.current = limit.maximum,
                Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
            }
        }
        if let Some(soft) = limit.current {
            let room =
                usize::try_from(soft.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
            if self.max_connections > room {
                tracing::warn!(
                    configured = self.max_connections,
                    open_file_limit = soft,
                    using = room,
                    "http.max_connections is above what the open-file limit allows; lowered"
                );
                self.max_connections = room;
            }
        }
        self
    }
}

/// Counts open connections per client address.
#[derive(Debug, Default)]
struct PerSource {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place under the per-source cap; gives it back when dropped.
struct SourceSlot {
    table: Arc<PerSource>,
    ip: IpAddr,
}

impl PerSource {
    fn take(table: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<SourceSlot> {
        let mut open = table
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let ip = self.ip;
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open connections
/// finish for at most the grace period. Returns whether every connection finished
/// inside the grace period.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> bool {
    let global = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_source = Arc::new(PerSource::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or memory: back off briefly instead of
                    // spinning; the connections that hold them are bounded in time.
                    metrics::counter!("ivan_http_accept_errors_total").increment(1);
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = global.clone().try_acquire_owned() else {
            metrics::counter!("ivan_http_connections_refused_total", "cap" => "global")
                .increment(1);
            drop(tcp);
            continue;
        };
        let ip = peer.ip().to_canonical();
        // Trusted proxies hold no per-source slot.
        let slot = if limits.trusted_proxies.iter().any(|n| n.contains(&ip)) {
            None
        } else {
            match PerSource::take(&per_source, ip, limits.max_connections_per_source) {
                Some(slot) => Some(slot),
                None => {
                    metrics::counter!("ivan_http_connections_refused_total", "cap" => "source")
                        .increment(1);
                    drop(tcp);
                    continue;
                }
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            // Without it a response written in two segments waits for the client's
            // delayed ACK (~40 ms per request, measured by the intake bench).
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // Connection info gives the mobile API and token allow-lists the peer.
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move { app.oneshot(req.map(axum::body::Body::new)).await }
        });
        let conn = builder.serve_connection(TokioIo::new(tcp), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => true,
        () = tokio::time::sleep(limits.shutdown_grace) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_source_slots_are_counted_and_given_back() {
        let table = Arc::new(PerSource::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = PerSource::take(&table, ip, 2).unwrap();
        let b = PerSource::take(&table, ip, 2).unwrap();
        assert!(PerSource::take(&table, ip, 2).is_none());
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(PerSource::take(&table, other, 2).is_some());
        drop(a);
        let c = PerSource::take(&table, ip, 2).unwrap();
        drop((b, c));
        assert!(table.open.lock().unwrap().is_empty());
    }
}
