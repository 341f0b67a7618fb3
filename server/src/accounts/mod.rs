//! Portal users, their enrolment invitations and their passkeys.
//!
//! The operator invites a user (`ivan admin user invite`): the user row, a
//! single-use invitation (only the SHA-256 of its secret is kept) and the mail with
//! the enrolment link are written in one transaction with the `user.invite` log entry.
//! The link registers the user's first passkey (`user.enrol`); a signed-in user may add
//! more (`user.passkey-add`) and remove any but the last (`user.passkey-remove`). The
//! operator can revoke a user (`user.revoke`), which ends their sessions at once.
//! Inviting an active user again sends a fresh link (for a user who lost every
//! passkey); earlier unused links of that user stop working.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use retention::keys::os_random;
use retention::ledger::{NewEntry, Work};
use retention::{Actor, Appended, Clock, Db, Ledger, Payload, Sha256Hex, on_conn, on_pool};
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::Passkey;

use crate::Error;
use crate::mail;

pub mod sessions;

/// What a user may do: an `admin` also manages phone accesses and API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Clerk,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clerk => "clerk",
        }
    }
}

/// Longest accepted organisation name of a compliance officer, in characters.
pub const MAX_ORGANISATION_CHARS: usize = 200;

/// Whom a user acts for: an employer (as admin or clerk), or, as a compliance
/// officer, an organisation (and no employer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    Employer { employer_id: String, role: Role },
    Officer { organisation: String },
}

impl Membership {
    pub fn employer(employer_id: &str, role: Role) -> Self {
        Membership::Employer {
            employer_id: employer_id.to_owned(),
            role,
        }
    }

    /// A compliance officer of `organisation` (trimmed; 1 to 200 characters, no
    /// control characters).
    pub fn officer(organisation: &str) -> Result<Self, Error> {
        let organisation = organisation.trim();
        if organisation.is_empty()
            || organisation.chars().count() > MAX_ORGANISATION_CHARS
            || organisation.chars().any(char::is_control)
        {
            return Err(Error::Invalid(format!(
                "the organisation must be 1 to {MAX_ORGANISATION_CHARS} characters without control characters"
            )));
        }
        Ok(Membership::Officer {
            organisation: organisation.to_owned(),
        })
    }

    fn role(&self) -> &'static str {
        match self {
            Membership::Employer { role, .. } => role.as_str(),
            Membership::Officer { .. } => OFFICER_ROLE,
        }
    }

    fn employer_id(&self) -> Option<&str> {
        match self {
            Membership::Employer { employer_id, .. } => Some(employer_id),
            Membership::Officer { .. } => None,
        }
    }

    fn organisation(&self) -> Option<&str> {
        match self {
            Membership::Employer { .. } => None,
            Membership::Officer { organisation } => Some(organisation),
        }
    }
}

/// The `role` of compliance officers.
pub const OFFICER_ROLE: &str = "officer";

/// A portal user.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: String,
    /// `None` for a compliance officer.
    pub employer_id: Option<String>,
    /// A compliance officer's organisation.
    pub organisation: Option<String>,
    pub email: String,
    pub role: String,
    #[serde(skip)]
    pub webauthn_handle: String,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "retention::ledger::serialize_opt_time")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// The portal language the user chose (`en`, `sk`, `cs`); `None`: the browser's.
    #[serde(skip)]
    pub language: Option<String>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin.as_str()
    }

    pub fn is_officer(&self) -> bool {
        self.role == OFFICER_ROLE && self.employer_id.is_none()
    }

    pub fn actor(&self) -> Actor {
        Actor::User(self.id.clone())
    }
}

const USER_COLUMNS: &str =
    "id, employer_id, organisation, email, role, webauthn_handle, created_at, revoked_at, language";

/// The e-mail address of each portal user among `actors` (log actors such as
/// `user:<id>`; others are skipped), by user id: how pages name who acted.
pub async fn emails_of(
    db: &Db,
    actors: &[&str],
) -> Result<std::collections::HashMap<String, String>, Error> {
    let mut emails = std::collections::HashMap::new();
    for actor in actors {
        if let Some(("user", id)) = actor.split_once(':')
            && !emails.contains_key(id)
            && let Some(u) = user(db, id).await?
        {
            emails.insert(id.to_owned(), u.email);
        }
    }
    Ok(emails)
}

