// Bounded memory per connection (DESIGN.md section 4): a client that stops reading is cut off,
// others are not affected; and a client that does read is never cut off for a backlog the node
// itself queued at once (catch-up of the live stream, a big sync page).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { assertRange } from './lib/check.mjs';
import { createConversation, heartbeatHttp, http, lastSeq, login, makeUser, metrics } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const QUEUE = 65536;
const BODY = 8000;
const h = useNode({
  flags: [
    '--max-send-queue-bytes', String(QUEUE),
    '--max-body-bytes', '8192',
    '--max-frame-bytes', '16384',
    '--max-http-body-bytes', '16384',
    '--admin-user', 'root',
    '--admin-password', 'root-pw',
  ],
});

describe('send queue bounds', () => {
  let node;
  let root;
  let alice;
  let bob;
  let conv;
  let bWs;
  const clients = [];

  before(async () => {
    node = await h.ready;
    root = await login(node, 'root', 'console', { password: 'root-pw' });
    alice = await makeUser(node, 'alice', ['d1', 'd2', 'd3', 'd4']);
    bob = await makeUser(node, 'bob');
    conv = (await createConversation(node, alice.token, 'direct', ['bob'])).id;
    bWs = await WsClient.connect(node, { token: bob.token });
    clients.push(bWs);
  });

  after(() => closeAll(clients));

  test('a client that stops reading is cut off; a reading client gets everything', async () => {
    const slow = await WsClient.connect(node, { token: alice.tokens.d1 });
    const fast = await WsClient.connect(node, { token: alice.tokens.d2 });
    clients.push(slow, fast);
    const before = (await metrics(node)).values.converge_slow_consumer_closes_total;
    slow.ws._socket.pause(); // stop reading: the node's writes pile up
    const big = 'n'.repeat(12000); // under --max-http-body-bytes
    let sent = 0;
    for (; sent < 1000; ) {
      const r = await http(node, 'POST', '/api/v1/admin/broadcast', { token: root, json: { data: { i: sent, big } } });
      assert.equal(r.status, 202);
      sent++;
      if ((await metrics(node)).values.converge_slow_consumer_closes_total > before) break;
    }
    assert.ok(sent < 1000, 'the slow client was cut off');
    const got = await fast.waitForCount((f) => f.cmd === 'broadcast', sent);
    assert.deepEqual(got.map((f) => f.data.i), [...Array(sent).keys()]);
    await fast.ping();
    slow.ws._socket.resume();
    const { code } = await slow.waitClose();
    assert.equal(code, 1006, 'cut without a close frame');
    // Chat goes on for everyone else.
    const beforeSeq = await lastSeq(node, bob.token, conv);
    await bWs.send({ conversation_id: conv, body: 'still fine' });
    await fast.waitForMsg(conv, beforeSeq + 1);
  });

  test(
    'a reconnecting device whose backlog exceeds --max-send-queue-bytes still catches up over its live stream',
    async () => {
      const base = await lastSeq(node, alice.token, conv);
      // d3 has a cursor (its heartbeat), then misses more than the queue bound.
      assert.equal((await heartbeatHttp(node, alice.tokens.d3, { [conv]: base })).status, 200);
      const n = Math.ceil((QUEUE * 2) / BODY);
      for (let i = 0; i < n; i++) await bWs.send({ conversation_id: conv, body: 'b'.repeat(BODY), client_msg_id: `backlog-${i}` });
      const d3 = await WsClient.connect(node, { token: alice.tokens.d3 });
      clients.push(d3);
      await d3.waitForMsg(conv, base + n);
      assertRange(d3.msgs(conv).map((m) => m.seq), base + 1, base + n);
    },
  );

  test(
    'a sync page larger than --max-send-queue-bytes is answered, not cut off',
    async () => {
      const d4 = await WsClient.connect(node, { token: alice.tokens.d4 });
      clients.push(d4);
      const total = await lastSeq(node, alice.token, conv);
      assert.ok(total * BODY > QUEUE || total > 0);
      const n = Math.ceil((QUEUE * 2) / BODY);
      for (let i = 0; i < n; i++) await bWs.send({ conversation_id: conv, body: 's'.repeat(BODY), client_msg_id: `sync-big-${i}` });
      const seen = [];
      let cursor;
      for (let i = 0; i < 1000; i++) {
        const r = await d4.request('sync', cursor ? { limit: 1000, cursor } : { limit: 1000 });
        assert.equal(r.cmd, 'sync');
        seen.push(...r.data.messages.map((m) => m.seq));
        if (!r.data.more) break;
        cursor = r.data.next_cursor;
      }
      assertRange(seen, 1, await lastSeq(node, alice.token, conv));
    },
  );
});
