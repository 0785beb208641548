// Mentions and offline push (issue 13; DESIGN.md section 8; docs/protocol.md, "Offline push").
// A webhook receiver in the test (a local HTTP server, scripted: answer 500, 200, or hang)
// verifies each POST's X-Converge-Signature and records every push. Proofs of absence are round
// trips, not sleeps: a push that must not come is decided together with (or before) one that
// must, so once the second is delivered the first would have been seen.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { assertHttpError, assertWsError } from './lib/check.mjs';
import { createConversation, history, http, lastSeq, makeUser, metrics, sendHttp } from './lib/http.mjs';
import { startNode } from './lib/node.mjs';
import { sleep } from './lib/servers.mjs';
import { PushReceiver as Receiver, SECRET, count, matches } from './lib/webhook.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

// The node's push flags (fast retries for tests), `over` replacing any of them, then `extra`.
function pushFlags(receiver, over = {}, extra = []) {
  const keys = {
    'push-webhook-url': receiver.url,
    'push-webhook-secret': SECRET,
    'push-retry-base-ms': '50',
    'push-retry-cap-ms': '200',
    'push-timeout-ms': '400',
    'push-batch-ms': '20',
    ...over,
  };
  return [...Object.entries(keys).flatMap(([k, v]) => [`--${k}`, v]), ...extra];
}

async function onlineEverywhere(node, token, user) {
  for (let i = 0; i < 200; i++) {
    const r = await http(node, 'GET', `/api/v1/presence?users=${user}`, { token });
    if (r.status === 200 && r.json.presence[0]?.online) return;
    await sleep(10); // presence is attached right after `ready`, on the work pool
  }
  throw new Error(`${user} never showed online`);
}