/// Keeps the portal language a user chose (a preference, not a transaction: not
/// logged).
pub async fn set_language(db: &Db, user_id: &str, language: &str) -> Result<(), Error> {
    on_pool!(db, pool => {
        sqlx::query("UPDATE users SET language = $1 WHERE id = $2")
            .bind(language)
            .bind(user_id)
            .execute(pool)
            .await
            .map(drop)
            .map_err(retention::Error::from)?
    });
    Ok(())
}

/// What `invite` did.
#[derive(Debug, Clone, Serialize)]
pub struct Invited {
    pub user: User,
    pub invitation_id: String,
    #[serde(serialize_with = "retention::ledger::serialize_time")]
    pub expires_at: DateTime<Utc>,
    pub log_seq: i64,
}

/// Records `action` on `subject` with a JSON payload, and `work` in the same
/// transaction.
async fn record(
    ledger: &Ledger,
    actor: Actor,
    action: &str,
    subject: String,
    payload: serde_json::Value,
    work: Work,
) -> Result<Appended, Error> {
    Ok(ledger
        .append_with(
            NewEntry {
                actor,
                action: action.into(),
                subject,
                payload: Some(Payload::json(&payload)),
            },
            work,
        )
        .await?)
}

/// Invites `email` to the portal as `membership` says (an employer's admin or clerk,
/// or a compliance officer); the enrolment link (under `portal_origin`) is mailed
/// through the outbox and valid for `valid`.
#[allow(clippy::too_many_arguments)]
pub async fn invite(
    ledger: &Ledger,
    db: &Db,
    clock: &dyn Clock,
    actor: Actor,
    portal_origin: &str,
    membership: &Membership,
    email: &str,
    valid: Duration,
    language: Option<crate::i18n::Lang>,
) -> Result<Invited, Error> {
    let email = mail::parse_address(email)?.to_ascii_lowercase();
    let role = membership.role();
    let now = clock.now();
    let existing = match membership {
        Membership::Employer { employer_id, .. } => {
            let employer_exists: Option<String> = on_pool!(db, pool => {
                sqlx::query_scalar("SELECT id FROM employers WHERE id = $1")
                    .bind(employer_id)
                    .fetch_optional(pool)
                    .await
                    .map_err(retention::Error::from)?
            });
            if employer_exists.is_none() {
                return Err(Error::NotFound(format!("no employer {employer_id}")));
            }
            on_pool!(db, pool => {
                sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE employer_id = $1 AND email = $2 AND revoked_at IS NULL"
                )))
                .bind(employer_id)
                .bind(&email)
                .fetch_optional(pool)
                .await
                .map_err(retention::Error::from)?
            })
        }
        Membership::Officer { .. } => on_pool!(db, pool => {
            sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE role = 'officer' AND email = $1 AND revoked_at IS NULL"
            )))
            .bind(&email)
            .fetch_optional(pool)
            .await
            .map_err(retention::Error::from)?
        }),
    };
    let (user, is_new) = match existing {
        Some(u) if u.role != role => {
            return Err(Error::Conflict(format!(
                "{email} is already a user of this employer, as {}; revoke it first to change the role",
                u.role
            )));
        }
        Some(u) if u.organisation.as_deref() != membership.organisation() => {
            return Err(Error::Conflict(format!(
                "{email} is already a compliance officer of {}; revoke it first to change the organisation",
                u.organisation.as_deref().unwrap_or("?")
            )));
        }
        Some(mut u) => {
            if let Some(l) = language {
                u.language = Some(l.tag().to_owned());
            }
            (u, false)
        }
        None => (
            User {
                id: uuid::Uuid::now_v7().to_string(),
                employer_id: membership.employer_id().map(str::to_owned),
                organisation: membership.organisation().map(str::to_owned),
                email: email.clone(),
                role: role.to_owned(),
                webauthn_handle: uuid::Uuid::new_v4().to_string(),
                created_at: now,
                revoked_at: None,
                language: language.map(|l| l.tag().to_owned()),
            },
            true,
        ),
    };
    let invitation_id = hex::encode(os_random::<8>()?);
    let secret = URL_SAFE_NO_PAD.encode(os_random::<32>()?);
    let expires_at = now + valid;
    // In the language asked for, else the one the user chose, else English; the
    // user's portal is in it from their first page.
    let lang = user
        .language
        .as_deref()
        .and_then(crate::i18n::Lang::from_tag)
        .unwrap_or_default();
    let invited_as = match membership {
        Membership::Employer { role, .. } => lang.t_with(
            "mail-invited-employer",
            &[("role", &lang.label("role", role.as_str()))],
        ),
        Membership::Officer { organisation } => {
            lang.t_with("mail-invited-officer", &[("organisation", organisation)])
        }
    };
    let link = format!(
        "{}/portal/enrol?token={invitation_id}.{}",
        portal_origin.trim_end_matches('/'),
        mail::SECRET_PLACEHOLDER,
    );
    let body = lang.t_with(
        "mail-invitation-body",
        &[
            ("invited_as", &invited_as),
            ("email", &email),
            ("expires", &crate::i18n::shown(&expires_at)),
            ("link", &link),
        ],
    );
    let subject = mail::subject(lang, mail::Kind::Invitation, "");
    let payload = serde_json::json!({
        "user_id": user.id,
        "employer_id": membership.employer_id(),
        "organisation": membership.organisation(),
        "email": email,
        "role": role,
        "invitation_id": invitation_id,
        "expires_at": retention::ledger::format_time(&expires_at),
        "new_user": is_new,
    });
    let (row, iid, hash) = (
        user.clone(),
        invitation_id.clone(),
        Sha256Hex::of(secret.as_bytes()),
    );
    let work: Work = retention::work!(|conn, _at| {
        if is_new {
            let inserted = on_conn!(&mut conn, c => {
                sqlx::query(
                    "INSERT INTO users (id, employer_id, organisation, email, role, webauthn_handle, created_at, language) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&row.id)
                .bind(&row.employer_id)
                .bind(&row.organisation)
                .bind(&row.email)
                .bind(&row.role)
                .bind(&row.webauthn_handle)
                .bind(row.created_at)
                .bind(&row.language)
                .execute(&mut *c)
                .await
                .map(drop)
            });
            retention::conflict_on_duplicate(inserted, || {
                format!("{} was invited at the same moment; try again", row.email)
            })?;
        }
        on_conn!(&mut conn, c => {
            // A language given with a new invitation of a known user is theirs now.
            sqlx::query("UPDATE users SET language = $1 WHERE id = $2 AND $1 IS NOT NULL")
                .bind(&row.language)
                .bind(&row.id)
                .execute(&mut *c)
                .await?;
            // Earlier unused links of this user stop working.
            sqlx::query(
                "UPDATE user_invitations SET expires_at = $1 WHERE user_id = $2 \
                 AND used_at IS NULL AND expires_at > $1",
            )
            .bind(now)
            .bind(&row.id)
            .execute(&mut *c)
            .await?;
            sqlx::query(
                "INSERT INTO user_invitations (id, user_id, secret_sha256, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&iid)
            .bind(&row.id)
            .bind(hash.as_str())
            .bind(now)
            .bind(expires_at)
            .execute(&mut *c)
            .await?;
        });
        mail::enqueue_with_secret(
            &mut conn,
            mail::Kind::Invitation,
            &row.email,
            &subject,
            &body,
            &secret,
            now,
        )
        .await
    });
    let appended = record(
        ledger,
        actor,
        "user.invite",
        format!("user:{}", user.id),
        payload,
        work,
    )
    .await?;
    Ok(Invited {
        user,
        invitation_id,
        expires_at,
        log_seq: appended.seq,
    })
}

/// The user and invitation an enrolment token (`<invitation id>.<secret>`) stands
/// for, if it is whole, unused, unexpired and its user active. `None` otherwise —
/// the page says only that the link is not valid.
pub async fn invitation(
    db: &Db,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<(User, String)>, Error> {
    let Some((id, secret)) = token.split_once('.').filter(|(id, s)| {
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !s.is_empty()
    }) else {
        return Ok(None);
    };
    let row: Option<(String, String, DateTime<Utc>)> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT user_id, secret_sha256, expires_at FROM user_invitations \
             WHERE id = $1 AND used_at IS NULL",
        )
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    });
    let Some((user_id, stored, expires_at)) = row else {
        return Ok(None);
    };
    if !crate::employers::secret_matches(&stored, secret) || expires_at <= now {
        return Ok(None);
    }
    Ok(user(db, &user_id).await?.map(|u| (u, id.to_owned())))
}

