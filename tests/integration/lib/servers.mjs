// What the private-server helpers (rabbitmq.mjs, postgres.mjs) share: free loopback ports,
// running a command to its end, and a last-resort cleanup of whatever they started, by PID.
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import net from 'node:net';

// A port nothing listens on now (the kernel's pick), or `want` when that one is free.
export function freePort(want = 0) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(0));
    srv.listen(want, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// `count` free ports in a row (rabbitmqctl takes its Erlang node's port from a range).
// Looked for below the kernel's ephemeral range (32768-60999 here), where the many client
// connections of a busy machine (a benchmark, thousands of sockets in TIME-WAIT) take no ports.
export async function freePortRange(count) {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = attempt < 40 ? 10000 + Math.floor(Math.random() * (32000 - 10000 - count)) : await freePort();
    if (!base || base + count > 65535 || (await freePort(base)) !== base) continue;
    let all = true;
    for (let p = base + 1; all && p < base + count; p++) all = (await freePort(p)) === p;
    if (all) return base;
  }
  throw new Error(`no ${count} free ports in a row`);
}

export function accepts(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// True if `promise` settles within `ms`, false otherwise; the timer does not outlive the race
// (a pending one would keep the test process alive).
export async function within(promise, ms) {
  let timer;
  const timeout = new Promise((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// Runs a command to its end: {code, out} (stdout and stderr together), never throws.
export function run(file, args, { env, timeoutMs = 120000 } = {}) {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`;
      if (!err) return resolve({ code: 0, out });
      resolve({ code: typeof err.code === 'number' ? err.code : -1, out: `${out}${err.message}` });
    });
  });
}

export function alive(pid) {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

// Resolves once `pid` is gone (true) or after `timeoutMs` (false). Polls: the process may not
// be our child (pg_ctl's postmaster).
export async function waitGone(pid, timeoutMs) {
  const until = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > until) return false;
    await sleep(25);
  }
  return true;
}

// Process groups and folders to remove if the test process exits without stopping them.
const leftovers = new Map(); // key -> {groups: [pid], pids: [pid], dir}

export function track(key, entry) {
  leftovers.set(key, entry);
}
export function untrack(key) {
  leftovers.delete(key);
}

process.on('exit', () => {
  for (const { groups = [], pids = [], dir } of leftovers.values()) {
    for (const g of groups) {
      try {
        process.kill(-g, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
});
