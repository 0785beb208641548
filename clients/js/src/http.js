// The HTTP half of the protocol: JSON calls under /api/v1 with a bearer token.

/** An error answer of the server ({"error":{"code","message"}}) or a failed request. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status; // 0 when the request never got an answer (network down)
    this.code = code; // bad_request, unauthorized, forbidden, not_found, conflict, network, aborted, ...
  }

  /** True when trying again later may work (network, overload, server restart). */
  get retryable() {
    if (this.code === 'aborted') return false; // the caller's own AbortSignal
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
    const res = await this._send(method, path, { query, json, body, contentType, auth, signal });
    const text = await res.text().catch(() => '');
    const data = parseJson(text);
    if (!res.ok) throw errorOf(res, data, text);
    return data ?? {};
  }

  /**
   * A GET whose answer is bytes (a file download), authorized by the `Authorization: Bearer`
   * header, never by a token in the URL. Resolves to a Blob typed by the answer's
   * Content-Type; rejects with ApiError (the node's JSON error, or `network`, or `aborted`).
   */
  async blob(path, { query, auth = true, signal } = {}) {
    const res = await this._send('GET', path, { query, auth, signal });
    if (!res.ok) {
      const text = await res.text().catch(() => '');
      throw errorOf(res, parseJson(text), text);
    }
    try {
      return await res.blob();
    } catch (err) {
      throw networkError('GET', path, err);
    }
  }

  async _send(method, path, { query, json, body, contentType, auth, signal }) {
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
    try {
      return await this._fetch(this.url('/api/v1' + path, query), { method, headers, body, signal });
    } catch (err) {
      throw networkError(method, path, err);
    }
  }
}

function parseJson(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function errorOf(res, data, text) {
  const err = data?.error || {};
  return new ApiError(res.status, err.code || 'http_' + res.status, err.message || text || res.statusText);
}

function networkError(method, path, err) {
  const aborted = err?.name === 'AbortError';
  const e = new ApiError(0, aborted ? 'aborted' : 'network', `${method} ${path}: ${err?.message || err}`);
  e.cause = err;
  return e;
}
