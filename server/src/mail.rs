//! E-mail to employers (and the operator): the receipt of an accepted filing, the
//! authority's answer, and overdue forwarding.
//!
//! Mail goes through its own durable outbox (`mail_outbox`): a message is a row
//! written in the same transaction as the event it reports (the acceptance, the final
//! answer, the overdue flag), addressed to the employer's notification address
//! (`ivan admin employer set-email`) — an employer without one gets no mail. The
//! [`Mailer`] task claims due rows with a lease, sends them, and records each sent
//! message as a `mail.send` log entry whose payload is the message exactly as sent
//! (so "the employer was told" is evidence too); failures are retried with capped,
//! jittered backoff and never dropped.
//!
//! A message that carries a secret (the enrolment link of a portal invitation,
//! [`enqueue_with_secret`]) keeps it beside its body, which holds the placeholder
//! [`SECRET_PLACEHOLDER`]: the secret goes into the message only as it is sent; the
//! logged copy keeps the placeholder, and the secret is cleared from the outbox once
//! sent. So the record never holds a live enrolment link.
//!
//! Transports ([`MailConfig::transport`]): `smtp` (lettre, with STARTTLS, implicit TLS
//! or none, and optional credentials) and `file`, the development default, which
//! appends each message to a file under the data dir. `environment = "production"`
//! refuses the file sink at start.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use retention::ledger::{NewEntry, Work};
use retention::{Clock, Db, DbConn, Ledger, Payload, on_conn};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Error;
use crate::i18n::Lang;

/// `[mail]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// `file` (development: one `.eml` file per message in `dir`) or `smtp`.
    pub transport: MailTransport,
    /// The development sink's directory; default `<data_dir>/mail`.
    pub dir: Option<PathBuf>,
    /// The sender, e.g. `ivan <no-reply@ivan.example>`.
    pub from: String,
    /// Where overdue-forwarding mail for the operator goes (none if unset).
    pub operator: Option<String>,
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `starttls` (default), `tls` (implicit TLS, e.g. port 465) or `none`.
    pub smtp_security: SmtpSecurity,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    pub smtp_timeout_secs: u64,
    /// Retry delays: full jitter below min(retry_cap_secs, retry_base_ms · 2^attempt).
    pub retry_base_ms: u64,
    pub retry_cap_secs: u64,
    /// Look for mail to send this often when idle.
    pub idle_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    File,
    Smtp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    Starttls,
    Tls,
    None,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            transport: MailTransport::File,
            dir: None,
            from: "ivan <ivan@localhost>".into(),
            operator: None,
            smtp_host: "localhost".into(),
            smtp_port: 587,
            smtp_security: SmtpSecurity::Starttls,
            smtp_username: None,
            smtp_password: None,
            smtp_timeout_secs: 30,
            retry_base_ms: 2000,
            retry_cap_secs: 900,
            idle_ms: 1000,
        }
    }
}