/// An active user by id.
pub async fn user(db: &Db, id: &str) -> Result<Option<User>, Error> {
    active_user_by(db, "id", id).await
}

/// An active user by WebAuthn user handle.
pub async fn user_by_handle(db: &Db, handle: &uuid::Uuid) -> Result<Option<User>, Error> {
    active_user_by(db, "webauthn_handle", &handle.to_string()).await
}

/// The active user whose unique `column` (a name from this module) is `value`.
async fn active_user_by(db: &Db, column: &'static str, value: &str) -> Result<Option<User>, Error> {
    let condition = format!("{column} = $1 AND revoked_at IS NULL");
    Ok(users_where(db, &condition, Some(value)).await?.pop())
}

/// Users, optionally of one employer, oldest first.
pub async fn list(db: &Db, employer_id: Option<&str>) -> Result<Vec<User>, Error> {
    users_where(
        db,
        "($1 IS NULL OR employer_id = $1) ORDER BY id",
        employer_id,
    )
    .await
}

/// The users `condition` (SQL of this module, over `$1` = `value`) selects.
async fn users_where(db: &Db, condition: &str, value: Option<&str>) -> Result<Vec<User>, Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {condition}");
    Ok(on_pool!(db, pool => {
        sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .fetch_all(pool)
            .await
            .map_err(retention::Error::from)?
    }))
}

