// Offline push in a cluster (issue 13; docs/architecture.md, "Offline push"): two nodes on one
// private PostgreSQL and RabbitMQ, both pushing to the same webhook receiver. A user online on
// the other node is not pushed; each message is pushed by one node only; a node killed with
// pushes pending (tried and failed, and never tried) has them taken over by the other, which
// delivers each once.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { createConversation, http, login, register, sendHttp } from './lib/http.mjs';
import { ConvergeNode } from './lib/node.mjs';
import { startPostgres } from './lib/postgres.mjs';
import { startRabbit } from './lib/rabbitmq.mjs';
import { sleep } from './lib/servers.mjs';
import { PushReceiver, SECRET, count } from './lib/webhook.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

let pg;
let rabbit;
let filesDir;
const rx = new PushReceiver({ fallback: 200 });
const nodes = [];

async function startClusterNode(i) {
  const dataDir = await mkdtemp(path.join(tmpdir(), `converge-push-cluster-${i}-`));
  const node = new ConvergeNode({
    dataDir,
    flags: ['--store', pg.url, '--bus', rabbit.url, '--files-dir', filesDir, '--node-id', `pnode${i}`,
      '--node-heartbeat-ms', '200', '--node-timeout-ms', '1500',
      '--push-webhook-url', rx.url, '--push-webhook-secret', SECRET,
      // A long batch window: what is sent right before the kill was never tried.
      '--push-batch-ms', '1000', '--push-retry-base-ms', '200', '--push-retry-cap-ms', '400',
      '--push-retry-max', '50', '--push-timeout-ms', '500'],
  });
  await node.start();
  return node;
}

before(async () => {
  await rx.start();
  [pg, rabbit] = await Promise.all([startPostgres(), startRabbit()]);
  filesDir = await mkdtemp(path.join(tmpdir(), 'converge-push-cluster-files-'));
  for (let i = 1; i <= 2; i++) nodes.push(await startClusterNode(i));
});

after(async () => {
  for (const n of nodes) await n.stop({ removeData: true }).catch(() => {});
  await Promise.all([pg?.stop(), rabbit?.stop()]);
  if (filesDir) await rm(filesDir, { recursive: true, force: true });
  await rx.stop();
});

async function user(id) {
  await register(nodes[0], id);
  return { id, tokens: [await login(nodes[0], id, 'd1'), await login(nodes[1], id, 'd2')] };
}

describe('push across nodes', () => {
  let alice;
  let bob;
  let carol;
  before(async () => {
    [alice, bob, carol] = [await user('alice'), await user('bob'), await user('carol')];
  });

  test('a user online on the other node is not pushed; each message is pushed by one node', async () => {
    const c = await createConversation(nodes[0], alice.tokens[0], 'group', ['bob', 'carol'], 'across');
    const ws = await WsClient.connect(nodes[1], { token: bob.tokens[1] });
    try {
      // Seen online from node 1 (the presence table, written behind by node 2; alice sees bob
      // since they share a conversation).
      for (let i = 0; ; i++) {
        const r = await http(nodes[0], 'GET', '/api/v1/presence?users=bob', { token: alice.tokens[0] });
        if (r.json.presence[0]?.online) break;
        assert.ok(i < 300, 'bob never showed online on node 1');
        await sleep(10);
      }
      // Sent on both nodes.
      for (let i = 0; i < 6; i++)
        assert.equal((await sendHttp(nodes[i % 2], alice.tokens[i % 2], c.id, { body: `m${i}` })).status, 201);
      for (let s = 1; s <= 6; s++) await rx.deliveredPush('carol', c.id, s);
      for (let s = 1; s <= 6; s++) {
        assert.equal(count(rx.all(), 'carol', c.id, s), 1, `carol ${s} pushed by one node, once`);
        assert.equal(count(rx.all(), 'bob', c.id, s), 0, `bob ${s}: online on node 2`);
      }
    } finally {
      await closeAll(ws);
    }
  });

  test("a dead node's pending pushes are taken over by the other, each delivered once", async () => {
    const c = await createConversation(nodes[0], alice.tokens[0], 'group', ['bob'], 'orphans');
    rx.fallback = 500;
    for (let i = 0; i < 3; i++)
      assert.equal((await sendHttp(nodes[0], alice.tokens[0], c.id, { body: `early ${i}` })).status, 201);
    await rx.until(() => [1, 2, 3].every((s) => count(rx.all(), 'bob', c.id, s) >= 1), { label: 'first tries' });
    for (let i = 0; i < 2; i++)
      assert.equal((await sendHttp(nodes[0], alice.tokens[0], c.id, { body: `late ${i}` })).status, 201);
    await nodes[0].kill();
    assert.equal(count(rx.all(), 'bob', c.id, 4) + count(rx.all(), 'bob', c.id, 5), 0, 'never tried');
    rx.fallback = 200;
    // Node 2 takes node 1 for dead after node_timeout_ms and pushes what it left.
    for (let s = 1; s <= 5; s++) await rx.deliveredPush('bob', c.id, s, { timeout: 15000 });
    // A message after it comes after them; then each was delivered once.
    assert.equal((await sendHttp(nodes[1], alice.tokens[1], c.id, { body: 'after' })).status, 201);
    await rx.deliveredPush('bob', c.id, 6);
    for (let s = 1; s <= 6; s++) assert.equal(count(rx.delivered(), 'bob', c.id, s), 1, `bob ${s} once`);
    for (const req of rx.requests) assert.ok(req.signatureOk);
    // The first node back (a new run, same id) finds nothing of its own to push again.
    await nodes[0].start();
    const before = rx.delivered().length;
    const c2 = await createConversation(nodes[0], alice.tokens[0], 'group', ['carol'], 'back');
    await sendHttp(nodes[0], alice.tokens[0], c2.id, { body: 'back' });
    await rx.deliveredPush('carol', c2.id, 1);
    assert.equal(rx.delivered().length, before + 1);
  });
});