impl MailConfig {
    pub fn validate(&self) -> Result<(), Error> {
        parse_mailbox(&self.from, "mail.from")?;
        if let Some(op) = &self.operator {
            parse_mailbox(op, "mail.operator")?;
        }
        if self.smtp_username.is_some() != self.smtp_password.is_some() {
            return Err(Error::Config(
                "mail.smtp_username and mail.smtp_password go together".into(),
            ));
        }
        if self.retry_base_ms == 0 || self.idle_ms == 0 || self.smtp_timeout_secs == 0 {
            return Err(Error::Config(
                "mail.retry_base_ms, idle_ms and smtp_timeout_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

fn parse_mailbox(s: &str, what: &str) -> Result<Mailbox, Error> {
    s.parse::<Mailbox>()
        .map_err(|e| Error::Config(format!("{what} {s:?} is not a mail address: {e}")))
}

/// Checks an employer's notification address (one plain address).
pub fn parse_address(s: &str) -> Result<String, Error> {
    let address = s
        .trim()
        .parse::<lettre::Address>()
        .map_err(|e| Error::Invalid(format!("{s:?} is not an e-mail address: {e}")))?;
    Ok(address.to_string())
}

/// Kinds of mail, with their subject and text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Receipt,
    Answer,
    Overdue,
    /// The daily list of pre-registrations past their deadline.
    PreregistrationDigest,
    /// A portal user's enrolment link.
    Invitation,
    /// A phone access locked after sustained PIN guessing.
    PhoneAlert,
    /// A registered signing certificate expires soon.
    CertificateExpiry,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Receipt => "receipt",
            Kind::Answer => "answer",
            Kind::Overdue => "overdue",
            Kind::PreregistrationDigest => "preregistration-digest",
            Kind::Invitation => "invitation",
            Kind::PhoneAlert => "phone-alert",
            Kind::CertificateExpiry => "certificate-expiry",
        }
    }
}

/// Who a queued mail goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To<'a> {
    /// The submission's employer, at its notification address; no mail if it has none.
    Employer,
    /// A fixed address (the operator's).
    Address(&'a str),
}

/// Words of a mail in the recipient's language: the employer's own
/// (`employers.language`), English for an address of the operator's.
pub type Words<'a> = &'a (dyn Fn(Lang) -> String + Send + Sync);

/// Queues mail about `submission_id` inside the caller's transaction. `detail` is
/// the event in one sentence, in the language it is given.
pub async fn enqueue(
    conn: &mut DbConn<'_>,
    kind: Kind,
    to: To<'_>,
    submission_id: &str,
    detail: Words<'_>,
    now: DateTime<Utc>,
) -> Result<(), retention::Error> {
    let one = Queued {
        to,
        submission_id,
        detail,
        now,
    };
    enqueue_many(conn, kind, std::slice::from_ref(&one)).await
}

/// One mail of [`enqueue_many`].
pub struct Queued<'a> {
    pub to: To<'a>,
    pub submission_id: &'a str,
    pub detail: Words<'a>,
    pub now: DateTime<Utc>,
}

impl std::fmt::Debug for Queued<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("to", &self.to)
            .field("submission_id", &self.submission_id)
            .field("detail", &(self.detail)(Lang::En))
            .field("now", &self.now)
            .finish()
    }
}

/// The language each employer of these submissions reads its mail in (one query
/// per 500 submissions, inside the caller's transaction).
async fn employer_languages(
    conn: &mut DbConn<'_>,
    submission_ids: &[&str],
) -> Result<std::collections::HashMap<String, Lang>, retention::Error> {
    let mut langs = std::collections::HashMap::new();
    for chunk in submission_ids.chunks(500) {
        let rows: Vec<(String, Option<String>)> = on_conn!(conn, c => {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT s.id, e.language FROM submissions s \
                 JOIN employers e ON e.id = s.employer_id WHERE s.id IN (",
            );
            let mut ids = q.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            q.push(")");
            q.build_query_as().fetch_all(&mut *c).await?
        });
        for (id, lang) in rows {
            let lang = lang.as_deref().and_then(Lang::from_tag).unwrap_or_default();
            langs.insert(id, lang);
        }
    }
    Ok(langs)
}

