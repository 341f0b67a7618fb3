//! Employers (the filers) and their API tokens, onboarded by the operator.
//!
//! An API token is `ivan_<token id>_<secret>`. Only the SHA-256 of the secret is
//! stored (the secret is 256 random bits, so a fast hash is the right tool; a
//! password hash would add nothing). The token is shown once, at creation.
//!
//! An employer may hold several tokens (one per system that files for it), each with
//! a label and an optional IP allow-list: a token with an allow-list is accepted only
//! from a TCP peer inside one of its blocks. Creating and revoking tokens are log
//! entries (`api-token.create`, `api-token.revoke`); the secret is never logged.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use retention::keys::os_random;
use retention::ledger::{NewEntry, Payload, Work};
use retention::{
    Actor, Appended, Clock, Db, DbConn, EmployerId, Ledger, Sha256Hex, on_conn, on_pool,
};
use serde::Serialize;

use crate::Error;

/// Longest employer name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest registration number, in characters.
pub const MAX_REGISTRATION_CHARS: usize = 32;
/// Longest API token label, in characters.
pub const MAX_TOKEN_LABEL_CHARS: usize = 100;
/// Most blocks in one token's IP allow-list.
pub const MAX_ALLOWED_IPS: usize = 32;
/// The label of the token `employer add` creates.
pub const INITIAL_TOKEN_LABEL: &str = "initial";

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Employer {
    pub id: String,
    pub name: String,
    pub registration_number: String,
    pub created_at: DateTime<Utc>,
}

/// What `employer add` returns: the employer, its first API token (the only time
/// the token is ever shown) and where the creation landed in the log.
#[derive(Debug, Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub employer: Employer,
    pub api_token_id: String,
    pub api_token: String,
    pub log_seq: i64,
}

fn validate(name: &str, registration_number: &str) -> Result<(String, String), Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::Invalid(format!(
            "employer name must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "employer name must not contain control characters".into(),
        ));
    }
    let reg = registration_number.trim();
    if reg.is_empty()
        || reg.chars().count() > MAX_REGISTRATION_CHARS
        || !reg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '/')
    {
        return Err(Error::Invalid(format!(
            "registration number must be 1 to {MAX_REGISTRATION_CHARS} letters, digits, '-' or '/'"
        )));
    }
    Ok((name.to_owned(), reg.to_owned()))
}

/// A freshly generated API token: its public id, the whole token (shown once) and
/// the hash of its secret (what is stored).
pub(crate) struct Minted {
    pub id: String,
    pub token: String,
    pub secret_sha256: Sha256Hex,
}

/// What employers' API tokens start with.
pub const API_TOKEN_PREFIX: &str = "ivan_";

/// Generates a token `<prefix><id>_<secret>`: 64 random bits of id (hex), 256 random
/// bits of secret (base64url).
pub(crate) fn mint(prefix: &str) -> Result<Minted, Error> {
    let id = hex::encode(os_random::<8>()?);
    let secret = URL_SAFE_NO_PAD.encode(os_random::<32>()?);
    Ok(Minted {
        token: format!("{prefix}{id}_{secret}"),
        secret_sha256: Sha256Hex::of(secret.as_bytes()),
        id,
    })
}

/// The id and secret of a token `<prefix><16 hex>_<secret>`, if it has that form.
pub(crate) fn split_token<'t>(token: &'t str, prefix: &str) -> Option<(&'t str, &'t str)> {
    token
        .strip_prefix(prefix)
        .and_then(|rest| rest.split_once('_'))
        .filter(|(id, secret)| {
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty()
        })
}

/// Whether `secret` hashes to `stored` (hex SHA-256), compared without an early exit
/// so timing says nothing about the stored hash.
pub(crate) fn secret_matches(stored: &str, secret: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    stored
        .as_bytes()
        .ct_eq(Sha256Hex::of(secret.as_bytes()).as_str().as_bytes())
        .into()
}

/// An `api_tokens` row to insert.
struct TokenRow {
    id: String,
    employer_id: String,
    secret_sha256: Sha256Hex,
    created_at: DateTime<Utc>,
    label: String,
    /// JSON array of CIDR blocks; `None`: any address.
    allowed_ips: Option<String>,
    created_by: String,
}

impl TokenRow {
    fn new(
        minted: &Minted,
        employer_id: &str,
        created_at: DateTime<Utc>,
        label: &str,
        allowed_ips: &[String],
        created_by: &Actor,
    ) -> Result<Self, Error> {
        let allowed_ips = if allowed_ips.is_empty() {
            None
        } else {
            Some(serde_json::to_string(allowed_ips).map_err(|e| Error::Internal(e.to_string()))?)
        };
        Ok(Self {
            id: minted.id.clone(),
            employer_id: employer_id.to_owned(),
            secret_sha256: minted.secret_sha256.clone(),
            created_at,
            label: label.to_owned(),
            allowed_ips,
            created_by: created_by.to_string(),
        })
    }

