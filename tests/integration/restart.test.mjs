// Restarting a node (SIGTERM, start again on the same data dir): everything acked is still
// there, seqs continue without a gap, tokens, cursors and files survive; connected clients are
// told the node is going away (1001).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { assertRange } from './lib/check.mjs';
import { createConversation, heartbeatHttp, history, http, lastSeq, makeUser, offline } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const h = useNode();

describe('restart', () => {
  let node;
  let alice;
  let bob;
  let conv;
  let file;
  const clients = [];

  before(async () => {
    node = await h.ready;
    alice = await makeUser(node, 'alice', ['phone', 'laptop']);
    bob = await makeUser(node, 'bob');
    conv = (await createConversation(node, alice.token, 'group', ['bob'], 'durable')).id;
  });

  after(() => closeAll(clients));

  test('SIGTERM with clients connected: they get 1001, the node exits 0, every acked message is stored', async () => {
    const aWs = await WsClient.connect(node, { token: alice.tokens.phone });
    const bWs = await WsClient.connect(node, { token: bob.token });
    clients.push(aWs, bWs);
    const bytes = randomBytes(5000);
    const up = await http(node, 'POST', '/api/v1/files?name=keep.bin', {
      token: alice.tokens.phone,
      body: bytes,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    assert.equal(up.status, 201);
    file = { ...up.json, bytes };
    await aWs.send({ conversation_id: conv, type: 'file', file_id: file.file_id, client_msg_id: 'f-1' });
    // Many sends pipelined; the node is stopped as soon as the acks are in.
    const acks = await Promise.all(
      Array.from({ length: 40 }, (_, i) => aWs.send({ conversation_id: conv, body: `m${i}`, client_msg_id: `pre-${i}` })),
    );
    assert.equal(Math.max(...acks.map((a) => a.seq)), 41);
    // The laptop acknowledges up to 20 with a heartbeat.
    const hb = await heartbeatHttp(node, alice.tokens.laptop, { [conv]: 20 });
    assert.equal(hb.status, 200);

    const stopped = await node.stop();
    assert.equal(stopped.killed, false, `node did not stop on SIGTERM in time:\n${node.log}`);
    assert.equal(stopped.code, 0, `exit code ${stopped.code}:\n${node.log}`);
    for (const c of [aWs, bWs]) {
      const { code, reason } = await c.waitClose();
      assert.equal(code, 1001);
      assert.equal(reason, 'node stopping');
    }
    await node.start();
  });

  test('after the restart: history intact, tokens valid, cursors kept, file downloadable', async () => {
    const msgs = await history(node, bob.token, conv);
    assertRange(msgs.map((m) => m.seq), 1, 41);
    assert.equal(msgs[0].type, 'file');
    assert.equal(msgs[0].file.file_id, file.file_id);
    assert.deepEqual(msgs.slice(1).map((m) => m.client_msg_id), Array.from({ length: 40 }, (_, i) => `pre-${i}`));
    // Tokens are stored: no new login needed.
    const me = await http(node, 'GET', '/api/v1/me', { token: alice.tokens.laptop });
    assert.equal(me.status, 200);
    assert.equal(me.json.device_id, 'laptop');
    // The laptop's heartbeat cursor survived: offline starts at 21.
    const off = await offline(node, alice.tokens.laptop, '?limit=1000');
    assertRange(off.messages.map((m) => m.seq), 21, 41);
    const dl = await http(node, 'GET', file.url, { token: bob.token });
    assert.equal(dl.status, 200);
    assert.ok(dl.bytes.equals(file.bytes));
  });

  test('after the restart: seqs continue without a gap, retries of pre-restart sends are still deduplicated', async () => {
    const aWs = await WsClient.connect(node, { token: alice.tokens.phone });
    const bWs = await WsClient.connect(node, { token: bob.token });
    clients.push(aWs, bWs);
    const retry = await aWs.send({ conversation_id: conv, body: 'm0', client_msg_id: 'pre-0' });
    assert.equal(retry.seq, 2);
    assert.equal(retry.duplicate, true);
    const next = await aWs.send({ conversation_id: conv, body: 'after restart', client_msg_id: 'post-1' });
    assert.equal(next.seq, 42);
    const live = await bWs.waitForMsg(conv, 42);
    assert.equal(live.data.body, 'after restart');
    assert.equal(await lastSeq(node, bob.token, conv), 42);
    // A new conversation gets a fresh id, not a reused one.
    const c2 = await createConversation(node, bob.token, 'direct', ['alice']);
    assert.notEqual(c2.id, conv);
  });

  test('a second restart right after a burst keeps every acked message', async () => {
    const aWs = await WsClient.connect(node, { token: alice.tokens.phone });
    clients.push(aWs);
    const acks = await Promise.all(
      Array.from({ length: 30 }, (_, i) => aWs.send({ conversation_id: conv, body: `b${i}`, client_msg_id: `burst-${i}` })),
    );
    const top = Math.max(...acks.map((a) => a.seq));
    const r = await node.restart();
    assert.equal(r.code, 0);
    await aWs.waitClose();
    assert.equal(await lastSeq(node, bob.token, conv), top);
    assertRange((await history(node, bob.token, conv, '?limit=1000')).map((m) => m.seq), 1, top);
  });
});
