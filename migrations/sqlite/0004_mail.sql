-- E-mail: each employer's notification address and the durable mail outbox.
-- Twin of migrations/postgres/0004_mail.sql.

ALTER TABLE employers ADD COLUMN notify_email TEXT NULL;

-- One row per message, written in the transaction of the event it reports; sent_at
-- is set (in the transaction of its mail.send log entry) once it has left.
CREATE TABLE mail_outbox (
    id            TEXT PRIMARY KEY,          -- UUIDv7
    kind          TEXT NOT NULL,             -- receipt | answer | overdue
    recipient     TEXT NOT NULL,
    subject       TEXT NOT NULL,
    body          TEXT NOT NULL,
    submission_id TEXT NULL REFERENCES submissions (id),
    created_at    TEXT NOT NULL,
    due_at        TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    sent_at       TEXT NULL,
    last_error    TEXT NULL,
    lease_owner   TEXT NULL,
    lease_until   TEXT NULL
);
CREATE INDEX mail_outbox_due ON mail_outbox (due_at);