    /// Inserts the row if its employer exists; `false` if it does not.
    async fn insert(&self, conn: &mut DbConn<'_>) -> Result<bool, retention::Error> {
        let n = on_conn!(conn, c => {
            sqlx::query(
                "INSERT INTO api_tokens \
                 (id, employer_id, secret_sha256, created_at, label, allowed_ips, created_by) \
                 SELECT $1, id, $3, $4, $5, $6, $7 FROM employers WHERE id = $2",
            )
            .bind(&self.id)
            .bind(&self.employer_id)
            .bind(self.secret_sha256.as_str())
            .bind(self.created_at)
            .bind(&self.label)
            .bind(&self.allowed_ips)
            .bind(&self.created_by)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }
}

/// Creates an employer and its first API token, recorded as `employer.create` in the
/// log in the same transaction. The log payload (kept as an original) is the JSON of
/// the employer record, without the token secret.
pub async fn add(
    ledger: &Ledger,
    clock: &dyn Clock,
    actor: Actor,
    name: &str,
    registration_number: &str,
) -> Result<Created, Error> {
    let (name, reg) = validate(name, registration_number)?;
    let employer = Employer {
        id: EmployerId::new().to_string(),
        name,
        registration_number: reg,
        created_at: clock.now(),
    };
    let minted = mint(API_TOKEN_PREFIX)?;
    let token = TokenRow::new(
        &minted,
        &employer.id,
        employer.created_at,
        INITIAL_TOKEN_LABEL,
        &[],
        &actor,
    )?;

    let payload = serde_json::json!({
        "id": employer.id,
        "name": employer.name,
        "registration_number": employer.registration_number,
        "created_at": retention::ledger::format_time(&employer.created_at),
        "api_token_id": minted.id,
    });

    let row = employer.clone();
    let work: Work = retention::work!(|conn, _at| {
        let inserted = on_conn!(&mut conn, c => {
            sqlx::query(
                "INSERT INTO employers (id, name, registration_number, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&row.id)
            .bind(&row.name)
            .bind(&row.registration_number)
            .bind(row.created_at)
            .execute(&mut *c)
            .await
            .map(drop)
        });
        retention::conflict_on_duplicate(inserted, || {
            let number = &row.registration_number;
            format!("an employer with registration number {number} already exists")
        })?;
        if token.insert(&mut conn).await? {
            Ok(())
        } else {
            Err(retention::Error::Invalid(format!(
                "employer {} vanished before its first API token was stored",
                row.id
            )))
        }
    });
    let appended = ledger
        .append_with(
            entry(actor, "employer.create", &employer.id, &payload),
            work,
        )
        .await?;
    Ok(Created {
        employer,
        api_token_id: minted.id,
        api_token: minted.token,
        log_seq: appended.seq,
    })
}

/// Sets the address that gets the employer's mail. Logged as `employer.set-email`.
pub async fn set_email(
    ledger: &Ledger,
    actor: Actor,
    employer_id: &str,
    email: &str,
) -> Result<(String, i64), Error> {
    let email = crate::mail::parse_address(email)?;
    let seq = set_setting(ledger, actor, employer_id, Setting::NotifyEmail, &email).await?;
    Ok((email, seq))
}

/// Sets the language of the employer's mail (receipts, answers, warnings).
/// Logged as `employer.set-language`.
pub async fn set_language(
    ledger: &Ledger,
    actor: Actor,
    employer_id: &str,
    language: crate::i18n::Lang,
) -> Result<i64, Error> {
    set_setting(
        ledger,
        actor,
        employer_id,
        Setting::Language,
        language.tag(),
    )
    .await
}

/// An employer's setting an operator changes, with the log entry naming the change.
#[derive(Debug, Clone, Copy)]
enum Setting {
    NotifyEmail,
    Language,
}

impl Setting {
    fn column(self) -> &'static str {
        match self {
            Setting::NotifyEmail => "notify_email",
            Setting::Language => "language",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Setting::NotifyEmail => "employer.set-email",
            Setting::Language => "employer.set-language",
        }
    }
}

/// Writes one setting of an employer and logs it (the value is the entry's payload).
async fn set_setting(
    ledger: &Ledger,
    actor: Actor,
    employer_id: &str,
    setting: Setting,
    value: &str,
) -> Result<i64, Error> {
    let (id, value_owned) = (employer_id.to_owned(), value.to_owned());
    let sql = format!(
        "UPDATE employers SET {} = $1 WHERE id = $2",
        setting.column()
    );
    let work: Work = retention::work!(|conn, _at| {
        let n = on_conn!(&mut conn, c => {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(&value_owned)
                .bind(&id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        if n == 1 {
            Ok(())
        } else {
            Err(retention::Error::Invalid(format!("no employer {id}")))
        }
    });
    let appended = ledger
        .append_with(
            NewEntry {
                actor,
                action: setting.action().into(),
                subject: format!("employer:{employer_id}"),
                payload: Some(Payload {
                    content: Bytes::from(value.to_owned().into_bytes()).into(),
                    media_type: "text/plain".into(),
                    retain_until: None,
                }),
            },
            work,
        )
        .await?;
    Ok(appended.seq)
}

/// What [`create_token`] returns: the token (the only time it is ever shown), its
/// settings and where its creation landed in the log.
#[derive(Debug, Serialize)]
pub struct CreatedToken {
    pub id: String,
    pub employer_id: String,
    /// The whole token, `ivan_<id>_<secret>`; not stored, not shown again.
    pub api_token: String,
    pub label: String,
    /// CIDR blocks the token is accepted from; empty: any address.
    pub allowed_ips: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub log_seq: i64,
}

/// An API token as listed: everything but its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub label: Option<String>,
    /// CIDR blocks the token is accepted from; empty: any address.
    pub allowed_ips: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// The log's name of who created it (`operator:<name>`, `user:<id>`); absent for
    /// tokens made before it was recorded.
    pub created_by: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub(crate) fn validate_label(label: &str) -> Result<String, Error> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > MAX_TOKEN_LABEL_CHARS {
        return Err(Error::Invalid(format!(
            "token label must be 1 to {MAX_TOKEN_LABEL_CHARS} characters"
        )));
    }
    if label.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "token label must not contain control characters".into(),
        ));
    }
    Ok(label.to_owned())
}

/// Parses an IP allow-list: each entry a CIDR block (`10.0.0.0/8`, `2001:db8::/32`)
/// or a single address (`192.0.2.7`, meaning /32 or /128). Returns the blocks as
/// normalised CIDR strings, without repeats. A block with host bits set
/// (`10.1.2.3/8`) is refused rather than guessed at.
pub fn parse_allowed_ips(entries: &[String]) -> Result<Vec<String>, Error> {
    if entries.len() > MAX_ALLOWED_IPS {
        return Err(Error::Invalid(format!(
            "at most {MAX_ALLOWED_IPS} allowed address blocks per token (got {})",
            entries.len()
        )));
    }
    let mut blocks: Vec<String> = Vec::with_capacity(entries.len());
    for entry in entries {
        let text = entry.trim();
        let net = if let Ok(net) = text.parse::<IpNet>() {
            if net.trunc() != net {
                return Err(Error::Invalid(format!(
                    "allowed address block {text:?} has host bits set; did you mean {}?",
                    net.trunc()
                )));
            }
            net
        } else if let Ok(addr) = text.parse::<IpAddr>() {
            IpNet::from(addr.to_canonical())
        } else {
            return Err(Error::Invalid(format!(
                "allowed address {text:?} is not an IP address or CIDR block \
                 (e.g. 192.0.2.7, 10.0.0.0/8, 2001:db8::/32)"
            )));
        };
        let block = net.to_string();
        if !blocks.contains(&block) {
            blocks.push(block);
        }
    }
    Ok(blocks)
}

/// The precise reason a log append's work refused its change. The ledger carries
/// only its own error type back, so the work leaves the server's error here and
/// answers [`retention::Error::Conflict`], which rolls the append back.
#[derive(Debug, Clone, Default)]
struct RefusedChange(Arc<Mutex<Option<Error>>>);

impl RefusedChange {
    /// Keeps `e`; the work returns what this gives.
    fn refuse(&self, e: Error) -> retention::Error {
        let message = e.to_string();
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(e);
        }
        retention::Error::Conflict(message)
    }

