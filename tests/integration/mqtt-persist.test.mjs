// Persistent MQTT sessions (docs/protocol.md "MQTT", "Sessions"): a device's session with an
// expiry (3.1.1 clean session 0, MQTT 5 session expiry) outlives a restart of the node. Its
// subscriptions come back from the store, and what the device missed while offline comes from
// its cursors in the store, in seq order, without a second copy per device; several devices of
// one user keep their own sessions. Expired and clean sessions do not come back.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createConversation, makeUser } from './lib/http.mjs';
import { mosquittoSub, mqttConnect } from './lib/mqtt.mjs';
import { useNode } from './lib/node.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const h = useNode();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const seqsOf = (c, gid) => c.messages.filter((m) => m.topic.startsWith(`group/${gid}/inbox/`)).map((m) => JSON.parse(m.payload).seq);

// Until the node has written the sessions behind (it batches them), a restart could lose the
// last change: the tests wait a little before stopping it.
const WRITE_BEHIND_MS = 300;

test('devices offline during a group conversation get every message on reconnect after a node restart', async () => {
  const node = await h.ready;
  const own = await makeUser(node, 'powner', ['web']);
  const dev = await makeUser(node, 'pdev', ['x']);
  const gid = (await createConversation(node, own.tokens.web, 'group', ['pdev'], 'persist')).id;
  // Two devices of one user: an MQTT 5 iPhone over TCP, a 3.1.1 iPad over WebSocket.
  const phoneOpts = { version: 5, clientId: 'pdev-iPhone', username: 'pdev', password: dev.tokens.x, clean: false, properties: { sessionExpiryInterval: 3600 } };
  const padOpts = { transport: 'ws', version: 4, clientId: 'pdev-iPad', username: 'pdev', password: 'pw-pdev', clean: false };
  let wo = await WsClient.connect(node, { token: own.tokens.web });
  let phone = await mqttConnect(node, phoneOpts);
  let pad = await mqttConnect(node, padOpts);
  try {
    assert.deepEqual(await phone.sub(`group/${gid}/inbox/+`, 1), [1]);
    assert.deepEqual(await pad.sub(`group/${gid}/#`, 1), [1]);
    await wo.send({ conversation_id: gid, body: 'm1', client_msg_id: 'm1' });
    for (const c of [phone, pad]) await c.waitFor((m) => JSON.parse(m.payload).seq === 1);
    await phone.end();
    await pad.end();
    // The conversation goes on while both are away, before and after the restart.
    for (let i = 2; i <= 5; i++) await wo.send({ conversation_id: gid, body: `m${i}`, client_msg_id: `m${i}` });
    await closeAll(wo);
    await sleep(WRITE_BEHIND_MS);
    const r = await node.restart();
    assert.equal(r.code, 0, node.log);
    wo = await WsClient.connect(node, { token: own.tokens.web });
    for (let i = 6; i <= 7; i++) await wo.send({ conversation_id: gid, body: `m${i}`, client_msg_id: `m${i}` });
    // Back without subscribing again: the session is there, subscriptions and all.
    phone = await mqttConnect(node, phoneOpts);
    pad = await mqttConnect(node, padOpts);
    for (const c of [phone, pad]) {
      assert.equal(c.sessionPresent, true, "the session is present");
      await c.waitFor((m) => JSON.parse(m.payload).seq === 7, 8000, 'seq 7 after the restart');
      assert.deepEqual(seqsOf(c, gid), [2, 3, 4, 5, 6, 7], 'every missed message once, in seq order');
    }
    // And live ones keep coming on the restored subscriptions.
    await wo.send({ conversation_id: gid, body: 'm8', client_msg_id: 'm8' });
    for (const c of [phone, pad]) await c.waitFor((m) => JSON.parse(m.payload).seq === 8);
    assert.deepEqual(seqsOf(phone, gid), [2, 3, 4, 5, 6, 7, 8]);
  } finally {
    await phone.end();
    await pad.end();
    await closeAll(wo);
  }
});

