-- Mobile pre-registration: phone accesses and their PINs, mobile sessions (refresh
-- token families), pre-registrations and their pairing with registration forms, the
-- durable SMS outbox. Twin of migrations/sqlite/0005_mobile.sql (see there for the
-- meaning of each column).
--
-- A pre-registration is also a submission (document type `preregistration`); it has
-- no signing certificate.
ALTER TABLE submissions ALTER COLUMN signer_fingerprint DROP NOT NULL;

CREATE TABLE phone_accesses (
    id               TEXT    PRIMARY KEY,
    employer_id      TEXT    NOT NULL REFERENCES employers (id),
    phone            TEXT    NOT NULL,
    holder_name      TEXT    NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    deactivated_at   TIMESTAMPTZ NULL,
    pin_hash         TEXT    NULL,
    pin_sealed       BYTEA   NULL,
    pin_generated_at TIMESTAMPTZ NULL,
    pin_used_at      TIMESTAMPTZ NULL,
    failed_attempts  BIGINT  NOT NULL,
    locked_at        TIMESTAMPTZ NULL,
    registered_at    TIMESTAMPTZ NULL,
    last_login_at    TIMESTAMPTZ NULL
);
CREATE UNIQUE INDEX phone_accesses_active_phone ON phone_accesses (phone) WHERE deactivated_at IS NULL;
CREATE INDEX phone_accesses_employer ON phone_accesses (employer_id);

CREATE TABLE mobile_sessions (
    id              TEXT PRIMARY KEY,
    phone_access_id TEXT NOT NULL REFERENCES phone_accesses (id),
    device_name     TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ NULL,
    revoked_reason  TEXT NULL
);
CREATE INDEX mobile_sessions_access ON mobile_sessions (phone_access_id);

CREATE TABLE refresh_tokens (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES mobile_sessions (id),
    secret_sha256 TEXT NOT NULL,
    issued_at     TIMESTAMPTZ NOT NULL,
    spent_at      TIMESTAMPTZ NULL
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE preregistrations (
    id                   TEXT PRIMARY KEY REFERENCES submissions (id),
    employer_id          TEXT NOT NULL REFERENCES employers (id),
    phone_access_id      TEXT NOT NULL REFERENCES phone_accesses (id),
    person_id            TEXT NOT NULL,
    surname              TEXT NOT NULL,
    given_name           TEXT NOT NULL,
    birth_date           TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    effective_date       TEXT NOT NULL,
    received_at          TIMESTAMPTZ NOT NULL,
    deadline_at          TIMESTAMPTZ NOT NULL,
    state                TEXT NOT NULL,
    paired_with          TEXT NULL REFERENCES submissions (id),
    paired_at            TIMESTAMPTZ NULL,
    overdue_at           TIMESTAMPTZ NULL,
    reminded_at          TIMESTAMPTZ NULL
);
CREATE INDEX preregistrations_employer_state ON preregistrations (employer_id, state);
CREATE INDEX preregistrations_match ON preregistrations (employer_id, person_id, kind);
CREATE INDEX preregistrations_deadline ON preregistrations (state, deadline_at);

CREATE TABLE registration_items (
    submission_id  TEXT NOT NULL REFERENCES submissions (id),
    n              BIGINT  NOT NULL,
    employer_id    TEXT NOT NULL REFERENCES employers (id),
    person_id      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    effective_date TEXT NULL,
    PRIMARY KEY (submission_id, n)
);
CREATE INDEX registration_items_match ON registration_items (employer_id, person_id, kind);

CREATE TABLE prereg_digests (
    employer_id TEXT NOT NULL REFERENCES employers (id),
    day         TEXT NOT NULL,
    PRIMARY KEY (employer_id, day)
);

CREATE TABLE sms_outbox (
    id              TEXT    PRIMARY KEY,
    kind            TEXT    NOT NULL,
    phone_access_id TEXT    NOT NULL REFERENCES phone_accesses (id),
    recipient       TEXT    NOT NULL,
    body            TEXT    NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    due_at          TIMESTAMPTZ NOT NULL,
    attempts        BIGINT  NOT NULL,
    done_at         TIMESTAMPTZ NULL,
    outcome         TEXT    NULL,
    transport_id    TEXT    NULL,
    delivery_status TEXT    NULL,
    delivered_at    TIMESTAMPTZ NULL,
    last_error      TEXT    NULL,
    lease_owner     TEXT    NULL,
    lease_until     TIMESTAMPTZ NULL
);
CREATE INDEX sms_outbox_due ON sms_outbox (due_at);
