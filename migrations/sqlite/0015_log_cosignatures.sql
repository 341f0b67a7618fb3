-- Witness cosignatures on checkpoints (C2SP tlog-cosignature; docs/LOG.md,
-- "Witnesses"): the signature line each configured witness returned for the
-- checkpoint of tree_size, kept to be served with that checkpoint's note.
-- Twin of the other backend's 0015_log_cosignatures.sql.
CREATE TABLE log_cosignatures (
    tree_size   INTEGER NOT NULL REFERENCES log_checkpoints (tree_size),
    witness     TEXT    NOT NULL,   -- the witness's key name
    signature   TEXT    NOT NULL,   -- the note signature line, with its newline
    received_at TEXT    NOT NULL,
    PRIMARY KEY (tree_size, witness)
) STRICT;
