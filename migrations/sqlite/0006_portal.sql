-- The employer portal: users (clerks and employer admins) and their passkeys,
-- enrolment invitations, browser sessions, pending WebAuthn ceremonies, uploads
-- waiting for their step-up approval; API tokens gain a label and an optional IP
-- allow-list. Twin of migrations/postgres/0006_portal.sql.

CREATE TABLE users (
    id              TEXT PRIMARY KEY,           -- UUIDv7; the log names a user `user:<id>`
    employer_id     TEXT NOT NULL REFERENCES employers (id),
    email           TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'clerk')),
    webauthn_handle TEXT NOT NULL UNIQUE,       -- the WebAuthn user handle (a UUID, not the id)
    created_at      TEXT NOT NULL,
    revoked_at      TEXT NULL
) STRICT;
CREATE UNIQUE INDEX users_active_email ON users (employer_id, email) WHERE revoked_at IS NULL;

-- A single-use enrolment link; only the SHA-256 of its secret is kept.
CREATE TABLE user_invitations (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    secret_sha256 TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    used_at       TEXT NULL
) STRICT;
CREATE INDEX user_invitations_user ON user_invitations (user_id);

CREATE TABLE passkeys (
    id           TEXT PRIMARY KEY,              -- the credential id, base64url
    user_id      TEXT NOT NULL REFERENCES users (id),
    name         TEXT NOT NULL,
    passkey      TEXT NOT NULL,                 -- webauthn-rs Passkey (public key, counter), JSON
    created_at   TEXT NOT NULL,
    last_used_at TEXT NULL,
    removed_at   TEXT NULL
) STRICT;
CREATE INDEX passkeys_user ON passkeys (user_id);

-- The cookie holds a random secret; the row is keyed by its SHA-256.
CREATE TABLE portal_sessions (
    id_sha256    TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    passkey_id   TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    reauth_at    TEXT NULL,                     -- last passkey assertion (sign-in or re-confirmation)
    expires_at   TEXT NOT NULL,                 -- absolute end
    ended_at     TEXT NULL
) STRICT;
CREATE INDEX portal_sessions_user ON portal_sessions (user_id);

-- A WebAuthn ceremony in progress: single use, short-lived. A step-up names the
-- action and its target (the document's SHA-256 or the message id) it may approve.
CREATE TABLE webauthn_ceremonies (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('enrol', 'add-passkey', 'sign-in', 'step-up')),
    user_id    TEXT NULL REFERENCES users (id),
    action     TEXT NULL,
    target     TEXT NULL,
    state      TEXT NOT NULL,                   -- webauthn-rs ceremony state, JSON
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
) STRICT;
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies (expires_at);

-- A file uploaded in the portal and checked, waiting for its approval. Not a
-- submission yet: nothing of it is in the record until it is approved.
CREATE TABLE portal_uploads (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    employer_id TEXT NOT NULL REFERENCES employers (id),
    file_name   TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    body        BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
) STRICT;
CREATE INDEX portal_uploads_expiry ON portal_uploads (expires_at);

ALTER TABLE api_tokens ADD COLUMN label TEXT NULL;
-- JSON array of CIDR blocks; NULL: any address.
ALTER TABLE api_tokens ADD COLUMN allowed_ips TEXT NULL;
-- `user:<id>` or `operator:<name>`
ALTER TABLE api_tokens ADD COLUMN created_by TEXT NULL;

-- A message carrying a secret (an enrolment link) holds it here, not in its body: the
-- body has the placeholder `{{secret}}`. The secret is put in only when the message
-- is sent, the logged copy (`mail.send`) keeps the placeholder, and the column is
-- cleared once the message has left.
ALTER TABLE mail_outbox ADD COLUMN secret TEXT NULL;
