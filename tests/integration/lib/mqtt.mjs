// MQTT test clients no one here wrote: MQTT.js (npm `mqtt`) over TCP and WebSocket, and Debian's
// mosquitto_pub / mosquitto_sub; plus raw packet bytes over node:net for what real clients
// refuse to send (malformed and oversize packets).
//
//   const c = await mqttConnect(node, { transport: 'ws', version: 5, username, password });
//   await c.sub('app/alice/#', 1);                   // resolves with the SUBACK codes
//   const m = await c.waitFor((m) => m.topic === 'app/alice/x');
//   await c.end();
//
//   const sub = await mosquittoSub(node, { topic, username, password, count: 1, version: 5 });
//   await mosquittoPub(node, { topic, message: 'hi', qos: 1, username, password });
//   const { code, messages } = await sub.done;      // messages: [{topic, qos, retain, payload}]
//
//   const raw = await RawMqtt.connect(node);         // a TCP socket, bytes by hand
//   raw.write(connectPacket({ clientId, username, password })); await raw.closed;
//
// Every wait has a timeout; every child process is killed at the end of its wait.
import { spawn } from 'node:child_process';
import net from 'node:net';
import mqtt from 'mqtt';

const DEFAULT_TIMEOUT_MS = 5000;

// ---- MQTT.js ----

export class MqttJsClient {
  constructor(client) {
    this.client = client;
    this.messages = []; // {topic, payload (string), packet}, in arrival order
    this.waiters = new Set();
    this.closed = false;
    this.disconnectPacket = null; // an MQTT 5 DISCONNECT the server sent
    client.on('message', (topic, payload, packet) => {
      const m = { topic, payload: payload.toString('utf8'), packet };
      this.messages.push(m);
      for (const w of this.waiters) if (w.pred(m)) w.resolve(m);
    });
    client.on('disconnect', (packet) => {
      this.disconnectPacket = packet;
    });
    this.closedPromise = new Promise((resolve) => {
      client.on('close', () => {
        this.closed = true;
        for (const w of this.waiters) w.onClose?.();
        resolve();
      });
    });
  }

  // The SUBACK codes (granted QoS, or 0x80 / MQTT 5 reason codes for refusals), one per filter.
  sub(filters, qos = 0, opts = {}) {
    return new Promise((resolve, reject) => {
      // The SUBACK itself: on a refusal MQTT.js calls back with an error and `granted` still
      // holding the QoS asked for, not the codes.
      this.client.subscribe(filters, { qos, ...opts }, (err, granted, suback) => {
        if (suback?.granted) return resolve([...suback.granted]);
        if (!err && granted) return resolve(granted.map((g) => g.qos));
        reject(err || new Error('no SUBACK'));
      });
    });
  }

  // Resolves with the PUBACK/PUBCOMP packet (QoS 1/2) or nothing (QoS 0); an MQTT 5 refusal
  // resolves with {reasonCode} as well, instead of throwing.
  pub(topic, payload, qos = 0, opts = {}) {
    return new Promise((resolve, reject) => {
      this.client.publish(topic, payload, { qos, ...opts }, (err, packet) => {
        if (err && typeof err.code === 'number') return resolve({ reasonCode: err.code });
        if (err) return reject(err);
        resolve(packet || {});
      });
    });
  }