/// [`enqueue`] for many mails of one kind, in a few multi-row statements.
pub async fn enqueue_many(
    conn: &mut DbConn<'_>,
    kind: Kind,
    mails: &[Queued<'_>],
) -> Result<(), retention::Error> {
    let to_employers: Vec<&str> = mails
        .iter()
        .filter(|m| m.to == To::Employer)
        .map(|m| m.submission_id)
        .collect();
    let langs = employer_languages(conn, &to_employers).await?;
    let rows: Vec<(String, Option<&str>, String, String, &Queued<'_>)> = mails
        .iter()
        .map(|m| {
            let (address, lang) = match m.to {
                To::Employer => (
                    None,
                    langs.get(m.submission_id).copied().unwrap_or_default(),
                ),
                To::Address(a) => (Some(a), Lang::En),
            };
            let (subject, body) = text(lang, kind, m.submission_id, &(m.detail)(lang));
            (uuid::Uuid::now_v7().to_string(), address, subject, body, m)
        })
        .collect();
    on_conn!(conn, c => {
        for chunk in rows.chunks(500) {
            // VALUES names its columns column1, column2, … on both backends.
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO mail_outbox (id, kind, recipient, subject, body, submission_id, \
                 created_at, due_at, attempts) \
                 SELECT v.column1, v.column2, COALESCE(v.column3, e.notify_email), v.column4, \
                 v.column5, s.id, v.column6, v.column6, 0 FROM (",
            );
            insert.push_values(chunk, |mut row, (id, address, subject, body, m)| {
                row.push_bind(id)
                    .push_bind(kind.as_str())
                    .push_bind(*address)
                    .push_bind(subject)
                    .push_bind(body)
                    .push_bind(m.now)
                    .push_bind(m.submission_id);
            });
            insert.push(
                ") AS v JOIN submissions s ON s.id = v.column7 \
                 JOIN employers e ON e.id = s.employer_id \
                 WHERE COALESCE(v.column3, e.notify_email) IS NOT NULL",
            );
            insert.build().execute(&mut *c).await?;
        }
    });
    Ok(())
}

/// A mail's subject, and its body around `detail`, in `lang`.
fn text(lang: Lang, kind: Kind, submission_id: &str, detail: &str) -> (String, String) {
    let body = lang.t_with("mail-frame", &[("detail", &detail), ("id", &submission_id)]);
    (subject(lang, kind, submission_id), body)
}

/// A mail's subject in `lang` (`submission_id` for the kinds about one filing).
pub(crate) fn subject(lang: Lang, kind: Kind, submission_id: &str) -> String {
    lang.t_with(
        &format!("mail-subject-{}", kind.as_str()),
        &[("id", &submission_id)],
    )
}

/// Queues mail to an employer's notification address (none if it has none), not
/// about one submission: `body` is the whole text. Inside the caller's transaction.
pub async fn enqueue_to_employer(
    conn: &mut DbConn<'_>,
    kind: Kind,
    employer_id: &str,
    body: Words<'_>,
    now: DateTime<Utc>,
) -> Result<(), retention::Error> {
    let language: Option<Option<String>> = on_conn!(conn, c => {
        sqlx::query_scalar("SELECT language FROM employers WHERE id = $1")
            .bind(employer_id)
            .fetch_optional(&mut *c)
            .await?
    });
    let lang = language
        .flatten()
        .as_deref()
        .and_then(Lang::from_tag)
        .unwrap_or_default();
    let subject = subject(lang, kind, "");
    let body = body(lang);
    on_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO mail_outbox (id, kind, recipient, subject, body, submission_id, \
             created_at, due_at, attempts) \
             SELECT $1, $2, e.notify_email, $3, $4, NULL, $5, $5, 0 \
             FROM employers e WHERE e.id = $6 AND e.notify_email IS NOT NULL",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(kind.as_str())
        .bind(&subject)
        .bind(&body)
        .bind(now)
        .bind(employer_id)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Stands for a queued message's secret in its body (see [`enqueue_with_secret`]).
pub const SECRET_PLACEHOLDER: &str = "{{secret}}";

/// Queues a message to `recipient` whose body holds [`SECRET_PLACEHOLDER`] exactly
/// once; `secret` replaces it when the message is sent (and only then). Inside the
/// caller's transaction. `subject` and `body` are in the recipient's language.
#[allow(clippy::too_many_arguments)]
pub async fn enqueue_with_secret(
    conn: &mut DbConn<'_>,
    kind: Kind,
    recipient: &str,
    subject: &str,
    body: &str,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<(), retention::Error> {
    if body.matches(SECRET_PLACEHOLDER).count() != 1
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(retention::Error::Invalid(
            "a secret-bearing mail needs one placeholder and a URL-safe secret".into(),
        ));
    }
    on_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO mail_outbox (id, kind, recipient, subject, body, secret, submission_id, \
             created_at, due_at, attempts) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $7, 0)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(kind.as_str())
        .bind(recipient)
        .bind(subject)
        .bind(body)
        .bind(secret)
        .bind(now)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// One claimed mail.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Claimed {
    id: String,
    recipient: String,
    subject: String,
    body: String,
    secret: Option<String>,
    attempts: i64,
}

/// A message ready to leave: the bytes to send and the bytes to log (the same, but
/// with the secret left as its placeholder).
struct Outgoing {
    envelope: lettre::address::Envelope,
    sent: Vec<u8>,
    logged: Vec<u8>,
    /// The links of a secret-bearing message, as sent (empty otherwise).
    links: Vec<String>,
}

/// How mail leaves.
#[derive(Clone)]
enum Sender {
    File(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sender::File(p) => write!(f, "file {}", p.display()),
            Sender::Smtp(_) => f.write_str("smtp"),
        }
    }
}

/// The mail outbox as a leased queue.
const QUEUE: retention::queue::Queue = retention::queue::Queue {
    table: "mail_outbox",
    done_column: "sent_at",
    columns: "id, recipient, subject, body, secret, attempts",
    batch: 16,
};

/// The mail worker of one `ivan serve`.
#[derive(Debug, Clone)]
pub struct Mailer {
    db: Db,
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    config: Arc<MailConfig>,
    from: Mailbox,
    sender: Sender,
    owner: Arc<str>,
}

/// The running mail worker.
#[derive(Debug)]
pub struct MailerTask {
    handle: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl MailerTask {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "mail worker failed");
        }
    }
}

