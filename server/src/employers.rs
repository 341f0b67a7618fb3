//! Employers (the filers) and their API tokens, onboarded by the operator.
//!
//! An API token is `ivan_<token id>_<secret>`. Only the SHA-256 of the secret is
//! stored (the secret is 256 random bits, so a fast hash is the right tool; a
//! password hash would add nothing). The token is shown once, at creation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use retention::keys::os_random;
use retention::ledger::{NewEntry, Payload, Work};
use retention::{Actor, Clock, Db, DbConn, EmployerId, Ledger, Sha256Hex, on_conn, on_pool};
use serde::Serialize;

use crate::Error;

/// Longest employer name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest registration number, in characters.
pub const MAX_REGISTRATION_CHARS: usize = 32;

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
    let token_id = hex::encode(os_random::<8>()?);
    let secret = URL_SAFE_NO_PAD.encode(os_random::<32>()?);
    let api_token = format!("ivan_{token_id}_{secret}");
    let secret_sha256 = Sha256Hex::of(secret.as_bytes());

    let payload = serde_json::to_vec(&serde_json::json!({
        "id": employer.id,
        "name": employer.name,
        "registration_number": employer.registration_number,
        "created_at": retention::ledger::format_time(&employer.created_at),
        "api_token_id": token_id,
    }))
    .map_err(|e| Error::Invalid(e.to_string()))?;

    let row = employer.clone();
    let tid = token_id.clone();
    let work: Work = Box::new(move |mut conn: DbConn<'_>, _at: Vec<retention::Appended>| {
        Box::pin(async move {
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
            if let Err(sqlx::Error::Database(e)) = &inserted
                && e.is_unique_violation()
            {
                return Err(retention::Error::Conflict(format!(
                    "an employer with registration number {} already exists",
                    row.registration_number
                )));
            }
            inserted?;
            on_conn!(&mut conn, c => {
                sqlx::query(
                    "INSERT INTO api_tokens (id, employer_id, secret_sha256, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&tid)
                .bind(&row.id)
                .bind(secret_sha256.as_str())
                .bind(row.created_at)
                .execute(&mut *c)
                .await?;
            });
            Ok(())
        })
    });
    let appended = ledger
        .append_with(
            NewEntry {
                actor,
                action: "employer.create".into(),
                subject: format!("employer:{}", employer.id),
                payload: Some(Payload {
                    bytes: Bytes::from(payload),
                    media_type: "application/json".into(),
                }),
            },
            work,
        )
        .await?;
    Ok(Created {
        employer,
        api_token_id: token_id,
        api_token,
        log_seq: appended.seq,
    })
}

/// Sets the employer's notification address, recorded as `employer.set-email` (payload:
/// the new address) in the same transaction. Returns the address as stored and the
/// entry's position.
pub async fn set_email(
    ledger: &Ledger,
    actor: Actor,
    employer_id: &str,
    email: &str,
) -> Result<(String, i64), Error> {
    let email = crate::mail::parse_address(email)?;
    let (id, address) = (employer_id.to_owned(), email.clone());
    let work: Work = Box::new(move |mut conn: DbConn<'_>, _at: Vec<retention::Appended>| {
        Box::pin(async move {
            let n = on_conn!(&mut conn, c => {
                sqlx::query("UPDATE employers SET notify_email = $1 WHERE id = $2")
                    .bind(&address)
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
        })
    });
    let appended = ledger
        .append_with(
            NewEntry {
                actor,
                action: "employer.set-email".into(),
                subject: format!("employer:{employer_id}"),
                payload: Some(Payload {
                    bytes: Bytes::from(email.clone().into_bytes()),
                    media_type: "text/plain".into(),
                }),
            },
            work,
        )
        .await?;
    Ok((email, appended.seq))
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
/// its secret must hash to the stored SHA-256. `None` for anything else — callers
/// answer 401 without saying which part was wrong.
pub async fn authenticate(db: &Db, token: &str) -> Result<Option<Caller>, Error> {
    let Some((token_id, secret)) = token
        .strip_prefix("ivan_")
        .and_then(|rest| rest.split_once('_'))
        .filter(|(id, secret)| {
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty()
        })
    else {
        return Ok(None);
    };
    let row: Option<(String, String, String)> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT t.secret_sha256, e.id, e.registration_number FROM api_tokens t \
             JOIN employers e ON e.id = t.employer_id \
             WHERE t.id = $1 AND t.revoked_at IS NULL",
        )
        .bind(token_id)
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    });
    let Some((stored, employer_id, registration_number)) = row else {
        return Ok(None);
    };
    let given = Sha256Hex::of(secret.as_bytes());
    // Compare without an early exit, so timing says nothing about the stored hash.
    let same = stored.len() == given.as_str().len()
        && stored
            .bytes()
            .zip(given.as_str().bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    Ok(same.then(|| Caller {
        employer_id,
        registration_number,
        actor: Actor::ApiToken(token_id.to_owned()),
    }))
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
    use retention::testing::TestEnv;
    use retention::{LedgerConfig, SystemClock, backend_tests};

    backend_tests!(
        creates_with_token_and_log_entry,
        duplicate_registration_is_a_conflict,
        tokens_authenticate_only_when_whole_and_right,
    );

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
        let caller = authenticate(&env.db, &c.api_token).await.unwrap().unwrap();
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
            assert_eq!(authenticate(&env.db, bad).await.unwrap(), None, "{bad}");
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
