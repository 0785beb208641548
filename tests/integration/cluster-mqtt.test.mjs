// MQTT across a cluster (docs/protocol.md "MQTT", docs/operations.md): three real nodes on one
// private PostgreSQL and RabbitMQ. General topics reach subscribers on every node, and only the
// nodes that have subscribers for them; retained messages are everywhere; a device's session
// (subscriptions, IM catch-up from its cursors) follows it to another node.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { createConversation, login, metrics, register } from './lib/http.mjs';
import { mqttConnect } from './lib/mqtt.mjs';
import { ConvergeNode } from './lib/node.mjs';
import { startPostgres } from './lib/postgres.mjs';
import { startRabbit } from './lib/rabbitmq.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

let pg;
let rabbit;
let filesDir;
const nodes = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  [pg, rabbit] = await Promise.all([startPostgres(), startRabbit()]);
  filesDir = await mkdtemp(path.join(tmpdir(), 'converge-cmqtt-files-'));
  for (let i = 1; i <= 3; i++) {
    const dataDir = await mkdtemp(path.join(tmpdir(), `converge-cmqtt-${i}-`));
    const node = new ConvergeNode({
      dataDir,
      flags: ['--store', pg.url, '--bus', rabbit.url, '--files-dir', filesDir, '--node-id', `mq${i}`,
        '--node-heartbeat-ms', '200', '--node-timeout-ms', '1500'],
    });
    await node.start();
    nodes.push(node);
  }
});

after(async () => {
  for (const n of nodes) await n.stop({ removeData: true }).catch(() => {});
  await Promise.all([pg?.stop(), rabbit?.stop()]);
  if (filesDir) await rm(filesDir, { recursive: true, force: true });
});

const busIn = async (node) => (await metrics(node)).values.converge_mqtt_bus_in_total ?? 0;

test('general topics cross nodes, to the nodes with subscribers only, properties and all', async () => {
  await register(nodes[0], 'gus');
  const tok = await login(nodes[0], 'gus', 'x');
  const base = { version: 5, username: 'gus', password: tok };
  const a = await mqttConnect(nodes[0], { ...base, clientId: 'gus-a' }); // node 1: one level
  const b = await mqttConnect(nodes[1], { ...base, clientId: 'gus-b', transport: 'ws' }); // node 2: all
  const p = await mqttConnect(nodes[2], { ...base, clientId: 'gus-p' }); // node 3: publishes only
  try {
    assert.deepEqual(await a.sub('app/gus/+/temp', 1), [1]);
    assert.deepEqual(await b.sub('app/gus/#', 1), [1]);
    await sleep(300); // the bindings reach the broker
    const before3 = await busIn(nodes[2]);
    const long = `app/gus/${'x'.repeat(300)}/temp`; // over AMQP's 255-byte routing key
    const topics = ['app/gus/room1/temp', 'app/gus/v1.2/temp', 'app/gus/*/temp', long, 'app/gus/room1/humidity'];
    for (const t of topics) {
      await p.pub(t, `on ${t.slice(0, 30)}`, 1, { properties: { userProperties: { unit: 'C' }, contentType: 'text/plain' } });
    }
    await b.waitFor((m) => m.topic === 'app/gus/room1/humidity', 5000, 'the last one on node 2');
    await sleep(300);
    assert.deepEqual(b.messages.map((m) => m.topic), topics, 'node 2 gets every one, in order');
    assert.deepEqual(a.messages.map((m) => m.topic), topics.slice(0, 4), 'node 1 only what its filter matches');
    const m = a.messages[0];
    assert.equal(m.payload, 'on app/gus/room1/temp');
    assert.equal(m.packet.qos, 1);
    assert.deepEqual({ ...m.packet.properties?.userProperties }, { unit: 'C' });
    assert.equal(m.packet.properties?.contentType, 'text/plain');
    // Node 3 has no subscriber: nothing came back to it.
    assert.equal(await busIn(nodes[2]), before3);
    // Unsubscribed: node 1 no longer gets them.
    await a.client.unsubscribeAsync('app/gus/+/temp');
    await sleep(300);
    await p.pub('app/gus/room2/temp', 'after', 1);
    await b.waitFor((x) => x.topic === 'app/gus/room2/temp');
    await sleep(200);
    assert.equal(a.messages.length, 4);
  } finally {
    for (const c of [a, b, p]) await c.end();
  }
});

