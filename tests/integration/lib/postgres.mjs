// A private PostgreSQL for the integration tests, started as ../shared/PEERS.md describes (never
// the system service): initdb into a temp folder (as user postgres when run as root: initdb
// refuses root), pg_ctl on 127.0.0.1 and a free port, its socket in the folder, fsync off.
// About a second from nothing.
//
//   const pg = await startPostgres();            // or startPostgres({ settings: { max_connections: 300 } })
//   ... pg.url (postgresql://postgres@127.0.0.1:PORT/postgres), pg.port, pg.pid ...
//   await pg.restart();   // pg_ctl restart on the same port: a database outage
//   await pg.stop();      // pg_ctl stop -m fast, then by PID; the folder is removed
//
// CONVERGE_TEST_PG_BIN overrides /usr/lib/postgresql/15/bin.
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { alive, freePort, run, track, untrack, waitGone } from './servers.mjs';

async function postgresUser() {
  const uid = await run('id', ['-u', 'postgres']);
  const gid = await run('id', ['-g', 'postgres']);
  if (uid.code !== 0) throw new Error('running as root, and there is no user postgres to run PostgreSQL as');
  return { uid: Number(uid.out.trim()), gid: Number(gid.out.trim()) };
}

export async function startPostgres({ settings = {} } = {}) {
  const t0 = Date.now();
  const bin = process.env.CONVERGE_TEST_PG_BIN || '/usr/lib/postgresql/15/bin';
  if (!existsSync(path.join(bin, 'initdb')))
    throw new Error(`PostgreSQL is not installed here (${bin}/initdb is missing): run scripts/install-deps.sh test`);
  const dir = await mkdtemp(path.join(tmpdir(), 'converge-pg-'));
  const key = `pg:${dir}`;
  track(key, { dir });
  const data = path.join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  // As root, every server command runs as postgres, which owns the folder.
  const cmd = (file, args) => (asRoot ? ['runuser', ['-u', 'postgres', '--', file, ...args]] : [file, args]);
  const exec = (file, args) => run(...cmd(file, args));
  const pgCtl = (...args) => exec(path.join(bin, 'pg_ctl'), ['-D', data, ...args]);
  let pid = 0;
  let port = 0;
  const readPid = async () => Number((await readFile(path.join(data, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  const start = async () => {
    const opts = [
      '-c listen_addresses=127.0.0.1',
      `-p ${port}`,
      `-k ${dir}`,
      '-c fsync=off',
      ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`),
    ].join(' ');
    const r = await pgCtl('-l', path.join(dir, 'pg.log'), '-o', opts, '-w', '-t', '60', 'start');
    if (r.code !== 0) return r;
    pid = await readPid();
    track(key, { pids: [pid], dir });
    return r;
  };
  try {
    if (asRoot) {
      const { uid, gid } = await postgresUser();
      await chown(dir, uid, gid);
    }
    const init = await exec(path.join(bin, 'initdb'), [
      '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C',
    ]);
    if (init.code !== 0) throw new Error(`initdb failed:\n${init.out}`);
    // Another process may take the free port before the server binds it: try another one.
    let started = null;
    for (let attempt = 0; attempt < 5 && !started; attempt++) {
      port = await freePort();
      const r = await start();
      if (r.code === 0) started = r;
    }
    if (!started) {
      const log = await readFile(path.join(dir, 'pg.log'), 'utf8').catch(() => '');
      throw new Error(`pg_ctl start failed:\n${log.slice(-3000)}`);
    }
  } catch (err) {
    if (pid) {
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {
        // gone already
      }
      await waitGone(pid, 5000);
    }
    await rm(dir, { recursive: true, force: true });
    untrack(key);
    throw err;
  }

  // pg_ctl stop waits for the postmaster; should it fail, the postmaster's PID: SIGQUIT is
  // PostgreSQL's immediate shutdown, SIGKILL the last resort.
  const stopServer = async () => {
    const r = await pgCtl('-m', 'fast', '-w', '-t', '30', 'stop');
    if (r.code !== 0 || !(await waitGone(pid, 10000))) {
      for (const sig of ['SIGQUIT', 'SIGKILL']) {
        try {
          process.kill(pid, sig);
        } catch {
          // gone already
        }
        if (await waitGone(pid, 5000)) break;
      }
    }
  };
  let stopped = null;
  return {
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    get port() {
      return port;
    },
    get pid() {
      return pid;
    },
    dir,
    startedInMs: Date.now() - t0,
    alive: () => alive(pid),
    // Stops and starts the server on the same port and data (clients must reconnect).
    async restart() {
      await stopServer();
      const r = await start();
      if (r.code !== 0) throw new Error(`pg_ctl start (restart) failed:\n${r.out}`);
    },
    stop() {
      stopped ??= (async () => {
        await stopServer();
        await rm(dir, { recursive: true, force: true });
        untrack(key);
      })();
      return stopped;
    },
  };
}
