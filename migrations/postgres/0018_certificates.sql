-- Registered signing certificates (`employer_certificates`) gain:
-- - removed_at: `ivan admin cert remove` stops a certificate from authorising new
--   filings. The row stays (filings it signed name it, and the evidence of a filing
--   keeps its certificate for re-validation); removed_at says since when.
-- - expiry_warned_days: the smallest of `intake.cert_expiry_warn_days` (60, 30, 7)
--   the employer has been warned at, so each warning is sent once.
-- Expand only: builds that know 0017 run on it (they neither refuse removed
-- certificates nor warn, so finish a rolling upgrade before relying on either).
-- Twin of the other backend's 0018_certificates.sql.
ALTER TABLE employer_certificates ADD COLUMN removed_at TIMESTAMPTZ;
ALTER TABLE employer_certificates ADD COLUMN expiry_warned_days BIGINT;
INSERT INTO schema_compatibility (version, oldest_compatible) VALUES (18, 17);
