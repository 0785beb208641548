// The HTTP half of the protocol: JSON calls under /api/v1 with a bearer token.

/** An error answer of the server ({"error":{"code","message"}}) or a failed request. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status; // 0 when the request never got an answer (network down)
    this.code = code; // bad_request, unauthorized, forbidden, not_found, conflict, ...
  }

  /** True when trying again later may work (network, overload, server restart). */
  get retryable() {
    return this.status === 0 || this.status >= 500 || this.code === 'unavailable';
  }
}

export class Api {
  constructor({ baseUrl, fetch: fetchImpl, getToken }) {
    this.baseUrl = String(baseUrl).replace(/\/+$/, '');
    this._fetch = fetchImpl;
    this._getToken = getToken;
  }

  url(path, query) {
    let u = this.baseUrl + path;
    if (query) {
      const parts = [];
      for (const [k, v] of Object.entries(query))
        if (v !== undefined && v !== null && v !== '')
          parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
      if (parts.length) u += (u.includes('?') ? '&' : '?') + parts.join('&');
    }
    return u;
  }

  /**
   * One call. `json` is sent as a JSON body; `body` as is (with `contentType`).
   * Resolves to the parsed JSON answer; rejects with ApiError.
   */
  async request(method, path, { query, json, body, contentType, auth = true, signal } = {}) {
    const headers = {};
    if (auth) {
      const token = this._getToken();
      if (!token) throw new ApiError(401, 'unauthorized', 'not logged in');
      headers.Authorization = `Bearer ${token}`;
    }
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
    } else if (contentType) {
      headers['Content-Type'] = contentType;
    }
    let res;
    try {
      res = await this._fetch(this.url('/api/v1' + path, query), { method, headers, body, signal });
    } catch (err) {
      const e = new ApiError(0, 'network', `${method} ${path}: ${err?.message || err}`);
      e.cause = err;
      throw e;
    }
    const text = await res.text().catch(() => '');
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!res.ok) {
      const err = data?.error || {};
      throw new ApiError(res.status, err.code || 'http_' + res.status, err.message || text || res.statusText);
    }
    return data ?? {};
  }
}
