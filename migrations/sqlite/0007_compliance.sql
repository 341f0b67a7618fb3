-- no-transaction
-- Compliance and retention: compliance officers (portal users without an employer) and
-- their personal API tokens, the keyed person index, legal holds, and what the
-- retention sweeper purged. Twin of migrations/postgres/0007_compliance.sql.
--
-- SQLite cannot change a column's NOT NULL or a CHECK in place, so `users` is
-- rebuilt. Tables referencing it keep their foreign keys only if the rebuild runs with
-- foreign-key enforcement off, which SQLite allows only outside a transaction: hence
-- `no-transaction` above and the explicit BEGIN … COMMIT here (the rebuild is atomic;
-- `foreign_key_check` inside it would list any violation before the commit).
PRAGMA foreign_keys = OFF;
BEGIN;

CREATE TABLE users_rebuilt (
    id              TEXT PRIMARY KEY,           -- UUIDv7; the log names a user `user:<id>`
    employer_id     TEXT NULL REFERENCES employers (id),  -- NULL for compliance officers
    email           TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'clerk', 'officer')),
    webauthn_handle TEXT NOT NULL UNIQUE,       -- the WebAuthn user handle (a UUID, not the id)
    created_at      TEXT NOT NULL,
    revoked_at      TEXT NULL,
    organisation    TEXT NULL,                  -- an officer's organisation
    CHECK ((role = 'officer') = (employer_id IS NULL)),
    CHECK ((role = 'officer') = (organisation IS NOT NULL))
) STRICT;
INSERT INTO users_rebuilt (id, employer_id, email, role, webauthn_handle, created_at, revoked_at)
    SELECT id, employer_id, email, role, webauthn_handle, created_at, revoked_at FROM users;
DROP TABLE users;
ALTER TABLE users_rebuilt RENAME TO users;
CREATE UNIQUE INDEX users_active_email ON users (employer_id, email) WHERE revoked_at IS NULL;
CREATE UNIQUE INDEX users_active_officer_email ON users (email)
    WHERE role = 'officer' AND revoked_at IS NULL;

-- An officer's personal API token (`ivan-officer_<id>_<secret>`): only the SHA-256 of
-- the secret is kept. Separate from employers' tokens, so neither kind can reach the
-- other's routes.
CREATE TABLE officer_tokens (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    secret_sha256 TEXT NOT NULL,
    label         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT NULL
) STRICT;
CREATE INDEX officer_tokens_user ON officer_tokens (user_id);

-- Which filings name a person: HMAC-SHA256 of the personal id under a key kept in the
-- data directory (`person-index.key`), never the id itself.
CREATE TABLE person_index (
    person_key    TEXT NOT NULL,
    submission_id TEXT NOT NULL REFERENCES submissions (id),
    PRIMARY KEY (person_key, submission_id)
) STRICT;
CREATE INDEX person_index_submission ON person_index (submission_id);
-- When the filing's persons were indexed (NULL: not yet; the sweeper catches up).
ALTER TABLE submissions ADD COLUMN persons_indexed_at TEXT NULL;

-- A legal hold keeps a filing (scope `submission`, target = message id) or all of an
-- employer's filings (scope `employer`, target = employer id) past their retention.
CREATE TABLE legal_holds (
    id             TEXT PRIMARY KEY,
    scope          TEXT NOT NULL CHECK (scope IN ('submission', 'employer')),
    target         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    released_at    TEXT NULL,
    released_by    TEXT NULL,
    release_reason TEXT NULL
) STRICT;
CREATE INDEX legal_holds_target ON legal_holds (scope, target);

-- Retention: when a filing's payloads were purged (its hashes stay in the log), and
-- which originals are gone from the store.
ALTER TABLE submissions ADD COLUMN purged_at TEXT NULL;
ALTER TABLE originals ADD COLUMN purged_at TEXT NULL;

PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
