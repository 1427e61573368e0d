// Catching up: everything that changed while the socket was down, from the change feed
// (`GET /api/sync`). A page starts with a full load: first a fresh token, then the chats and
// the open chat's messages, then the changes made during that load. After that each catch-up
// follows the feed from the last token, kept with the session. A token past the feed's
// retention (410 `sync_expired`) means a full load again.

export class Catchup {
  /** `handlers`: `apply(change)` for each change in order, `reload()` for a full load. */
  constructor(api, userId, handlers) {
    this.api = api;
    this.key = `blockchat.sync.${userId}`;
    this.handlers = handlers;
    /** Whether this page has loaded everything once (what it holds is only in memory). */
    this.loaded = false;
    this.current = null;
    this.queued = null;
  }

  get token() { return localStorage.getItem(this.key); }

  set token(value) {
    if (value) localStorage.setItem(this.key, value);
    else localStorage.removeItem(this.key);
  }

  forget() { this.token = null; }

  /**
   * Catches up. A call while one runs is served by one more run after it, which starts after
   * the call: so whatever happened before the call is in.
   */
  run() {
    if (!this.current) {
      this.current = this.once().finally(() => { this.current = null; });
      return this.current;
    }
    if (!this.queued) {
      this.queued = this.current.catch(() => {}).then(() => {
        this.queued = null;
        return this.run();
      });
    }
    return this.queued;
  }

  async once() {
    const since = this.token;
    if (!since || !this.loaded) return this.fullLoad();
    return this.follow(since);
  }

  async follow(since) {
    for (;;) {
      let page;
      try {
        page = await this.api.get(`/sync?since=${encodeURIComponent(since)}&limit=500`);
      } catch (error) {
        if (error.status === 410) {
          this.token = null;
          return this.fullLoad();
        }
        throw error;
      }
      for (const change of page.changes) await this.handlers.apply(change);
      since = page.next;
      this.token = since;
      if (!page.has_more) return undefined;
    }
  }

  /** The token first, then everything, then what changed meanwhile. */
  async fullLoad() {
    const { next } = await this.api.get('/sync');
    await this.handlers.reload();
    this.loaded = true;
    this.token = next;
    await this.follow(next);
  }
}
