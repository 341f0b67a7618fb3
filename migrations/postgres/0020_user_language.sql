-- Issue 22: the portal in the user's language. A user's own choice of language for
-- the portal (`en`, `sk`, `cs`); NULL until they choose: the browser's
-- Accept-Language decides until then.
-- Expand only: builds that know 0019 run on it (they ignore the column).
-- Twin of the other backend's 0020_user_language.sql.
ALTER TABLE users ADD COLUMN language TEXT;
INSERT INTO schema_compatibility (version, oldest_compatible) VALUES (20, 19);
