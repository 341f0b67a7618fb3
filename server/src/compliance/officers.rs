//! Compliance officers: portal users of an organisation (not of an employer) who search
//! the log and export evidence. The operator invites them (`ivan admin officer add`);
//! they enrol a passkey from the mailed link like employers' users, and may hold
//! personal API tokens (`ivan-officer_<id>_<secret>`, only the SHA-256 of the secret
//! kept) for their tools. Officer tokens live in their own table: they never reach an
//! employer's routes, and employers' tokens never reach the compliance routes.

use chrono::{DateTime, Utc};
use retention::ledger::{NewEntry, Work};
use retention::{Actor, Clock, Db, Ledger, Payload, on_conn, on_pool};
use serde::Serialize;

use crate::Error;
use crate::accounts::{self, User};
use crate::employers::{mint, secret_matches, split_token, validate_label};

/// What officers' tokens start with.
pub const TOKEN_PREFIX: &str = "ivan-officer_";

/// An authenticated compliance officer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Officer {
    pub user_id: String,
    pub email: String,
    pub organisation: String,
    /// How they proved it: `officer-token:<id>` or `portal-session`.
    pub credential: String,
}

impl Officer {
    pub fn actor(&self) -> Actor {
        Actor::User(self.user_id.clone())
    }

    /// The officer behind a portal user, if the user is one.
    pub fn of_user(user: &User) -> Option<Officer> {
        if !user.is_officer() {
            return None;
        }
        Some(Officer {
            user_id: user.id.clone(),
            email: user.email.clone(),
            organisation: user.organisation.clone().unwrap_or_default(),
            credential: "portal-session".into(),
        })
    }
}

/// Every compliance officer (revoked ones too), oldest first.
pub async fn list(db: &Db) -> Result<Vec<User>, Error> {
    Ok(accounts::list(db, None)
        .await?
        .into_iter()
        .filter(|u| u.role == accounts::OFFICER_ROLE)
        .collect())
}

/// A new officer token, shown once.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedToken {
    pub id: String,
    pub officer: String,
    /// The whole token; only the SHA-256 of its secret is stored.
    pub token: String,
    pub label: String,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub created_at: DateTime<Utc>,
    pub log_seq: i64,
}

/// An officer token as listed (never its secret).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: String,
    pub user_id: String,
    pub label: String,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "retention::ledger::serialize_opt_time")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Creates a personal API token for an active officer; logged as
/// `officer-token.create` (subject `user:<id>`; never the secret).
pub async fn create_token(
    ledger: &Ledger,
    db: &Db,
    clock: &dyn Clock,
    actor: Actor,
    officer_id: &str,
    label: &str,
) -> Result<CreatedToken, Error> {
    let label = validate_label(label)?;
    match accounts::user(db, officer_id).await? {
        Some(u) if u.is_officer() => {}
        _ => {
            return Err(Error::NotFound(format!(
                "no active compliance officer {officer_id}"
            )));
        }
    }
    let minted = mint(TOKEN_PREFIX)?;
    let created_at = clock.now();
    let payload = Payload::json(&serde_json::json!({
        "id": minted.id,
        "officer": officer_id,
        "label": label,
        "created_at": retention::ledger::format_time(&created_at),
    }));
    let (id, user_id, hash, row_label) = (
        minted.id.clone(),
        officer_id.to_owned(),
        minted.secret_sha256.clone(),
        label.clone(),
    );
    let work: Work = retention::work!(|conn, _at| {
        on_conn!(&mut conn, c => {
            sqlx::query(
                "INSERT INTO officer_tokens (id, user_id, secret_sha256, label, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(&user_id)
            .bind(hash.as_str())
            .bind(&row_label)
            .bind(created_at)
            .execute(&mut *c)
            .await?;
        });
        Ok(())
    });
    let appended = ledger
        .append_with(
            NewEntry {
                actor,
                action: "officer-token.create".into(),
                subject: format!("user:{officer_id}"),
                payload: Some(payload),
            },
            work,
        )
        .await?;
    Ok(CreatedToken {
        id: minted.id,
        officer: officer_id.to_owned(),
        token: minted.token,
        label,
        created_at,
        log_seq: appended.seq,
    })
}

/// An officer's tokens (or every officer's), newest first.
pub async fn list_tokens(db: &Db, officer_id: Option<&str>) -> Result<Vec<TokenInfo>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as::<_, TokenInfo>(
            "SELECT id, user_id, label, created_at, revoked_at FROM officer_tokens \
             WHERE ($1 IS NULL OR user_id = $1) ORDER BY created_at DESC, id",
        )
        .bind(officer_id)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    }))
}

/// Revokes an officer token (it stops working at once); logged as
/// `officer-token.revoke`. `NotFound` when there is no such active token.
pub async fn revoke_token(
    ledger: &Ledger,
    clock: &dyn Clock,
    actor: Actor,
    token_id: &str,
) -> Result<i64, Error> {
    let now = clock.now();
    let id = token_id.to_owned();
    let work: Work = retention::work!(|conn, _at| {
        let n = on_conn!(&mut conn, c => {
            sqlx::query("UPDATE officer_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(&id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(retention::Error::Conflict(format!(
                "no active officer token {id}"
            )));
        }
        Ok(())
    });
    let appended = ledger
        .append_with(
            NewEntry {
                actor,
                action: "officer-token.revoke".into(),
                subject: format!("officer-token:{token_id}"),
                payload: None,
            },
            work,
        )
        .await
        .map_err(|e| match e {
            retention::Error::Conflict(m) => Error::NotFound(m),
            e => Error::Record(e),
        })?;
    Ok(appended.seq)
}

/// The officer an officer token (`ivan-officer_<id>_<secret>`) stands for: the token
/// must exist, be unrevoked, its secret must match, and its officer be active.
/// `None` for anything else (the caller answers 401 without saying which).
pub async fn authenticate(db: &Db, token: &str) -> Result<Option<Officer>, Error> {
    let Some((token_id, secret)) = split_token(token, TOKEN_PREFIX) else {
        return Ok(None);
    };
    let row: Option<(String, String, String, Option<String>)> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT t.secret_sha256, u.id, u.email, u.organisation FROM officer_tokens t \
             JOIN users u ON u.id = t.user_id \
             WHERE t.id = $1 AND t.revoked_at IS NULL AND u.revoked_at IS NULL \
             AND u.role = 'officer'",
        )
        .bind(token_id)
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    });
    let Some((stored, user_id, email, organisation)) = row else {
        return Ok(None);
    };
    if !secret_matches(&stored, secret) {
        return Ok(None);
    }
    Ok(Some(Officer {
        user_id,
        email,
        organisation: organisation.unwrap_or_default(),
        credential: format!("officer-token:{token_id}"),
    }))
}
