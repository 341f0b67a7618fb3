//! The keyed person index: which filings name a person, searchable by personal id
//! without the id being stored in the index.
//!
//! A person's index key is `hex(HMAC-SHA256(key, personal id))`, the key being 32
//! random bytes in the key directory (`person-index.key`, made on first start, kept
//! with the other keys and in backups). Without the key the index says nothing about
//! who is in it; with it, a search for an id finds exactly the filings that named it.
//! Search audit entries name the index key, never the id.
//!
//! Filings are indexed when they are recorded (in the same transaction); filings
//! recorded before the index existed are indexed by [`catch_up`] (the retention
//! sweeper calls it), which reads their originals again.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use retention::{Db, DbConn, Originals, Sha256Hex, on_conn, on_pool};
use sha2::Sha256;

use crate::Error;

/// The file in the key directory holding the index key.
pub const KEY_FILE: &str = "person-index.key";

/// Turns personal ids into index keys. Cheap to clone.
#[derive(Clone)]
pub struct PersonIndex {
    key: Arc<[u8; 32]>,
}

impl std::fmt::Debug for PersonIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonIndex { key: <secret> }")
    }
}

impl PersonIndex {
    /// Loads the key from the key directory, making it on first use.
    pub fn load_or_generate(key_dir: &Path) -> Result<Self, Error> {
        Ok(Self::with_key(retention::keys::secret::<32>(
            key_dir, KEY_FILE,
        )?))
    }

    pub fn with_key(key: [u8; 32]) -> Self {
        Self { key: Arc::new(key) }
    }

    /// The index key of a personal id (surrounding white space ignored).
    pub fn key_of(&self, person_id: &str) -> String {
        // HMAC takes keys of any length: `new_from_slice` cannot fail for 32 bytes.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..]) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(b"ivan/person-index/v1\0");
        mac.update(person_id.trim().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Index keys of these ids, without duplicates, sorted.
    pub fn keys_of<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut keys: Vec<String> = ids.into_iter().map(|id| self.key_of(id)).collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// Rows per `INSERT` (two parameters each: well under SQLite's 32,766 and
/// PostgreSQL's 65,535 bound parameters).
const INSERT_ROWS: usize = 1000;

/// Notes that `submission_id` names the persons with these index keys, and that it
/// has been indexed (in the caller's transaction).
pub async fn insert(
    conn: &mut DbConn<'_>,
    submission_id: &str,
    person_keys: &[String],
    now: DateTime<Utc>,
) -> retention::Result<()> {
    insert_rows(conn, &[(submission_id, person_keys)]).await?;
    on_conn!(conn, c => {
        sqlx::query("UPDATE submissions SET persons_indexed_at = $1 WHERE id = $2")
            .bind(now)
            .bind(submission_id)
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

/// The person-index rows of many filings (id, keys), without marking them indexed
/// (the caller does, e.g. in the submission row it inserts).
pub async fn insert_rows(
    conn: &mut DbConn<'_>,
    filings: &[(&str, &[String])],
) -> retention::Result<()> {
    let rows: Vec<(&str, &String)> = filings
        .iter()
        .flat_map(|(id, keys)| keys.iter().map(move |k| (*id, k)))
        .collect();
    on_conn!(conn, c => {
        // Many rows per statement: a 50 MB report names ~175k people, and a round
        // trip per row held the appender's transaction for seconds.
        for chunk in rows.chunks(INSERT_ROWS) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO person_index (person_key, submission_id) ",
            );
            insert.push_values(chunk, |mut row, (id, key)| {
                row.push_bind(*key).push_bind(*id);
            });
            insert.push(" ON CONFLICT (person_key, submission_id) DO NOTHING");
            insert.build().execute(&mut *c).await?;
        }
    });
    Ok(())
}

/// Indexes up to `limit` filings recorded before the index existed, by reading their
/// originals again; returns how many it indexed. A filing whose original is purged
/// or unreadable as XML is marked indexed with no persons (and logged as a warning).
pub async fn catch_up(
    db: &Db,
    originals: &Originals,
    index: &PersonIndex,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<usize, Error> {
    let todo: Vec<(String, String)> = on_pool!(db, pool => {
        sqlx::query_as(
            "SELECT id, sha256 FROM submissions WHERE persons_indexed_at IS NULL \
             AND purged_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(retention::Error::from)?
    });
    let mut done = 0;
    for (id, sha) in todo {
        let ids = match Sha256Hex::parse(&sha) {
            Some(h) => match originals.get(&h).await {
                Ok(bytes) => crate::documents::person_ids_in(&bytes).unwrap_or_else(|e| {
                    tracing::warn!(submission = %id, error = %e, "cannot read the original's persons; indexed with none");
                    Vec::new()
                }),
                Err(e) => {
                    tracing::warn!(submission = %id, error = %e, "original unreadable; indexed with no persons");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let keys = index.keys_of(ids.iter().map(String::as_str));
        // Idempotent: rows already there are kept, so a crash half-way is repaired by
        // the next round.
        on_pool!(db, pool => {
            let mut tx = pool.begin().await.map_err(retention::Error::from)?;
            let mut conn = to_conn(&mut tx);
            insert(&mut conn, &id, &keys, now).await?;
            tx.commit().await.map_err(retention::Error::from)?;
        });
        done += 1;
    }
    Ok(done)
}

/// A pool transaction as the connection [`insert`] takes.
trait ToConn {
    fn conn(&mut self) -> DbConn<'_>;
}

impl ToConn for sqlx::Transaction<'_, sqlx::Sqlite> {
    fn conn(&mut self) -> DbConn<'_> {
        DbConn::Sqlite(&mut *self)
    }
}

impl ToConn for sqlx::Transaction<'_, sqlx::Postgres> {
    fn conn(&mut self) -> DbConn<'_> {
        DbConn::Postgres(&mut *self)
    }
}

fn to_conn<T: ToConn>(tx: &mut T) -> DbConn<'_> {
    tx.conn()
}

/// The filings that name `person_key`'s person.
pub async fn submissions_naming(db: &Db, person_key: &str) -> Result<Vec<String>, Error> {
    Ok(on_pool!(db, pool => {
        sqlx::query_scalar("SELECT submission_id FROM person_index WHERE person_key = $1 ORDER BY submission_id")
            .bind(person_key)
            .fetch_all(pool)
            .await
            .map_err(retention::Error::from)?
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_keyed_and_stable() {
        let a = PersonIndex::with_key([1; 32]);
        let b = PersonIndex::with_key([2; 32]);
        assert_eq!(a.key_of("8001011234"), a.key_of(" 8001011234\n"));
        assert_ne!(a.key_of("8001011234"), b.key_of("8001011234"));
        assert_ne!(a.key_of("8001011234"), a.key_of("8001011235"));
        assert_eq!(a.key_of("8001011234").len(), 64);
        assert!(!a.key_of("8001011234").contains("8001011234"));
        assert_eq!(a.keys_of(["x", "y", "x"]).len(), 2);
        assert!(!format!("{a:?}").contains("1, 1"));
    }
}
