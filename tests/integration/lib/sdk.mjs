// The JavaScript SDK (clients/js) as a test client: the happy-path suites drive the node through
// the same `ConvergeClient` the web client uses, instead of speaking the protocol themselves.
//
//   const alice = await sdkDevice(node, 'alice', 'phone');       // login, connect, first sync done
//   const ack = await alice.client.send(conv, { body: 'hi', client_msg_id: 'm1' });
//   const m = await bob.waitForMsg(conv, ack.seq);                // a 'message' event of the SDK
//   bob.seqs(conv)                                                // seqs the app got, in arrival order
//   closeDevices();                                               // in `after`: every device made here
//
// A device records what the SDK hands to the app ('message' events with their source, 'event',
// 'broadcast', state changes). The SDK drops duplicates before the app sees them, so to keep the
// wire-level guarantees checked (the live stream itself has no repeats and no gaps) the `ws`
// class given to the SDK is a thin subclass that also records every frame the node sends, per
// connection (`device.wire`), and its HTTP requests are listed with their status
// (`device.requests`). Both only observe: everything is sent by the SDK.
//
// Waiting is event-driven: waitFor(cond) checks cond now and again after every SDK event or
// received frame, and fails with a description of what the device has after `timeout` ms.
import WebSocket from 'ws';

import { ConvergeClient } from '../../../clients/js/src/index.js';

const DEFAULT_TIMEOUT_MS = 5000;

// Fast reconnects: tests restart nodes and must not wait for the SDK's production backoff.
const TEST_OPTIONS = { backoff: { initialMs: 50, maxMs: 400 }, ackTimeoutMs: 3000, watchNetwork: false };

const open = new Set(); // every device not closed yet

function parse(data) {
  const text = data.toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    return { raw: text };
  }
}

// A `ws` WebSocket class that records, per connection, every text frame the node sends (before
// the SDK's own handler runs) and how the connection closed.
function tappedWebSocket(device) {
  return class TappedWebSocket extends WebSocket {
    constructor(url, protocols, options) {
      super(url, protocols, options);
      const conn = { url: String(url), frames: [], close: null };
      device.wire.push(conn);
      this.on('message', (data, isBinary) => {
        if (isBinary) return;
        conn.frames.push(parse(data));
        device._check();
      });
      this.on('close', (code, reason) => {
        conn.close = { code, reason: reason.toString() };
        device._check();
      });
      this.on('error', () => {}); // the SDK sees the close that follows
    }
  };
}

export class SdkDevice {
  constructor(node, { user_id, device_id, ...options }) {
    this.node = node;
    this.label = `${user_id}/${device_id}`;
    this.user_id = user_id;
    this.device_id = device_id;
    /** Every 'message' event, in arrival order: {m, source}. */
    this.got = [];
    this.events = [];
    this.broadcasts = [];
    this.states = [];
    this.errors = [];
    this.disconnects = [];
    this.syncedCount = 0;
    this.unauthorized = null;
    /** Per WebSocket connection the SDK opened: {url, frames: [every text frame received], close}. */
    this.wire = [];
    /** Every HTTP request the SDK made: {method, path (with the query), status (0: no answer)}. */
    this.requests = [];
    this._waiters = new Set();
    this.client = new ConvergeClient({
      baseUrl: node.url,
      WebSocket: tappedWebSocket(this),
      fetch: (url, init) => this._fetch(url, init),
      ...TEST_OPTIONS,
      ...options,
    });
    const c = this.client;
    c.on('message', (m, info) => {
      this.got.push({ m, source: info?.source });
      this._check();
    });
    c.on('event', (d) => this._record(this.events, d));
    c.on('broadcast', (d) => this._record(this.broadcasts, d));
    c.on('state', (s) => this._record(this.states, s));
    c.on('disconnect', (d) => this._record(this.disconnects, d));
    c.on('error', (e) => this._record(this.errors, e));
    c.on('ack', () => this._check());
    c.on('synced', () => {
      this.syncedCount++;
      this._check();
    });
    c.on('unauthorized', (e) => {
      this.unauthorized = e;
      this._check();
    });
    open.add(this);
  }

  async _fetch(url, init = {}) {
    const u = new URL(String(url));
    const entry = { method: init.method || 'GET', path: u.pathname + u.search, status: 0 };
    this.requests.push(entry);
    const r = await fetch(url, init);
    entry.status = r.status;
    return r;
  }

  _record(list, item) {
    list.push(item);
    this._check();
  }

  _check() {
    for (const w of [...this._waiters]) w.check();
  }

  /** Logs in through the SDK (password 'pw-<user>' unless given); resolves with the session. */
  login(password = 'pw-' + this.user_id) {
    return this.client.login({ user_id: this.user_id, password, device_id: this.device_id });
  }

  /** SDK connect(), then waits for the first resync ('synced'): the device is caught up. */
  async connect({ timeout = 10000 } = {}) {
    const before = this.syncedCount;
    await this.client.connect();
    await this.waitFor(() => this.syncedCount > before, { timeout, label: 'the first sync after connect' });
    return this;
  }

