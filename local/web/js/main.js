// Block Chat in the browser: one WebSocket for everything live, the HTTP API for the rest, and
// a catch-up after every (re)connect so that a dropped socket loses nothing.

import { Api } from './api.js';
import { Catchup } from './catchup.js';
import { newClientId } from './dom.js';
import { Session } from './session.js';
import { LiveSocket } from './socket.js';
import { Store } from './store.js';
import { View } from './view.js';

const PAGE = 50;
const TYPING_EVERY_MS = 2000;
const SEND_RETRY_MAX_MS = 30_000;
/** A catch-up now and then while connected keeps the feed's token recent. */
const SYNC_EVERY_MS = 5 * 60_000;
const STATUS_CHECK_MS = 1500;

class App {
  constructor(config) {
    this.config = config;
    this.store = new Store();
    this.session = new Session((reason) => this.leave(reason));
    this.api = new Api(config.apiBase, this.session);
    this.session.api = this.api;
    this.view = new View(this.store, this);
    this.socket = null;
    this.catchup = null;
    this.buffer = null;
    this.editing = null;
    this.loadingOlder = false;
    this.lastTyping = 0;
    this.marking = new Set();
    document.addEventListener('visibilitychange', () => this.markReadIfSeen());
  }

  async boot() {
    if (this.session.active) await this.enter();
    else this.view.showAuth();
  }

  // --- the session --------------------------------------------------------------------------

  async login(username, password) {
    await this.session.login(username, password);
    await this.enter();
  }

  async register(username, email, password) {
    await this.api.anonymous('POST', '/auth/register', { username, email, password });
    await this.login(username, password);
  }

  async logout() {
    this.catchup?.forget();
    await this.session.logout();
  }

  /** The session ended (logout, refresh refused, another tab logged out). */
  leave(reason) {
    clearInterval(this.syncTimer);
    this.socket?.stop();
    this.socket = null;
    this.catchup = null;
    this.store.reset(null);
    this.view.showAuth(reason);
  }

  async enter() {
    const userId = this.session.userId;
    this.store.reset(userId);
    this.store.chosenStatus = localStorage.getItem(`blockchat.status.${userId}`) || 'online';
    this.view.showApp();
    this.catchup = new Catchup(this.api, userId, {
      apply: (change) => this.applyChange(change, false),
      reload: () => this.reload(),
    });
    this.socket = new LiveSocket(this.config.wsUrl, () => this.session.accessToken(), {
      open: () => this.connected(),
      event: (frame) => this.received(frame),
      state: (state, detail) => {
        this.store.connection = state;
        this.store.connectionDetail = detail;
        this.store.changed('connection');
      },
    });
    try {
      const me = await this.api.get('/users/me');
      this.store.me = me;
      this.store.learnUser(me);
      this.store.changed('me');
    } catch (error) {
      if (error.status === 401) return;
      this.view.toast(error.text || error.message);
    }
    this.store.loadOutbox();
    this.socket.start();
    this.syncTimer = setInterval(() => { if (this.socket?.isOpen) this.catchUp(); }, SYNC_EVERY_MS);
    await this.catchUp();
    for (const [chatId, sends] of this.store.outbox) for (const send of sends.values()) this.deliver(chatId, send);
  }

  // --- live events and catching up ----------------------------------------------------------

  /** The socket is open: events are held back until the catch-up has run, then applied. */
  async connected() {
    this.buffer = [];
    await this.catchUp();
    const held = this.buffer || [];
    this.buffer = null;
    for (const frame of held) this.received(frame);
    if (this.store.chosenStatus !== 'online') this.setStatus(this.store.chosenStatus, { quiet: true });
    for (const [chatId, sends] of this.store.outbox) {
      for (const send of sends.values()) if (send.state === 'sending') this.deliver(chatId, send);
    }
  }

  received(frame) {
    if (frame.type === 'error') {
      // The API no longer knows this connection (it was cleaned up as gone): no event would
      // reach it, so open another.
      if (frame.code === 'unknown_connection') this.socket?.reconnect();
      else if (frame.code !== 'rate_limited') this.view.toast(frame.detail || frame.code);
      return;
    }
    if (frame.type === 'ack') return;
    if (this.buffer) {
      this.buffer.push(frame);
      return;
    }
    this.applyChange(frame, true);
  }

  async catchUp() {
    if (!this.catchup) return;
    try {
      await this.catchup.run();
    } catch (error) {
      if (error.status === 401 || !this.catchup) return;
      this.view.toast(`Could not catch up: ${error.text || error.message}`);
      clearTimeout(this.catchUpTimer);
      this.catchUpTimer = setTimeout(() => this.catchUp(), 3000);
    }
  }