/// Revokes a user: no more sign-ins, and their sessions end now.
pub async fn revoke(
    ledger: &Ledger,
    actor: Actor,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<i64, Error> {
    let id = user_id.to_owned();
    let work: Work = retention::work!(|conn, _at| {
        let n = on_conn!(&mut conn, c => {
            let n = sqlx::query("UPDATE users SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(&id)
                .execute(&mut *c)
                .await?
                .rows_affected();
            sqlx::query("UPDATE portal_sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL")
                .bind(now)
                .bind(&id)
                .execute(&mut *c)
                .await?;
            n
        });
        if n == 1 {
            Ok(())
        } else {
            Err(retention::Error::Conflict(format!("no active user {id}")))
        }
    });
    let appended = record(
        ledger,
        actor,
        "user.revoke",
        format!("user:{user_id}"),
        serde_json::json!({ "user_id": user_id }),
        work,
    )
    .await?;
    Ok(appended.seq)
}

/// A registered passkey.
#[derive(Debug, Clone)]
pub struct StoredPasskey {
    /// The credential id, base64url.
    pub id: String,
    pub name: String,
    pub passkey: Passkey,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A credential id as stored (base64url, no padding).
pub fn credential_id(raw: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(raw)
}

type PasskeyRow = (String, String, String, DateTime<Utc>, Option<DateTime<Utc>>);

fn stored(row: PasskeyRow) -> Result<StoredPasskey, Error> {
    let (id, name, json, created_at, last_used_at) = row;
    let passkey = serde_json::from_str(&json)
        .map_err(|e| Error::Invalid(format!("stored passkey {id} is unreadable: {e}")))?;
    Ok(StoredPasskey {
        id,
        name,
        passkey,
        created_at,
        last_used_at,
    })
}

/// A user's passkeys, oldest first.
pub async fn passkeys(db: &Db, user_id: &str) -> Result<Vec<StoredPasskey>, Error> {
    let rows: Vec<PasskeyRow> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT id, name, passkey, created_at, last_used_at FROM passkeys \
             WHERE user_id = $1 AND removed_at IS NULL ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    });
    rows.into_iter().map(stored).collect()
}

/// One of the user's passkeys by credential id.
pub async fn passkey(
    db: &Db,
    user_id: &str,
    credential: &str,
) -> Result<Option<StoredPasskey>, Error> {
    let row: Option<PasskeyRow> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT id, name, passkey, created_at, last_used_at FROM passkeys \
             WHERE id = $1 AND user_id = $2 AND removed_at IS NULL",
        )
        .bind(credential)
        .bind(user_id)
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    });
    row.map(stored).transpose()
}

