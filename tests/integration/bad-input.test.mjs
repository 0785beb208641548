// Bad input (DESIGN.md section 4): every bad frame or request gets a clear error, nothing is
// stored, a recoverable connection keeps working, and other clients never notice.
//
// Each WebSocket case: alice's connection sends the bad frame and gets an `error` frame with the
// expected code; then the same connection sends a good message whose seq must be exactly one
// more than before (so nothing was stored in between), and bob, another client, receives it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { assertHttpError, assertWsError } from './lib/check.mjs';
import { createConversation, heartbeatHttp, history, http, lastSeq, makeUser, sendHttp } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const MAX_BODY = 256;
const MAX_FRAME = 4096;
const MAX_HTTP_BODY = 4096;
const MAX_FILE = 8192;
const h = useNode({
  flags: [
    '--max-body-bytes', String(MAX_BODY),
    '--max-frame-bytes', String(MAX_FRAME),
    '--max-http-body-bytes', String(MAX_HTTP_BODY),
    '--max-file-bytes', String(MAX_FILE),
  ],
});

let node;
let alice;
let bob;
let carol;
let conv; // alice + bob
let carolsConv; // carol + bob: alice is no member
let aWs;
let bWs;
let goodCount = 0;

before(async () => {
  node = await h.ready;
  alice = await makeUser(node, 'alice', ['d1', 'd2', 'd3']);
  bob = await makeUser(node, 'bob');
  carol = await makeUser(node, 'carol');
  conv = (await createConversation(node, alice.token, 'group', ['bob'], 'bad input')).id;
  carolsConv = (await createConversation(node, carol.token, 'direct', ['bob'])).id;
  aWs = await WsClient.connect(node, { token: alice.token });
  bWs = await WsClient.connect(node, { token: bob.token });
});

after(() => closeAll(aWs, bWs));

// The connection still works, nothing was stored since `before`, another client is unaffected.
async function assertRecovered(client, beforeSeq) {
  const id = `good-${++goodCount}`;
  const ack = await client.send({ conversation_id: conv, body: id, client_msg_id: id });
  assert.equal(ack.seq, beforeSeq + 1, 'nothing was stored by the bad input');
  const got = await bWs.waitForMsg(conv, beforeSeq + 1);
  assert.equal(got.data.body, id);
}

// Sends `raw` on alice's connection; returns the first error frame that follows.
async function sendBad(raw, opts = {}) {
  const from = aWs.mark();
  aWs.sendRaw(raw, opts);
  return aWs.waitFor((f) => f.cmd === 'error', { from, label: `error for ${String(raw).slice(0, 60)}` });
}

const msg = (data, id = 'bad-1') => JSON.stringify({ cmd: 'msg', id, data });

