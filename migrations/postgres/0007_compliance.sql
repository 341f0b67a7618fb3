-- Compliance and retention: compliance officers (portal users without an employer) and
-- their personal API tokens, the keyed person index, legal holds, and what the
-- retention sweeper purged. Twin of migrations/sqlite/0007_compliance.sql.

ALTER TABLE users ALTER COLUMN employer_id DROP NOT NULL;   -- NULL for compliance officers
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('admin', 'clerk', 'officer'));
ALTER TABLE users ADD COLUMN organisation TEXT NULL;        -- an officer's organisation
ALTER TABLE users ADD CONSTRAINT users_officer_no_employer
    CHECK ((role = 'officer') = (employer_id IS NULL));
ALTER TABLE users ADD CONSTRAINT users_officer_organisation
    CHECK ((role = 'officer') = (organisation IS NOT NULL));
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
    created_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ NULL
);
CREATE INDEX officer_tokens_user ON officer_tokens (user_id);

-- Which filings name a person: HMAC-SHA256 of the personal id under a key kept in the
-- data directory (`person-index.key`), never the id itself.
CREATE TABLE person_index (
    person_key    TEXT NOT NULL,
    submission_id TEXT NOT NULL REFERENCES submissions (id),
    PRIMARY KEY (person_key, submission_id)
);
CREATE INDEX person_index_submission ON person_index (submission_id);
-- When the filing's persons were indexed (NULL: not yet; the sweeper catches up).
ALTER TABLE submissions ADD COLUMN persons_indexed_at TIMESTAMPTZ NULL;

-- A legal hold keeps a filing (scope `submission`, target = message id) or all of an
-- employer's filings (scope `employer`, target = employer id) past their retention.
CREATE TABLE legal_holds (
    id             TEXT PRIMARY KEY,
    scope          TEXT NOT NULL CHECK (scope IN ('submission', 'employer')),
    target         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    released_at    TIMESTAMPTZ NULL,
    released_by    TEXT NULL,
    release_reason TEXT NULL
);
CREATE INDEX legal_holds_target ON legal_holds (scope, target);

-- Retention: when a filing's payloads were purged (its hashes stay in the log), and
-- which originals are gone from the store.
ALTER TABLE submissions ADD COLUMN purged_at TIMESTAMPTZ NULL;
ALTER TABLE originals ADD COLUMN purged_at TIMESTAMPTZ NULL;
