// Restarting a node (SIGTERM, start again on the same data dir and port): everything acked is
// still there, seqs continue without a gap, tokens, cursors and files survive; connected clients
// are told the node is going away (1001), and clients that keep going (the SDK) reconnect by
// themselves, resync, and send what was queued while the node was down.
//
// Alice's phone and bob are SDK clients (clients/js, lib/sdk.mjs) that stay up across both
// restarts. Raw (lib/ws.mjs, lib/http.mjs): the close code and reason the node sends, the exit
// code, the laptop's heartbeat cursor and /offline, the download's status.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { assertRange } from './lib/check.mjs';
import { createConversation, heartbeatHttp, history, http, lastSeq, makeUser, offline } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { closeDevices, sdkDevice } from './lib/sdk.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const h = useNode();

const ascending = (seqs) => [...seqs].sort((a, b) => a - b);

describe('restart', () => {
  let node;
  let alice;
  let bob;
  let conv;
  let file;
  let aSdk; // alice's phone
  let bSdk; // bob's device 'sdk'
  const clients = [];

  before(async () => {
    node = await h.ready;
    alice = await makeUser(node, 'alice', ['watch', 'laptop']);
    bob = await makeUser(node, 'bob', ['watch']);
    conv = (await createConversation(node, alice.token, 'group', ['bob'], 'durable')).id;
    aSdk = await sdkDevice(node, 'alice', 'phone');
    bSdk = await sdkDevice(node, 'bob', 'sdk');
  });

  after(async () => {
    closeDevices();
    await closeAll(clients);
  });

  test('SIGTERM with clients connected: they get 1001, the node exits 0, every acked message is stored', async () => {
    // Raw connections watch how the node closes them.
    const aWs = await WsClient.connect(node, { token: alice.tokens.watch });
    const bWs = await WsClient.connect(node, { token: bob.tokens.watch });
    clients.push(aWs, bWs);
    const bytes = randomBytes(5000);
    const sent = await aSdk.client.sendFile(conv, bytes, { type: 'file', name: 'keep.bin', mime: 'application/octet-stream' });
    assert.equal(sent.seq, 1);
    file = { ...sent.file, bytes };
    assert.equal(file.size, bytes.length);
    // Many sends pipelined; the node is stopped as soon as the acks are in.
    const acks = await Promise.all(
      Array.from({ length: 40 }, (_, i) => aSdk.client.send(conv, { body: `m${i}`, client_msg_id: `pre-${i}` })),
    );
    assert.equal(Math.max(...acks.map((a) => a.seq)), 41);
    // The laptop acknowledges up to 20 with a heartbeat.
    const hb = await heartbeatHttp(node, alice.tokens.laptop, { [conv]: 20 });
    assert.equal(hb.status, 200);
    await bSdk.waitForSeqs(conv, 41);

    const stopped = await node.stop();
    assert.equal(stopped.killed, false, `node did not stop on SIGTERM in time:\n${node.log}`);
    assert.equal(stopped.code, 0, `exit code ${stopped.code}:\n${node.log}`);
    for (const c of [aWs, bWs]) {
      const { code, reason } = await c.waitClose();
      assert.equal(code, 1001);
      assert.equal(reason, 'node stopping');
    }
    // The SDK saw the same close and keeps trying.
    for (const d of [aSdk, bSdk]) {
      const closed = await d.waitFor(() => d.disconnects.find((x) => x.code === 1001), { label: 'the 1001 close' });
      assert.equal(closed.reason, 'node stopping');
      assert.equal(d.wire[0].close.code, 1001);
      await d.waitState('connecting');
    }
    await node.start();
  });

  test('after the restart: the SDK clients are back with their tokens; history intact, cursors kept, file downloadable', async () => {
    // Tokens are stored: the SDK reconnects with the session it had, no new login.
    for (const d of [aSdk, bSdk]) {
      await d.waitSynced(2, { timeout: 10000 });
      assert.equal(d.client.state, 'online');
      assert.equal(d.wire.length, 2, `${d.label}: one new connection`);
    }
    const me = await aSdk.client.me();
    assert.equal(me.user_id, 'alice');
    assert.equal(me.device_id, 'phone');
    const laptopMe = await http(node, 'GET', '/api/v1/me', { token: alice.tokens.laptop });
    assert.equal(laptopMe.status, 200);
    assert.equal(laptopMe.json.device_id, 'laptop');

    const msgs = await bSdk.client.history(conv);
    assertRange(msgs.map((m) => m.seq), 1, 41);
    assert.equal(msgs[0].type, 'file');
    assert.equal(msgs[0].file.file_id, file.file_id);
    assert.deepEqual(msgs.slice(1).map((m) => m.client_msg_id), Array.from({ length: 40 }, (_, i) => `pre-${i}`));
    // The resync after the reconnect brought nothing twice: bob's app has 1..41 once each.
    assertRange(bSdk.seqs(conv), 1, 41, 'bob');
    // The laptop's heartbeat cursor survived: offline starts at 21.
    const off = await offline(node, alice.tokens.laptop, '?limit=1000');
    assertRange(off.messages.map((m) => m.seq), 21, 41);
    // Bob downloads the file through the SDK's URL (token in the query).
    const dl = await fetch(bSdk.client.fileUrl(bSdk.msgs(conv)[0]));
    assert.equal(dl.status, 200);
    assert.ok(Buffer.from(await dl.arrayBuffer()).equals(file.bytes));
  });

  test('after the restart: seqs continue without a gap, retries of pre-restart sends are still deduplicated', async () => {
    const retry = await aSdk.client.send(conv, { body: 'm0', client_msg_id: 'pre-0' });
    assert.equal(retry.seq, 2);
    assert.equal(retry.duplicate, true);
    const next = await aSdk.client.send(conv, { body: 'after restart', client_msg_id: 'post-1' });
    assert.equal(next.seq, 42);
    const live = await bSdk.waitForMsg(conv, 42);
    assert.equal(live.body, 'after restart');
    assert.equal(bSdk.got.at(-1).source, 'live');
    assert.equal(await lastSeq(node, bob.token, conv), 42);
    // A new conversation gets a fresh id, not a reused one.
    const c2 = await bSdk.client.createDirect('alice');
    assert.notEqual(c2.id, conv);
  });

  test('a second restart right after a burst keeps every acked message; a send made while the node is down goes out once it is back', async () => {
    const acks = await Promise.all(
      Array.from({ length: 30 }, (_, i) => aSdk.client.send(conv, { body: `b${i}`, client_msg_id: `burst-${i}` })),
    );
    const top = Math.max(...acks.map((a) => a.seq));
    assert.equal(top, 42 + 30);
    const r = await node.stop();
    assert.equal(r.code, 0);
    await aSdk.waitState('connecting');
    // Sent while the node is down: it waits in the SDK's outbox.
    const queued = aSdk.client.send(conv, { body: 'while down', client_msg_id: 'down-1' });
    assert.deepEqual(aSdk.client.pending().map((p) => p.client_msg_id), ['down-1']);
    await node.start();
    const ack = await queued;
    assert.equal(ack.seq, top + 1, 'the queued send went out once, after everything acked before');
    assert.equal(ack.duplicate, undefined);
    assert.deepEqual(aSdk.client.pending(), []);
    assert.equal(await lastSeq(node, bob.token, conv), top + 1);
    assertRange((await history(node, bob.token, conv, '?limit=1000')).map((m) => m.seq), 1, top + 1);
    // Both apps got every message exactly once across both restarts.
    await bSdk.waitForSeqs(conv, top + 1);
    await aSdk.waitForSeqs(conv, top + 1);
    assert.equal((await bSdk.waitForBody(conv, 'while down')).seq, top + 1);
    assertRange(ascending(bSdk.seqs(conv)), 1, top + 1, 'bob');
    assertRange(ascending(aSdk.seqs(conv)), 1, top + 1, 'alice');
  });
});