test("mosquitto_sub's persistent session (-c) after a restart gets what it missed", async () => {
  const node = await h.ready;
  const own = await makeUser(node, 'mowner', ['web']);
  await makeUser(node, 'mdev', ['x']);
  const gid = (await createConversation(node, own.tokens.web, 'group', ['mdev'], 'mosq')).id;
  const who = { username: 'mdev', password: 'pw-mdev', clientId: 'mdev-cli', clean: false };
  const first = await mosquittoSub(node, { topic: `group/${gid}/inbox/+`, qos: 1, count: 1, waitS: 5, ...who });
  let wo = await WsClient.connect(node, { token: own.tokens.web });
  await wo.send({ conversation_id: gid, body: 'a1', client_msg_id: 'a1' });
  assert.deepEqual((await first.done).messages.map((m) => m.payload && JSON.parse(m.payload).body), ['a1']);
  for (let i = 2; i <= 4; i++) await wo.send({ conversation_id: gid, body: `a${i}`, client_msg_id: `a${i}` });
  await closeAll(wo);
  await sleep(WRITE_BEHIND_MS);
  await node.restart();
  const again = await mosquittoSub(node, { topic: `group/${gid}/inbox/+`, qos: 1, count: 3, waitS: 5, ...who });
  const { messages } = await again.done;
  assert.deepEqual(messages.map((m) => JSON.parse(m.payload).body), ['a2', 'a3', 'a4']);
});

test('general-topic subscriptions come back too; clean and expired sessions do not', async () => {
  const node = await h.ready;
  const u = await makeUser(node, 'gdev', ['x']);
  const base = { version: 5, username: 'gdev', password: u.tokens.x };
  // A subscription identifier and options survive with the subscription.
  let keep = await mqttConnect(node, { ...base, clientId: 'gdev-keep', clean: false, properties: { sessionExpiryInterval: 3600 } });
  assert.deepEqual(await keep.sub('app/gdev/alerts', 1, { properties: { subscriptionIdentifier: 42 } }), [1]);
  // One that expires 1 s after it disconnects, and a clean one.
  let brief = await mqttConnect(node, { ...base, clientId: 'gdev-brief', clean: false, properties: { sessionExpiryInterval: 1 } });
  await brief.sub('app/gdev/alerts', 1);
  let clean = await mqttConnect(node, { ...base, clientId: 'gdev-clean', clean: true });
  await clean.sub('app/gdev/alerts', 1);
  await keep.end();
  await brief.end();
  await clean.end();
  await sleep(WRITE_BEHIND_MS);
  await node.restart();
  await sleep(1200); // brief's expiry runs out (it counts from the restart at the latest)
  keep = await mqttConnect(node, { ...base, clientId: 'gdev-keep', clean: false, properties: { sessionExpiryInterval: 3600 } });
  brief = await mqttConnect(node, { ...base, clientId: 'gdev-brief', clean: false, properties: { sessionExpiryInterval: 60 } });
  clean = await mqttConnect(node, { ...base, clientId: 'gdev-clean', clean: false, properties: { sessionExpiryInterval: 60 } });
  const pub = await mqttConnect(node, { ...base, clientId: 'gdev-pub' });
  try {
    assert.equal(keep.sessionPresent, true, 'the kept session is present');
    assert.equal(brief.sessionPresent, false, 'the expired session is gone');
    assert.equal(clean.sessionPresent, false, 'a clean session was never kept');
    await pub.pub('app/gdev/alerts', 'ring', 1);
    const m = await keep.waitFor((x) => x.topic === 'app/gdev/alerts');
    assert.equal(m.payload, 'ring');
    assert.deepEqual(m.packet.properties?.subscriptionIdentifier, 42);
    await sleep(300);
    assert.equal(brief.messages.length, 0);
    assert.equal(clean.messages.length, 0);
  } finally {
    for (const c of [keep, brief, clean, pub]) await c.end();
  }
});

test("a restored session stays its user's: another user's CONNECT with its client id is refused", async () => {
  const node = await h.ready;
  const ann = await makeUser(node, 'rann', ['x']);
  const ben = await makeUser(node, 'rben', ['x']);
  const a = await mqttConnect(node, { version: 5, clientId: 'rann-phone', username: 'rann', password: ann.tokens.x, clean: false, properties: { sessionExpiryInterval: 600 } });
  await a.sub('user/rann/inbox/+', 1);
  await a.end();
  await sleep(WRITE_BEHIND_MS);
  await node.restart();
  for (const version of [5, 4]) {
    const err = await mqttConnect(node, { version, clientId: 'rann-phone', username: 'rben', password: ben.tokens.x, clean: false, properties: version === 5 ? { sessionExpiryInterval: 600 } : undefined }).then(() => null, (e) => e);
    assert.ok(err, `v${version}: ben resumed ann's session`);
    assert.equal(err.code, version === 5 ? 0x85 : 2);
  }
  // Nothing of ann's reaches ben, and ann still has her session.
  const back = await mqttConnect(node, { version: 5, clientId: 'rann-phone', username: 'rann', password: ann.tokens.x, clean: false, properties: { sessionExpiryInterval: 600 } });
  assert.equal(back.sessionPresent, true);
  await back.end();
});
