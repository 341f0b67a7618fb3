//! The `ivan` command line: one binary, subcommands for the server, the schema, the
//! log and the operator's administration.
//!
//! Exit codes: 0 success; 1 the command could not do its work (the one-line error
//! says why); 2 bad usage; 3 a verification (`log verify`, `backup verify`, `evidence verify`) ran and found problems.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use retention::keys::Keys;
use retention::ledger::verify::{self, Progress};
use retention::ledger::{Entry, LedgerTask};
use retention::{Actor, Db, Ledger, MigrationPolicy, Originals, SystemClock};

mod backup;
mod evidence;
mod holds;
mod officers;

use crate::config::{Config, Overrides};
use crate::intake::material;
use crate::startup::{open_db, prepare_data_dir, shutdown_signal};
use crate::{Error, Result, employers, serve};

#[derive(Debug, Parser)]
#[command(
    name = "ivan",
    version,
    about = "ivan — value-added network intermediary for social-insurance e-filings"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML config file [env: IVAN_CONFIG]
    #[arg(long, global = true, env = "IVAN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:8080 [env: IVAN_LISTEN]
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory (SQLite file, originals, keys) [env: IVAN_DATA_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://… [env: IVAN_DATABASE_URL]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Who you are, as the log records your actions (`operator:NAME`). Required in
    /// production; in development the login name stands in.
    #[arg(long, global = true, env = "IVAN_OPERATOR", value_name = "NAME")]
    pub operator: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the intermediary (applies pending migrations first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Transaction log tools.
    #[command(subcommand)]
    Log(LogCommand),
    /// Evidence bundles: export (logged, with a legal basis) and verify offline.
    #[command(subcommand)]
    Evidence(evidence::EvidenceCommand),
    /// Retention: run the sweep now.
    #[command(subcommand)]
    Retention(holds::RetentionCommand),
    /// Operator administration.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Backups of the database, originals and keys (docs/BACKUP.md).
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Restore a backup snapshot into an empty target (--database-url, --data-dir).
    Restore(backup::RestoreArgs),
    /// Tools for trying `ivan` locally: a test PKI and a signer. Not for production keys.
    #[command(subcommand)]
    Dev(DevCommand),
    /// Run the sandbox authority: the authority protocol (docs/authority-protocol.md)
    /// with an in-memory store and injectable faults, for development and tests.
    /// Listens on --listen (default 127.0.0.1:8090).
    SandboxAuthority(SandboxArgs),
    /// A witness of `ivan` logs (C2SP tlog-witness): cosigns a log's checkpoints only
    /// when they extend the one it cosigned last. Reads no ivan configuration.
    #[command(subcommand)]
    Witness(WitnessCommand),
}

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

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Write a test CA, employer certificates (valid, revoked, expired, from another CA) and a CRL into DIR.
    Keys {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Write TLS test material for the authority link into DIR: a CA, a server
    /// certificate for localhost/127.0.0.1, a client certificate, and a second CA's
    /// server and client certificates (for "wrong certificate" tests).
    Tls { dir: PathBuf },
    /// Sign IN.xml with an enveloped XML-DSig (the profile `ivan` accepts); the signed document goes to stdout.
    Sign {
        /// Private key, PKCS#8 PEM (EC P-256 or RSA).
        #[arg(long)]
        key: PathBuf,
        /// The certificate of that key, PEM or DER (embedded in KeyInfo).
        #[arg(long)]
        cert: PathBuf,
        input: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the configuration; print it with secrets masked.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Recompute the whole chain, check every checkpoint signature and every original.
    /// The check is itself logged afterwards (`record.read`, who ran it and the
    /// outcome).
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the newest log entries. The read is itself logged first (`record.read`,
    /// with who ran it and on what grounds).
    Tail {
        /// How many entries.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
        /// Keep printing new entries as they are appended (until Ctrl-C).
        #[arg(short, long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// The grounds for reading (the entries name people by their ids); required
        /// in production.
        #[arg(long, value_name = "TEXT")]
        legal_basis: Option<String>,
    },
    /// Print the checkpoint key as a C2SP signed-note verifier key under the log's
    /// origin: what witnesses and monitors are configured with.
    Vkey,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Employers (filers).
    #[command(subcommand)]
    Employer(EmployerCommand),
    /// Employers' API tokens (for their payroll software).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Trusted certification authorities.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Certificate revocation lists.
    #[command(subcommand)]
    Crl(CrlCommand),
    /// Employers' signing certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// The forwarding outbox (filings still to be delivered or answered).
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Portal users (an employer's clerks and admins).
    #[command(subcommand)]
    User(UserCommand),
    /// Compliance officers and their personal API tokens.
    #[command(subcommand)]
    Officer(officers::OfficerCommand),
    /// Legal holds: keep filings past their retention period.
    #[command(subcommand)]
    Hold(holds::HoldCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Invite a user: mails a single-use enrolment link (valid `portal.invitation_valid_secs`)
    /// through the mail outbox. Inviting an active user again sends a fresh link.
    Invite {
        #[arg(long)]
        employer: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        role: crate::accounts::Role,
        #[arg(long)]
        json: bool,
    },
    /// List users (of one employer, or all).
    List {
        #[arg(long)]
        employer: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a user: no more sign-ins; their sessions end now.
    Revoke {
        #[arg(long)]
        user: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Rows due first, with attempts, lease holder and the last error.
    List {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Trust a CA certificate (PEM or DER) for employers' signing certificates.
    Add {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CrlCommand {
    /// Add a CRL (PEM or DER) issued by a trusted CA; the newest one per CA is used.
    Add {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Register a signing certificate (PEM or DER) for an employer.
    Add {
        #[arg(long)]
        employer: String,
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List registered signing certificates.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EmployerCommand {
    /// Onboard an employer; prints its id and its API token (shown only this once).
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        registration_number: String,
        #[arg(long)]
        json: bool,
    },
    /// List employers.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set the address that gets the employer's mail (receipts, answers, overdue
    /// forwarding); logged.
    SetEmail {
        #[arg(long)]
        employer: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create another API token for an employer; prints it (shown only this once).
    /// Logged as `api-token.create`.
    Create {
        #[arg(long)]
        employer: String,
        /// What the token is for (1 to 100 characters), e.g. the payroll system.
        #[arg(long)]
        label: String,
        /// Accept the token only from this address or CIDR block (repeat for more,
        /// up to 32; e.g. 192.0.2.7, 10.0.0.0/8, 2001:db8::/32). Without it: any
        /// address.
        #[arg(long = "allow", value_name = "CIDR")]
        allow: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List an employer's API tokens, newest first (revoked ones too; never secrets).
    List {
        #[arg(long)]
        employer: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API token (by its id, the part after `ivan_`): it stops working at
    /// once. Logged as `api-token.revoke`.
    Revoke {
        #[arg(long)]
        employer: String,
        /// The token id (16 hex digits).
        #[arg(long = "token", value_name = "TOKEN_ID")]
        token: String,
        #[arg(long)]
        json: bool,
    },
}

/// Parses the command line, runs the command, and turns the outcome into an exit code
/// with a one-line error on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli));
    // Work still running on blocking threads (a document analysis whose request has
    // gone) must not hold the process past its shutdown grace period.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::SandboxAuthority(args) = &cli.command {
        // A peer of ivan, not ivan: it reads no ivan configuration.
        crate::telemetry::init_logging(crate::config::LogFormat::Text, "info");
        return sandbox_authority(cli.global.listen, args).await;
    }
    if let Command::Witness(cmd) = &cli.command {
        // Another party's service, not ivan: it reads no ivan configuration.
        crate::telemetry::init_logging(crate::config::LogFormat::Text, "info");
        return witness(cli.global.listen, cmd).await;
    }
    let overrides = Overrides {
        listen: cli.global.listen,
        data_dir: cli.global.data_dir.clone(),
        database_url: cli.global.database_url.clone(),
        operator: cli.global.operator.clone(),
    };
    let config = Config::load(cli.global.config.as_deref(), &overrides)?;
    let quiet = !matches!(cli.command, Command::Serve);
    crate::telemetry::init_logging(
        config.log_format,
        if quiet { "warn" } else { "info,sqlx=warn" },
    );
    match cli.command {
        Command::Serve => serve::serve(config).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate => {
            prepare_data_dir(&config.data_dir)?;
            let db = open_db(&config, MigrationPolicy::Apply).await?;
            println!(
                "database migrated: {} ({})",
                retention::db::redact_url(&config.database_url()),
                db.backend()
            );
            db.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check) => {
            print!("{}", config.to_redacted_toml());
            eprintln!("config OK");
            Ok(ExitCode::SUCCESS)
        }
        Command::Log(LogCommand::Verify { json }) => log_verify(&config, json).await,
        Command::Log(LogCommand::Tail {
            lines,
            follow,
            json,
            legal_basis,
        }) => log_tail(&config, lines, follow, json, legal_basis.as_deref()).await,
        Command::Log(LogCommand::Vkey) => {
            let keys = Keys::load(&config.keys_dir())?;
            println!("{}", keys.checkpoint_vkey(&config.ledger.origin(&keys)));
            Ok(ExitCode::SUCCESS)
        }
        Command::Evidence(cmd) => evidence::run(&config, cmd).await,
        Command::Retention(cmd) => holds::retention(&config, cmd).await,
        Command::Admin(AdminCommand::Hold(cmd)) => holds::hold(&config, cmd).await,
        Command::Admin(AdminCommand::Employer(cmd)) => employer(&config, cmd).await,
        Command::Admin(AdminCommand::Token(cmd)) => token(&config, cmd).await,
        Command::Admin(AdminCommand::User(cmd)) => user(&config, cmd).await,
        Command::Admin(AdminCommand::Officer(cmd)) => officers::run(&config, cmd).await,
        Command::Admin(AdminCommand::Ca(CaCommand::Add { file, json })) => {
            trust_add(&config, TrustKind::Ca, &file, json).await
        }
        Command::Admin(AdminCommand::Crl(CrlCommand::Add { file, json })) => {
            trust_add(&config, TrustKind::Crl, &file, json).await
        }
        Command::Admin(AdminCommand::Cert(CertCommand::Add {
            employer,
            file,
            json,
        })) => trust_add(&config, TrustKind::Cert(employer), &file, json).await,
        Command::Admin(AdminCommand::Cert(CertCommand::List { json })) => {
            cert_list(&config, json).await
        }
        Command::Admin(AdminCommand::Outbox(OutboxCommand::List { limit, json })) => {
            outbox_list(&config, limit, json).await
        }
        Command::Backup(cmd) => backup::run_backup(&config, cmd).await,
        Command::Restore(args) => backup::run_restore(&config, args).await,
        Command::Dev(cmd) => dev(cmd),
        Command::SandboxAuthority(_) | Command::Witness(_) => {
            Err(Error::Invalid("unreachable".into()))
        }
    }
}

async fn sandbox_authority(listen: Option<SocketAddr>, args: &SandboxArgs) -> Result<ExitCode> {
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
        tls,
    };
    crate::sandbox::check(&options)?;
    // A stable line for scripts and tests (the port may have been 0).
    println!("sandbox-authority listening on {scheme}://{bound}");
    let _ = std::io::stdout().flush();
    crate::sandbox::run(listener, options, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn witness(listen: Option<SocketAddr>, cmd: &WitnessCommand) -> Result<ExitCode> {
    use retention::ledger::witness::{Cosigner, Witness};
    let cosigner = |k: &WitnessKey| -> Result<Cosigner> {
        let key = retention::keys::ed25519_key(&k.key)?;
        Cosigner::new(&k.name, key).map_err(Error::Invalid)
    };
    match cmd {
        WitnessCommand::Vkey { key } => {
            println!("{}", cosigner(key)?.vkey());
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
            println!(
                "witness {} listening on http://{bound}",
                witness.cosigner().name()
            );
            let _ = std::io::stdout().flush();
            crate::witness::run(listener, Arc::new(witness), shutdown_signal()).await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn outbox_list(config: &Config, limit: i64, json: bool) -> Result<ExitCode> {
    let rows = read_db(config, async |db| {
        crate::submissions::outbox::list(db, limit.clamp(1, 10_000)).await
    })
    .await?;
    if json {
        println!("{}", to_json(&rows));
    } else {
        println!(
            "{:<36}  {:<11}  {:<7}  {:<27}  {:>8}  LAST ERROR",
            "MESSAGE ID", "DOCUMENT", "PHASE", "DUE", "ATTEMPTS"
        );
        for r in rows {
            println!(
                "{:<36}  {:<11}  {:<7}  {:<27}  {:>8}  {}{}",
                r.submission_id,
                r.document_number,
                r.phase,
                retention::ledger::format_time(&r.due_at),
                r.attempts,
                if r.overdue_at.is_some() {
                    "[OVERDUE] "
                } else {
                    ""
                },
                r.last_error.as_deref().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `query` on a connection that requires a current schema, then closes it,
/// whether the query succeeded or not.
async fn read_db<T>(config: &Config, query: impl AsyncFnOnce(&Db) -> Result<T>) -> Result<T> {
    let db = open_db(config, MigrationPolicy::RequireCurrent).await?;
    let result = query(&db).await;
    db.close().await;
    result
}

/// Everything a command that appends to the log needs.
struct Record {
    db: Db,
    ledger: Ledger,
    task: LedgerTask,
}

impl Record {
    async fn open(config: &Config) -> Result<Self> {
        prepare_data_dir(&config.data_dir)?;
        let db = open_db(config, MigrationPolicy::RequireCurrent).await?;
        let originals = Originals::open(&config.originals, &config.data_dir)?;
        let keys = Arc::new(Keys::load_or_generate(&config.keys_dir())?);
        retention::ledger::check_origin(&db, &config.ledger.origin(&keys)).await?;
        let (ledger, task) = Ledger::start(
            db.clone(),
            originals,
            keys,
            Arc::new(SystemClock),
            config.ledger.clone(),
        );
        Ok(Self { db, ledger, task })
    }

    async fn close(self) {
        self.task.shutdown().await;
        self.db.close().await;
    }

    /// Runs `work` with the record open, then closes it (queued appends written),
    /// whether the work succeeded or not; the twin of [`read_db`].
    async fn with<T>(config: &Config, work: impl AsyncFnOnce(&Record) -> Result<T>) -> Result<T> {
        let record = Self::open(config).await?;
        let result = work(&record).await;
        record.close().await;
        result
    }
}

/// The portal origin of the enrolment link an invitation mails
/// ([`crate::portal::link_origin`]): configured, or recorded by the last `ivan serve`;
/// when it is only a guess from this command's own listen address, says so on stderr.
async fn invitation_origin(config: &Config, db: &Db) -> Result<String> {
    use crate::portal::{OriginSource, link_origin};
    let (origin, source) = link_origin(&config.portal, config.listen.port(), db).await?;
    let origin = origin.as_str().trim_end_matches('/').to_owned();
    if source == OriginSource::Guessed {
        eprintln!(
            "warning: the portal's public origin is not known: portal.public_url (env \
             IVAN_PORTAL__PUBLIC_URL) is not set and no `ivan serve` has recorded the origin \
             it serves under in this database; the enrolment link uses {origin}, which may be \
             wrong. Set portal.public_url to the origin people reach the portal at."
        );
    }
    Ok(origin)
}

/// Logs, before the record is shown, that the operator reads it with `command`
/// (`record.read` on subject `log`, payload `{command, legal_basis, …details}`).
/// Production needs the grounds where the output names people (`needs_basis`).
/// Answers the entry's position.
async fn record_read(
    config: &Config,
    command: &str,
    legal_basis: Option<&str>,
    needs_basis: bool,
    details: serde_json::Value,
) -> Result<i64> {
    let actor = operator(config)?;
    let basis = legal_basis.map(str::trim).filter(|b| !b.is_empty());
    if needs_basis
        && basis.is_none()
        && config.environment == crate::config::Environment::Production
    {
        return Err(Error::Invalid(format!(
            "production: say on what grounds you read the log with --legal-basis TEXT ({command} shows who did what)"
        )));
    }
    let mut payload = serde_json::json!({ "command": command, "legal_basis": basis });
    if let (Some(p), serde_json::Value::Object(more)) = (payload.as_object_mut(), details) {
        p.extend(more);
    }
    let entry = retention::NewEntry {
        actor,
        action: "record.read".into(),
        subject: "log".into(),
        payload: Some(retention::Payload {
            content: bytes::Bytes::from(payload.to_string()).into(),
            media_type: "application/json".into(),
        }),
    };
    Record::with(config, async |r| Ok(r.ledger.append(entry).await?.seq)).await
}

/// The operator at this terminal, as the log names them: `--operator` /
/// `IVAN_OPERATOR`. Production refuses to act for someone unnamed; in development
/// the login name stands in (it names an account, not always a person).
fn operator(config: &Config) -> Result<Actor> {
    match &config.operator {
        Some(name) => Ok(Actor::Operator(name.clone())),
        None if config.environment == crate::config::Environment::Production => Err(Error::Config(
            "production: say who you are with --operator NAME (or IVAN_OPERATOR); \
                 the log records every operator action by name"
                .into(),
        )),
        None => Ok(Actor::Operator(
            std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "unknown".into()),
        )),
    }
}

async fn employer(config: &Config, cmd: EmployerCommand) -> Result<ExitCode> {
    match cmd {
        EmployerCommand::Add {
            name,
            registration_number,
            json,
        } => {
            let created = Record::with(config, async |record: &Record| {
                employers::add(
                    &record.ledger,
                    &SystemClock,
                    operator(config)?,
                    &name,
                    &registration_number,
                )
                .await
            })
            .await?;
            if json {
                println!("{}", to_json(&created));
            } else {
                println!("employer id:   {}", created.employer.id);
                println!("name:          {}", created.employer.name);
                println!("registration:  {}", created.employer.registration_number);
                println!("api token:     {}", created.api_token);
                println!("log entry:     {}", created.log_seq);
                eprintln!("Store the API token now: it is not shown again.");
            }
        }
        EmployerCommand::SetEmail {
            employer,
            email,
            json,
        } => {
            let log_seq = Record::with(config, async |record: &Record| {
                employers::set_email(&record.ledger, operator(config)?, &employer, &email).await
            })
            .await?;
            if json {
                println!(
                    "{}",
                    to_json(
                        &serde_json::json!({"id": employer, "notify_email": email.trim(), "log_seq": log_seq})
                    )
                );
            } else {
                println!("mail for employer {employer} now goes to {}", email.trim());
            }
        }
        EmployerCommand::List { json } => {
            let list = read_db(config, async |db| employers::list(db).await).await?;
            if json {
                println!("{}", to_json(&list));
            } else {
                println!(
                    "{:<36}  {:<16}  {:<27}  NAME",
                    "ID", "REGISTRATION", "CREATED"
                );
                for e in list {
                    println!(
                        "{:<36}  {:<16}  {:<27}  {}",
                        e.id,
                        e.registration_number,
                        retention::ledger::format_time(&e.created_at),
                        e.name
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn token(config: &Config, cmd: TokenCommand) -> Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            employer,
            label,
            allow,
            json,
        } => {
            let created = Record::with(config, async |record: &Record| {
                employers::create_token(
                    &record.ledger,
                    &SystemClock,
                    operator(config)?,
                    &employer,
                    &label,
                    &allow,
                )
                .await
            })
            .await?;
            if json {
                println!("{}", to_json(&created));
            } else {
                println!("token id:      {}", created.id);
                println!("employer id:   {}", created.employer_id);
                println!("label:         {}", created.label);
                println!("allowed from:  {}", allowed_from(&created.allowed_ips));
                println!("api token:     {}", created.api_token);
                println!("log entry:     {}", created.log_seq);
                eprintln!("Store the API token now: it is not shown again.");
            }
        }
        TokenCommand::List { employer, json } => {
            let list = read_db(config, async |db| {
                employers::list_tokens(db, &employer).await
            })
            .await?;
            if json {
                println!("{}", to_json(&list));
            } else {
                println!(
                    "{:<16}  {:<27}  {:<27}  {:<24}  {:<24}  LABEL",
                    "ID", "CREATED", "REVOKED", "CREATED BY", "ALLOWED FROM"
                );
                for t in list {
                    println!(
                        "{:<16}  {:<27}  {:<27}  {:<24}  {:<24}  {}",
                        t.id,
                        retention::ledger::format_time(&t.created_at),
                        t.revoked_at
                            .as_ref()
                            .map_or_else(|| "-".to_owned(), retention::ledger::format_time),
                        t.created_by.as_deref().unwrap_or("-"),
                        allowed_from(&t.allowed_ips),
                        t.label.as_deref().unwrap_or("")
                    );
                }
            }
        }
        TokenCommand::Revoke {
            employer,
            token,
            json,
        } => {
            let log_seq = Record::with(config, async |record: &Record| {
                employers::revoke_token(&record.ledger, operator(config)?, &employer, &token).await
            })
            .await?;
            if json {
                println!(
                    "{}",
                    to_json(&serde_json::json!({
                        "id": token, "employer_id": employer, "revoked": true, "log_seq": log_seq
                    }))
                );
            } else {
                println!("API token {token} of employer {employer} revoked (log entry {log_seq})");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A token's allow-list for people: the blocks, or "any address".
fn allowed_from(blocks: &[String]) -> String {
    if blocks.is_empty() {
        "any address".to_owned()
    } else {
        blocks.join(",")
    }
}

async fn user(config: &Config, cmd: UserCommand) -> Result<ExitCode> {
    use crate::accounts;
    match cmd {
        UserCommand::Invite {
            employer,
            email,
            role,
            json,
        } => {
            let valid = config.portal.invitation_valid();
            let (invited, origin) = Record::with(config, async |record: &Record| {
                let origin = invitation_origin(config, &record.db).await?;
                let invited = accounts::invite(
                    &record.ledger,
                    &record.db,
                    &SystemClock,
                    operator(config)?,
                    &origin,
                    &accounts::Membership::employer(&employer, role),
                    &email,
                    valid,
                )
                .await?;
                Ok((invited, origin))
            })
            .await?;
            if json {
                println!("{}", to_json(&invited));
            } else {
                println!("user id:      {}", invited.user.id);
                println!("email:        {}", invited.user.email);
                println!("role:         {}", invited.user.role);
                println!(
                    "link valid:   until {}",
                    retention::ledger::format_time(&invited.expires_at)
                );
                println!("log entry:    {}", invited.log_seq);
                eprintln!(
                    "The enrolment link is on its way through the mail outbox (portal {}).",
                    origin
                );
            }
        }
        UserCommand::List { employer, json } => {
            let users = read_db(config, async |db| {
                accounts::list(db, employer.as_deref()).await
            })
            .await?;
            if json {
                println!("{}", to_json(&users));
            } else {
                println!(
                    "{:<36}  {:<36}  {:<7}  {:<8}  EMAIL",
                    "ID", "EMPLOYER", "ROLE", "STATE"
                );
                for u in users {
                    let state = if u.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<36}  {:<36}  {:<7}  {:<8}  {}",
                        u.id,
                        u.employer_id.as_deref().unwrap_or("-"),
                        u.role,
                        state,
                        u.email
                    );
                }
            }
        }
        UserCommand::Revoke { user, json } => {
            let done = Record::with(config, async |record: &Record| {
                accounts::revoke(&record.ledger, operator(config)?, &user, chrono::Utc::now()).await
            })
            .await;
            let log_seq = done.map_err(|e| match e {
                Error::Record(retention::Error::Conflict(m)) => Error::NotFound(m),
                e => e,
            })?;
            if json {
                println!(
                    "{}",
                    to_json(&serde_json::json!({"id": user, "revoked": true, "log_seq": log_seq}))
                );
            } else {
                println!("user {user} revoked; their sessions have ended");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

enum TrustKind {
    Ca,
    Crl,
    Cert(String),
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        context: format!("cannot read {}", path.display()),
        source,
    })
}

async fn trust_add(config: &Config, kind: TrustKind, file: &Path, json: bool) -> Result<ExitCode> {
    let bytes = read_file(file)?;
    let added = Record::with(config, async |record: &Record| match &kind {
        TrustKind::Ca => {
            material::add_anchor(&record.ledger, &SystemClock, operator(config)?, &bytes).await
        }
        TrustKind::Crl => {
            material::add_crl(
                &record.ledger,
                &record.db,
                &SystemClock,
                operator(config)?,
                &bytes,
            )
            .await
        }
        TrustKind::Cert(employer) => {
            material::add_employer_cert(
                &record.ledger,
                &record.db,
                &SystemClock,
                operator(config)?,
                employer,
                &bytes,
            )
            .await
        }
    })
    .await?;
    if json {
        println!("{}", to_json(&added));
    } else {
        println!("added:      {}", added.description);
        println!("sha256:     {}", added.sha256);
        println!("log entry:  {}", added.log_seq);
    }
    Ok(ExitCode::SUCCESS)
}

async fn cert_list(config: &Config, json: bool) -> Result<ExitCode> {
    let list = read_db(config, async |db| material::list_employer_certs(db).await).await?;
    if json {
        println!("{}", to_json(&list));
    } else {
        println!(
            "{:<36}  {:<64}  {:<27}  SUBJECT",
            "EMPLOYER", "FINGERPRINT (SHA-256)", "NOT AFTER"
        );
        for c in list {
            println!(
                "{:<36}  {:<64}  {:<27}  {}",
                c.employer_id,
                c.fingerprint,
                retention::ledger::format_time(&c.not_after),
                c.subject
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn dev(cmd: DevCommand) -> Result<ExitCode> {
    match cmd {
        DevCommand::Keys { dir, json } => {
            let pki = crate::dev::make_keys(&dir, chrono::Utc::now())
                .map_err(|e| Error::Invalid(e.to_string()))?;
            if json {
                println!("{}", to_json(&pki));
            } else {
                println!("test PKI written to {}:", dir.display());
                println!("{pki:#?}");
                eprintln!("These keys are for testing only.");
            }
        }
        DevCommand::Tls { dir } => {
            for path in crate::sandbox::write_dev_tls(&dir)? {
                println!("{}", path.display());
            }
            eprintln!("These certificates are for testing only.");
        }
        DevCommand::Sign { key, cert, input } => {
            let key = read_file(&key)?;
            let cert = crate::intake::trust::parse_certificate_pem_or_der(&read_file(&cert)?)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let xml = String::from_utf8(read_file(&input)?)
                .map_err(|_| Error::Invalid(format!("{} is not UTF-8", input.display())))?;
            let signed = crate::intake::signature::sign_enveloped(&xml, &key, &cert.der)
                .map_err(Error::Invalid)?;
            print!("{signed}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// A terminal progress bar, hidden when stderr is not a terminal.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn phase(&self, name: &str, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_message(name.to_owned());
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

async fn log_verify(config: &Config, json: bool) -> Result<ExitCode> {
    // Who runs it, checked before the work; the run itself is logged after it, with
    // its outcome (appending first would change the log being checked, and to a
    // damaged log).
    operator(config)?;
    let db = open_db(config, MigrationPolicy::RequireCurrent).await?;
    let originals = Originals::open(&config.originals, &config.data_dir)?;
    let keys = Keys::load(&config.keys_dir())?;
    let bar = if std::io::stderr().is_terminal() && !json {
        let style = ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        ProgressBar::new(0).with_style(style)
    } else {
        ProgressBar::hidden()
    };
    let report = verify::verify(
        &db,
        &originals,
        &keys.checkpoint_verifier(),
        &Bar(bar.clone()),
    )
    .await;
    bar.finish_and_clear();
    db.close().await;
    let report = report?;
    let outcome = serde_json::json!({ "ok": report.ok(), "entries": report.entries });
    if let Err(e) = record_read(config, "log verify", None, false, outcome).await {
        eprintln!("warning: this verification could not be recorded in the log: {e}");
    }
    if json {
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        println!(
            "{}",
            to_json(&serde_json::json!({
                "ok": report.ok(),
                "entries": report.entries,
                "checkpoints": report.checkpoints,
                "originals": report.originals,
                "purged": report.purged,
                "problems": problems,
            }))
        );
    } else if report.ok() {
        println!(
            "log OK: {} entries chained, {} checkpoint signatures valid, {} originals intact, {} purged by the retention policy (hashes kept)",
            report.entries,
            report.checkpoints,
            report.originals - report.purged,
            report.purged
        );
    } else {
        println!(
            "log verification FAILED after {} entries, {} checkpoints, {} originals:",
            report.entries, report.checkpoints, report.originals
        );
        for p in &report.problems {
            println!("  {p}");
        }
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

async fn log_tail(
    config: &Config,
    lines: i64,
    follow: bool,
    json: bool,
    legal_basis: Option<&str>,
) -> Result<ExitCode> {
    if !(1..=10_000).contains(&lines) {
        return Err(Error::Invalid("--lines must be 1 to 10000".into()));
    }
    let details = serde_json::json!({ "lines": lines, "follow": follow });
    let read = record_read(config, "log tail", legal_basis, true, details).await?;
    let db = open_db(config, MigrationPolicy::RequireCurrent).await?;
    let print = |e: &Entry| {
        if json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            println!(
                "{:>8}  {}  {:<24}  {:<20}  {}{}",
                e.seq,
                retention::ledger::format_time(&e.recorded_at),
                e.actor,
                e.action,
                e.subject,
                e.payload_sha256
                    .as_deref()
                    .map(|p| format!("  payload:{}", &p[..p.len().min(12)]))
                    .unwrap_or_default()
            );
        }
    };
    // What came before this read's own entry.
    let mut shown = retention::ledger::last_entries(&db, lines + 1).await?;
    shown.retain(|e| e.seq < read);
    let skip = shown
        .len()
        .saturating_sub(usize::try_from(lines).unwrap_or(0));
    for e in &shown[skip..] {
        print(e);
    }
    let mut last = read;
    if follow {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => {
                    for e in retention::ledger::entries_after(&db, last, 1000).await? {
                        print(&e);
                        last = e.seq;
                    }
                    let _ = std::io::stdout().flush();
                }
            }
        }
    }
    db.close().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_never_acts_for_an_unnamed_operator() {
        let mut config = Config {
            environment: crate::config::Environment::Production,
            ..Config::default()
        };
        let e = operator(&config).unwrap_err().to_string();
        assert!(e.contains("--operator NAME"), "{e}");
        config.operator = Some("jana.novakova".into());
        assert_eq!(
            operator(&config).unwrap().to_string(),
            "operator:jana.novakova"
        );
        // Development: the login name stands in.
        let config = Config::default();
        assert!(matches!(operator(&config).unwrap(), Actor::Operator(_)));
    }
}
