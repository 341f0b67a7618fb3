//! The command line's shape: the global flags and the top-level commands. Each
//! command's own flags live with its code, in the sibling modules.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::dev::DevCommand;
use super::employers::{EmployerCommand, TokenCommand};
use super::log::LogCommand;
use super::outbox::OutboxCommand;
use super::peers::{SandboxArgs, WitnessCommand};
use super::trust::{CaCommand, CertCommand, CrlCommand};
use super::users::UserCommand;
use super::{backup, evidence, holds, officers};

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

/// The heading the global flags are listed under in every command's help.
const GLOBAL: &str = "Global options (any command)";

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML config file.
    #[arg(long, global = true, env = "IVAN_CONFIG", value_name = "FILE", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:8080 (overrides `listen`; also IVAN_LISTEN).
    #[arg(long, global = true, value_name = "ADDR", help_heading = GLOBAL)]
    pub listen: Option<SocketAddr>,
    /// Data directory: SQLite database, originals, keys (overrides `data_dir`; also
    /// IVAN_DATA_DIR). Admin commands need the server's.
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    pub data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://… (overrides `database_url`; also
    /// IVAN_DATABASE_URL). Admin commands need the server's.
    #[arg(long, global = true, value_name = "URL", help_heading = GLOBAL)]
    pub database_url: Option<String>,
    /// Who you are, as the log records your actions (`operator:NAME`). Required in
    /// production; in development the login name stands in.
    #[arg(long, global = true, env = "IVAN_OPERATOR", value_name = "NAME", help_heading = GLOBAL)]
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
pub enum ConfigCommand {
    /// Load and validate the configuration; print it with secrets masked.
    Check,
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every flag and argument of every command explains itself; the global flags
    /// are listed under their own heading; clap's own `[env: …]` is not doubled.
    #[test]
    fn every_flag_has_help_and_global_flags_stand_apart() {
        let mut missing = Vec::new();
        let mut doubled = Vec::new();
        let mut stack = vec![(String::from("ivan"), Cli::command())];
        while let Some((path, cmd)) = stack.pop() {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                if help.trim().is_empty() {
                    missing.push(format!("{path} --{id}"));
                }
                if help.contains("[env:") {
                    doubled.push(format!("{path} --{id}"));
                }
                if arg.is_global_set() {
                    assert_eq!(arg.get_help_heading(), Some(GLOBAL), "{path} --{id}");
                }
            }
            for sub in cmd.get_subcommands() {
                stack.push((format!("{path} {}", sub.get_name()), sub.clone()));
            }
        }
        assert!(
            missing.is_empty(),
            "flags without help:\n{}",
            missing.join("\n")
        );
        assert!(
            doubled.is_empty(),
            "help repeating clap's [env: …]:\n{}",
            doubled.join("\n")
        );
        Cli::command().debug_assert();
    }
}
