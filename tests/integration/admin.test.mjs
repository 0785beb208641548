// Admin: admin-only registration, user management, events to one user, broadcasts to everyone
// online; and the node's /healthz and /metrics.
//
// Events and broadcasts are received through the SDK (clients/js, lib/sdk.mjs) as its 'event' and
// 'broadcast' events, with the exact frames checked off the wire too. Everything else here is the
// wire contract and stays raw (lib/http.mjs, lib/ws.mjs): who may call what (status and error
// codes), an unauthenticated connection, the metrics.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { assertHttpError } from './lib/check.mjs';
import { createConversation, http, login, makeUser, metrics } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { closeDevices, sdkDevice } from './lib/sdk.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const h = useNode({
  flags: ['--registration', 'admin-only', '--admin-user', 'root', '--admin-password', 'root-secret'],
});

describe('admin', () => {
  let node;
  let root; // admin token
  let alice;
  let bob;
  const clients = [];

  before(async () => {
    node = await h.ready;
    root = await login(node, 'root', 'console', { password: 'root-secret' });
  });

  after(async () => {
    closeDevices();
    await closeAll(clients);
  });

  // Raw: status and error codes.
  test('admin-only registration: POST /api/v1/users is refused with 403 and creates nobody', async () => {
    assertHttpError(
      await http(node, 'POST', '/api/v1/users', { json: { user_id: 'mallory', password: 'x' } }),
      403,
      'forbidden',
    );
    assertHttpError(
      await http(node, 'POST', '/api/v1/login', { json: { user_id: 'mallory', password: 'x', device_id: 'd' } }),
      401,
      'unauthorized',
    );
    const list = await http(node, 'GET', '/api/v1/admin/users', { token: root });
    assert.equal(list.status, 200);
    assert.ok(!list.json.users.some((u) => u.user_id === 'mallory'));
  });

  test('the admin creates users (and admins) through /api/v1/admin/users', async () => {
    alice = await makeUser(node, 'alice', ['phone', 'laptop'], { adminToken: root });
    bob = await makeUser(node, 'bob', ['d1'], { adminToken: root });
    const r = await http(node, 'POST', '/api/v1/admin/users', {
      token: root,
      json: { user_id: 'ops', name: 'Operations', password: 'ops-pw', admin: true },
    });
    assert.equal(r.status, 201);
    assert.deepEqual({ ...r.json, created_at: 0 }, { user_id: 'ops', name: 'Operations', admin: true, created_at: 0 });
    assertHttpError(
      await http(node, 'POST', '/api/v1/admin/users', { token: root, json: { user_id: 'alice', password: 'again' } }),
      409,
      'conflict',
    );
    const list = await http(node, 'GET', '/api/v1/admin/users', { token: root });
    const ids = list.json.users.map((u) => u.user_id);
    for (const id of ['root', 'alice', 'bob', 'ops']) assert.ok(ids.includes(id), id);
    assert.equal(list.json.users.find((u) => u.user_id === 'root').admin, true);
    assert.equal(list.json.users.find((u) => u.user_id === 'alice').admin, false);
    const me = await http(node, 'GET', '/api/v1/me', { token: await login(node, 'ops', 'x', { password: 'ops-pw' }) });
    assert.equal(me.json.admin, true);
    // A user's public profile.
    const u = await http(node, 'GET', '/api/v1/users/alice', { token: bob.token });
    assert.deepEqual(u.json, { user_id: 'alice', name: 'alice' });
    assertHttpError(await http(node, 'GET', '/api/v1/users/nobody', { token: bob.token }), 404, 'not_found');
  });

  // Raw: status and error codes.
  test('non-admins get 403 on every admin call', async () => {
    for (const [method, path, json] of [
      ['POST', '/api/v1/admin/users', { user_id: 'x1', password: 'x' }],
      ['GET', '/api/v1/admin/users', undefined],
      ['POST', '/api/v1/admin/events', { user_id: 'bob', data: { a: 1 } }],
      ['POST', '/api/v1/admin/broadcast', { data: { a: 1 } }],
    ])
      assertHttpError(await http(node, method, path, { token: alice.token, json }), 403, 'forbidden');
    assertHttpError(await http(node, 'POST', '/api/v1/admin/broadcast', { json: { data: {} } }), 401, 'unauthorized');
  });

  test('an event reaches every device of its user only; a broadcast reaches everyone online', async () => {
    const aPhone = await sdkDevice(node, 'alice', 'phone');
    const aLaptop = await sdkDevice(node, 'alice', 'laptop');
    const bSdk = await sdkDevice(node, 'bob', 'd1');
    const rootSdk = await sdkDevice(node, 'root', 'console', { password: 'root-secret' });
    const anon = await WsClient.connect(node, {}); // raw, not authenticated: gets nothing
    clients.push(anon);

    try {
      const ev = await http(node, 'POST', '/api/v1/admin/events', {
        token: root,
        json: { user_id: 'alice', data: { kind: 'policy', text: 'please update' } },
      });
      assert.equal(ev.status, 202);
      assert.deepEqual(ev.json, { queued: true });
      for (const d of [aPhone, aLaptop]) {
        const data = await d.waitForEvent();
        assert.deepEqual(data, { kind: 'policy', text: 'please update' });
        // The frame itself, as it came off the wire.
        assert.deepEqual(d.frames().find((x) => x.cmd === 'event'), {
          cmd: 'event',
          data: { kind: 'policy', text: 'please update' },
        });
      }

      const bc = await http(node, 'POST', '/api/v1/admin/broadcast', {
        token: root,
        json: { data: { kind: 'maintenance', at: '02:00' } },
      });
      assert.equal(bc.status, 202);
      for (const d of [aPhone, aLaptop, bSdk, rootSdk]) {
        const data = await d.waitForBroadcast();
        assert.deepEqual(data, { kind: 'maintenance', at: '02:00' });
        assert.deepEqual(d.frames().find((x) => x.cmd === 'broadcast'), {
          cmd: 'broadcast',
          data: { kind: 'maintenance', at: '02:00' },
        });
        assert.equal(d.broadcasts.length, 1, `${d.label}: one broadcast`);
      }
      for (const d of [aPhone, aLaptop]) assert.equal(d.events.length, 1, `${d.label}: one event`);
      // Notices are fanned out in order per network thread, so bob, who has the broadcast, would
      // have had alice's event before it.
      assert.deepEqual(bSdk.events, [], 'bob got no event');
      assert.ok(!bSdk.frames().some((f) => f.cmd === 'event'), 'bob got no event frame');
      assert.deepEqual(rootSdk.events, [], 'root got no event');
      assert.ok(!rootSdk.frames().some((f) => f.cmd === 'event'), 'root got no event frame');
      // The unauthenticated connection: the notices were queued before this ping was read.
      const pong = await anon.request('ping', {});
      assert.equal(pong.data.code, 'unauthorized');
      assert.ok(!anon.frames.some((f) => f.cmd === 'event' || f.cmd === 'broadcast'));
      // Notices are not chat messages: nothing stored anywhere.
      assert.deepEqual(await aPhone.client.listConversations(), []);
      assert.deepEqual(aPhone.got, []);
    } finally {
      // Closed here: the metrics test below counts open WebSockets.
      closeDevices(aPhone, aLaptop, bSdk, rootSdk);
    }
  });

  // Raw: status and error codes.
  test('bad notices: unknown user 404, data not an object 400, malformed JSON 400', async () => {
    assertHttpError(
      await http(node, 'POST', '/api/v1/admin/events', { token: root, json: { user_id: 'ghost', data: {} } }),
      404,
      'not_found',
    );
    assertHttpError(
      await http(node, 'POST', '/api/v1/admin/events', { token: root, json: { user_id: 'alice', data: 'hi' } }),
      400,
      'bad_request',
    );
    assertHttpError(await http(node, 'POST', '/api/v1/admin/events', { token: root, json: { data: {} } }), 400, 'bad_request');
    assertHttpError(await http(node, 'POST', '/api/v1/admin/broadcast', { token: root, json: {} }), 400, 'bad_request');
    assertHttpError(
      await http(node, 'POST', '/api/v1/admin/broadcast', { token: root, body: '{"data":', headers: { 'Content-Type': 'application/json' } }),
      400,
      'bad_json',
    );
  });
});