impl Mailer {
    pub fn new(
        db: Db,
        ledger: Ledger,
        clock: Arc<dyn Clock>,
        config: &MailConfig,
        data_dir: &Path,
    ) -> Result<Self, Error> {
        let from = parse_mailbox(&config.from, "mail.from")?;
        let sender = match config.transport {
            MailTransport::File => {
                Sender::File(config.dir.clone().unwrap_or_else(|| data_dir.join("mail")))
            }
            MailTransport::Smtp => {
                let host = config.smtp_host.as_str();
                let tls = |host: &str| {
                    TlsParameters::new(host.to_owned())
                        .map_err(|e| Error::Config(format!("mail TLS for {host}: {e}")))
                };
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(config.smtp_port)
                    .timeout(Some(Duration::from_secs(config.smtp_timeout_secs)));
                builder = match config.smtp_security {
                    SmtpSecurity::None => builder.tls(Tls::None),
                    SmtpSecurity::Starttls => builder.tls(Tls::Required(tls(host)?)),
                    SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls(host)?)),
                };
                if let (Some(user), Some(password)) = (&config.smtp_username, &config.smtp_password)
                {
                    builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
                }
                Sender::Smtp(builder.build())
            }
        };
        let owner = format!("{}:{}", std::process::id(), uuid::Uuid::now_v7());
        Ok(Self {
            db,
            ledger,
            clock,
            config: Arc::new(config.clone()),
            from,
            sender,
            owner: owner.into(),
        })
    }

    pub fn start(self) -> MailerTask {
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(self.run(stopped));
        MailerTask { handle, stop }
    }

    async fn run(self, stopped: watch::Receiver<bool>) {
        tracing::info!(transport = ?self.sender, "mail transport");
        let idle = Duration::from_millis(self.config.idle_ms);
        retention::queue::run_worker("mail worker", stopped, idle, || self.round()).await;
    }

    /// Claims and handles up to 16 due messages; returns how many were claimed.
    async fn round(&self) -> Result<usize, Error> {
        let now = self.clock.now();
        let lease_until = now + chrono::Duration::seconds(4 * self.config.smtp_timeout_secs as i64);
        let rows: Vec<Claimed> =
            retention::queue::claim(&self.db, QUEUE, &self.owner, now, lease_until).await?;
        let n = rows.len();
        for row in rows {
            self.send(row).await?;
        }
        Ok(n)
    }

    async fn send(&self, row: Claimed) -> Result<(), Error> {
        let out = match self.build(&row) {
            Ok(m) => m,
            Err(reason) => return self.retry(&row, &reason).await,
        };
        let sent = match &self.sender {
            Sender::File(dir) => write_eml(dir, &row.id, &out.sent)
                .map(|path| {
                    // Development only (production refuses the file sink): show the
                    // links of a message that carries a secret (an enrolment link),
                    // so one can follow it without opening the file.
                    for link in out.links.iter() {
                        tracing::info!(to = %row.recipient, file = %path.display(), "dev mail link: {link}");
                    }
                })
                .map_err(|e| e.to_string()),
            Sender::Smtp(smtp) => smtp
                .send_raw(&out.envelope, &out.sent)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        };
        let bytes = out.logged;
        match sent {
            Ok(()) => {
                let (id, owner) = (row.id.clone(), self.owner.to_string());
                let work: Work = retention::work!(|conn, at| {
                    let at = at.recorded_at();
                    on_conn!(&mut conn, c => {
                        sqlx::query(
                            "UPDATE mail_outbox SET sent_at = $1, lease_owner = NULL, \
                             lease_until = NULL, last_error = NULL, secret = NULL \
                             WHERE id = $2 AND lease_owner = $3",
                        )
                        .bind(at)
                        .bind(&id)
                        .bind(&owner)
                        .execute(&mut *c)
                        .await?;
                    });
                    Ok(())
                });
                let payload = Payload {
                    content: Bytes::from(bytes).into(),
                    media_type: "message/rfc822".into(),
                    retain_until: None,
                };
                let entry =
                    NewEntry::system("mail.send", format!("mail:{}", row.id), Some(payload));
                self.ledger.append_with(entry, work).await?;
                metrics::counter!("ivan_mail_sent_total").increment(1);
                tracing::info!(mail = %row.id, to = %row.recipient, "mail sent");
                Ok(())
            }
            Err(reason) => self.retry(&row, &reason).await,
        }
    }

    fn build(&self, row: &Claimed) -> Result<Outgoing, String> {
        let to: Mailbox = row
            .recipient
            .parse()
            .map_err(|e| format!("recipient {:?}: {e}", row.recipient))?;
        // One date and message id, so the logged copy of a secret-bearing message
        // is the sent one with only the secret left out.
        let date = std::time::SystemTime::from(self.clock.now());
        let message_id = format!("<{}@{}>", row.id, self.from.email.domain());
        // The development sink's files are for reading: the text as written, in
        // `binary` transfer encoding (no quoted-printable `=3D` or soft breaks in
        // links, which are longer than 8-bit's 76-character lines allow; no base64
        // for accents). Over SMTP lettre picks the encoding every relay passes.
        let readable = matches!(self.sender, Sender::File(_));
        let message = |body: String| {
            let body = if readable {
                lettre::message::Body::new_with_encoding(
                    body,
                    lettre::message::header::ContentTransferEncoding::Binary,
                )
                .unwrap_or_else(lettre::message::Body::new)
            } else {
                lettre::message::Body::new(body)
            };
            Message::builder()
                .from(self.from.clone())
                .to(to.clone())
                .subject(row.subject.clone())
                .date(date)
                .message_id(Some(message_id.clone()))
                .header(ContentType::TEXT_PLAIN)
                .body(body)
                .map_err(|e| e.to_string())
        };
        let logged = message(row.body.clone())?;
        let (sent, links) = match &row.secret {
            None => (logged.clone(), Vec::new()),
            Some(secret) => {
                let body = row.body.replacen(SECRET_PLACEHOLDER, secret, 1);
                let links = body
                    .split_whitespace()
                    .filter(|w| w.starts_with("https://") || w.starts_with("http://"))
                    .map(str::to_owned)
                    .collect();
                (message(body)?, links)
            }
        };
        Ok(Outgoing {
            envelope: sent.envelope().clone(),
            sent: sent.formatted(),
            logged: logged.formatted(),
            links,
        })
    }

    async fn retry(&self, row: &Claimed, reason: &str) -> Result<(), Error> {
        metrics::counter!("ivan_mail_failures_total").increment(1);
        let base = Duration::from_millis(self.config.retry_base_ms);
        let cap = Duration::from_secs(self.config.retry_cap_secs);
        let (due, delay) = retention::queue::next_due(self.clock.now(), row.attempts, base, cap);
        tracing::warn!(mail = %row.id, to = %row.recipient, error = %reason, retry_in_ms = delay.as_millis() as u64, "mail not sent; will retry");
        retention::queue::retry(&self.db, QUEUE, &row.id, &self.owner, due, reason).await?;
        Ok(())
    }
}

