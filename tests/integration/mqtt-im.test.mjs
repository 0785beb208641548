// Seed 002's IM over MQTT (docs/protocol.md "MQTT"): user/<to>/inbox/<from> and
// group/<gid>/inbox/<from> are message sends like any other (stored with a seq, PUBACK once
// stored, delivered to WebSocket clients too), and WebSocket sends reach MQTT subscribers;
// MQTT.js and mosquitto's clients over TCP and WebSocket, 3.1.1 and 5; every refusal stores
// nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createConversation, history, makeUser } from './lib/http.mjs';
import { mosquittoPub, mosquittoSub, mqttConnect } from './lib/mqtt.mjs';
import { useNode } from './lib/node.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const h = useNode();

test('1:1 chat between an MQTT device and a WebSocket client, both ways', async () => {
  const node = await h.ready;
  const alice = await makeUser(node, 'alice', ['web']);
  const bob = await makeUser(node, 'bob', ['web']);
  const wb = await WsClient.connect(node, { token: bob.tokens.web });
  // alice's phone: client id = device id, username = user id, password = a token.
  const phone = await mqttConnect(node, { version: 5, clientId: 'alice-iphone', username: 'alice', password: alice.tokens.web });
  try {
    assert.deepEqual(await phone.sub('user/alice/inbox/+', 1), [1]);
    // bob (WebSocket) writes to alice: alice's phone gets it on user/alice/inbox/bob.
    const conv = (await createConversation(node, bob.tokens.web, 'direct', ['alice'])).id;
    const ack = await wb.send({ conversation_id: conv, body: 'hello alice', client_msg_id: 'b1' });
    const m = await phone.waitFor((x) => x.topic === 'user/alice/inbox/bob');
    const stored = JSON.parse(m.payload);
    assert.equal(stored.body, 'hello alice');
    assert.equal(stored.seq, ack.seq);
    assert.equal(stored.conversation_id, String(conv));
    assert.equal(m.packet.qos, 1);
    // alice answers over MQTT in plain text: stored in the same conversation, bob gets it.
    const puback = await phone.pub('user/bob/inbox/alice', 'hi bob', 1);
    assert.equal(puback.reasonCode ?? 0, 0, JSON.stringify(puback));
    const back = await wb.waitForMsg(conv, ack.seq + 1, { timeout: 5000 });
    assert.equal(back.data.body, 'hi bob');
    assert.equal(back.data.publisher_id, 'alice');
    // JSON payload with a client_msg_id: a retry is stored once.
    await phone.pub('user/bob/inbox/alice', JSON.stringify({ body: 'once', client_msg_id: 'm-1' }), 1);
    await phone.pub('user/bob/inbox/alice', JSON.stringify({ body: 'once', client_msg_id: 'm-1' }), 1);
    const msgs = await history(node, bob.tokens.web, conv);
    assert.deepEqual(msgs.map((x) => x.body), ['hello alice', 'hi bob', 'once']);
  } finally {
    await phone.end();
    await closeAll(wb);
  }
});

test('group chat: MQTT devices (TCP and WebSocket, 3.1.1 and 5) and a WebSocket client', async () => {
  const node = await h.ready;
  const own = await makeUser(node, 'gowner', ['web']);
  const m1 = await makeUser(node, 'gm1', ['x']);
  const m2 = await makeUser(node, 'gm2', ['x']);
  const gid = (await createConversation(node, own.tokens.web, 'group', ['gm1', 'gm2'], 'team')).id;
  const wo = await WsClient.connect(node, { token: own.tokens.web });
  const a = await mqttConnect(node, { version: 4, clientId: 'gm1-pad', username: 'gm1', password: m1.tokens.x });
  const b = await mqttConnect(node, { transport: 'ws', version: 5, clientId: 'gm2-web', username: 'gm2', password: 'pw-gm2' });
  try {
    assert.deepEqual(await a.sub(`group/${gid}/inbox/+`, 1), [1]);
    assert.deepEqual(await b.sub(`group/${gid}/#`, 2), [1], 'IM deliveries are granted QoS 1 at most');
    await a.pub(`group/${gid}/inbox/gm1`, 'from the pad', 1);
    await wo.send({ conversation_id: gid, body: 'from the web', client_msg_id: 'w1' });
    for (const c of [a, b]) {
      await c.waitFor((x) => x.topic === `group/${gid}/inbox/gm1`);
      await c.waitFor((x) => x.topic === `group/${gid}/inbox/gowner`);
      const seqs = c.messages.filter((x) => x.topic.startsWith(`group/${gid}/`)).map((x) => JSON.parse(x.payload).seq);
      assert.deepEqual(seqs, [1, 2], 'in seq order');
    }
    await wo.waitForMsg(gid, 1);
    // mosquitto_pub (3.1.1, password login) into the group; the others get it.
    const r = await mosquittoPub(node, { topic: `group/${gid}/inbox/gm2`, message: 'from mosquitto', qos: 1, username: 'gm2', password: 'pw-gm2', clientId: 'gm2-cli' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await wo.waitForMsg(gid, 3)).data.body, 'from mosquitto');
  } finally {
    await a.end();
    await b.end();
    await closeAll(wo);
  }
});