describe('health and metrics', () => {
  test('/healthz answers 200 {"status":"ok"} without a token', async () => {
    const r = await http(h.node, 'GET', '/healthz');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { status: 'ok' });
  });

  // Polls the ws_connections gauge until it reads `want` (a session is counted until the node
  // has seen its socket close, which can be a moment after the client's close event).
  async function wsGauge(node, want) {
    const deadline = Date.now() + 3000;
    let v;
    do {
      v = (await metrics(node)).values.converge_ws_connections;
      if (v === want) break;
      await new Promise((r) => setTimeout(r, 20)); // polling for a state change, not for absence
    } while (Date.now() < deadline);
    return v;
  }

  // Raw: the counters count frames, duplicates and refusals as they are on the wire.
  test('/metrics is Prometheus text and its counters move', async () => {
    const node = h.node;
    assert.equal(await wsGauge(node, 0), 0, 'no WebSocket left from the tests before');
    const m0 = await metrics(node);
    assert.match(m0.contentType, /^text\/plain; version=0\.0\.4/);
    assert.match(m0.text, /# TYPE converge_messages_stored_total counter/);
    assert.match(m0.text, /# TYPE converge_ws_connections gauge/);
    assert.match(m0.text, /# TYPE converge_store_commit_seconds histogram/);
    assert.match(m0.text, /converge_store_commit_seconds_bucket\{le="\+Inf"\} \d+/);
    assert.match(m0.text, /# TYPE converge_store_maintain_seconds histogram/);
    for (const name of [
      'converge_ws_connections',
      'converge_http_requests_total',
      'converge_messages_in_total',
      'converge_messages_stored_total',
      'converge_messages_duplicate_total',
      'converge_messages_rejected_total',
      'converge_messages_out_total',
      'converge_notices_out_total',
      'converge_errors_total',
      'converge_heartbeat_timeouts_total',
    ])
      assert.equal(typeof m0.values[name], 'number', name);

    const root = await login(node, 'root', 'metrics', { password: 'root-secret' });
    const x = await makeUser(node, 'mx', ['d1'], { adminToken: root });
    const y = await makeUser(node, 'my', ['d1'], { adminToken: root });
    const conv = (await createConversation(node, x.token, 'direct', ['my'])).id;
    const xWs = await WsClient.connect(node, { token: x.token });
    const yWs = await WsClient.connect(node, { token: y.token });
    try {
      const m1 = await metrics(node);
      assert.equal(m1.values.converge_ws_connections, 2);
      await xWs.send({ conversation_id: conv, body: 'one', client_msg_id: 'mx-1' });
      await xWs.send({ conversation_id: conv, body: 'two', client_msg_id: 'mx-2' });
      await xWs.send({ conversation_id: conv, body: 'two', client_msg_id: 'mx-2' }); // duplicate
      const bad = await xWs.request('msg', { conversation_id: conv, body: 5 });
      assert.equal(bad.cmd, 'error');
      await yWs.waitForMsg(conv, 2);
      await xWs.waitForMsg(conv, 2);
      const m2 = await metrics(node);
      const d = (k) => m2.values[k] - m1.values[k];
      assert.equal(d('converge_messages_stored_total'), 2);
      assert.equal(d('converge_messages_duplicate_total'), 1);
      assert.equal(d('converge_messages_in_total'), 3);
      assert.ok(d('converge_messages_rejected_total') >= 1);
      assert.ok(d('converge_messages_out_total') >= 4, 'two messages to two devices');
      assert.ok(d('converge_errors_total') >= 1);
      assert.ok(d('converge_http_requests_total') >= 1);
      assert.ok(d('converge_store_commit_seconds_count') >= 1);
    } finally {
      await closeAll(xWs, yWs);
    }
    // The gauge goes back down once both are closed.
    assert.equal(await wsGauge(node, 0), 0);
  });
});
