// The one WebSocket of a logged-in client: JSON frames out, events in, and a reconnect with
// backoff (0.5 s doubling to 15 s, with jitter) whenever it drops. A ping every 30 s keeps it
// alive through idle timeouts and finds a dead connection that never said goodbye.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;
const PING_EVERY_MS = 30_000;
const PONG_WITHIN_MS = 10_000;

export class LiveSocket {
  /**
   * `url`: the WebSocket API (`ws://…`, `wss://…/stage`); `token()`: a current access token;
   * handlers: `open()`, `event(frame)`, `state(name, detail)` with name one of `connecting`,
   * `open`, `waiting` (detail: seconds until the next try), `stopped`.
   */
  constructor(url, token, handlers) {
    this.url = url;
    this.token = token;
    this.handlers = handlers;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.stopped = true;
    this.online = () => { if (!this.stopped && !this.ws) this.connectNow(); };
  }

  start() {
    this.stopped = false;
    window.addEventListener('online', this.online);
    this.connectNow();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.online);
    clearTimeout(this.retryTimer);
    this.clearPing();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, 'Logged out');
    this.handlers.state('stopped');
  }

  get isOpen() { return this.ws?.readyState === WebSocket.OPEN; }

  /** Sends a frame if the socket is open; answers whether it went. */
  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  connectNow() {
    clearTimeout(this.retryTimer);
    this.connect().catch(() => this.retry());
  }

  async connect() {
    this.handlers.state('connecting');
    const token = await this.token();
    if (this.stopped) return;
    const separator = this.url.includes('?') ? '&' : '?';
    const ws = new WebSocket(`${this.url}${separator}token=${encodeURIComponent(token)}`);
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.handlers.state('open');
      this.schedulePing();
      this.handlers.open();
    };
    ws.onmessage = (message) => {
      if (this.ws !== ws) return;
      let frame;
      try { frame = JSON.parse(message.data); } catch { return; }
      if (frame.type === 'pong') {
        clearTimeout(this.pongTimer);
        return;
      }
      this.handlers.event(frame);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearPing();
      this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    this.handlers.state('waiting', Math.ceil(delay / 1000));
    this.retryTimer = setTimeout(() => this.connectNow(), delay);
  }

  /** Drops the connection (as a network loss would) and reconnects: for a stuck socket. */
  reconnect() {
    const ws = this.ws;
    this.ws = null;
    this.clearPing();
    if (ws) ws.close(4000, 'Reconnecting');
    this.retry();
  }

  schedulePing() {
    this.clearPing();
    this.pingTimer = setInterval(() => {
      if (!this.send({ action: 'ping' })) return;
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => this.reconnect(), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  clearPing() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }
}