describe('offline push and mentions (one node)', () => {
  const rx = new Receiver();
  let node;
  let alice;
  let bob;
  let carol;
  let dave;
  const sockets = [];

  before(async () => {
    await rx.start();
    node = await startNode({ flags: pushFlags(rx, {}, ['--admin-user', 'root', '--admin-password', 'root-pw']) });
    alice = await makeUser(node, 'alice');
    bob = await makeUser(node, 'bob');
    carol = await makeUser(node, 'carol');
    dave = await makeUser(node, 'dave');
  });
  after(async () => {
    await closeAll(sockets);
    await node?.stop({ removeData: true });
    await rx.stop();
  });

  test('a 500 is retried, the push delivered once, every POST signed', async () => {
    const c = await createConversation(node, alice.token, 'group', ['bob'], 'first');
    rx.script.push(500);
    const r = await sendHttp(node, alice.token, c.id, { body: 'hello bob', client_msg_id: 'p1' });
    assert.equal(r.status, 201);
    const p = await rx.deliveredPush('bob', c.id, 1);
    assert.deepEqual(Object.keys(p).filter((k) => k !== 'status').sort(),
      ['conversation_id', 'mentioned', 'preview', 'publisher_id', 'publisher_name', 'seq', 'ts', 'type', 'user_id']);
    assert.equal(p.publisher_id, 'alice');
    assert.equal(p.publisher_name, 'alice');
    assert.equal(p.type, 'text');
    assert.equal(p.preview, 'hello bob');
    assert.equal(p.mentioned, false);
    assert.equal(p.ts, r.json.ts);
    // Tried twice (500, then 200), never for alice, the publisher.
    assert.deepEqual(rx.all().filter((x) => matches(x, 'bob', c.id, 1)).map((x) => x.status), [500, 200]);
    assert.equal(rx.all().filter((x) => x.user_id === 'alice').length, 0);
    for (const req of rx.requests) {
      assert.ok(req.signatureOk, `bad signature on ${req.body}`);
      assert.equal(req.method, 'POST');
      assert.equal(req.url, '/hooks/converge?v=1');
      assert.equal(req.headers['content-type'], 'application/json');
    }
    // A later message's push arrives after it, and the first is still delivered once.
    const c2 = await createConversation(node, alice.token, 'group', ['dave'], 'sentinel');
    await sendHttp(node, alice.token, c2.id, { body: 'sentinel' });
    await rx.deliveredPush('dave', c2.id, 1);
    assert.equal(count(rx.delivered(), 'bob', c.id, 1), 1);
    // Counted by the node once a POST returns: bob's by now (dave's POST came after it).
    const m = (await metrics(node)).values;
    assert.ok(m.converge_push_retried_total >= 1);
    assert.ok(m.converge_push_sent_total >= 1);
    assert.ok(m.converge_push_request_failures_total >= 1);
    assert.equal(typeof m.converge_push_queue_depth, 'number');
    assert.equal(m.converge_push_spilled_total, 0);
  });

  test('a receiver that hangs times out and is retried', async () => {
    const c = await createConversation(node, alice.token, 'group', ['carol'], 'hang');
    const before = rx.requests.length;
    rx.script.push('hang');
    await sendHttp(node, alice.token, c.id, { body: 'are you there' });
    await rx.deliveredPush('carol', c.id, 1);
    const mine = rx.requests.slice(before).filter((q) => (q.pushes || []).some((x) => matches(x, 'carol', c.id, 1)));
    assert.deepEqual(mine.map((q) => q.status), ['hang', 200]);
    assert.equal(count(rx.delivered(), 'carol', c.id, 1), 1);
  });

  test('no push to a user with a device online', async () => {
    const ws = await WsClient.connect(node, { token: bob.token });
    sockets.push(ws);
    await onlineEverywhere(node, alice.token, 'bob');
    const c = await createConversation(node, alice.token, 'group', ['bob', 'carol'], 'online');
    await sendHttp(node, alice.token, c.id, { body: 'bob is here' });
    await ws.waitForMsg(c.id, 1);
    // Decided together with bob's: carol's push delivered means bob's would have been seen.
    await rx.deliveredPush('carol', c.id, 1);
    assert.equal(count(rx.all(), 'bob', c.id, 1), 0);
    await ws.close();
  });

  test('a muted conversation is silent, except for mentions', async () => {
    const c = await createConversation(node, alice.token, 'group', ['carol', 'dave'], 'muted');
    const mute = await http(node, 'POST', `/api/v1/conversations/${c.id}/mute`, { token: carol.token, json: { muted: true } });
    assert.equal(mute.status, 200);
    assert.equal((await sendHttp(node, alice.token, c.id, { body: 'plain' })).status, 201); // seq 1
    assert.equal((await sendHttp(node, alice.token, c.id, { body: 'hey @carol', mentions: ['CAROL'] })).status, 201); // seq 2
    const p2 = await rx.deliveredPush('carol', c.id, 2);
    assert.equal(p2.mentioned, true);
    assert.equal(p2.preview, 'hey @carol');
    await rx.deliveredPush('dave', c.id, 1); // not muted: both
    const d2 = await rx.deliveredPush('dave', c.id, 2);
    assert.equal(d2.mentioned, false);
    assert.equal(count(rx.all(), 'carol', c.id, 1), 0, 'muted, not mentioned: no push');
    // "all" by the owner reaches through mute too.
    assert.equal((await sendHttp(node, alice.token, c.id, { body: 'everyone', mentions: ['all'] })).status, 201);
    assert.equal((await rx.deliveredPush('carol', c.id, 3)).mentioned, true);
    assert.equal((await rx.deliveredPush('dave', c.id, 3)).mentioned, true);
    // Stored and delivered with the message.
    const h = await history(node, alice.token, c.id);
    assert.equal(h[0].mentions, undefined);
    assert.deepEqual(h[1].mentions, ['carol']);
    assert.deepEqual(h[2].mentions, ['all']);
  });

  test('mentions travel on the live stream (WebSocket send and delivery)', async () => {
    const c = await createConversation(node, alice.token, 'group', ['bob'], 'ws');
    const a = await WsClient.connect(node, { token: alice.token });
    const b = await WsClient.connect(node, { token: bob.token });
    sockets.push(a, b);
    const ack = await a.send({ conversation_id: c.id, body: 'hi @bob', mentions: ['bob'] });
    assert.equal(ack.seq, 1);
    const m = await b.waitForMsg(c.id, 1);
    assert.deepEqual(m.data.mentions, ['bob']);
    await closeAll(a, b);
  });

  test('bad mentions answer the documented error and store nothing', async () => {
    const c = await createConversation(node, alice.token, 'group', ['bob', 'carol'], 'bad');
    const before = await lastSeq(node, alice.token, c.id);
    const cases = [
      [alice, { body: 'x', mentions: 'bob' }, 400, 'bad_request'], // not a list
      [alice, { body: 'x', mentions: { bob: true } }, 400, 'bad_request'],
      [alice, { body: 'x', mentions: [42] }, 400, 'bad_request'],
      [alice, { body: 'x', mentions: ['no such!'] }, 400, 'bad_request'],
      [alice, { body: 'x', mentions: ['dave'] }, 400, 'bad_request'], // not a member
      [alice, { body: 'x', mentions: ['all', 'bob'] }, 400, 'bad_request'], // all goes alone
      [alice, { body: 'x', mentions: Array.from({ length: 51 }, (_, i) => `u${i}`) }, 413, 'too_large'],
      [bob, { body: 'x', mentions: ['all'] }, 403, 'forbidden'], // not the owner
    ];
    for (const [who, data, status, code] of cases) {
      const r = await sendHttp(node, who.token, c.id, data);
      assertHttpError(r, status, code);
    }
    const ws = await WsClient.connect(node, { token: bob.token });
    sockets.push(ws);
    assertWsError(await ws.request('msg', { conversation_id: c.id, body: 'x', mentions: 'alice' }), 'bad_request');
    assertWsError(await ws.request('msg', { conversation_id: c.id, body: 'x', mentions: ['all'] }), 'forbidden');
    assertWsError(await ws.request('msg', { conversation_id: c.id, body: 'x', mentions: ['dave'] }), 'bad_request');
    await ws.close();
    assert.equal(await lastSeq(node, alice.token, c.id), before, 'nothing stored');
    assert.equal((await history(node, alice.token, c.id)).length, 0);
    // Fifty is the limit, and a mention of oneself is harmless.
    const ok = await sendHttp(node, alice.token, c.id, { body: 'ok', mentions: ['alice', 'bob'] });
    assert.equal(ok.status, 201);
    assert.equal(ok.json.seq, before + 1);
  });

  test('what a user sends cannot break the push JSON or its signature', async () => {
    const c = await createConversation(node, alice.token, 'group', ['dave'], 'evil');
    const evil = '"}],"pushes":[{"user_id":"mallory"}]}\\u0000 \u202Egnp.exe\n\t\u0007 ' + '\u{1F600}'.repeat(150);
    const r = await sendHttp(node, alice.token, c.id, { body: evil });
    assert.equal(r.status, 201);
    const p = await rx.deliveredPush('dave', c.id, 1);
    const req = rx.requests.find((q) => q.status === 200 && (q.pushes || []).some((x) => matches(x, 'dave', c.id, 1)));
    assert.ok(req.signatureOk);
    assert.equal(rx.all().filter((x) => x.user_id === 'mallory').length, 0);
    assert.equal([...p.preview].length, 100, 'the preview is 100 characters, none split');
    const blanked = evil.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, ' ');
    assert.equal(p.preview, [...blanked].slice(0, 100).join(''));
    assert.ok(!/[\u0000-\u001f\u007f\u202e]/.test(p.preview), 'no control or bidi characters');
  });

  test('dead letters are for admins only', async () => {
    const r = await http(node, 'GET', '/api/v1/admin/push/dead-letters', { token: alice.token });
    assertHttpError(r, 403, 'forbidden');
    const root = (await http(node, 'POST', '/api/v1/login', { json: { user_id: 'root', password: 'root-pw' } })).json.token;
    const ok = await http(node, 'GET', '/api/v1/admin/push/dead-letters', { token: root });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json.dead_letters, []);
    assertHttpError(await http(node, 'GET', '/api/v1/admin/push/dead-letters?limit=0', { token: root }), 400, 'bad_request');
  });
});

