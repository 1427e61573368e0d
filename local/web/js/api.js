// The HTTP API: JSON in and out, problem+json errors turned into ApiError with the API's own
// words, and one refresh-and-retry when an access token is refused.

export class ApiError extends Error {
  constructor(status, code, detail, body = null) {
    super(detail);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.body = body;
  }

  /** Worth trying again later: no answer, a server error or a throttle. */
  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }

  /** The sentence to show: the API's `detail`, with each bad field's message after it. */
  get text() {
    const fields = (this.body && this.body.errors) || [];
    const extra = fields.map((e) => `${e.field}: ${e.message}`).join('; ');
    return extra ? `${this.detail} (${extra})` : this.detail;
  }
}

export class Api {
  /** `base` is the API's root (`/api`, or a stage's `https://…/api`). */
  constructor(base, session) {
    this.base = base.replace(/\/+$/, '');
    this.session = session;
  }

  get(path) { return this.request('GET', path); }
  post(path, body) { return this.request('POST', path, { body }); }
  put(path, body) { return this.request('PUT', path, { body }); }
  delete(path) { return this.request('DELETE', path); }

  /** A request without the session's token (register, login, refresh). */
  anonymous(method, path, body) { return this.request(method, path, { body, auth: false }); }

  async request(method, path, { body, auth = true, retried = false } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth) headers.Authorization = `Bearer ${await this.session.accessToken()}`;
    let response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, 'network_error', 'The server cannot be reached. Check your connection.');
    }
    if (response.status === 401 && auth && !retried) {
      // The token may have expired on the way (or a laptop slept past it): one refresh, one retry.
      await this.session.refresh();
      return this.request(method, path, { body, auth, retried: true });
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = text; }
    }
    if (!response.ok) {
      const problem = data && typeof data === 'object' ? data : {};
      throw new ApiError(
        response.status,
        problem.code || `http_${response.status}`,
        problem.detail || problem.message || `The server answered ${response.status}.`,
        problem,
      );
    }
    return data;
  }
}
