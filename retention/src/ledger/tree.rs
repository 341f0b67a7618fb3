//! The log's Merkle tree: RFC 9162 §2.1 over the chain's entry hashes, stored as the
//! hashes a tiled log keeps (C2SP tlog-tiles; the `tlog_tiles` crate, a port of
//! Go's `sumdb/tlog`, does the arithmetic).
//!
//! Leaf `n` (from 0) is entry `seq = n + 1`; its leaf hash is
//! `SHA-256(0x00 ‖ entry_hash)` with the entry hash's 32 bytes, and an inner node is
//! `SHA-256(0x01 ‖ left ‖ right)`. Appending leaf `n` stores its leaf hash and the
//! root of every subtree it completes (two hashes on average) in `log_tree`, at the
//! stored-hash indexes `tlog_tiles::stored_hash_index` gives; any root, inclusion
//! proof or consistency proof then needs O(log n) of them.
//!
//! The appender keeps the [`Frontier`] (the roots of the complete subtrees of the
//! current tree, at most 64) between batches, so a batch reads nothing to extend the
//! tree and writes its new hashes in the same transaction as the entries. A frontier
//! that does not match the head it finds (another process appended, or a batch
//! failed) is read again from the table; a tree behind its chain (entries written
//! before the tree existed) is caught up from the entries first.

use std::collections::{BTreeMap, BTreeSet};

pub use tlog_tiles::Checkpoint as TreeHead;
pub use tlog_tiles::Hash;
use tlog_tiles::{
    HashReader, prove_record, prove_tree, record_hash, stored_hash_count, stored_hash_index,
    stored_hashes_for_record_hash, sub_tree_index, tree_hash,
};

use crate::db::WriteTx;
use crate::{Db, DbConn, Error, Result, on_conn, on_pool};

/// The leaf hash of an entry whose `entry_hash` (64 hex digits) is given.
pub fn leaf_hash(entry_hash: &str) -> Result<Hash> {
    let mut raw = [0u8; 32];
    hex::decode_to_slice(entry_hash, &mut raw)
        .map_err(|_| Error::Internal(format!("malformed entry hash {entry_hash:?}")))?;
    Ok(record_hash(&raw))
}

/// The roots of the complete subtrees of a tree of `size` leaves, by stored index:
/// what appending the next leaf, or computing the root, reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frontier {
    size: u64,
    roots: BTreeMap<u64, Hash>,
}

impl HashReader for Frontier {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.roots
                    .get(i)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

fn tree_error(e: tlog_tiles::Error) -> Error {
    Error::Internal(format!("log tree: {e}"))
}

/// The stored indexes of the complete subtrees of a tree of `size` leaves.
fn frontier_indexes(size: u64) -> Vec<u64> {
    sub_tree_index(0, size, Vec::new())
}

impl Frontier {
    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; returns the stored index of its first hash and the hashes to
    /// store from there on (the leaf hash, then each subtree root it completes).
    pub fn push(&mut self, leaf: Hash) -> Result<(u64, Vec<Hash>)> {
        let n = self.size;
        let hashes = stored_hashes_for_record_hash(n, leaf, self).map_err(tree_error)?;
        let start = stored_hash_index(0, n);
        for (i, h) in (start..).zip(&hashes) {
            self.roots.insert(i, *h);
        }
        self.size += 1;
        let keep: BTreeSet<u64> = frontier_indexes(self.size).into_iter().collect();
        self.roots.retain(|i, _| keep.contains(i));
        Ok((start, hashes))
    }

    /// Appends entry `seq`'s leaf, as [`Frontier::push`]; the entry must be the next
    /// one (`seq` = size + 1), or the chain and the tree would part.
    pub fn push_entry(&mut self, seq: i64, entry_hash: &str) -> Result<(u64, Vec<Hash>)> {
        let expected = self.size + 1;
        if u64::try_from(seq).ok() != Some(expected) {
            return Err(Error::Internal(format!(
                "log entry {seq} where {expected} was expected"
            )));
        }
        self.push(leaf_hash(entry_hash)?)
    }

