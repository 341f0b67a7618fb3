//! The `ivan` command line: one binary, subcommands for the server, the schema, the
//! log and the operator's administration.
//!
//! Exit codes: 0 success; 1 the command could not do its work (the one-line error
//! says why); 2 bad usage; 3 a verification (`log verify`, `backup verify`, `evidence verify`) ran and found problems.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use clap::Parser;
use retention::keys::Keys;
use retention::ledger::LedgerTask;
use retention::{Actor, Db, Ledger, MigrationPolicy, Originals, SystemClock};

/// `println!` for the commands' output: see [`write_out`].
macro_rules! outln {
    () => {
        $crate::cli::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the commands' output: see [`write_out`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!($($arg)*))
    };
}

mod args;
mod backup;
mod dev;
mod employers;
mod evidence;
mod holds;
mod log;
mod officers;
mod outbox;
mod peers;
mod trust;
mod users;

pub use args::{AdminCommand, Cli, Command, ConfigCommand, GlobalArgs};
pub use dev::DevCommand;
pub use employers::{EmployerCommand, TokenCommand};
pub use log::LogCommand;
pub use outbox::OutboxCommand;
pub use peers::{SandboxArgs, WitnessCommand, WitnessKey};
pub use trust::{CaCommand, CertCommand, CrlCommand};
pub use users::UserCommand;

use crate::config::{Config, Overrides};
use crate::startup::{open_db, prepare_data_dir};
use crate::{Error, Result, serve};

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
        Ok(_) if STDOUT.load(Ordering::Relaxed) == STDOUT_FAILED => ExitCode::FAILURE,
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What became of the commands' output: written, its reader gone, or failed.
static STDOUT: AtomicU8 = AtomicU8::new(STDOUT_OPEN);
const STDOUT_OPEN: u8 = 0;
const STDOUT_READER_GONE: u8 = 1;
const STDOUT_FAILED: u8 = 2;

/// Writes a command's output to stdout. When the reader has closed the pipe
/// (`ivan admin hold add --json | head -1`) the rest of the output is dropped and
/// the command carries on to its end: the work a command does never stops half-way
/// because nobody reads what it prints, and no panic. Any other write failure (a
/// full disk under a redirect) is reported once on stderr and makes the command
/// exit 1 after its work.
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if STDOUT.load(Ordering::Relaxed) != STDOUT_OPEN {
        return;
    }
    // Line-buffered: a failed write surfaces at the line's end.
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT.store(STDOUT_READER_GONE, Ordering::Relaxed);
        } else {
            STDOUT.store(STDOUT_FAILED, Ordering::Relaxed);
            eprintln!("error: cannot write the output: {e}");
        }
    }
}

/// Whether stdout's reader has gone away (a following command stops then).
pub(crate) fn stdout_gone() -> bool {
    STDOUT.load(Ordering::Relaxed) != STDOUT_OPEN
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::SandboxAuthority(args) = &cli.command {
        // A peer of ivan, not ivan: it reads no ivan configuration.
        crate::telemetry::init_logging(crate::config::LogFormat::Text, "info");
        return peers::sandbox_authority(cli.global.listen, args).await;
    }
    if let Command::Witness(cmd) = &cli.command {
        // Another party's service, not ivan: it reads no ivan configuration.
        crate::telemetry::init_logging(crate::config::LogFormat::Text, "info");
        return peers::witness(cli.global.listen, cmd).await;
    }
    let overrides = Overrides {
        listen: cli.global.listen,
        data_dir: cli.global.data_dir.clone(),
        database_url: cli.global.database_url.clone(),
        operator: cli.global.operator.clone(),
    };
    let config = Config::load(cli.global.config.as_deref(), &overrides)?;
    // Times in mails and texts for people: the employers' zone.
    crate::i18n::set_time_zone(config.portal.tz());
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
            outln!(
                "database migrated: {} ({})",
                retention::db::redact_url(&config.database_url()),
                db.backend()
            );
            db.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check) => {
            out!("{}", config.to_redacted_toml());
            eprintln!("config OK");
            Ok(ExitCode::SUCCESS)
        }
        Command::Log(LogCommand::Verify { json }) => log::log_verify(&config, json).await,
        Command::Log(LogCommand::Tail {
            lines,
            follow,
            json,
            legal_basis,
        }) => log::log_tail(&config, lines, follow, json, legal_basis.as_deref()).await,
        Command::Log(LogCommand::Vkey) => {
            let keys = Keys::load(&config.keys_dir())?;
            outln!("{}", keys.checkpoint_vkey(&config.ledger.origin(&keys)));
            Ok(ExitCode::SUCCESS)
        }
        Command::Evidence(cmd) => evidence::run(&config, cmd).await,
        Command::Retention(cmd) => holds::retention(&config, cmd).await,
        Command::Admin(AdminCommand::Hold(cmd)) => holds::hold(&config, cmd).await,
        Command::Admin(AdminCommand::Employer(cmd)) => employers::employer(&config, cmd).await,
        Command::Admin(AdminCommand::Token(cmd)) => employers::token(&config, cmd).await,
        Command::Admin(AdminCommand::User(cmd)) => users::user(&config, cmd).await,
        Command::Admin(AdminCommand::Officer(cmd)) => officers::run(&config, cmd).await,
        Command::Admin(AdminCommand::Ca(CaCommand::Add { file, json })) => {
            trust::trust_add(&config, trust::TrustKind::Ca, &file, json).await
        }
        Command::Admin(AdminCommand::Ca(CaCommand::List { json })) => {
            trust::ca_list(&config, json).await
        }
        Command::Admin(AdminCommand::Ca(CaCommand::Remove {
            sha256,
            reason,
            json,
        })) => trust::ca_remove(&config, &sha256, &reason, json).await,
        Command::Admin(AdminCommand::Crl(CrlCommand::Add { file, json })) => {
            trust::trust_add(&config, trust::TrustKind::Crl, &file, json).await
        }
        Command::Admin(AdminCommand::Cert(CertCommand::Add {
            employer,
            file,
            json,
        })) => {
            let employer = employer_id(&config, &employer).await?;
            trust::trust_add(&config, trust::TrustKind::Cert(employer), &file, json).await
        }
        Command::Admin(AdminCommand::Cert(CertCommand::List { json })) => {
            trust::cert_list(&config, json).await
        }
        Command::Admin(AdminCommand::Cert(CertCommand::Remove {
            employer,
            fingerprint,
            reason,
            json,
        })) => {
            let employer = employer_id(&config, &employer).await?;
            trust::cert_remove(&config, &employer, &fingerprint, &reason, json).await
        }
        Command::Admin(AdminCommand::Outbox(OutboxCommand::List { limit, json })) => {
            outbox::outbox_list(&config, limit, json).await
        }
        Command::Backup(cmd) => backup::run_backup(&config, cmd).await,
        Command::Restore(args) => backup::run_restore(&config, args).await,
        Command::Dev(cmd) => dev::dev(cmd),
        Command::SandboxAuthority(_) | Command::Witness(_) => {
            Err(Error::Invalid("unreachable".into()))
        }
    }
}

