// What the person sees: the login form, the chat list, a conversation, the dialogs. It renders
// from the store and hands what the person does to the app.

import { $, avatar, fullTime, h, lastSeen, reconcile, shortTime } from './dom.js';

const RUN_GAP_MS = 5 * 60_000;

/** Whether `message` is the last of a run: the next is someone else's, or minutes later. */
function endsRun(message, next) {
  return !next || next.user_id !== message.user_id
    || new Date(next.created_at) - new Date(message.created_at) > RUN_GAP_MS;
}

const STATUS_WORDS = { online: 'Online', away: 'Away', offline: 'Offline' };
const PAGE_NEAR_TOP_PX = 80;
const NEAR_BOTTOM_PX = 120;

export class View {
  constructor(store, app) {
    this.store = store;
    this.app = app;
    this.picked = new Map();
    this.searchTimer = null;
    store.addEventListener('change', (event) => this.render(event.detail));
    this.bindAuth();
    this.bindShell();
    this.bindNewChat();
    this.bindMembers();
    setInterval(() => {
      if (this.store.openChatId !== null && this.store.typing.get(this.store.openChatId)?.size) this.renderTyping();
    }, 1000);
  }

  // --- screens ------------------------------------------------------------------------------

  showLoading() {
    $('#loading').hidden = false;
    $('#auth').hidden = true;
    $('#app').hidden = true;
  }

  showAuth(reason) {
    $('#loading').hidden = true;
    $('#app').hidden = true;
    $('#auth').hidden = false;
    for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
    $('#auth-error').textContent = reason || '';
    $('#login-form').reset();
    $('#login-username').focus();
    document.title = 'Block Chat';
  }

  showApp() {
    $('#loading').hidden = true;
    $('#auth').hidden = true;
    $('#app').hidden = false;
    this.render(new Set(['me', 'chats', 'conversation', 'messages', 'typing', 'connection']));
  }

  toast(text, kind = 'error') {
    const toast = h('div', { class: `toast ${kind}` }, text);
    $('#toasts').append(toast);
    setTimeout(() => toast.remove(), 6000);
  }

  render(parts) {
    if ($('#app').hidden) return;
    if (parts.has('me')) this.renderMe();
    if (parts.has('connection')) this.renderConnection();
    if (parts.has('chats')) this.renderChats();
    if (parts.has('conversation')) this.renderConversation();
    if (parts.has('messages') || parts.has('conversation')) this.renderMessages();
    if (parts.has('typing') || parts.has('conversation')) this.renderTyping();
  }

  // --- log in and register ------------------------------------------------------------------

