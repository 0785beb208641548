// A WebSocket test client on the `ws` package.
//
//   const c = await WsClient.connect(node, { token });      // ?token=, waits for `ready`
//   const ack = await c.request('msg', { conversation_id, body: 'hi', client_msg_id: 'm1' });
//   const m = await c.waitFor((f) => f.cmd === 'msg' && f.data.seq === 3);
//   const { code } = await c.closed;                         // once the socket has closed
//
// Every text frame received is parsed and kept in `frames`, in arrival order (frames that are not
// JSON are kept as {raw}); waitFor() looks at frames already received first, then at new ones.
// Waiters fail at once, with the close code, if the connection closes before a match.
import WebSocket from 'ws';

const DEFAULT_TIMEOUT_MS = 5000;

export class WsClient {
  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.binary = [];
    this.waiters = new Set();
    this.nextId = 1;
    this.closeInfo = null;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const w of this.waiters) {
          if (!w.onClose) continue;
          w.onClose(this.closeInfo);
        }
        resolve(this.closeInfo);
      });
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        this.binary.push(data);
        return;
      }
      const text = data.toString('utf8');
      let f;
      try {
        f = JSON.parse(text);
      } catch {
        f = { raw: text };
      }
      this.frames.push(f);
      for (const w of [...this.waiters]) w.check(f, this.frames.length - 1);
    });
    ws.on('error', () => {}); // surfaced through `closed`
  }

  // Opens /ws. auth: 'query' (default, ?token=), 'header' (Authorization: Bearer) or 'none'.
  // With a token and `ready` !== false, resolves after the `ready` frame.
  static async connect(node, { token, auth = 'query', ready = true, path = '/ws', headers = {} } = {}) {
    let url = `ws://127.0.0.1:${node.port}${path}`;
    const h = { ...headers };
    if (token && auth === 'query') url += `?token=${encodeURIComponent(token)}`;
    if (token && auth === 'header') h.Authorization = `Bearer ${token}`;
    const ws = new WebSocket(url, { headers: h, perMessageDeflate: false, maxPayload: 64 << 20 });
    const client = new WsClient(ws);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('unexpected-response', (_req, res) => {
        reject(new Error(`WebSocket upgrade refused: HTTP ${res.statusCode}`));
      });
      ws.once('error', reject);
    });
    if (token && auth !== 'none' && ready) await client.waitFor((f) => f.cmd === 'ready');
    return client;
  }

  get open() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  // Index to pass as `from` so that only frames received after this point are considered.
  mark() {
    return this.frames.length;
  }

  // The first frame (at index >= from) matching `pred`; rejects on timeout or close.
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

  // Waits until `count` frames match; returns them.
  async waitForCount(pred, count, opts = {}) {
    const matches = () => this.frames.filter(pred);
    if (matches().length >= count) return matches().slice(0, count);
    await this.waitFor(() => matches().length >= count, { ...opts, label: opts.label || `${count} frames` });
    return matches().slice(0, count);
  }

  // `msg` frames of one conversation, in arrival order.
  msgs(conversationId) {
    return this.frames
      .filter((f) => f.cmd === 'msg' && f.data.conversation_id === String(conversationId))
      .map((f) => f.data);
  }

  waitForMsg(conversationId, seq, opts = {}) {
    return this.waitFor(
      (f) => f.cmd === 'msg' && f.data.conversation_id === String(conversationId) && f.data.seq === seq,
      { label: `msg ${conversationId}:${seq}`, ...opts },
    );
  }

  // Sends one envelope as JSON text.
  sendJson(obj) {
    this.ws.send(JSON.stringify(obj));
  }

  sendRaw(data, { binary = false } = {}) {
    this.ws.send(data, { binary });
  }

  // Sends {cmd, id, data} and resolves with the frame that carries the same id (reply or error).
  request(cmd, data, { timeout = DEFAULT_TIMEOUT_MS, extra = {} } = {}) {
    const id = `r${this.nextId++}`;
    const env = { cmd, id, ...extra };
    if (data !== undefined) env.data = data;
    const p = this.waitFor((f) => f.id === id, { timeout, label: `reply to ${cmd} ${id}` });
    this.sendJson(env);
    return p;
  }

  // Sends a chat message and returns its `ack` data; throws on an `error` reply.
  async send(data, opts) {
    const r = await this.request('msg', data, opts);
    if (r.cmd !== 'ack') throw new Error(`msg refused: ${JSON.stringify(r)}`);
    return r.data;
  }

  // A round trip through the connection: everything the server sent before its pong is in.
  async ping(opts) {
    const r = await this.request('ping', {}, opts);
    if (r.cmd !== 'pong') throw new Error(`ping answered with ${JSON.stringify(r)}`);
    return r;
  }

  // Resolves with {code, reason} once closed, or rejects after `timeout`.
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

  async close() {
    if (this.ws.readyState === WebSocket.CLOSED) return this.closeInfo;
    if (this.ws.readyState !== WebSocket.CLOSING) this.ws.close(1000);
    try {
      return await this.waitClose(3000);
    } catch {
      this.ws.terminate();
      return this.closed;
    }
  }

  describe() {
    const short = (_k, v) => (typeof v === 'string' && v.length > 80 ? `${v.slice(0, 40)}...(${v.length})` : v);
    const s = JSON.stringify(this.frames.slice(-10), short);
    return s.length > 2000 ? s.slice(0, 2000) + '...' : s;
  }
}

