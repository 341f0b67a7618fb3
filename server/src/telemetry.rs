//! Logs (tracing, text or JSON, to stderr) and the Prometheus metrics recorder.
//!
//! Every metric is listed once in [`METRICS`] with its help text and kind; latencies
//! and sizes are histograms with fixed buckets, so figures from several nodes add up.
//! Process metrics (`process_*`: CPU, memory, open files) and the gauges read at
//! scrape time (data dir free space, age of the newest checkpoint) are refreshed by
//! [`refresh_at_scrape`].

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// How the log is written: `text` for people, `json` for log shippers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the log subscriber. `IVAN_LOG` (an `EnvFilter` directive such as
/// `info,sqlx=warn`) overrides `default_filter`.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_env("IVAN_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person at a terminal, never into a file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use, with every metric
/// of [`METRICS`] described and `ivan_build_info` set.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            process().describe();
            metrics::gauge!("ivan_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

/// The exporter with each histogram's buckets (so none is rendered as a summary).
fn builder() -> PrometheusBuilder {
    METRICS
        .iter()
        .filter_map(|(name, kind, _)| match kind {
            Kind::Histogram(buckets) => Some((*name, *buckets)),
            _ => None,
        })
        .try_fold(PrometheusBuilder::new(), |b, (name, buckets)| {
            b.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
        })
        // Only an empty bucket list is refused, and the table has none (tested).
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "histogram buckets refused; latencies are summaries");
            PrometheusBuilder::new()
        })
}

fn describe() {
    for (name, kind, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram(_) => metrics::describe_histogram!(*name, *help),
        }
    }
    // A counter appears on its first increment; `increase()` cannot see that first
    // failure after a restart. The failure counters alerts watch start at 0.
    for name in ZERO_AT_START {
        metrics::counter!(*name).increment(0);
    }
}

/// Unlabelled failure counters shown at 0 from start-up (ops/prometheus/alerts.yml).
const ZERO_AT_START: &[&str] = &[
    "ivan_log_append_failures_total",
    "ivan_crl_fetch_failures_total",
    "ivan_ocsp_failures_total",
    "ivan_mail_failures_total",
    "ivan_forwarding_overdue_total",
    "ivan_forwarding_packages_refused_total",
    "ivan_sms_failed_total",
];

fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Refreshes what is read rather than counted, just before `/metrics` renders:
/// process metrics, the data dir's free space, the newest checkpoint's time. Each
/// read is bounded: a database that does not answer leaves the last value.
pub(crate) async fn refresh_at_scrape(data_dir: &std::path::Path, db: &retention::Db) {
    process().collect();
    if let Ok(fs) = rustix::fs::statvfs(data_dir) {
        let block = fs.f_frsize as f64;
        metrics::gauge!("ivan_data_dir_free_bytes").set(fs.f_bavail as f64 * block);
        metrics::gauge!("ivan_data_dir_size_bytes").set(fs.f_blocks as f64 * block);
    }
    let latest = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        retention::ledger::latest_checkpoint(db),
    )
    .await;
    if let Ok(Ok(Some(cp))) = latest {
        metrics::gauge!("ivan_log_checkpoint_timestamp_seconds")
            .set(cp.signed_at.timestamp() as f64);
    }
}

/// How a metric is kept: a counter, a gauge, or a histogram with these bucket
/// bounds (cumulative `_bucket{le}` series, so nodes' figures add up).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

