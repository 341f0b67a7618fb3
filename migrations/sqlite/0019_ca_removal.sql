-- `ivan admin ca remove`: a CA is no longer trusted (compromised, retired). The row
-- stays, so evidence about filings accepted under it still shows what was trusted
-- then; removed_at says since when. Its CRLs stay too.
-- Expand only: builds that know 0018 run on it (they still trust a removed CA, so
-- finish a rolling upgrade before relying on a removal).
-- Twin of the other backend's 0019_ca_removal.sql.
ALTER TABLE trust_anchors ADD COLUMN removed_at TEXT;
INSERT INTO schema_compatibility (version, oldest_compatible) VALUES (19, 18);
