//! WebAuthn ceremonies in progress. webauthn-rs hands out a challenge and a state
//! that must come back with the browser's answer; the state is kept here, in the
//! database (so any instance can finish it and nothing rides in the browser), for
//! `portal.ceremony_valid_secs`, and is taken — deleted — by the first attempt to
//! finish it, whatever its outcome: every challenge is single use.
//!
//! A **step-up** ceremony is bound to one action on one target when it starts
//! (`approve-upload` of a document's SHA-256, `cancel` of a message id). Finishing it
//! for anything else fails, so an assertion given to approve one document cannot
//! approve another. Its challenge itself names what it approves:
//!
//! ```text
//! challenge = SHA-256("ivan step-up v1\n" ‖ action ‖ "\n" ‖ target ‖ "\n" ‖ nonce)
//! ```
//!
//! with a fresh 128-bit nonce (so it is still unpredictable). The authenticator signs
//! the challenge (inside `clientDataJSON`), so the assertion, kept in the log as the
//! `user.step-up` entry's payload with the action, target and nonce, is evidence that
//! this passkey approved exactly this document or cancel — checkable offline with the
//! passkey's public key, which the `user.enrol` / `user.passkey-add` entry holds.

use chrono::{DateTime, Duration, Utc};
use retention::{Db, on_pool};
use serde::Serialize;
use serde::de::DeserializeOwned;
use webauthn_rs::prelude::{PasskeyAuthentication, PublicKeyCredential, RequestChallengeResponse};

use super::Portal;
use crate::Error;
use crate::accounts::{self, User};

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

    /// Re-confirming a session (see [`super::session`]), named by its id hash.
    pub fn reauth(session: &str) -> Self {
        Self {
            action: "reauth",
            target: session.to_owned(),
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
/// Deletes the ceremonies that expired before `now`; returns how many.
pub async fn delete_expired(db: &Db, now: DateTime<Utc>) -> Result<u64, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at < $1")
            .bind(now)
            .execute(pool)
            .await
            .map_err(retention::Error::from)?
            .rows_affected()
    }))
}

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

/// The challenge of a step-up for `binding` with `nonce` (see the module docs).
pub fn step_up_challenge(binding: &Binding, nonce: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"ivan step-up v1\n");
    h.update(binding.action.as_bytes());
    h.update(b"\n");
    h.update(binding.target.as_bytes());
    h.update(b"\n");
    h.update(nonce);
    h.finalize().into()
}

/// A step-up in progress: webauthn-rs's state (with our challenge) and the nonce.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StepUpState {
    state: PasskeyAuthentication,
    nonce: String,
}

/// Puts `challenge` into a ceremony's options and state. webauthn-rs draws its own
/// random challenge and has no way to choose one, so it is replaced in the serialised
/// forms (which `danger-allow-state-serialisation` makes stable); the library then
/// verifies the browser's answer against it like any other.
fn with_challenge(
    options: RequestChallengeResponse,
    state: PasskeyAuthentication,
    challenge: &[u8],
) -> Result<(RequestChallengeResponse, PasskeyAuthentication), Error> {
    use base64::Engine;
    let b64 = serde_json::Value::String(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(challenge),
    );
    let broken = |what: &str| Error::Invalid(format!("webauthn-rs {what} has an unexpected shape"));
    let mut o = serde_json::to_value(&options).map_err(|_| broken("options"))?;
    let mut s = serde_json::to_value(&state).map_err(|_| broken("state"))?;
    *o.pointer_mut("/publicKey/challenge")
        .ok_or_else(|| broken("options"))? = b64.clone();
    *s.pointer_mut("/ast/challenge")
        .ok_or_else(|| broken("state"))? = b64;
    Ok((
        serde_json::from_value(o).map_err(|_| broken("options"))?,
        serde_json::from_value(s).map_err(|_| broken("state"))?,
    ))
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
    let nonce = retention::keys::os_random::<16>()?;
    let (options, state) = with_challenge(options, state, &step_up_challenge(binding, &nonce))?;
    let state = StepUpState {
        state,
        nonce: hex::encode(nonce),
    };
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

/// What a finished step-up leaves as evidence (the `user.step-up` payload).
#[derive(Debug, Clone)]
pub struct Approval {
    pub passkey_id: String,
    pub evidence: serde_json::Value,
}

/// Finishes a step-up: the ceremony must be the user's, bound to exactly `binding`,
/// and the assertion (with user verification) must come from one of their passkeys.
/// Returns the passkey that approved and the evidence to log.
pub async fn finish_step_up(
    portal: &Portal,
    db: &Db,
    user: &User,
    ceremony_id: &str,
    answer: &str,
    binding: &Binding,
    now: DateTime<Utc>,
) -> Result<Approval, StepUpError> {
    let (StepUpState { state, nonce }, bound): (StepUpState, _) =
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
    let challenge = hex::decode(&nonce)
        .map(|n| hex::encode(step_up_challenge(binding, &n)))
        .map_err(|e| Error::Invalid(format!("stored nonce: {e}")))?;
    Ok(Approval {
        evidence: serde_json::json!({
            "action": binding.action,
            "target": binding.target,
            "nonce": nonce,
            "challenge_sha256": challenge,
            "passkey_id": key.id,
            // Re-serialised from the parsed answer: only the fields WebAuthn defines
            // reach the record, whatever else the browser sent.
            "assertion": serde_json::to_value(&answer).unwrap_or_default(),
        }),
        passkey_id: key.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_names_the_action_and_target_and_replaces_the_librarys() {
        let portal =
            super::super::Portal::new(&super::super::PortalConfig::default(), 8080).unwrap();
        let a = step_up_challenge(&Binding::approve_upload("ab"), b"n");
        assert_ne!(a, step_up_challenge(&Binding::approve_upload("ac"), b"n"));
        assert_ne!(a, step_up_challenge(&Binding::cancel("ab"), b"n"));
        assert_ne!(a, step_up_challenge(&Binding::approve_upload("ab"), b"m"));
        let (options, state) = portal.webauthn.start_passkey_authentication(&[]).unwrap();
        let (options, state) = with_challenge(options, state, &a).unwrap();
        let want = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, a);
        let o = serde_json::to_value(&options).unwrap();
        let s = serde_json::to_value(&state).unwrap();
        assert_eq!(o["publicKey"]["challenge"], want.as_str());
        assert_eq!(s["ast"]["challenge"], want.as_str());
    }
}
