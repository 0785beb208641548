// Join applications, invitations and friend requests over MQTT (docs/protocol.md "MQTT", item
// "Join applications, invitations and friend requests"): seed 002's topics
// group/<gid>/application/<uid>, group/<gid>/invitation/<invitee>/from/<inviter> and
// user/<to>/application/<from>; the publisher's place in the topic tells whether a publish makes
// a request or decides one; the PUBACK comes once it is stored; the request objects are
// published to the subscriptions of those the WebSocket pushes reach. Clients no one here wrote:
// MQTT.js over TCP and over WebSocket, 3.1.1 and 5, and mosquitto_pub / mosquitto_sub. Every
// refusal (MQTT 5 reason codes; 3.1.1 dropped and counted) stores nothing: the HTTP lists, the
// group's members and last_seq stay as they were.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import {
  conversation,
  expectStatus,
  http,
  lastSeq,
  listApplications,
  listFriendRequests,
  listFriends,
  listInvitations,
  makeUser,
  metrics,
  patchConversation,
  putRole,
  systemMessages,
} from './lib/http.mjs';
import { mosquittoPub, mosquittoSub, mqttConnect } from './lib/mqtt.mjs';
import { useNode } from './lib/node.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const FLAGS = ['--rate-register-address', '0', '--rate-conversations-user', '0', '--rate-members-user', '0'];
const h = useNode({ flags: FLAGS });

async function users(node, prefix, names) {
  const out = {};
  for (const n of names) out[n] = await makeUser(node, `${prefix}-${n}`);
  return out;
}