  /** Resolves once cond() is truthy (checked now and after every SDK event / frame), with its value. */
  waitFor(cond, { timeout = DEFAULT_TIMEOUT_MS, label = String(cond) } = {}) {
    const v = cond();
    if (v) return Promise.resolve(v);
    return new Promise((resolve, reject) => {
      const w = {};
      const done = () => {
        clearTimeout(w.timer);
        this._waiters.delete(w);
      };
      w.check = () => {
        if (this.unauthorized) {
          done();
          reject(new Error(`${this.label}: token refused (${this.unauthorized.message}) while waiting for ${label}`));
          return;
        }
        let r;
        try {
          r = cond();
        } catch (e) {
          done();
          reject(e);
          return;
        }
        if (r) {
          done();
          resolve(r);
        }
      };
      w.timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label}: timed out after ${timeout} ms waiting for ${label}; ${this.describe()}`));
      }, timeout);
      this._waiters.add(w);
    });
  }

  /** Messages of one conversation the app got, in arrival order. */
  msgs(conv) {
    return this.got.filter((g) => g.m.conversation_id === String(conv)).map((g) => g.m);
  }

  seqs(conv) {
    return this.msgs(conv).map((m) => m.seq);
  }

  /** Messages of a conversation by where the SDK got them: 'offline' | 'live' | 'sync'. */
  msgsFrom(source, conv) {
    return this.got
      .filter((g) => g.source === source && (conv === undefined || g.m.conversation_id === String(conv)))
      .map((g) => g.m);
  }

  /** Highest seq of a conversation the app got (0 if none). */
  maxSeq(conv) {
    return Math.max(0, ...this.seqs(conv));
  }

  /** The message (conv, seq), once the SDK hands it to the app. */
  waitForMsg(conv, seq, opts = {}) {
    const find = () => this.msgs(conv).find((m) => m.seq === seq);
    return this.waitFor(find, { label: `message ${conv}:${seq}`, ...opts });
  }

  /** The first message of `conv` with this body. */
  waitForBody(conv, body, opts = {}) {
    const find = () => this.msgs(conv).find((m) => m.body === body);
    return this.waitFor(find, { label: `message ${conv} "${body}"`, ...opts });
  }

  /** Until every seq 1..to (or from..to) of `conv` has reached the app. */
  waitForSeqs(conv, to, { from = 1, ...opts } = {}) {
    const all = () => {
      const have = new Set(this.seqs(conv));
      for (let s = from; s <= to; s++) if (!have.has(s)) return false;
      return true;
    };
    return this.waitFor(all, { label: `messages ${conv}:${from}..${to}`, ...opts });
  }

  waitForEvent(pred = () => true, opts = {}) {
    return this.waitFor(() => this.events.find(pred), { label: 'an admin event', ...opts });
  }

  waitForBroadcast(pred = () => true, opts = {}) {
    return this.waitFor(() => this.broadcasts.find(pred), { label: 'a broadcast', ...opts });
  }

  /** Until the SDK's connection state is `state` ('online' | 'connecting' | 'offline'). */
  waitState(state, opts = {}) {
    return this.waitFor(() => this.client.state === state, { label: `state ${state}`, ...opts });
  }

  /** Until the SDK has finished `n` resyncs in all (one per (re)connection). */
  waitSynced(n, opts = {}) {
    return this.waitFor(() => this.syncedCount >= n, { label: `${n} resyncs`, ...opts });
  }

  // ---- the wire, as the tap saw it ----

  /** The frames of one connection (default: the latest one). */
  frames(conn = this.wire.length - 1) {
    return this.wire[conn]?.frames ?? [];
  }

  /** Live `msg` pushes of one conversation on one connection (default: the latest), in order. */
  liveMsgs(conv, conn = this.wire.length - 1) {
    return this.frames(conn)
      .filter((f) => f.cmd === 'msg' && f.data?.conversation_id === String(conv))
      .map((f) => f.data);
  }

  describe() {
    const got = this.got.slice(-12).map((g) => `${g.m.conversation_id}:${g.m.seq}(${g.source})`);
    const errors = this.errors.slice(-3).map((e) => e?.message || String(e));
    return (
      `state ${this.client.state}, ${this.got.length} messages (last: ${got.join(' ')}), ` +
      `${this.syncedCount} resyncs, ${this.wire.length} connections, pending ${this.client.pending().length}` +
      (errors.length ? `, errors: ${errors.join(' | ')}` : '')
    );
  }

  close() {
    open.delete(this);
    for (const w of [...this._waiters]) {
      clearTimeout(w.timer);
      this._waiters.delete(w);
    }
    this.client.close();
  }
}

/**
 * A device of an existing user (made with makeUser, password 'pw-<user>'), logged in through the
 * SDK and, unless `connect: false`, connected and caught up.
 * Options: password, register (sign up through the SDK first), connect, and ConvergeClient options.
 */
export async function sdkDevice(node, userId, deviceId = 'sdk', opts = {}) {
  const { password = 'pw-' + userId, register = false, name, connect = true, ...clientOptions } = opts;
  const d = new SdkDevice(node, { user_id: userId, device_id: deviceId, ...clientOptions });
  try {
    if (register) await d.client.register({ user_id: userId, name, password });
    await d.login(password);
    if (connect) await d.connect();
  } catch (e) {
    d.close();
    throw e;
  }
  return d;
}

/** Closes the devices given, or every device not closed yet; for `after` hooks and `finally`. */
export function closeDevices(...devices) {
  const list = devices.length ? devices.flat().filter(Boolean) : [...open];
  for (const d of list) d.close();
}