describe('offline push: retries exhausted', () => {
  const rx = new Receiver({ fallback: 500 });
  let node;

  before(async () => {
    await rx.start();
    node = await startNode({
      flags: pushFlags(rx, { 'push-retry-max': '2' }, ['--admin-user', 'root', '--admin-password', 'root-pw']),
    });
  });
  after(async () => {
    await node?.stop({ removeData: true });
    await rx.stop();
  });

  test('a push still undelivered after push_retry_max tries is a dead letter, listed to admins', async () => {
    const alice = await makeUser(node, 'alice');
    await makeUser(node, 'bob');
    const c = await createConversation(node, alice.token, 'group', ['bob'], 'doomed');
    await sendHttp(node, alice.token, c.id, { body: 'nobody hears this' });
    const root = (await http(node, 'POST', '/api/v1/login', { json: { user_id: 'root', password: 'root-pw' } })).json.token;
    let dead = [];
    for (let i = 0; i < 300 && dead.length === 0; i++) {
      const r = await http(node, 'GET', '/api/v1/admin/push/dead-letters', { token: root });
      assert.equal(r.status, 200);
      dead = r.json.dead_letters;
      if (dead.length === 0) await sleep(20); // polling the listing: the third state after two POSTs
    }
    assert.equal(dead.length, 1);
    const d = dead[0];
    assert.equal(d.attempts, 2);
    assert.equal(d.last_error, 'HTTP 500');
    assert.equal(typeof d.dead_at, 'number');
    assert.equal(d.push.user_id, 'bob');
    assert.equal(d.push.conversation_id, String(c.id));
    assert.equal(d.push.seq, 1);
    assert.equal(d.push.preview, 'nobody hears this');
    assert.equal(count(rx.all(), 'bob', c.id, 1), 2, 'two tries, no more');
    assertHttpError(await http(node, 'GET', '/api/v1/admin/push/dead-letters', { token: alice.token }), 403, 'forbidden');
    const m = (await metrics(node)).values;
    assert.equal(m.converge_push_dead_letters_total, 1);
  });
});