/// Bounds for durations, 1 ms to 5 min.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Bounds for counts of things per batch (log appends, filings per package).
const COUNTS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// Every metric `ivan` exposes, from every crate of the workspace, with its help
/// text (`# HELP` on `/metrics`). A unit test fails on a metric used in the code and
/// missing here, and on an entry here no code uses.
pub(crate) const METRICS: &[(&str, Kind, &str)] = &[
    // HTTP front door
    (
        "ivan_http_requests_total",
        Kind::Counter,
        "HTTP requests answered, by method, route pattern and status.",
    ),
    (
        "ivan_http_request_duration_seconds",
        Kind::Histogram(SECONDS),
        "Time to answer an HTTP request, by method, route pattern and status.",
    ),
    (
        "ivan_http_requests_in_flight",
        Kind::Gauge,
        "HTTP requests being answered now.",
    ),
    (
        "ivan_http_accept_errors_total",
        Kind::Counter,
        "Failed accept() calls on the listener (out of file descriptors or memory).",
    ),
    (
        "ivan_http_connections_refused_total",
        Kind::Counter,
        "Connections closed on arrival because a connection cap was reached, by cap (global, source).",
    ),
    // Intake
    (
        "ivan_submissions_accepted_total",
        Kind::Counter,
        "Filings accepted (a receipt was issued).",
    ),
    (
        "ivan_submissions_refused_total",
        Kind::Counter,
        "Filings refused, by HTTP status of the refusal.",
    ),
    (
        "ivan_intake_budget_waiting",
        Kind::Gauge,
        "Documents waiting for analysis memory budget, by pool.",
    ),
    (
        "ivan_intake_budget_leases",
        Kind::Gauge,
        "Documents holding analysis memory budget, by pool.",
    ),
    (
        "ivan_intake_budget_wait_seconds",
        Kind::Histogram(SECONDS),
        "Time a document waited for analysis memory budget, by pool.",
    ),
    (
        "ivan_intake_budget_busy_total",
        Kind::Counter,
        "Documents answered 503 because no analysis budget came free in time, by pool.",
    ),
    (
        "ivan_crl_stale",
        Kind::Gauge,
        "Trusted CAs without a current CRL (with intake.require_crl their employers' filings are refused).",
    ),
    (
        "ivan_crl_fetch_failures_total",
        Kind::Counter,
        "Failed fetches of a CRL from its distribution point.",
    ),
    (
        "ivan_ocsp_failures_total",
        Kind::Counter,
        "OCSP exchanges without a usable answer (the CRL decision stood).",
    ),
    (
        "ivan_employer_certificates_expiring",
        Kind::Gauge,
        "Registered employer signing certificates that expire within within_days days.",
    ),
    (
        "ivan_api_unauthorized_total",
        Kind::Counter,
        "API requests refused 401 (missing, unknown, expired or revoked token).",
    ),
    (
        "ivan_api_token_ip_refused_total",
        Kind::Counter,
        "API requests refused because the token is not allowed from the client's address.",
    ),
    (
        "ivan_auth_failures_total",
        Kind::Counter,
        "Failed authentication attempts, by kind.",
    ),
    // Forwarding to the authority
    (
        "ivan_forwarding_attempts_total",
        Kind::Counter,
        "Attempts to deliver or poll a filing at the authority, by outcome.",
    ),
    (
        "ivan_forwarding_delivery_seconds",
        Kind::Histogram(SECONDS),
        "Time from the end of a filing's hold window to its delivery to the authority.",
    ),
    (
        "ivan_forwarding_overdue_total",
        Kind::Counter,
        "Filings that passed their forwarding deadline undelivered.",
    ),
    (
        "ivan_forwarding_package_filings",
        Kind::Histogram(COUNTS),
        "Filings per package sent to the authority.",
    ),
    (
        "ivan_forwarding_package_bytes_total",
        Kind::Counter,
        "Bytes of packages sent to the authority.",
    ),
    (
        "ivan_forwarding_packages_refused_total",
        Kind::Counter,
        "Packages the authority refused as a whole (their filings were sent one by one).",
    ),
    (
        "ivan_outbox_depth",
        Kind::Gauge,
        "Filings waiting in the outbox, by phase (deliver, poll).",
    ),
    (
        "ivan_outbox_overdue",
        Kind::Gauge,
        "Filings in the outbox past their forwarding deadline.",
    ),
    (
        "ivan_outbox_oldest_pending_seconds",
        Kind::Gauge,
        "Seconds since the hold window of the oldest filing due for delivery ended.",
    ),
    // Transaction log
    (
        "ivan_log_appends_total",
        Kind::Counter,
        "Entries appended to the transaction log.",
    ),
    (
        "ivan_log_append_failures_total",
        Kind::Counter,
        "Log batches that failed (nothing of them was written).",
    ),
    (
        "ivan_log_batch_seconds",
        Kind::Histogram(SECONDS),
        "Time to write one batch of log entries (the appender is serial).",
    ),
    (
        "ivan_log_batch_size",
        Kind::Histogram(COUNTS),
        "Entries per log batch.",
    ),
    (
        "ivan_log_checkpoints_total",
        Kind::Counter,
        "Log checkpoints signed.",
    ),
    (
        "ivan_log_checkpoint_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the newest signed log checkpoint (read at scrape).",
    ),
    (
        "ivan_witness_cosignatures_total",
        Kind::Counter,
        "Cosignatures of our checkpoints received from witnesses, by witness.",
    ),
    (
        "ivan_witness_refusals_total",
        Kind::Counter,
        "Checkpoints a witness did not cosign, by witness.",
    ),
    (
        "ivan_witness_cosigned_total",
        Kind::Counter,
        "Checkpoints of other logs this node cosigned as a witness.",
    ),
    (
        "ivan_witness_refused_total",
        Kind::Counter,
        "Checkpoints of other logs this node refused to cosign, by status.",
    ),
    // Compliance and retention
    (
        "ivan_compliance_searches_total",
        Kind::Counter,
        "Compliance searches of the log (each is itself logged).",
    ),
    (
        "ivan_original_reads_total",
        Kind::Counter,
        "Originals read by compliance officers (each read is logged).",
    ),
    (
        "ivan_evidence_exports_total",
        Kind::Counter,
        "Evidence bundles exported.",
    ),
    (
        "ivan_retention_sweep_seconds",
        Kind::Histogram(SECONDS),
        "Time of one retention sweep.",
    ),
    (
        "ivan_retention_purged_filings_total",
        Kind::Counter,
        "Filings purged at the end of their retention period.",
    ),
    // Mail
    (
        "ivan_mail_sent_total",
        Kind::Counter,
        "Mails handed to the SMTP relay (or the dev sink).",
    ),
    (
        "ivan_mail_failures_total",
        Kind::Counter,
        "Failed mail deliveries (retried later).",
    ),
    // Portal
    (
        "ivan_portal_csrf_refused_total",
        Kind::Counter,
        "Portal forms refused for a missing or wrong CSRF token.",
    ),
    (
        "ivan_portal_sign_in_refused_total",
        Kind::Counter,
        "Refused portal sign-ins.",
    ),
    // Mobile channel and SMS
    (
        "ivan_mobile_logins_total",
        Kind::Counter,
        "Mobile PIN logins, by outcome (ok, refused, delayed).",
    ),
    (
        "ivan_mobile_unknown_phone_logins_total",
        Kind::Counter,
        "Mobile logins from phone numbers no employer authorised.",
    ),
    (
        "ivan_mobile_lockouts_total",
        Kind::Counter,
        "Mobile accesses locked after too many wrong PINs.",
    ),
    (
        "ivan_mobile_rate_limited_total",
        Kind::Counter,
        "Mobile requests refused 429 by the per-network rate limit.",
    ),
    (
        "ivan_mobile_pin_hash_busy_total",
        Kind::Counter,
        "Mobile logins answered 503 because every PIN-hashing slot was busy.",
    ),
    (
        "ivan_mobile_refresh_reuse_total",
        Kind::Counter,
        "Reuses of a spent refresh token (the session family is revoked).",
    ),
    (
        "ivan_preregistrations_total",
        Kind::Counter,
        "Preliminary hires and terminations filed from the mobile app.",
    ),
    (
        "ivan_preregistrations_paired_total",
        Kind::Counter,
        "Preliminary filings paired with the employer's registration form.",
    ),
    (
        "ivan_preregistrations_overdue_total",
        Kind::Counter,
        "Preliminary filings flagged as not paired in time.",
    ),
    (
        "ivan_sms_sent_total",
        Kind::Counter,
        "SMS messages accepted by the SMSC.",
    ),
    (
        "ivan_sms_failed_total",
        Kind::Counter,
        "SMS messages given up on.",
    ),
    (
        "ivan_sms_retries_total",
        Kind::Counter,
        "SMS submissions retried.",
    ),
    (
        "ivan_sms_delivery_receipts_total",
        Kind::Counter,
        "SMS delivery receipts received, by stat.",
    ),
    // The process and the node
    (
        "ivan_build_info",
        Kind::Gauge,
        "Always 1; labels name the running build (version, commit).",
    ),
    (
        "ivan_data_dir_free_bytes",
        Kind::Gauge,
        "Bytes free for ivan on the filesystem of the data dir (read at scrape).",
    ),
    (
        "ivan_data_dir_size_bytes",
        Kind::Gauge,
        "Size in bytes of the filesystem of the data dir (read at scrape).",
    ),
];