  async applyChange(change, live) {
    const next = this.store.apply(change, { live });
    if (next.gap) this.catchUp();
    if (next.stale || next.gap) return;
    const chatId = change.chat_id;
    if (next.removed && this.store.openChatId === chatId) {
      this.closeChat();
      this.view.toast(change.type === 'chat.deleted' ? 'This chat was deleted.' : 'You are no longer in this chat.', 'info');
    }
    if (next.fetch) {
      const fetched = this.fetchChat(chatId);
      if (!live) await fetched;
    }
    if (change.type === 'user.status') this.confirmStatusSoon(change.user_id);
    if (live && change.type === 'message.created' && chatId === this.store.openChatId) this.markReadIfSeen();
  }

  /**
   * Presence events carry no position, and two of them (a reload's old socket closing, its new
   * one opening) can arrive in either order: a moment later, ask for the status as it is.
   */
  confirmStatusSoon(userId) {
    this.statusChecks ??= new Map();
    clearTimeout(this.statusChecks.get(userId));
    this.statusChecks.set(userId, setTimeout(async () => {
      this.statusChecks.delete(userId);
      try {
        const status = await this.api.get(`/users/${userId}/status`);
        this.store.apply({ type: 'user.status', ...status }, { live: false });
      } catch { /* the next event or load brings it */ }
    }, STATUS_CHECK_MS));
  }

  /** A full load: the chat list and the open chat's newest messages. */
  async reload() {
    const chats = await this.api.get(`/chats?limit=100`);
    this.store.replaceChats(chats);
    const open = this.store.openChatId;
    for (const chatId of [...this.store.messages.keys()]) if (chatId !== open) this.store.messages.delete(chatId);
    if (open !== null) {
      if (this.store.chats.has(open)) await this.loadNewest(open);
      else this.closeChat();
    }
  }

  async fetchChat(chatId) {
    try {
      this.store.putChat(await this.api.get(`/chats/${chatId}`));
      if (chatId === this.store.openChatId && this.store.members.has(chatId)) await this.loadMembers(chatId);
    } catch (error) {
      if (error.status === 404) this.store.dropChat(chatId);
      else this.view.toast(error.text || error.message);
    }
  }

  // --- a conversation -----------------------------------------------------------------------

  async openChat(chatId) {
    if (this.editing) this.cancelEdit();
    this.store.openChatId = chatId;
    this.store.changed('chats', 'conversation');
    this.view.focusComposer();
    try {
      const held = this.store.messages.get(chatId);
      if (!held || (held.loading && held.bySeq.size === 0)) await this.loadNewest(chatId);
      await this.loadMembers(chatId);
    } catch (error) {
      this.view.toast(error.text || error.message);
    }
    this.markReadIfSeen();
  }

  closeChat() {
    if (this.editing) this.cancelEdit();
    this.store.openChatId = null;
    this.store.changed('chats', 'conversation');
  }

  async loadNewest(chatId) {
    this.store.holdMessages(chatId);
    const page = await this.api.get(`/chats/${chatId}/messages?limit=${PAGE}`);
    this.store.putPage(chatId, page, { complete: page.length < PAGE });
  }

  /** The page before the oldest loaded message, as the person scrolls up. */
  async loadOlder() {
    const chatId = this.store.openChatId;
    const list = this.store.messages.get(chatId);
    if (this.loadingOlder || !list || list.complete || list.oldest === null) return;
    this.loadingOlder = true;
    this.store.changed('messages');
    try {
      const page = await this.api.get(`/chats/${chatId}/messages?limit=${PAGE}&before_seq=${list.oldest}`);
      this.store.putPage(chatId, page, { complete: page.length < PAGE });
    } catch (error) {
      this.view.toast(error.text || error.message);
    } finally {
      this.loadingOlder = false;
      this.store.changed('messages');
    }
  }

  /** The members, with their read cursors: the start of the read receipts. */
  async loadMembers(chatId) {
    const members = await this.api.get(`/chats/${chatId}/members?limit=100`);
    for (const member of members) {
      this.store.learnUser(member);
      this.store.setReader(chatId, member.id, member.last_read_seq);
    }
    this.store.members.set(chatId, new Map(members.map((m) => [m.id, m])));
    this.store.changed('chats', 'conversation');
  }

  /** Moves the read cursor when the open chat's newest message is on screen. */
  markReadIfSeen() {
    const chatId = this.store.openChatId;
    const chat = this.store.chats.get(chatId);
    if (!chat || document.visibilityState !== 'visible' || chat.readSeq >= chat.lastSeq) return;
    if (!this.view.nearBottom()) return;
    const upTo = chat.lastSeq;
    chat.readSeq = upTo;
    this.store.changed('chats');
    if (this.socket?.send({ action: 'markRead', chat_id: chatId, up_to_seq: upTo })) return;
    this.api.put(`/chats/${chatId}/messages/read`, { up_to_seq: upTo }).catch((error) => {
      if (!error.transient) this.view.toast(error.text || error.message);
    });
  }

  typing() {
    const chatId = this.store.openChatId;
    if (chatId === null || this.editing || Date.now() - this.lastTyping < TYPING_EVERY_MS) return;
    if (this.socket?.send({ action: 'typing', chat_id: chatId })) this.lastTyping = Date.now();
  }

  // --- sending, editing, deleting -----------------------------------------------------------

