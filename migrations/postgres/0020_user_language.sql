-- Issue 22: people read ivan in their language (`en`, `sk`, `cs`).
-- users.language: a user's choice for the portal (and their invitation); NULL until
-- they choose: the browser's Accept-Language decides until then.
-- employers.language: the language of the employer's mail (receipts, answers,
-- warnings); NULL: English.
-- Expand only: builds that know 0019 run on it (they ignore the column).
-- Twin of the other backend's 0020_user_language.sql.
ALTER TABLE users ADD COLUMN language TEXT;
ALTER TABLE employers ADD COLUMN language TEXT;
INSERT INTO schema_compatibility (version, oldest_compatible) VALUES (20, 19);