async function group(node, owner, members, name) {
  const r = await http(node, 'POST', '/api/v1/conversations', {
    token: owner.token,
    json: { type: 'group', members: members.map((m) => m.id), name },
  });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

// An MQTT.js connection of `who` (client id = a device id; password = a token).
let clientN = 0;
function connect(node, who, { transport = 'tcp', version = 5 } = {}) {
  clientN += 1;
  return mqttConnect(node, { transport, version, clientId: `${who.id}-dev${clientN}`, username: who.id, password: who.token });
}

// A PUBACK that says "stored" (MQTT 5 reason code 0, or 3.1.1's plain PUBACK).
function assertStored(ack, what) {
  assert.equal(ack.reasonCode ?? 0, 0, `${what}: ${JSON.stringify(ack.reasonCode)}`);
}

const json = (m) => JSON.parse(m.payload);

async function snapshot(node, token, id) {
  const c = await conversation(node, token, id);
  return { members: c.members, roles: c.roles, last_seq: c.last_seq };
}

describe('MQTT workflows', () => {
  let node;
  before(async () => {
    node = await h.ready;
  });

  test('an application over MQTT 5: the PUBACK once stored, the owner pushed on the WebSocket, an admin subscriber gets it; the admin approves by a decision publish', async () => {
    const u = await users(node, 'ma', ['own', 'adm', 'dan']);
    const g = await group(node, u.own, [u.adm], 'mqtt team');
    expectStatus(await putRole(node, u.own.token, g.id, u.adm.id, 'admin'), 200);
    const wOwn = await WsClient.connect(node, { token: u.own.token });
    const adm = await connect(node, u.adm, { transport: 'tcp', version: 5 });
    const dan = await connect(node, u.dan, { transport: 'ws', version: 5 });
    try {
      const topic = `group/${g.id}/application/${u.dan.id}`;
      assert.deepEqual(await adm.sub(`group/${g.id}/application/+`, 1), [1]);
      assert.deepEqual(await dan.sub(topic, 1), [1], 'an applicant (not a member) may follow its own application');
      const before = await snapshot(node, u.own.token, g.id);

      assertStored(await dan.pub(topic, JSON.stringify({ text: 'let me in' }), 1), 'apply');
      // Stored before the PUBACK: the list has it now.
      const list = await listApplications(node, u.own.token, g.id);
      assert.equal(list.length, 1);
      const ap = list[0];
      assert.match(ap.id, /^ap_[0-9a-f]{32}$/);
      assert.equal(ap.kind, 'application');
      assert.equal(ap.user_id, u.dan.id);
      assert.equal(ap.from_id, u.dan.id);
      assert.equal(ap.conversation_id, g.id);
      assert.equal(ap.text, 'let me in');
      assert.equal(ap.status, 'pending');
      assert.deepEqual(await listApplications(node, u.dan.token), [ap]);
      assert.deepEqual(await snapshot(node, u.own.token, g.id), before);
      // The owner's WebSocket and the admin's subscription.
      assert.deepEqual((await wOwn.waitFor((f) => f.cmd === 'application' && f.data?.id === ap.id)).data, ap);
      const m = await adm.waitFor((x) => x.topic === topic, 5000, 'the application on the admin subscription');
      assert.deepEqual(json(m), ap);
      assert.equal(m.packet.qos, 1);

      // The admin decides with a publish on the same topic.
      assertStored(await adm.pub(topic, JSON.stringify({ decision: 'approve' }), 1), 'approve');
      const c = await conversation(node, u.dan.token, g.id);
      assert.deepEqual(c.members, [...before.members, u.dan.id]);
      assert.equal(c.last_seq, before.last_seq + 1);
      assert.deepEqual((await systemMessages(node, u.dan.token, g.id)).at(-1).event, {
        event: 'member_added',
        actor: u.adm.id,
        users: [u.dan.id],
        via: 'application',
      });
      // The decision reaches the applicant's subscription (and the admin's, and the owner's WebSocket).
      const d = await dan.waitFor((x) => x.topic === topic && json(x).status === 'approved', 5000, 'the decision');
      assert.equal(json(d).id, ap.id);
      assert.equal(json(d).decided_by, u.adm.id);
      assert.equal(
        dan.messages.filter((x) => x.topic === topic)[0],
        d,
        'the applicant is not sent the pending request, only the decision',
      );
      assert.equal(json(await adm.waitFor((x) => x.topic === topic && json(x).status === 'approved')).id, ap.id);
      await wOwn.waitFor((f) => f.cmd === 'application' && f.data?.id === ap.id && f.data.status === 'approved');
      assert.deepEqual(await listApplications(node, u.own.token, g.id), []);
      // Deciding again over HTTP: the first decision stands.
      const again = await http(node, 'POST', `/api/v1/applications/${ap.id}/decline`, { token: u.own.token });
      assert.equal(again.status, 200, again.text);
      assert.equal(again.json.status, 'approved');
    } finally {
      await adm.end();
      await dan.end();
      await closeAll(wOwn);
    }
  });

  test('3.1.1 and mosquitto: a plain-text application by mosquitto_pub, seen by mosquitto_sub; declined by MQTT.js over WebSocket; an open group joins', async () => {
    const u = await users(node, 'mb', ['own', 'mem', 'erin', 'fay']);
    const g = await group(node, u.own, [u.mem], 'mosquitto');
    const topic = `group/${g.id}/application/${u.erin.id}`;
    const sub = await mosquittoSub(node, {
      topic: `group/${g.id}/application/+`,
      qos: 1,
      count: 1,
      waitS: 5,
      version: 5,
      username: u.own.id,
      password: u.own.token,
      clientId: `${u.own.id}-cli`,
    });
    const r = await mosquittoPub(node, { topic, message: 'hello from mosquitto', qos: 1, username: u.erin.id, password: `pw-${u.erin.id}`, clientId: `${u.erin.id}-cli` });
    assert.equal(r.code, 0, r.stderr);
    const list = await listApplications(node, u.own.token, g.id);
    assert.deepEqual(list.map((a) => [a.user_id, a.text, a.status]), [[u.erin.id, 'hello from mosquitto', 'pending']]);
    const got = await sub.done;
    assert.equal(got.messages.length, 1, got.stderr);
    assert.equal(got.messages[0].topic, topic);
    assert.deepEqual(JSON.parse(got.messages[0].payload), list[0]);

    // The owner declines over MQTT.js 3.1.1 on WebSocket.
    const own = await connect(node, u.own, { transport: 'ws', version: 4 });
    try {
      const seq = await lastSeq(node, u.own.token, g.id);
      assertStored(await own.pub(topic, '{"decision": "decline"}', 1), 'decline');
      assert.deepEqual(await listApplications(node, u.own.token, g.id), []);
      const after = await http(node, 'POST', `/api/v1/applications/${list[0].id}/approve`, { token: u.own.token });
      assert.equal(after.status, 200, after.text);
      assert.equal(after.json.status, 'declined', 'declined over MQTT');
      assert.equal(after.json.decided_by, u.own.id);
      assert.equal(await lastSeq(node, u.own.token, g.id), seq, 'a decline stores nothing in the group');

      // An open group: the publish joins at once.
      expectStatus(await patchConversation(node, u.own.token, g.id, { join_policy: 'open' }), 200);
      const fay = await connect(node, u.fay, { transport: 'tcp', version: 4 });
      try {
        assertStored(await fay.pub(`group/${g.id}/application/${u.fay.id}`, 'joining', 1), 'join');
        const c = await conversation(node, u.fay.token, g.id);
        assert.ok(c.members.includes(u.fay.id), JSON.stringify(c.members));
        const e = (await systemMessages(node, u.fay.token, g.id)).at(-1).event;
        assert.equal(e.event, 'member_added');
        assert.equal(e.via, 'open');
        assert.deepEqual(e.users, [u.fay.id]);
      } finally {
        await fay.end();
      }
    } finally {
      await own.end();
    }
  });

  test('an invitation over MQTT: the invitee subscribed on group/+/invitation/<self>/from/+ gets it, accepts with a decision publish, and is a member', async () => {
    const u = await users(node, 'mi', ['own', 'mem', 'erin']);
    const g = await group(node, u.own, [u.mem], 'invited');
    const erin = await connect(node, u.erin, { transport: 'ws', version: 5 });
    const mem = await connect(node, u.mem, { transport: 'tcp', version: 4 });
    const wErin = await WsClient.connect(node, { token: u.erin.token });
    try {
      const topic = `group/${g.id}/invitation/${u.erin.id}/from/${u.mem.id}`;
      assert.deepEqual(await erin.sub(`group/+/invitation/${u.erin.id}/from/+`, 1), [1]);
      assert.deepEqual(await mem.sub(`group/+/invitation/+/from/${u.mem.id}`, 1), [1]);
      const before = await snapshot(node, u.own.token, g.id);
      assertStored(await mem.pub(topic, JSON.stringify({ text: 'come over' }), 1), 'invite');
      const invs = await listInvitations(node, u.erin.token);
      assert.equal(invs.length, 1);
      const inv = invs[0];
      assert.match(inv.id, /^in_[0-9a-f]{32}$/);
      assert.equal(inv.kind, 'invitation');
      assert.equal(inv.user_id, u.erin.id);
      assert.equal(inv.inviter_id, u.mem.id);
      assert.equal(inv.conversation_id, g.id);
      assert.equal(inv.text, 'come over');
      assert.equal(inv.status, 'pending');
      const m = await erin.waitFor((x) => x.topic === topic, 5000, 'the invitation');
      assert.deepEqual(json(m), inv);
      assert.equal(m.packet.qos, 1);
      assert.deepEqual((await wErin.waitFor((f) => f.cmd === 'invitation' && f.data?.id === inv.id)).data, inv);
      assert.deepEqual(await snapshot(node, u.own.token, g.id), before);

      assertStored(await erin.pub(topic, JSON.stringify({ decision: 'accept' }), 1), 'accept');
      const c = await conversation(node, u.erin.token, g.id);
      assert.deepEqual(c.members, [...before.members, u.erin.id]);
      assert.deepEqual((await systemMessages(node, u.erin.token, g.id)).at(-1).event, {
        event: 'member_added',
        actor: u.erin.id,
        users: [u.erin.id],
        via: 'invitation',
      });
      // Both are told: the inviter's subscription gets the accepted invitation.
      const d = await mem.waitFor((x) => x.topic === topic && json(x).status === 'accepted', 5000, 'the decision at the inviter');
      assert.equal(json(d).id, inv.id);
      assert.equal(json(await erin.waitFor((x) => x.topic === topic && json(x).status === 'accepted')).decided_by, u.erin.id);
      assert.deepEqual(await listInvitations(node, u.erin.token), []);
    } finally {
      await erin.end();
      await mem.end();
      await closeAll(wErin);
    }
  });

  test('a friend request over MQTT (mosquitto_pub, plain text), accepted by a decision publish: friends both ways, the answer on the asker\'s own topic', async () => {
    const u = await users(node, 'mf', ['fay', 'gus']);
    const gus = await connect(node, u.gus, { transport: 'tcp', version: 5 });
    const fay = await connect(node, u.fay, { transport: 'ws', version: 4 });
    try {
      const topic = `user/${u.gus.id}/application/${u.fay.id}`;
      assert.deepEqual(await gus.sub(`user/${u.gus.id}/application/+`, 1), [1]);
      assert.deepEqual(await fay.sub(`user/${u.fay.id}/application/+`, 1), [1]);
      const r = await mosquittoPub(node, { topic, message: 'be my friend', qos: 1, version: 5, username: u.fay.id, password: u.fay.token, clientId: `${u.fay.id}-cli` });
      assert.equal(r.code, 0, r.stderr);
      const frs = await listFriendRequests(node, u.gus.token);
      assert.equal(frs.length, 1);
      const fr = frs[0];
      assert.match(fr.id, /^fr_[0-9a-f]{32}$/);
      assert.equal(fr.from, u.fay.id);
      assert.equal(fr.to, u.gus.id);
      assert.equal(fr.text, 'be my friend');
      assert.equal(fr.status, 'pending');
      assert.deepEqual(json(await gus.waitFor((x) => x.topic === topic, 5000, 'the friend request')), fr);

      assertStored(await gus.pub(topic, '{"decision":"accept"}', 1), 'accept');
      assert.deepEqual((await listFriends(node, u.fay.token)).map((f) => f.user_id), [u.gus.id]);
      assert.deepEqual((await listFriends(node, u.gus.token)).map((f) => f.user_id), [u.fay.id]);
      // The asker hears the answer on user/<self>/application/<to>, from_id telling who asked.
      const a = await fay.waitFor((x) => x.topic === `user/${u.fay.id}/application/${u.gus.id}`, 5000, 'the answer at the asker');
      assert.equal(json(a).id, fr.id);
      assert.equal(json(a).status, 'accepted');
      assert.equal(json(a).from_id, u.fay.id);
      assert.equal(typeof json(a).conversation_id, 'string');
      const d = await http(node, 'POST', '/api/v1/conversations', { token: u.fay.token, json: { type: 'direct', members: [u.gus.id] } });
      assert.equal(d.status, 200, d.text);
      assert.equal(d.json.id, json(a).conversation_id, 'the pair\'s direct conversation');
    } finally {
      await gus.end();
      await fay.end();
    }
  });

  test('refusals (MQTT 5): 0x87 for someone else\'s request, a non-admin decision, no pending request, or a subscription to others\' requests; 0x99 for a bad decision; nothing stored', async () => {
    const u = await users(node, 'mr', ['own', 'mem', 'dan', 'erin', 'eve', 'fay', 'gus', 'hal']);
    const g = await group(node, u.own, [u.mem], 'refusals');
    // One of each, pending, made over HTTP.
    const ap = expectStatus(await http(node, 'POST', `/api/v1/conversations/${g.id}/applications`, { token: u.dan.token, json: { text: 'p' } }), 201).json;
    const inv = expectStatus(await http(node, 'POST', `/api/v1/conversations/${g.id}/invitations`, { token: u.mem.token, json: { user_id: u.erin.id } }), 201).json;
    const fr = expectStatus(await http(node, 'POST', `/api/v1/users/${u.gus.id}/friend-requests`, { token: u.fay.token, json: {} }), 201).json;
    const state = async () => ({
      group: await snapshot(node, u.own.token, g.id),
      apps: await listApplications(node, u.own.token, g.id),
      evesApps: await listApplications(node, u.eve.token),
      invs: await listInvitations(node, u.erin.token),
      memInvs: await listInvitations(node, u.mem.token),
      halInvs: await listInvitations(node, u.hal.token),
      frs: await listFriendRequests(node, u.gus.token),
      evesFrs: await listFriendRequests(node, u.eve.token),
      friends: await listFriends(node, u.gus.token),
    });
    const before = await state();
    assert.deepEqual(before.apps, [ap]);
    assert.deepEqual(before.invs, [inv]);
    assert.deepEqual(before.frs, [fr]);

    const own = await connect(node, u.own, { version: 5 });
    const eve = await connect(node, u.eve, { version: 5, transport: 'ws' });
    const mem = await connect(node, u.mem, { version: 5 });
    const erin = await connect(node, u.erin, { version: 5 });
    const gus = await connect(node, u.gus, { version: 5 });
    const dan = await connect(node, u.dan, { version: 5 });
    try {
      assert.deepEqual(await own.sub(`group/${g.id}/application/+`, 1), [1]);
      const appTopic = `group/${g.id}/application/${u.dan.id}`;
      const invTopic = `group/${g.id}/invitation/${u.erin.id}/from/${u.mem.id}`;
      const frTopic = `user/${u.gus.id}/application/${u.fay.id}`;
      const refusedPubs = [
        // someone else's application (eve is neither dan nor an admin), with and without a decision
        [eve, appTopic, 'I am dan', 0x87],
        [eve, appTopic, '{"decision":"approve"}', 0x87],
        // a plain member deciding
        [mem, appTopic, '{"decision":"approve"}', 0x87],
        [mem, appTopic, '{"decision":"decline"}', 0x87],
        // the applicant deciding their own
        [dan, appTopic, '{"decision":"approve"}', 0x87],
        // no pending application for that user
        [own, `group/${g.id}/application/${u.hal.id}`, '{"decision":"approve"}', 0x87],
        // bad decisions and payloads
        [own, appTopic, '{"decision":"maybe"}', 0x99],
        [own, appTopic, '{"decision":"accept"}', 0x99],
        [own, appTopic, '{"decision":1}', 0x99],
        [own, appTopic, Buffer.from([0xff, 0xfe, 0x7b]), 0x99],
        // an invitation from someone else; deciding someone else's invitation; bad decisions
        [eve, `group/${g.id}/invitation/${u.hal.id}/from/${u.mem.id}`, 'come', 0x87],
        [eve, invTopic, '{"decision":"accept"}', 0x87],
        [mem, invTopic, '{"decision":"accept"}', 0x87],
        [erin, invTopic, '{"decision":"approve"}', 0x99],
        [erin, invTopic, Buffer.from([0xc3, 0x28]), 0x99],
        // a friend request as someone else; deciding it as a third; a bad decision
        [eve, frTopic, 'hi gus', 0x87],
        [eve, frTopic, '{"decision":"accept"}', 0x87],
        [gus, frTopic, '{"decision":"approve"}', 0x99],
        [gus, `user/${u.gus.id}/application/${u.hal.id}`, '{"decision":"accept"}', 0x87],
      ];
      for (const [c, topic, payload, code] of refusedPubs) {
        const ack = await c.pub(topic, payload, 1);
        assert.equal(ack.reasonCode, code, `${c.client.options.username} -> ${topic} ${JSON.stringify(String(payload))}: got ${ack.reasonCode}`);
      }
      // Subscriptions to others' requests, or to a group's applications by a non-admin.
      const refusedSubs = [
        [eve, `group/${g.id}/application/+`],
        [mem, `group/${g.id}/application/+`],
        [mem, `group/${g.id}/application/#`],
        [eve, appTopic],
        [eve, `group/+/invitation/${u.erin.id}/from/+`],
        [eve, `group/+/invitation/+/from/${u.mem.id}`],
        [eve, `user/${u.gus.id}/application/+`],
        [eve, `user/+/application/${u.eve.id}`],
      ];
      for (const [c, filter] of refusedSubs) assert.deepEqual(await c.sub(filter, 1), [0x87], `${c.client.options.username} subscribing ${filter}`);

      assert.deepEqual(await state(), before, 'nothing stored');
      // The admin subscriber saw none of it: the next real request is the first thing it gets.
      const hal = await connect(node, u.hal, { version: 5 });
      try {
        assertStored(await hal.pub(`group/${g.id}/application/${u.hal.id}`, 'real one', 1), 'real application');
      } finally {
        await hal.end();
      }
      const first = await own.waitFor(() => true, 5000, 'the real application');
      assert.equal(first.topic, `group/${g.id}/application/${u.hal.id}`);
      assert.equal(json(first).text, 'real one');
      // And the real decisions still work.
      assertStored(await own.pub(appTopic, '{"decision":"approve"}', 1), 'approve');
      assert.ok((await conversation(node, u.own.token, g.id)).members.includes(u.dan.id));
    } finally {
      for (const c of [own, eve, mem, erin, gus, dan]) await c.end();
    }
  });

  test('refusals over MQTT 3.1.1: acknowledged, dropped and counted in converge_mqtt_refused_total; nothing stored', async () => {
    const u = await users(node, 'm3', ['own', 'mem', 'dan', 'eve']);
    const g = await group(node, u.own, [u.mem], 'v311');
    const ap = expectStatus(await http(node, 'POST', `/api/v1/conversations/${g.id}/applications`, { token: u.dan.token, json: {} }), 201).json;
    const before = { group: await snapshot(node, u.own.token, g.id), apps: await listApplications(node, u.own.token, g.id) };
    const m0 = (await metrics(node)).values.converge_mqtt_refused_total ?? 0;
    const eve = await connect(node, u.eve, { version: 4, transport: 'ws' });
    const mem = await connect(node, u.mem, { version: 4 });
    try {
      const topic = `group/${g.id}/application/${u.dan.id}`;
      await eve.pub(topic, '{"decision":"approve"}', 1); // someone else's
      await mem.pub(topic, '{"decision":"approve"}', 1); // not an admin
      await mem.pub(`group/${g.id}/application/${u.mem.id}`, 'x', 1); // a member already
      const r = await mosquittoPub(node, { topic, message: '{"decision":"maybe"}', qos: 1, username: u.own.id, password: u.own.token, clientId: `${u.own.id}-m3` });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(await eve.sub(`group/${g.id}/application/+`, 1), [0x80]);
      const m1 = (await metrics(node)).values.converge_mqtt_refused_total;
      assert.ok(m1 >= m0 + 4, `refusals counted: ${m0} -> ${m1}`);
      assert.deepEqual({ group: await snapshot(node, u.own.token, g.id), apps: await listApplications(node, u.own.token, g.id) }, before);
      assert.equal(before.apps[0].id, ap.id);
    } finally {
      await eve.end();
      await mem.end();
    }
  });

  test('a client cannot publish a system message into a group: 0x99, nothing stored', async () => {
    const u = await users(node, 'ms', ['own', 'mem']);
    const g = await group(node, u.own, [u.mem], 'sys');
    const mem = await connect(node, u.mem, { version: 5 });
    try {
      const body = JSON.stringify({ event: 'owner_changed', actor: u.own.id, user_id: u.mem.id, previous: u.own.id });
      const ack = await mem.pub(`group/${g.id}/inbox/${u.mem.id}`, JSON.stringify({ type: 'system', body }), 1);
      assert.equal(ack.reasonCode, 0x99);
      assert.equal(await lastSeq(node, u.own.token, g.id), 0);
      assert.equal((await conversation(node, u.own.token, g.id)).owner, u.own.id);
    } finally {
      await mem.end();
    }
  });
});