// Closes every client given (ignores nulls); for `finally` blocks and after hooks.
export async function closeAll(...clients) {
  await Promise.all(clients.flat().filter(Boolean).map((c) => c.close()));
}

// ---- voice rooms: binary audio frames (docs/protocol.md "Voice rooms", "Audio frames") ----
//
//   c.sendRaw(audioFrame(room, seq, payload), { binary: true });      // or sendAudio(c, ...)
//   const f = await waitForBinary(c, (b) => parseAudio(b)?.seq === 7);
//   parseAudio(b) -> { roomId, memberNo, seq, payload } (what the node sends), or null
//
// WsClient keeps every binary frame received in `binary` (Buffers, in arrival order); these
// helpers wait on them as waitFor() does on text frames.

// client -> node: [u8 1][u32 room_id][u16 seq][payload], big-endian.
export function audioFrame(roomId, seq, payload, { kind = 1 } = {}) {
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const b = Buffer.alloc(7 + p.length);
  b.writeUInt8(kind, 0);
  b.writeUInt32BE(roomId >>> 0, 1);
  b.writeUInt16BE(seq & 0xffff, 5);
  p.copy(b, 7);
  return b;
}

export function sendAudio(client, roomId, seq, payload) {
  client.sendRaw(audioFrame(roomId, seq, payload), { binary: true });
}

// node -> client: [u8 1][u32 room_id][u32 sender member_no][u16 seq][payload]; null when the
// buffer is not of that form (too short or another kind byte).
export function parseAudio(buf) {
  if (!buf || buf.length < 11 || buf[0] !== 1) return null;
  return {
    roomId: buf.readUInt32BE(1),
    memberNo: buf.readUInt32BE(5),
    seq: buf.readUInt16BE(9),
    payload: buf.subarray(11),
  };
}

// Index to pass as `from` so that only binary frames received after this point count.
export function binaryMark(client) {
  return client.binary.length;
}

// The audio frames (parsed) of `roomId` received at index >= from, in arrival order.
export function audioOf(client, roomId, { from = 0 } = {}) {
  return client.binary
    .slice(from)
    .map(parseAudio)
    .filter((f) => f && (roomId === undefined || f.roomId === roomId));
}

// The first binary frame (at index >= from) matching `pred(buf, index)`; rejects on timeout or
// close, with what was received.
export function waitForBinary(client, pred, { timeout = DEFAULT_TIMEOUT_MS, from = 0, label = '' } = {}) {
  for (let i = from; i < client.binary.length; i++)
    if (pred(client.binary[i], i)) return Promise.resolve(client.binary[i]);
  return new Promise((resolve, reject) => {
    let timer;
    const describe = () => {
      const got = client.binary.slice(from).map(parseAudio);
      const s = JSON.stringify(got.slice(-20).map((f) => (f ? [f.roomId, f.memberNo, f.seq, f.payload.length] : 'other')));
      return `${got.length} binary frames since ${from}, last: ${s}`;
    };
    const finish = () => {
      clearTimeout(timer);
      client.ws.off('message', onMessage);
    };
    // Registered after WsClient's own listener, so the frame is in `binary` already.
    const onMessage = (_data, isBinary) => {
      if (!isBinary) return;
      const i = client.binary.length - 1;
      if (i >= from && pred(client.binary[i], i)) {
        finish();
        resolve(client.binary[i]);
      }
    };
    client.ws.on('message', onMessage);
    timer = setTimeout(() => {
      finish();
      reject(new Error(`timed out after ${timeout} ms waiting for binary ${label || pred}; ${describe()}`));
    }, timeout);
    client.closed.then((info) => {
      if (!timer) return;
      finish();
      reject(new Error(`connection closed (${info.code}) while waiting for binary ${label || pred}; ${describe()}`));
    });
  });
}

// Waits until `count` binary frames (at index >= from) match; returns them parsed.
export async function waitForAudio(client, pred, count, { from = 0, ...opts } = {}) {
  const matches = () => audioOf(client, undefined, { from }).filter(pred);
  if (matches().length < count) {
    let n = 0;
    await waitForBinary(
      client,
      (b, i) => {
        const f = parseAudio(b);
        if (f && pred(f)) n = matches().length;
        return n >= count;
      },
      { from: client.binary.length, label: opts.label || `${count} audio frames`, ...opts },
    ).catch((e) => {
      if (matches().length >= count) return;
      throw e;
    });
  }
  return matches().slice(0, count);
}