    /// The tree's root hash (RFC 9162's MTH of all its leaves).
    pub fn root(&self) -> Result<Hash> {
        tree_hash(self.size, self).map_err(tree_error)
    }
}

/// The text of a C2SP tlog-checkpoint for a tree of `size` entries with root
/// `root`: `<origin>\n<size>\n<base64 root>\n`, no extension lines.
pub fn checkpoint_text(origin: &str, size: u64, root: &Hash) -> Result<String> {
    let head = TreeHead::new(origin, size, *root, "")
        .map_err(|e| Error::Internal(format!("checkpoint of origin {origin:?}: {e}")))?;
    String::from_utf8(head.to_bytes())
        .map_err(|e| Error::Internal(format!("checkpoint text is not UTF-8: {e}")))
}

/// The origin a C2SP checkpoint `note` (or its text) names: its first line, unchecked.
pub fn note_origin(note: &str) -> &str {
    note.split('\n').next().unwrap_or_default()
}

/// The tree head a C2SP checkpoint `note` states, once its signature by key `kid`
/// under the note's own origin (its first line) verifies. `Err` says what does not
/// hold.
pub fn open_checkpoint(
    keys: &crate::keys::CheckpointVerifier,
    kid: &str,
    note: &str,
) -> std::result::Result<TreeHead, String> {
    let origin = note_origin(note);
    let text = keys.verify_note(kid, origin, note)?;
    TreeHead::from_bytes(text.as_bytes())
        .map_err(|e| format!("its signed note is not a C2SP checkpoint: {e}"))
}

/// Hashes per multi-row statement (two columns each).
const INSERT_ROWS: usize = 2000;

/// Leaves whose entries are read per statement while catching up.
const CATCH_UP_ROWS: i64 = 10_000;

/// The tree as stored, extended to the chain's `head` leaves: the hashes of any
/// entries the table does not cover yet are computed from the entries and written in
/// `tx`. Fails if the table holds more leaves than the chain.
pub(crate) async fn frontier_at(tx: &mut WriteTx, head: u64) -> Result<Frontier> {
    let stored = stored_size(tx.conn()).await?;
    if stored > head {
        return Err(Error::Internal(format!(
            "the log tree covers {stored} entries but the chain has {head}"
        )));
    }
    let mut frontier = load(tx.conn(), stored).await?;
    while frontier.size() < head {
        let after = i64::try_from(frontier.size()).unwrap_or(i64::MAX);
        let rows: Vec<(i64, String)> = on_conn!(&mut tx.conn(), c => {
            sqlx::query_as(
                "SELECT seq, entry_hash FROM log_entries WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(CATCH_UP_ROWS)
            .fetch_all(&mut *c)
            .await?
        });
        if rows.is_empty() {
            return Err(Error::Internal(format!(
                "the log has no entry after {after} below its head {head}"
            )));
        }
        let mut hashes = Vec::new();
        for (seq, entry_hash) in rows {
            hashes.push(frontier.push_entry(seq, &entry_hash)?);
        }
        insert(tx.conn(), &hashes).await?;
    }
    Ok(frontier)
}

/// Writes hashes as [`Frontier::push`] returned them: on PostgreSQL one statement of
/// two arrays, on SQLite multi-row inserts.
pub(crate) async fn insert(conn: DbConn<'_>, pushed: &[(u64, Vec<Hash>)]) -> Result<()> {
    let rows = pushed.iter().flat_map(|(start, hashes)| {
        (*start..)
            .zip(hashes)
            .map(|(i, h)| (i64::try_from(i).unwrap_or(i64::MAX), h.0))
    });
    match conn {
        DbConn::Postgres(c) => {
            let (idx, hash): (Vec<i64>, Vec<Vec<u8>>) = rows.map(|(i, h)| (i, h.to_vec())).unzip();
            if idx.is_empty() {
                return Ok(());
            }
            sqlx::query(
                "INSERT INTO log_tree (idx, hash) SELECT * FROM UNNEST($1::bigint[], $2::bytea[])",
            )
            .bind(idx)
            .bind(hash)
            .execute(&mut *c)
            .await?;
        }
        DbConn::Sqlite(c) => {
            let rows: Vec<(i64, [u8; 32])> = rows.collect();
            for chunk in rows.chunks(INSERT_ROWS) {
                let mut insert = sqlx::QueryBuilder::new("INSERT INTO log_tree (idx, hash) ");
                insert.push_values(chunk, |mut row, (i, h)| {
                    row.push_bind(*i).push_bind(h.as_slice());
                });
                insert.build().execute(&mut *c).await?;
            }
        }
    }
    Ok(())
}

/// How many leaves the stored hashes cover: the `n` whose stored hash count is one
/// past the highest stored index.
async fn stored_size(conn: DbConn<'_>) -> Result<u64> {
    let mut conn = conn;
    let highest: Option<i64> = on_conn!(&mut conn, c => {
        sqlx::query_scalar("SELECT MAX(idx) FROM log_tree")
            .fetch_one(&mut *c)
            .await?
    });
    let Some(highest) = highest else {
        return Ok(0);
    };
    let count =
        u64::try_from(highest).map_err(|_| Error::Internal("negative log tree index".into()))? + 1;
    leaves_for(count).ok_or_else(|| {
        Error::Internal(format!(
            "the log tree's {count} stored hashes are not those of a whole number of entries"
        ))
    })
}

/// The number of leaves whose tree stores exactly `count` hashes, if any.
fn leaves_for(count: u64) -> Option<u64> {
    // stored_hash_count grows by at least one per leaf: n ≤ count.
    let (mut lo, mut hi) = (0u64, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if stored_hash_count(mid) < count {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (stored_hash_count(lo) == count).then_some(lo)
}

/// Reads the frontier of a stored tree of `size` leaves.
async fn load(conn: DbConn<'_>, size: u64) -> Result<Frontier> {
    let indexes = frontier_indexes(size);
    let roots = read_on(conn, &indexes).await?;
    if roots.len() != indexes.len() {
        return Err(Error::Internal(format!(
            "the log tree of {size} entries lacks {} of its {} subtree roots",
            indexes.len() - roots.len(),
            indexes.len()
        )));
    }
    Ok(Frontier { size, roots })
}

/// The stored hashes at `indexes` (those present).
async fn read_on(conn: DbConn<'_>, indexes: &[u64]) -> Result<BTreeMap<u64, Hash>> {
    if indexes.is_empty() {
        return Ok(BTreeMap::new());
    }
    let bound: Vec<i64> = indexes
        .iter()
        .map(|i| i64::try_from(*i).unwrap_or(i64::MAX))
        .collect();
    let mut conn = conn;
    let rows: Vec<(i64, Vec<u8>)> = on_conn!(&mut conn, c => {
        let mut query = sqlx::QueryBuilder::new("SELECT idx, hash FROM log_tree WHERE idx IN (");
        let mut list = query.separated(", ");
        for i in &bound {
            list.push_bind(*i);
        }
        query.push(")");
        query.build_query_as().fetch_all(&mut *c).await?
    });
    decoded(rows)
}

/// Stored rows as hashes by index.
fn decoded(rows: Vec<(i64, Vec<u8>)>) -> Result<BTreeMap<u64, Hash>> {
    let mut hashes = BTreeMap::new();
    for (i, hash) in rows {
        let hash: [u8; 32] = hash
            .try_into()
            .map_err(|_| Error::Internal(format!("log tree hash {i} is not 32 bytes")))?;
        hashes.insert(u64::try_from(i).unwrap_or(u64::MAX), Hash(hash));
    }
    Ok(hashes)
}

/// The stored hashes with indexes `lo..=hi` (those present), for `log verify`.
pub(crate) async fn stored_between(db: &Db, lo: u64, hi: u64) -> Result<BTreeMap<u64, Hash>> {
    let rows: Vec<(i64, Vec<u8>)> = on_pool!(db, pool => {
        sqlx::query_as("SELECT idx, hash FROM log_tree WHERE idx >= $1 AND idx <= $2 ORDER BY idx")
            .bind(i64::try_from(lo).unwrap_or(i64::MAX))
            .bind(i64::try_from(hi).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?
    });
    decoded(rows)
}

/// Whether any hash is stored above index `i` (a missing hash below one is a gap,
/// not the end of a tree still to be caught up).
pub(crate) async fn stored_above(db: &Db, i: u64) -> Result<bool> {
    let above: Option<i64> = on_pool!(db, pool => {
        sqlx::query_scalar("SELECT MIN(idx) FROM log_tree WHERE idx > $1")
            .bind(i64::try_from(i).unwrap_or(i64::MAX))
            .fetch_one(pool)
            .await?
    });
    Ok(above.is_some())
}

/// The hashes a proof or root is computed from: first only noted (answered with
/// placeholders) so they can be read from the database in one statement, then read.
enum Reader<'a> {
    Noting(&'a std::cell::RefCell<Vec<u64>>),
    Read(BTreeMap<u64, Hash>),
}

impl HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<Hash>, tlog_tiles::Error> {
        match self {
            Reader::Noting(wanted) => {
                wanted.borrow_mut().extend_from_slice(indexes);
                Ok(vec![Hash([0; 32]); indexes.len()])
            }
            Reader::Read(hashes) => indexes
                .iter()
                .map(|i| {
                    hashes
                        .get(i)
                        .copied()
                        .ok_or(tlog_tiles::Error::IndexesNotInTree)
                })
                .collect(),
        }
    }
}

/// Hashes in a full tile (C2SP tlog-tiles: tiles of height 8).
pub const TILE_WIDTH: u32 = 256;

/// A C2SP tlog-tiles resource under the log's prefix: a Merkle tree tile
/// (`tile/<L>/<N>[.p/<W>]`) or an entry bundle (`tile/entries/<N>[.p/<W>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRef {
    /// The tile's level; `None` for an entry bundle.
    pub level: Option<u8>,
    /// Its index within the level.
    pub index: u64,
    /// Hashes (or entries) in it: [`TILE_WIDTH`] when full.
    pub width: u32,
}

impl TileRef {
    /// Parses the part of a tile path after `tile/`, exactly as C2SP tlog-tiles
    /// writes it (no leading zeros in `L` or `W`, 3-digit index elements, `x` on all
    /// but the last); `None` for anything else.
    pub fn parse(path: &str) -> Option<TileRef> {
        let mut parts: Vec<&str> = path.split('/').collect();
        let decimal = |s: &str| {
            (!s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0')))
            .then(|| s.parse::<u64>().ok())
            .flatten()
        };
        let level = match parts.first()? {
            &"entries" => None,
            l => Some(u8::try_from(decimal(l)?).ok().filter(|l| *l <= 63)?),
        };
        // A partial tile ends in `NNN.p/W`.
        let mut width = TILE_WIDTH;
        if parts.len() >= 3 && parts[parts.len() - 2].ends_with(".p") {
            width = u32::try_from(decimal(parts.pop()?)?)
                .ok()
                .filter(|w| (1..TILE_WIDTH).contains(w))?;
            let last = parts.len() - 1;
            parts[last] = parts[last].strip_suffix(".p")?;
        }
        let elements = parts.get(1..)?;
        let (last, upper) = elements.split_last()?;
        let three = |s: &str| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit());
        let mut index: u64 = 0;
        for e in upper {
            let digits = e.strip_prefix('x').filter(|d| three(d))?;
            index = index.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
        }
        if !three(last) {
            return None;
        }
        index = index.checked_mul(1000)?.checked_add(last.parse().ok()?)?;
        Some(TileRef {
            level,
            index,
            width,
        })
    }

    /// Whether a tree of `size` entries holds all of this tile: its last hash is
    /// that of `256^L` complete leaves.
    fn within(&self, size: u64) -> bool {
        let shift = 8 * u32::from(self.level.unwrap_or(0));
        let end = u128::from(self.index) * u128::from(TILE_WIDTH) + u128::from(self.width);
        shift < 64 && end <= u128::from(size >> shift)
    }
}

/// The bytes of a tile: its hashes, concatenated (C2SP tlog-tiles), or for an entry
/// bundle its entries (each entry hash, 32 bytes, after its big-endian 16-bit
/// length). `None` when the stored tree does not hold all of it yet.
pub async fn tile(db: &Db, tile: TileRef) -> Result<Option<Vec<u8>>> {
    match db {
        Db::Sqlite(pool) => tile_on(DbConn::Sqlite(&mut *pool.acquire().await?), tile).await,
        Db::Postgres(pool) => tile_on(DbConn::Postgres(&mut *pool.acquire().await?), tile).await,
    }
}

async fn tile_on(mut conn: DbConn<'_>, tile: TileRef) -> Result<Option<Vec<u8>>> {
    let stored = stored_size(conn.reborrow()).await?;
    if !tile.within(stored) {
        return Ok(None);
    }
    let first = tile.index * u64::from(TILE_WIDTH);
    let Some(level) = tile.level else {
        return entry_bundle(conn, first, tile.width).await.map(Some);
    };
    let indexes: Vec<u64> = (0..u64::from(tile.width))
        .map(|i| stored_hash_index(8 * level, first + i))
        .collect();
    let hashes = read_on(conn, &indexes).await?;
    let mut data = Vec::with_capacity(indexes.len() * 32);
    for i in &indexes {
        let h = hashes.get(i).ok_or_else(|| {
            Error::Internal(format!(
                "the log tree of {stored} entries lacks its hash {i}"
            ))
        })?;
        data.extend_from_slice(&h.0);
    }
    Ok(Some(data))
}

/// Entries `first + 1 ..= first + width` (leaves `first..first + width`) as an entry
/// bundle.
async fn entry_bundle(mut conn: DbConn<'_>, first: u64, width: u32) -> Result<Vec<u8>> {
    let after = i64::try_from(first).map_err(|_| Error::Internal("tile index overflow".into()))?;
    let rows: Vec<(i64, String)> = on_conn!(&mut conn, c => {
        sqlx::query_as(
            "SELECT seq, entry_hash FROM log_entries WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(width))
        .fetch_all(&mut *c)
        .await?
    });
    let mut data = Vec::with_capacity(rows.len() * 34);
    for (n, (seq, entry_hash)) in (after + 1..).zip(&rows) {
        if *seq != n {
            return Err(Error::Internal(format!("the log has no entry {n}")));
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(entry_hash, &mut raw)
            .map_err(|_| Error::Internal(format!("malformed entry hash of entry {seq}")))?;
        data.extend_from_slice(&32u16.to_be_bytes());
        data.extend_from_slice(&raw);
    }
    if rows.len() != width as usize {
        return Err(Error::Internal(format!(
            "the log lacks entries after {}",
            after + rows.len() as i64
        )));
    }
    Ok(data)
}

/// A tree of `size` entries, its root, and a proof about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Proven {
    pub root: Hash,
    pub proof: Vec<Hash>,
}

/// The root of the first `size` entries and the proof that entry `leaf + 1` (leaf
/// index `leaf`) is in it (RFC 9162 §2.1.3), from O(log size) stored hashes read in
/// one statement. `Error::Invalid` when `leaf >= size`, or `size` is beyond the
/// stored tree.
pub async fn inclusion(db: &Db, leaf: u64, size: u64) -> Result<Proven> {
    if leaf >= size {
        return Err(Error::Invalid(format!(
            "leaf index {leaf} is not in a tree of {size} entries"
        )));
    }
    proven(db, size, |r| prove_record(size, leaf, r)).await
}

/// The root of the first `second` entries and the proof that the tree of the first
/// `first` entries is a prefix of it (RFC 9162 §2.1.4; empty when they are equal).
/// `Error::Invalid` when `first` is 0 or above `second`, or `second` is beyond the
/// stored tree.
pub async fn consistency(db: &Db, first: u64, second: u64) -> Result<Proven> {
    if first == 0 || first > second {
        return Err(Error::Invalid(format!(
            "a tree of {first} entries has no consistency proof with one of {second} (RFC 9162 needs 0 < first <= second)"
        )));
    }
    proven(db, second, |r| prove_tree(second, first, r)).await
}

async fn proven<F>(db: &Db, size: u64, prove: F) -> Result<Proven>
where
    F: Fn(&Reader<'_>) -> std::result::Result<Vec<Hash>, tlog_tiles::Error>,
{
    match db {
        Db::Sqlite(pool) => {
            proven_on(DbConn::Sqlite(&mut *pool.acquire().await?), size, prove).await
        }
        Db::Postgres(pool) => {
            proven_on(DbConn::Postgres(&mut *pool.acquire().await?), size, prove).await
        }
    }
}

async fn proven_on<F>(mut conn: DbConn<'_>, size: u64, prove: F) -> Result<Proven>
where
    F: Fn(&Reader<'_>) -> std::result::Result<Vec<Hash>, tlog_tiles::Error>,
{
    // The size a client asks for is checked against the stored tree before any
    // index arithmetic: sizes near 2^64 overflow it.
    let stored = stored_size(conn.reborrow()).await?;
    if size > stored {
        return Err(Error::Invalid(format!(
            "the log's tree does not reach {size} entries yet (it holds {stored})"
        )));
    }
    // Noted in a scope of its own: the `RefCell` must not live across an await.
    let indexes = {
        let wanted = std::cell::RefCell::new(Vec::new());
        let noting = Reader::Noting(&wanted);
        prove(&noting).map_err(tree_error)?;
        tree_hash(size, &noting).map_err(tree_error)?;
        drop(noting);
        wanted.into_inner()
    };
    let hashes = read_on(conn, &indexes).await?;
    if let Some(missing) = indexes.iter().find(|i| !hashes.contains_key(i)) {
        return Err(Error::Internal(format!(
            "the log tree of {stored} entries lacks its hash {missing}"
        )));
    }
    let read = Reader::Read(hashes);
    Ok(Proven {
        root: tree_hash(size, &read).map_err(tree_error)?,
        proof: prove(&read).map_err(tree_error)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mth;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_root_is_rfc_9162s_mth_at_every_size() {
        let entries: Vec<[u8; 32]> = (0u32..300)
            .map(|i| Sha256::digest(i.to_be_bytes()).into())
            .collect();
        let mut frontier = Frontier::default();
        let mut stored = BTreeMap::new();
        assert_eq!(frontier.root().unwrap().0, mth(&[]));
        for (n, e) in entries.iter().enumerate() {
            let (start, hashes) = frontier.push(leaf_hash(&hex::encode(e)).unwrap()).unwrap();
            assert_eq!(start, stored.len() as u64, "hashes are stored densely");
            for (i, h) in (start..).zip(hashes) {
                stored.insert(i, h);
            }
            assert_eq!(frontier.size(), n as u64 + 1);
            assert_eq!(
                frontier.root().unwrap().0,
                mth(&entries[..=n]),
                "size {}",
                n + 1
            );
            assert!(frontier.roots.len() <= 64);
            assert_eq!(stored_hash_count(n as u64 + 1), stored.len() as u64);
            assert_eq!(leaves_for(stored.len() as u64), Some(n as u64 + 1));
        }
        // Hash counts that no whole number of leaves stores are told apart.
        let counts: BTreeSet<u64> = (0..=300).map(stored_hash_count).collect();
        for c in 0..=stored_hash_count(300) {
            assert_eq!(leaves_for(c).is_some(), counts.contains(&c), "count {c}");
        }
    }

    /// The RFC 6962 reference tree of transparency-dev/merkle (`testonly/constants.go`,
    /// the vectors Certificate Transparency's implementations share): the root of
    /// every size 0..8, and inclusion and consistency proofs made of its node hashes.
    #[test]
    fn known_answers_of_the_rfc_6962_reference_tree() {
        use crate::testing::MemoryTree;
        let h = |s: &str| Hash(hex::decode(s).unwrap().try_into().unwrap());
        let inputs = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ];
        let roots = [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let mut tree = MemoryTree::default();
        assert_eq!(tree.root(0), h(roots[0]));
        for (n, input) in inputs.iter().enumerate() {
            tree.push(record_hash(&hex::decode(input).unwrap()));
            assert_eq!(tree.root(n as u64 + 1), h(roots[n + 1]), "size {}", n + 1);
        }
        // Level 0: leaf hashes; level 1, 2: subtree roots (NodeHashes()).
        let (l0_1, l0_4) = (
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        );
        let (l1_1, l1_2, l1_3) = (
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        );
        let (l2_0, l2_1) = (
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        );
        let proof = |p: &[&str]| p.iter().map(|s| h(s)).collect::<Vec<_>>();
        assert_eq!(
            prove_record(8, 0, &tree).unwrap(),
            proof(&[l0_1, l1_1, l2_1])
        );
        assert_eq!(
            prove_record(8, 5, &tree).unwrap(),
            proof(&[l0_4, l1_3, l2_0])
        );
        assert_eq!(prove_tree(8, 2, &tree).unwrap(), proof(&[l1_1, l2_1]));
        assert_eq!(prove_tree(8, 6, &tree).unwrap(), proof(&[l1_2, l1_3, l2_0]));
        assert_eq!(prove_tree(8, 4, &tree).unwrap(), proof(&[l2_1]));
    }
}
