-- The whole Block Chat schema. Constraints live here, not only in code.

CREATE TABLE users (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username           TEXT NOT NULL CHECK (char_length(username) BETWEEN 3 AND 32),
    email              TEXT NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    password_hash      TEXT NOT NULL,
    display_name       TEXT CHECK (char_length(display_name) BETWEEN 1 AND 64),
    -- What the user chose; `online` is derived from live connections.
    status_choice      TEXT NOT NULL DEFAULT 'auto' CHECK (status_choice IN ('auto', 'away', 'offline')),
    last_seen          TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
-- Prefix search on usernames, ignoring case.
CREATE INDEX users_username_prefix_idx ON users (lower(username) text_pattern_ops, id);

CREATE SEQUENCE refresh_token_families AS BIGINT;

CREATE TABLE refresh_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Every token rotated from one login shares a family; reuse of a rotated token revokes it.
    family_id    BIGINT NOT NULL,
    token_hash   BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    replaced_at  TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Failed logins, per account and per client address, for rate limiting across all instances.
CREATE TABLE login_failures (
    key           TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    window_start  TIMESTAMPTZ NOT NULL
);

CREATE TABLE chats (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              TEXT CHECK (char_length(name) BETWEEN 1 AND 100),
    is_group          BOOLEAN NOT NULL,
    created_by        BIGINT REFERENCES users (id) ON DELETE SET NULL,
    -- "{lower id}:{higher id}" for a direct chat, so that a pair has one direct chat.
    direct_key        TEXT,
    -- The per-chat message counter; `seq` of the newest message.
    last_seq          BIGINT NOT NULL DEFAULT 0,
    last_activity_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT chats_direct_key_key UNIQUE (direct_key),
    CONSTRAINT chats_direct_has_key CHECK (is_group = (direct_key IS NULL)),
    CONSTRAINT chats_group_has_name CHECK (NOT is_group OR name IS NOT NULL)
);

CREATE TABLE chat_members (
    chat_id        BIGINT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role           TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    joined_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    -- The read cursor: every message with seq <= last_read_seq has been read.
    last_read_seq  BIGINT NOT NULL DEFAULT 0 CHECK (last_read_seq >= 0),
    last_read_at   TIMESTAMPTZ,
    CONSTRAINT chat_members_pkey PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_members_user_idx ON chat_members (user_id, chat_id);

CREATE TABLE messages (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chat_id     BIGINT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL CHECK (seq > 0),
    -- NULL once the author's account is deleted; the message stays.
    user_id     BIGINT REFERENCES users (id) ON DELETE SET NULL,
    content     TEXT NOT NULL CHECK (char_length(content) <= 4000),
    client_id   TEXT CHECK (char_length(client_id) BETWEEN 1 AND 64),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    edited_at   TIMESTAMPTZ,
    deleted_at  TIMESTAMPTZ,
    CONSTRAINT messages_chat_seq_key UNIQUE (chat_id, seq),
    CONSTRAINT messages_client_id_key UNIQUE (chat_id, user_id, client_id)
);
CREATE INDEX messages_user_idx ON messages (user_id);

CREATE TABLE ws_connections (
    connection_id  TEXT PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- NULL: every event of the user's chats; otherwise only this chat's.
    chat_id        BIGINT REFERENCES chats (id) ON DELETE CASCADE,
    connected_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ws_connections_user_idx ON ws_connections (user_id);
CREATE INDEX ws_connections_chat_idx ON ws_connections (chat_id) WHERE chat_id IS NOT NULL;
CREATE INDEX ws_connections_last_seen_idx ON ws_connections (last_seen_at);
