// A private RabbitMQ for the integration tests, started as ../shared/PEERS.md describes (never
// the system service): a temp folder, free loopback ports for AMQP, Erlang distribution, epmd
// and rabbitmqctl's range, our own epmd (so that it is ours to stop), then rabbitmq-server and
// `rabbitmqctl await_startup` retried every second (it fails at once until the node has
// registered) for up to a minute while the server lives. 5-10 s from nothing.
//
//   const rabbit = await startRabbit();
//   ... rabbit.url (amqp://guest:guest@127.0.0.1:PORT), rabbit.amqpPort ...
//   await rabbit.ctl('stop_app'); await rabbit.ctl('start_app');   // a broker outage
//   await rabbit.restart();   // the whole broker stopped and started again (same ports, data)
//   await rabbit.stop();   // rabbitmqctl shutdown, then by PID; the folder is removed
//
// CONVERGE_TEST_RABBITMQ_BIN overrides /usr/lib/rabbitmq/bin.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import {
  accepts, alive, freePort, freePortRange, run, sleep, track, untrack, waitGone, within,
} from './servers.mjs';

const START_TIMEOUT_MS = 60000;

function epmdPath() {
  if (existsSync('/usr/bin/epmd')) return '/usr/bin/epmd';
  for (const d of readdirSync('/usr/lib/erlang').filter((n) => n.startsWith('erts-'))) {
    const p = path.join('/usr/lib/erlang', d, 'bin', 'epmd');
    if (existsSync(p)) return p;
  }
  throw new Error('epmd not found (Erlang is not installed?)');
}

function tail(file, bytes = 3000) {
  try {
    return readFileSync(file, 'utf8').slice(-bytes);
  } catch {
    return '';
  }
}

// Starts `file` in a process group of its own (detached), output appended to `log`.
function spawnLogged(file, args, env, log) {
  const fd = openSync(log, 'a');
  const child = spawn(file, args, { env, stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  child.exitInfo = null;
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      child.exitInfo = { code, signal };
      resolve(child.exitInfo);
    });
    child.once('error', (err) => {
      child.exitInfo = { code: -1, signal: null, error: err };
      resolve(child.exitInfo);
    });
  });
  return child;
}

export async function startRabbit({ timeoutMs = START_TIMEOUT_MS } = {}) {
  const t0 = Date.now();
  const bin = process.env.CONVERGE_TEST_RABBITMQ_BIN || '/usr/lib/rabbitmq/bin';
  if (!existsSync(path.join(bin, 'rabbitmq-server')))
    throw new Error(
      `RabbitMQ is not installed here (${bin}/rabbitmq-server is missing): run scripts/install-deps.sh test`,
    );
  const dir = await mkdtemp(path.join(tmpdir(), 'converge-rabbit-'));
  const key = `rabbit:${dir}`;
  track(key, { dir });
  let server = null;
  let epmd = null;
  const cleanup = async () => {
    for (const child of [server, epmd]) {
      if (child && !child.exitInfo) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // gone already
        }
        await child.exited;
      }
    }
    await rm(dir, { recursive: true, force: true });
    untrack(key);
  };
  try {
    await mkdir(path.join(dir, 'home'));
    const amqpPort = await freePort();
    const distPort = await freePort();
    const epmdPort = await freePort();
    const ctlMin = await freePortRange(10);
    await writeFile(
      path.join(dir, 'rabbitmq.conf'),
      `listeners.tcp.default = 127.0.0.1:${amqpPort}\nloopback_users.guest = true\n`,
    );
    await writeFile(path.join(dir, 'enabled_plugins'), '[].\n');
    const env = {
      ...process.env,
      HOME: path.join(dir, 'home'),
      LC_ALL: 'C.UTF-8',
      RABBITMQ_NODENAME: 'rabbit@localhost',
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(amqpPort),
      RABBITMQ_DIST_PORT: String(distPort),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      ERL_EPMD_PORT: String(epmdPort),
      RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(dir, 'log'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
      RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
      RABBITMQ_CTL_DIST_PORT_MIN: String(ctlMin),
      RABBITMQ_CTL_DIST_PORT_MAX: String(ctlMin + 9),
    };
    const ctl = (...args) => run(path.join(bin, 'rabbitmqctl'), args, { env });

    // Our own epmd in the foreground: the broker finds it on its port and starts no daemon.
    epmd = spawnLogged(epmdPath(), ['-address', '127.0.0.1', '-port', String(epmdPort)], env,
      path.join(dir, 'epmd.log'));
    for (let i = 0; i < 250 && !(await accepts(epmdPort)); i++) await sleep(20);
    if (!(await accepts(epmdPort)))
      throw new Error(`epmd did not listen:\n${tail(path.join(dir, 'epmd.log'))}`);
    const groups = [epmd.pid];
    track(key, { groups, dir });

    const boot = async () => {
      server = spawnLogged(path.join(bin, 'rabbitmq-server'), [], env, path.join(dir, 'server.log'));
      groups.push(server.pid);
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (server.exitInfo)
          throw new Error(
            `rabbitmq-server exited (${JSON.stringify(server.exitInfo)}):\n${tail(path.join(dir, 'server.log'))}`,
          );
        const r = await ctl('await_startup', '--timeout', String(Math.ceil(timeoutMs / 1000)));
        if (r.code === 0) break;
        if (Date.now() > deadline)
          throw new Error(`RabbitMQ did not start in ${timeoutMs} ms:\n${tail(path.join(dir, 'server.log'))}`);
        await sleep(1000);
      }
    };
    await boot();

    let stopped = null;
    const stop = () => {
      stopped ??= (async () => {
        const r = await ctl('shutdown');
        if (r.code !== 0 || !(await within(server.exited, 10000))) {
          try {
            process.kill(-server.pid, 'SIGKILL'); // its process group: the script and the Erlang VM
          } catch {
            // gone already
          }
          await server.exited;
        }
        try {
          process.kill(epmd.pid, 'SIGTERM');
        } catch {
          // gone already
        }
        if (!(await within(epmd.exited, 2000))) {
          try {
            process.kill(-epmd.pid, 'SIGKILL');
          } catch {
            // gone already
          }
          await epmd.exited;
        }
        await rm(dir, { recursive: true, force: true });
        untrack(key);
      })();
      return stopped;
    };
    // The whole broker down (`rabbitmqctl stop`: the Erlang VM exits) and up again on the same
    // ports and data (durable exchanges and queues survive, exclusive queues do not).
    const restart = async ({ downMs = 0 } = {}) => {
      const r = await ctl('stop');
      if (r.code !== 0 || !(await within(server.exited, 15000))) {
        try {
          process.kill(-server.pid, 'SIGKILL');
        } catch {
          // gone already
        }
        await server.exited;
      }
      groups.splice(groups.indexOf(server.pid), 1);
      if (downMs) await sleep(downMs);
      await boot();
    };
    return {
      url: `amqp://guest:guest@127.0.0.1:${amqpPort}`,
      amqpPort,
      dir,
      get pid() {
        return server.pid;
      },
      epmdPid: epmd.pid,
      startedInMs: Date.now() - t0,
      // rabbitmqctl against this broker: {code, out}.
      ctl,
      restart,
      stop,
      alive: () => alive(server.pid),
      waitGone: (ms) => waitGone(server.pid, ms),
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
