-- What a filing's signature covers: the SHA-256 of the canonical document without
-- its signature (the Reference's DigestValue, checked at intake). Byte-different
-- files of one signed document (a trailing newline, a comment) share it, and
-- duplicates are judged on it, not on the raw bytes (which stay the original kept).
-- NULL for pre-registrations (unsigned) and filings recorded before this column.
-- Twin of migrations/sqlite/0010_signed_digest.sql.
ALTER TABLE submissions ADD COLUMN signed_digest TEXT NULL;
CREATE UNIQUE INDEX submissions_signed_digest ON submissions (employer_id, signed_digest);
