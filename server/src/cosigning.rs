//! Asking witnesses to cosign the log's checkpoints (C2SP tlog-witness, the log's
//! side): every few seconds the newest checkpoint goes to each configured witness
//! (`[[witnesses]]`) with a consistency proof from the size that witness cosigned
//! last; the cosignatures that verify under the witness's configured key are kept in
//! `log_cosignatures` and served with the checkpoint (`/log/checkpoint`). A refusal
//! is logged and counted (`ivan_witness_refusals_total`), and not retried until the
//! next checkpoint: a witness refuses a history that does not extend the one it saw,
//! and that is the alarm.

use std::sync::Arc;
use std::time::Duration;

use retention::ledger::witness::{CosignatureVerifier, cosignatures_of, store_cosignature};
use retention::{Clock, Db};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

/// How often the newest checkpoint is looked for and pushed.
const PUSH_EVERY: Duration = Duration::from_secs(5);

/// Longest wait for one witness's answer.
const WITNESS_TIMEOUT: Duration = Duration::from_secs(10);

/// One witness the log asks for cosignatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's submission prefix: `add-checkpoint` is posted under it.
    pub url: String,
    /// Its cosignature verifier key (`ivan witness vkey` prints it).
    pub vkey: String,
}

impl WitnessConfig {
    /// `Err` says what is wrong with it.
    pub fn check(&self) -> Result<(), String> {
        CosignatureVerifier::new(&self.vkey)?;
        self.endpoint().map(drop)
    }

    fn endpoint(&self) -> Result<reqwest::Url, String> {
        let base = if self.url.ends_with('/') {
            self.url.clone()
        } else {
            format!("{}/", self.url)
        };
        let url = reqwest::Url::parse(&base)
            .and_then(|u| u.join("add-checkpoint"))
            .map_err(|e| format!("witness url {:?}: {e}", self.url))?;
        match url.scheme() {
            "http" | "https" => Ok(url),
            other => Err(format!(
                "witness url {:?}: {other} is not http(s)",
                self.url
            )),
        }
    }
}

/// A witness as the pusher knows it.
struct Peer {
    endpoint: reqwest::Url,
    verifier: CosignatureVerifier,
    /// The size it cosigned last, as far as we know (0: nothing, or not known yet;
    /// a 409 tells).
    size: u64,
    /// The checkpoint it refused: not offered again.
    refused: Option<u64>,
}

/// Starts pushing checkpoints to `witnesses`; `None` when there are none.
pub fn start(
    db: Db,
    clock: Arc<dyn Clock>,
    witnesses: &[WitnessConfig],
) -> crate::Result<Option<JoinHandle<()>>> {
    if witnesses.is_empty() {
        return Ok(None);
    }
    let mut peers = Vec::new();
    for w in witnesses {
        peers.push(Peer {
            endpoint: w.endpoint().map_err(crate::Error::Config)?,
            verifier: CosignatureVerifier::new(&w.vkey).map_err(crate::Error::Config)?,
            size: 0,
            refused: None,
        });
    }
    let client = reqwest::Client::builder()
        .timeout(WITNESS_TIMEOUT)
        .build()
        .map_err(|e| crate::Error::Config(format!("witness client: {e}")))?;
    Ok(Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(PUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let newest = match retention::ledger::latest_checkpoint(&db).await {
                Ok(cp) => cp,
                Err(e) => {
                    tracing::warn!(error = %e, "witnesses: cannot read the newest checkpoint");
                    continue;
                }
            };
            let Some((size, note)) =
                newest.and_then(|cp| Some((u64::try_from(cp.tree_size).ok()?, cp.signed_note?)))
            else {
                continue;
            };
            for peer in &mut peers {
                if let Err(e) = push(&db, &*clock, &client, peer, size, &note).await {
                    metrics::counter!("ivan_witness_refusals_total", "witness" => peer.verifier.name().to_owned())
                        .increment(1);
                    tracing::warn!(witness = peer.verifier.name(), tree_size = size, error = %e, "a witness did not cosign the checkpoint");
                }
            }
        }
    })))
}

/// Offers the checkpoint `note` of `size` entries to `peer` unless it has it or
/// refused it; keeps the cosignature it answers. `Err` says why it has none.
async fn push(
    db: &Db,
    clock: &dyn Clock,
    client: &reqwest::Client,
    peer: &mut Peer,
    size: u64,
    note: &str,
) -> Result<(), String> {
    if peer.size == size || peer.refused == Some(size) {
        return Ok(());
    }
    let text = note
        .split_once("\n\n")
        .map(|(text, _)| format!("{text}\n"))
        .ok_or("the checkpoint is not a signed note")?;
    // At most twice: once more when the witness says it stands at another size.
    for _ in 0..2 {
        let old = peer.size;
        if old > size {
            // It saw a newer checkpoint (another node pushed it): nothing to do.
            return Ok(());
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            retention::ledger::tree::consistency(db, old, size)
                .await
                .map_err(|e| e.to_string())?
                .proof
        };
        let mut body = format!("old {old}\n");
        for h in &proof {
            body += &base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h.0);
            body.push('\n');
        }
        body.push('\n');
        body += note;
        let response = client
            .post(peer.endpoint.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = response.status();
        let size_answer = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/x.tlog.size"));
        let answer = response
            .text()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if status == reqwest::StatusCode::CONFLICT && size_answer {
            peer.size = answer
                .trim_end()
                .parse()
                .map_err(|_| format!("409 with a size that is not one: {answer:?}"))?;
            continue;
        }
        if !status.is_success() {
            if status.is_client_error() {
                peer.refused = Some(size);
            }
            return Err(format!("{status}: {}", answer.trim_end()));
        }
        let cosigned = cosignatures_of(&text, &answer, std::slice::from_ref(&peer.verifier))?;
        let tree_size = i64::try_from(size).map_err(|e| e.to_string())?;
        for (witness, line) in cosigned {
            store_cosignature(db, tree_size, &witness, &line, clock.now())
                .await
                .map_err(|e| e.to_string())?;
        }
        metrics::counter!("ivan_witness_cosignatures_total", "witness" => peer.verifier.name().to_owned())
            .increment(1);
        peer.size = size;
        return Ok(());
    }
    Err("the witness's size kept changing".into())
}
