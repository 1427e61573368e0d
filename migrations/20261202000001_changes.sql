-- The change log behind `GET /api/sync`: one row per change that is pushed to a chat's members
-- (messages created, edited, deleted; read cursors; members added, removed; chats created,
-- renamed, deleted).
--
-- Each change has a position `pos` within its chat, taken from `chats.last_pos` under the chat
-- row's lock, as a message's `seq` is: within a chat, positions are gap-free and in commit
-- order. Across chats, changes are read in the order of the writing transaction's id (`xid`)
-- and only below the oldest transaction still running, so a change that commits late is never
-- passed over by a reader (see `service::sync`).

ALTER TABLE chats ADD COLUMN last_pos BIGINT NOT NULL DEFAULT 0;

-- The position of the change that made the user a member: what came before is not theirs.
ALTER TABLE chat_members ADD COLUMN joined_pos BIGINT NOT NULL DEFAULT 0;

CREATE TABLE changes (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- No foreign key: `chat.deleted` outlives its chat.
    chat_id     BIGINT NOT NULL,
    pos         BIGINT NOT NULL CHECK (pos > 0),
    -- The writing transaction; its id is taken when it first writes.
    xid         BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    kind        TEXT NOT NULL CHECK (kind IN (
                    'message.created', 'message.updated', 'message.deleted', 'message.read',
                    'chat.created', 'chat.updated', 'chat.deleted',
                    'member.added', 'member.removed')),
    -- message.*: the message (its current state is what a reader gets).
    message_id  BIGINT,
    -- message.read: the reader; member.removed: who left.
    user_id     BIGINT,
    -- message.read: the cursor; member.removed: the member who became admin, if one did.
    value       BIGINT,
    -- member.added: who joined.
    user_ids    BIGINT[],
    -- member.removed, chat.deleted: who may still read it once they are no longer members.
    audience    BIGINT[],
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT changes_chat_pos_key UNIQUE (chat_id, pos)
);
-- A reader's chats, each from its position in the order.
CREATE INDEX changes_chat_xid_idx ON changes (chat_id, xid, id);
-- Removals and deletions of chats the reader has left.
CREATE INDEX changes_audience_idx ON changes USING gin (audience);
-- The retention purge.
CREATE INDEX changes_created_idx ON changes (created_at);