describe('WebSocket: bad frames get an error, store nothing, and the connection goes on', () => {
  const cases = [
    // [name, frame, code, id echoed in the error (undefined: none expected)]
    ['malformed JSON', '{"cmd":"msg","id":"m1","data":{"conversation_id":', 'bad_json'],
    ['not JSON at all', 'hello there', 'bad_json'],
    ['empty text frame', '', 'bad_json'],
    ['JSON array', '[{"cmd":"ping"}]', 'bad_json'],
    ['JSON string', '"msg"', 'bad_json'],
    ['JSON number', '42', 'bad_json'],
    ['JSON null', 'null', 'bad_json'],
    ['unknown cmd', '{"cmd":"frobnicate","id":"u1","data":{}}', 'unknown_cmd', 'u1'],
    ['missing cmd', '{"id":"c1","data":{}}', 'bad_request'],
    ['cmd not a string', '{"cmd":7,"id":"c2"}', 'bad_request'],
    ['id an object', '{"cmd":"ping","id":{"a":1}}', 'bad_request'],
    ['token not a string', '{"cmd":"ping","id":"t1","token":5}', 'bad_request'],
    ['conversation_id an object', () => msg({ conversation_id: { id: conv }, body: 'x' }, 'w1'), 'bad_request', 'w1'],
    ['conversation_id an array', () => msg({ conversation_id: [conv], body: 'x' }, 'w2'), 'bad_request', 'w2'],
    ['conversation_id zero', () => msg({ conversation_id: 0, body: 'x' }, 'w3'), 'bad_request', 'w3'],
    ['conversation_id negative', () => msg({ conversation_id: -4, body: 'x' }, 'w4'), 'bad_request', 'w4'],
    ['conversation_id not numeric', () => msg({ conversation_id: 'abc', body: 'x' }, 'w5'), 'bad_request', 'w5'],
    ['conversation_id missing', () => msg({ body: 'x' }, 'w6'), 'bad_request', 'w6'],
    ['body a number', () => msg({ conversation_id: conv, body: 12345 }, 'w7'), 'bad_request', 'w7'],
    ['body an object', () => msg({ conversation_id: conv, body: { text: 'x' } }, 'w8'), 'bad_request', 'w8'],
    ['type "video"', () => msg({ conversation_id: conv, type: 'video', body: 'x' }, 'w9'), 'bad_request', 'w9'],
    ['type a number', () => msg({ conversation_id: conv, type: 1, body: 'x' }, 'w10'), 'bad_request', 'w10'],
    ['client_msg_id a number', () => msg({ conversation_id: conv, body: 'x', client_msg_id: 7 }, 'w11'), 'bad_request', 'w11'],
    ['text without a body', () => msg({ conversation_id: conv, type: 'text' }, 'w12'), 'bad_request', 'w12'],
    ['text with an empty body', () => msg({ conversation_id: conv, body: '' }, 'w13'), 'bad_request', 'w13'],
    ['body over --max-body-bytes', () => msg({ conversation_id: conv, body: 'x'.repeat(MAX_BODY + 1) }, 'w14'), 'too_large', 'w14'],
    ['not a member of the conversation', () => msg({ conversation_id: carolsConv, body: 'intrude' }, 'w15'), 'forbidden', 'w15'],
    ['unknown conversation', () => msg({ conversation_id: '987654', body: 'x' }, 'w16'), 'not_found', 'w16'],
    ['sync with a bad limit', '{"cmd":"sync","id":"s1","data":{"limit":-1}}', 'bad_request', 's1'],
    ['heartbeat with seqs not an object', '{"cmd":"heartbeat","id":"h1","data":{"seqs":"all"}}', 'bad_request', 'h1'],
    ['heartbeat naming a conversation one is not in', () => `{"cmd":"heartbeat","id":"h2","data":{"seqs":{"${carolsConv}":1}}}`, 'forbidden', 'h2'],
    ['auth again once authenticated', '{"cmd":"auth","id":"a1","data":{"token":"whatever"}}', 'bad_request', 'a1'],
  ];
  for (const [name, frame, code, id] of cases) {
    test(`${name} -> ${code}`, async () => {
      const beforeSeq = await lastSeq(node, alice.token, conv);
      const carolsBefore = await lastSeq(node, carol.token, carolsConv);
      const err = await sendBad(typeof frame === 'function' ? frame() : frame);
      assertWsError(err, code);
      if (id !== undefined) assert.equal(err.id, id, 'the request id is echoed');
      assert.equal(await lastSeq(node, carol.token, carolsConv), carolsBefore);
      await assertRecovered(aWs, beforeSeq);
    });
  }

  // RFC 6455 section 8.1: a text message that is not UTF-8 fails the connection with 1007.
  // On a connection of its own (alice's third device), since it ends that connection.
  test('a text frame that is not UTF-8 -> close 1007; nothing stored; others unaffected', async () => {
    const beforeSeq = await lastSeq(node, alice.token, conv);
    const c = await WsClient.connect(node, { token: alice.tokens.d3 });
    c.ws.send(Buffer.from(`{"cmd":"msg","data":{"conversation_id":"${conv}","body":"\xff\xfe"}}`, 'latin1'), {
      binary: false,
    });
    const { code } = await c.waitClose();
    assert.equal(code, 1007);
    await assertRecovered(aWs, beforeSeq);
  });

  test('binary frames: not audio -> bad_request; audio for a room not joined -> dropped and counted', async () => {
    const beforeSeq = await lastSeq(node, alice.token, conv);
    // Not an audio frame of docs/protocol.md "Voice rooms": too short, or another kind.
    assertWsError(await sendBad(Buffer.from([1, 0, 0]), { binary: true }), 'bad_request');
    assertWsError(await sendBad(Buffer.from([2, 0, 0, 0, 1, 0, 1, 0xaa]), { binary: true }), 'bad_request');
    // A well-formed frame for a room this connection is not in: no answer (frames are not
    // answered one by one), counted.
    const count = async () => {
      const r = await http(node, 'GET', '/metrics');
      const m = /converge_voice_dropped_total\{reason="not_joined"\} (\d+)/.exec(r.text);
      return m ? Number(m[1]) : 0;
    };
    const dropped = await count();
    const from = aWs.mark();
    aWs.sendRaw(Buffer.from([1, 0, 0, 0, 1, 0, 1, 0xaa]), { binary: true });
    await aWs.ping();
    assert.equal(aWs.frames.slice(from).filter((f) => f.cmd === 'error').length, 0);
    assert.equal(await count(), dropped + 1);
    await assertRecovered(aWs, beforeSeq);
  });

  test(
    'data that is not an object -> bad_request, and the error still carries the request id',
    async () => {
      const beforeSeq = await lastSeq(node, alice.token, conv);
      const err = await sendBad('{"cmd":"msg","id":"d1","data":7}');
      assertWsError(err, 'bad_request');
      assert.equal(err.id, 'd1');
      await assertRecovered(aWs, beforeSeq);
    },
  );

  test('a body just under --max-body-bytes in a frame under --max-frame-bytes is fine', async () => {
    const beforeSeq = await lastSeq(node, alice.token, conv);
    const ack = await aWs.send({ conversation_id: conv, body: 'y'.repeat(MAX_BODY) });
    assert.equal(ack.seq, beforeSeq + 1);
  });

  test('many bad frames in a row do not disturb another client mid-conversation', async () => {
    const beforeSeq = await lastSeq(node, alice.token, conv);
    const chatter = Promise.all(
      Array.from({ length: 20 }, (_, i) => bWs.send({ conversation_id: conv, body: `b${i}`, client_msg_id: `chatter-${i}` })),
    );
    for (let i = 0; i < 50; i++) aWs.sendRaw(i % 2 ? '{nope' : msg({ conversation_id: conv, body: 7 }, `flood-${i}`));
    const acks = await chatter;
    assert.deepEqual(acks.map((a) => a.seq).sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => beforeSeq + 1 + i));
    await aWs.ping();
    await assertRecovered(aWs, beforeSeq + 20);
  });
});

