-- no-transaction
-- Mobile pre-registration: phone accesses and their PINs, mobile sessions (refresh
-- token families), pre-registrations and their pairing with registration forms, the
-- durable SMS outbox. Twin of migrations/postgres/0005_mobile.sql.
--
-- A pre-registration is also a submission (document type `preregistration`), so it is
-- receipted, forwarded and answered by the same code as signed filings. It has no
-- signing certificate, so `submissions.signer_fingerprint` becomes nullable. SQLite
-- cannot drop a NOT NULL constraint in place: the table is rebuilt by SQLite's
-- documented procedure (foreign keys off, copy, swap, check, foreign keys back on),
-- hence `no-transaction` above and the explicit transaction below.

PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE submissions_new (
    id                 TEXT    PRIMARY KEY,
    employer_id        TEXT    NOT NULL REFERENCES employers (id),
    document_type      TEXT    NOT NULL,
    document_number    TEXT    NOT NULL UNIQUE,
    status             TEXT    NOT NULL,
    sha256             TEXT    NOT NULL REFERENCES originals (sha256),
    size_bytes         INTEGER NOT NULL,
    received_at        TEXT    NOT NULL,
    hold_until         TEXT    NOT NULL,
    sender_reference   TEXT    NULL,
    idempotency_key    TEXT    NULL,
    signer_fingerprint TEXT    NULL REFERENCES employer_certificates (fingerprint),  -- NULL: a pre-registration (no signature)
    crl_sha256         TEXT    NULL REFERENCES crls (sha256),
    log_seq            INTEGER NOT NULL,
    receipt            TEXT    NOT NULL,
    warnings           TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL,
    authority_ref      TEXT    NULL,
    delivered_at       TEXT    NULL,
    UNIQUE (employer_id, sha256),
    UNIQUE (employer_id, idempotency_key),
    UNIQUE (employer_id, sender_reference)
) STRICT;
INSERT INTO submissions_new (id, employer_id, document_type, document_number, status, sha256,
    size_bytes, received_at, hold_until, sender_reference, idempotency_key, signer_fingerprint,
    crl_sha256, log_seq, receipt, warnings, updated_at, authority_ref, delivered_at)
SELECT id, employer_id, document_type, document_number, status, sha256,
    size_bytes, received_at, hold_until, sender_reference, idempotency_key, signer_fingerprint,
    crl_sha256, log_seq, receipt, warnings, updated_at, authority_ref, delivered_at
FROM submissions;
DROP TABLE submissions;
ALTER TABLE submissions_new RENAME TO submissions;
CREATE INDEX submissions_employer_received ON submissions (employer_id, received_at);
CREATE INDEX submissions_status_hold ON submissions (status, hold_until);

