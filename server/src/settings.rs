//! Facts a running server records about itself for the command line: one row per
//! name in `server_settings` (this module owns the table).
//!
//! [`PORTAL_ORIGIN`]: `ivan serve` records the portal origin it serves under at each
//! start, so that the links `ivan admin user invite` and `ivan admin officer add` mail
//! point at the server even when the command runs without the server's
//! `portal.public_url` (see [`crate::portal::link_origin`]).

use chrono::{DateTime, Utc};
use retention::{Db, on_pool};

use crate::Error;

/// The portal origin the last `ivan serve` served under, e.g. `http://localhost:8443`.
pub const PORTAL_ORIGIN: &str = "portal.origin";

/// Sets `name` to `value` (inserted, or replacing the earlier value).
pub async fn set(db: &Db, name: &str, value: &str, at: DateTime<Utc>) -> Result<(), Error> {
    on_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO server_settings (name, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(value)
        .bind(at)
        .execute(pool)
        .await
        .map_err(retention::Error::from)?;
    });
    Ok(())
}

/// The value of `name`, if it was ever set.
pub async fn get(db: &Db, name: &str) -> Result<Option<String>, Error> {
    let value: Option<String> = on_pool!(db, pool => {
        sqlx::query_scalar("SELECT value FROM server_settings WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await
            .map_err(retention::Error::from)?
    });
    Ok(value)
}
