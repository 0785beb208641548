// Security, the WebSocket side (issue 10 items 3 and 7; /tmp spec "3" and "7").
//
// A raw WebSocket client (lib/raw.mjs RawWs) sends what the `ws` package refuses to send (close
// codes 0/999/1005/5000, close reasons and text that are not UTF-8, fragments cut inside a
// character) and keeps every byte the node sends: each text frame is decoded with a fatal UTF-8
// decoder, so a node that sends one that is not UTF-8 is caught (a browser drops the connection).
//
//   - a text message (single or fragmented) that is not UTF-8: close 1007, nothing stored;
//   - a close reason that is not UTF-8: 1007; an invalid close code: 1002; valid codes echoed;
//   - error messages quoting input (an unknown cmd) stay UTF-8: at most 64 bytes, cut on a
//     character boundary;
//   - the upgrade: `Authorization: <token>` without a scheme answers 401, a Sec-WebSocket-Key
//     that is not base64 of 16 bytes answers 400.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { assertWsError } from './lib/check.mjs';
import { createConversation, lastSeq, makeUser } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { RawWs, randomWsKey, rawUpgrade } from './lib/raw.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const CLOSE_WAIT_MS = 2000;
const h = useNode();

let node;
let alice;
let bob;
let conv;
let aGood; // alice's well-behaved connection (the `ws` package): the "nothing stored" round trip
let bWs; // bob: receives what was stored
let goodCount = 0;
const raws = [];

before(async () => {
  node = await h.ready;
  alice = await makeUser(node, 'alice', ['d1', 'd2']);
  bob = await makeUser(node, 'bob');
  conv = (await createConversation(node, alice.token, 'group', ['bob'], 'ws security')).id;
  aGood = await WsClient.connect(node, { token: alice.tokens.d1 });
  bWs = await WsClient.connect(node, { token: bob.token });
});

after(async () => {
  await Promise.all(raws.map((c) => c.close()));
  await closeAll(aGood, bWs);
});

// A raw connection of alice's second device, authenticated (ready received).
async function rawConn() {
  const c = await RawWs.connect(node, { token: alice.tokens.d2 });
  raws.push(c);
  return c;
}

// Nothing was stored since `beforeSeq`: the next good message is exactly one more, bob gets it.
async function assertNothingStored(beforeSeq) {
  const id = `good-${++goodCount}`;
  const ack = await aGood.send({ conversation_id: conv, body: id, client_msg_id: id });
  assert.equal(ack.seq, beforeSeq + 1, 'nothing was stored by the bad input');
  assert.equal((await bWs.waitForMsg(conv, beforeSeq + 1)).data.body, id);
}

// Every text frame the node sent on `c` was UTF-8, and it kept to RFC 6455.
function assertCleanWire(c) {
  assert.deepEqual(c.badText.map((b) => b.toString('hex')), [], 'text frames that are not UTF-8');
  assert.deepEqual(c.violations, [], 'RFC 6455 violations by the node');
}

// Waits for the node's close frame; its code must be `code`.
async function assertClosedWith(c, code, what) {
  const info = await c.waitClose(CLOSE_WAIT_MS).catch((e) => {
    throw new Error(`${what}: expected close ${code}; ${e.message.slice(0, 300)}`);
  });
  assert.equal(info.frame, true, `${what}: the node must send a close frame (got a bare TCP close)`);
  assert.equal(info.code, code, `${what}: close code ${info.code} (reason ${JSON.stringify(info.reason)})`);
  assertCleanWire(c);
  assert.ok(await c.waitEnd(CLOSE_WAIT_MS), `${what}: the TCP connection ends after the close`);
}

const envelopeWith = (bodyBytes, id = 'u1') =>
  Buffer.concat([
    Buffer.from(`{"cmd":"msg","id":"${id}","data":{"conversation_id":"${conv}","client_msg_id":"${id}","body":"`),
    bodyBytes,
    Buffer.from('"}}'),
  ]);

// ------------------------------------------------------------------------------ item 7: text not UTF-8 -> 1007

