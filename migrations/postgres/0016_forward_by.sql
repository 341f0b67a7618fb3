-- When each accepted filing must reach the authority: the end of its hold window
-- plus the forwarding deadline of its document type (`forwarding.deadline_secs`,
-- `forwarding.deadline_secs_by_type`), fixed when it is accepted so that a later
-- configuration change does not move a deadline already running. The forwarder
-- flags a delivery overdue once this time has passed.
-- Filings accepted before this migration get the 2 h default after their hold window
-- (what the forwarder applied to them until now).
-- Twin of the other backend's 0016_forward_by.sql.
ALTER TABLE submissions ADD COLUMN forward_by TIMESTAMPTZ;
UPDATE submissions SET forward_by = hold_until + INTERVAL '7200 seconds';
ALTER TABLE submissions ALTER COLUMN forward_by SET NOT NULL;
CREATE INDEX submissions_forward_by ON submissions (forward_by);
