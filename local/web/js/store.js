// What the client knows, and how each change (a live event or a change from the feed) moves it.
// Changes of a chat carry `pos`, 1, 2, 3, … within the chat: one is applied only if it is newer
// than the last applied, so a change seen twice (live and from the feed) counts once. A live
// change must also be the very next one: pushes of concurrent changes can arrive out of order,
// and a change applied past a missing one would make that one look stale when it comes. So a
// live change that skips a position is left to the feed, which lists each chat's changes in
// order and as they are now.

/** How long a `typing` event shows; the API forwards one every 3 s while someone types. */
export const TYPING_SHOWN_MS = 5000;

export class Store extends EventTarget {
  constructor() {
    super();
    this.reset(null);
  }

  reset(userId) {
    this.userId = userId;
    this.me = null;
    /** id → chat (the API's chat, plus `lastSeq` and `readSeq`, the caller's read cursor). */
    this.chats = new Map();
    /** chat id → {bySeq: Map, oldest, complete}: the loaded pages of a chat's messages. */
    this.messages = new Map();
    /** chat id → sends not yet confirmed: client_id → {client_id, content, state, error, created_at}. */
    this.outbox = new Map();
    /** chat id → the highest `pos` applied. */
    this.applied = new Map();
    /** chat id → Map user id → member (for the open chat). */
    this.members = new Map();
    /** chat id → Map user id → the highest seq that member is known to have read. */
    this.readers = new Map();
    /** chat id → Map user id → when the typing indicator ends (ms). */
    this.typing = new Map();
    /** user id → {status, last_seen}. */
    this.presence = new Map();
    /** user id → a name to show. */
    this.names = new Map();
    this.openChatId = null;
    this.connection = 'connecting';
    this.pendingParts = new Set();
  }

  /** Asks for a render of `part` (`chats`, `conversation`, `messages`, `typing`, `me`, `connection`). */
  changed(...parts) {
    const first = this.pendingParts.size === 0;
    for (const part of parts) this.pendingParts.add(part);
    if (first) {
      queueMicrotask(() => {
        const detail = new Set(this.pendingParts);
        this.pendingParts.clear();
        this.dispatchEvent(new CustomEvent('change', { detail }));
      });
    }
  }

  // --- people -------------------------------------------------------------------------------

  learnUser(user) {
    if (!user) return;
    this.names.set(user.id, user.display_name || user.username);
    if (user.status) this.presence.set(user.id, { status: user.status, last_seen: user.last_seen });
  }

  nameOf(userId) {
    if (userId === null || userId === undefined) return 'Deleted account';
    if (userId === this.userId) return 'You';
    return this.names.get(userId) || `User ${userId}`;
  }

  statusOf(userId) {
    return this.presence.get(userId)?.status || 'offline';
  }

  // --- chats --------------------------------------------------------------------------------

  /** Adds or replaces a chat from the API's chat answer. */
  putChat(chat) {
    for (const user of chat.users || []) this.learnUser(user);
    const known = this.chats.get(chat.id);
    const lastSeq = Math.max(chat.last_message?.seq ?? 0, known?.lastSeq ?? 0);
    const readSeq = Math.max((chat.last_message?.seq ?? 0) - (chat.unread_count ?? 0), known?.readSeq ?? 0);
    const lastMessage = known?.last_message && known.last_message.seq > (chat.last_message?.seq ?? 0)
      ? known.last_message
      : chat.last_message;
    this.chats.set(chat.id, { ...chat, last_message: lastMessage, lastSeq, readSeq });
    this.changed('chats', 'conversation');
  }

  replaceChats(chats) {
    const ids = new Set(chats.map((c) => c.id));
    for (const id of [...this.chats.keys()]) if (!ids.has(id)) this.dropChat(id);
    for (const chat of chats) this.putChat(chat);
  }

  dropChat(chatId) {
    this.chats.delete(chatId);
    this.messages.delete(chatId);
    this.members.delete(chatId);
    this.readers.delete(chatId);
    this.typing.delete(chatId);
    this.changed('chats', 'conversation', 'messages');
  }

  unread(chat) {
    return Math.max(0, chat.lastSeq - chat.readSeq);
  }