describe('a text message that is not UTF-8 closes the connection with 1007; nothing stored', () => {
  const single = [
    ['bytes FF FE', Buffer.from([0xff, 0xfe])],
    ['an overlong encoding (C0 AF)', Buffer.from([0xc0, 0xaf])],
    ['a UTF-8-encoded surrogate (ED A0 80)', Buffer.from([0xed, 0xa0, 0x80])],
    ['a code point above U+10FFFF (F4 90 80 80)', Buffer.from([0xf4, 0x90, 0x80, 0x80])],
    ['a lone continuation byte (80)', Buffer.from([0x61, 0x80, 0x62])],
  ];
  for (const [label, bad] of single) {
    test(`single frame with ${label} -> 1007`, async () => {
      const beforeSeq = await lastSeq(node, alice.token, conv);
      const c = await rawConn();
      c.sendText(envelopeWith(bad));
      await assertClosedWith(c, 1007, label);
      assert.ok(!c.frames.some((f) => f.cmd === 'ack'), 'no ack');
      await assertNothingStored(beforeSeq);
    });
  }

  test('a message that ends inside a character (E2 82) -> 1007', async () => {
    const beforeSeq = await lastSeq(node, alice.token, conv);
    const c = await rawConn();
    c.sendText(Buffer.concat([Buffer.from('{"cmd":"ping","id":"p","x":"'), Buffer.from([0xe2, 0x82])]));
    await assertClosedWith(c, 1007, 'truncated at the end');
    await assertNothingStored(beforeSeq);
  });

  test('fragmented: a valid first fragment, FF in the second -> 1007', async () => {
    const beforeSeq = await lastSeq(node, alice.token, conv);
    const c = await rawConn();
    const all = envelopeWith(Buffer.from([0x68, 0xff, 0x69]), 'f1');
    const cut = all.indexOf(0xff) - 2;
    c.sendText(all.subarray(0, cut), { fin: false });
    c.sendContinuation(all.subarray(cut));
    await assertClosedWith(c, 1007, 'fragmented');
    assert.ok(!c.frames.some((f) => f.cmd === 'ack'), 'no ack');
    await assertNothingStored(beforeSeq);
  });

  test('fragmented: an invalid sequence across the fragment boundary (E2 82 | 28) -> 1007', async () => {
    const beforeSeq = await lastSeq(node, alice.token, conv);
    const c = await rawConn();
    const all = envelopeWith(Buffer.from([0xe2, 0x82, 0x28]), 'f2');
    const cut = all.indexOf(0xe2) + 2;
    c.sendText(all.subarray(0, cut), { fin: false });
    c.sendContinuation(all.subarray(cut, cut + 3), { fin: false });
    c.sendContinuation(all.subarray(cut + 3));
    await assertClosedWith(c, 1007, 'across fragments');
    await assertNothingStored(beforeSeq);
  });

  test('fragments cut inside valid characters are fine (é split C3 | A9, an emoji over three fragments)', async () => {
    const beforeSeq = await lastSeq(node, alice.token, conv);
    const c = await rawConn();
    const body = 'café 😀';
    const all = envelopeWith(Buffer.from(body), 'f3');
    const e = all.indexOf(Buffer.from('é')) + 1; // between C3 and A9
    const emoji = all.indexOf(Buffer.from('😀'));
    c.sendText(all.subarray(0, e), { fin: false });
    c.sendContinuation(all.subarray(e, emoji + 1), { fin: false });
    c.sendContinuation(all.subarray(emoji + 1, emoji + 3), { fin: false });
    c.sendContinuation(all.subarray(emoji + 3));
    const ack = await c.waitFor((f) => f.id === 'f3', { label: 'ack of the fragmented message' });
    assert.equal(ack.cmd, 'ack', JSON.stringify(ack));
    assert.equal(ack.data.seq, beforeSeq + 1);
    assert.equal((await bWs.waitForMsg(conv, beforeSeq + 1)).data.body, body);
    await c.ping();
    assertCleanWire(c);
  });
});

// ------------------------------------------------------------------------------ item 7: close frames

describe('close frames: a reason that is not UTF-8 -> 1007, an invalid code -> 1002, valid codes echoed', () => {
  test('close 1000 with reason FF FE -> 1007', async () => {
    const c = await rawConn();
    c.sendClose(1000, Buffer.from([0x62, 0x79, 0xff, 0xfe]));
    await assertClosedWith(c, 1007, 'reason not UTF-8');
  });

  test('close 1000 with a UTF-8 reason ("bye é") is echoed as 1000', async () => {
    const c = await rawConn();
    c.sendClose(1000, Buffer.from('bye é'));
    await assertClosedWith(c, 1000, 'UTF-8 reason');
  });

  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]) {
    test(`close code ${code} -> 1002`, async () => {
      const c = await rawConn();
      c.sendClose(code);
      await assertClosedWith(c, 1002, `code ${code}`);
    });
  }

  for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]) {
    test(`close code ${code} is echoed`, async () => {
      const c = await rawConn();
      c.sendClose(code, Buffer.from('x'));
      await assertClosedWith(c, code, `code ${code}`);
    });
  }
});

// ------------------------------------------------------------------------------ item 3: UTF-8 out

// The longest prefix of `s` (whole characters) whose UTF-8 is at most `max` bytes.
function utf8Prefix(s, max) {
  let out = '';
  for (const ch of s) {
    if (Buffer.byteLength(out + ch) > max) break;
    out += ch;
  }
  return out;
}

