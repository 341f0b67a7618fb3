-- The record: transaction log, checkpoints, originals index, employers and API tokens.
-- Twin of migrations/postgres/0001_record.sql: same tables, same columns, same meaning.
-- Times are UTC; SQLite keeps them as RFC 3339 text with microseconds.

CREATE TABLE log_entries (
    seq            INTEGER PRIMARY KEY,      -- 1, 2, 3, … without gaps
    recorded_at    TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    payload_sha256 TEXT    NULL,             -- 64 lowercase hex digits, or NULL
    prev_hash      TEXT    NOT NULL,         -- entry_hash of seq-1 (64 zeros for seq 1)
    entry_hash     TEXT    NOT NULL          -- see docs/LOG.md for the canonical encoding
) STRICT;
CREATE INDEX log_entries_subject ON log_entries (subject);
CREATE INDEX log_entries_recorded_at ON log_entries (recorded_at);

-- The log is append-only: the database itself refuses to change or remove an entry.
CREATE TRIGGER log_entries_no_update BEFORE UPDATE ON log_entries
BEGIN SELECT RAISE(ABORT, 'log_entries is append-only'); END;
CREATE TRIGGER log_entries_no_delete BEFORE DELETE ON log_entries
BEGIN SELECT RAISE(ABORT, 'log_entries is append-only'); END;

CREATE TABLE log_checkpoints (
    tree_size  INTEGER PRIMARY KEY,          -- number of entries covered (= last seq)
    head_hash  TEXT    NOT NULL,             -- entry_hash of entry tree_size
    signed_at  TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,             -- RFC 7638 thumbprint of the Ed25519 key
    signature  TEXT    NOT NULL              -- base64 Ed25519 signature of the checkpoint note
) STRICT;

CREATE TABLE originals (
    sha256     TEXT    PRIMARY KEY,
    size_bytes INTEGER NOT NULL,
    media_type TEXT    NOT NULL,
    stored_at  TEXT    NOT NULL
) STRICT;

CREATE TABLE employers (
    id                  TEXT PRIMARY KEY,   -- UUIDv7
    name                TEXT NOT NULL,
    registration_number TEXT NOT NULL UNIQUE,
    created_at          TEXT NOT NULL
) STRICT;

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,         -- public part of the token
    employer_id   TEXT NOT NULL REFERENCES employers (id),
    secret_sha256 TEXT NOT NULL,            -- SHA-256 of the secret part; the secret is never stored
    created_at    TEXT NOT NULL,
    revoked_at    TEXT NULL
) STRICT;
CREATE INDEX api_tokens_employer ON api_tokens (employer_id);
