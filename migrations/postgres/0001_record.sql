-- The record: transaction log, checkpoints, originals index, employers and API tokens.
-- Twin of migrations/sqlite/0001_record.sql: same tables, same columns, same meaning.

CREATE TABLE log_entries (
    seq            BIGINT      PRIMARY KEY,  -- 1, 2, 3, … without gaps
    recorded_at    TIMESTAMPTZ NOT NULL,
    actor          TEXT        NOT NULL,
    action         TEXT        NOT NULL,
    subject        TEXT        NOT NULL,
    payload_sha256 TEXT        NULL,         -- 64 lowercase hex digits, or NULL
    prev_hash      TEXT        NOT NULL,     -- entry_hash of seq-1 (64 zeros for seq 1)
    entry_hash     TEXT        NOT NULL      -- see docs/LOG.md for the canonical encoding
);
CREATE INDEX log_entries_subject ON log_entries (subject);
CREATE INDEX log_entries_recorded_at ON log_entries (recorded_at);

-- The log is append-only: the database itself refuses to change or remove an entry.
CREATE FUNCTION log_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'log_entries is append-only';
END;
$$;
CREATE TRIGGER log_entries_no_update BEFORE UPDATE OR DELETE ON log_entries
    FOR EACH ROW EXECUTE FUNCTION log_entries_append_only();
CREATE TRIGGER log_entries_no_truncate BEFORE TRUNCATE ON log_entries
    FOR EACH STATEMENT EXECUTE FUNCTION log_entries_append_only();

CREATE TABLE log_checkpoints (
    tree_size  BIGINT      PRIMARY KEY,      -- number of entries covered (= last seq)
    head_hash  TEXT        NOT NULL,         -- entry_hash of entry tree_size
    signed_at  TIMESTAMPTZ NOT NULL,
    key_id     TEXT        NOT NULL,         -- RFC 7638 thumbprint of the Ed25519 key
    signature  TEXT        NOT NULL          -- base64 Ed25519 signature of the checkpoint note
);

CREATE TABLE originals (
    sha256     TEXT        PRIMARY KEY,
    size_bytes BIGINT      NOT NULL,
    media_type TEXT        NOT NULL,
    stored_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE employers (
    id                  TEXT        PRIMARY KEY,  -- UUIDv7
    name                TEXT        NOT NULL,
    registration_number TEXT        NOT NULL UNIQUE,
    created_at          TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_tokens (
    id            TEXT        PRIMARY KEY,        -- public part of the token
    employer_id   TEXT        NOT NULL REFERENCES employers (id),
    secret_sha256 TEXT        NOT NULL,           -- SHA-256 of the secret part; never the secret
    created_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ NULL
);
CREATE INDEX api_tokens_employer ON api_tokens (employer_id);
