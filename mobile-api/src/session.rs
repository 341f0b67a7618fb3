//! Mobile sessions: an access token (JWT, ES256, short-lived) and a rotating refresh
//! token per login.
//!
//! A login opens a *session* (`mobile_sessions`, the refresh-token family). The access
//! token names it (`sid`) and every request checks that the session and its phone
//! access are still live, so revoking (logout, deactivation, a new PIN, a lockout,
//! refresh-token reuse) takes effect at once, not when the token expires. A refresh
//! token is `<id>.<secret>`; only the secret's SHA-256 is stored. A refresh spends it
//! and hands out a new one; presenting a spent one again means it was copied, and the
//! whole session is revoked (`phone.session-revoke`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use retention::ledger::{NewEntry, Work};
use retention::{Actor, Clock, Db, DbConn, Ledger, Sha256Hex, on_conn, on_pool};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

use crate::{Error, MobileConfig};

pub const KEY_FILE: &str = "mobile-session-es256.pem";
const ISSUER: &str = "ivan";
const AUDIENCE: &str = "ivan-mobile";

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The phone access.
    pub sub: String,
    /// The employer that authorised it.
    pub emp: String,
    /// The session.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
}

/// The phone user behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneCaller {
    pub access_id: String,
    pub employer_id: String,
    pub session_id: String,
}

impl PhoneCaller {
    pub fn actor(&self) -> Actor {
        Actor::Phone(self.access_id.clone())
    }
}

/// Tokens handed out at login or refresh.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Issued {
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: u64,
    pub refresh_token: String,
    pub session_id: String,
    #[serde(skip)]
    pub access_id: String,
    #[serde(skip)]
    refresh_id: String,
    #[serde(skip)]
    refresh_sha256: String,
}

/// Token signing and checking with this server's session key.
pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    access_secs: u64,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("access_secs", &self.access_secs)
            .finish_non_exhaustive()
    }
}

fn refresh_parts() -> Result<(String, String), Error> {
    let id = hex::encode(retention::keys::os_random::<12>()?);
    let secret = URL_SAFE_NO_PAD.encode(retention::keys::os_random::<32>()?);
    Ok((id, secret))
}

impl Sessions {
    /// Loads (or creates) the session key in `key_dir`.
    pub fn load(
        key_dir: &Path,
        config: &MobileConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let pem = retention::keys::es256_key(key_dir, KEY_FILE)?;
        Self::from_pem(&pem, config, clock)
    }

