-- Sessions: one row per login. Access tokens name their session (`sid`), refresh tokens and
-- WebSocket connections belong to one, so ending a session ends all three at once.

-- A session's id continues the refresh-token family numbering: the families issued so far become
-- sessions, and the access tokens that carry their number as `sid` stay valid.
CREATE TABLE sessions (
    id                 BIGINT PRIMARY KEY DEFAULT nextval('refresh_token_families'),
    user_id            BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_refreshed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Absolute: refreshing never moves it.
    expires_at         TIMESTAMPTZ NOT NULL,
    revoked_at         TIMESTAMPTZ
);
ALTER SEQUENCE refresh_token_families OWNED BY sessions.id;
CREATE INDEX sessions_user_idx ON sessions (user_id);

INSERT INTO sessions (id, user_id, created_at, last_refreshed_at, expires_at, revoked_at)
SELECT family_id, min(user_id), min(created_at), max(created_at),
       min(created_at) + interval '90 days',
       CASE WHEN bool_or(revoked_at IS NOT NULL) THEN max(revoked_at) END
FROM refresh_tokens GROUP BY family_id;

ALTER TABLE refresh_tokens RENAME COLUMN family_id TO session_id;
ALTER INDEX refresh_tokens_family_idx RENAME TO refresh_tokens_session_idx;
ALTER TABLE refresh_tokens
    ADD CONSTRAINT refresh_tokens_session_fkey
    FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE;

-- NULL only for connections opened before sessions existed; the frame check refuses them.
ALTER TABLE ws_connections
    ADD COLUMN session_id BIGINT REFERENCES sessions (id) ON DELETE CASCADE;
CREATE INDEX ws_connections_session_idx ON ws_connections (session_id);

-- Attempts counted before they are tried (logins, current-password checks, registrations),
-- under a SHA-256 of the key, never the key as typed. `login_failures` is left for the version
-- before this one, which may still be serving while this migration is applied.
CREATE TABLE rate_limits (
    key         BYTEA PRIMARY KEY,
    hits        INTEGER NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX rate_limits_expires_idx ON rate_limits (expires_at);
