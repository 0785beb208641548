// Raw TCP clients for the parts of the wire contract that fetch and the `ws` package hide:
// exact request bytes (`//`, `..`, `%00`, raw NUL and backslash, odd Transfer-Encoding headers),
// pipelined requests on one socket (a HEAD answer that wrongly carries a body shows up as a
// malformed second answer), the source address (127.0.0.x, for per-address limits), and
// WebSocket frames the `ws` package refuses to send or to receive (close codes 999/1005/5000,
// close reasons and text that are not UTF-8, text the node sends that is not UTF-8).
//
//   const r = await rawRequest(node, 'GET', '//etc/passwd');          // one request, one answer
//   r.status, r.headers['content-type'], r.body (Buffer), r.text, r.json, r.utf8Valid
//
//   const { responses, closed, extra } = await rawHttp(node, [
//     { method: 'HEAD', target: '/' },
//     { method: 'GET', target: '/healthz' },
//   ]);                                                                  // pipelined, one write
//
//   const ws = await RawWs.connect(node, { token });                   // upgrade, waits for ready
//   ws.sendText(Buffer.from([0xff]));  ws.sendClose(1005);  await ws.waitClose();
//
// Responses are parsed byte-exactly: a body is exactly Content-Length bytes (or the chunks of a
// chunked answer, or up to the close when neither is given); a HEAD answer, 1xx, 204 and 304 have
// none. Whatever follows the answers expected is kept in `extra`. Nothing here ever waits
// without a timeout: a node that does not answer gives `status: 0` / `timedOut: true`.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

const DEFAULT_TIMEOUT_MS = 5000;
const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });

// {ok, text}: `text` is the strict decode when ok, a lossy one (for messages) when not.
export function decodeUtf8(buf) {
  try {
    return { ok: true, text: fatalUtf8.decode(buf) };
  } catch {
    return { ok: false, text: Buffer.from(buf).toString('utf8') };
  }
}

export function isValidUtf8(buf) {
  return decodeUtf8(buf).ok;
}

const CRLF2 = Buffer.from('\r\n\r\n');

function toBuffer(x) {
  if (x === undefined || x === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(x)) return x;
  if (x instanceof Uint8Array) return Buffer.from(x);
  return Buffer.from(String(x), 'utf8');
}

// Header list from an object or an array of [name, value] (to send duplicates or an exact
// order). Values are sent as latin1, byte for byte.
function headerList(headers) {
  if (!headers) return [];
  if (Array.isArray(headers)) return headers.map(([k, v]) => [String(k), String(v)]);
  return Object.entries(headers).map(([k, v]) => [k, String(v)]);
}

function hasHeader(list, name) {
  return list.some(([k]) => k.toLowerCase() === name.toLowerCase());
}