  // The first message (already received or to come) that matches.
  waitFor(pred, timeoutMs = DEFAULT_TIMEOUT_MS, what = 'message') {
    const have = this.messages.find(pred);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (m) => {
          clearTimeout(timer);
          this.waiters.delete(w);
          resolve(m);
        },
        onClose: () => {
          clearTimeout(timer);
          this.waiters.delete(w);
          reject(new Error(`connection closed while waiting for ${what}`));
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.messages.map((m) => m.topic))}`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  waitClosed(timeoutMs = DEFAULT_TIMEOUT_MS) {
    let timer;
    return Promise.race([
      this.closedPromise.then(() => true),
      new Promise((r) => {
        timer = setTimeout(() => r(false), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  async end() {
    if (this.closed) return;
    await this.client.endAsync().catch(() => {});
  }
}

// `transport`: 'tcp' (node.mqttPort) or 'ws' (/mqtt on the HTTP port); `version`: 4 (3.1.1)
// or 5. Rejects with the CONNACK's code (err.code) when refused. No reconnects.
export async function mqttConnect(node, { transport = 'tcp', version = 4, ...opts } = {}) {
  const url = transport === 'ws' ? node.mqttWsUrl : node.mqttUrl;
  // As mqtt.connectAsync(url, opts, false), keeping the CONNACK (session present).
  const client = mqtt.connect(url, {
    protocolVersion: version,
    reconnectPeriod: 0,
    connectTimeout: DEFAULT_TIMEOUT_MS,
    clean: true,
    ...opts,
  });
  // Listening before the CONNACK: a resumed session's messages may come in the same read.
  const c = new MqttJsClient(client);
  const connack = await new Promise((resolve, reject) => {
    const listeners = {
      connect: (packet) => done(() => resolve(packet)),
      error: (err) => done(() => {
        client.end();
        reject(err);
      }),
      close: () => listeners.error(new Error("Couldn't connect to server")),
    };
    const done = (fn) => {
      for (const [e, l] of Object.entries(listeners)) client.off(e, l);
      fn();
    };
    for (const [e, l] of Object.entries(listeners)) client.on(e, l);
  });
  c.connack = connack;
  c.sessionPresent = Boolean(connack.sessionPresent);
  return c;
}

// ---- mosquitto_pub / mosquitto_sub (TCP only: Debian's are built without WebSocket) ----

function auth(args, { username, password, clientId }) {
  if (username !== undefined) args.push('-u', username);
  if (password !== undefined) args.push('-P', password);
  if (clientId !== undefined) args.push('-i', clientId);
}

function versionFlag(version) {
  return version === 5 ? 'mqttv5' : 'mqttv311';
}

function run(cmd, args, timeoutMs) {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => {
    stdout += d.toString();
    proc.emit('stdout-chunk');
  });
  proc.stderr.on('data', (d) => {
    stderr += d.toString();
  });
  const done = new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    proc.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, signal: null, stdout, stderr: stderr + err.message });
    });
  });
  return { proc, done, stdoutNow: () => stdout };
}

// mosquitto_pub; resolves with {code, stdout, stderr} once it exits.
export function mosquittoPub(node, { topic, message, qos = 0, retain = false, version = 4, timeoutMs = DEFAULT_TIMEOUT_MS, ...who }) {
  const args = ['-h', '127.0.0.1', '-p', String(node.mqttPort), '-V', versionFlag(version), '-t', topic, '-q', String(qos)];
  if (message === null) args.push('-n');
  else args.push('-m', message);
  if (retain) args.push('-r');
  auth(args, who);
  return run('mosquitto_pub', args, timeoutMs).done;
}

// mosquitto_sub for `count` messages (or `waitS` seconds). Resolves once subscribed (its debug
// output shows the SUBACK), with `done`: {code, stderr, messages, subackCodes}.
// `clean: false`: mosquitto_sub's -c (a persistent session; needs a clientId).
export async function mosquittoSub(node, { topic, qos = 0, count = 1, waitS = 5, version = 4, timeoutMs = DEFAULT_TIMEOUT_MS + 5000, clean = true, ...who }) {
  const args = ['-h', '127.0.0.1', '-p', String(node.mqttPort), '-V', versionFlag(version), '-t', topic, '-q', String(qos),
    '-C', String(count), '-W', String(waitS), '-d', '-F', 'MSG|%t|%q|%r|%p'];
  if (!clean) args.push('-c');
  auth(args, who);
  // Line-buffered: its debug lines (the SUBACK) would otherwise wait in a pipe buffer until exit.
  const r = run('stdbuf', ['-oL', 'mosquitto_sub', ...args], timeoutMs);
  const parse = (res) => ({
    ...res,
    messages: res.stdout
      .split('\n')
      .filter((l) => l.startsWith('MSG|'))
      .map((l) => {
        const [, t, q, rt, ...p] = l.split('|');
        return { topic: t, qos: Number(q), retain: rt === '1', payload: p.join('|') };
      }),
  });
  const done = r.done.then(parse);
  // Subscribed (or failed) before resolving, so that a publish that follows is not missed.
  await Promise.race([
    new Promise((resolve) => {
      const check = () => {
        if (/SUBACK/.test(r.stdoutNow())) resolve();
      };
      r.proc.on('stdout-chunk', check);
      check();
    }),
    r.done,
  ]);
  return { done, proc: r.proc };
}

// ---- raw bytes ----

export function varint(n) {
  const out = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

function str(s) {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

export function packet(firstByte, body) {
  return Buffer.concat([Buffer.from([firstByte]), varint(body.length), body]);
}

// CONNECT, MQTT 3.1.1 (version 4) or 5 (empty properties), clean session.
export function connectPacket({ clientId = 'raw', username, password, keepalive = 60, version = 4 } = {}) {
  let flags = 0x02;
  if (username !== undefined) flags |= 0x80;
  if (password !== undefined) flags |= 0x40;
  const ka = Buffer.alloc(2);
  ka.writeUInt16BE(keepalive);
  const parts = [str('MQTT'), Buffer.from([version, flags]), ka];
  if (version === 5) parts.push(Buffer.from([0]));
  parts.push(str(clientId));
  if (username !== undefined) parts.push(str(username));
  if (password !== undefined) parts.push(str(password));
  return packet(0x10, Buffer.concat(parts));
}

export function publishPacket(topic, payload, { version = 4 } = {}) {
  const parts = [str(topic)];
  if (version === 5) parts.push(Buffer.from([0]));
  parts.push(Buffer.isBuffer(payload) ? payload : Buffer.from(payload));
  return packet(0x30, Buffer.concat(parts));
}

export class RawMqtt {
  constructor(sock) {
    this.sock = sock;
    this.data = Buffer.alloc(0);
    this.waiters = new Set();
    this.closed = new Promise((resolve) => {
      sock.on('close', () => resolve(true));
    });
    sock.on('data', (d) => {
      this.data = Buffer.concat([this.data, d]);
      for (const w of this.waiters) w();
    });
    sock.on('error', () => {});
  }

  static connect(port) {
    return new Promise((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1', () => resolve(new RawMqtt(sock)));
      sock.on('error', reject);
    });
  }

  write(bytes) {
    return new Promise((resolve) => {
      this.sock.write(bytes, () => resolve());
    });
  }

  // Until at least `n` bytes have arrived (or the timeout): the bytes so far.
  read(n, timeoutMs = DEFAULT_TIMEOUT_MS) {
    return new Promise((resolve) => {
      const check = () => {
        if (this.data.length >= n) done();
      };
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(this.data);
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.add(check);
      this.closed.then(done);
      check();
    });
  }

  // true when the server closed the connection within the timeout.
  waitClosed(timeoutMs = DEFAULT_TIMEOUT_MS) {
    let timer;
    return Promise.race([
      this.closed,
      new Promise((r) => {
        timer = setTimeout(() => r(false), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  destroy() {
    this.sock.destroy();
  }
}
