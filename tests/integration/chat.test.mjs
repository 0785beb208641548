// 1:1 and group chat across three users, one of them on two devices (DESIGN.md sections 3, 4).
//
// The happy paths (creating conversations, sending, receiving on every device) go through the
// SDK (clients/js, lib/sdk.mjs), each device also recording its live stream off the wire. The
// wire contract stays raw (lib/ws.mjs, lib/http.mjs): the `ready` frame, status and error codes,
// envelope details, membership rules, history parameters, mute.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { assertGapless, assertHttpError, assertRange, assertWsError } from './lib/check.mjs';
import { createConversation, history, http, lastSeq, makeUser } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { closeDevices, sdkDevice } from './lib/sdk.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const h = useNode();

describe('chat', () => {
  let node;
  let alice; // devices phone + laptop (SDK), raw (raw tests)
  let bob;
  let carol;
  // SDK devices: the happy paths.
  let aPhone;
  let aLaptop;
  let bSdk;
  let cSdk;
  // Raw connections: the wire-level checks (error frames, envelopes, status codes).
  let aWs;
  let bWs;
  let cWs;

  before(async () => {
    node = await h.ready;
    alice = await makeUser(node, 'alice', ['raw', 'phone', 'laptop']);
    bob = await makeUser(node, 'bob');
    carol = await makeUser(node, 'carol');
    aWs = await WsClient.connect(node, { token: alice.tokens.raw });
    bWs = await WsClient.connect(node, { token: bob.token });
    cWs = await WsClient.connect(node, { token: carol.token });
    aPhone = await sdkDevice(node, 'alice', 'phone');
    aLaptop = await sdkDevice(node, 'alice', 'laptop');
    bSdk = await sdkDevice(node, 'bob', 'sdk');
    cSdk = await sdkDevice(node, 'carol', 'sdk');
  });

  after(async () => {
    closeDevices(aPhone, aLaptop, bSdk, cSdk);
    await closeAll(aWs, bWs, cWs);
  });

  // Raw: the `ready` frame itself, with the token in the query and in the Authorization header.
  test('ready frame describes the device and the limits', async () => {
    const phone = await WsClient.connect(node, { token: alice.tokens.phone });
    const laptop = await WsClient.connect(node, { token: alice.tokens.laptop, auth: 'header' });
    try {
      const ready = phone.frames.find((f) => f.cmd === 'ready');
      assert.equal(ready.data.user_id, 'alice');
      assert.equal(ready.data.device_id, 'phone');
      assert.equal(ready.data.name, 'alice');
      for (const k of ['heartbeat_interval_ms', 'heartbeat_timeout_ms', 'max_frame_bytes', 'max_body_bytes'])
        assert.equal(typeof ready.data[k], 'number', k);
      assert.equal(laptop.frames.find((f) => f.cmd === 'ready').data.device_id, 'laptop');
      // The SDK's devices got the same.
      assert.equal(aPhone.client.ready.device_id, 'phone');
      assert.equal(aLaptop.client.ready.device_id, 'laptop');
    } finally {
      await closeAll(phone, laptop);
    }
  });

  test('1:1: direct conversation is idempotent per pair; every device of both members gets each message in order', async () => {
    const c1 = await aPhone.client.createDirect('bob');
    assert.equal(c1.type, 'direct');
    assert.deepEqual([...c1.members].sort(), ['alice', 'bob']);
    assert.equal(c1.last_seq, 0);
    assert.equal(c1.id, c1.conversation_id);
    assert.equal(typeof c1.id, 'string');
    // Bob asking for the same pair gets the same conversation (201 then 200: see the raw test
    // 'creating conversations').
    const c2 = await bSdk.client.createDirect('alice');
    assert.equal(c2.id, c1.id);
    const conv = c1.id;

    // Alice's phone sends five messages without waiting for the acks.
    const acks = await Promise.all(
      [1, 2, 3, 4, 5].map((i) => aPhone.client.send(conv, { type: 'text', body: `hello ${i}`, client_msg_id: `dm-${i}` })),
    );
    assert.deepEqual(acks.map((a) => a.seq).sort((x, y) => x - y), [1, 2, 3, 4, 5]);
    for (const a of acks) {
      assert.equal(a.conversation_id, conv);
      assert.equal(typeof a.ts, 'number');
      assert.equal(a.duplicate, undefined);
    }
    // Bob's reply.
    const bAck = await bSdk.client.send(conv, { body: 'hi alice', client_msg_id: 'b-dm-1' });
    assert.equal(bAck.seq, 6);

    // Every device of every member (the sending device included) gets 1..6 in order: on its live
    // stream (the wire) and as the SDK's 'message' events.
    for (const [name, d] of [['alice phone', aPhone], ['alice laptop', aLaptop], ['bob', bSdk]]) {
      await d.waitForMsg(conv, 6);
      assertRange(d.liveMsgs(conv).map((m) => m.seq), 1, 6, `${name} live stream`);
      assertRange(d.seqs(conv), 1, 6, name);
      assert.ok(d.got.filter((g) => g.m.conversation_id === conv).every((g) => g.source === 'live'), `${name}: all live`);
    }
    const m6 = bSdk.msgs(conv)[5];
    assert.equal(m6.publisher_id, 'bob');
    assert.equal(m6.publisher_name, 'bob');
    assert.equal(m6.type, 'text');
    assert.equal(m6.body, 'hi alice');
    assert.equal(m6.client_msg_id, 'b-dm-1');
    // Same content at the same seq everywhere, and the same as the stored history.
    const stored = await bSdk.client.history(conv);
    for (const d of [aPhone, aLaptop, bSdk]) {
      assert.deepEqual(d.msgs(conv), stored, d.label);
      assert.deepEqual(d.liveMsgs(conv), stored, `${d.label} live stream`);
    }
    const byAck = new Map(acks.map((a) => [a.client_msg_id, a.seq]));
    for (const m of stored.filter((x) => x.publisher_id === 'alice')) assert.equal(byAck.get(m.client_msg_id), m.seq);

    // Carol is no member: a later message of her own reaches her first (per-thread FIFO fan-out
    // means anything for her from before would have come first).
    const own = await cSdk.client.createDirect('bob');
    await cSdk.client.send(own.id, { body: 'marker', client_msg_id: 'c-marker-1' });
    await cSdk.waitForMsg(own.id, 1);
    assert.equal(cSdk.msgs(conv).length, 0, 'carol must not receive alice/bob messages');
    assert.ok(!cSdk.frames().some((f) => f.data?.conversation_id === conv), 'nothing about it on her wire');
    // Nor may she read or write it (raw: status and error codes).
    assertHttpError(await http(node, 'GET', `/api/v1/conversations/${conv}/messages`, { token: carol.token }), 403, 'forbidden');
    assertHttpError(await http(node, 'GET', `/api/v1/conversations/${conv}`, { token: carol.token }), 403, 'forbidden');
    assertWsError(await cWs.request('msg', { conversation_id: conv, body: 'intrude' }), 'forbidden');
    assert.equal(await lastSeq(node, alice.token, conv), 6);
  });

  test('group: three users, four devices, concurrent senders; every device sees the same gapless sequence', async () => {
    const g = await aPhone.client.createGroup({ name: 'team', members: ['bob', 'carol'] });
    assert.equal(g.type, 'group');
    assert.equal(g.name, 'team');
    assert.equal(g.owner, 'alice');
    assert.deepEqual([...g.members].sort(), ['alice', 'bob', 'carol']);

    // Every member lists it with its last_seq.
    for (const d of [aLaptop, bSdk, cSdk]) {
      const mine = (await d.client.listConversations()).find((c) => c.id === g.id);
      assert.ok(mine, `${d.label} lists the group`);
      assert.equal(mine.last_seq, 0);
      assert.equal(mine.muted, false);
    }

    const senders = [
      ['ap', aPhone],
      ['al', aLaptop],
      ['b', bSdk],
      ['c', cSdk],
    ];
    const perSender = 8;
    const sends = [];
    for (let i = 0; i < perSender; i++)
      for (const [tag, d] of senders) sends.push(d.client.send(g.id, { body: `${tag} ${i}`, client_msg_id: `g-${tag}-${i}` }));
    const acks = await Promise.all(sends);
    const total = perSender * senders.length;
    assert.deepEqual(acks.map((a) => a.seq).sort((x, y) => x - y), Array.from({ length: total }, (_, i) => i + 1));

    const stored = await cSdk.client.history(g.id);
    assertRange(stored.map((m) => m.seq), 1, total, 'history');
    // One sender's messages keep their order within the conversation.
    for (const [tag] of senders) {
      const mine = stored.filter((m) => m.client_msg_id.startsWith(`g-${tag}-`)).map((m) => Number(m.body.split(' ')[1]));
      assert.deepEqual(mine, [...Array(perSender).keys()], `order of ${tag}'s messages`);
    }
    for (const [name, d] of [['alice phone', aPhone], ['alice laptop', aLaptop], ['bob', bSdk], ['carol', cSdk]]) {
      await d.waitForMsg(g.id, total);
      assertGapless(d.liveMsgs(g.id).map((m) => m.seq), `${name} live stream`);
      assert.deepEqual(d.liveMsgs(g.id), stored, `${name}'s live stream is exactly the stored messages`);
      assert.deepEqual(d.msgs(g.id), stored, `${name} got exactly the stored messages`);
    }
  });

  // Raw: status codes and error codes of conversation creation.
  test('creating conversations: 201 when new, 200 for an existing direct pair; bad shapes are refused', async () => {
    const erin = await makeUser(node, 'erin');
    const d1 = await http(node, 'POST', '/api/v1/conversations', { token: alice.token, json: { type: 'direct', members: ['erin'] } });
    assert.equal(d1.status, 201);
    assert.equal(d1.json.last_seq, 0);
    assert.equal(d1.json.id, d1.json.conversation_id);
    // The other member asking for the same pair gets the same conversation, 200 instead of 201.
    const d2 = await http(node, 'POST', '/api/v1/conversations', { token: erin.token, json: { type: 'direct', members: ['alice'] } });
    assert.equal(d2.status, 200);
    assert.equal(d2.json.id, d1.json.id);
    const g = await http(node, 'POST', '/api/v1/conversations', {
      token: alice.token,
      json: { type: 'group', members: ['erin'], name: 'status' },
    });
    assert.equal(g.status, 201);
    assert.equal(g.json.owner, 'alice');

    assertHttpError(
      await http(node, 'POST', '/api/v1/conversations', { token: alice.token, json: { type: 'group', members: [] } }),
      400,
      'bad_request',
    );
    assertHttpError(
      await http(node, 'POST', '/api/v1/conversations', { token: alice.token, json: { type: 'direct', members: ['bob', 'carol'] } }),
      400,
      'bad_request',
    );
    assertHttpError(
      await http(node, 'POST', '/api/v1/conversations', { token: alice.token, json: { type: 'direct', members: ['alice'] } }),
      400,
      'bad_request',
    );
    assertHttpError(
      await http(node, 'POST', '/api/v1/conversations', { token: alice.token, json: { type: 'room', members: ['bob'] } }),
      400,
      'bad_request',
    );
    assertHttpError(
      await http(node, 'POST', '/api/v1/conversations', { token: alice.token, json: { type: 'group', members: ['bob', 'nobody'] } }),
      404,
      'not_found',
    );
    assertHttpError(
      await http(node, 'POST', '/api/v1/conversations', { token: alice.token, json: { type: 'group', members: 'bob' } }),
      400,
      'bad_request',
    );
  });

  // Raw: who may add and remove members is a matter of status and error codes.
  test('membership: any member adds, only the owner removes others, anyone may leave; removed members lose access', async () => {
    const dave = await makeUser(node, 'dave');
    const dWs = await WsClient.connect(node, { token: dave.token });
    try {
      const g = await createConversation(node, alice.token, 'group', ['bob'], 'club');
      // Bob (not the owner) adds carol and dave.
      const added = await http(node, 'POST', `/api/v1/conversations/${g.id}/members`, {
        token: bob.token,
        json: { members: ['carol', 'dave'] },
      });
      assert.equal(added.status, 200);
      assert.deepEqual([...added.json.members].sort(), ['alice', 'bob', 'carol', 'dave']);
      // The single-user form.
      const again = await http(node, 'POST', `/api/v1/conversations/${g.id}/members`, {
        token: bob.token,
        json: { user_id: 'dave' },
      });
      assert.equal(again.status, 200);
      assert.equal(again.json.members.length, 4);
      assertHttpError(
        await http(node, 'POST', `/api/v1/conversations/${g.id}/members`, { token: bob.token, json: { members: ['ghost'] } }),
        404,
        'not_found',
      );
      // Dave receives the next message live, after the system message of his joining (seq 1).
      const a1 = await aWs.send({ conversation_id: g.id, body: 'welcome', client_msg_id: 'club-1' });
      assert.equal(a1.seq, 2);
      await dWs.waitForMsg(g.id, 2);
      const joined = dWs.msgs(g.id).find((m) => m.seq === 1);
      assert.equal(joined.type, 'system');
      assert.equal(JSON.parse(joined.body).event, 'member_added');

      // Bob may not remove carol; alice (owner) may; dave may leave by himself.
      assertHttpError(await http(node, 'DELETE', `/api/v1/conversations/${g.id}/members/carol`, { token: bob.token }), 403, 'forbidden');
      const rm = await http(node, 'DELETE', `/api/v1/conversations/${g.id}/members/carol`, { token: alice.token });
      assert.equal(rm.status, 200);
      assert.deepEqual([...rm.json.members].sort(), ['alice', 'bob', 'dave']);
      const leave = await http(node, 'DELETE', `/api/v1/conversations/${g.id}/members/dave`, { token: dave.token });
      assert.equal(leave.status, 200);
      assertHttpError(await http(node, 'DELETE', `/api/v1/conversations/${g.id}/members/carol`, { token: alice.token }), 404, 'not_found');

      // Carol and dave can no longer send, read or receive.
      assertWsError(await cWs.request('msg', { conversation_id: g.id, body: 'still here?' }), 'forbidden');
      assertWsError(await dWs.request('msg', { conversation_id: g.id, body: 'still here?' }), 'forbidden');
      assertHttpError(await http(node, 'GET', `/api/v1/conversations/${g.id}/messages`, { token: carol.token }), 403, 'forbidden');
      // Seqs 3 and 4 are the system messages of carol's removal and dave's leaving.
      const a2 = await aWs.send({ conversation_id: g.id, body: 'after', client_msg_id: 'club-2' });
      assert.equal(a2.seq, 5, 'the refused sends stored nothing');
      await bWs.waitForMsg(g.id, 5);
      // A later message in dave's own conversation reaches him; nothing of the club after he
      // left does (his own leaving, seq 4, goes to those who stay).
      const own = await createConversation(node, dave.token, 'direct', ['bob']);
      await dWs.send({ conversation_id: own.id, body: 'marker', client_msg_id: 'd-marker' });
      await dWs.waitForMsg(own.id, 1);
      const daves = dWs.msgs(g.id).map((m) => m.seq);
      assert.deepEqual(daves.filter((q) => q <= 2), [1, 2]);
      assert.ok(daves.every((q) => q <= 3), `nothing after dave left: ${daves}`);
      const carolList = await http(node, 'GET', '/api/v1/conversations', { token: carol.token });
      assert.ok(!carolList.json.conversations.some((c) => c.id === g.id));

      // A direct conversation's members are fixed.
      const d = await createConversation(node, alice.token, 'direct', ['bob']);
      assertHttpError(
        await http(node, 'POST', `/api/v1/conversations/${d.id}/members`, { token: alice.token, json: { members: ['carol'] } }),
        400,
        'bad_request',
      );
    } finally {
      await dWs.close();
    }
  });

  // Raw: the `conversation` push of docs/protocol.md, exactly as sent, to each party.
  test('membership pushes: created, member_added, member_removed, as the conversation object plus change', async () => {
    const frank = await makeUser(node, 'frank');
    const eWs = await WsClient.connect(node, { token: frank.token });
    try {
      const isPush = (id, change) => (f) => f.cmd === 'conversation' && f.data?.id === id && f.data.change === change;
      const aMark = aWs.mark();
      const bMark = bWs.mark();
      const g = await createConversation(node, alice.token, 'group', ['bob'], 'pushed');
      for (const [c, from] of [[aWs, aMark], [bWs, bMark]]) {
        const f = await c.waitFor(isPush(g.id, 'created'), { from });
        assert.deepEqual(Object.keys(f).sort(), ['cmd', 'data']);
        assert.equal(f.data.conversation_id, g.id);
        assert.equal(f.data.type, 'group');
        assert.equal(f.data.name, 'pushed');
        assert.equal(f.data.owner, 'alice');
        assert.deepEqual([...f.data.members].sort(), ['alice', 'bob']);
        assert.equal(f.data.muted, false);
      }
      // Bob mutes it; alice adds frank: each recipient sees its own `muted`.
      await http(node, 'POST', `/api/v1/conversations/${g.id}/mute`, { token: bob.token, json: { muted: true } });
      await http(node, 'POST', `/api/v1/conversations/${g.id}/members`, { token: alice.token, json: { members: ['frank'] } });
      const byB = await bWs.waitFor(isPush(g.id, 'member_added'));
      const byE = await eWs.waitFor(isPush(g.id, 'member_added'));
      const byA = await aWs.waitFor(isPush(g.id, 'member_added'));
      for (const f of [byA, byB, byE]) assert.deepEqual([...f.data.members].sort(), ['alice', 'bob', 'frank']);
      assert.equal(byB.data.muted, true);
      assert.equal(byA.data.muted, false);
      assert.equal(byE.data.muted, false);
      // The removed member is told too.
      await http(node, 'DELETE', `/api/v1/conversations/${g.id}/members/frank`, { token: alice.token });
      const gone = await eWs.waitFor(isPush(g.id, 'member_removed'));
      assert.deepEqual([...gone.data.members].sort(), ['alice', 'bob']);
      await bWs.waitFor(isPush(g.id, 'member_removed'));
      // Every frame the node sent was JSON (a bad push used to read {"cmd":"broadcast","data":}).
      for (const c of [aWs, bWs, eWs]) assert.ok(!c.frames.some((f) => 'raw' in f), c.describe());
    } finally {
      await eWs.close();
    }
  });

  // Raw: query parameters and their error codes.
  test('history pages: after_seq, before_seq and limit', async () => {
    const g = await createConversation(node, alice.token, 'group', ['bob'], 'pages');
    for (let i = 1; i <= 7; i++) await aWs.send({ conversation_id: g.id, body: `p${i}`, client_msg_id: `pages-${i}` });
    const all = await history(node, bob.token, g.id);
    assertRange(all.map((m) => m.seq), 1, 7);
    assertRange((await history(node, bob.token, g.id, '?after_seq=3&limit=2')).map((m) => m.seq), 4, 5);
    assertRange((await history(node, bob.token, g.id, '?before_seq=6&limit=3')).map((m) => m.seq), 3, 5);
    assert.deepEqual(await history(node, bob.token, g.id, '?after_seq=7'), []);
    assertHttpError(await http(node, 'GET', `/api/v1/conversations/${g.id}/messages?limit=0`, { token: bob.token }), 400, 'bad_request');
    assertHttpError(await http(node, 'GET', `/api/v1/conversations/${g.id}/messages?after_seq=x`, { token: bob.token }), 400, 'bad_request');
    assertHttpError(await http(node, 'GET', '/api/v1/conversations/99999/messages', { token: bob.token }), 404, 'not_found');
  });

  // The HTTP send is raw (status code, ack body); its delivery is checked through the SDK.
  test('HTTP send: stored, acked with seq, delivered live like a WebSocket send', async () => {
    const g = await createConversation(node, bob.token, 'group', ['alice', 'carol'], 'http');
    const r = await http(node, 'POST', `/api/v1/conversations/${g.id}/messages`, {
      token: bob.token,
      json: { body: 'over http', client_msg_id: 'http-1' },
    });
    assert.equal(r.status, 201);
    assert.equal(r.json.seq, 1);
    assert.equal(r.json.conversation_id, g.id);
    assert.equal(r.json.duplicate, false);
    assert.equal(r.json.client_msg_id, 'http-1');
    // Everyone's SDK devices get it live, the sender's included.
    for (const d of [aPhone, aLaptop, cSdk, bSdk]) {
      const m = await d.waitForMsg(g.id, 1);
      assert.equal(m.body, 'over http');
      assert.equal(m.type, 'text');
      assert.equal(m.client_msg_id, 'http-1');
      assert.deepEqual(d.got.filter((x) => x.m.conversation_id === g.id).map((x) => x.source), ['live'], d.label);
    }
  });

  // Raw: envelope details (request ids, numeric conversation ids, frames before `ready`).
  test('envelope details: ids echoed as sent, numeric conversation ids, frames sent before `ready` wait for it', async () => {
    const g = await createConversation(node, alice.token, 'group', ['bob'], 'envelope');
    // Integer ids come back as integers, string ids as strings; data may be omitted.
    aWs.sendJson({ cmd: 'ping', id: 7 });
    const pong = await aWs.waitFor((f) => f.cmd === 'pong' && f.id === 7);
    assert.equal(typeof pong.data.ts, 'number');
    // conversation_id as a JSON number is accepted; replies carry it as a string.
    const ack = await aWs.send({ conversation_id: Number(g.id), body: 'numeric id' });
    assert.equal(ack.conversation_id, g.id);
    // With the token in the URL a client may send at once: commands wait for authentication.
    const early = await WsClient.connect(node, { token: bob.token, ready: false });
    try {
      early.sendJson({ cmd: 'ping', id: 'e1' });
      early.sendJson({ cmd: 'msg', id: 'e2', data: { conversation_id: g.id, body: 'early bird', client_msg_id: 'early-1' } });
      const reply = await early.waitFor((f) => f.id === 'e2');
      assert.equal(reply.cmd, 'ack');
      const order = early.frames.map((f) => f.cmd + (f.id ? `:${f.id}` : ''));
      assert.ok(order.indexOf('ready') >= 0 && order.indexOf('ready') < order.indexOf('pong:e1'), order.join(' '));
    } finally {
      await early.close();
    }
  });

  // Raw: status and error codes.
  test('mute is per member and shows in the conversation list', async () => {
    const g = await createConversation(node, alice.token, 'group', ['bob'], 'mute');
    const r = await http(node, 'POST', `/api/v1/conversations/${g.id}/mute`, { token: bob.token, json: { muted: true } });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { muted: true });
    const bl = await http(node, 'GET', '/api/v1/conversations', { token: bob.token });
    assert.equal(bl.json.conversations.find((c) => c.id === g.id).muted, true);
    const al = await http(node, 'GET', '/api/v1/conversations', { token: alice.token });
    assert.equal(al.json.conversations.find((c) => c.id === g.id).muted, false);
    assertHttpError(await http(node, 'POST', `/api/v1/conversations/${g.id}/mute`, { token: bob.token, json: { muted: 'yes' } }), 400, 'bad_request');
  });
});
