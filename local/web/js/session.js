// The login: tokens kept in localStorage (so a reload or a second tab keeps the session),
// refreshed a minute before the access token expires (a quarter of its life, if that is shorter). Refresh tokens rotate and a replayed one
// ends the session, so tabs take turns refreshing (a Web Lock) and each first looks whether
// another tab already did.

const KEY = 'blockchat.session';
const EARLY_MS = 60_000;

/** How long before expiry the tokens are refreshed. */
const early = (tokens) => Math.min(EARLY_MS, tokens.lifetimeMs / 4);

/** The claims of a JWT, unverified: the client only reads its own `user_id`. */
function claims(token) {
  const payload = token.split('.')[1] || '';
  const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
  return JSON.parse(json);
}

export class Session {
  constructor(onEnd) {
    this.api = null;
    this.onEnd = onEnd;
    this.timer = null;
    this.refreshing = null;
    window.addEventListener('storage', (event) => {
      if (event.key !== KEY) return;
      if (!event.newValue) this.end(null);
      else this.schedule();
    });
  }

  /** The stored tokens, or null. */
  get tokens() {
    try { return JSON.parse(localStorage.getItem(KEY)); } catch { return null; }
  }

  get userId() { return this.tokens?.userId ?? null; }
  get active() { return this.tokens !== null; }

  /** Stores a token answer (`{access_token, expires_in, refresh_token}`). */
  store(answer) {
    const userId = claims(answer.access_token).user_id;
    localStorage.setItem(KEY, JSON.stringify({
      userId,
      accessToken: answer.access_token,
      refreshToken: answer.refresh_token,
      expiresAt: Date.now() + answer.expires_in * 1000,
      lifetimeMs: answer.expires_in * 1000,
    }));
    this.schedule();
  }

  async login(username, password) {
    this.store(await this.api.anonymous('POST', '/auth/login', { username, password }));
  }

  async logout() {
    const tokens = this.tokens;
    this.end(null);
    if (tokens) {
      try {
        await this.api.anonymous('POST', '/auth/logout', { refresh_token: tokens.refreshToken });
      } catch { /* the session is gone here either way */ }
    }
  }

  /** A current access token, refreshed first when it is about to expire. */
  async accessToken() {
    const tokens = this.tokens;
    if (!tokens) throw this.ended();
    if (tokens.expiresAt - Date.now() < early(tokens)) return (await this.refresh()).accessToken;
    return tokens.accessToken;
  }

  /** Trades the refresh token for a new pair, once at a time across tabs. */
  refresh() {
    if (!this.refreshing) {
      const seen = this.tokens?.refreshToken;
      const run = () => this.refreshOnce(seen);
      const locked = navigator.locks ? navigator.locks.request('blockchat-refresh', run) : run();
      this.refreshing = locked.finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  async refreshOnce(seen) {
    const tokens = this.tokens;
    if (!tokens) throw this.ended();
    // Another tab refreshed while this one waited: its tokens are the ones to use.
    if (tokens.refreshToken !== seen && tokens.expiresAt - Date.now() > early(tokens)) return tokens;
    try {
      this.store(await this.api.anonymous('POST', '/auth/refresh', { refresh_token: tokens.refreshToken }));
    } catch (error) {
      if (error.status === 401) {
        this.end('Your session has ended. Please log in again.');
        throw this.ended();
      }
      throw error;
    }
    return this.tokens;
  }

  schedule() {
    clearTimeout(this.timer);
    const tokens = this.tokens;
    if (!tokens) return;
    const wait = Math.max(0, tokens.expiresAt - Date.now() - early(tokens));
    this.timer = setTimeout(() => this.refresh().catch(() => {}), wait);
  }

  /** Forgets the tokens; `reason` is shown on the login form (null: a plain logout). */
  end(reason) {
    clearTimeout(this.timer);
    localStorage.removeItem(KEY);
    this.onEnd?.(reason);
  }

  ended() {
    const error = new Error('Not logged in.');
    error.status = 401;
    error.code = 'session_ended';
    return error;
  }
}