describe('error messages that quote input are UTF-8, at most 64 bytes of it, cut on a character boundary', () => {
  const cmds = [
    ['200 two-byte characters (the spec\'s "ééé…")', 'é'.repeat(200)],
    ['"x" then 200 two-byte characters (64 bytes falls inside one)', 'x' + 'é'.repeat(200)],
    ['100 three-byte characters', '€'.repeat(100)],
    ['"ab" then 50 four-byte characters', 'ab' + '😀'.repeat(50)],
    ['ASCII then CJK', 'abcde' + '日本語'.repeat(40)],
  ];
  for (const [label, cmd] of cmds) {
    test(`unknown cmd of ${label} -> unknown_cmd, UTF-8, quoting the longest whole-character prefix <= 64 bytes`, async () => {
      const c = await rawConn();
      const from = c.mark();
      c.sendJson({ cmd, id: 'q1', data: {} });
      const f = await c.waitFor((x) => x.id === 'q1' || x.invalidUtf8, { from, label: 'the error' });
      assertCleanWire(c);
      assertWsError(f, 'unknown_cmd', 'q1');
      const want = utf8Prefix(cmd, 64);
      const next = [...cmd][[...want].length];
      assert.ok(f.data.message.includes(want), `quotes the first ${Buffer.byteLength(want)} bytes: ${f.data.message}`);
      assert.ok(!f.data.message.includes(want + next), `quotes no more than 64 bytes: ${f.data.message}`);
      await c.ping();
      assertCleanWire(c);
    });
  }

  test('a lone surrogate escape in a msg body -> bad_json, nothing stored, the connection goes on', async () => {
    const beforeSeq = await lastSeq(node, alice.token, conv);
    const c = await rawConn();
    const from = c.mark();
    c.sendText(`{"cmd":"msg","id":"s1","data":{"conversation_id":"${conv}","body":"\\ud800"}}`);
    assertWsError(await c.waitFor((f) => f.cmd === 'error' || f.invalidUtf8, { from }), 'bad_json');
    await c.ping();
    assertCleanWire(c);
    await assertNothingStored(beforeSeq);
  });
});

// ------------------------------------------------------------------------------ item 7: the upgrade

describe('the upgrade: Authorization needs a scheme, Sec-WebSocket-Key must be base64 of 16 bytes', () => {
  test('Authorization: <token> without a scheme -> HTTP 401 unauthorized, no upgrade', async () => {
    const { response, ws } = await rawUpgrade(node, { auth: 'none', headers: { Authorization: alice.token } });
    ws?.sock.destroy();
    assert.equal(response.status, 401, `got ${response.status} ${response.text ?? ''}`);
    assert.equal(response.json?.error?.code, 'unauthorized', response.text);
  });

  for (const scheme of ['Bearer ', 'bearer ', 'Tricolor', 'Tricolor ']) {
    test(`Authorization: ${JSON.stringify(scheme)}<token> upgrades and authenticates`, async () => {
      const c = await RawWs.connect(node, { auth: 'none', headers: { Authorization: `${scheme}${alice.tokens.d2}` } });
      raws.push(c);
      const ready = await c.waitFor((f) => f.cmd === 'ready', { label: 'ready' });
      assert.equal(ready.data.user_id, 'alice');
      assert.equal(ready.data.device_id, 'd2');
      await c.ping();
      assertCleanWire(c);
    });
  }

  const badKeys = [
    ['"abc"', 'abc'],
    ['24 characters that are not base64', '!!!!!!!!!!!!!!!!!!!!!!!!'],
    ['base64 of 15 bytes', randomBytes(15).toString('base64')],
    ['base64 of 17 bytes', randomBytes(17).toString('base64')],
    ['base64 of 32 bytes', randomBytes(32).toString('base64')],
    ['16 bytes without the padding', randomBytes(16).toString('base64').replace(/=+$/, '')],
    ['a bad character inside', 'AAAAAAAAAAAAAAAAAAAA*A=='],
  ];
  for (const [label, key] of badKeys) {
    test(`Sec-WebSocket-Key ${label} -> 400 bad_request, no upgrade`, async () => {
      const { response, ws } = await rawUpgrade(node, { token: alice.tokens.d2, key });
      ws?.sock.destroy();
      assert.equal(response.status, 400, `got ${response.status} ${response.text ?? ''}`);
      assert.equal(response.json?.error?.code, 'bad_request', response.text);
    });
  }

  test('a random 16-byte key upgrades, with the right Sec-WebSocket-Accept', async () => {
    const c = await RawWs.connect(node, { token: alice.tokens.d2, key: randomWsKey() });
    raws.push(c);
    assert.equal(c.response.status, 101);
    await c.ping();
    assertCleanWire(c);
  });
});
