//! `ivan sandbox-authority` and `ivan witness …`: the log's peers, run from the same
//! binary. Neither reads ivan's configuration.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::startup::shutdown_signal;
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Serve `POST /add-checkpoint` on --listen (default 127.0.0.1:9100).
    Serve {
        #[command(flatten)]
        key: WitnessKey,
        /// A log to witness: its C2SP verifier key, as `ivan log vkey` prints it
        /// (repeat for several logs).
        #[arg(long = "log", required = true)]
        logs: Vec<String>,
        /// Where the witness keeps, per log, the checkpoint it cosigned last
        /// (created if missing; keep it with the key).
        #[arg(long)]
        state: PathBuf,
    },
    /// Print the witness's cosignature verifier key, for `[[witnesses]] vkey`.
    Vkey {
        #[command(flatten)]
        key: WitnessKey,
    },
}

#[derive(Debug, Args)]
pub struct WitnessKey {
    /// The witness's name, e.g. `witness.authority.example/ivan` (no spaces or '+').
    #[arg(long)]
    pub name: String,
    /// Its Ed25519 private key (PKCS#8 PEM), created 0600 on first use.
    #[arg(long)]
    pub key: PathBuf,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Probability (0 to 1) that a request to /v1/messages* answers 503.
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Delay each answer by a random 0..=N milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Answer 503 to everything for this long after start ("wholly down").
    #[arg(long, default_value_t = 0)]
    pub down_for_secs: u64,
    /// A message reads "processing" this long after receipt, then "processed".
    #[arg(long, default_value_t = 1000)]
    pub process_after_ms: u64,
    /// Answer the first message POST only N milliseconds after it arrived, as a hung
    /// request would be (tests of concurrent delivery).
    #[arg(long, default_value_t = 0)]
    pub stall_first_post_ms: u64,
    /// Answer 415 to gzip-compressed packages (`POST /v1/packages`), offering only
    /// uncompressed ones.
    #[arg(long)]
    pub refuse_gzip: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates chaining to this PEM CA (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
}

pub async fn sandbox_authority(listen: Option<SocketAddr>, args: &SandboxArgs) -> Result<ExitCode> {
    let addr = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8090)));
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| Error::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Listen { addr, source })?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::sandbox::SandboxTls {
            cert_pem: cert.clone(),
            key_pem: key.clone(),
            client_ca_pem: args.client_ca.clone(),
        }),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let options = crate::sandbox::SandboxOptions {
        fault_rate: args.fault_rate,
        latency_ms: args.latency_ms,
        down_for_secs: args.down_for_secs,
        process_after_ms: args.process_after_ms,
        stall_first_post_ms: args.stall_first_post_ms,
        refuse_gzip: args.refuse_gzip,
        tls,
    };
    crate::sandbox::check(&options)?;
    // A stable line for scripts and tests (the port may have been 0).
    outln!("sandbox-authority listening on {scheme}://{bound}");
    let _ = std::io::stdout().flush();
    crate::sandbox::run(listener, options, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn witness(listen: Option<SocketAddr>, cmd: &WitnessCommand) -> Result<ExitCode> {
    use retention::ledger::witness::{Cosigner, Witness};
    let cosigner = |k: &WitnessKey| -> Result<Cosigner> {
        let key = retention::keys::ed25519_key(&k.key)?;
        Cosigner::new(&k.name, key).map_err(Error::Invalid)
    };
    match cmd {
        WitnessCommand::Vkey { key } => {
            outln!("{}", cosigner(key)?.vkey());
            Ok(ExitCode::SUCCESS)
        }
        WitnessCommand::Serve { key, logs, state } => {
            let witness = Witness::open(cosigner(key)?, logs, state)?;
            let addr = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9100)));
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| Error::Listen { addr, source })?;
            // A stable line for scripts and tests (the port may have been 0).
            outln!(
                "witness {} listening on http://{bound}",
                witness.cosigner().name()
            );
            let _ = std::io::stdout().flush();
            crate::witness::run(listener, Arc::new(witness), shutdown_signal()).await;
            Ok(ExitCode::SUCCESS)
        }
    }
}