    /// The refusal the work kept, else the ledger's own error.
    fn or(&self, e: retention::Error) -> Error {
        self.0
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .unwrap_or(Error::Record(e))
    }

    /// Appends `entry` with `work` (which refuses through `self`): a refused change
    /// answers the error the work kept.
    async fn append(
        &self,
        ledger: &Ledger,
        entry: NewEntry,
        work: Work,
    ) -> Result<Appended, Error> {
        ledger
            .append_with(entry, work)
            .await
            .map_err(|e| self.or(e))
    }
}

/// A log entry about employer `employer_id` with a JSON payload.
fn entry(actor: Actor, action: &str, employer_id: &str, payload: &serde_json::Value) -> NewEntry {
    NewEntry {
        actor,
        action: action.to_owned(),
        subject: format!("employer:{employer_id}"),
        payload: Some(Payload::json(payload)),
    }
}

/// Creates another API token for an employer, with a label and an optional IP
/// allow-list (empty: any address), recorded as `api-token.create` (subject
/// `employer:<id>`; payload: the token's id, label, allow-list and creator — never
/// the secret) in the same transaction.
pub async fn create_token(
    ledger: &Ledger,
    clock: &dyn Clock,
    actor: Actor,
    employer_id: &str,
    label: &str,
    allowed_ips: &[String],
) -> Result<CreatedToken, Error> {
    let label = validate_label(label)?;
    let allowed_ips = parse_allowed_ips(allowed_ips)?;
    let minted = mint(API_TOKEN_PREFIX)?;
    let created_at = clock.now();
    let row = TokenRow::new(
        &minted,
        employer_id,
        created_at,
        &label,
        &allowed_ips,
        &actor,
    )?;
    let payload = serde_json::json!({
        "id": row.id,
        "employer_id": employer_id,
        "label": label,
        "allowed_ips": allowed_ips,
        "created_at": retention::ledger::format_time(&created_at),
        "created_by": row.created_by,
    });
    let refusal = RefusedChange::default();
    let refuse = refusal.clone();
    let work: Work = retention::work!(|conn, _at| {
        if row.insert(&mut conn).await? {
            Ok(())
        } else {
            Err(refuse.refuse(Error::NotFound(format!("no employer {}", row.employer_id))))
        }
    });
    let appended = refusal
        .append(
            ledger,
            entry(actor, "api-token.create", employer_id, &payload),
            work,
        )
        .await?;
    Ok(CreatedToken {
        id: minted.id,
        employer_id: employer_id.to_owned(),
        api_token: minted.token,
        label,
        allowed_ips,
        created_at,
        log_seq: appended.seq,
    })
}

