-- Facts a running server records about itself for the command line, one row each
-- (owned by server/src/settings.rs). `portal.origin`: the portal origin the last
-- `ivan serve` served under, so that links `ivan admin user invite` and
-- `ivan admin officer add` mail point at the server, not at the command's own
-- default listen address. Twin of migrations/sqlite/0009_server_settings.sql.
CREATE TABLE server_settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
