-- When each accepted filing must reach the authority: the end of its hold window
-- plus the forwarding deadline of its document type (`forwarding.deadline_secs`,
-- `forwarding.deadline_secs_by_type`), fixed when it is accepted so that a later
-- configuration change does not move a deadline already running. The forwarder
-- flags a delivery overdue once this time has passed.
-- Filings accepted before this migration get the 2 h default after their hold window
-- (what the forwarder applied to them until now), in the RFC 3339 form the other
-- times are stored in. SQLite cannot add a NOT NULL column without a default; the
-- service writes it on every row.
-- Twin of the other backend's 0016_forward_by.sql.
ALTER TABLE submissions ADD COLUMN forward_by TEXT;
UPDATE submissions
    SET forward_by = strftime('%Y-%m-%dT%H:%M:%f', hold_until, '+7200 seconds') || '+00:00';
CREATE INDEX submissions_forward_by ON submissions (forward_by);