describe('WebSocket: oversize frames close the connection with 1009', () => {
  test('a frame over --max-frame-bytes closes with 1009; nothing stored; others unaffected', async () => {
    const c = await WsClient.connect(node, { token: alice.tokens.d2 });
    const beforeSeq = await lastSeq(node, alice.token, conv);
    c.sendRaw(msg({ conversation_id: conv, body: 'z'.repeat(MAX_FRAME) }, 'big'));
    const { code } = await c.waitClose();
    assert.equal(code, 1009);
    assert.ok(!c.frames.some((f) => f.cmd === 'ack'));
    await assertRecovered(aWs, beforeSeq);
  });

  test('the limit is on the whole message: fragments adding up past it close with 1009', async () => {
    const c = await WsClient.connect(node, { token: alice.tokens.d3 });
    const beforeSeq = await lastSeq(node, alice.token, conv);
    // A fragmented message under the limit is fine...
    const ok = msg({ conversation_id: conv, body: 'in two fragments', client_msg_id: 'frag-ok' }, 'f1');
    const p = c.waitFor((f) => f.id === 'f1');
    c.ws.send(ok.slice(0, 25), { fin: false });
    c.ws.send(ok.slice(25), { fin: true });
    assert.equal((await p).data.seq, beforeSeq + 1);
    // ...two halves that are each under it but not together are not.
    const big = msg({ conversation_id: conv, body: 'q'.repeat(MAX_FRAME) }, 'f2');
    const half = Math.floor(big.length / 2);
    assert.ok(big.length > MAX_FRAME && half < MAX_FRAME && big.length - half < MAX_FRAME);
    c.ws.send(big.slice(0, half), { fin: false });
    c.ws.send(big.slice(half), { fin: true });
    const { code } = await c.waitClose();
    assert.equal(code, 1009);
    await assertRecovered(aWs, beforeSeq + 1);
  });
});

