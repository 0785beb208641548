// Retried sends (DESIGN.md section 4): the same (publisher, client_msg_id) is stored once and
// acked with the same seq, over WebSocket and HTTP alike.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { assertRange } from './lib/check.mjs';
import { createConversation, history, http, lastSeq, makeUser, sendHttp } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const h = useNode();

describe('idempotent retry', () => {
  let node;
  let alice;
  let bob;
  let aWs;
  let bWs;
  let conv;

  before(async () => {
    node = await h.ready;
    alice = await makeUser(node, 'alice');
    bob = await makeUser(node, 'bob');
    conv = (await createConversation(node, alice.token, 'group', ['bob'], 'retry')).id;
    aWs = await WsClient.connect(node, { token: alice.token });
    bWs = await WsClient.connect(node, { token: bob.token });
  });

  after(() => closeAll(aWs, bWs));

  test('WebSocket: the same client_msg_id twice -> same seq, second ack says duplicate, stored and delivered once', async () => {
    const base = await lastSeq(node, alice.token, conv);
    const first = await aWs.send({ conversation_id: conv, body: 'once', client_msg_id: 'ws-retry-1' });
    assert.equal(first.seq, base + 1);
    assert.equal(first.duplicate, undefined);
    const second = await aWs.send({ conversation_id: conv, body: 'once', client_msg_id: 'ws-retry-1' });
    assert.equal(second.seq, first.seq);
    assert.equal(second.duplicate, true);
    assert.equal(second.ts, first.ts);
    assert.equal(second.client_msg_id, 'ws-retry-1');
    // Even with a different body the retry is the stored message.
    const third = await aWs.send({ conversation_id: conv, body: 'changed', client_msg_id: 'ws-retry-1' });
    assert.equal(third.seq, first.seq);
    assert.equal(await lastSeq(node, alice.token, conv), base + 1);
    const stored = (await history(node, bob.token, conv)).filter((m) => m.client_msg_id === 'ws-retry-1');
    assert.equal(stored.length, 1);
    assert.equal(stored[0].body, 'once');
    // Bob got it once: the next message follows it directly.
    const next = await aWs.send({ conversation_id: conv, body: 'next', client_msg_id: 'ws-retry-2' });
    assert.equal(next.seq, base + 2);
    await bWs.waitForMsg(conv, base + 2);
    assertRange(bWs.msgs(conv).map((m) => m.seq), 1, base + 2, 'bob');
  });

  test('WebSocket: two copies pipelined (likely in one commit batch) still store one message', async () => {
    const base = await lastSeq(node, alice.token, conv);
    const [a, b, c] = await Promise.all([
      aWs.send({ conversation_id: conv, body: 'dup', client_msg_id: 'ws-pipe' }),
      aWs.send({ conversation_id: conv, body: 'dup', client_msg_id: 'ws-pipe' }),
      aWs.send({ conversation_id: conv, body: 'dup', client_msg_id: 'ws-pipe' }),
    ]);
    assert.equal(a.seq, base + 1);
    assert.equal(b.seq, base + 1);
    assert.equal(c.seq, base + 1);
    assert.equal([a, b, c].filter((x) => x.duplicate).length, 2);
    assert.equal(await lastSeq(node, alice.token, conv), base + 1);
  });

  test('HTTP: the same client_msg_id twice -> 201 then 200 with the same seq and duplicate: true', async () => {
    const base = await lastSeq(node, alice.token, conv);
    const r1 = await sendHttp(node, alice.token, conv, { body: 'via http', client_msg_id: 'http-retry-1' });
    assert.equal(r1.status, 201);
    assert.equal(r1.json.seq, base + 1);
    assert.equal(r1.json.duplicate, false);
    const r2 = await sendHttp(node, alice.token, conv, { body: 'via http', client_msg_id: 'http-retry-1' });
    assert.equal(r2.status, 200);
    assert.equal(r2.json.seq, base + 1);
    assert.equal(r2.json.duplicate, true);
    assert.equal(r2.json.conversation_id, conv);
    assert.equal(await lastSeq(node, alice.token, conv), base + 1);
    assert.equal((await history(node, alice.token, conv)).filter((m) => m.client_msg_id === 'http-retry-1').length, 1);
  });

  test('a retry may switch transport: HTTP first, WebSocket retry', async () => {
    const r1 = await sendHttp(node, alice.token, conv, { body: 'x', client_msg_id: 'cross-1' });
    assert.equal(r1.status, 201);
    const ack = await aWs.send({ conversation_id: conv, body: 'x', client_msg_id: 'cross-1' });
    assert.equal(ack.seq, r1.json.seq);
    assert.equal(ack.duplicate, true);
  });

  test('the key is (publisher, client_msg_id): another user may use the same client_msg_id', async () => {
    const base = await lastSeq(node, alice.token, conv);
    const a = await aWs.send({ conversation_id: conv, body: 'from alice', client_msg_id: 'shared-id' });
    const b = await bWs.send({ conversation_id: conv, body: 'from bob', client_msg_id: 'shared-id' });
    assert.equal(a.seq, base + 1);
    assert.equal(b.seq, base + 2);
    assert.equal(b.duplicate, undefined);
  });

  test('the key is not per conversation: reusing a client_msg_id in another conversation answers with the first message', async () => {
    const other = (await createConversation(node, alice.token, 'direct', ['bob'])).id;
    const first = await aWs.send({ conversation_id: conv, body: 'here', client_msg_id: 'reused-elsewhere' });
    const before = await lastSeq(node, alice.token, other);
    const again = await aWs.send({ conversation_id: other, body: 'there', client_msg_id: 'reused-elsewhere' });
    assert.equal(again.duplicate, true);
    assert.equal(again.conversation_id, conv);
    assert.equal(again.seq, first.seq);
    assert.equal(await lastSeq(node, alice.token, other), before, 'nothing stored in the other conversation');
  });

  test('without client_msg_id every send is a new message', async () => {
    const base = await lastSeq(node, alice.token, conv);
    const a = await aWs.send({ conversation_id: conv, body: 'no id' });
    const b = await aWs.send({ conversation_id: conv, body: 'no id' });
    assert.equal(a.seq, base + 1);
    assert.equal(b.seq, base + 2);
    assert.equal(a.client_msg_id, '');
  });

  test('a refused send does not reserve its client_msg_id', async () => {
    const base = await lastSeq(node, alice.token, conv);
    const bad = await aWs.request('msg', { conversation_id: conv, type: 'image', client_msg_id: 'later-ok' });
    assert.equal(bad.cmd, 'error');
    const good = await aWs.send({ conversation_id: conv, body: 'now fine', client_msg_id: 'later-ok' });
    assert.equal(good.seq, base + 1);
    assert.equal(good.duplicate, undefined);
  });

  test('a client_msg_id over 128 bytes is refused', async () => {
    const r = await aWs.request('msg', { conversation_id: conv, body: 'x', client_msg_id: 'k'.repeat(129) });
    assert.equal(r.cmd, 'error');
    assert.equal(r.data.code, 'too_large');
    const http413 = await http(node, 'POST', `/api/v1/conversations/${conv}/messages`, {
      token: alice.token,
      json: { body: 'x', client_msg_id: 'k'.repeat(129) },
    });
    assert.equal(http413.status, 413);
  });
});
