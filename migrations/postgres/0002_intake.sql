-- Intake: trust material (CAs, CRLs, employers' signing certificates), submissions
-- and document numbers. Twin of migrations/sqlite/0002_intake.sql.
-- A submission's state history is not kept here: it is the transaction log's entries
-- whose subject is `submission:<id>` (one source of truth).

CREATE TABLE trust_anchors (
    sha256     TEXT PRIMARY KEY,             -- SHA-256 of the certificate's DER
    subject    TEXT NOT NULL,
    not_after  TIMESTAMPTZ NOT NULL,
    der        BYTEA NOT NULL,
    added_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE crls (
    sha256      TEXT PRIMARY KEY REFERENCES originals (sha256),  -- the CRL is also kept as an original
    issuer      TEXT NOT NULL,
    this_update TIMESTAMPTZ NOT NULL,
    next_update TIMESTAMPTZ NULL,
    der         BYTEA NOT NULL,
    added_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE employer_certificates (
    fingerprint TEXT PRIMARY KEY,            -- SHA-256 of the certificate's DER
    employer_id TEXT NOT NULL REFERENCES employers (id),
    subject     TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    serial      TEXT NOT NULL,
    not_before  TIMESTAMPTZ NOT NULL,
    not_after   TIMESTAMPTZ NOT NULL,
    der         BYTEA NOT NULL,
    added_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX employer_certificates_employer ON employer_certificates (employer_id);

CREATE TABLE submissions (
    id                 TEXT    PRIMARY KEY,  -- message id, UUIDv7
    employer_id        TEXT    NOT NULL REFERENCES employers (id),
    document_type      TEXT    NOT NULL,
    document_number    TEXT    NOT NULL UNIQUE,
    status             TEXT    NOT NULL,
    sha256             TEXT    NOT NULL REFERENCES originals (sha256),
    size_bytes         BIGINT  NOT NULL,
    received_at        TIMESTAMPTZ NOT NULL,     -- = recorded_at of the submission.receive entry
    hold_until         TIMESTAMPTZ NOT NULL,     -- end of the cancel window
    sender_reference   TEXT    NULL,         -- the employer's own message id, if the document has one
    idempotency_key    TEXT    NULL,
    signer_fingerprint TEXT    NOT NULL REFERENCES employer_certificates (fingerprint),
    crl_sha256         TEXT    NULL REFERENCES crls (sha256),
    log_seq            BIGINT NOT NULL,      -- position of the submission.receive entry
    receipt            TEXT    NOT NULL,     -- the compact JWS handed out, byte-exact
    warnings           TEXT    NOT NULL,     -- JSON array of findings
    updated_at         TIMESTAMPTZ NOT NULL,
    UNIQUE (employer_id, sha256),
    UNIQUE (employer_id, idempotency_key),
    UNIQUE (employer_id, sender_reference)
);
CREATE INDEX submissions_employer_received ON submissions (employer_id, received_at);
CREATE INDEX submissions_status_hold ON submissions (status, hold_until);

-- Per-type, per-month document number sequences: R2611000123 = R + 2611 + 000123.
CREATE TABLE document_counters (
    prefix TEXT    NOT NULL,
    period TEXT    NOT NULL,                 -- YYMM
    last   BIGINT  NOT NULL,
    PRIMARY KEY (prefix, period)
);
