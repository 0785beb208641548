// Connections that go away in the middle of a write: a browser reload, a killed client, a close
// frame while the node is sending. The node must neither crash nor stop serving the others.
// (A write still in flight when its connection finished used to touch the freed send queue.)
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { createConversation, http, lastSeq, login, makeUser } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const h = useNode({ flags: ['--admin-user', 'root', '--admin-password', 'root-pw'] });

describe('connections ending mid-write', () => {
  let node;
  let root;
  let alice;
  let bob;
  let conv;

  before(async () => {
    node = await h.ready;
    root = await login(node, 'root', 'console', { password: 'root-pw' });
    const devices = Array.from({ length: 30 }, (_, i) => `d${i}`);
    alice = await makeUser(node, 'alice', devices);
    bob = await makeUser(node, 'bob');
    conv = (await createConversation(node, alice.token, 'direct', ['bob'])).id;
  });

  test('clients closing and dropping while broadcasts stream to them leave the node serving', async () => {
    for (let round = 0; round < 2; round++) {
      const clients = await Promise.all(
        Object.values(alice.tokens).slice(0, 6).map((token) => WsClient.connect(node, { token })),
      );
      // Stop reading, so the node's writes to these clients are left in flight...
      for (const c of clients) c.ws._socket.pause();
      const big = 'x'.repeat(16000);
      for (let i = 0; i < 250; i++) {
        const r = await http(node, 'POST', '/api/v1/admin/broadcast', { token: root, json: { data: { i, big } } });
        assert.equal(r.status, 202);
      }
      // ...then end the connections in the ways a client can go.
      clients.forEach((c, i) => {
        if (i % 3 === 0) c.ws.terminate(); // TCP reset, no close frame
        else if (i % 3 === 1) {
          c.ws._socket.resume();
          c.ws.close(1001, 'reload'); // a close frame while the node is writing
          c.ws._socket.destroy();
        } else c.ws._socket.destroy(); // the socket just disappears
      });
      await closeAll(...clients);
      // The node noticed: the connections are gone from its gauge.
      const deadline = Date.now() + 5000;
      for (;;) {
        const m = await http(node, 'GET', '/metrics');
        const open = Number(/converge_ws_connections (\d+)/.exec(m.text)[1]);
        if (open === 0) break;
        assert.ok(Date.now() < deadline, `${open} connections still open`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    // Alive and serving: health, and a chat that still flows end to end.
    const health = await http(node, 'GET', '/healthz');
    assert.equal(health.status, 200);
    assert.equal(node.proc.exitCode, null, 'the node is still running');
    const bWs = await WsClient.connect(node, { token: bob.token });
    const before = await lastSeq(node, alice.token, conv);
    const ack = await bWs.send({ conversation_id: conv, body: 'still here' });
    assert.equal(ack.seq, before + 1);
    await closeAll(bWs);
  });
});
