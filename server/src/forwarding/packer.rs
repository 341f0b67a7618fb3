//! Packages (docs/authority-protocol.md, `POST /v1/packages`): with
//! `forwarding.package_max_filings` above 1, deliveries are gathered into packages
//! instead of one request each.
//!
//! Each delivery attempt of the outbox worker hands its filing to the [`Packer`] and
//! waits for that filing's own outcome, exactly as it would wait for a single
//! `POST /v1/messages`: so leases, retries, refusals and the log entries stay per
//! filing, and a package is only a way to carry them. A package leaves when it holds
//! `package_max_filings` filings or `package_max_bytes` bytes, or
//! `package_max_wait_ms` after its first filing came (real time: it only groups
//! attempts that are running anyway). Packages are sent concurrently.
//!
//! The authority answers per filing, keyed by message id, so a package retried after
//! a lost answer gets `409 duplicate` for every filing it had taken, and a package
//! partly taken is resolved filing by filing. A `415` to a gzip package switches this
//! process to uncompressed packages; any other refusal of a package as a whole (our
//! packing at fault, not the filings) sends its filings one by one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::authority::{AuthorityClient, Delivery, Encoding, Outgoing, Package, Transient};

/// `forwarding.package_*`.
#[derive(Debug, Clone, Copy)]
pub struct PackageLimits {
    pub max_filings: usize,
    pub max_bytes: usize,
    pub max_wait: Duration,
    pub encoding: Encoding,
}

/// A filing handed to the packer.
#[derive(Debug)]
pub struct Parcel {
    pub message_id: String,
    pub employer: String,
    pub document_type: String,
    pub body: Bytes,
}

impl Parcel {
    fn outgoing(&self) -> Outgoing<'_> {
        Outgoing {
            message_id: &self.message_id,
            employer: &self.employer,
            document_type: &self.document_type,
            body: self.body.clone(),
        }
    }
}

type Reply = oneshot::Sender<Result<Delivery, Transient>>;

/// Hands filings to the packing task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Packer {
    tx: mpsc::Sender<(Parcel, Reply)>,
}

impl Packer {
    /// Starts the packing task; it ends when every [`Packer`] is dropped.
    pub fn start(client: AuthorityClient, limits: PackageLimits) -> Packer {
        let (tx, rx) = mpsc::channel(limits.max_filings.max(1) * 2);
        tokio::spawn(run(client, limits, rx));
        Packer { tx }
    }

    /// Delivers `parcel` in the next package: its own outcome.
    pub async fn deliver(&self, parcel: Parcel) -> Result<Delivery, Transient> {
        let (reply, answer) = oneshot::channel();
        let stopped = || Transient::new("the packing task stopped");
        self.tx.send((parcel, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(
    client: AuthorityClient,
    limits: PackageLimits,
    mut rx: mpsc::Receiver<(Parcel, Reply)>,
) {
    let uncompressed = Arc::new(AtomicBool::new(limits.encoding == Encoding::Identity));
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + limits.max_wait;
        let mut bytes = first.0.body.len();
        let mut items = vec![first];
        while items.len() < limits.max_filings && bytes < limits.max_bytes {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => {
                    bytes += item.0.body.len();
                    items.push(item);
                }
                Ok(None) | Err(_) => break,
            }
        }
        tokio::spawn(send(client.clone(), items, uncompressed.clone()));
    }
}

/// Sends one package and answers each filing's waiter.
async fn send(client: AuthorityClient, items: Vec<(Parcel, Reply)>, uncompressed: Arc<AtomicBool>) {
    let (parcels, replies): (Vec<Parcel>, Vec<Reply>) = items.into_iter().unzip();
    let outgoing: Vec<Outgoing<'_>> = parcels.iter().map(Parcel::outgoing).collect();
    metrics::histogram!("ivan_forwarding_package_filings").record(outgoing.len() as f64);
    loop {
        let encoding = if uncompressed.load(Ordering::Relaxed) {
            Encoding::Identity
        } else {
            Encoding::Gzip
        };
        match client.deliver_package(&outgoing, encoding).await {
            Ok(Package::Answered(outcomes)) => return answer(replies, outcomes),
            Ok(Package::Unsupported { accepts }) if encoding == Encoding::Gzip => {
                tracing::warn!(%accepts, "the authority does not take gzip packages; sending them uncompressed");
                uncompressed.store(true, Ordering::Relaxed);
            }
            Ok(refused) => {
                tracing::error!(answer = ?refused, filings = outgoing.len(), "the authority refused a package as a whole; sending its filings one by one");
                metrics::counter!("ivan_forwarding_packages_refused_total").increment(1);
                let mut outcomes = Vec::with_capacity(outgoing.len());
                for msg in &outgoing {
                    outcomes.push(client.deliver(msg).await);
                }
                return answer(replies, outcomes);
            }
            Err(transient) => {
                // One failed request: it counts once towards "the authority is down".
                let echo = Transient {
                    echo: true,
                    ..transient.clone()
                };
                let mut outcomes = vec![Err(echo); replies.len()];
                if let Some(first) = outcomes.first_mut() {
                    *first = Err(transient);
                }
                return answer(replies, outcomes);
            }
        }
    }
}

fn answer(replies: Vec<Reply>, outcomes: Vec<Result<Delivery, Transient>>) {
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // A waiter gone (its worker stopping) keeps its lease until it ends.
        let _ = reply.send(outcome);
    }
}