describe('authentication failures', () => {
  test('bad token in ?token= -> error frame, close 4001', async () => {
    const c = await WsClient.connect(node, { token: 'not-a-token', ready: false });
    const { code } = await c.waitClose();
    assert.equal(code, 4001);
    assertWsError(c.frames[0], 'unauthorized');
    assert.ok(!c.frames.some((f) => f.cmd === 'ready'));
  });

  test('bad token in the Authorization header -> close 4001', async () => {
    const c = await WsClient.connect(node, { token: 'deadbeef', auth: 'header', ready: false });
    assert.equal((await c.waitClose()).code, 4001);
  });

  test('bad token in the auth frame -> error with its id, close 4001; a frame without token is refused but kept', async () => {
    const c = await WsClient.connect(node, {});
    assertWsError(await c.request('auth', {}), 'bad_request');
    assertWsError(await c.request('msg', { conversation_id: conv, body: 'x' }), 'unauthorized');
    const r = await c.request('auth', { token: 'wrong' });
    assertWsError(r, 'unauthorized');
    assert.equal((await c.waitClose()).code, 4001);
  });

  test('auth frame and seed-000 per-frame token authenticate', async () => {
    const c = await WsClient.connect(node, {});
    const ready = await c.request('auth', { token: alice.tokens.d2 });
    assert.equal(ready.cmd, 'ready');
    assert.equal(ready.data.device_id, 'd2');
    await c.ping();
    await c.close();
    // DESIGN.md's form: the token at the top level of the auth envelope.
    const t = await WsClient.connect(node, {});
    const r2 = await t.request('auth', undefined, { extra: { token: alice.tokens.d1 } });
    assert.equal(r2.cmd, 'ready');
    assert.equal(r2.data.device_id, 'd1');
    t.sendJson({ cmd: 'ping', id: 'null-data', data: null });
    assert.equal((await t.waitFor((f) => f.id === 'null-data')).cmd, 'pong');
    await t.close();
    const s = await WsClient.connect(node, {});
    const beforeSeq = await lastSeq(node, alice.token, conv);
    s.sendJson({ token: `Tricolor${alice.tokens.d3}`, cmd: 'msg', id: 'seed', data: { conversation_id: conv, body: 'seed style' } });
    const ack = await s.waitFor((f) => f.id === 'seed');
    assert.equal(ack.cmd, 'ack', JSON.stringify(ack));
    assert.equal(ack.data.seq, beforeSeq + 1);
    assert.ok(s.frames.some((f) => f.cmd === 'ready' && f.data.device_id === 'd3'));
    await s.close();
  });

  test('HTTP: no token, bad token -> 401; "Bearer " and "Tricolor" prefixes accepted', async () => {
    assertHttpError(await http(node, 'GET', '/api/v1/conversations'), 401, 'unauthorized');
    assertHttpError(await http(node, 'GET', '/api/v1/conversations', { token: 'nope' }), 401, 'unauthorized');
    assertHttpError(await sendHttp(node, 'nope', conv, { body: 'x' }), 401, 'unauthorized');
    const tri = await http(node, 'GET', '/api/v1/me', { headers: { Authorization: `Tricolor${alice.token}` } });
    assert.equal(tri.status, 200);
    assert.equal(tri.json.user_id, 'alice');
    assertHttpError(
      await http(node, 'POST', '/api/v1/login', { json: { user_id: 'alice', password: 'wrong', device_id: 'x' } }),
      401,
      'unauthorized',
    );
    assertHttpError(
      await http(node, 'POST', '/api/v1/login', { json: { user_id: 'nobody', password: 'wrong', device_id: 'x' } }),
      401,
      'unauthorized',
    );
  });

  test('logout revokes the token for HTTP and WebSocket', async () => {
    const t = await (async () => {
      const r = await http(node, 'POST', '/api/v1/login', { json: { user_id: 'bob', password: 'pw-bob', device_id: 'tmp' } });
      return r.json.token;
    })();
    const out = await http(node, 'POST', '/api/v1/logout', { token: t });
    assert.equal(out.status, 200);
    assertHttpError(await http(node, 'GET', '/api/v1/me', { token: t }), 401, 'unauthorized');
    const c = await WsClient.connect(node, { token: t, ready: false });
    assert.equal((await c.waitClose()).code, 4001);
  });

  test(
    'logout with ?token= revokes that token',
    async () => {
      const r = await http(node, 'POST', '/api/v1/login', { json: { user_id: 'bob', password: 'pw-bob', device_id: 'tmp2' } });
      const t = r.json.token;
      const out = await http(node, 'POST', `/api/v1/logout?token=${t}`);
      assert.equal(out.status, 200);
      assertHttpError(await http(node, 'GET', '/api/v1/me', { token: t }), 401, 'unauthorized');
    },
  );

  test(
    'the Authorization scheme is case-insensitive ("bearer")',
    async () => {
      const r = await http(node, 'GET', '/api/v1/me', { headers: { Authorization: `bearer ${alice.token}` } });
      assert.equal(r.status, 200);
    },
  );

  test('WebSocket upgrade on another path -> 404', async () => {
    await assert.rejects(WsClient.connect(node, { token: alice.token, path: '/websocket' }), /HTTP 404/);
  });
});