  submitComposer(text) {
    if (this.editing) {
      this.saveEdit(text);
      return;
    }
    const chatId = this.store.openChatId;
    if (chatId === null) return;
    const send = { client_id: newClientId(), content: text, state: 'sending', created_at: new Date().toISOString() };
    this.store.queueSend(chatId, send);
    this.lastTyping = 0;
    this.deliver(chatId, send);
  }

  /**
   * Sends until the API answers: the same `client_id` each time, so a send that was stored but
   * whose answer was lost is not stored twice. A refusal (4xx) is shown with the API's words.
   */
  async deliver(chatId, send) {
    if (send.inFlight) return;
    send.inFlight = true;
    clearTimeout(send.timer);
    try {
      const message = await this.api.post(`/chats/${chatId}/messages`, { content: send.content, client_id: send.client_id });
      this.store.putMessage(chatId, message);
    } catch (error) {
      if (error.status === 401 && !this.session.active) return;
      if (error.transient) {
        send.attempt = (send.attempt || 0) + 1;
        send.retrying = true;
        const delay = Math.min(SEND_RETRY_MAX_MS, 1000 * 2 ** (send.attempt - 1));
        send.timer = setTimeout(() => this.deliver(chatId, send), delay);
      } else {
        send.state = 'failed';
        send.error = error.text || error.message;
      }
      this.store.saveOutbox();
      this.store.changed('messages');
    } finally {
      send.inFlight = false;
    }
  }

  retrySend(chatId, clientId) {
    const send = this.store.outbox.get(chatId)?.get(clientId);
    if (!send) return;
    send.state = 'sending';
    send.attempt = 0;
    this.store.changed('messages');
    this.deliver(chatId, send);
  }

  discardSend(chatId, clientId) {
    const sends = this.store.outbox.get(chatId);
    if (sends?.delete(clientId)) {
      this.store.saveOutbox();
      this.store.changed('messages');
    }
  }

  startEdit(message) {
    this.editing = { chatId: message.chat_id, message };
    this.view.showEditing(true, message.content);
  }

  cancelEdit() {
    this.editing = null;
    this.view.showEditing(false);
  }

  async saveEdit(text) {
    const { chatId, message } = this.editing;
    this.cancelEdit();
    if (text === message.content) return;
    try {
      this.store.putMessage(chatId, await this.api.put(`/chats/${chatId}/messages/${message.id}`, { content: text }));
    } catch (error) {
      this.view.toast(`Not saved: ${error.text || error.message}`);
    }
  }

  async deleteMessage(message) {
    try {
      await this.api.delete(`/chats/${message.chat_id}/messages/${message.id}`);
      this.store.putMessage(message.chat_id, { ...message, deleted: true, content: '' });
    } catch (error) {
      this.view.toast(`Not deleted: ${error.text || error.message}`);
    }
  }

  // --- people and chats ---------------------------------------------------------------------

  searchUsers(q) {
    return this.api.get(`/users?q=${encodeURIComponent(q)}&limit=20`);
  }

  async createChat(userIds, name) {
    const body = { user_ids: userIds, is_group_chat: userIds.length > 1 };
    if (name) body.name = name;
    const chat = await this.api.post('/chats', body);
    this.store.putChat(chat);
    await this.openChat(chat.id);
  }

  async addMembers(userIds) {
    const chatId = this.store.openChatId;
    this.store.putChat(await this.api.post(`/chats/${chatId}/members`, { user_ids: userIds }));
    await this.loadMembers(chatId);
  }

  async removeMember(userId) {
    const chatId = this.store.openChatId;
    await this.api.delete(`/chats/${chatId}/members/${userId}`);
    this.store.members.get(chatId)?.delete(userId);
    await this.fetchChat(chatId);
  }

  async leaveChat() {
    const chatId = this.store.openChatId;
    await this.api.delete(`/chats/${chatId}/members/${this.store.userId}`);
    this.closeChat();
    this.store.dropChat(chatId);
  }

  async deleteChat() {
    const chatId = this.store.openChatId;
    await this.api.delete(`/chats/${chatId}`);
    this.closeChat();
    this.store.dropChat(chatId);
  }

  async renameChat(name) {
    const chatId = this.store.openChatId;
    this.store.putChat(await this.api.put(`/chats/${chatId}`, { name }));
  }

  async setStatus(status, { quiet = false } = {}) {
    this.store.chosenStatus = status;
    localStorage.setItem(`blockchat.status.${this.store.userId}`, status);
    this.store.changed('me');
    try {
      await this.api.put(`/users/${this.store.userId}/status`, { status });
    } catch (error) {
      if (!quiet) this.view.toast(error.text || error.message);
    }
  }
}

async function start() {
  let config;
  try {
    const response = await fetch('config.json', { cache: 'no-cache' });
    config = await response.json();
  } catch {
    document.getElementById('loading').textContent = 'config.json is missing: it names the API and WebSocket URLs.';
    return;
  }
  const app = new App(config);
  await app.boot();
}

start();
