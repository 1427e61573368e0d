-- Consent and abuse limits: blocks, who may add a user to groups, the typing throttle, and the
-- per-connection frame budget.

-- `blocker_id` blocked `blocked_id`: the blocked user cannot open a direct chat with the
-- blocker, add them to a group, or reach them with typing.
CREATE TABLE user_blocks (
    blocker_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT user_blocks_pkey PRIMARY KEY (blocker_id, blocked_id),
    CONSTRAINT user_blocks_not_self CHECK (blocker_id <> blocked_id)
);
-- "Who blocked this user?", asked on every group add and typing frame.
CREATE INDEX user_blocks_blocked_idx ON user_blocks (blocked_id, blocker_id);

-- Who may add the user to a group: anyone, only people who already share a chat with them, or
-- nobody.
ALTER TABLE users ADD COLUMN add_to_groups TEXT NOT NULL DEFAULT 'everyone'
    CHECK (add_to_groups IN ('everyone', 'contacts', 'nobody'));

-- When the member's last `typing` event went out; later ones within the interval are dropped.
ALTER TABLE chat_members ADD COLUMN typing_at TIMESTAMPTZ;

-- Previews of a chat's first members (the chat list) and paging through them.
CREATE INDEX chat_members_joined_idx ON chat_members (chat_id, joined_at, user_id);

-- The frame budget of a connection: frames received since `frames_since`.
ALTER TABLE ws_connections
    ADD COLUMN frames INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN frames_since TIMESTAMPTZ NOT NULL DEFAULT now();
-- The oldest of a user's connections, closed when one too many opens.
CREATE INDEX ws_connections_user_age_idx ON ws_connections (user_id, connected_at);