  bindAuth() {
    const tabs = [$('#tab-login'), $('#tab-register')];
    const select = (tab) => {
      for (const t of tabs) {
        const on = t === tab;
        t.setAttribute('aria-selected', String(on));
        t.tabIndex = on ? 0 : -1;
        $(`#${t.getAttribute('aria-controls')}`).hidden = !on;
      }
      $('#auth-error').textContent = '';
    };
    for (const tab of tabs) {
      tab.addEventListener('click', () => select(tab));
      tab.addEventListener('keydown', (event) => {
        if (event.key !== 'ArrowLeft' && event.key !== 'ArrowRight') return;
        const other = tabs[(tabs.indexOf(tab) + 1) % 2];
        select(other);
        other.focus();
      });
    }
    const submit = (form, action) => form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      $('#auth-error').textContent = '';
      try {
        await action(new FormData(form));
      } catch (error) {
        $('#auth-error').textContent = error.text || error.message;
      } finally {
        button.disabled = false;
      }
    });
    submit($('#login-form'), (data) => this.app.login(data.get('username').trim(), data.get('password')));
    submit($('#register-form'), (data) => this.app.register(
      data.get('username').trim(), data.get('email').trim(), data.get('password'),
    ));
  }

  // --- the shell: me, the chat list, the composer --------------------------------------------

  bindShell() {
    $('#logout').addEventListener('click', () => this.app.logout());
    $('#status-select').addEventListener('change', (event) => this.app.setStatus(event.target.value));
    $('#back').addEventListener('click', () => this.app.closeChat());
    $('#chat-info').addEventListener('click', () => this.openMembers());
    const input = $('#composer-input');
    $('#composer').addEventListener('submit', (event) => {
      event.preventDefault();
      const text = input.value;
      if (!text.trim()) return;
      input.value = '';
      this.fitComposer();
      this.app.submitComposer(text);
    });
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $('#composer').requestSubmit();
      } else if (event.key === 'Escape' && this.app.editing) {
        this.app.cancelEdit();
      }
    });
    input.addEventListener('input', () => {
      this.fitComposer();
      if (input.value.trim()) this.app.typing();
    });
    $('#cancel-edit').addEventListener('click', () => this.app.cancelEdit());
    const messages = $('#messages');
    messages.addEventListener('scroll', () => {
      if (messages.scrollTop < PAGE_NEAR_TOP_PX) this.app.loadOlder();
      if (this.nearBottom()) this.app.markReadIfSeen();
    });
  }

  fitComposer() {
    const input = $('#composer-input');
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight + 2, 128)}px`;
  }

  nearBottom() {
    const messages = $('#messages');
    return messages.scrollHeight - messages.scrollTop - messages.clientHeight < NEAR_BOTTOM_PX;
  }

  renderMe() {
    const me = this.store.me;
    if (!me) return;
    $('#me-name').textContent = me.display_name || me.username;
    $('#me-avatar').replaceChildren(avatar(me.display_name || me.username));
    const status = this.store.chosenStatus || 'online';
    $('#status-select').value = status;
    $('#me-dot').className = `dot ${status}`;
  }

  renderConnection() {
    const { connection, connectionDetail } = this.store;
    const element = $('#connection');
    const words = {
      connecting: 'Connecting…',
      open: 'Connected',
      waiting: `Offline. Reconnecting in ${connectionDetail || 1} s…`,
      stopped: '',
    };
    element.textContent = words[connection] ?? '';
    element.classList.toggle('down', connection === 'waiting');
    element.dataset.state = connection;
  }

  renderChats() {
    const chats = this.store.sortedChats();
    $('#no-chats').hidden = chats.length > 0;
    let unreadTotal = 0;
    reconcile($('#chat-list'), chats, (chat) => chat.id, (chat) => {
      const unread = this.store.unread(chat);
      unreadTotal += unread;
      return this.chatItem(chat, unread);
    });
    document.title = unreadTotal ? `(${unreadTotal}) Block Chat` : 'Block Chat';
  }

  chatItem(chat, unread) {
    const peer = this.store.peerOf(chat);
    const last = chat.last_message;
    let preview = 'No messages yet';
    if (last) {
      const who = chat.is_group_chat || last.user_id === this.store.userId
        ? `${this.store.nameOf(last.user_id)}: ` : '';
      preview = last.deleted ? `${who}Message deleted` : `${who}${last.content}`;
    }
    const status = peer !== null ? this.store.statusOf(peer) : null;
    const label = [chat.name, status && STATUS_WORDS[status], unread ? `${unread} unread` : null, preview]
      .filter(Boolean).join(', ');
    const face = h('span', { class: 'avatar-wrap' }, avatar(chat.name),
      status ? h('span', { class: `dot ${status}`, title: STATUS_WORDS[status] }) : null);
    return h('li', {},
      h('button', {
        type: 'button',
        class: unread ? 'unread' : '',
        'aria-current': String(chat.id === this.store.openChatId),
        'aria-label': label,
        onclick: () => this.app.openChat(chat.id),
      },
      face,
      h('span', { class: 'text' },
        h('span', { class: 'name' }, chat.name),
        h('span', { class: `preview${last?.deleted ? ' deleted' : ''}` }, preview)),
      h('span', { class: 'meta' },
        h('span', { class: 'time' }, shortTime(last?.created_at || chat.created_at)),
        unread ? h('span', { class: 'badge', 'aria-hidden': 'true' }, String(unread)) : null)));
  }

  // --- a conversation -----------------------------------------------------------------------

  renderConversation() {
    const chat = this.store.chats.get(this.store.openChatId);
    $('#app').dataset.pane = chat ? 'chat' : 'list';
    $('#no-conversation').hidden = Boolean(chat);
    $('#conversation').hidden = !chat;
    if (!chat) return;
    $('#chat-title').textContent = chat.name;
    $('#chat-avatar').replaceChildren(avatar(chat.name));
    const peer = this.store.peerOf(chat);
    let subtitle;
    if (peer !== null) {
      const presence = this.store.presence.get(peer);
      subtitle = presence?.status === 'offline' || !presence
        ? (presence?.last_seen ? `Last seen ${lastSeen(presence.last_seen)}` : 'Offline')
        : STATUS_WORDS[presence.status];
    } else {
      subtitle = `${chat.member_count} members`;
    }
    $('#chat-subtitle').textContent = subtitle;
    $('#chat-info').textContent = chat.is_group_chat ? 'Members' : 'Details';
  }

  renderMessages() {
    const chatId = this.store.openChatId;
    const chat = this.store.chats.get(chatId);
    if (!chat) return;
    const box = $('#messages');
    const stick = this.nearBottom() || this.lastRenderedChat !== chatId;
    const fromBottom = box.scrollHeight - box.scrollTop;
    const list = this.store.messages.get(chatId);
    const messages = this.store.sortedMessages(chatId);
    const pending = this.store.pendingSends(chatId);
    $('#history').textContent = !list || list.loading ? 'Loading messages…'
      : list.complete ? (messages.length ? 'This is the start of the conversation.' : 'No messages yet. Say hello!')
        : this.app.loadingOlder ? 'Loading earlier messages…' : '';

    const me = this.store.userId;
    const lastMine = [...messages].reverse().find((m) => m.user_id === me && !m.deleted);
    const others = Math.max(1, chat.member_count - 1);
    const items = messages.map((message, i) => ({
      kind: 'message',
      message,
      showAuthor: chat.is_group_chat && message.user_id !== me
        && (i === 0 || messages[i - 1].user_id !== message.user_id),
      // A run of one person's messages shows its time once, under the last.
      showInfo: endsRun(message, messages[i + 1]) || Boolean(message.edited_at && !message.deleted),
      readers: message === lastMine ? this.store.readersOf(chatId, message.seq) : null,
      readByAll: message.user_id === me
        && (message.is_read || this.store.readersOf(chatId, message.seq).length >= others),
    }));
    for (const send of pending) items.push({ kind: 'pending', send });

    reconcile($('#message-list'), items,
      (item) => (item.kind === 'message' ? `m${item.message.id}` : `p${item.send.client_id}`),
      (item, old) => {
        const signature = JSON.stringify(item);
        if (old && old.dataset.signature === signature) return old;
        const element = item.kind === 'message' ? this.messageItem(chat, item) : this.pendingItem(chatId, item.send);
        element.dataset.signature = signature;
        return element;
      });
    this.lastRenderedChat = chatId;
    if (stick) box.scrollTop = box.scrollHeight;
    else box.scrollTop = box.scrollHeight - fromBottom;
    if (this.nearBottom()) this.app.markReadIfSeen();
  }

  messageItem(chat, { message, showAuthor, showInfo, readers, readByAll }) {
    const mine = message.user_id === this.store.userId;
    const classes = ['message', mine ? 'mine' : 'theirs', message.deleted ? 'deleted' : ''].join(' ').trim();
    const author = this.store.nameOf(message.user_id);
    const actions = [];
    if (!message.deleted && mine) {
      actions.push(h('button', {
        type: 'button', class: 'ghost', 'aria-label': 'Edit message', onclick: () => this.app.startEdit(message),
      }, 'Edit'));
    }
    if (!message.deleted && (mine || (chat.is_group_chat && chat.role === 'admin'))) {
      actions.push(h('button', {
        type: 'button', class: 'ghost', 'aria-label': 'Delete message', onclick: () => this.app.deleteMessage(message),
      }, 'Delete'));
    }
    const info = [h('time', { datetime: message.created_at, title: fullTime(message.created_at) }, shortTime(message.created_at))];
    if (message.edited_at && !message.deleted) info.push(h('span', { class: 'edited' }, 'edited'));
    if (mine && !message.deleted) {
      info.push(h('span', {
        class: `ticks${readByAll ? ' read' : ''}`,
        'aria-label': readByAll ? 'Read' : 'Sent',
        title: readByAll ? 'Read' : 'Sent',
      }, readByAll ? '✓✓' : '✓'));
    }
    let receipt = null;
    if (readers) {
      const names = readers.map((id) => this.store.nameOf(id));
      const text = !names.length ? 'Sent'
        : chat.is_group_chat ? `Seen by ${names.join(', ')}` : 'Seen';
      receipt = h('p', { class: 'receipt' }, text);
    }
    return h('li', { class: classes, 'aria-label': `${author}: ${message.deleted ? 'Message deleted' : message.content}` },
      showAuthor ? h('span', { class: 'author', 'aria-hidden': 'true' }, author) : null,
      h('div', { class: 'row' },
        h('div', {
          class: 'bubble',
          // A tap shows a message's actions where there is no hover (a phone).
          onclick: (event) => event.currentTarget.closest('.message').classList.toggle('selected'),
        }, message.deleted ? 'Message deleted' : message.content),
        actions.length ? h('div', { class: 'actions' }, actions) : null),
      showInfo || readers ? h('div', { class: 'info' }, info) : null,
      receipt);
  }

  pendingItem(chatId, send) {
    const failed = send.state === 'failed';
    return h('li', { class: `message mine ${failed ? 'failed' : 'pending'}` },
      h('div', { class: 'row' }, h('div', { class: 'bubble' }, send.content)),
      h('div', { class: 'info' },
        failed ? h('span', {}, `Not sent: ${send.error}`) : h('span', {}, send.retrying ? 'Not sent yet, retrying…' : 'Sending…'),
        failed ? h('button', { type: 'button', class: 'ghost small', onclick: () => this.app.retrySend(chatId, send.client_id) }, 'Retry') : null,
        failed ? h('button', { type: 'button', class: 'ghost small', onclick: () => this.app.discardSend(chatId, send.client_id) }, 'Discard') : null));
  }

  renderTyping() {
    const chatId = this.store.openChatId;
    const names = chatId === null ? [] : this.store.typists(chatId).map((id) => this.store.nameOf(id));
    const text = !names.length ? ''
      : names.length === 1 ? `${names[0]} is typing…`
        : `${names.slice(0, -1).join(', ')} and ${names.at(-1)} are typing…`;
    const element = $('#typing');
    if (element.textContent !== text) element.textContent = text;
  }

  showEditing(on, text = '') {
    $('#editing').hidden = !on;
    const input = $('#composer-input');
    input.value = text;
    this.fitComposer();
    input.focus();
    $('#send').textContent = on ? 'Save' : 'Send';
  }

  focusComposer() {
    $('#composer-input').focus();
  }

  // --- starting a chat ----------------------------------------------------------------------

  bindNewChat() {
    const dialog = $('#new-chat-dialog');
    $('#new-chat').addEventListener('click', () => {
      this.picked.clear();
      $('#new-chat-form').reset();
      $('#new-chat-error').textContent = '';
      $('#user-results').replaceChildren();
      this.renderPicked();
      dialog.showModal();
      $('#user-search').focus();
    });
    for (const close of dialog.querySelectorAll('[data-close]')) close.addEventListener('click', () => dialog.close());
    $('#user-search').addEventListener('input', (event) => this.searchSoon(event.target.value, $('#user-results'), (user) => {
      if (this.picked.has(user.id)) this.picked.delete(user.id);
      else this.picked.set(user.id, user);
      this.renderPicked();
    }, (user) => this.picked.has(user.id)));
    $('#new-chat-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      const ids = [...this.picked.keys()];
      if (!ids.length) {
        $('#new-chat-error').textContent = 'Pick at least one person.';
        return;
      }
      const button = $('#create-chat');
      button.disabled = true;
      try {
        await this.app.createChat(ids, $('#group-name').value.trim());
        dialog.close();
      } catch (error) {
        $('#new-chat-error').textContent = error.text || error.message;
      } finally {
        button.disabled = false;
      }
    });
  }

  renderPicked() {
    const users = [...this.picked.values()];
    $('#picked').replaceChildren(...users.map((u) => h('span', { class: 'chip' }, u.display_name || u.username)));
    $('#group-name-row').hidden = users.length < 2;
    $('#create-chat').textContent = users.length > 1 ? 'Create group' : 'Start chat';
    for (const button of $('#user-results').querySelectorAll('button')) {
      button.setAttribute('aria-pressed', String(this.picked.has(Number(button.dataset.userId))));
    }
  }

  /** Searches people as the person types (a pause of 200 ms first), into `list`. */
  searchSoon(query, list, choose, isPicked = () => false, exclude = new Set()) {
    clearTimeout(this.searchTimer);
    this.searchTimer = setTimeout(async () => {
      const q = query.trim();
      if (!q) {
        list.replaceChildren();
        return;
      }
      let users;
      try {
        users = await this.app.searchUsers(q);
      } catch (error) {
        this.toast(error.text || error.message);
        return;
      }
      const shown = users.filter((u) => u.id !== this.store.userId && !exclude.has(u.id));
      list.replaceChildren(...(shown.length ? shown.map((user) => h('li', {},
        h('button', {
          type: 'button',
          'aria-pressed': String(isPicked(user)),
          dataset: { userId: user.id },
          onclick: () => choose(user),
        },
        h('span', { class: 'avatar-wrap' }, avatar(user.display_name || user.username, 'small'),
          h('span', { class: `dot ${user.status}` })),
        h('span', { class: 'who' }, user.display_name || user.username, h('small', {}, `@${user.username}`)))))
        : [h('li', { class: 'hint' }, 'Nobody by that name.')]));
    }, 200);
  }

  // --- members ------------------------------------------------------------------------------

  bindMembers() {
    const dialog = $('#members-dialog');
    for (const close of dialog.querySelectorAll('[data-close]')) close.addEventListener('click', () => dialog.close());
    $('#rename-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.guard($('#members-error'), () => this.app.renameChat($('#rename-input').value.trim()));
    });
    $('#leave-chat').addEventListener('click', () => this.guard($('#members-error'), async () => {
      await this.app.leaveChat();
      dialog.close();
    }));
    $('#delete-chat').addEventListener('click', () => this.guard($('#members-error'), async () => {
      await this.app.deleteChat();
      dialog.close();
    }));
    $('#member-search').addEventListener('input', (event) => {
      const present = new Set(this.store.members.get(this.store.openChatId)?.keys() || []);
      this.searchSoon(event.target.value, $('#member-results'),
        (user) => this.guard($('#members-error'), async () => {
          await this.app.addMembers([user.id]);
          $('#member-search').value = '';
          $('#member-results').replaceChildren();
          this.renderMembers();
        }), () => false, present);
    });
  }

  async guard(errorElement, action) {
    errorElement.textContent = '';
    try {
      await action();
    } catch (error) {
      errorElement.textContent = error.text || error.message;
    }
  }

  async openMembers() {
    const chat = this.store.chats.get(this.store.openChatId);
    if (!chat) return;
    const dialog = $('#members-dialog');
    $('#members-error').textContent = '';
    $('#members-title').textContent = chat.is_group_chat ? `Members of ${chat.name}` : chat.name;
    const admin = chat.is_group_chat && chat.role === 'admin';
    $('#rename-form').hidden = !admin;
    $('#rename-input').value = chat.name;
    $('#add-members').hidden = !admin;
    $('#leave-chat').hidden = !chat.is_group_chat;
    $('#delete-chat').hidden = chat.is_group_chat ? !admin : false;
    $('#member-search').value = '';
    $('#member-results').replaceChildren();
    dialog.showModal();
    await this.guard($('#members-error'), () => this.app.loadMembers(chat.id));
    this.renderMembers();
  }

  renderMembers() {
    const chat = this.store.chats.get(this.store.openChatId);
    const members = this.store.members.get(this.store.openChatId);
    if (!chat || !members) return;
    const admin = chat.is_group_chat && chat.role === 'admin';
    $('#member-list').replaceChildren(...[...members.values()].map((member) => {
      const status = this.store.statusOf(member.id);
      const name = member.id === this.store.userId ? `${member.display_name || member.username} (you)` : (member.display_name || member.username);
      return h('li', {},
        h('span', { class: 'avatar-wrap' }, avatar(member.display_name || member.username, 'small'),
          h('span', { class: `dot ${status}`, title: STATUS_WORDS[status] })),
        h('span', { class: 'who' }, name, h('small', {}, `@${member.username} · ${STATUS_WORDS[status]}`)),
        member.role === 'admin' ? h('span', { class: 'role' }, 'Admin') : null,
        admin && member.id !== this.store.userId
          ? h('button', {
            type: 'button', class: 'ghost small', 'aria-label': `Remove ${member.username}`,
            onclick: () => this.guard($('#members-error'), async () => {
              await this.app.removeMember(member.id);
              this.renderMembers();
            }),
          }, 'Remove')
          : null);
    }));
  }
}
