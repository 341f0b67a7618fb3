//! `ivan admin user …`: portal users (an employer's clerks and admins).

use std::process::ExitCode;

use clap::Subcommand;

use super::{OpenLedger, active_or_revoked, invite, operator, read_db, show};
use crate::config::Config;
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Invite a user: mails a single-use enrolment link (valid `portal.invitation_valid_secs`)
    /// through the mail outbox. Inviting an active user again sends a fresh link.
    Invite {
        /// The employer: its id or its registration number.
        #[arg(long)]
        employer: String,
        /// The user's e-mail address (the enrolment link goes there).
        #[arg(long)]
        email: String,
        /// What the user may do in the portal.
        #[arg(long, value_enum)]
        role: crate::accounts::Role,
        /// The language of the invitation and of the user's portal: en, sk or cs
        /// (default: the one the user chose before, else English).
        #[arg(long, value_name = "LANG")]
        language: Option<String>,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List users (of one employer, or all).
    List {
        /// Only this employer's users (its id or registration number).
        #[arg(long)]
        employer: Option<String>,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a user: no more sign-ins; their sessions end now.
    Revoke {
        /// The user's id (as `ivan admin user list` shows it).
        #[arg(long)]
        user: String,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn user(config: &Config, cmd: UserCommand) -> Result<ExitCode> {
    use crate::accounts;
    match cmd {
        UserCommand::Invite {
            employer,
            email,
            role,
            language,
            json,
        } => {
            let employer = super::employer_id(config, &employer).await?;
            let membership = accounts::Membership::employer(&employer, role);
            let about = |u: &accounts::User| ("role", u.role.clone());
            invite(config, json, membership, &email, language.as_deref(), about).await?;
        }
        UserCommand::List { employer, json } => {
            let employer = super::employer_id_opt(config, employer).await?;
            let users = read_db(config, async |db| {
                accounts::list(db, employer.as_deref()).await
            })
            .await?;
            show(json, &users, |users| {
                outln!(
                    "{:<36}  {:<36}  {:<7}  {:<8}  EMAIL",
                    "ID",
                    "EMPLOYER",
                    "ROLE",
                    "STATE"
                );
                for u in users {
                    outln!(
                        "{:<36}  {:<36}  {:<7}  {:<8}  {}",
                        u.id,
                        u.employer_id.as_deref().unwrap_or("-"),
                        u.role,
                        active_or_revoked(&u.revoked_at),
                        u.email
                    );
                }
            });
        }
        UserCommand::Revoke { user, json } => {
            let done = OpenLedger::with(config, async |record: &OpenLedger| {
                accounts::revoke(&record.ledger, operator(config)?, &user, chrono::Utc::now()).await
            })
            .await;
            let log_seq = done.map_err(|e| match e {
                Error::Record(retention::Error::Conflict(m)) => Error::NotFound(m),
                e => e,
            })?;
            let done = serde_json::json!({"id": user, "revoked": true, "log_seq": log_seq});
            show(json, &done, |_| {
                outln!("user {user} revoked; their sessions have ended");
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