test('retained messages are on every node', async () => {
  await register(nodes[0], 'ret');
  const tok = await login(nodes[0], 'ret', 'x');
  const base = { version: 5, username: 'ret', password: tok };
  const pub = await mqttConnect(nodes[0], { ...base, clientId: 'ret-pub' });
  try {
    await pub.pub('app/ret/status', 'online', 1, { retain: true });
    await sleep(300);
    // A subscriber on another node, later: the retained message is there.
    const late = await mqttConnect(nodes[2], { ...base, clientId: 'ret-late' });
    await late.sub('app/ret/#', 1);
    const got = await late.waitFor((m) => m.topic === 'app/ret/status');
    assert.equal(got.payload, 'online');
    assert.equal(got.packet.retain, true);
    await late.end();
    // Cleared from a third node: gone everywhere.
    const clr = await mqttConnect(nodes[1], { ...base, clientId: 'ret-clr' });
    await clr.pub('app/ret/status', '', 1, { retain: true });
    await clr.end();
    await sleep(300);
    const after = await mqttConnect(nodes[0], { ...base, clientId: 'ret-after' });
    await after.sub('app/ret/#', 1);
    await sleep(300);
    assert.deepEqual(after.messages, []);
    await after.end();
  } finally {
    await pub.end();
  }
});

test('a device resumes its session on another node: subscriptions kept, missed IM messages in order', async () => {
  await register(nodes[0], 'own');
  await register(nodes[0], 'roam');
  const ownTok = await login(nodes[1], 'own', 'web');
  const roamTok = await login(nodes[0], 'roam', 'x');
  const gid = (await createConversation(nodes[1], ownTok, 'group', ['roam'], 'roaming')).id;
  const opts = { version: 5, clientId: 'roam-iPhone', username: 'roam', password: roamTok, clean: false, properties: { sessionExpiryInterval: 3600 } };
  const wo = await WsClient.connect(nodes[1], { token: ownTok });
  let d = await mqttConnect(nodes[0], opts);
  try {
    await d.sub(`group/${gid}/inbox/+`, 1);
    await wo.send({ conversation_id: gid, body: 'r1', client_msg_id: 'r1' });
    await d.waitFor((m) => JSON.parse(m.payload).seq === 1, 5000, 'live across nodes');
    await d.end();
    for (let i = 2; i <= 5; i++) await wo.send({ conversation_id: gid, body: `r${i}`, client_msg_id: `r${i}` });
    await sleep(300); // the session's disconnect is written
    d = await mqttConnect(nodes[2], opts); // another node, without subscribing again
    assert.equal(d.sessionPresent, true);
    await d.waitFor((m) => JSON.parse(m.payload).seq === 5, 8000, 'seq 5 on node 3');
    assert.deepEqual(d.messages.map((m) => JSON.parse(m.payload).seq), [2, 3, 4, 5]);
    await wo.send({ conversation_id: gid, body: 'r6', client_msg_id: 'r6' });
    await d.waitFor((m) => JSON.parse(m.payload).seq === 6);
  } finally {
    await d.end();
    await closeAll(wo);
  }
});

test("one connection per client id across nodes: connecting on another node takes the session over", async () => {
  await register(nodes[0], 'hop');
  const tok = await login(nodes[0], 'hop', 'x');
  const opts = { version: 5, clientId: 'hop-phone', username: 'hop', password: tok, clean: false, properties: { sessionExpiryInterval: 600 } };
  const first = await mqttConnect(nodes[0], opts);
  await first.sub('user/hop/inbox/+', 1);
  await first.sub('app/hop/#', 1);
  await sleep(300); // the session is written
  const second = await mqttConnect(nodes[1], opts);
  let third;
  try {
    assert.equal(second.sessionPresent, true);
    assert.ok(await first.waitClosed(5000), 'the connection on node 1 was taken over');
    assert.equal(first.disconnectPacket?.reasonCode, 0x8e);
    // The session lives on node 2 now: general-topic messages reach it there, once.
    const pub = await mqttConnect(nodes[2], { version: 5, clientId: 'hop-pub', username: 'hop', password: tok });
    await pub.pub('app/hop/ping', 'one', 1);
    await second.waitFor((m) => m.topic === 'app/hop/ping');
    await pub.end();
    // A clean start on node 3 takes it over too, and starts afresh.
    await sleep(300);
    third = await mqttConnect(nodes[2], { ...opts, clean: true, properties: {} });
    assert.equal(third.sessionPresent, false);
    assert.ok(await second.waitClosed(5000), 'the connection on node 2 was taken over');
  } finally {
    await first.end();
    await second.end();
    await third?.end();
  }
});
