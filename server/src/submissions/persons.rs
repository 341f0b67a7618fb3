//! The keyed person index: which filings name a person, searchable by personal id
//! without the id being stored in the index.
//!
//! A person's index key is `hex(HMAC-SHA256(key, personal id))`, the key being 32
//! random bytes in the key directory (`person-index.key`, made on first start, kept
//! with the other keys and in backups). Without the key the index says nothing about
//! who is in it; with it, a search for an id finds exactly the filings that named it.
//! Search audit entries name the index key, never the id.
//!
//! The index is part of the submission aggregate: its rows are a filing's, and it
//! marks the filing indexed (`submissions.persons_indexed_at`).
//!
//! A filing naming at most [`IN_TRANSACTION_AT_MOST`] persons is indexed when it is
//! recorded, in the same transaction. A larger one (a contribution report of
//! 200,000 employees) is indexed right after it is recorded, by
//! [`PersonIndex::index_later`], in transactions of its own: in the log appender's
//! transaction its 200,000 rows held every other filing's acknowledgement for two
//! seconds on PostgreSQL. The index is derived data: the filing, its original and
//! its log entries are committed before the answer either way, and its row says
//! `persons_indexed_at IS NULL` until its persons are in. Filings left so (a
//! restart cut the later indexing short, or they were recorded before the index
//! existed) are indexed by [`catch_up`], which reads their originals again; the
//! retention sweeper calls it, and so does every search by person
//! ([`PersonIndex::settle`]) before it looks, so a search never misses a filing
//! that was acknowledged before it started.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use retention::{Db, DbConn, Originals, Sha256Hex, on_conn, on_pool};
use sha2::Sha256;

use crate::Error;

/// The file in the key directory holding the index key.
pub const KEY_FILE: &str = "person-index.key";

/// The most persons a filing may name and still be indexed in the transaction that
/// records it (one `INSERT` of `INSERT_ROWS` rows); a filing naming more is indexed
/// after it is recorded ([`PersonIndex::index_later`]).
pub const IN_TRANSACTION_AT_MOST: usize = INSERT_ROWS;

/// Rows per transaction when a filing is indexed after it is recorded: small enough
/// that the log appender, which shares SQLite's one writer, waits for one at most a
/// few milliseconds.
const LATER_ROWS_PER_TRANSACTION: usize = 5 * INSERT_ROWS;

/// A person's index key: the HMAC itself, 32 bytes (a 200,000-person report's keys
/// take 6 MB so, 21 MB as hex strings); stored and searched as its 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersonKey([u8; 32]);

impl std::fmt::Display for PersonKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for PersonKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PersonKey({self})")
    }
}

/// Turns personal ids into index keys, and indexes large filings after they are
/// recorded. Cheap to clone.
#[derive(Clone)]
pub struct PersonIndex {
    key: Arc<[u8; 32]>,
    /// Held (shared) by each indexing of a filing after it was recorded, taken
    /// (exclusively) by a search by person so that it waits for those in flight.
    writing: Arc<tokio::sync::RwLock<()>>,
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
        Self {
            key: Arc::new(key),
            writing: Arc::default(),
        }
    }

    /// Indexes a recorded filing's persons in the background, in transactions of
    /// `LATER_ROWS_PER_TRANSACTION` rows, marking it indexed in the last one. A
    /// failure (the database gone, shutdown) leaves it unmarked for [`catch_up`].
    pub fn index_later(
        &self,
        db: Db,
        clock: Arc<dyn retention::Clock>,
        submission_id: String,
        keys: Vec<PersonKey>,
    ) {
        // Taken now, so that a search that starts after this filing's answer waits
        // for it. Only if a search is waiting already does the task wait its turn
        // (that search indexes the filing itself, from its original).
        let writing = self.writing.clone();
        let held = writing.clone().try_read_owned().ok();
        tokio::spawn(async move {
            let _writing = match held {
                Some(held) => held,
                None => writing.read_owned().await,
            };
            if let Err(e) = write_later(&db, clock.as_ref(), &submission_id, &keys).await {
                tracing::warn!(submission = %submission_id, error = %e, "person index deferred to the sweeper");
            }
        });
    }

    /// Waits for this process's indexing in flight ([`PersonIndex::index_later`]).
    pub async fn finish_in_flight(&self) {
        drop(self.writing.write().await);
    }

    /// Makes the index complete for every filing recorded so far: waits for this
    /// process's indexing in flight, then indexes whatever is still unmarked (cut
    /// short by a restart, or in flight on another node) from its original.
    pub async fn settle(
        &self,
        db: &Db,
        originals: &Originals,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.finish_in_flight().await;
        while catch_up(db, originals, self, now, 100).await? > 0 {}
        Ok(())
    }

    /// The index key of a personal id (surrounding white space ignored), as stored.
    pub fn key_of(&self, person_id: &str) -> String {
        self.person_key(person_id).to_string()
    }

    fn person_key(&self, person_id: &str) -> PersonKey {
        // HMAC takes keys of any length: `new_from_slice` cannot fail for 32 bytes.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..]) else {
            unreachable!("HMAC-SHA256 takes a 32-byte key")
        };
        mac.update(b"ivan/person-index/v1\0");
        mac.update(person_id.trim().as_bytes());
        PersonKey(mac.finalize().into_bytes().into())
    }

    /// Index keys of these ids, without duplicates, sorted.
    pub fn keys_of<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<PersonKey> {
        let mut keys: Vec<PersonKey> = ids.into_iter().map(|id| self.person_key(id)).collect();
        keys.sort_unstable();
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
    person_keys: &[PersonKey],
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

/// Forgets whom `submission_id` names (its retention period ended), in the
/// caller's transaction.
pub async fn forget(conn: &mut DbConn<'_>, submission_id: &str) -> retention::Result<()> {
    on_conn!(conn, c => {
        sqlx::query("DELETE FROM person_index WHERE submission_id = $1")
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
    filings: &[(&str, &[PersonKey])],
) -> retention::Result<()> {
    let rows: Vec<(&str, &PersonKey)> = filings
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
                row.push_bind(key.to_string()).push_bind(*id);
            });
            insert.push(" ON CONFLICT (person_key, submission_id) DO NOTHING");
            insert.build().execute(&mut *c).await?;
        }
    });
    Ok(())
}

async fn write_later(
    db: &Db,
    clock: &dyn retention::Clock,
    submission_id: &str,
    keys: &[PersonKey],
) -> retention::Result<()> {
    let mut parts: Vec<&[PersonKey]> = keys.chunks(LATER_ROWS_PER_TRANSACTION).collect();
    if parts.is_empty() {
        parts.push(&[]);
    }
    for (i, part) in parts.iter().enumerate() {
        on_pool!(db, pool => {
            let mut tx = pool.begin().await?;
            let mut conn = to_conn(&mut tx);
            if i + 1 == parts.len() {
                insert(&mut conn, submission_id, part, clock.now()).await?;
            } else {
                insert_rows(&mut conn, &[(submission_id, part)]).await?;
            }
            tx.commit().await?;
        });
    }
    Ok(())
}

/// Indexes up to `limit` filings not marked indexed (recorded before the index
/// existed, or whose later indexing was cut short), by reading their originals
/// again; returns how many it indexed. A filing whose original is purged or
/// unreadable as XML is marked indexed with no persons (and logged as a warning).
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
                    Default::default()
                }),
                Err(e) => {
                    tracing::warn!(submission = %id, error = %e, "original unreadable; indexed with no persons");
                    Default::default()
                }
            },
            None => Default::default(),
        };
        let keys = index.keys_of(ids.iter());
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