/// The development sink: each message in a file of its own, `<dir>/<time>-<id>.eml`
/// (names sort in sending order; any mail reader opens them), written and fsynced.
/// Returns the file's path.
fn write_eml(dir: &Path, id: &str, message: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let path = dir.join(format!("{stamp}-{id}.eml"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    f.write_all(message)?;
    f.sync_data()?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        assert_eq!(parse_address(" a@b.example ").unwrap(), "a@b.example");
        assert!(parse_address("not an address").is_err());
        let bad = MailConfig {
            from: "nobody".into(),
            ..MailConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!(MailConfig::default().validate().is_ok());
    }

    #[test]
    fn texts_name_the_message() {
        let (subject, body) = text(Lang::En, Kind::Answer, "m-1", "The authority processed it.");
        assert_eq!(subject, "Authority answer for filing m-1");
        assert!(
            body.starts_with("The authority processed it.\n\nMessage id: m-1\n"),
            "{body}"
        );
        assert!(body.contains("/api/v1/submissions/m-1"));
        let (subject, body) = text(Lang::Sk, Kind::Receipt, "m-2", "Prijaté.");
        assert_eq!(
            subject,
            Lang::Sk.t_with("mail-subject-receipt", &[("id", &"m-2")])
        );
        assert_ne!(subject, text(Lang::En, Kind::Receipt, "m-2", "").0);
        assert!(
            body.starts_with("Prijaté.") && body.contains("m-2"),
            "{body}"
        );
        // Every kind has a subject in every language.
        for lang in Lang::ALL {
            for kind in [
                Kind::Receipt,
                Kind::Answer,
                Kind::Overdue,
                Kind::PreregistrationDigest,
                Kind::Invitation,
                Kind::PhoneAlert,
                Kind::CertificateExpiry,
            ] {
                let (subject, _) = text(lang, kind, "x", "");
                assert!(!subject.starts_with("mail-"), "{lang:?} {kind:?}");
            }
        }
    }
}