describe('HTTP: bad requests', () => {
  const jsonEndpoints = () => [
    ['POST', '/api/v1/users', undefined],
    ['POST', '/api/v1/login', undefined],
    ['POST', '/api/v1/conversations', alice.token],
    ['POST', `/api/v1/conversations/${conv}/messages`, alice.token],
    ['POST', `/api/v1/conversations/${conv}/members`, alice.token],
    ['POST', `/api/v1/conversations/${conv}/mute`, alice.token],
    ['POST', '/api/v1/heartbeat', alice.token],
  ];

  test('malformed JSON bodies -> 400 bad_json on every JSON endpoint; nothing stored', async () => {
    const beforeSeq = await lastSeq(node, alice.token, conv);
    for (const [method, path, token] of jsonEndpoints())
      for (const body of ['{"body":', 'not json', '[1,2]', '"text"', '{"a":1}}'])
        assertHttpError(
          await http(node, method, path, { token, body, headers: { 'Content-Type': 'application/json' } }),
          400,
          'bad_json',
        );
    await assertRecovered(aWs, beforeSeq);
  });

  test('a missing body where one is required -> 400 bad_json', async () => {
    assertHttpError(await http(node, 'POST', '/api/v1/login'), 400, 'bad_json');
    assertHttpError(await http(node, 'POST', `/api/v1/conversations/${conv}/messages`, { token: alice.token }), 400, 'bad_json');
  });

  test('wrong field types on HTTP send -> 400 bad_request; oversize body -> 413; nothing stored', async () => {
    const beforeSeq = await lastSeq(node, alice.token, conv);
    for (const data of [{ body: 5 }, { type: 'video', body: 'x' }, {}, { body: 'x', client_msg_id: [] }, { type: 'image' }])
      assertHttpError(await sendHttp(node, alice.token, conv, data), 400, 'bad_request');
    assertHttpError(await sendHttp(node, alice.token, conv, { body: 'x'.repeat(MAX_BODY + 1) }), 413, 'too_large');
    assertHttpError(await sendHttp(node, alice.token, carolsConv, { body: 'intrude' }), 403, 'forbidden');
    assertHttpError(await sendHttp(node, alice.token, '987654', { body: 'x' }), 404, 'not_found');
    assert.equal(await lastSeq(node, carol.token, carolsConv), 0);
    await assertRecovered(aWs, beforeSeq);
  });

  test(
    'an HTTP body over --max-http-body-bytes -> 413 too_large, nothing stored',
    async () => {
      const beforeSeq = await lastSeq(node, alice.token, conv);
      // A valid send whose JSON is padded past the limit by an ignored field.
      const r = await sendHttp(node, alice.token, conv, { body: 'padded', pad: 'p'.repeat(MAX_HTTP_BODY) });
      assertHttpError(r, 413, 'too_large');
      await assertRecovered(aWs, beforeSeq);
    },
  );

  test('an upload over --max-file-bytes -> 413 too_large', async () => {
    const r = await http(node, 'POST', '/api/v1/files?name=big.bin', {
      token: alice.token,
      body: Buffer.alloc(MAX_FILE + 1, 1),
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    assertHttpError(r, 413, 'too_large');
  });

  test('heartbeat with a conversation one is not in -> 403', async () => {
    assertHttpError(await heartbeatHttp(node, alice.token, { [carolsConv]: 1 }), 403, 'forbidden');
    assertHttpError(await heartbeatHttp(node, alice.token, { nope: 1 }), 400, 'bad_request');
  });

  test('unknown endpoints 404, wrong methods 405, bad ids 404, bad query values 400', async () => {
    assertHttpError(await http(node, 'GET', '/api/v1/nothing-here', { token: alice.token }), 404, 'not_found');
    assertHttpError(await http(node, 'GET', '/api/v2/conversations', { token: alice.token }), 404, 'not_found');
    assert.equal((await http(node, 'PUT', '/api/v1/conversations', { token: alice.token })).status, 405);
    assertHttpError(await http(node, 'GET', '/api/v1/conversations/abc', { token: alice.token }), 404, 'not_found');
    assertHttpError(await http(node, 'GET', '/api/v1/conversations/987654', { token: alice.token }), 404, 'not_found');
    assertHttpError(await http(node, 'GET', `/api/v1/conversations/${conv}/messages?limit=-1`, { token: alice.token }), 400, 'bad_request');
    assertHttpError(await http(node, 'GET', '/api/v1/offline?limit=x', { token: alice.token }), 400, 'bad_request');
  });

  test('registration input is checked', async () => {
    assertHttpError(await http(node, 'POST', '/api/v1/users', { json: { user_id: 'has space', password: 'x' } }), 400, 'bad_request');
    assertHttpError(await http(node, 'POST', '/api/v1/users', { json: { user_id: 'nopw' } }), 400, 'bad_request');
    assertHttpError(await http(node, 'POST', '/api/v1/users', { json: { user_id: 'alice', password: 'x' } }), 409, 'conflict');
    assertHttpError(await http(node, 'POST', '/api/v1/users', { json: { user_id: 5, password: 'x' } }), 400, 'bad_request');
    // No user_id: the node makes one up.
    const r = await http(node, 'POST', '/api/v1/users', { json: { password: 'x', name: 'Anon' } });
    assert.equal(r.status, 201);
    assert.match(r.json.user_id, /^u[0-9a-f]+$/);
    assert.equal(r.json.name, 'Anon');
  });

  test('history of the conversation holds only the good messages', async () => {
    const msgs = await history(node, alice.token, conv, '?limit=1000');
    for (const m of msgs) assert.ok(typeof m.body === 'string' && m.body.length <= MAX_BODY);
    assert.ok(!msgs.some((m) => m.body === 'intrude'));
  });
});
