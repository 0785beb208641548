// The private servers the cluster tests run on (lib/rabbitmq.mjs, lib/postgres.mjs): both start
// on free loopback ports in temp folders, answer a real client (amqplib, psql), and stop by PID
// with nothing left behind.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';

import amqp from 'amqplib';

import { startPostgres } from './lib/postgres.mjs';
import { startRabbit } from './lib/rabbitmq.mjs';
import { alive, run } from './lib/servers.mjs';

let rabbit;
let pg;

before(async () => {
  [rabbit, pg] = await Promise.all([startRabbit(), startPostgres()]);
  console.log(`# RabbitMQ up in ${rabbit.startedInMs} ms, PostgreSQL up in ${pg.startedInMs} ms`);
});

after(async () => {
  await Promise.all([rabbit?.stop(), pg?.stop()]);
});

test('amqplib publishes and consumes through the private RabbitMQ', async () => {
  assert.match(rabbit.url, /^amqp:\/\/guest:guest@127\.0\.0\.1:\d+$/);
  const conn = await amqp.connect(rabbit.url);
  try {
    const ch = await conn.createConfirmChannel();
    const { queue } = await ch.assertQueue('', { exclusive: true });
    const got = new Promise((resolve) => {
      ch.consume(queue, (m) => resolve(m.content.toString()), { noAck: true });
    });
    ch.sendToQueue(queue, Buffer.from('ping'));
    await ch.waitForConfirms();
    assert.equal(await got, 'ping');
  } finally {
    await conn.close();
  }
});

test('psql queries the private PostgreSQL', async () => {
  const r = await run('psql', ['-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', '-d', 'postgres',
    '-Atc', 'select 41 + 1']);
  assert.equal(r.code, 0, r.out);
  assert.equal(r.out.trim(), '42');
});

test('stop leaves no process and no folder behind', async () => {
  const pids = [rabbit.pid, rabbit.epmdPid, pg.pid];
  const dirs = [rabbit.dir, pg.dir];
  for (const p of pids) assert.ok(alive(p), `pid ${p} runs before stop`);
  await Promise.all([rabbit.stop(), pg.stop()]);
  for (const p of pids) assert.ok(!alive(p), `pid ${p} is gone after stop`);
  for (const d of dirs) assert.ok(!existsSync(d), `${d} is removed`);
  await Promise.all([rabbit.stop(), pg.stop()]); // idempotent
});