type TokenInfoRow = (
    String,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    Option<String>,
    Option<DateTime<Utc>>,
);

/// The employer's API tokens (revoked ones too), newest first. An unknown employer
/// has none.
pub async fn list_tokens(db: &Db, employer_id: &str) -> Result<Vec<TokenInfo>, Error> {
    let rows: Vec<TokenInfoRow> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT id, label, allowed_ips, created_at, created_by, revoked_at \
             FROM api_tokens WHERE employer_id = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(employer_id)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    });
    rows.into_iter()
        .map(
            |(id, label, allowed_ips, created_at, created_by, revoked_at)| {
                let allowed_ips = match allowed_ips.as_deref() {
                    None => Vec::new(),
                    Some(json) => serde_json::from_str(json).map_err(|e| {
                        Error::Invalid(format!("stored allow-list of API token {id}: {e}"))
                    })?,
                };
                Ok(TokenInfo {
                    id,
                    label,
                    allowed_ips,
                    created_at,
                    created_by,
                    revoked_at,
                })
            },
        )
        .collect()
}

/// Revokes one of the employer's API tokens, recorded as `api-token.revoke` (subject
/// `employer:<id>`, payload: the token id) in the same transaction; it stops working
/// at once. Another employer's token answers [`Error::NotFound`], exactly like one
/// that does not exist; an already revoked one [`Error::Conflict`]. Returns the
/// entry's position.
pub async fn revoke_token(
    ledger: &Ledger,
    actor: Actor,
    employer_id: &str,
    token_id: &str,
) -> Result<i64, Error> {
    let payload = serde_json::json!({ "id": token_id });
    let (tid, eid) = (token_id.to_owned(), employer_id.to_owned());
    let refusal = RefusedChange::default();
    let refuse = refusal.clone();
    let work: Work = retention::work!(|conn, at| {
        let now = at.recorded_at();
        let changed = on_conn!(&mut conn, c => {
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 \
                 WHERE id = $2 AND employer_id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(&tid)
            .bind(&eid)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        if changed == 1 {
            return Ok(());
        }
        let revoked: Option<Option<DateTime<Utc>>> = on_conn!(&mut conn, c => {
            sqlx::query_scalar(
                "SELECT revoked_at FROM api_tokens WHERE id = $1 AND employer_id = $2",
            )
            .bind(&tid)
            .bind(&eid)
            .fetch_optional(&mut *c)
            .await?
        });
        Err(refuse.refuse(match revoked {
            Some(Some(at)) => Error::Conflict(format!(
                "API token {tid} was already revoked at {}",
                retention::ledger::format_time(&at)
            )),
            // Another employer's token is answered like one that does not exist.
            _ => Error::NotFound(format!("employer {eid} has no API token {tid}")),
        }))
    });
    let appended = refusal
        .append(
            ledger,
            entry(actor, "api-token.revoke", employer_id, &payload),
            work,
        )
        .await?;
    Ok(appended.seq)
}

/// Who files or acts for an employer: an API token (payroll software) or a portal
/// user, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub employer_id: String,
    pub registration_number: String,
    /// The log's name for the caller: `api-token:<id>` or `user:<id>`.
    pub actor: Actor,
}

impl Caller {
    /// The log's name for this caller.
    pub fn actor(&self) -> Actor {
        self.actor.clone()
    }
}

/// Checks an API token (`ivan_<id>_<secret>`): the token must exist, be unrevoked, and
/// its secret must hash to the stored SHA-256; a token with an IP allow-list must
/// also come from a `peer` inside one of its blocks (an unknown peer, `None`, is
/// outside every block). `None` for anything else — callers answer 401 without
/// saying which part was wrong; a refused address is logged as a warning and counted
/// (`ivan_api_token_ip_refused_total`).
pub async fn authenticate(
    db: &Db,
    token: &str,
    peer: Option<IpAddr>,
) -> Result<Option<Caller>, Error> {
    let Some((token_id, secret)) = split_token(token, API_TOKEN_PREFIX) else {
        return Ok(None);
    };
    let row: Option<(String, Option<String>, String, String)> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT t.secret_sha256, t.allowed_ips, e.id, e.registration_number FROM api_tokens t \
             JOIN employers e ON e.id = t.employer_id \
             WHERE t.id = $1 AND t.revoked_at IS NULL",
        )
        .bind(token_id)
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    });
    let Some((stored, allowed_ips, employer_id, registration_number)) = row else {
        return Ok(None);
    };
    if !secret_matches(&stored, secret) {
        return Ok(None);
    }
    if let Some(allowed) = allowed_ips.as_deref()
        && !peer_allowed(token_id, allowed, peer)
    {
        metrics::counter!("ivan_api_token_ip_refused_total").increment(1);
        match peer {
            Some(addr) => tracing::warn!(
                token = %token_id, peer = %addr,
                "API token used from an address outside its allow-list; refused"
            ),
            None => tracing::warn!(
                token = %token_id,
                "API token with an allow-list used from an unknown address; refused"
            ),
        }
        return Ok(None);
    }
    Ok(Some(Caller {
        employer_id,
        registration_number,
        actor: Actor::ApiToken(token_id.to_owned()),
    }))
}