-- A phone user an employer authorised. At most one active access per phone number.
CREATE TABLE phone_accesses (
    id               TEXT    PRIMARY KEY,    -- UUIDv7
    employer_id      TEXT    NOT NULL REFERENCES employers (id),
    phone            TEXT    NOT NULL,       -- E.164, e.g. +421901123456
    holder_name      TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    deactivated_at   TEXT    NULL,
    pin_hash         TEXT    NULL,           -- Argon2id PHC string (with the server's pepper); NULL: no PIN yet
    pin_sealed       BLOB    NULL,           -- the PIN encrypted (AES-256-GCM) until first used, so it can be sent by SMS
    pin_generated_at TEXT    NULL,
    pin_used_at      TEXT    NULL,           -- first successful login with the current PIN
    failed_attempts  INTEGER NOT NULL,       -- wrong PINs since the PIN was generated or last used
    locked_at        TEXT    NULL,           -- set at the limit; only a new PIN unlocks
    registered_at    TEXT    NULL,           -- first successful login ever
    last_login_at    TEXT    NULL
) STRICT;
CREATE UNIQUE INDEX phone_accesses_active_phone ON phone_accesses (phone) WHERE deactivated_at IS NULL;
CREATE INDEX phone_accesses_employer ON phone_accesses (employer_id);

-- A login on a device: one refresh-token family. Revoking it ends the session at once
-- (access tokens are checked against it).
CREATE TABLE mobile_sessions (
    id              TEXT PRIMARY KEY,        -- UUIDv7, the `sid` claim
    phone_access_id TEXT NOT NULL REFERENCES phone_accesses (id),
    device_name     TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,           -- absolute end, refreshes do not extend it
    revoked_at      TEXT NULL,
    revoked_reason  TEXT NULL
) STRICT;
CREATE INDEX mobile_sessions_access ON mobile_sessions (phone_access_id);

-- Refresh tokens `<id>.<secret>`: only the secret's SHA-256 is kept. A token is spent
-- by one refresh; presenting a spent one again revokes its whole session.
CREATE TABLE refresh_tokens (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES mobile_sessions (id),
    secret_sha256 TEXT NOT NULL,
    issued_at     TEXT NOT NULL,
    spent_at      TEXT NULL
) STRICT;
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- Pre-registrations (each also a row of `submissions` with the same id).
CREATE TABLE preregistrations (
    id                   TEXT PRIMARY KEY REFERENCES submissions (id),
    employer_id          TEXT NOT NULL REFERENCES employers (id),
    phone_access_id      TEXT NOT NULL REFERENCES phone_accesses (id),
    person_id            TEXT NOT NULL,
    surname              TEXT NOT NULL,
    given_name           TEXT NOT NULL,
    birth_date           TEXT NOT NULL,      -- YYYY-MM-DD
    kind                 TEXT NOT NULL,      -- hire | termination
    effective_date       TEXT NOT NULL,      -- YYYY-MM-DD
    received_at          TEXT NOT NULL,
    deadline_at          TEXT NOT NULL,      -- the registration form is due by then
    state                TEXT NOT NULL,      -- received | overdue | paired
    paired_with          TEXT NULL REFERENCES submissions (id),
    paired_at            TEXT NULL,
    overdue_at           TEXT NULL,
    reminded_at          TEXT NULL           -- the phone user's SMS reminder was queued
) STRICT;
CREATE INDEX preregistrations_employer_state ON preregistrations (employer_id, state);
CREATE INDEX preregistrations_match ON preregistrations (employer_id, person_id, kind);
CREATE INDEX preregistrations_deadline ON preregistrations (state, deadline_at);

-- What each accepted registration form registers, for pairing (written with the
-- acceptance).
CREATE TABLE registration_items (
    submission_id  TEXT NOT NULL REFERENCES submissions (id),
    n              INTEGER NOT NULL,         -- 1, 2, … in document order
    employer_id    TEXT NOT NULL REFERENCES employers (id),
    person_id      TEXT NOT NULL,
    kind           TEXT NOT NULL,            -- hire | termination | interruption | change | cancellation
    effective_date TEXT NULL,                -- YYYY-MM-DD
    PRIMARY KEY (submission_id, n)
) STRICT;
CREATE INDEX registration_items_match ON registration_items (employer_id, person_id, kind);

-- The daily overdue-list e-mail, at most once per employer and day.
CREATE TABLE prereg_digests (
    employer_id TEXT NOT NULL REFERENCES employers (id),
    day         TEXT NOT NULL,               -- YYYY-MM-DD (UTC)
    PRIMARY KEY (employer_id, day)
) STRICT;

-- Outgoing SMS, written in the transaction of the event; sent by a leased worker.
-- A PIN message keeps no text here: it is composed from the sealed PIN when sent.
CREATE TABLE sms_outbox (
    id              TEXT    PRIMARY KEY,     -- UUIDv7
    kind            TEXT    NOT NULL,        -- pin | reminder
    phone_access_id TEXT    NOT NULL REFERENCES phone_accesses (id),
    recipient       TEXT    NOT NULL,        -- E.164
    body            TEXT    NULL,            -- NULL for pin messages
    created_at      TEXT    NOT NULL,
    due_at          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    done_at         TEXT    NULL,            -- when it left, failed for good, or was dropped
    outcome         TEXT    NULL,            -- sent | failed | dropped (e.g. the PIN was used meanwhile)
    transport_id    TEXT    NULL,            -- the SMSC's / gateway's message id
    delivery_status TEXT    NULL,            -- from the SMSC's delivery receipt (DELIVRD, UNDELIV, …), when asked for
    delivered_at    TEXT    NULL,            -- when that receipt arrived
    last_error      TEXT    NULL,
    lease_owner     TEXT    NULL,
    lease_until     TEXT    NULL
) STRICT;
CREATE INDEX sms_outbox_due ON sms_outbox (due_at);

COMMIT;
PRAGMA foreign_keys = ON;