/// One in a gauge while it lives: a request in flight, a document waiting for or
/// holding analysis budget. Dropping it (the work ended, or its request went away)
/// takes the one back.
#[derive(Debug)]
pub(crate) struct Gauged(metrics::Gauge);

impl Gauged {
    pub(crate) fn new(gauge: metrics::Gauge) -> Self {
        gauge.increment(1);
        Self(gauge)
    }
}

impl Drop for Gauged {
    fn drop(&mut self) {
        self.0.decrement(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names of the metrics the workspace's code records (`counter!("ivan_…")` and
    /// the like, the name on the macro's line or the next).
    fn used_in_code() -> std::collections::BTreeSet<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut names = std::collections::BTreeSet::new();
        let mut dirs: Vec<_> = ["server", "retention", "mobile-api", "sms-adapter"]
            .iter()
            .map(|c| root.join(c).join("src"))
            .collect();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") || path.ends_with("telemetry.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for macro_at in ["counter!(", "gauge!(", "histogram!("]
                    .iter()
                    .flat_map(|m| text.match_indices(m).map(move |(i, _)| i + m.len()))
                {
                    let rest = text[macro_at..].trim_start();
                    if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next())
                        && name.starts_with("ivan_")
                    {
                        names.insert(name.to_owned());
                    }
                }
            }
        }
        names
    }

    #[test]
    fn every_metric_the_code_records_is_described_and_none_is_stale() {
        let described: std::collections::BTreeSet<String> =
            METRICS.iter().map(|(n, _, _)| (*n).to_owned()).collect();
        assert_eq!(described.len(), METRICS.len(), "a metric is listed twice");
        let used = used_in_code();
        assert!(used.len() > 40, "the scan found only {used:?}");
        // Recorded here, not through a literal elsewhere.
        let here = [
            "ivan_build_info",
            "ivan_data_dir_free_bytes",
            "ivan_data_dir_size_bytes",
            "ivan_log_checkpoint_timestamp_seconds",
        ];
        let missing: Vec<_> = used.difference(&described).collect();
        assert!(missing.is_empty(), "metrics without help text: {missing:?}");
        let stale: Vec<_> = described
            .iter()
            .filter(|n| !used.contains(*n) && !here.contains(&n.as_str()))
            .collect();
        assert!(stale.is_empty(), "described but never recorded: {stale:?}");
        for (name, kind, help) in METRICS {
            assert!(help.ends_with('.'), "{name}: help is a sentence");
            let counter = name.ends_with("_total");
            assert_eq!(
                counter,
                matches!(kind, Kind::Counter),
                "{name}: counters, and only they, end in _total"
            );
        }
    }

    #[test]
    fn histograms_render_as_histograms_with_help() {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            metrics::histogram!("ivan_log_batch_size").record(3.0);
            metrics::histogram!("ivan_http_request_duration_seconds", "method" => "GET")
                .record(0.02);
        });
        let text = handle.render();
        assert!(!text.contains("summary"), "{text}");
        assert!(
            text.contains("# TYPE ivan_log_batch_size histogram"),
            "{text}"
        );
        assert!(
            text.contains("# HELP ivan_log_batch_size Entries per log batch."),
            "{text}"
        );
        assert!(
            text.contains("ivan_log_batch_size_bucket{le=\"5\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ivan_log_batch_size_bucket{le=\"2\"} 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "ivan_http_request_duration_seconds_bucket{method=\"GET\",le=\"0.025\"} 1"
            ),
            "{text}"
        );
    }
}
