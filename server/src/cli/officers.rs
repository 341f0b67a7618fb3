//! `ivan admin officer …`: compliance officers and their personal API tokens.

use std::process::ExitCode;

use clap::Subcommand;
use retention::SystemClock;

use super::{OpenLedger, active_or_revoked, invite, operator, print_fields, read_db, show};
use crate::accounts;
use crate::compliance::officers;
use crate::config::Config;
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum OfficerCommand {
    /// Invite a compliance officer: mails a single-use enrolment link (passkey, as for
    /// employers' users). Logged as `user.invite` with role `officer`.
    Add {
        /// The officer's e-mail address (the enrolment link goes there).
        #[arg(long)]
        email: String,
        /// The officer's organisation (1 to 200 characters).
        #[arg(long)]
        organisation: String,
        /// The language of the invitation and of the officer's portal: en, sk or cs.
        #[arg(long, value_name = "LANG")]
        language: Option<String>,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List compliance officers (revoked ones too).
    List {
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an officer: no more sign-ins, sessions end, tokens stop working.
    Revoke {
        /// The officer's user id (as `ivan admin officer list` shows it).
        #[arg(long)]
        officer: String,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// An officer's personal API tokens (for their tools).
    #[command(subcommand)]
    Token(OfficerTokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum OfficerTokenCommand {
    /// Create a personal API token for an officer; prints it (shown only this once).
    /// Logged as `officer-token.create`.
    Create {
        /// The officer's user id (as `ivan admin officer list` shows it).
        #[arg(long)]
        officer: String,
        /// What the token is for (1 to 100 characters).
        #[arg(long)]
        label: String,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List officer tokens (of one officer, or all), newest first; never secrets.
    List {
        /// Only this officer's tokens (their user id).
        #[arg(long)]
        officer: Option<String>,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an officer token by id (the part after `ivan-officer_`). Logged as
    /// `officer-token.revoke`.
    Revoke {
        /// The token id (the part after `ivan-officer_`).
        #[arg(long = "token", value_name = "TOKEN_ID")]
        token: String,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, cmd: OfficerCommand) -> Result<ExitCode> {
    match cmd {
        OfficerCommand::Add {
            email,
            organisation,
            language,
            json,
        } => {
            let membership = crate::accounts::Membership::officer(&organisation)?;
            let about = |u: &crate::accounts::User| {
                let organisation = u.organisation.clone().unwrap_or_default();
                ("organisation", organisation)
            };
            invite(config, json, membership, &email, language.as_deref(), about).await?;
        }
        OfficerCommand::List { json } => {
            let list = read_db(config, async |db| officers::list(db).await).await?;
            show(json, &list, |list| {
                outln!(
                    "{:<36}  {:<8}  {:<32}  EMAIL",
                    "ID",
                    "STATE",
                    "ORGANISATION"
                );
                for u in list {
                    outln!(
                        "{:<36}  {:<8}  {:<32}  {}",
                        u.id,
                        active_or_revoked(&u.revoked_at),
                        u.organisation.as_deref().unwrap_or(""),
                        u.email
                    );
                }
            });
        }
        OfficerCommand::Revoke { officer, json } => {
            let log_seq = OpenLedger::with(config, async |record: &OpenLedger| {
                match accounts::user(&record.db, &officer).await? {
                    Some(u) if u.is_officer() => {}
                    _ => {
                        return Err(Error::NotFound(format!(
                            "no active compliance officer {officer}"
                        )));
                    }
                }
                accounts::revoke(
                    &record.ledger,
                    operator(config)?,
                    &officer,
                    chrono::Utc::now(),
                )
                .await
            })
            .await?;
            let done = serde_json::json!({ "revoked": officer, "log_seq": log_seq });
            show(json, &done, |_| {
                outln!("officer {officer} revoked (log entry {log_seq})");
            });
        }
        OfficerCommand::Token(OfficerTokenCommand::Create {
            officer,
            label,
            json,
        }) => {
            let created = OpenLedger::with(config, async |record: &OpenLedger| {
                officers::create_token(
                    &record.ledger,
                    &record.db,
                    &SystemClock,
                    operator(config)?,
                    &officer,
                    &label,
                )
                .await
            })
            .await?;
            show(json, &created, |created| {
                print_fields(&[
                    ("token id", &created.id),
                    ("officer", &created.officer),
                    ("label", &created.label),
                    ("log entry", &created.log_seq),
                    ("token", &created.token),
                ]);
                eprintln!("The token is shown only this once; only a hash of it is kept.");
            });
        }
        OfficerCommand::Token(OfficerTokenCommand::List { officer, json }) => {
            let list = read_db(config, async |db| {
                officers::list_tokens(db, officer.as_deref()).await
            })
            .await?;
            show(json, &list, |list| {
                outln!("{:<16}  {:<36}  {:<8}  LABEL", "ID", "OFFICER", "STATE");
                for t in list {
                    let state = active_or_revoked(&t.revoked_at);
                    outln!("{:<16}  {:<36}  {:<8}  {}", t.id, t.user_id, state, t.label);
                }
            });
        }
        OfficerCommand::Token(OfficerTokenCommand::Revoke { token, json }) => {
            let log_seq = OpenLedger::with(config, async |record: &OpenLedger| {
                officers::revoke_token(&record.ledger, &SystemClock, operator(config)?, &token)
                    .await
            })
            .await?;
            let done = serde_json::json!({ "revoked": token, "log_seq": log_seq });
            show(json, &done, |_| {
                outln!("officer token {token} revoked (log entry {log_seq})");
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
