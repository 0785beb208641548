// Starts and stops real `converge serve` processes for the integration tests.
//
//   const node = await startNode({ flags: ['--heartbeat-timeout-ms', '1500'] });
//   ... node.url, node.wsUrl, node.port, node.dataDir, node.mqttPort, node.mqttUrl ...
//   await node.restart();   // SIGTERM, then start again on the same data dir and port
//   await node.stop();      // SIGTERM, SIGKILL after a timeout
//   await node.kill();      // SIGKILL at once (a crash); node.start() starts it again
//
// Every node gets a fresh data dir from mkdtemp (removed by stop({ removeData: true }), which
// the test hook `useNode` does), listens on 127.0.0.1:0 and reports its port through
// --port-file; a restart listens on the port of the first start again, so that clients which
// reconnect by themselves (the SDK) find the node where it was. MQTT over TCP likewise listens
// on 127.0.0.1:0 (never the default 1883, which tests running side by side would fight over),
// reported through --mqtt-port-file as node.mqttPort, and kept across restarts; a test may pass
// its own --mqtt-listen in `flags` (later flags win). The process is tracked by PID
// only; nothing else is ever signalled.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..', '..');
export const convergeBin =
  process.env.CONVERGE_BIN || path.join(repoRoot, 'build', 'src', 'app', 'converge');

const START_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 5000;

const live = new Set(); // every node still running, stopped on process exit as a last resort

process.on('exit', () => {
  for (const n of live) {
    try {
      process.kill(n.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

export class ConvergeNode {
  constructor({ flags = [], dataDir, env = {} }) {
    this.flags = flags;
    this.dataDir = dataDir;
    this.env = env;
    this.portFile = path.join(dataDir, 'port');
    this.mqttPortFile = path.join(dataDir, 'mqtt-port');
    this.proc = null;
    this.pid = 0;
    this.port = 0;
    this.mqttPort = 0; // 0 when the node has no MQTT TCP listener (--mqtt-listen off)
    this.log = ''; // stdout and stderr of the current process, for failure messages
    this.exited = null; // promise of {code, signal} for the current process
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get mqttUrl() {
    return `mqtt://127.0.0.1:${this.mqttPort}`;
  }

  // MQTT over WebSocket, on the HTTP port.
  get mqttWsUrl() {
    return `ws://127.0.0.1:${this.port}/mqtt`;
  }

  args() {
    return [
      'serve',
      '--listen', `127.0.0.1:${this.port || 0}`, // a restart keeps the port of the first start
      '--data-dir', this.dataDir,
      '--port-file', this.portFile,
      '--mqtt-listen', `127.0.0.1:${this.mqttPort || 0}`,
      '--mqtt-port-file', this.mqttPortFile,
      '--password-cost', 'min',
      '--log-level', 'warn',
      ...this.flags,
    ];
  }

  async start() {
    if (this.proc) throw new Error('node already running');
    await unlink(this.portFile).catch(() => {});
    await unlink(this.mqttPortFile).catch(() => {});
    this.log = '';
    const proc = spawn(convergeBin, this.args(), {
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    this.pid = proc.pid;
    live.add(this);
    const append = (chunk) => {
      this.log += chunk.toString();
      if (this.log.length > 200000) this.log = this.log.slice(-100000);
    };
    proc.stdout.on('data', append);
    proc.stderr.on('data', append);
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        live.delete(this);
        resolve({ code, signal });
      });
      proc.on('error', (err) => {
        live.delete(this);
        this.log += `\nspawn error: ${err.message}`;
        resolve({ code: -1, signal: null, error: err });
      });
    });
    let exitedEarly = null;
    this.exited.then((r) => {
      exitedEarly = r;
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (exitedEarly) {
        this.proc = null;
        throw new Error(
          `converge exited at start (code ${exitedEarly.code}, signal ${exitedEarly.signal}):\n${this.log}`,
        );
      }
      const text = await readFile(this.portFile, 'utf8').catch(() => '');
      const port = Number.parseInt(text, 10);
      if (port > 0) {
        this.port = port;
        // Written before the port file, when the node listens for MQTT over TCP.
        const mqtt = Number.parseInt(await readFile(this.mqttPortFile, 'utf8').catch(() => ''), 10);
        if (mqtt > 0) this.mqttPort = mqtt;
        return this;
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`converge did not write its port file in time:\n${this.log}`);
      }
      await new Promise((r) => setTimeout(r, 20)); // polling for the port file, not a wait-for-absence
    }
  }

  // SIGTERM, then SIGKILL after `timeoutMs`. Resolves with {code, signal, killed}.
  async stop({ timeoutMs = STOP_TIMEOUT_MS, removeData = false } = {}) {
    const proc = this.proc;
    let result = { code: null, signal: null, killed: false };
    if (proc) {
      if (proc.exitCode === null && proc.signalCode === null) {
        try {
          process.kill(this.pid, 'SIGTERM');
        } catch {
          // gone already
        }
      }
      let timer;
      const timedOut = new Promise((r) => {
        timer = setTimeout(() => r('timeout'), timeoutMs);
      });
      const r = await Promise.race([this.exited, timedOut]);
      clearTimeout(timer);
      if (r === 'timeout') {
        try {
          process.kill(this.pid, 'SIGKILL');
        } catch {
          // gone already
        }
        result = { ...(await this.exited), killed: true };
      } else {
        result = { ...r, killed: false };
      }
      this.proc = null;
    }
    if (removeData) await rm(this.dataDir, { recursive: true, force: true });
    return result;
  }

  // SIGKILL: the process dies at once, mid-write if it was writing (a crash). Resolves with
  // {code, signal}.
  async kill() {
    const proc = this.proc;
    if (!proc) return { code: null, signal: null };
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // gone already
    }
    const r = await this.exited;
    this.proc = null;
    return r;
  }

  // Stops the process (SIGTERM) and starts a new one on the same data dir, port and flags.
  async restart() {
    const r = await this.stop();
    await this.start();
    return r;
  }
}

export async function startNode({ flags = [], env = {} } = {}) {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'converge-it-'));
  const node = new ConvergeNode({ flags, dataDir, env });
  await node.start();
  return node;
}

// File-level hook: one node for every test of the file, stopped (and its data removed) after.
// Returns a handle whose `.node` is set once `before` has run, and whose `.ready` promise
// resolves with the node: other root-level `before` hooks must `await h.ready`, since the test
// runner does not wait for one root-level hook before it starts the next.
export function useNode(opts = {}) {
  let resolve;
  let reject;
  const handle = { node: null };
  handle.ready = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  handle.ready.catch(() => {}); // reported by the hook itself
  before(async () => {
    try {
      handle.node = await startNode(opts);
      resolve(handle.node);
    } catch (e) {
      reject(e);
      throw e;
    }
  });
  after(async () => {
    await handle.ready.catch(() => {});
    if (handle.node) await handle.node.stop({ removeData: true });
  });
  return handle;
}