// The bytes of one HTTP/1.1 request. `target` is sent as is (a string is written as latin1, so
// '\0' and '\\' reach the wire unchanged; a Buffer for anything else). A body gets a
// Content-Length unless the headers give Content-Length or Transfer-Encoding themselves, or
// `contentLength: false`.
export function buildRequest(node, { method = 'GET', target = '/', headers, body, contentLength = true, host } = {}) {
  const list = headerList(headers);
  if (!hasHeader(list, 'host')) list.unshift(['Host', host ?? `127.0.0.1:${node.port}`]);
  const b = toBuffer(body);
  if (
    contentLength &&
    (b.length > 0 || ['POST', 'PUT', 'PATCH'].includes(method)) &&
    !hasHeader(list, 'content-length') &&
    !hasHeader(list, 'transfer-encoding')
  )
    list.push(['Content-Length', String(b.length)]);
  const t = Buffer.isBuffer(target) ? target : Buffer.from(String(target), 'latin1');
  const head = Buffer.concat([
    Buffer.from(`${method} `, 'latin1'),
    t,
    Buffer.from(' HTTP/1.1\r\n', 'latin1'),
    Buffer.from(list.map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n', 'latin1'),
  ]);
  return Buffer.concat([head, b]);
}

// A chunked body: the pieces given, then the last chunk.
export function chunked(...pieces) {
  const parts = [];
  for (const p of pieces) {
    const b = toBuffer(p);
    if (b.length === 0) continue;
    parts.push(Buffer.from(b.length.toString(16) + '\r\n', 'latin1'), b, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(parts);
}

// One response from `buf` at `off`. Returns {response, end} when complete, {incomplete: true}
// when more bytes are needed, {error} when the bytes are not an HTTP response.
// `atEof`: the peer closed, so a body delimited by the close is complete.
function parseOne(buf, off, { head = false, atEof = false } = {}) {
  const hdrEnd = buf.indexOf(CRLF2, off);
  if (hdrEnd < 0) {
    const start = buf.subarray(off, off + 5).toString('latin1');
    if (!'HTTP/'.startsWith(start))
      return { error: `not an HTTP response: ${JSON.stringify(buf.subarray(off, off + 80).toString('latin1'))}` };
    if (atEof && buf.length > off) return { error: 'connection closed inside a response head' };
    return { incomplete: true };
  }
  const headText = buf.subarray(off, hdrEnd).toString('latin1');
  const lines = headText.split('\r\n');
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) return { error: `malformed status line: ${JSON.stringify(lines[0].slice(0, 120))}` };
  const status = Number(m[2]);
  const headers = {};
  const rawHeaders = [];
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) return { error: `malformed header line: ${JSON.stringify(line.slice(0, 120))}` };
    const k = line.slice(0, i).trim();
    const v = line.slice(i + 1).trim();
    rawHeaders.push([k, v]);
    const lk = k.toLowerCase();
    headers[lk] = lk in headers ? `${headers[lk]}, ${v}` : v;
  }
  let pos = hdrEnd + 4;
  let body = Buffer.alloc(0);
  const noBody = head || (status >= 100 && status < 200) || status === 204 || status === 304;
  if (!noBody) {
    const te = headers['transfer-encoding'];
    if (te !== undefined && te.toLowerCase().split(',').map((s) => s.trim()).at(-1) === 'chunked') {
      const parts = [];
      for (;;) {
        const lineEnd = buf.indexOf('\r\n', pos, 'latin1');
        if (lineEnd < 0) return atEof ? { error: 'connection closed inside a chunked body' } : { incomplete: true };
        const size = Number.parseInt(buf.subarray(pos, lineEnd).toString('latin1').split(';')[0].trim(), 16);
        if (!Number.isFinite(size) || size < 0) return { error: 'bad chunk size' };
        const dataStart = lineEnd + 2;
        if (size === 0) {
          const trailerEnd = buf.indexOf(CRLF2, lineEnd);
          if (buf.subarray(dataStart, dataStart + 2).toString('latin1') === '\r\n') {
            pos = dataStart + 2;
          } else if (trailerEnd >= 0) {
            pos = trailerEnd + 4;
          } else {
            return atEof ? { error: 'connection closed inside chunk trailers' } : { incomplete: true };
          }
          break;
        }
        if (buf.length < dataStart + size + 2)
          return atEof ? { error: 'connection closed inside a chunk' } : { incomplete: true };
        parts.push(buf.subarray(dataStart, dataStart + size));
        pos = dataStart + size + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (!Number.isInteger(n) || n < 0) return { error: `bad Content-Length ${headers['content-length']}` };
      if (buf.length < pos + n)
        return atEof ? { error: `connection closed after ${buf.length - pos} of ${n} body bytes` } : { incomplete: true };
      body = Buffer.from(buf.subarray(pos, pos + n));
      pos += n;
    } else {
      if (!atEof) return { incomplete: true };
      body = Buffer.from(buf.subarray(pos));
      pos = buf.length;
    }
  }
  const dec = decodeUtf8(body);
  let json;
  if ((headers['content-type'] || '').startsWith('application/json') && dec.ok) {
    try {
      json = JSON.parse(dec.text);
    } catch {
      json = undefined;
    }
  }
  return {
    response: {
      status,
      reason: m[3] ?? '',
      httpVersion: m[1],
      headers,
      rawHeaders,
      head: headText,
      body,
      bytes: body,
      text: dec.text,
      utf8Valid: dec.ok,
      json,
    },
    end: pos,
  };
}

function methodOf(bytes) {
  const s = bytes.subarray(0, 16).toString('latin1');
  return s.split(' ')[0].toUpperCase();
}

/**
 * Writes `requests` (one or an array: request objects for buildRequest, or raw Buffers/strings)
 * on one new connection in a single write (pipelined), and reads the answers.
 * Options:
 *   expect      number of answers to wait for (default: one per request)
 *   methods     the method of each expected answer's request (HEAD answers have no body);
 *               default: taken from the requests
 *   waitClose   after the answers, wait up to this many ms for the node to close (sets `closed`)
 *   timeout     overall limit, ms
 *   localAddress  source address (e.g. '127.0.0.2': any 127/8 address is loopback on Linux)
 *   writeDelayMs  write the requests one by one, this far apart (0: one write)
 * Resolves with {responses, closed, timedOut, error, extra}; never rejects for what the node does.
 */
export function rawHttp(node, requests, opts = {}) {
  const list = Array.isArray(requests) ? requests : [requests];
  const chunks = list.map((r) => (Buffer.isBuffer(r) || typeof r === 'string' ? toBuffer(r) : buildRequest(node, r)));
  const methods = opts.methods ?? chunks.map(methodOf);
  const expect = opts.expect ?? list.length;
  const { timeout = DEFAULT_TIMEOUT_MS, waitClose = 0, localAddress, writeDelayMs = 0 } = opts;
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port: node.port, localAddress });
    let buf = Buffer.alloc(0);
    let off = 0;
    const responses = [];
    let closed = false;
    let error;
    let finished = false;
    let closeTimer = null;
    const finish = (timedOut = false) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearTimeout(closeTimer);
      sock.destroy();
      resolve({ responses, closed, timedOut, error, extra: Buffer.from(buf.subarray(off)) });
    };
    const parse = (atEof) => {
      while (!error && responses.length < expect) {
        const r = parseOne(buf, off, { head: methods[responses.length] === 'HEAD', atEof });
        if (r.error) error = r.error;
        else if (r.incomplete) break;
        else {
          off = r.end;
          if (r.response.status >= 100 && r.response.status < 200 && r.response.status !== 101) continue; // interim
          responses.push(r.response);
        }
      }
    };
    const check = () => {
      if (finished) return;
      if (error) return finish();
      if (responses.length >= expect) {
        if (!waitClose || closed) return finish();
        if (!closeTimer) closeTimer = setTimeout(() => finish(), waitClose);
      }
    };
    const timer = setTimeout(() => finish(true), timeout);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      parse(false);
      check();
    });
    const onEnd = () => {
      if (closed) return;
      closed = true;
      parse(true);
      finish();
    };
    sock.on('end', onEnd);
    sock.on('close', onEnd);
    sock.on('error', (e) => {
      if (!responses.length && !error) error = `socket error: ${e.code || e.message}`;
      onEnd();
    });
    sock.on('connect', async () => {
      if (!writeDelayMs) {
        sock.write(Buffer.concat(chunks));
        return;
      }
      for (const c of chunks) {
        if (finished) return;
        sock.write(c);
        await new Promise((r) => setTimeout(r, writeDelayMs));
      }
    });
  });
}