    pub fn from_pem(
        pem: &str,
        config: &MobileConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        use p256::pkcs8::DecodePrivateKey as _;
        let bad = |e: &dyn std::fmt::Display| Error::Invalid(format!("mobile session key: {e}"));
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| bad(&e))?;
        let public = p256::SecretKey::from_pkcs8_pem(pem)
            .map_err(|e| bad(&e))?
            .public_key();
        let public_pem = {
            use p256::pkcs8::EncodePublicKey as _;
            public
                .to_public_key_pem(Default::default())
                .map_err(|e| bad(&e))?
        };
        let decoding = DecodingKey::from_ec_pem(public_pem.as_bytes()).map_err(|e| bad(&e))?;
        Ok(Self {
            encoding,
            decoding,
            access_secs: config.access_token_secs,
            clock,
        })
    }

    fn access_token(
        &self,
        access_id: &str,
        employer_id: &str,
        session_id: &str,
    ) -> Result<String, Error> {
        let now = self.clock.now().timestamp();
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: access_id.into(),
            emp: employer_id.into(),
            sid: session_id.into(),
            iat: now,
            exp: now + i64::try_from(self.access_secs).unwrap_or(900),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.encoding)
            .map_err(|e| Error::Invalid(format!("signing the access token: {e}")))
    }

    /// New tokens for a new session (stored by [`insert`] in the login's transaction).
    pub(crate) fn prepare(&self, access_id: &str, employer_id: &str) -> Result<Issued, Error> {
        let session_id = uuid::Uuid::now_v7().to_string();
        let (refresh_id, secret) = refresh_parts()?;
        Ok(Issued {
            access_token: self.access_token(access_id, employer_id, &session_id)?,
            token_type: "Bearer",
            expires_in: self.access_secs,
            refresh_token: format!("{refresh_id}.{secret}"),
            session_id,
            access_id: access_id.to_owned(),
            refresh_sha256: Sha256Hex::of(secret.as_bytes()).to_string(),
            refresh_id,
        })
    }

    /// The caller of a request bearing `token`, if the token is valid and its session
    /// and access are live.
    pub async fn authenticate(&self, db: &Db, token: &str) -> Result<PhoneCaller, Error> {
        let unauthorized = || {
            Error::Unauthorized("a valid access token is required: Authorization: Bearer …".into())
        };
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        // Expiry is checked below against the service's clock, not the system's.
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| unauthorized())?
            .claims;
        if claims.exp < self.clock.now().timestamp() {
            return Err(unauthorized());
        }
        let live: Option<String> = on_pool!(db, pool => {
            sqlx::query_scalar(
                "SELECT a.employer_id FROM mobile_sessions s JOIN phone_accesses a ON a.id = s.phone_access_id \
                 WHERE s.id = $1 AND a.id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3 \
                 AND a.deactivated_at IS NULL",
            )
            .bind(&claims.sid)
            .bind(&claims.sub)
            .bind(self.clock.now())
            .fetch_optional(pool)
            .await?
        });
        match live {
            Some(employer) if employer == claims.emp => Ok(PhoneCaller {
                access_id: claims.sub,
                employer_id: claims.emp,
                session_id: claims.sid,
            }),
            _ => Err(unauthorized()),
        }
    }

    /// Spends `refresh_token` and hands out new tokens in the same session. A token
    /// spent before revokes its session (it was copied) and is refused.
    pub async fn refresh(
        &self,
        ledger: &Ledger,
        db: &Db,
        refresh_token: &str,
    ) -> Result<Issued, Error> {
        let refused = || Error::Unauthorized("unknown, expired or revoked refresh token".into());
        let (id, secret) = refresh_token.trim().split_once('.').ok_or_else(refused)?;
        #[derive(sqlx::FromRow)]
        struct Row {
            session_id: String,
            secret_sha256: String,
            spent: bool,
            live: bool,
            access_id: String,
            employer_id: String,
        }
        let now = self.clock.now();
        let row: Option<Row> = on_pool!(db, pool => {
            sqlx::query_as(
                "SELECT t.session_id, t.secret_sha256, (t.spent_at IS NOT NULL) AS spent, \
                 (s.revoked_at IS NULL AND s.expires_at > $2 AND a.deactivated_at IS NULL) AS live, \
                 a.id AS access_id, a.employer_id \
                 FROM refresh_tokens t JOIN mobile_sessions s ON s.id = t.session_id \
                 JOIN phone_accesses a ON a.id = s.phone_access_id WHERE t.id = $1",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        let row = row.ok_or_else(refused)?;
        let presented = Sha256Hex::of(secret.as_bytes());
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            presented.as_str().as_bytes(),
            row.secret_sha256.as_bytes(),
        )) {
            return Err(refused());
        }
        if !row.live {
            return Err(refused());
        }
        // A spent token presented again was stolen or replayed: the whole family of
        // the session is revoked, and the presenter refused.
        let reused = async || -> Result<Issued, Error> {
            let why = "refresh token reused";
            revoke(ledger, &row.session_id, &row.access_id, Actor::System, why).await?;
            metrics::counter!("ivan_mobile_refresh_reuse_total").increment(1);
            Err(refused())
        };
        if row.spent {
            return reused().await;
        }
        let (new_id, new_secret) = refresh_parts()?;
        let new_sha = Sha256Hex::of(new_secret.as_bytes()).to_string();
        let spent = on_pool!(db, pool => {
            let mut tx = pool.begin().await?;
            let changed = sqlx::query("UPDATE refresh_tokens SET spent_at = $1 WHERE id = $2 AND spent_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed == 1 {
                sqlx::query("INSERT INTO refresh_tokens (id, session_id, secret_sha256, issued_at) VALUES ($1, $2, $3, $4)")
                    .bind(&new_id)
                    .bind(&row.session_id)
                    .bind(&new_sha)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            changed == 1
        });
        if !spent {
            // Two refreshes with the same token raced: the loser is a reuse.
            return reused().await;
        }
        Ok(Issued {
            access_token: self.access_token(&row.access_id, &row.employer_id, &row.session_id)?,
            token_type: "Bearer",
            expires_in: self.access_secs,
            refresh_token: format!("{new_id}.{new_secret}"),
            session_id: row.session_id,
            access_id: row.access_id,
            refresh_id: new_id,
            refresh_sha256: new_sha,
        })
    }
}

/// Stores a new session and its first refresh token (inside the login's transaction).
pub(crate) async fn insert(
    conn: &mut DbConn<'_>,
    issued: &Issued,
    device_name: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), retention::Error> {
    on_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO mobile_sessions (id, phone_access_id, device_name, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&issued.session_id)
        .bind(&issued.access_id)
        .bind(device_name)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *c)
        .await?;
        sqlx::query("INSERT INTO refresh_tokens (id, session_id, secret_sha256, issued_at) VALUES ($1, $2, $3, $4)")
            .bind(&issued.refresh_id)
            .bind(&issued.session_id)
            .bind(&issued.refresh_sha256)
            .bind(now)
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

/// Revokes a session (logout, reuse), logged as `phone.session-revoke`.
pub async fn revoke(
    ledger: &Ledger,
    session_id: &str,
    access_id: &str,
    actor: Actor,
    reason: &str,
) -> Result<(), Error> {
    let (sid, why) = (session_id.to_owned(), reason.to_owned());
    let work: Work = retention::work!(|conn, at| {
        let now = at.recorded_at();
        let changed = on_conn!(&mut conn, c => {
            sqlx::query(
                "UPDATE mobile_sessions SET revoked_at = $1, revoked_reason = $2 \
                 WHERE id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(&why)
            .bind(&sid)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        if changed == 1 {
            Ok(())
        } else {
            Err(retention::Error::Conflict("session already revoked".into()))
        }
    });
    let entry = NewEntry {
        actor,
        action: "phone.session-revoke".into(),
        subject: format!("phone-access:{access_id}"),
        payload: Some(retention::Payload::json(&serde_json::json!({
            "session_id": session_id,
            "reason": reason,
        }))),
    };
    ledger.append_once(entry, work).await?;
    Ok(())
}

/// Revokes every live session of an access, for `reason` (inside the caller's
/// transaction: a deactivation, a new PIN).
pub(crate) async fn revoke_all(
    conn: &mut DbConn<'_>,
    access_id: &str,
    now: DateTime<Utc>,
    reason: &str,
) -> Result<(), retention::Error> {
    on_conn!(conn, c => {
        sqlx::query(
            "UPDATE mobile_sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE phone_access_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(access_id)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}
