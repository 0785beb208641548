// Groups across a cluster (docs/protocol.md "Groups"): two real nodes on one private PostgreSQL
// and RabbitMQ. A request made on one node reaches the deciders on the other (WebSocket and
// MQTT), its decision comes back, and two admins deciding at once on two nodes make one
// decision: one member added, one system message.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { createConversation, http, login, register } from './lib/http.mjs';
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
  filesDir = await mkdtemp(path.join(tmpdir(), 'converge-cgroups-files-'));
  for (let i = 1; i <= 2; i++) {
    const dataDir = await mkdtemp(path.join(tmpdir(), `converge-cgroups-${i}-`));
    const node = new ConvergeNode({
      dataDir,
      flags: ['--store', pg.url, '--bus', rabbit.url, '--files-dir', filesDir, '--node-id', `gr${i}`,
        '--node-heartbeat-ms', '200', '--node-timeout-ms', '1500',
        '--rate-conversations-user', '0', '--rate-members-user', '0', '--rate-requests-user', '0'],
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

async function user(id, node = nodes[0]) {
  await register(node, id);
  return login(node, id, `${id}-d1`);
}

const history = async (node, token, id) =>
  (await http(node, 'GET', `/api/v1/conversations/${id}/messages?limit=100`, { token })).json.messages;

test('an application made on one node is pushed to the owner on the other, and its approval comes back', async () => {
  const owner = await user('cg-owner');
  const erin = await user('cg-erin');
  await user('cg-bob');
  const g = await createConversation(nodes[0], owner, 'group', ['cg-bob'], 'across');
  const ownerWs = await WsClient.connect(nodes[1], { token: owner }); // the owner on node 2
  const erinWs = await WsClient.connect(nodes[0], { token: erin }); // the applicant on node 1
  try {
    await sleep(300); // the users' bindings reach the broker
    const made = await http(nodes[0], 'POST', `/api/v1/conversations/${g.id}/applications`, {
      token: erin,
      json: { text: 'from node 1' },
    });
    assert.equal(made.status, 201);
    const pushed = await ownerWs.waitFor((f) => f.cmd === 'application', { label: 'application push on node 2' });
    assert.equal(pushed.data.application_id, made.json.application_id);
    assert.equal(pushed.data.status, 'pending');
    assert.equal(pushed.data.text, 'from node 1');

    // Approved over the owner's socket on node 2.
    const yes = await ownerWs.request('application.approve', { application_id: made.json.application_id });
    assert.equal(yes.cmd, 'application.approve', JSON.stringify(yes));
    assert.equal(yes.data.status, 'approved');
    const told = await erinWs.waitFor((f) => f.cmd === 'application' && f.data.status === 'approved');
    assert.equal(told.data.decided_by, 'cg-owner');
    const conv = await erinWs.waitFor((f) => f.cmd === 'conversation' && f.data.change === 'member_added');
    assert.ok(conv.data.members.includes('cg-erin'));
    assert.equal(conv.data.event.event, 'member_added');
    assert.equal(conv.data.event.via, 'application');
    // The system message of the join reaches the new member live on node 1, in seq order.
    const sys = await erinWs.waitFor((f) => f.cmd === 'msg' && f.data.conversation_id === g.id && f.data.type === 'system');
    assert.deepEqual(JSON.parse(sys.data.body).users, ['cg-erin']);
    const sent = await erinWs.send({ conversation_id: g.id, body: 'hello from erin' });
    assert.equal(sent.seq, sys.data.seq + 1);
    await ownerWs.waitForMsg(g.id, sent.seq);
  } finally {
    await closeAll(ownerWs, erinWs);
  }
});

test('two admins on two nodes deciding one application at once make one decision', async () => {
  const owner = await user('cg2-owner');
  const admin = await user('cg2-admin', nodes[1]);
  const fred = await user('cg2-fred');
  const g = await createConversation(nodes[0], owner, 'group', ['cg2-admin'], 'race');
  const role = await http(nodes[0], 'PUT', `/api/v1/conversations/${g.id}/roles/cg2-admin`, {
    token: owner,
    json: { role: 'admin' },
  });
  assert.equal(role.status, 200);
  for (let round = 0; round < 3; round++) {
    if (round > 0) {
      const out = await http(nodes[0], 'DELETE', `/api/v1/conversations/${g.id}/members/cg2-fred`, { token: owner });
      assert.equal(out.status, 200);
    }
    const made = await http(nodes[0], 'POST', `/api/v1/conversations/${g.id}/applications`, { token: fred, json: {} });
    assert.equal(made.status, 201);
    const id = made.json.application_id;
    const before = (await history(nodes[0], owner, g.id)).length;
    // The owner approves on node 1 while the admin declines on node 2.
    const [a, b] = await Promise.all([
      http(nodes[0], 'POST', `/api/v1/applications/${id}/approve`, { token: owner }),
      http(nodes[1], 'POST', `/api/v1/applications/${id}/decline`, { token: admin }),
    ]);
    assert.equal(a.status, 200, JSON.stringify(a.json));
    assert.equal(b.status, 200, JSON.stringify(b.json));
    assert.equal(a.json.status, b.json.status, 'both answer the one decision');
    assert.equal(a.json.decided_by, b.json.decided_by);
    const after = await history(nodes[0], owner, g.id);
    const members = (await http(nodes[1], 'GET', `/api/v1/conversations/${g.id}`, { token: admin })).json.members;
    if (a.json.status === 'approved') {
      assert.equal(after.length, before + 1, 'one member_added, once');
      assert.equal(JSON.parse(after.at(-1).body).event, 'member_added');
      assert.ok(members.includes('cg2-fred'));
    } else {
      assert.equal(a.json.status, 'declined');
      assert.equal(after.length, before, 'a decline stores no system message');
      assert.ok(!members.includes('cg2-fred'));
      // Out of the group already: the next round re-applies without a removal.
      const again = await http(nodes[0], 'POST', `/api/v1/conversations/${g.id}/applications`, { token: fred, json: {} });
      assert.equal(again.status, 201);
      const ok = await http(nodes[1], 'POST', `/api/v1/applications/${again.json.application_id}/approve`, { token: admin });
      assert.equal(ok.json.status, 'approved');
    }
  }
});

test('a friend request crosses nodes to an MQTT subscriber, and the answer comes back', async () => {
  const ann = await user('cg-ann');
  const ben = await user('cg-ben', nodes[1]);
  const benMqtt = await mqttConnect(nodes[1], { version: 5, username: 'cg-ben', password: ben, clientId: 'cg-ben-phone' });
  const annWs = await WsClient.connect(nodes[0], { token: ann });
  try {
    assert.deepEqual(await benMqtt.sub('user/cg-ben/application/+', 1), [1]);
    await sleep(300);
    const made = await http(nodes[0], 'POST', '/api/v1/users/cg-ben/friend-requests', { token: ann, json: { text: 'hi ben' } });
    assert.equal(made.status, 201);
    const m = await benMqtt.waitFor((x) => x.topic === 'user/cg-ben/application/cg-ann');
    const req = JSON.parse(m.payload);
    assert.equal(req.request_id, made.json.request_id);
    assert.equal(req.status, 'pending');
    // ben accepts by publishing on the same topic, on node 2.
    await benMqtt.pub('user/cg-ben/application/cg-ann', JSON.stringify({ decision: 'accept' }), 1);
    const told = await annWs.waitFor((f) => f.cmd === 'friend_request' && f.data.status === 'accepted');
    assert.equal(told.data.request_id, made.json.request_id);
    await annWs.waitFor((f) => f.cmd === 'conversation' && f.data.type === 'direct' && f.data.change === 'created');
    const friends = await http(nodes[0], 'GET', '/api/v1/friends', { token: ann });
    assert.deepEqual(friends.json.friends.map((f) => f.user_id), ['cg-ben']);
  } finally {
    await closeAll(annWs);
    await benMqtt.end();
  }
});