  /** Chats by latest activity, newest first. */
  sortedChats() {
    const activity = (c) => c.last_message?.created_at || c.updated_at || c.created_at;
    return [...this.chats.values()].sort((a, b) => (activity(b) > activity(a) ? 1 : activity(b) < activity(a) ? -1 : b.id - a.id));
  }

  /** For a direct chat, the other member's id. */
  peerOf(chat) {
    if (!chat || chat.is_group_chat) return null;
    return (chat.users || []).map((u) => u.id).find((id) => id !== this.userId) ?? null;
  }

  // --- messages -----------------------------------------------------------------------------

  /**
   * Starts holding a chat's messages before its first page is asked for, so that what arrives
   * live while the page is on its way is kept (the page may have been read before it).
   */
  holdMessages(chatId) {
    if (!this.messages.has(chatId)) {
      this.messages.set(chatId, { bySeq: new Map(), oldest: null, complete: false, loading: true });
    }
  }

  /**
   * A page of messages (any order) from the API, merged into what is held: messages never
   * vanish (a deletion leaves a tombstone), so nothing held is dropped. `complete`: nothing
   * older exists.
   */
  putPage(chatId, page, { complete = false } = {}) {
    this.holdMessages(chatId);
    const list = this.messages.get(chatId);
    list.loading = false;
    // A page newer than everything held, with messages missing between: start afresh from it.
    const pageOldest = Math.min(...page.map((m) => m.seq));
    if (list.bySeq.size && Math.max(...list.bySeq.keys()) < pageOldest - 1) {
      list.bySeq.clear();
      list.oldest = null;
      list.complete = false;
    }
    for (const message of page) {
      list.bySeq.set(message.seq, message);
      if (list.oldest === null || message.seq < list.oldest) list.oldest = message.seq;
      this.confirmSend(chatId, message);
    }
    if (complete) list.complete = true;
    this.changed('messages');
  }

  /** A message as it is now (created, edited or deleted). */
  putMessage(chatId, message) {
    const chat = this.chats.get(chatId);
    if (chat) {
      if (message.seq >= chat.lastSeq) {
        chat.lastSeq = message.seq;
        chat.last_message = message;
      }
      if (message.user_id === this.userId) chat.readSeq = Math.max(chat.readSeq, message.seq);
    }
    const list = this.messages.get(chatId);
    if (list && (list.oldest === null || message.seq >= list.oldest || list.complete)) {
      list.bySeq.set(message.seq, message);
      if (list.oldest === null || message.seq < list.oldest) list.oldest = message.seq;
    }
    this.confirmSend(chatId, message);
    if (message.user_id !== null) this.typing.get(chatId)?.delete(message.user_id);
    if (message.user?.username && !this.names.has(message.user_id)) this.names.set(message.user_id, message.user.username);
    this.changed('chats', 'messages', 'typing');
  }

  sortedMessages(chatId) {
    const list = this.messages.get(chatId);
    return list ? [...list.bySeq.values()].sort((a, b) => a.seq - b.seq) : [];
  }

  // --- sends not yet confirmed ----------------------------------------------------------------

  queueSend(chatId, entry) {
    if (!this.outbox.has(chatId)) this.outbox.set(chatId, new Map());
    this.outbox.get(chatId).set(entry.client_id, entry);
    this.saveOutbox();
    this.changed('messages');
  }

  confirmSend(chatId, message) {
    if (message.user_id !== this.userId || !message.client_id) return;
    if (this.outbox.get(chatId)?.delete(message.client_id)) {
      this.saveOutbox();
      this.changed('messages');
    }
  }

  pendingSends(chatId) {
    return [...(this.outbox.get(chatId)?.values() || [])];
  }

  outboxKey() { return `blockchat.outbox.${this.userId}`; }

  saveOutbox() {
    if (this.userId === null) return;
    const entries = [];
    for (const [chatId, sends] of this.outbox) for (const s of sends.values()) entries.push({ ...s, chat_id: chatId });
    localStorage.setItem(this.outboxKey(), JSON.stringify(entries));
  }