/// Notes a passkey's use (and its new signature counter, if it has one).
pub async fn passkey_used(db: &Db, key: &StoredPasskey, now: DateTime<Utc>) -> Result<(), Error> {
    let json = serde_json::to_string(&key.passkey).map_err(|e| Error::Invalid(e.to_string()))?;
    on_pool!(db, pool => {
        sqlx::query("UPDATE passkeys SET passkey = $1, last_used_at = $2 WHERE id = $3")
            .bind(&json)
            .bind(now)
            .bind(&key.id)
            .execute(pool)
            .await
            .map_err(retention::Error::from)?;
    });
    Ok(())
}

fn passkey_name(name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 60 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "a passkey's name must be 1 to 60 characters".into(),
        ));
    }
    Ok(name.to_owned())
}

/// Registers a passkey: the first one from an invitation (`invitation` is consumed in
/// the same transaction), or another one of a signed-in user.
pub async fn add_passkey(
    ledger: &Ledger,
    user: &User,
    invitation: Option<&str>,
    passkey: &Passkey,
    name: &str,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    let name = passkey_name(name)?;
    let id = credential_id(passkey.cred_id().as_ref());
    let json = serde_json::to_string(passkey).map_err(|e| Error::Invalid(e.to_string()))?;
    let action = if invitation.is_some() {
        "user.enrol"
    } else {
        "user.passkey-add"
    };
    // The public key is in the log, so step-up assertions can be checked offline.
    let payload = serde_json::json!({
        "user_id": user.id,
        "passkey_id": id,
        "name": name,
        "invitation_id": invitation,
        "public_key": passkey.get_public_key(),
    });
    let (uid, pid, inv) = (user.id.clone(), id.clone(), invitation.map(str::to_owned));
    let work: Work = retention::work!(|conn, _at| {
        if let Some(inv) = inv {
            let n = on_conn!(&mut conn, c => {
                sqlx::query(
                    "UPDATE user_invitations SET used_at = $1 WHERE id = $2 AND user_id = $3 \
                     AND used_at IS NULL AND expires_at > $1",
                )
                .bind(now)
                .bind(&inv)
                .bind(&uid)
                .execute(&mut *c)
                .await?
                .rows_affected()
            });
            if n != 1 {
                return Err(retention::Error::Conflict(
                    "this enrolment link has been used or has expired".into(),
                ));
            }
        }
        let inserted = on_conn!(&mut conn, c => {
            sqlx::query(
                "INSERT INTO passkeys (id, user_id, name, passkey, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&pid)
            .bind(&uid)
            .bind(&name)
            .bind(&json)
            .bind(now)
            .execute(&mut *c)
            .await
            .map(drop)
        });
        retention::conflict_on_duplicate(inserted, || "this passkey is already registered".into())
    });
    record(
        ledger,
        user.actor(),
        action,
        format!("user:{}", user.id),
        payload,
        work,
    )
    .await?;
    Ok(id)
}

/// Removes one of the user's passkeys, never the last one; sessions signed in with
/// it end.
pub async fn remove_passkey(
    ledger: &Ledger,
    user: &User,
    passkey_id: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let (uid, pid) = (user.id.clone(), passkey_id.to_owned());
    let work: Work = retention::work!(|conn, _at| {
        let (exists, n) = on_conn!(&mut conn, c => {
            let exists: Option<String> = sqlx::query_scalar(
                "SELECT id FROM passkeys WHERE id = $1 AND user_id = $2 AND removed_at IS NULL",
            )
            .bind(&pid)
            .bind(&uid)
            .fetch_optional(&mut *c)
            .await?;
            let n = sqlx::query(
                "UPDATE passkeys SET removed_at = $1 WHERE id = $2 AND user_id = $3 \
                 AND removed_at IS NULL AND \
                 (SELECT COUNT(*) FROM passkeys WHERE user_id = $3 AND removed_at IS NULL) > 1",
            )
            .bind(now)
            .bind(&pid)
            .bind(&uid)
            .execute(&mut *c)
            .await?
            .rows_affected();
            if n == 1 {
                // Sessions signed in with it end too (a lost key's finder's).
                sqlx::query(
                    "UPDATE portal_sessions SET ended_at = $1 WHERE user_id = $2 \
                     AND passkey_id = $3 AND ended_at IS NULL",
                )
                .bind(now)
                .bind(&uid)
                .bind(&pid)
                .execute(&mut *c)
                .await?;
            }
            (exists, n)
        });
        match (exists, n) {
            (None, _) => Err(retention::Error::Invalid(format!("no passkey {pid}"))),
            (Some(_), 0) => Err(retention::Error::Conflict(
                "this is your last passkey: add another one before removing it".into(),
            )),
            _ => Ok(()),
        }
    });
    match record(
        ledger,
        user.actor(),
        "user.passkey-remove",
        format!("user:{}", user.id),
        serde_json::json!({ "user_id": user.id, "passkey_id": passkey_id }),
        work,
    )
    .await
    {
        Err(Error::Record(retention::Error::Invalid(m))) => Err(Error::NotFound(m)),
        other => other.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retention::testing::TestEnv;
    use retention::{LedgerConfig, SystemClock, backend_tests};

    /// The record refused the change as conflicting with what it holds.
    fn assert_conflict(e: &Error) {
        assert!(
            matches!(e, Error::Record(retention::Error::Conflict(_))),
            "{e}"
        );
    }

    backend_tests!(
        invitations_are_single_use_and_expire,
        the_last_passkey_stays_and_revocation_ends_sessions,
    );

    /// A passkey as webauthn-rs stores it, made by Chrome's virtual authenticator in
    /// the portal's browser test; `{id}` stands for its credential id.
    const PASSKEY: &str = r#"{"cred":{"cred_id":"{id}","cred":{"type_":"ES256","key":{"EC_EC2":{"curve":"SECP256R1","x":"WqSJhWkwP0RGOSe35MKixr_IjQuX77E1BfDsAeIF_T0","y":"J9Dx2hAZbLfdrJGRAs2Fo-GfexErkfaYBtbY6HkPNgE"}}},"counter":1,"transports":null,"user_verified":true,"backup_eligible":false,"backup_state":false,"registration_policy":"required","extensions":{"cred_protect":"Ignored","hmac_create_secret":"NotRequested","appid":"NotRequested","cred_props":{"Unsigned":{"rk":true}}},"attestation":{"data":"None","metadata":"None"},"attestation_format":"none"}}"#;

    fn passkey(id: &str) -> Passkey {
        serde_json::from_str(&PASSKEY.replace("{id}", id)).unwrap()
    }

    async fn employer(ledger: &Ledger) -> String {
        crate::employers::add(
            ledger,
            &SystemClock,
            Actor::Operator("t".into()),
            "A",
            "R-1",
        )
        .await
        .unwrap()
        .employer
        .id
    }

    async fn invite_one(
        env: &TestEnv,
        ledger: &Ledger,
        employer: &str,
        role: Role,
    ) -> (User, String) {
        let invited = invite(
            ledger,
            &env.db,
            &SystemClock,
            Actor::Operator("t".into()),
            "http://localhost:8080",
            &Membership::employer(employer, role),
            " Clerk@Example.TEST ",
            Duration::hours(24),
            None,
        )
        .await
        .unwrap();
        let (body, secret): (String, String) = on_pool!(&env.db, pool => sqlx::query_as(
            "SELECT body, secret FROM mail_outbox ORDER BY id DESC LIMIT 1")
            .fetch_one(pool).await)
        .unwrap();
        // The body has the placeholder, never the secret.
        assert!(body.contains(&format!(
            "token={}.{}",
            invited.invitation_id,
            mail::SECRET_PLACEHOLDER
        )));
        assert!(!body.contains(&secret));
        (invited.user, format!("{}.{secret}", invited.invitation_id))
    }

    async fn invitations_are_single_use_and_expire(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let employer = employer(&ledger).await;
        let (user, token) = invite_one(&env, &ledger, &employer, Role::Clerk).await;
        assert_eq!(user.email, "clerk@example.test");
        let now = Utc::now();
        let (found, invitation) = invitation(&env.db, &token, now).await.unwrap().unwrap();
        assert_eq!(found.id, user.id);
        let wrong = format!("{}x", &token[..token.len() - 1]);
        for bad in [wrong.as_str(), "", "nodot", &token[..17]] {
            assert!(invitation_is_none(&env, bad, now).await, "{bad}");
        }
        assert!(invitation_is_none(&env, &token, now + Duration::hours(25)).await);

        add_passkey(
            &ledger,
            &user,
            Some(&invitation),
            &passkey("AAAA"),
            "mine",
            now,
        )
        .await
        .unwrap();
        let again = add_passkey(
            &ledger,
            &user,
            Some(&invitation),
            &passkey("BBBB"),
            "x",
            now,
        )
        .await
        .unwrap_err();
        assert_conflict(&again);
        assert!(
            invitation_is_none(&env, &token, now).await,
            "used link still valid"
        );
        assert_eq!(passkeys(&env.db, &user.id).await.unwrap().len(), 1);

        // A new link for the same user voids the unused older one.
        let (same, first) = invite_one(&env, &ledger, &employer, Role::Clerk).await;
        let (_, second) = invite_one(&env, &ledger, &employer, Role::Clerk).await;
        assert_eq!(same.id, user.id);
        assert!(invitation_is_none(&env, &first, Utc::now()).await);
        assert!(!invitation_is_none(&env, &second, Utc::now()).await);
        let refused = async |employer: &str, email: &str| {
            let membership = Membership::employer(employer, Role::Admin);
            let operator = Actor::Operator("t".into());
            let origin = "http://localhost:8080";
            let valid = Duration::hours(24);
            invite(
                &ledger,
                &env.db,
                &SystemClock,
                operator,
                origin,
                &membership,
                email,
                valid,
                None,
            )
            .await
            .unwrap_err()
        };
        let err = refused(&employer, "clerk@example.test").await;
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        let err = refused("no-such-employer", "a@example.test").await;
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        task.shutdown().await;
    }

    async fn invitation_is_none(env: &TestEnv, token: &str, now: DateTime<Utc>) -> bool {
        invitation(&env.db, token, now).await.unwrap().is_none()
    }

    async fn the_last_passkey_stays_and_revocation_ends_sessions(env: TestEnv) {
        let (ledger, task) = env.ledger(LedgerConfig::default());
        let employer = employer(&ledger).await;
        let (user, token) = invite_one(&env, &ledger, &employer, Role::Admin).await;
        let now = Utc::now();
        let (_, inv) = invitation(&env.db, &token, now).await.unwrap().unwrap();
        add_passkey(&ledger, &user, Some(&inv), &passkey("AAAA"), "first", now)
            .await
            .unwrap();
        add_passkey(&ledger, &user, None, &passkey("BBBB"), "second", now)
            .await
            .unwrap();
        let dup = add_passkey(&ledger, &user, None, &passkey("BBBB"), "again", now)
            .await
            .unwrap_err();
        assert_conflict(&dup);
        assert!(
            add_passkey(&ledger, &user, None, &passkey("CCCC"), " ", now)
                .await
                .is_err()
        );

        remove_passkey(&ledger, &user, "AAAA", now).await.unwrap();
        let last = remove_passkey(&ledger, &user, "BBBB", now)
            .await
            .unwrap_err();
        assert_conflict(&last);
        let unknown = remove_passkey(&ledger, &user, "ZZZZ", now)
            .await
            .unwrap_err();
        assert!(matches!(unknown, Error::NotFound(_)), "{unknown}");
        let left = passkeys(&env.db, &user.id).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].name, "second");

        let portal =
            crate::portal::Portal::new(&crate::portal::PortalConfig::default(), 8080).unwrap();
        crate::portal::session::start(&portal, &env.db, &user, "BBBB", now)
            .await
            .unwrap();
        revoke(&ledger, Actor::Operator("t".into()), &user.id, now)
            .await
            .unwrap();
        assert!(super::user(&env.db, &user.id).await.unwrap().is_none());
        let open: i64 = on_pool!(&env.db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM portal_sessions WHERE ended_at IS NULL")
            .fetch_one(pool).await)
        .unwrap();
        assert_eq!(open, 0);
        let again = revoke(&ledger, Actor::Operator("t".into()), &user.id, now)
            .await
            .unwrap_err();
        assert_conflict(&again);
        task.shutdown().await;
        let actions: Vec<String> = retention::ledger::entries_after(&env.db, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        for a in [
            "user.invite",
            "user.enrol",
            "user.passkey-add",
            "user.passkey-remove",
            "user.revoke",
        ] {
            assert!(
                actions.iter().any(|x| x == a),
                "{a} not logged: {actions:?}"
            );
        }
    }
}
