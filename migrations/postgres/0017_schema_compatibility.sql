-- Rolling upgrades (docs/OPERATIONS.md, "Upgrading"): each migration from this one on
-- records the oldest migration a build must know to keep running on the schema it
-- leaves. An expand migration (new tables, nullable columns, indexes) names the
-- migration before it, so the nodes of the previous release keep serving — and may
-- restart — while the new release's nodes take over; a contract migration (drops,
-- renames, new constraints on existing data) names itself, and older builds refuse
-- to start on it with a message that says so. Every later migration adds its row in
-- the same file; a test checks that none forgets.
-- Twin of the other backend's 0017_schema_compatibility.sql.
CREATE TABLE schema_compatibility (
    version           BIGINT NOT NULL PRIMARY KEY,  -- the migration
    oldest_compatible BIGINT NOT NULL               -- builds knowing this one or later may run on it
);
-- This migration only adds a table: builds that know 0016 run on it unchanged.
INSERT INTO schema_compatibility (version, oldest_compatible) VALUES (17, 16);