  /** Sends a reload left unconfirmed, to be tried again. */
  loadOutbox() {
    let entries = [];
    try { entries = JSON.parse(localStorage.getItem(this.outboxKey())) || []; } catch { /* none */ }
    for (const entry of entries) {
      if (!this.outbox.has(entry.chat_id)) this.outbox.set(entry.chat_id, new Map());
      this.outbox.get(entry.chat_id).set(entry.client_id, { ...entry, state: 'sending' });
    }
    return entries;
  }

  // --- read receipts ------------------------------------------------------------------------

  setReader(chatId, userId, seq) {
    if (userId === this.userId) {
      const chat = this.chats.get(chatId);
      if (chat && seq > chat.readSeq) {
        chat.readSeq = seq;
        this.changed('chats');
      }
      return;
    }
    if (!this.readers.has(chatId)) this.readers.set(chatId, new Map());
    const readers = this.readers.get(chatId);
    if (seq > (readers.get(userId) ?? 0)) {
      readers.set(userId, seq);
      this.changed('messages');
    }
  }

  /** The other members known to have read `seq`. */
  readersOf(chatId, seq) {
    const readers = this.readers.get(chatId);
    if (!readers) return [];
    return [...readers].filter(([, read]) => read >= seq).map(([userId]) => userId);
  }

  // --- typing -------------------------------------------------------------------------------

  setTyping(chatId, userId, until) {
    if (!this.typing.has(chatId)) this.typing.set(chatId, new Map());
    this.typing.get(chatId).set(userId, until);
    this.changed('typing');
  }

  typists(chatId, now = Date.now()) {
    const typing = this.typing.get(chatId);
    if (!typing) return [];
    for (const [userId, until] of typing) if (until <= now) typing.delete(userId);
    return [...typing.keys()];
  }

  // --- changes ------------------------------------------------------------------------------

  /**
   * Applies a change (an event, live or from the feed). Answers what the caller must do next:
   * `{stale}`: already applied, nothing done; `{gap}`: not applied, something was missed before
   * it: catch up;
   * `{fetch}`: load the chat from the API; `{removed}`: the chat is gone for us.
   */
  apply(change, { live }) {
    const chatId = change.chat_id;
    const next = { stale: false, gap: false, fetch: false, removed: false };
    if (change.pos !== undefined && change.pos !== null && chatId !== undefined) {
      const applied = this.applied.get(chatId);
      if (applied !== undefined && change.pos <= applied) return { ...next, stale: true };
      // Without a position yet (a chat known from a load), only a chat's first change is surely next.
      if (live && change.pos !== (applied ?? 0) + 1) return { ...next, gap: true };
      this.applied.set(chatId, change.pos);
    }
    switch (change.type) {
      case 'message.created':
      case 'message.updated':
      case 'message.deleted':
        this.putMessage(chatId, change.message);
        next.fetch = !this.chats.has(chatId);
        break;
      case 'message.read':
        this.setReader(chatId, change.user_id, change.last_read_seq);
        break;
      case 'chat.created':
        next.fetch = !this.chats.has(chatId);
        break;
      case 'chat.updated': {
        const chat = this.chats.get(chatId);
        if (!chat) {
          next.fetch = true;
          break;
        }
        if (chat.is_group_chat) chat.name = change.chat.name;
        chat.updated_at = change.chat.updated_at;
        this.changed('chats', 'conversation');
        break;
      }
      case 'member.added':
        // The member count and first members change; the chat may also be new to us.
        next.fetch = true;
        break;
      case 'member.removed':
        if (change.user_id === this.userId) {
          next.removed = this.chats.has(chatId);
          this.dropChat(chatId);
          break;
        }
        this.members.get(chatId)?.delete(change.user_id);
        this.readers.get(chatId)?.delete(change.user_id);
        next.fetch = this.chats.has(chatId);
        break;
      case 'chat.deleted':
        next.removed = this.chats.has(chatId);
        this.dropChat(chatId);
        break;
      case 'typing':
        if (change.user_id !== this.userId) this.setTyping(chatId, change.user_id, Date.now() + TYPING_SHOWN_MS);
        break;
      case 'user.status':
        this.presence.set(change.user_id, { status: change.status, last_seen: change.last_seen });
        for (const chat of this.chats.values()) {
          for (const user of chat.users || []) if (user.id === change.user_id) user.status = change.status;
        }
        this.changed('chats', 'conversation');
        break;
      default:
        break;
    }
    return next;
  }
}
