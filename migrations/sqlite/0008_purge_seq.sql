-- Which `submission.purge` log entry purged an original. `purged_at` alone is not
-- chained, so `log verify` checks each purged original against the entry named here:
-- it must be a `submission.purge` whose (chained, hashed) payload lists the original.
-- Twin of the other backend's 0008_purge_seq.sql.
ALTER TABLE originals ADD COLUMN purge_seq INTEGER NULL;

-- Originals purged before this column existed: the newest purge entry of a filing
-- whose entries name them.
UPDATE originals SET purge_seq = (
    SELECT MAX(p.seq) FROM log_entries p
    JOIN log_entries e ON e.subject = p.subject
    WHERE p.action = 'submission.purge' AND e.payload_sha256 = originals.sha256
)
WHERE purged_at IS NOT NULL;