/// Runs `query` on a connection that requires a current schema, then closes it,
/// whether the query succeeded or not.
async fn read_db<T>(config: &Config, query: impl AsyncFnOnce(&Db) -> Result<T>) -> Result<T> {
    let db = open_db(config, MigrationPolicy::RequireCurrent).await?;
    let result = query(&db).await;
    db.close().await;
    result
}

/// The language a `--language` names, or the error listing those there are.
fn language_arg(tag: &str) -> Result<crate::i18n::Lang> {
    tag.parse()
        .map_err(|e| Error::Invalid(format!("--language {e}")))
}

/// The id of the employer an operator named with `--employer`: its id or its
/// registration number. An unknown employer is an error (exit 1), not an empty list.
async fn employer_id(config: &Config, named: &str) -> Result<String> {
    read_db(config, async |db| {
        Ok(crate::employers::find(db, named).await?.id)
    })
    .await
}

/// [`employer_id`] of an optional `--employer`.
async fn employer_id_opt(config: &Config, named: Option<String>) -> Result<Option<String>> {
    match named {
        Some(named) => Ok(Some(employer_id(config, &named).await?)),
        None => Ok(None),
    }
}

/// The ledger as a command opens it to append to the log: everything such a command
/// needs (the database, the ledger and its writer task), closed again when it is done.
struct OpenLedger {
    db: Db,
    ledger: Ledger,
    task: LedgerTask,
}

impl OpenLedger {
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

    /// Runs `work` with the ledger open, then closes it (queued appends written),
    /// whether the work succeeded or not; the twin of [`read_db`].
    async fn with<T>(
        config: &Config,
        work: impl AsyncFnOnce(&OpenLedger) -> Result<T>,
    ) -> Result<T> {
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
        payload: Some(retention::Payload::json(&payload)),
    };
    OpenLedger::with(config, async |r| Ok(r.ledger.append(entry).await?.seq)).await
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

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        context: format!("cannot read {}", path.display()),
        source,
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Shows what an admin command did: the JSON document with `--json`, else `human`'s
/// lines for people.
fn show<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce(&T)) {
    if json {
        outln!("{}", to_json(value));
    } else {
        human(value);
    }
}

/// Prints one thing as `label: value` lines with the values aligned.
fn print_fields(fields: &[(&str, &dyn std::fmt::Display)]) {
    let width = fields.iter().map(|(label, _)| label.len() + 1).max();
    let width = width.unwrap_or(0);
    for (label, value) in fields {
        outln!("{:<width$}  {value}", format!("{label}:"));
    }
}

/// A user's or token's state in the lists.
fn active_or_revoked<T>(revoked_at: &Option<T>) -> &'static str {
    if revoked_at.is_some() {
        "revoked"
    } else {
        "active"
    }
}

/// Invites `email` to the portal as `membership` says (mailing a link to the origin
/// the portal is known under) and shows the invitation; `about` is the line that
/// says who they will be (a clerk's role, an officer's organisation).
async fn invite(
    config: &Config,
    json: bool,
    membership: crate::accounts::Membership,
    email: &str,
    language: Option<&str>,
    about: impl FnOnce(&crate::accounts::User) -> (&'static str, String),
) -> Result<()> {
    let language = language.map(language_arg).transpose()?;
    let valid = config.portal.invitation_valid();
    let (invited, origin) = OpenLedger::with(config, async |record: &OpenLedger| {
        let origin = invitation_origin(config, &record.db).await?;
        let (ledger, db, actor) = (&record.ledger, &record.db, operator(config)?);
        let invited = crate::accounts::invite(
            ledger,
            db,
            &SystemClock,
            actor,
            &origin,
            &membership,
            email,
            valid,
            language,
        )
        .await?;
        Ok((invited, origin))
    })
    .await?;
    show(json, &invited, |invited| {
        let (label, value) = about(&invited.user);
        let expires = retention::ledger::format_time(&invited.expires_at);
        print_fields(&[
            ("id", &invited.user.id),
            ("email", &invited.user.email),
            (label, &value),
            ("link valid", &format!("until {expires}")),
            ("log entry", &invited.log_seq),
        ]);
        eprintln!("The enrolment link is on its way through the mail outbox (portal {origin}).");
    });
    Ok(())
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