/**
 * One request on a new connection; resolves with its answer, or with {status: 0, ...} when there
 * is none (the node closed or timed out), so that assertions print what happened. The answer
 * also carries `closed` (the node closed the connection; with `waitClose`), `timedOut`, `extra`
 * (bytes after the answer) and `parseError`.
 */
export async function rawRequest(node, method, target, { headers, body, token, waitClose, timeout, localAddress, contentLength } = {}) {
  const list = headerList(headers);
  if (token) list.push(['Authorization', `Bearer ${token}`]);
  if (body !== undefined && typeof body === 'object' && !Buffer.isBuffer(body) && !(body instanceof Uint8Array)) {
    body = JSON.stringify(body);
    if (!hasHeader(list, 'content-type')) list.push(['Content-Type', 'application/json']);
  }
  const res = await rawHttp(node, { method, target, headers: list, body, contentLength }, { waitClose, timeout, localAddress });
  const r = res.responses[0] ?? {
    status: 0,
    headers: {},
    rawHeaders: [],
    body: Buffer.alloc(0),
    bytes: Buffer.alloc(0),
    text: `(no answer: ${res.error || (res.timedOut ? 'timed out' : 'connection closed')})`,
    utf8Valid: true,
    json: undefined,
  };
  return { ...r, closed: res.closed, timedOut: res.timedOut, extra: res.extra, parseError: res.error };
}

