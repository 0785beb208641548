// Retried sends (DESIGN.md section 4): the same (publisher, client_msg_id) is stored once and
// acked with the same seq, over WebSocket and HTTP alike.
//
// The sends a client makes go through the SDK (clients/js): it sends a message again with the
// client_msg_id the test gives, once the first send of that id has been acked. What the SDK by
// design never puts on the wire stays raw (lib/ws.mjs, lib/http.mjs): identical copies pipelined
// before the first ack (the SDK folds them into one send), a send without client_msg_id (the SDK
// always makes one), sends over HTTP (status codes), and refused sends (error frames).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { assertRange } from './lib/check.mjs';
import { createConversation, history, http, lastSeq, makeUser, sendHttp } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { closeDevices, sdkDevice } from './lib/sdk.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const h = useNode();

describe('idempotent retry', () => {
  let node;
  let alice;
  let bob;
  let aWs; // raw: alice's device 'raw'
  let aSdk; // SDK: alice's device 'sdk'
  let bSdk;
  let conv;

  before(async () => {
    node = await h.ready;
    alice = await makeUser(node, 'alice', ['raw']);
    bob = await makeUser(node, 'bob');
    conv = (await createConversation(node, alice.token, 'group', ['bob'], 'retry')).id;
    aWs = await WsClient.connect(node, { token: alice.token });
    aSdk = await sdkDevice(node, 'alice', 'sdk');
    bSdk = await sdkDevice(node, 'bob', 'sdk');
  });

  after(async () => {
    closeDevices(aSdk, bSdk);
    await closeAll(aWs);
  });

  test('WebSocket: the same client_msg_id twice -> same seq, second ack says duplicate, stored and delivered once', async () => {
    const base = await lastSeq(node, alice.token, conv);
    const send = (body, client_msg_id) => aSdk.client.send(conv, { body, client_msg_id });
    const first = await send('once', 'ws-retry-1');
    assert.equal(first.seq, base + 1);
    assert.equal(first.duplicate, undefined);
    // The first send is acked, so the SDK sends this one again (same id) rather than folding it in.
    const second = await send('once', 'ws-retry-1');
    assert.equal(second.seq, first.seq);
    assert.equal(second.duplicate, true);
    assert.equal(second.ts, first.ts);
    assert.equal(second.client_msg_id, 'ws-retry-1');
    // Even with a different body the retry is the stored message.
    const third = await send('changed', 'ws-retry-1');
    assert.equal(third.seq, first.seq);
    assert.equal(third.duplicate, true);
    assert.equal(await lastSeq(node, alice.token, conv), base + 1);
    const stored = (await bSdk.client.history(conv)).filter((m) => m.client_msg_id === 'ws-retry-1');
    assert.equal(stored.length, 1);
    assert.equal(stored[0].body, 'once');
    // Bob got it once: the next message follows it directly, on his live stream (the wire: the
    // SDK would hide a repeat) and in what the SDK handed to the app.
    const next = await send('next', 'ws-retry-2');
    assert.equal(next.seq, base + 2);
    await bSdk.waitForMsg(conv, base + 2);
    assertRange(bSdk.liveMsgs(conv).map((m) => m.seq), 1, base + 2, 'bob live stream');
    assertRange(bSdk.seqs(conv), 1, base + 2, 'bob');
    assert.equal(bSdk.msgs(conv).find((m) => m.seq === base + 1).body, 'once');
  });

  // Raw: the SDK never sends a second copy of an id it has not got the ack for (send() with a
  // pending client_msg_id returns the pending promise), so it cannot put these on the wire.
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

  // Raw: status codes of the HTTP send, which the SDK does not use.
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
    // The retry over the WebSocket, by the SDK.
    const ack = await aSdk.client.send(conv, { body: 'x', client_msg_id: 'cross-1' });
    assert.equal(ack.seq, r1.json.seq);
    assert.equal(ack.duplicate, true);
    assert.equal(ack.conversation_id, conv);
  });

  test('the key is (publisher, client_msg_id): another user may use the same client_msg_id', async () => {
    const base = await lastSeq(node, alice.token, conv);
    const a = await aSdk.client.send(conv, { body: 'from alice', client_msg_id: 'shared-id' });
    const b = await bSdk.client.send(conv, { body: 'from bob', client_msg_id: 'shared-id' });
    assert.equal(a.seq, base + 1);
    assert.equal(b.seq, base + 2);
    assert.equal(b.duplicate, undefined);
    assert.equal((await bSdk.waitForMsg(conv, base + 2)).body, 'from bob');
  });

  test('the key is not per conversation: reusing a client_msg_id in another conversation answers with the first message', async () => {
    const other = (await createConversation(node, alice.token, 'direct', ['bob'])).id;
    const first = await aSdk.client.send(conv, { body: 'here', client_msg_id: 'reused-elsewhere' });
    const before = await lastSeq(node, alice.token, other);
    const again = await aSdk.client.send(other, { body: 'there', client_msg_id: 'reused-elsewhere' });
    assert.equal(again.duplicate, true);
    assert.equal(again.conversation_id, conv);
    assert.equal(again.seq, first.seq);
    assert.equal(await lastSeq(node, alice.token, other), before, 'nothing stored in the other conversation');
  });

  // Raw: the SDK always gives a client_msg_id.
  test('without client_msg_id every send is a new message', async () => {
    const base = await lastSeq(node, alice.token, conv);
    const a = await aWs.send({ conversation_id: conv, body: 'no id' });
    const b = await aWs.send({ conversation_id: conv, body: 'no id' });
    assert.equal(a.seq, base + 1);
    assert.equal(b.seq, base + 2);
    assert.equal(a.client_msg_id, '');
  });

  // Raw: the refusal is an error frame (the wire contract).
  test('a refused send does not reserve its client_msg_id', async () => {
    const base = await lastSeq(node, alice.token, conv);
    const bad = await aWs.request('msg', { conversation_id: conv, type: 'image', client_msg_id: 'later-ok' });
    assert.equal(bad.cmd, 'error');
    const good = await aWs.send({ conversation_id: conv, body: 'now fine', client_msg_id: 'later-ok' });
    assert.equal(good.seq, base + 1);
    assert.equal(good.duplicate, undefined);
  });

  // Raw: error code and HTTP status.
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
