//! Users' portal sessions (`portal_sessions`): the rows the portal's session cookie
//! names (by the SHA-256 of its secret). The portal (`portal::session`) owns the
//! cookie, the timeouts and the extractors; the rows live here, beside the users they
//! belong to, so disabling a user or removing a passkey ends its sessions in the same
//! transaction.

use chrono::{DateTime, Utc};
use retention::{Db, on_pool};

use crate::Error;

/// A session as a request sees it: live (not ended), of a user not disabled.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Live {
    pub user_id: String,
    pub csrf_token: String,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The last passkey assertion (sign-in or re-confirmation).
    pub reauth_at: Option<DateTime<Utc>>,
}

/// A new session of `user_id`, signed in with `passkey_id` at `now`.
#[derive(Debug, Clone, Copy)]
pub struct New<'a> {
    pub id_sha256: &'a str,
    pub user_id: &'a str,
    pub passkey_id: &'a str,
    pub csrf_token: &'a str,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(db: &Db, s: New<'_>) -> Result<(), Error> {
    on_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO portal_sessions (id_sha256, user_id, passkey_id, csrf_token, created_at, \
             last_seen_at, reauth_at, expires_at) VALUES ($1, $2, $3, $4, $5, $5, $5, $6)",
        )
        .bind(s.id_sha256)
        .bind(s.user_id)
        .bind(s.passkey_id)
        .bind(s.csrf_token)
        .bind(s.now)
        .bind(s.expires_at)
        .execute(pool)
        .await
        .map_err(retention::Error::from)?;
    });
    Ok(())
}

/// The live session with this id hash, if any.
pub async fn live(db: &Db, id_sha256: &str) -> Result<Option<Live>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT s.user_id, s.csrf_token, s.last_seen_at, s.expires_at, s.reauth_at FROM portal_sessions s \
             JOIN users u ON u.id = s.user_id \
             WHERE s.id_sha256 = $1 AND s.ended_at IS NULL AND u.revoked_at IS NULL",
        )
        .bind(id_sha256)
        .fetch_optional(pool)
        .await
        .map_err(retention::Error::from)?
    }))
}

/// Ends the session with this id hash.
pub async fn end(db: &Db, id_sha256: &str, now: DateTime<Utc>) -> Result<(), Error> {
    set_time(db, "ended_at", id_sha256, now).await
}

/// Notes activity on the session (its idle timeout counts from here).
pub async fn touch(db: &Db, id_sha256: &str, now: DateTime<Utc>) -> Result<(), Error> {
    set_time(db, "last_seen_at", id_sha256, now).await
}

/// Notes a fresh passkey assertion on the session.
pub async fn reconfirmed(db: &Db, id_sha256: &str, now: DateTime<Utc>) -> Result<(), Error> {
    set_time(db, "reauth_at", id_sha256, now).await
}

/// Sets one time column of a live session (the column is one of the three above).
async fn set_time(
    db: &Db,
    column: &'static str,
    id_sha256: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let sql = format!(
        "UPDATE portal_sessions SET {column} = $1 WHERE id_sha256 = $2 AND ended_at IS NULL"
    );
    on_pool!(db, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(id_sha256)
            .execute(pool)
            .await
            .map_err(retention::Error::from)?;
    });
    Ok(())
}

/// Deletes sessions ended, or expired, before `before`; returns how many.
pub async fn delete_ended(db: &Db, before: DateTime<Utc>) -> Result<u64, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query(
            "DELETE FROM portal_sessions WHERE (ended_at IS NOT NULL AND ended_at < $1) OR expires_at < $1",
        )
        .bind(before)
        .execute(pool)
        .await
        .map_err(retention::Error::from)?
        .rows_affected()
    }))
}
