-- The log's Merkle tree (RFC 9162 §2.1) over the chain's entry hashes, as the hashes
-- a tiled log stores (docs/LOG.md, "Merkle tree"): the hash at stored index `idx`
-- (C2SP tlog-tiles / Go's sumdb tlog `StoredHashIndex` ordering). Leaf `n` is entry
-- `seq = n + 1`. The appender writes the new hashes in the transaction of the
-- entries they cover; a log whose tree is behind its chain (entries written before
-- this table existed) is caught up by the next append.
-- Twin of the other backend's 0013_log_tree.sql.
CREATE TABLE log_tree (
    idx  INTEGER PRIMARY KEY CHECK (idx >= 0),
    hash BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

-- Append-only like the entries it covers.
CREATE TRIGGER log_tree_no_update BEFORE UPDATE ON log_tree
BEGIN SELECT RAISE(ABORT, 'log_tree is append-only'); END;
CREATE TRIGGER log_tree_no_delete BEFORE DELETE ON log_tree
BEGIN SELECT RAISE(ABORT, 'log_tree is append-only'); END;
