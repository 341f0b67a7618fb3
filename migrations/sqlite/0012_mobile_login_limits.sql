-- Mobile login limits (issue 17, item 11). Twin of migrations/postgres/0012_mobile_login_limits.sql.
--
-- Per phone number (known or not, so the answers do not tell them apart): wrong PINs
-- in a row drive an exponential delay; wrong PINs in a window drive the hard lock.
CREATE TABLE phone_login_throttle (
    phone            TEXT    PRIMARY KEY,    -- E.164
    failures         INTEGER NOT NULL,       -- wrong PINs in a row (a successful login resets)
    next_attempt_at  TEXT    NULL,           -- earlier attempts are answered 429, not checked
    window_start     TEXT    NOT NULL,       -- start of the sustained-abuse window
    window_failures  INTEGER NOT NULL,       -- wrong PINs since window_start
    last_failure_at  TEXT    NOT NULL
) STRICT;

-- Refused logins for phone numbers nobody authorised, counted per phone and hour
-- instead of one log entry each; the sweep turns each finished hour into one
-- `phone.login-fail-unknown` entry carrying the count and deletes the row.
CREATE TABLE unknown_phone_failures (
    phone       TEXT    NOT NULL,            -- E.164, or `invalid` for malformed numbers
    hour        TEXT    NOT NULL,            -- YYYY-MM-DDTHH (UTC)
    attempts    INTEGER NOT NULL,
    last_source TEXT    NOT NULL,
    PRIMARY KEY (phone, hour)
) STRICT;
