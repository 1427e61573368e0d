-- The position of the chat's newest membership change (a member added or removed). A send takes
-- the chat row's lock after its statement began: when this moved meanwhile, the members the
-- statement saw are not the members now, and the send looks its audience up again.
ALTER TABLE chats ADD COLUMN members_pos BIGINT NOT NULL DEFAULT 0;
