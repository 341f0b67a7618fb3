-- Forwarding to the authority: the durable outbox, the authority's answers, and what
-- the authority told us about each submission. Twin of migrations/sqlite/0003_forwarding.sql.
-- As for intake, the state history is the log's entries for `submission:<id>`; these
-- tables hold only what the forwarder needs to do its work and the API to answer.

ALTER TABLE submissions ADD COLUMN authority_ref TEXT NULL;          -- the authority's reference, once delivered
ALTER TABLE submissions ADD COLUMN delivered_at TIMESTAMPTZ NULL;    -- when the authority took it

-- One row per submission that still needs the authority: delivered (`phase` deliver)
-- or waiting for its processing result (`phase` poll). Written in the transaction that
-- accepts the submission; deleted in the one that records the final answer or the
-- cancel. A worker owns a row while `lease_until` is in the future.
CREATE TABLE outbox (
    submission_id TEXT PRIMARY KEY REFERENCES submissions (id),
    phase         TEXT NOT NULL,             -- deliver | poll
    due_at        TIMESTAMPTZ NOT NULL,      -- next attempt not before
    attempts      BIGINT NOT NULL,           -- attempts in this phase so far
    lease_owner   TEXT NULL,
    lease_until   TIMESTAMPTZ NULL,
    last_error    TEXT NULL,
    overdue_at    TIMESTAMPTZ NULL,          -- when it was flagged overdue (hold_until + forwarding.deadline_secs passed)
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX outbox_due ON outbox (due_at);

-- The authority's answer documents; the bytes are originals, logged as
-- `submission.answer` entries (log_seq).
CREATE TABLE answers (
    submission_id TEXT NOT NULL REFERENCES submissions (id),
    n             BIGINT NOT NULL,           -- 1, 2, … in the authority's order
    name          TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    sha256        TEXT NOT NULL REFERENCES originals (sha256),
    size_bytes    BIGINT NOT NULL,
    log_seq       BIGINT NOT NULL,
    received_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (submission_id, n)
);

-- Submissions accepted before forwarding existed are queued like new ones.
INSERT INTO outbox (submission_id, phase, due_at, attempts, created_at)
    SELECT id, 'deliver', hold_until, 0, updated_at FROM submissions WHERE status = 'accepted';