describe('offline push across a crash and a restart', () => {
  const rx = new Receiver({ fallback: 500 });
  let node;

  before(async () => {
    await rx.start();
    // A long batch window: messages sent right before the kill were never tried.
    node = await startNode({
      flags: pushFlags(rx, { 'push-batch-ms': '1500', 'push-retry-base-ms': '200', 'push-retry-cap-ms': '400', 'push-retry-max': '50' }),
    });
  });
  after(async () => {
    await node?.stop({ removeData: true });
    await rx.stop();
  });

  test('pending pushes survive: none lost, none doubled', async () => {
    const alice = await makeUser(node, 'alice');
    await makeUser(node, 'bob');
    await makeUser(node, 'carol');
    const c1 = await createConversation(node, alice.token, 'group', ['bob', 'carol'], 'one');
    const c2 = await createConversation(node, alice.token, 'group', ['bob'], 'two');
    // Tried and failed (pending in the store)...
    for (let i = 0; i < 3; i++) assert.equal((await sendHttp(node, alice.token, c1.id, { body: `early ${i}` })).status, 201);
    await rx.until(() => [1, 2, 3].every((s) => count(rx.all(), 'bob', c1.id, s) >= 1), { label: 'first tries' });
    // ...and never tried (only in the outbox) when the node dies.
    for (let i = 0; i < 3; i++) assert.equal((await sendHttp(node, alice.token, c2.id, { body: `late ${i}` })).status, 201);
    await node.kill();
    const triedBefore = rx.all().filter((p) => p.conversation_id === String(c2.id)).length;
    assert.equal(triedBefore, 0, 'the late ones were never tried before the crash');
    assert.equal(rx.delivered().length, 0);

    rx.fallback = 200;
    await node.start();
    const want = [
      ...[1, 2, 3].flatMap((s) => [['bob', c1.id, s], ['carol', c1.id, s]]),
      ...[1, 2, 3].map((s) => ['bob', c2.id, s]),
    ];
    for (const [u, c, s] of want) await rx.deliveredPush(u, c, s);
    // A message after the restart is pushed after them; then each was delivered exactly once.
    assert.equal((await sendHttp(node, alice.token, c2.id, { body: 'after' })).status, 201);
    await rx.deliveredPush('bob', c2.id, 4);
    for (const [u, c, s] of want) assert.equal(count(rx.delivered(), u, c, s), 1, `${u} ${c}:${s} once`);
    assert.equal(rx.delivered().length, want.length + 1);
    for (const req of rx.requests) assert.ok(req.signatureOk);

    // A clean restart with nothing pending sends nothing again.
    const before = rx.requests.length;
    await node.restart();
    const c3 = await createConversation(node, alice.token, 'group', ['carol'], 'three');
    await sendHttp(node, alice.token, c3.id, { body: 'last' });
    await rx.deliveredPush('carol', c3.id, 1);
    assert.equal(rx.requests.slice(before).flatMap((r) => r.pushes).length, 1);
  });
});

describe('offline push: configuration', () => {
  test('a webhook URL the node cannot use, or one without a secret, stops it at start (exit 2)', async () => {
    for (const flags of [
      ['--push-webhook-url', 'https://push.example/hook', '--push-webhook-secret', SECRET],
      ['--push-webhook-url', 'http://user:pw@127.0.0.1:9/hook', '--push-webhook-secret', SECRET],
      ['--push-webhook-url', 'ftp://127.0.0.1/hook', '--push-webhook-secret', SECRET],
      ['--push-webhook-url', 'http://127.0.0.1:9/hook'],
      ['--push-webhook-url', 'http://127.0.0.1:9/hook', '--push-webhook-secret', 'short'],
    ]) {
      await assert.rejects(startNode({ flags }), (e) => /code 2\b/.test(e.message) && /push_webhook/.test(e.message), flags.join(' '));
    }
  });
});
