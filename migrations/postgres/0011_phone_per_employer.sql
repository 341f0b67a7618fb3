-- A phone number may be authorised by several employers, each its own access with its
-- own PIN (at most one active access per employer and phone). Before, one active
-- access per phone in the whole intermediary meant the second employer to authorise a
-- phone learnt that another employer had it (issue 17, item 12). Login tells the
-- accesses of a phone apart by their PINs, which are kept distinct per phone.
-- Twin of the other backend's
-- 0011_phone_per_employer.sql.
DROP INDEX phone_accesses_active_phone;
CREATE UNIQUE INDEX phone_accesses_active_employer_phone ON phone_accesses (employer_id, phone) WHERE deactivated_at IS NULL;
CREATE INDEX phone_accesses_phone ON phone_accesses (phone);
