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

pub async fn user(config: &Config, cmd: UserCommand) -> Result<ExitCode> {
    use crate::accounts;
    match cmd {
        UserCommand::Invite {
            employer,
            email,
            role,
            json,
        } => {
            let membership = accounts::Membership::employer(&employer, role);
            let about = |u: &accounts::User| ("role", u.role.clone());
            invite(config, json, membership, &email, about).await?;
        }
        UserCommand::List { employer, json } => {
            let users = read_db(config, async |db| {
                accounts::list(db, employer.as_deref()).await
            })
            .await?;
            show(json, &users, |users| {
                println!(
                    "{:<36}  {:<36}  {:<7}  {:<8}  EMAIL",
                    "ID", "EMPLOYER", "ROLE", "STATE"
                );
                for u in users {
                    println!(
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
                println!("user {user} revoked; their sessions have ended");
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