test('refusals: not yourself, not a member, wildcards over others; nothing is stored', async () => {
  const node = await h.ready;
  const eve = await makeUser(node, 'eve', ['x']);
  const vic = await makeUser(node, 'vic', ['x']);
  await makeUser(node, 'val', ['x']);
  const gid = (await createConversation(node, vic.tokens.x, 'group', ['val'], 'private')).id;
  const e = await mqttConnect(node, { version: 5, clientId: 'eve-1', username: 'eve', password: eve.tokens.x });
  try {
    // Subscriptions to someone else's inbox, a group eve is not in, or every group: 0x87.
    for (const f of ['user/vic/inbox/+', `group/${gid}/inbox/+`, 'group/+/inbox/+', 'user/+/inbox/eve', 'group/#']) assert.deepEqual(await e.sub(f, 1), [0x87], f);
    // Publishing as someone else, into a group eve is not in, to a malformed IM topic.
    assert.equal((await e.pub('user/eve/inbox/vic', 'forged', 1)).reasonCode, 0x87);
    assert.equal((await e.pub(`group/${gid}/inbox/eve`, 'intruder', 1)).reasonCode, 0x87);
    assert.equal((await e.pub('user/vic/outbox/eve', 'x', 1)).reasonCode, 0x90);
    assert.equal((await e.pub('user/vic/inbox/eve', Buffer.from([0xff, 0xfe]), 1)).reasonCode, 0x99);
    assert.equal((await e.pub('user/vic/inbox/eve', '{"body": ', 1)).reasonCode, 0x99);
    // Nothing was stored: vic's group is empty and eve has no conversation at all.
    assert.deepEqual(await history(node, vic.tokens.x, gid), []);
    const sub = await mosquittoSub(node, { topic: 'user/vic/inbox/+', qos: 1, count: 1, waitS: 1, username: 'eve', password: 'pw-eve', clientId: 'eve-2', version: 5 });
    const { messages } = await sub.done;
    assert.deepEqual(messages, []);
  } finally {
    await e.end();
  }
});

test('a device away with its session gets what it missed, in order, when it comes back', async () => {
  const node = await h.ready;
  const own = await makeUser(node, 'sowner', ['web']);
  const dev = await makeUser(node, 'sdev', ['x']);
  const gid = (await createConversation(node, own.tokens.web, 'group', ['sdev'], 'away')).id;
  const wo = await WsClient.connect(node, { token: own.tokens.web });
  const opts = { version: 5, clientId: 'sdev-ipad', username: 'sdev', password: dev.tokens.x, clean: false, properties: { sessionExpiryInterval: 3600 } };
  let d = await mqttConnect(node, opts);
  try {
    await d.sub(`group/${gid}/inbox/+`, 1);
    await wo.send({ conversation_id: gid, body: 'm1', client_msg_id: 'm1' });
    await d.waitFor((x) => JSON.parse(x.payload).seq === 1);
    await d.end();
    for (let i = 2; i <= 4; i++) await wo.send({ conversation_id: gid, body: `m${i}`, client_msg_id: `m${i}` });
    d = await mqttConnect(node, opts);
    await d.waitFor((x) => JSON.parse(x.payload).seq === 4, 5000, 'seq 4 after reconnecting');
    assert.deepEqual(d.messages.map((x) => JSON.parse(x.payload).seq), [2, 3, 4]);
  } finally {
    await d.end();
    await closeAll(wo);
  }
});

test("another user's client id is refused: no takeover of someone else's device or session", async () => {
  const node = await h.ready;
  const ann = await makeUser(node, 'cid-ann', ['x']);
  const ben = await makeUser(node, 'cid-ben', ['x']);
  const owner = await mqttConnect(node, { version: 5, clientId: 'ann-phone', username: 'cid-ann', password: ann.tokens.x, clean: false, properties: { sessionExpiryInterval: 600 } });
  try {
    for (const version of [5, 4]) {
      const err = await mqttConnect(node, { version, clientId: 'ann-phone', username: 'cid-ben', password: ben.tokens.x }).then(() => null, (e) => e);
      assert.ok(err, `v${version}: ben's CONNECT with ann's client id was accepted`);
      assert.equal(err.code, version === 5 ? 0x85 : 2, `v${version}: ${err.message}`);
    }
    assert.equal(owner.closed, false, "ann's device is still connected");
    // Ann herself may take her session over from another connection (MQTT's takeover).
    const again = await mqttConnect(node, { version: 5, clientId: 'ann-phone', username: 'cid-ann', password: ann.tokens.x, clean: false, properties: { sessionExpiryInterval: 600 } });
    assert.equal(again.client.options.properties.sessionExpiryInterval, 600);
    assert.ok(await owner.waitClosed(), 'the older connection of the same user was taken over');
    await again.end();
  } finally {
    await owner.end();
  }
});