/// Whether `peer` is inside one of the stored blocks (`allowed`, a JSON array of CIDR
/// strings). An IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`) counts as its IPv4 address.
/// An unknown peer, or an allow-list that does not parse, allows nothing.
fn peer_allowed(token_id: &str, allowed: &str, peer: Option<IpAddr>) -> bool {
    let blocks: Vec<IpNet> = match serde_json::from_str::<Vec<String>>(allowed)
        .map_err(|e| e.to_string())
        .and_then(|list| {
            list.iter()
                .map(|b| b.parse::<IpNet>().map_err(|e| format!("{b:?}: {e}")))
                .collect()
        }) {
        Ok(blocks) => blocks,
        Err(e) => {
            tracing::error!(token = %token_id, error = %e, "stored API token allow-list is unreadable; refusing the token");
            return false;
        }
    };
    let Some(peer) = peer else {
        return false;
    };
    let canonical = peer.to_canonical();
    blocks
        .iter()
        .any(|b| b.contains(&peer) || b.contains(&canonical))
}

/// The employer `id`, if it exists.
pub async fn get(db: &Db, id: &str) -> Result<Option<Employer>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as("SELECT id, name, registration_number, created_at FROM employers WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(retention::Error::from)?
    }))
}

/// The employer an operator names by its id or its registration number (the id
/// wins should one employer's id be another's registration number); an unknown
/// name is [`Error::NotFound`], never an empty answer.
pub async fn find(db: &Db, id_or_registration: &str) -> Result<Employer, Error> {
    let named = id_or_registration.trim();
    let found: Option<Employer> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT id, name, registration_number, created_at FROM employers \
             WHERE id = $1 OR registration_number = $1 \
             ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(named)
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    });
    found.ok_or_else(|| {
        Error::NotFound(format!(
            "no employer with id or registration number {named:?} (`ivan admin employer list` shows them)"
        ))
    })
}

