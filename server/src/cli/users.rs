//! `ivan admin user …`: portal users (an employer's clerks and admins).

use std::process::ExitCode;

use clap::Subcommand;
use retention::SystemClock;

use super::{OpenLedger, invitation_origin, operator, read_db, to_json};
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
            let valid = config.portal.invitation_valid();
            let (invited, origin) = OpenLedger::with(config, async |record: &OpenLedger| {
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
            let done = OpenLedger::with(config, async |record: &OpenLedger| {
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
