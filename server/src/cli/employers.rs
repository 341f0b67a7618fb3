//! `ivan admin employer …` and `ivan admin token …`: employers and their API tokens.

use std::process::ExitCode;

use clap::Subcommand;
use retention::SystemClock;

use super::{OpenLedger, operator, print_fields, read_db, show};
use crate::config::Config;
use crate::{Result, employers};

#[derive(Debug, Subcommand)]
pub enum EmployerCommand {
    /// Onboard an employer; prints its id and its API token (shown only this once).
    Add {
        /// The employer's name as registered.
        #[arg(long)]
        name: String,
        /// The employer's registration number at the authority (letters, digits, '-', '/').
        #[arg(long)]
        registration_number: String,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List employers.
    List {
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set the address that gets the employer's mail (receipts, answers, overdue
    /// forwarding); logged.
    SetEmail {
        /// The employer: its id or its registration number.
        #[arg(long)]
        employer: String,
        /// The address that gets the mail.
        #[arg(long)]
        email: String,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set the language of the employer's mail (receipts, answers, warnings): en, sk
    /// or cs; logged.
    SetLanguage {
        /// The employer: its id or its registration number.
        #[arg(long)]
        employer: String,
        /// en, sk or cs.
        #[arg(long, value_name = "LANG")]
        language: String,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create another API token for an employer; prints it (shown only this once).
    /// Logged as `api-token.create`.
    Create {
        /// The employer: its id or its registration number.
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
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List an employer's API tokens, newest first (revoked ones too; never secrets).
    List {
        /// The employer: its id or its registration number.
        #[arg(long)]
        employer: String,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API token (by its id, the part after `ivan_`): it stops working at
    /// once. Logged as `api-token.revoke`.
    Revoke {
        /// The employer: its id or its registration number.
        #[arg(long)]
        employer: String,
        /// The token id (16 hex digits).
        #[arg(long = "token", value_name = "TOKEN_ID")]
        token: String,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn employer(config: &Config, cmd: EmployerCommand) -> Result<ExitCode> {
    match cmd {
        EmployerCommand::Add {
            name,
            registration_number,
            json,
        } => {
            let created = OpenLedger::with(config, async |record: &OpenLedger| {
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
            show(json, &created, |created| {
                print_fields(&[
                    ("employer id", &created.employer.id),
                    ("name", &created.employer.name),
                    ("registration", &created.employer.registration_number),
                    ("api token", &created.api_token),
                    ("log entry", &created.log_seq),
                ]);
                eprintln!("Store the API token now: it is not shown again.");
            });
        }
        EmployerCommand::SetEmail {
            employer,
            email,
            json,
        } => {
            let employer = super::employer_id(config, &employer).await?;
            let log_seq = OpenLedger::with(config, async |record: &OpenLedger| {
                employers::set_email(&record.ledger, operator(config)?, &employer, &email).await
            })
            .await?;
            let email = email.trim();
            let done =
                serde_json::json!({"id": employer, "notify_email": email, "log_seq": log_seq});
            show(json, &done, |_| {
                outln!("mail for employer {employer} now goes to {email}");
            });
        }
        EmployerCommand::SetLanguage {
            employer,
            language,
            json,
        } => {
            let employer = super::employer_id(config, &employer).await?;
            let lang = super::language_arg(&language)?;
            let log_seq = OpenLedger::with(config, async |record: &OpenLedger| {
                employers::set_language(&record.ledger, operator(config)?, &employer, lang).await
            })
            .await?;
            let done =
                serde_json::json!({"id": employer, "language": lang.tag(), "log_seq": log_seq});
            show(json, &done, |_| {
                outln!("mail for employer {employer} is now in {}", lang.name());
            });
        }
        EmployerCommand::List { json } => {
            let list = read_db(config, async |db| employers::list(db).await).await?;
            show(json, &list, |list| {
                outln!(
                    "{:<36}  {:<16}  {:<27}  NAME",
                    "ID",
                    "REGISTRATION",
                    "CREATED"
                );
                for e in list {
                    outln!(
                        "{:<36}  {:<16}  {:<27}  {}",
                        e.id,
                        e.registration_number,
                        retention::ledger::format_time(&e.created_at),
                        e.name
                    );
                }
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token(config: &Config, cmd: TokenCommand) -> Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            employer,
            label,
            allow,
            json,
        } => {
            let employer = super::employer_id(config, &employer).await?;
            let created = OpenLedger::with(config, async |record: &OpenLedger| {
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
            show(json, &created, |created| {
                print_fields(&[
                    ("token id", &created.id),
                    ("employer id", &created.employer_id),
                    ("label", &created.label),
                    ("allowed from", &allowed_from(&created.allowed_ips)),
                    ("api token", &created.api_token),
                    ("log entry", &created.log_seq),
                ]);
                eprintln!("Store the API token now: it is not shown again.");
            });
        }
        TokenCommand::List { employer, json } => {
            let employer = super::employer_id(config, &employer).await?;
            let list = read_db(config, async |db| {
                employers::list_tokens(db, &employer).await
            })
            .await?;
            show(json, &list, |list| {
                outln!(
                    "{:<16}  {:<27}  {:<27}  {:<24}  {:<24}  LABEL",
                    "ID",
                    "CREATED",
                    "REVOKED",
                    "CREATED BY",
                    "ALLOWED FROM"
                );
                for t in list {
                    outln!(
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
            });
        }
        TokenCommand::Revoke {
            employer,
            token,
            json,
        } => {
            let employer = super::employer_id(config, &employer).await?;
            let log_seq = OpenLedger::with(config, async |record: &OpenLedger| {
                employers::revoke_token(&record.ledger, operator(config)?, &employer, &token).await
            })
            .await?;
            let done = serde_json::json!({
                "id": token, "employer_id": employer, "revoked": true, "log_seq": log_seq
            });
            show(json, &done, |_| {
                outln!("API token {token} of employer {employer} revoked (log entry {log_seq})");
            });
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