/// Every employer, oldest first.
pub async fn list(db: &Db) -> Result<Vec<Employer>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT id, name, registration_number, created_at FROM employers ORDER BY created_at, id",
        )
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use retention::testing::{ManualClock, TestEnv};
    use retention::{LedgerConfig, SystemClock, backend_tests};

    backend_tests!(
        creates_with_token_and_log_entry,
        duplicate_registration_is_a_conflict,
        tokens_authenticate_only_when_whole_and_right,
        allow_lists_restrict_where_a_token_works,
        bad_tokens_are_refused_and_write_nothing,
        revoked_tokens_stop_working,
        another_employers_token_is_not_found,
        list_shows_labels_allow_lists_and_revocations,
    );

    fn op() -> Actor {
        Actor::Operator("t".into())
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    async fn token_rows(env: &TestEnv) -> i64 {
        on_pool!(&env.db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
            .fetch_one(pool).await)
        .unwrap()
    }

    async fn allow_lists_restrict_where_a_token_works(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let e = add(&ledger, &SystemClock, op(), "A", "R-1").await.unwrap();
        let t = create_token(
            &ledger,
            &SystemClock,
            Actor::User("u-1".into()),
            &e.employer.id,
            " payroll ",
            &strings(&[
                "10.0.0.0/8",
                "2001:DB8::/32",
                " 192.0.2.7 ",
                "::ffff:198.51.100.9",
                "10.0.0.0/8",
            ]),
        )
        .await
        .unwrap();
        task.shutdown().await;
        assert_eq!(t.label, "payroll");
        assert_eq!(
            t.allowed_ips,
            [
                "10.0.0.0/8",
                "2001:db8::/32",
                "192.0.2.7/32",
                "198.51.100.9/32"
            ]
        );
        assert!(t.api_token.starts_with(&format!("ivan_{}_", t.id)));
        for inside in [
            "10.0.0.1",
            "10.255.255.255",
            "2001:db8::1",
            "192.0.2.7",
            "198.51.100.9",
            "::ffff:10.1.2.3",
            "::ffff:192.0.2.7",
        ] {
            let caller = authenticate(&env.db, &t.api_token, ip(inside))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{inside} should be let in"));
            assert_eq!(caller.employer_id, e.employer.id);
            assert_eq!(caller.actor, Actor::ApiToken(t.id.clone()));
        }
        for outside in [
            "11.0.0.1",
            "192.0.2.8",
            "127.0.0.1",
            "2001:db9::1",
            "::1",
            "::ffff:11.0.0.1",
        ] {
            assert_eq!(
                authenticate(&env.db, &t.api_token, ip(outside))
                    .await
                    .unwrap(),
                None,
                "{outside} should be refused"
            );
        }
        // An unknown peer is outside every block…
        assert_eq!(
            authenticate(&env.db, &t.api_token, None).await.unwrap(),
            None
        );
        // …but a token without an allow-list works from anywhere.
        assert!(
            authenticate(&env.db, &e.api_token, None)
                .await
                .unwrap()
                .is_some()
        );
        // The wrong secret is refused even from inside.
        let wrong =
            t.api_token
                .replacen(&format!("ivan_{}_", t.id), &format!("ivan_{}_x", t.id), 1);
        assert_eq!(
            authenticate(&env.db, &wrong, ip("10.0.0.1")).await.unwrap(),
            None
        );

        let entries = retention::ledger::entries_after(&env.db, 0, 10)
            .await
            .unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].seq, t.log_seq);
        assert_eq!(entries[1].action, "api-token.create");
        assert_eq!(entries[1].actor, "user:u-1");
        assert_eq!(entries[1].subject, format!("employer:{}", e.employer.id));
        let payload = env
            .originals
            .get(&Sha256Hex::parse(entries[1].payload_sha256.as_deref().unwrap()).unwrap())
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["id"], t.id.as_str());
        assert_eq!(v["label"], "payroll");
        assert_eq!(v["allowed_ips"], serde_json::json!(t.allowed_ips));
        assert_eq!(v["created_by"], "user:u-1");
        let secret = t.api_token.splitn(3, '_').nth(2).unwrap();
        assert!(!String::from_utf8_lossy(&payload).contains(secret));
    }

    async fn bad_tokens_are_refused_and_write_nothing(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let e = add(&ledger, &SystemClock, op(), "A", "R-1").await.unwrap();
        let too_many: Vec<String> = (0..=MAX_ALLOWED_IPS)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect();
        for (allow, names) in [
            (strings(&["10.0.0.0/33"]), "10.0.0.0/33"),
            (strings(&["10.0.0.0/8", "nope"]), "nope"),
            (strings(&["10.1.2.3/8"]), "10.0.0.0/8"),
            (strings(&["2001:db8::/129"]), "2001:db8::/129"),
            (strings(&[""]), "\"\""),
            (too_many, "at most 32"),
        ] {
            let err = create_token(&ledger, &SystemClock, op(), &e.employer.id, "L", &allow)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::Invalid(m) if m.contains(names)),
                "{allow:?}: {err}"
            );
        }
        let long = "x".repeat(MAX_TOKEN_LABEL_CHARS + 1);
        for label in ["", "  ", "a\nb", "bell\u{7}", long.as_str()] {
            let err = create_token(&ledger, &SystemClock, op(), &e.employer.id, label, &[])
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{label:?}: {err}");
        }
        let err = create_token(&ledger, &SystemClock, op(), "no-such-employer", "L", &[])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        task.shutdown().await;
        assert_eq!(token_rows(&env).await, 1, "only the initial token");
        assert_eq!(retention::ledger::size(&env.db).await.unwrap().0, 1);
    }

    async fn revoked_tokens_stop_working(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let e = add(&ledger, &SystemClock, op(), "A", "R-1").await.unwrap();
        let t = create_token(&ledger, &SystemClock, op(), &e.employer.id, "L", &[])
            .await
            .unwrap();
        assert!(
            authenticate(&env.db, &t.api_token, None)
                .await
                .unwrap()
                .is_some()
        );
        let seq = revoke_token(&ledger, op(), &e.employer.id, &t.id)
            .await
            .unwrap();
        assert_eq!(
            authenticate(&env.db, &t.api_token, None).await.unwrap(),
            None
        );
        let err = revoke_token(&ledger, op(), &e.employer.id, &t.id)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        task.shutdown().await;
        // The other token is untouched.
        assert!(
            authenticate(&env.db, &e.api_token, None)
                .await
                .unwrap()
                .is_some()
        );
        let entries = retention::ledger::entries_after(&env.db, 0, 10)
            .await
            .unwrap();
        assert_eq!(entries.len(), 3, "the second revoke wrote nothing");
        assert_eq!(entries[2].seq, seq);
        assert_eq!(entries[2].action, "api-token.revoke");
        assert_eq!(entries[2].actor, "operator:t");
        assert_eq!(entries[2].subject, format!("employer:{}", e.employer.id));
        let payload = env
            .originals
            .get(&Sha256Hex::parse(entries[2].payload_sha256.as_deref().unwrap()).unwrap())
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["id"], t.id.as_str());
    }

    async fn another_employers_token_is_not_found(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let a = add(&ledger, &SystemClock, op(), "A", "R-1").await.unwrap();
        let b = add(&ledger, &SystemClock, op(), "B", "R-2").await.unwrap();
        let other = revoke_token(&ledger, op(), &b.employer.id, &a.api_token_id)
            .await
            .unwrap_err();
        let unknown = revoke_token(&ledger, op(), &b.employer.id, "0000000000000000")
            .await
            .unwrap_err();
        task.shutdown().await;
        assert!(matches!(other, Error::NotFound(_)), "{other}");
        assert!(matches!(unknown, Error::NotFound(_)), "{unknown}");
        // The same answer for both: nothing says the id exists elsewhere.
        assert_eq!(
            other.to_string().replace(&a.api_token_id, "ID"),
            unknown.to_string().replace("0000000000000000", "ID")
        );
        assert!(
            authenticate(&env.db, &a.api_token, None)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(retention::ledger::size(&env.db).await.unwrap().0, 2);
    }

    async fn list_shows_labels_allow_lists_and_revocations(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let clock = ManualClock::new();
        let e = add(&ledger, &clock, op(), "A", "R-1").await.unwrap();
        clock.advance(chrono::Duration::seconds(1));
        let limited = create_token(
            &ledger,
            &clock,
            Actor::User("u-1".into()),
            &e.employer.id,
            "limited",
            &strings(&["10.0.0.0/8"]),
        )
        .await
        .unwrap();
        clock.advance(chrono::Duration::seconds(1));
        let open = create_token(&ledger, &clock, op(), &e.employer.id, "open", &[])
            .await
            .unwrap();
        revoke_token(&ledger, op(), &e.employer.id, &limited.id)
            .await
            .unwrap();
        let other = add(&ledger, &clock, op(), "B", "R-2").await.unwrap();
        task.shutdown().await;
        let list = list_tokens(&env.db, &e.employer.id).await.unwrap();
        let ids: Vec<&str> = list.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                open.id.as_str(),
                limited.id.as_str(),
                e.api_token_id.as_str()
            ]
        );
        assert_eq!(list[0].label.as_deref(), Some("open"));
        assert!(list[0].allowed_ips.is_empty());
        assert_eq!(list[0].created_by.as_deref(), Some("operator:t"));
        assert_eq!(list[0].created_at, open.created_at);
        assert_eq!(list[0].revoked_at, None);
        assert_eq!(list[1].label.as_deref(), Some("limited"));
        assert_eq!(list[1].allowed_ips, ["10.0.0.0/8"]);
        assert_eq!(list[1].created_by.as_deref(), Some("user:u-1"));
        assert!(list[1].revoked_at.is_some());
        assert_eq!(list[2].label.as_deref(), Some(INITIAL_TOKEN_LABEL));
        assert_eq!(list[2].created_by.as_deref(), Some("operator:t"));
        assert_eq!(list[2].revoked_at, None);
        let json = serde_json::to_string(&list).unwrap();
        assert!(!json.contains("secret"), "{json}");
        let others = list_tokens(&env.db, &other.employer.id).await.unwrap();
        assert_eq!(others.len(), 1);
        assert!(list_tokens(&env.db, "nobody").await.unwrap().is_empty());
    }

    async fn tokens_authenticate_only_when_whole_and_right(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let c = add(
            &ledger,
            &SystemClock,
            Actor::Operator("t".into()),
            "A",
            "R-1",
        )
        .await
        .unwrap();
        task.shutdown().await;
        let caller = authenticate(&env.db, &c.api_token, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(caller.employer_id, c.employer.id);
        assert_eq!(caller.registration_number, "R-1");
        assert_eq!(caller.actor, Actor::ApiToken(c.api_token_id.clone()));
        let (head, last) = c.api_token.split_at(c.api_token.len() - 1);
        let wrong_secret = format!("{head}{}", if last == "x" { "y" } else { "x" });
        let wrong_id = c.api_token.replacen(&c.api_token_id, "0000000000000000", 1);
        for bad in [
            "",
            "ivan_",
            "Bearer x",
            wrong_secret.as_str(),
            wrong_id.as_str(),
            &c.api_token[..20],
        ] {
            assert_eq!(
                authenticate(&env.db, bad, None).await.unwrap(),
                None,
                "{bad}"
            );
        }
    }

    async fn creates_with_token_and_log_entry(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let c = add(
            &ledger,
            &SystemClock,
            Actor::Operator("t".into()),
            " ACME s.r.o. ",
            "12345678",
        )
        .await
        .unwrap();
        task.shutdown().await;
        assert_eq!(c.employer.name, "ACME s.r.o.");
        assert!(
            c.api_token
                .starts_with(&format!("ivan_{}_", c.api_token_id))
        );
        assert_eq!(list(&env.db).await.unwrap(), vec![c.employer.clone()]);
        let entries = retention::ledger::entries_after(&env.db, 0, 10)
            .await
            .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].action, "employer.create");
        assert_eq!(entries[0].subject, format!("employer:{}", c.employer.id));
        // The stored hash is of the secret; the token itself is nowhere in the database.
        // `ivan_<hex id>_<secret>`; the base64url secret may itself contain '_'.
        let secret = c.api_token.splitn(3, '_').nth(2).unwrap();
        let stored: String = on_pool!(&env.db, pool => sqlx::query_scalar(
            "SELECT secret_sha256 FROM api_tokens WHERE id = $1")
            .bind(&c.api_token_id).fetch_one(pool).await)
        .unwrap();
        assert_eq!(stored, Sha256Hex::of(secret.as_bytes()).as_str());
        let payload = env
            .originals
            .get(&Sha256Hex::parse(entries[0].payload_sha256.as_deref().unwrap()).unwrap())
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&payload).contains(secret));
    }

    async fn duplicate_registration_is_a_conflict(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let op = || Actor::Operator("t".into());
        add(&ledger, &SystemClock, op(), "A", "R-1").await.unwrap();
        let err = add(&ledger, &SystemClock, op(), "B", "R-1")
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Record(retention::Error::Conflict(_))),
            "{err}"
        );
        for (name, reg) in [("", "R-2"), ("C", ""), ("C", "R 2"), ("C\u{7}", "R-2")] {
            let err = add(&ledger, &SystemClock, op(), name, reg)
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{name:?} {reg:?}: {err}");
        }
        task.shutdown().await;
        assert_eq!(list(&env.db).await.unwrap().len(), 1);
        assert_eq!(retention::ledger::size(&env.db).await.unwrap().0, 1);
    }
}
