//! WebAuthn ceremonies in progress. webauthn-rs hands out a challenge and a state
//! that must come back with the browser's answer; the state is kept here, in the
//! database (so any instance can finish it and nothing rides in the browser), for
//! `portal.ceremony_valid_secs`, and is taken — deleted — by the first attempt to
//! finish it, whatever its outcome: every challenge is single use.
//!
//! A **step-up** ceremony is bound to one action on one target when it starts
//! (`approve-upload` of a document's SHA-256, `cancel` of a message id). Finishing it
//! for anything else fails, so an assertion given to approve one document cannot
//! approve another.

use chrono::{DateTime, Duration, Utc};
use retention::{Db, on_pool};
use serde::Serialize;
use serde::de::DeserializeOwned;
use webauthn_rs::prelude::{PasskeyAuthentication, PublicKeyCredential, RequestChallengeResponse};

use super::Portal;
use super::accounts::{self, StoredPasskey, User};
use crate::Error;

/// What a ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The first passkey, from an enrolment link.
    Enrol,
    /// Another passkey of a signed-in user.
    AddPasskey,
    /// Sign-in with a discoverable credential (no user known yet).
    SignIn,
    /// A fresh assertion approving one action on one target.
    StepUp,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Enrol => "enrol",
            Kind::AddPasskey => "add-passkey",
            Kind::SignIn => "sign-in",
            Kind::StepUp => "step-up",
        }
    }
}

/// The action and target a step-up approves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub action: &'static str,
    pub target: String,
}

impl Binding {
    /// Approving a checked upload, named by its document's SHA-256.
    pub fn approve_upload(sha256: &str) -> Self {
        Self {
            action: "approve-upload",
            target: sha256.to_owned(),
        }
    }

    /// Cancelling a submission, named by its message id.
    pub fn cancel(message_id: &str) -> Self {
        Self {
            action: "cancel",
            target: message_id.to_owned(),
        }
    }
}

/// Stores a ceremony's state; returns its id (random, 128 bits).
pub async fn put<S: Serialize>(
    db: &Db,
    kind: Kind,
    user_id: Option<&str>,
    binding: Option<&Binding>,
    state: &S,
    now: DateTime<Utc>,
    valid: Duration,
) -> Result<String, Error> {
    let id = hex::encode(retention::keys::os_random::<16>()?);
    let json = serde_json::to_string(state).map_err(|e| Error::Invalid(e.to_string()))?;
    on_pool!(db, pool => {
        // Housekeeping: abandoned ceremonies go as new ones come.
        sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at < $1")
            .bind(now)
            .execute(pool)
            .await
            .map_err(retention::Error::from)?;
        sqlx::query(
            "INSERT INTO webauthn_ceremonies (id, kind, user_id, action, target, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(kind.as_str())
        .bind(user_id)
        .bind(binding.map(|b| b.action))
        .bind(binding.map(|b| b.target.as_str()))
        .bind(&json)
        .bind(now)
        .bind(now + valid)
        .execute(pool)
        .await
        .map_err(retention::Error::from)?;
    });
    Ok(id)
}

type Row = (
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    DateTime<Utc>,
);

/// Takes (deletes) a ceremony of `kind` started for `user_id`, if it exists and has
/// not expired. The binding it was started with comes back with the state.
pub async fn take<S: DeserializeOwned>(
    db: &Db,
    id: &str,
    kind: Kind,
    user_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(S, Option<(String, String)>), Error> {
    let row: Option<Row> = on_pool!(db, pool => {
        sqlx::query_as(
            "DELETE FROM webauthn_ceremonies WHERE id = $1 AND kind = $2 \
             RETURNING user_id, action, target, state, expires_at",
        )
        .bind(id)
        .bind(kind.as_str())
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    });
    let expired = || {
        Error::Invalid("this passkey prompt has expired or was already used; start again".into())
    };
    let Some((owner, action, target, json, expires_at)) = row else {
        return Err(expired());
    };
    if expires_at <= now || owner.as_deref() != user_id {
        return Err(expired());
    }
    let state = serde_json::from_str(&json)
        .map_err(|e| Error::Invalid(format!("stored ceremony is unreadable: {e}")))?;
    Ok((state, action.zip(target)))
}

/// Parses the browser's JSON answer to a ceremony.
pub fn credential<T: DeserializeOwned>(json: &str) -> Result<T, Error> {
    serde_json::from_str(json)
        .map_err(|e| Error::Invalid(format!("the browser's passkey answer is malformed: {e}")))
}

/// Starts a step-up for `binding`: the options for the page and the ceremony id.
pub async fn start_step_up(
    portal: &Portal,
    db: &Db,
    user: &User,
    binding: &Binding,
    now: DateTime<Utc>,
) -> Result<(String, RequestChallengeResponse), Error> {
    let keys: Vec<_> = accounts::passkeys(db, &user.id)
        .await?
        .into_iter()
        .map(|k| k.passkey)
        .collect();
    let (options, state) = portal
        .webauthn
        .start_passkey_authentication(&keys)
        .map_err(|e| Error::Invalid(format!("cannot start the passkey prompt: {e}")))?;
    let id = put(
        db,
        Kind::StepUp,
        Some(&user.id),
        Some(binding),
        &state,
        now,
        Duration::seconds(i64::try_from(portal.config.ceremony_valid_secs).unwrap_or(300)),
    )
    .await?;
    Ok((id, options))
}

/// Why a step-up did not approve.
#[derive(Debug)]
pub enum StepUpError {
    /// The ceremony was started for another action or target.
    WrongTarget,
    Other(Error),
}

impl From<Error> for StepUpError {
    fn from(e: Error) -> Self {
        Self::Other(e)
    }
}

/// Finishes a step-up: the ceremony must be the user's, bound to exactly `binding`,
/// and the assertion (with user verification) must come from one of their passkeys.
/// Returns the passkey that approved.
pub async fn finish_step_up(
    portal: &Portal,
    db: &Db,
    user: &User,
    ceremony_id: &str,
    answer: &str,
    binding: &Binding,
    now: DateTime<Utc>,
) -> Result<StoredPasskey, StepUpError> {
    let (state, bound): (PasskeyAuthentication, _) =
        take(db, ceremony_id, Kind::StepUp, Some(&user.id), now).await?;
    if bound != Some((binding.action.to_owned(), binding.target.clone())) {
        return Err(StepUpError::WrongTarget);
    }
    let answer: PublicKeyCredential = credential(answer)?;
    let result = portal
        .webauthn
        .finish_passkey_authentication(&answer, &state)
        .map_err(|e| Error::Invalid(format!("the passkey did not approve: {e}")))?;
    let id = accounts::credential_id(result.cred_id().as_ref());
    let mut key = accounts::passkey(db, &user.id, &id)
        .await?
        .ok_or_else(|| Error::Invalid("that passkey is not registered for you".into()))?;
    key.passkey.update_credential(&result);
    accounts::passkey_used(db, &key, now).await?;
    Ok(key)
}
