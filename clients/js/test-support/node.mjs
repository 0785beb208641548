// Starts a private Converge node for tests: 127.0.0.1, a free port, a temp data dir, stopped by PID.
// Used by the SDK tests (clients/js/test) and the browser tests (tests/browser).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '../../..');
export const convergeBin = process.env.CONVERGE_BIN || join(repoRoot, 'build/src/app/converge');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * @param {object} [o]
 * @param {string[]} [o.args] extra `serve` flags
 * @param {object} [o.env] extra environment (CONVERGE_HEARTBEAT_INTERVAL_MS, ...)
 * @param {string} [o.webRoot] folder served at /
 * @returns {Promise<{port:number, baseUrl:string, dataDir:string, pid:number, stop:Function, restart:Function, log:Function}>}
 */
export async function startNode(o = {}) {
  if (!existsSync(convergeBin)) throw new Error(`no converge binary at ${convergeBin} (build it, or set CONVERGE_BIN)`);
  const dataDir = mkdtempSync(join(tmpdir(), 'converge-test-'));
  const portFile = join(dataDir, 'port');
  const logFile = join(dataDir, 'node.log');
  const node = { dataDir, port: 0, baseUrl: '', pid: 0, proc: null };

  async function launch(port) {
    rmSync(portFile, { force: true });
    const args = ['serve', '--listen', `127.0.0.1:${port}`, '--mqtt-listen', '127.0.0.1:0', '--data-dir', dataDir, '--port-file', portFile,
      '--password-cost', 'min', ...(o.webRoot ? ['--web-root', o.webRoot] : []), ...(o.args || [])];
    const fd = openSync(logFile, 'a');
    const proc = spawn(convergeBin, args, {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, CONVERGE_LOG_LEVEL: 'warn', ...(o.env || {}) },
    });
    closeSync(fd);
    let exited = false;
    proc.once('exit', () => (exited = true));
    node.proc = proc;
    node.pid = proc.pid;
    const deadline = Date.now() + 15000;
    for (;;) {
      if (exited) throw new Error(`converge exited at start; log:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
      if (Date.now() > deadline) throw new Error('converge did not write its port file in 15 s');
      let text = '';
      try {
        text = readFileSync(portFile, 'utf8').trim();
      } catch {}
      if (/^\d+$/.test(text)) {
        node.port = Number(text);
        break;
      }
      await sleep(20);
    }
    node.baseUrl = `http://127.0.0.1:${node.port}`;
    for (;;) {
      try {
        const r = await fetch(`${node.baseUrl}/healthz`);
        if (r.ok) break;
      } catch {}
      if (Date.now() > deadline) throw new Error('converge /healthz did not answer');
      await sleep(20);
    }
  }

  /** Stops the node (SIGTERM, then SIGKILL after 5 s) and waits for it to exit. */
  node.stop = async ({ keepData = false, signal = 'SIGTERM' } = {}) => {
    const proc = node.proc;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const done = new Promise((r) => proc.once('exit', r));
      process.kill(proc.pid, signal);
      const t = setTimeout(() => {
        try {
          process.kill(proc.pid, 'SIGKILL');
        } catch {}
      }, 5000);
      await done;
      clearTimeout(t);
    }
    node.proc = null;
    if (!keepData && !process.env.CONVERGE_KEEP_TEST_DATA) rmSync(dataDir, { recursive: true, force: true });
  };

  /** Stops the node and starts it again on the same port with the same data. */
  node.restart = async ({ downMs = 0, signal = 'SIGTERM' } = {}) => {
    await node.stop({ keepData: true, signal });
    if (downMs) await sleep(downMs);
    await node.start();
  };

  /** Starts a stopped node again (same port, same data). */
  node.start = () => launch(node.port);

  node.log = () => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };

  await launch(0);
  return node;
}

/** A JSON call to the node's API (for test setup). */
export async function api(baseUrl, method, path, { token, json } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(`${baseUrl}/api/v1${path}`, { method, headers, body: json === undefined ? undefined : JSON.stringify(json) });
  const text = await r.text();
  const body = text ? JSON.parse(text) : {};
  if (!r.ok) throw Object.assign(new Error(`${method} ${path}: ${r.status} ${text}`), { status: r.status, body });
  return body;
}