// A short description of an answer for assertion messages.
export function describeResponse(r) {
  if (!r) return '(none)';
  return `HTTP ${r.status} ${JSON.stringify(r.text?.slice(0, 200))}`;
}

// ------------------------------------------------------------------------------ WebSocket

export const OP = { cont: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 };

// A client frame (masked unless `mask: false`), any opcode, fin and rsv bits.
export function encodeFrame(opcode, payload = Buffer.alloc(0), { fin = true, mask = true, rsv = 0 } = {}) {
  const p = toBuffer(payload);
  const len = p.length;
  let hdr;
  if (len < 126) {
    hdr = Buffer.alloc(2);
    hdr[1] = len;
  } else if (len <= 0xffff) {
    hdr = Buffer.alloc(4);
    hdr[1] = 126;
    hdr.writeUInt16BE(len, 2);
  } else {
    hdr = Buffer.alloc(10);
    hdr[1] = 127;
    hdr.writeBigUInt64BE(BigInt(len), 2);
  }
  hdr[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  if (!mask) return Buffer.concat([hdr, p]);
  hdr[1] |= 0x80;
  const key = randomBytes(4);
  const masked = Buffer.alloc(len);
  for (let i = 0; i < len; i++) masked[i] = p[i] ^ key[i & 3];
  return Buffer.concat([hdr, key, masked]);
}

// The payload of a close frame: code (none when undefined) and reason bytes.
export function closePayload(code, reason = Buffer.alloc(0)) {
  if (code === undefined) return Buffer.alloc(0);
  const c = Buffer.alloc(2);
  c.writeUInt16BE(code);
  return Buffer.concat([c, toBuffer(reason)]);
}

export function randomWsKey() {
  return randomBytes(16).toString('base64');
}

function acceptFor(key) {
  return createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
}

/**
 * Sends a WebSocket upgrade request and reads the answer. Resolves with
 * {response, ws}: `ws` is a RawWs when the node answered 101 (check `response.status`),
 * otherwise null and `response` holds the whole refusal (status, headers, body, json).
 * Options: path ('/ws'), token + auth ('query' | 'header' | 'none'), headers (added; an
 * `Authorization` here replaces the one `auth: 'header'` makes), key (Sec-WebSocket-Key; a
 * random valid one by default), localAddress, timeout.
 */
export function rawUpgrade(node, { path = '/ws', token, auth = 'query', headers = {}, key = randomWsKey(), localAddress, timeout = DEFAULT_TIMEOUT_MS } = {}) {
  let target = path;
  if (token && auth === 'query') target += `${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
  const list = [
    ['Host', `127.0.0.1:${node.port}`],
    ['Upgrade', 'websocket'],
    ['Connection', 'Upgrade'],
    ['Sec-WebSocket-Key', key],
    ['Sec-WebSocket-Version', '13'],
  ];
  const extra = headerList(headers);
  if (token && auth === 'header' && !hasHeader(extra, 'authorization')) list.push(['Authorization', `Bearer ${token}`]);
  for (const [k, v] of extra) {
    const i = list.findIndex(([n]) => n.toLowerCase() === k.toLowerCase());
    if (i >= 0) list[i] = [k, v];
    else list.push([k, v]);
  }
  const req = buildRequest(node, { method: 'GET', target, headers: list });
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port: node.port, localAddress });
    let buf = Buffer.alloc(0);
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      sock.destroy();
      resolve({ response: { status: 0, headers: {}, text: '(no answer to the upgrade: timed out)', body: Buffer.alloc(0) }, ws: null });
    }, timeout);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const hdrEnd = buf.indexOf(CRLF2);
      if (hdrEnd < 0) return;
      const status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(buf.subarray(0, 20).toString('latin1'))?.[1] ?? 0);
      if (status === 101) {
        const r = parseOne(buf, 0, { head: true });
        if (r.error) {
          done = true;
          clearTimeout(timer);
          sock.destroy();
          return reject(new Error(`bad 101 answer: ${r.error}`));
        }
        done = true;
        clearTimeout(timer);
        sock.off('data', onData);
        sock.off('end', onEnd);
        const ws = new RawWs(sock, r.response);
        if (r.response.headers['sec-websocket-accept'] !== acceptFor(key)) ws.violations.push('wrong Sec-WebSocket-Accept');
        const rest = buf.subarray(r.end);
        if (rest.length) ws._onData(rest);
        return resolve({ response: r.response, ws });
      }
      const r = parseOne(buf, 0, {});
      if (r.incomplete) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (r.error) return resolve({ response: { status, headers: {}, text: `(unparsable answer: ${r.error})`, body: buf }, ws: null });
      resolve({ response: r.response, ws: null });
    };
    const onEnd = () => {
      if (done) return;
      const r = parseOne(buf, 0, { atEof: true });
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({
        response: r.response ?? { status: 0, headers: {}, text: `(connection closed without an answer${r.error ? ': ' + r.error : ''})`, body: buf },
        ws: null,
      });
    };
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.on('close', onEnd);
    sock.on('error', () => onEnd());
    sock.on('connect', () => sock.write(req));
  });
}

/**
 * A WebSocket client on a raw socket: it sends exactly the frames asked for and keeps exactly
 * the frames the node sends. Text messages are decoded with a fatal UTF-8 decoder: one that is
 * not UTF-8 is kept in `badText` (and in `frames` as {invalidUtf8: true, hex}); `frames` holds the
 * others parsed as JSON ({raw} when not JSON). `closeInfo` is the node's close frame
 * ({code, reason, reasonBytes, reasonUtf8Valid}) or {code: 1006} when the TCP connection ended
 * without one. `violations` lists what the node did against RFC 6455 (masked frames, ...).
 * The interface follows lib/ws.mjs's WsClient: waitFor, mark, request, sendJson, ping,
 * waitClose, close.
 */
export class RawWs {
  static async connect(node, opts = {}) {
    const { ready = true } = opts;
    const { response, ws } = await rawUpgrade(node, opts);
    if (!ws) {
      const e = new Error(`WebSocket upgrade refused: HTTP ${response.status} ${response.text?.slice(0, 200)}`);
      e.response = response;
      throw e;
    }
    if (opts.token && opts.auth !== 'none' && ready) await ws.waitFor((f) => f.cmd === 'ready', { label: 'ready' });
    return ws;
  }

  constructor(sock, response) {
    this.sock = sock;
    this.response = response;
    this.buf = Buffer.alloc(0);
    this.frames = []; // parsed text messages, in order
    this.messages = []; // every data message: {opcode, data: Buffer}
    this.badText = []; // text messages that are not UTF-8 (Buffers)
    this.violations = [];
    this.closeInfo = null; // the node's close frame, or {code: 1006} for a bare TCP end
    this.closeSent = false;
    this.ended = false;
    this.nextId = 1;
    this.waiters = new Set();
    this._msgOp = 0;
    this._msgParts = [];
    this.closed = new Promise((resolve) => {
      this._resolveClosed = resolve;
    });
    sock.on('data', (d) => this._onData(d));
    const onEnd = () => this._onEnd();
    sock.on('end', onEnd);
    sock.on('close', onEnd);
    sock.on('error', onEnd);
  }

  get open() {
    return !this.closeInfo && !this.ended;
  }

  _onData(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : Buffer.from(d);
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0;
      const rsv = (b[0] >> 4) & 7;
      const op = b[0] & 0x0f;
      const masked = (b[1] & 0x80) !== 0;
      let len = b[1] & 0x7f;
      let hdr = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        hdr = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        hdr = 10;
      }
      let key = null;
      if (masked) {
        if (b.length < hdr + 4) return;
        key = b.subarray(hdr, hdr + 4);
        hdr += 4;
      }
      if (b.length < hdr + len) return;
      let payload = Buffer.from(b.subarray(hdr, hdr + len));
      this.buf = b.subarray(hdr + len);
      if (masked) {
        this.violations.push(`masked frame from the server (opcode ${op})`);
        for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
      }
      if (rsv) this.violations.push(`rsv bits ${rsv} set`);
      this._onFrame(fin, op, payload);
    }
  }

  _onFrame(fin, op, payload) {
    if (op === OP.close) {
      if (this.closeInfo) return;
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : payload.length === 0 ? 1005 : -1;
      const reasonBytes = payload.subarray(2);
      const dec = decodeUtf8(reasonBytes);
      this.closeInfo = { code, reason: dec.text, reasonBytes, reasonUtf8Valid: dec.ok, frame: true };
      if (!dec.ok) this.violations.push('close reason not UTF-8');
      if (!this.closeSent) {
        // Answer the close (RFC 6455 5.5.1), echoing the code as a client would.
        this.closeSent = true;
        this.sock.write(encodeFrame(OP.close, payload.length >= 2 ? payload.subarray(0, 2) : Buffer.alloc(0)));
      }
      this.sock.end();
      this._settle();
      return;
    }
    if (op === OP.ping) {
      if (!this.closeSent) this.sock.write(encodeFrame(OP.pong, payload));
      return;
    }
    if (op === OP.pong) return;
    if (op === OP.text || op === OP.binary) {
      if (this._msgOp) this.violations.push('new message inside a fragmented one');
      this._msgOp = op;
      this._msgParts = [payload];
    } else if (op === OP.cont) {
      if (!this._msgOp) this.violations.push('continuation without a message');
      this._msgParts.push(payload);
    } else {
      this.violations.push(`unknown opcode ${op}`);
      return;
    }
    if (!fin) return;
    const data = Buffer.concat(this._msgParts);
    const mop = this._msgOp || op;
    this._msgOp = 0;
    this._msgParts = [];
    this.messages.push({ opcode: mop, data });
    if (mop !== OP.text) return;
    const dec = decodeUtf8(data);
    let f;
    if (!dec.ok) {
      this.badText.push(data);
      f = { invalidUtf8: true, hex: data.toString('hex') };
    } else {
      try {
        f = JSON.parse(dec.text);
      } catch {
        f = { raw: dec.text };
      }
    }
    this.frames.push(f);
    for (const w of [...this.waiters]) w.check(f, this.frames.length - 1);
  }

  _onEnd() {
    if (this.ended) return;
    this.ended = true;
    if (!this.closeInfo) this.closeInfo = { code: 1006, reason: '', reasonBytes: Buffer.alloc(0), reasonUtf8Valid: true, frame: false };
    this._settle();
  }

  _settle() {
    for (const w of [...this.waiters]) w.onClose?.(this.closeInfo);
    this._resolveClosed(this.closeInfo);
  }

  // ---- sending ----

  write(bytes) {
    if (!this.sock.destroyed) this.sock.write(bytes);
  }

  sendFrame(opcode, payload, opts) {
    this.write(encodeFrame(opcode, payload, opts));
  }

  // A text frame (a string is sent as UTF-8; a Buffer byte for byte). fin: false starts a
  // fragmented message; continue it with sendContinuation.
  sendText(data, { fin = true } = {}) {
    this.sendFrame(OP.text, data, { fin });
  }

  sendContinuation(data, { fin = true } = {}) {
    this.sendFrame(OP.cont, data, { fin });
  }

  // A close frame with any code (undefined: no code) and reason bytes.
  sendClose(code, reason) {
    this.closeSent = true;
    this.sendFrame(OP.close, closePayload(code, reason));
  }

  sendJson(obj) {
    this.sendText(JSON.stringify(obj));
  }

  mark() {
    return this.frames.length;
  }

  waitFor(pred, { timeout = DEFAULT_TIMEOUT_MS, from = 0, label = '' } = {}) {
    for (let i = from; i < this.frames.length; i++) if (pred(this.frames[i])) return Promise.resolve(this.frames[i]);
    return new Promise((resolve, reject) => {
      const w = {};
      const done = () => {
        clearTimeout(w.timer);
        this.waiters.delete(w);
      };
      w.check = (f, idx) => {
        if (idx >= from && pred(f)) {
          done();
          resolve(f);
        }
      };
      w.onClose = (info) => {
        done();
        reject(new Error(`connection closed (${info.code} ${info.reason}) while waiting for ${label || pred}; frames: ${this.describe()}`));
      };
      w.timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeout} ms waiting for ${label || pred}; frames: ${this.describe()}`));
      }, timeout);
      this.waiters.add(w);
      if (this.closeInfo) w.onClose(this.closeInfo);
    });
  }

  request(cmd, data, { timeout = DEFAULT_TIMEOUT_MS, extra = {} } = {}) {
    const id = `r${this.nextId++}`;
    const env = { cmd, id, ...extra };
    if (data !== undefined) env.data = data;
    const p = this.waitFor((f) => f.id === id, { timeout, label: `reply to ${cmd} ${id}` });
    this.sendJson(env);
    return p;
  }

  async send(data, opts) {
    const r = await this.request('msg', data, opts);
    if (r.cmd !== 'ack') throw new Error(`msg refused: ${JSON.stringify(r)}`);
    return r.data;
  }

  async ping(opts) {
    const r = await this.request('ping', {}, opts);
    if (r.cmd !== 'pong') throw new Error(`ping answered with ${JSON.stringify(r)}`);
    return r;
  }

  // Resolves with closeInfo once the node's close frame arrived (or the connection ended).
  waitClose(timeout = DEFAULT_TIMEOUT_MS) {
    let timer;
    return Promise.race([
      this.closed.finally(() => clearTimeout(timer)),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`connection not closed after ${timeout} ms; frames: ${this.describe()}`)),
          timeout,
        );
      }),
    ]);
  }

  // Until the TCP connection itself has ended (after a close handshake), or `timeout`.
  waitEnd(timeout = DEFAULT_TIMEOUT_MS) {
    if (this.ended) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeout);
      const on = () => {
        clearTimeout(t);
        resolve(true);
      };
      this.sock.once('close', on);
    });
  }

  async close() {
    if (this.ended) return this.closeInfo;
    if (!this.closeSent && !this.closeInfo) this.sendClose(1000);
    try {
      await this.waitClose(2000);
    } catch {
      // the node did not answer the close: cut
    }
    this.sock.destroy();
    return this.closeInfo;
  }

  describe() {
    const short = (_k, v) => (typeof v === 'string' && v.length > 80 ? `${v.slice(0, 40)}...(${v.length})` : v);
    const s = JSON.stringify(this.frames.slice(-10), short);
    return s.length > 2000 ? s.slice(0, 2000) + '...' : s;
  }
}
