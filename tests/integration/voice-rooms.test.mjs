// Voice rooms on one node (seed 001; docs/protocol.md "Voice rooms", DESIGN.md section 7): the
// HTTP rooms API, the room.* commands and their events, and audio as binary WebSocket frames
// relayed to every other member with the sender's member_no stamped, in order, never back to the
// sender; drops (muted, not joined, malformed, throttled) counted in /metrics by reason.
//
// Absence ("nothing reached X") is proven with a later frame or event in the same fan-out
// order, never by sleeping: a sender's frames and events reach one connection in the order the
// node handled them, so once a later one from the same sender is in, an earlier one would be too.
// For a connection that is no longer in the room, that later frame goes through a second room
// both are in (the "marker" room).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { assertHttpError, assertWsError } from './lib/check.mjs';
import { http, login, register } from './lib/http.mjs';
import { startNode, useNode } from './lib/node.mjs';
import { WsClient, audioFrame, audioOf, binaryMark, closeAll, sendAudio, waitForAudio } from './lib/ws.mjs';

const FLAGS = ['--rate-register-address', '0'];
const h = useNode({ flags: FLAGS });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let userNo = 0;
// A registered user with one token per device.
async function user(prefix, devices = ['d1'], node = h.node) {
  const id = `${prefix}${++userNo}`;
  await register(node, id);
  const tokens = [];
  for (const d of devices) tokens.push(await login(node, id, d));
  return { id, token: tokens[0], tokens };
}

const connect = (u, i = 0, node = h.node) => WsClient.connect(node, { token: u.tokens[i] });

async function createRoom(token, body = {}, node = h.node) {
  const r = await http(node, 'POST', '/api/v1/rooms', { token, json: body });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

async function getRoom(token, id, node = h.node) {
  const r = await http(node, 'GET', `/api/v1/rooms/${id}`, { token });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

const membersOf = async (token, id, node = h.node) => (await getRoom(token, id, node)).members;
// The members without `speaking`, which flips by itself 300 ms after someone's last frame.
const stateOf = async (token, id, node = h.node) =>
  (await membersOf(token, id, node)).map(({ speaking: _s, ...m }) => m);

async function listRooms(token, query = '', node = h.node) {
  const r = await http(node, 'GET', `/api/v1/rooms${query}`, { token });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

// Every room, following `next`.
async function allRooms(token) {
  const out = [];
  let after = 0;
  for (;;) {
    const page = await listRooms(token, `?after=${after}&limit=1000`);
    out.push(...page.rooms);
    if (page.next === undefined) return out;
    after = page.next;
  }
}

// room.join, which must succeed; returns the reply's data.
async function join(ws, roomId) {
  const r = await ws.request('room.join', { room_id: roomId });
  assert.equal(r.cmd, 'room.join', `room.join ${roomId}: ${JSON.stringify(r)}`);
  return r.data;
}

// converge_voice_dropped_total{reason} and the other voice counters, from /metrics.
async function voiceMetrics(node = h.node) {
  const r = await http(node, 'GET', '/metrics');
  assert.equal(r.status, 200);
  const out = { dropped: {} };
  for (const m of r.text.matchAll(/^converge_voice_dropped_total\{reason="([a-z_]+)"\} (\d+)$/gm))
    out.dropped[m[1]] = Number(m[2]);
  for (const name of ['frames_in_total', 'frames_out_total', 'frames_remote_total', 'members']) {
    const m = new RegExp(`^converge_voice_${name} (\\d+)$`, 'm').exec(r.text);
    out[name] = m ? Number(m[1]) : undefined;
  }
  return out;
}

// A payload of `n` bytes that tells its sender and seq apart.
function payloadOf(sender, seq, n = 80) {
  const b = Buffer.alloc(n);
  for (let k = 0; k < n; k++) b[k] = (sender * 31 + seq * 7 + k) & 0xff;
  return b;
}

// Sends `count` frames paced like Opus (one per `everyMs`), seqs from `firstSeq` (u16, wrapping).
async function talk(ws, roomId, { sender = 0, count = 50, firstSeq = 0, everyMs = 20, size = 80 } = {}) {
  const seqs = [];
  for (let i = 0; i < count; i++) {
    const seq = (firstSeq + i) & 0xffff;
    sendAudio(ws, roomId, seq, payloadOf(sender, seq, size));
    // When the last one went out (not enumerable: `seqs` still deep-equals a plain array).
    Object.defineProperty(seqs, 'lastAt', { value: Date.now(), configurable: true, writable: true });
    seqs.push(seq);
    if (everyMs) await sleep(everyMs);
  }
  return seqs;
}

// A room.send from `ws` to everyone else in `roomId`, which `others` wait for: once it is in,
// whatever `ws` sent to the room before it would be in too.
let markNo = 0;
async function roundTrip(ws, roomId, others) {
  const body = `mark-${++markNo}`;
  const r = await ws.request('room.send', { room_id: roomId, body });
  assert.equal(r.cmd, 'room.send', JSON.stringify(r));
  await Promise.all(
    others.map((o) => o.waitFor((f) => f.cmd === 'room.message' && f.data.body === body, { label: body })),
  );
}

// A frame from `ws` in the marker room, which `listener` waits for (see the file's comment).
async function markerFrame(ws, markerRoom, listener) {
  const seq = 40000 + ++markNo;
  sendAudio(ws, markerRoom, seq, Buffer.from('marker'));
  await waitForAudio(listener, (f) => f.roomId === markerRoom && f.seq === seq, 1, { label: `marker ${seq}` });
}

const eventsOf = (ws, cmd, roomId, from = 0) =>
  ws.frames.slice(from).filter((f) => f.cmd === cmd && f.data?.room_id === roomId).map((f) => f.data);

test('rooms over HTTP: create, list, get, delete; bad values and ids refused, nothing changed', async () => {
  const owner = await user('ho');
  const other = await user('hx');
  const t0 = Date.now();
  const a = await createRoom(owner.token, { name: 'Lobby ☕', max_members: 5 });
  assert.ok(Number.isInteger(a.room_id) && a.room_id > 0 && a.room_id < 2 ** 32, JSON.stringify(a));
  assert.equal(a.id, a.room_id);
  assert.equal(a.name, 'Lobby ☕');
  assert.equal(a.owner, owner.id);
  assert.equal(a.max_members, 5);
  assert.equal(a.member_count, 0);
  assert.ok(a.created_at >= t0 - 1000 && a.created_at <= Date.now() + 1000, `created_at ${a.created_at}`);
  const b = await createRoom(owner.token, {});
  assert.equal(b.name, 'room');
  assert.equal(b.max_members, 50);
  assert.ok(b.room_id > a.room_id);
  const max = await createRoom(other.token, { name: 'x'.repeat(256), max_members: 1000 });
  assert.equal(max.name.length, 256);
  assert.equal(max.max_members, 1000);

  // The list, by id, and its pages.
  const all = await allRooms(owner.token);
  const ids = all.map((r) => r.room_id);
  assert.deepEqual(ids, [...ids].sort((x, y) => x - y));
  for (const r of [a, b, max]) {
    const listed = all.find((x) => x.room_id === r.room_id);
    assert.deepEqual(listed, r, 'listed as created');
  }
  const p1 = await listRooms(owner.token, `?after=${a.room_id - 1}&limit=1`);
  assert.deepEqual(p1.rooms.map((r) => r.room_id), [a.room_id]);
  assert.equal(p1.next, a.room_id);
  const p2 = await listRooms(owner.token, `?after=${p1.next}&limit=2`);
  assert.deepEqual(p2.rooms.map((r) => r.room_id), [b.room_id, max.room_id]);

  const got = await getRoom(other.token, a.room_id);
  assert.deepEqual(got, { ...a, members: [] });

  // Refusals, each with the room list unchanged.
  const before = await allRooms(owner.token);
  const refused = [
    [{ max_members: 0 }, 400, 'bad_request'],
    [{ max_members: 100000 }, 400, 'bad_request'],
    [{ max_members: 1001 }, 400, 'bad_request'],
    [{ max_members: -1 }, 400, 'bad_request'],
    [{ max_members: 'ten' }, 400, 'bad_request'],
    [{ name: 'x'.repeat(257) }, 413, 'too_large'],
    [{ name: 'é'.repeat(129) }, 413, 'too_large'], // 258 bytes
    [{ name: 42 }, 400, 'bad_request'],
  ];
  for (const [body, status, code] of refused) {
    const r = await http(h.node, 'POST', '/api/v1/rooms', { token: owner.token, json: body });
    assertHttpError(r, status, code);
  }
  const noAuth = await http(h.node, 'POST', '/api/v1/rooms', { json: { name: 'anon' } });
  assertHttpError(noAuth, 401, 'unauthorized');
  assertHttpError(await http(h.node, 'GET', '/api/v1/rooms'), 401, 'unauthorized');
  assertHttpError(await http(h.node, 'GET', '/api/v1/rooms?limit=0', { token: owner.token }), 400, 'bad_request');
  assertHttpError(await http(h.node, 'GET', '/api/v1/rooms?limit=1001', { token: owner.token }), 400, 'bad_request');
  for (const id of ['999999', 'abc', '0', '-1', '4294967296', '1.5', String(2 ** 53)]) {
    assertHttpError(await http(h.node, 'GET', `/api/v1/rooms/${id}`, { token: owner.token }), 404, 'not_found');
    assertHttpError(await http(h.node, 'DELETE', `/api/v1/rooms/${id}`, { token: owner.token }), 404, 'not_found');
  }
  assert.deepEqual(await allRooms(owner.token), before, 'no refusal made or changed a room');

  // Only the owner deletes.
  assertHttpError(await http(h.node, 'DELETE', `/api/v1/rooms/${a.room_id}`, { token: other.token }), 403, 'forbidden');
  assert.deepEqual(await getRoom(owner.token, a.room_id), { ...a, members: [] }, 'still there');
  const del = await http(h.node, 'DELETE', `/api/v1/rooms/${a.room_id}`, { token: owner.token });
  assert.equal(del.status, 200, del.text);
  assert.deepEqual(del.json, { room_id: a.room_id });
  assertHttpError(await http(h.node, 'GET', `/api/v1/rooms/${a.room_id}`, { token: owner.token }), 404, 'not_found');
  assertHttpError(await http(h.node, 'DELETE', `/api/v1/rooms/${a.room_id}`, { token: owner.token }), 404, 'not_found');
  assert.deepEqual(
    (await allRooms(owner.token)).map((r) => r.room_id),
    before.map((r) => r.room_id).filter((id) => id !== a.room_id),
  );
});

test('room.join answers with me and members; the others get room.joined, the joiner does not', async () => {
  const owner = await user('jo');
  const [u1, u2, u3] = [await user('ja'), await user('jb'), await user('jc')];
  const room = (await createRoom(owner.token, { name: 'join' })).room_id;
  const [w1, w2, w3] = [await connect(u1), await connect(u2), await connect(u3)];
  try {
    const r1 = await join(w1, room);
    assert.equal(r1.room_id, room);
    assert.equal(r1.name, 'join');
    assert.equal(r1.owner, owner.id);
    assert.ok(Number.isInteger(r1.me) && r1.me > 0);
    assert.deepEqual(r1.members, [{ user_id: u1.id, member_no: r1.me, muted: false, speaking: false }]);
    assert.equal(r1.member_count, 1);

    const m2 = w2.mark();
    const r2 = await join(w2, room);
    assert.ok(r2.me > r1.me, `numbers grow: ${r1.me} then ${r2.me}`);
    assert.deepEqual(r2.members, [
      { user_id: u1.id, member_no: r1.me, muted: false, speaking: false },
      { user_id: u2.id, member_no: r2.me, muted: false, speaking: false },
    ]);
    const j2 = await w1.waitFor((f) => f.cmd === 'room.joined' && f.data.user_id === u2.id);
    assert.deepEqual(j2.data, { room_id: room, user_id: u2.id, member_no: r2.me, muted: false });

    const r3 = await join(w3, room);
    assert.ok(r3.me > r2.me);
    for (const w of [w1, w2]) {
      const j3 = await w.waitFor((f) => f.cmd === 'room.joined' && f.data.user_id === u3.id);
      assert.deepEqual(j3.data, { room_id: room, user_id: u3.id, member_no: r3.me, muted: false });
    }
    // u2 got u3's joining and never its own; u3 gets a later event and never its own joining.
    assert.deepEqual(eventsOf(w2, 'room.joined', room, m2).map((d) => d.user_id), [u3.id]);
    await roundTrip(w1, room, [w2, w3]);
    assert.deepEqual(eventsOf(w3, 'room.joined', room), []);
    assert.deepEqual(eventsOf(w1, 'room.joined', room).map((d) => d.user_id), [u2.id, u3.id]);

    const want = [
      { user_id: u1.id, member_no: r1.me, muted: false, speaking: false },
      { user_id: u2.id, member_no: r2.me, muted: false, speaking: false },
      { user_id: u3.id, member_no: r3.me, muted: false, speaking: false },
    ];
    assert.deepEqual(await membersOf(owner.token, room), want);
    const listed = (await listRooms(owner.token, `?after=${room - 1}&limit=1`)).rooms[0];
    assert.equal(listed.member_count, 3);

    // Joining again on the same connection changes nothing.
    const again = await join(w1, room);
    assert.equal(again.me, r1.me);
    assert.deepEqual(await membersOf(owner.token, room), want);

    // Refusals: nothing changed.
    const bad = [
      [{ room_id: 999999 }, 'not_found'],
      [{ room_id: 0 }, 'bad_request'],
      [{ room_id: -3 }, 'bad_request'],
      [{ room_id: 2 ** 32 }, 'bad_request'],
      [{ room_id: 'abc' }, 'bad_request'],
      [{ room_id: 1.5 }, 'bad_request'],
      [{ room_id: null }, 'bad_request'],
      [{}, 'bad_request'],
    ];
    const outsider = await user('jd');
    const wo = await connect(outsider);
    try {
      for (const [data, code] of bad) {
        const r = await wo.request('room.join', data);
        assertWsError(r, code);
      }
      assertWsError(await wo.request('room.join'), 'bad_request');
      assertWsError(await wo.request('room.leave', { room_id: room }), 'not_found');
      assertWsError(await wo.request('room.leave', { room_id: 999999 }), 'not_found');
      assertWsError(await wo.request('room.mute', { room_id: room, muted: true }), 'not_found');
      assertWsError(await wo.request('room.send', { room_id: room, body: 'not in it' }), 'not_found');
      await wo.ping();
    } finally {
      await wo.close();
    }
    assert.deepEqual(await membersOf(owner.token, room), want);
  } finally {
    await closeAll(w1, w2, w3);
  }
});

test('four members each sending 50 frames: every other member gets every frame, in order, stamped', async () => {
  const owner = await user('fo');
  const us = [await user('fa'), await user('fb'), await user('fc'), await user('fd')];
  const room = (await createRoom(owner.token, { name: 'four' })).room_id;
  const ws = [];
  try {
    for (const u of us) ws.push(await connect(u));
    const nos = [];
    for (const w of ws) nos.push((await join(w, room)).me);
    assert.equal(new Set(nos).size, 4, `distinct member numbers ${nos}`);
    assert.deepEqual((await membersOf(owner.token, room)).map((m) => m.member_no), nos);
    const m0 = await voiceMetrics();
    const marks = ws.map(binaryMark);
    // Sender 0 starts near the top of u16, so its seqs wrap: they pass through as sent.
    const firsts = [65510, 0, 1000, 30000];
    const sent = await Promise.all(ws.map((w, i) => talk(w, room, { sender: i, firstSeq: firsts[i] })));
    for (let i = 0; i < 4; i++) {
      const got = await waitForAudio(ws[i], (f) => f.roomId === room, 150, {
        from: marks[i],
        timeout: 10000,
        label: `member ${i}: 150 frames`,
      });
      for (let j = 0; j < 4; j++) {
        const fromJ = got.filter((f) => f.memberNo === nos[j]);
        if (j === i) {
          assert.equal(fromJ.length, 0, `member ${i} got none of its own frames`);
          continue;
        }
        assert.deepEqual(fromJ.map((f) => f.seq), sent[j], `member ${i} has sender ${j}'s frames in order`);
        for (const f of fromJ) assert.ok(f.payload.equals(payloadOf(j, f.seq)), `payload of ${j}:${f.seq} intact`);
      }
      assert.equal(got.length, 150);
    }
    // Frame bytes exactly as the contract lays them out.
    const raw = ws[1].binary.slice(marks[1]).find((b) => b.readUInt32BE(5) === nos[0]);
    const p = payloadOf(0, 65510);
    const want = Buffer.alloc(11 + 80);
    want[0] = 1;
    want.writeUInt32BE(room, 1);
    want.writeUInt32BE(nos[0], 5);
    want.writeUInt16BE(65510, 9);
    p.copy(want, 11);
    assert.ok(raw.equals(want), `first frame of sender 0: ${raw.toString('hex')}`);
    // No more than that: a later event from each sender comes after all its frames.
    for (let i = 0; i < 4; i++) await roundTrip(ws[i], room, ws.filter((_, k) => k !== i));
    for (let i = 0; i < 4; i++) assert.equal(audioOf(ws[i], room, { from: marks[i] }).length, 150);
    const m1 = await voiceMetrics();
    assert.equal(m1.frames_in_total - m0.frames_in_total, 200);
    assert.equal(m1.frames_out_total - m0.frames_out_total, 600);
    assert.equal(m1.members, m0.members, 'members gauge unchanged while they stay');
    for (const [r, n] of Object.entries(m1.dropped)) assert.equal(n, m0.dropped[r], `no ${r} drops`);
  } finally {
    await closeAll(ws);
  }
});

test('room.leave: others get room.left reason left, nothing more reaches the leaver', async () => {
  const owner = await user('lo');
  const [a, b, l] = [await user('la'), await user('lb'), await user('ll')];
  const room = (await createRoom(owner.token)).room_id;
  const marker = (await createRoom(owner.token)).room_id;
  const [wa, wb, wl] = [await connect(a), await connect(b), await connect(l)];
  try {
    const na = (await join(wa, room)).me;
    const nb = (await join(wb, room)).me;
    const nl = (await join(wl, room)).me;
    await join(wa, marker);
    await join(wl, marker);
    await talk(wa, room, { count: 3, everyMs: 0 });
    await waitForAudio(wl, (f) => f.roomId === room, 3);

    const left = await wl.request('room.leave', { room_id: room });
    assert.deepEqual(left, { cmd: 'room.leave', id: left.id, data: { room_id: room } });
    for (const w of [wa, wb]) {
      const ev = await w.waitFor((f) => f.cmd === 'room.left' && f.data.user_id === l.id);
      assert.deepEqual(ev.data, { room_id: room, user_id: l.id, member_no: nl, reason: 'left' });
    }
    const ml = binaryMark(wl);
    const mb = binaryMark(wb);
    const sent = await talk(wa, room, { count: 10, everyMs: 5, firstSeq: 100 });
    assert.deepEqual(
      (await waitForAudio(wb, (f) => f.roomId === room, 10, { from: mb })).map((f) => f.seq),
      sent,
    );
    await markerFrame(wa, marker, wl);
    assert.deepEqual(audioOf(wl, room, { from: ml }), [], 'the leaver got no frame after leaving');
    // (a may still count as speaking here: compare without it.)
    const stay = [[a.id, na, false], [b.id, nb, false]];
    const now = async () => (await membersOf(owner.token, room)).map((m) => [m.user_id, m.member_no, m.muted]);
    assert.deepEqual(await now(), stay);
    // Leaving again is not_found; nothing changed.
    assertWsError(await wl.request('room.leave', { room_id: room }), 'not_found');
    assert.deepEqual(await now(), stay);
    // Coming back gives a new number: numbers are not given twice in a room.
    const back = await join(wl, room);
    assert.ok(back.me > nl, `rejoined as ${back.me} after ${nl}`);
  } finally {
    await closeAll(wa, wb, wl);
  }
});

test('muted by oneself or by the owner: frames dropped and counted, room.muted events', async () => {
  const owner = await user('mo');
  const [x, y] = [await user('mx'), await user('my')];
  const room = (await createRoom(owner.token)).room_id;
  const marker = (await createRoom(owner.token)).room_id;
  const [wo, wx, wy] = [await connect(owner), await connect(x), await connect(y)];
  try {
    await join(wo, room);
    const nx = (await join(wx, room)).me;
    await join(wy, room);
    await join(wx, marker);
    await join(wy, marker);

    // x mutes themselves.
    const r = await wx.request('room.mute', { room_id: room, muted: true });
    assert.deepEqual(r, { cmd: 'room.mute', id: r.id, data: { room_id: room, muted: true } });
    for (const w of [wo, wy]) {
      const ev = await w.waitFor((f) => f.cmd === 'room.muted' && f.data.user_id === x.id && f.data.muted === true);
      assert.deepEqual(ev.data, { room_id: room, user_id: x.id, muted: true, by: x.id });
    }
    assert.equal((await membersOf(owner.token, room)).find((m) => m.user_id === x.id).muted, true);
    let m0 = await voiceMetrics();
    let my = binaryMark(wy);
    await talk(wx, room, { count: 5, everyMs: 0 });
    await wx.ping(); // the node has seen the five frames
    let m1 = await voiceMetrics();
    assert.equal(m1.dropped.muted - m0.dropped.muted, 5, 'five muted drops');
    assert.equal(wx.frames.filter((f) => f.cmd === 'error').length, 0, 'a muted frame is not answered');
    await markerFrame(wx, marker, wy);
    assert.deepEqual(audioOf(wy, room, { from: my }), [], 'no frame of a muted member');

    // Unmuted: frames flow again.
    const un = await wx.request('room.mute', { room_id: room, muted: false });
    assert.deepEqual(un.data, { room_id: room, muted: false });
    await wy.waitFor((f) => f.cmd === 'room.muted' && f.data.user_id === x.id && f.data.muted === false);
    my = binaryMark(wy);
    sendAudio(wx, room, 7, payloadOf(1, 7));
    const got = await waitForAudio(wy, (f) => f.roomId === room, 1, { from: my });
    assert.equal(got[0].memberNo, nx);
    assert.equal(got[0].seq, 7);

    // A non-owner may not mute another; nothing changed.
    const before = await stateOf(owner.token, room);
    assertWsError(await wy.request('room.mute_member', { room_id: room, user_id: x.id, muted: true }), 'forbidden');
    assertWsError(await wo.request('room.mute_member', { room_id: 999999, user_id: x.id, muted: true }), 'not_found');
    assertWsError(await wo.request('room.mute_member', { room_id: room, user_id: 'nobody-here', muted: true }), 'not_found');
    assertWsError(await wo.request('room.mute_member', { room_id: room, user_id: x.id, muted: 'yes' }), 'bad_request');
    assertWsError(await wo.request('room.mute_member', { room_id: room, muted: true }), 'bad_request');
    assertWsError(await wx.request('room.mute', { room_id: room, muted: 1 }), 'bad_request');
    assertWsError(await wx.request('room.mute', { room_id: room }), 'bad_request');
    assert.deepEqual(await stateOf(owner.token, room), before);

    // The owner mutes x.
    const om = await wo.request('room.mute_member', { room_id: room, user_id: x.id, muted: true });
    assert.deepEqual(om, { cmd: 'room.mute_member', id: om.id, data: { room_id: room, user_id: x.id, muted: true } });
    for (const w of [wx, wy]) {
      const ev = await w.waitFor((f) => f.cmd === 'room.muted' && f.data.by === owner.id && f.data.muted === true);
      assert.deepEqual(ev.data, { room_id: room, user_id: x.id, muted: true, by: owner.id });
    }
    assert.equal((await membersOf(owner.token, room)).find((m) => m.user_id === x.id).muted, true);
    m0 = await voiceMetrics();
    my = binaryMark(wy);
    await talk(wx, room, { count: 3, everyMs: 0, firstSeq: 50 });
    await wx.ping();
    m1 = await voiceMetrics();
    assert.equal(m1.dropped.muted - m0.dropped.muted, 3);
    await markerFrame(wx, marker, wy);
    assert.deepEqual(audioOf(wy, room, { from: my }), []);
    // And unmutes.
    const ou = await wo.request('room.mute_member', { room_id: room, user_id: x.id, muted: false });
    assert.equal(ou.cmd, 'room.mute_member', JSON.stringify(ou));
    await wx.waitFor((f) => f.cmd === 'room.muted' && f.data.by === owner.id && f.data.muted === false);
    my = binaryMark(wy);
    sendAudio(wx, room, 60, payloadOf(1, 60));
    assert.equal((await waitForAudio(wy, (f) => f.roomId === room, 1, { from: my }))[0].seq, 60);
  } finally {
    await closeAll(wo, wx, wy);
  }
});

test('a full room refuses the next joiner with room_full; a member moving connections is no new member', async () => {
  const owner = await user('ro');
  const [a, b, c] = [await user('ra', ['d1', 'd2']), await user('rb'), await user('rc')];
  const room = (await createRoom(owner.token, { max_members: 2 })).room_id;
  const [wa, wb, wc] = [await connect(a), await connect(b), await connect(c)];
  let wa2;
  try {
    const na = (await join(wa, room)).me;
    await join(wb, room);
    const before = await membersOf(owner.token, room);
    const r = await wc.request('room.join', { room_id: room });
    assertWsError(r, 'room_full', r.id);
    assert.deepEqual(await membersOf(owner.token, room), before, 'nobody joined');
    assert.equal((await listRooms(owner.token, `?after=${room - 1}&limit=1`)).rooms[0].member_count, 2);
    // a's second device takes a's place in the full room.
    wa2 = await connect(a, 1);
    const moved = await join(wa2, room);
    assert.equal(moved.me, na);
    assert.deepEqual(await membersOf(owner.token, room), before);
    // Once someone leaves, c gets in.
    assert.equal((await wb.request('room.leave', { room_id: room })).cmd, 'room.leave');
    const rc = await join(wc, room);
    assert.deepEqual(rc.members.map((m) => m.user_id), [a.id, c.id]);
  } finally {
    await closeAll(wa, wa2, wb, wc);
  }
});

test('room.remove: the removed member gets room.left removed, cannot rejoin, and their frames are dropped', async () => {
  const owner = await user('xo');
  const [v, l] = [await user('xv', ['d1', 'd2']), await user('xl')];
  const room = (await createRoom(owner.token)).room_id;
  const marker = (await createRoom(l.token)).room_id;
  const [wo, wv, wl] = [await connect(owner), await connect(v), await connect(l)];
  let wv2;
  try {
    await join(wo, room);
    const nv = (await join(wv, room)).me;
    await join(wl, room);
    await join(wv, marker);
    await join(wl, marker);

    // Only the owner removes; nothing changed.
    const before = await membersOf(owner.token, room);
    assertWsError(await wl.request('room.remove', { room_id: room, user_id: v.id }), 'forbidden');
    assertWsError(await wl.request('room.remove', { room_id: room, user_id: owner.id }), 'forbidden');
    assertWsError(await wo.request('room.remove', { room_id: 999999, user_id: v.id }), 'not_found');
    assertWsError(await wo.request('room.remove', { room_id: room }), 'bad_request');
    assert.deepEqual(await membersOf(owner.token, room), before);

    const r = await wo.request('room.remove', { room_id: room, user_id: v.id });
    assert.deepEqual(r, { cmd: 'room.remove', id: r.id, data: { room_id: room, user_id: v.id } });
    for (const w of [wv, wo, wl]) {
      const ev = await w.waitFor((f) => f.cmd === 'room.left' && f.data.user_id === v.id);
      assert.deepEqual(ev.data, { room_id: room, user_id: v.id, member_no: nv, reason: 'removed' });
    }
    const after = before.filter((m) => m.user_id !== v.id);
    assert.deepEqual(await membersOf(owner.token, room), after);

    // Not again, from any connection of theirs.
    const again = await wv.request('room.join', { room_id: room });
    assertWsError(again, 'forbidden', again.id);
    wv2 = await connect(v, 1);
    assertWsError(await wv2.request('room.join', { room_id: room }), 'forbidden');
    assert.deepEqual(await membersOf(owner.token, room), after);

    // Their frames go nowhere (not joined any more).
    const m0 = await voiceMetrics();
    const ml = binaryMark(wl);
    const mo = binaryMark(wo);
    await talk(wv, room, { count: 4, everyMs: 0 });
    await wv.ping();
    const m1 = await voiceMetrics();
    assert.equal(m1.dropped.not_joined - m0.dropped.not_joined, 4);
    await markerFrame(wv, marker, wl);
    assert.deepEqual(audioOf(wl, room, { from: ml }), []);
    await roundTrip(wl, room, [wo]);
    assert.deepEqual(audioOf(wo, room, { from: mo }), []);
    // The owner may not remove themselves (they leave); other rooms are not affected.
    assertWsError(await wo.request('room.remove', { room_id: room, user_id: owner.id }), 'bad_request');
    assert.deepEqual(await membersOf(owner.token, room), after);
    assert.deepEqual((await membersOf(owner.token, marker)).map((m) => m.user_id), [v.id, l.id]);
  } finally {
    await closeAll(wo, wv, wv2, wl);
  }
});

test('room.send: to every other member, or to one with `to`', async () => {
  const owner = await user('so');
  const [a, b, c] = [await user('sa'), await user('sb'), await user('sc')];
  const room = (await createRoom(owner.token)).room_id;
  const [wa, wb, wc] = [await connect(a), await connect(b), await connect(c)];
  try {
    for (const w of [wa, wb, wc]) await join(w, room);
    const body = { kind: 'chat', text: 'hello ☕', n: [1, 2, 3] };
    const r = await wa.request('room.send', { room_id: room, body });
    assert.deepEqual(r, { cmd: 'room.send', id: r.id, data: { room_id: room } });
    for (const w of [wb, wc]) {
      const m = await w.waitFor((f) => f.cmd === 'room.message');
      assert.deepEqual(m.data, { room_id: room, from: a.id, body });
    }
    // To one: only c gets it.
    const r2 = await wa.request('room.send', { room_id: room, to: c.id, body: 'just you' });
    assert.equal(r2.cmd, 'room.send', JSON.stringify(r2));
    const m2 = await wc.waitFor((f) => f.cmd === 'room.message' && f.data.body === 'just you');
    assert.deepEqual(m2.data, { room_id: room, from: a.id, to: c.id, body: 'just you' });
    // A later message to all reaches b after what a sent before: b never had "just you".
    await wa.request('room.send', { room_id: room, body: 'after' });
    await wb.waitFor((f) => f.cmd === 'room.message' && f.data.body === 'after');
    assert.deepEqual(eventsOf(wb, 'room.message', room).map((d) => d.body), [body, 'after']);
    // The sender gets none of its own: b's message to a comes after a's sends.
    await wb.request('room.send', { room_id: room, to: a.id, body: 'to a' });
    await wa.waitFor((f) => f.cmd === 'room.message' && f.data.body === 'to a');
    assert.deepEqual(eventsOf(wa, 'room.message', room).map((d) => d.body), ['to a']);
    // Every JSON value is a body.
    for (const v of [0, false, 'x', [null], { deep: { er: true } }]) {
      assert.equal((await wb.request('room.send', { room_id: room, to: c.id, body: v })).cmd, 'room.send');
      const got = await wc.waitFor((f) => f.cmd === 'room.message' && f.data.from === b.id && JSON.stringify(f.data.body) === JSON.stringify(v));
      assert.deepEqual(got.data.body, v);
    }
    // 16 KiB serialized is the limit.
    const max = 'y'.repeat(16384 - 2);
    assert.equal((await wa.request('room.send', { room_id: room, to: b.id, body: max })).cmd, 'room.send');
    await wb.waitFor((f) => f.cmd === 'room.message' && f.data.body === max);
    // Refusals, answered and delivered to no one.
    const mb = wb.mark();
    const mc = wc.mark();
    assertWsError(await wa.request('room.send', { room_id: room, to: owner.id, body: 'x' }), 'not_found');
    assertWsError(await wa.request('room.send', { room_id: room, to: 'nobody-at-all', body: 'x' }), 'not_found');
    assertWsError(await wa.request('room.send', { room_id: room, body: 'y'.repeat(16384) }), 'too_large');
    assertWsError(await wa.request('room.send', { room_id: room }), 'bad_request');
    assertWsError(await wa.request('room.send', { room_id: room, body: null }), 'bad_request');
    assertWsError(await wa.request('room.send', { room_id: room, to: 42, body: 'x' }), 'bad_request');
    assertWsError(await wa.request('room.send', { room_id: 999999, body: 'x' }), 'not_found');
    await wa.request('room.send', { room_id: room, body: 'last' });
    await wb.waitFor((f) => f.cmd === 'room.message' && f.data.body === 'last', { from: mb });
    await wc.waitFor((f) => f.cmd === 'room.message' && f.data.body === 'last', { from: mc });
    assert.deepEqual(eventsOf(wb, 'room.message', room, mb).map((d) => d.body), ['last']);
    assert.deepEqual(eventsOf(wc, 'room.message', room, mc).map((d) => d.body), ['last']);
  } finally {
    await closeAll(wa, wb, wc);
  }
});

test('malformed binary frames: an error frame (bad_request), counted, and the connection goes on', async () => {
  const owner = await user('bo');
  const [a, b] = [await user('ba'), await user('bb')];
  const room = (await createRoom(owner.token)).room_id;
  const [wa, wb] = [await connect(a), await connect(b)];
  try {
    const na = (await join(wa, room)).me;
    await join(wb, room);
    const mb = binaryMark(wb);
    const m0 = await voiceMetrics();
    const bad = [
      ['empty', Buffer.alloc(0)],
      ['too short', Buffer.from([1, 0, 0])],
      ['a header and no payload', audioFrame(room, 1, Buffer.alloc(0))],
      ['wrong kind byte', audioFrame(room, 2, payloadOf(0, 2), { kind: 2 })],
      ['kind 0', audioFrame(room, 3, payloadOf(0, 3), { kind: 0 })],
      ['payload over 4000', audioFrame(room, 4, Buffer.alloc(4001, 5))],
    ];
    for (const [what, buf] of bad) {
      const from = wa.mark();
      wa.sendRaw(buf, { binary: true });
      const e = await wa.waitFor((f) => f.cmd === 'error', { from, label: `error for ${what}` });
      assertWsError(e, 'bad_request');
      assert.ok(!e.id, `no id on the error for a binary frame (${what}): ${JSON.stringify(e)}`);
      await wa.ping(); // the connection goes on
      assert.ok(wa.open, `${what}: still open`);
    }
    const m1 = await voiceMetrics();
    assert.equal(m1.dropped.malformed - m0.dropped.malformed, bad.length);
    // A valid frame afterwards, with the largest payload: b gets it and nothing malformed.
    const big = Buffer.alloc(4000);
    for (let k = 0; k < big.length; k++) big[k] = k & 0xff;
    sendAudio(wa, room, 9, big);
    sendAudio(wa, room, 10, Buffer.from([42])); // the smallest
    const got = await waitForAudio(wb, (f) => f.roomId === room, 2, { from: mb });
    assert.equal(wb.binary[mb].length, 11 + 4000);
    assert.deepEqual(got.map((f) => [f.memberNo, f.seq, f.payload.length]), [[na, 9, 4000], [na, 10, 1]]);
    assert.ok(got[0].payload.equals(big));
    await roundTrip(wa, room, [wb]);
    assert.equal(wb.binary.length - mb, 2, 'b got the two valid frames only');
    assert.equal(wb.frames.filter((f) => f.cmd === 'error').length, 0);
    assert.deepEqual((await membersOf(owner.token, room)).map((m) => m.user_id), [a.id, b.id]);
  } finally {
    await closeAll(wa, wb);
  }
});

test('frames for a room not joined are dropped without an answer (not_joined)', async () => {
  const owner = await user('no');
  const [a, b, c] = [await user('na'), await user('nb'), await user('nc')];
  const room = (await createRoom(owner.token)).room_id;
  const marker = (await createRoom(owner.token)).room_id;
  const [wa, wb, wc] = [await connect(a), await connect(b), await connect(c)];
  try {
    await join(wa, room);
    await join(wb, room);
    await join(wb, marker);
    const m0 = await voiceMetrics();
    const mb = binaryMark(wb);
    const from = wc.mark();
    // c has joined no room yet: a first frame ever on the connection, then more.
    await talk(wc, room, { count: 5, everyMs: 0 });
    sendAudio(wc, 999999, 1, payloadOf(0, 1)); // no such room
    await wc.ping();
    const m1 = await voiceMetrics();
    assert.equal(m1.dropped.not_joined - m0.dropped.not_joined, 6);
    assert.deepEqual(wc.frames.slice(from).map((f) => f.cmd), ['pong'], 'dropped without an answer');
    // c joins the marker room only: its frames for `room` still go nowhere.
    await join(wc, marker);
    await talk(wc, room, { count: 3, everyMs: 0, firstSeq: 10 });
    await markerFrame(wc, marker, wb);
    assert.deepEqual(audioOf(wb, room, { from: mb }), []);
    const m2 = await voiceMetrics();
    assert.equal(m2.dropped.not_joined - m1.dropped.not_joined, 3);
    assert.deepEqual((await membersOf(owner.token, room)).map((m) => m.user_id), [a.id, b.id]);
  } finally {
    await closeAll(wa, wb, wc);
  }
});

test('throttling: a burst of 100 frames over voice_max_frames_per_s 10 is mostly dropped', async () => {
  const node = await startNode({ flags: [...FLAGS, '--voice-max-frames-per-s', '10'] });
  let wa;
  let wb;
  try {
    const owner = await user('to', ['d1'], node);
    const [a, b] = [await user('ta', ['d1'], node), await user('tb', ['d1'], node)];
    const room = (await createRoom(owner.token, {}, node)).room_id;
    wa = await connect(a, 0, node);
    wb = await connect(b, 0, node);
    const na = (await join(wa, room)).me;
    await join(wb, room);
    const m0 = await voiceMetrics(node);
    const mb = binaryMark(wb);
    for (let i = 0; i < 100; i++) sendAudio(wa, room, i, payloadOf(0, i));
    await wa.ping();
    const m1 = await voiceMetrics(node);
    const throttled = m1.dropped.throttled - m0.dropped.throttled;
    assert.equal(m1.frames_in_total - m0.frames_in_total, 100);
    assert.ok(throttled >= 75, `most of the burst throttled: ${throttled}`);
    await roundTrip(wa, room, [wb]); // every frame that passed is at b before this
    const got = audioOf(wb, room, { from: mb });
    assert.ok(got.length >= 1 && got.length <= 20, `b got ${got.length} of the burst`);
    assert.equal(got.length + throttled, 100, `passed ${got.length} + throttled ${throttled}`);
    assert.ok(got.every((f) => f.memberNo === na));
    const seqs = got.map((f) => f.seq);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'in order');
    assert.equal(seqs[0], 0, 'the burst allowance takes the first frames');
    assert.equal(wa.frames.filter((f) => f.cmd === 'error').length, 0, 'throttled without an answer');
    // A rate, not a ban: under it, after a rest, every frame goes through.
    await sleep(1100); // the bucket refills (10 a second)
    const mb2 = binaryMark(wb);
    const sent = await talk(wa, room, { count: 5, everyMs: 150, firstSeq: 500 });
    const again = await waitForAudio(wb, (f) => f.roomId === room, 5, { from: mb2 });
    assert.deepEqual(again.map((f) => f.seq), sent);
  } finally {
    await closeAll(wa, wb);
    await node.stop({ removeData: true });
  }
});

test('room.speaking: true after the first frame, false 300+ ms after the last', async () => {
  const owner = await user('po');
  const [a, b] = [await user('pa'), await user('pb')];
  const room = (await createRoom(owner.token)).room_id;
  const [wa, wb] = [await connect(a), await connect(b)];
  try {
    await join(wa, room);
    await join(wb, room);
    const from = wb.mark();
    const mb = binaryMark(wb);
    const talking = talk(wa, room, { count: 25, everyMs: 20 }); // half a second
    const on = await wb.waitFor((f) => f.cmd === 'room.speaking' && f.data.user_id === a.id, { from });
    assert.deepEqual(on.data, { room_id: room, user_id: a.id, speaking: true });
    assert.ok(wb.binary.length > mb, 'speaking comes after the first frame');
    const mid = await membersOf(owner.token, room);
    assert.deepEqual(mid.map((m) => [m.user_id, m.speaking]), [[a.id, true], [b.id, false]]);
    const { lastAt } = await talking; // the last frame's send, not talk()'s pause after it
    const off = await wb.waitFor(
      (f) => f.cmd === 'room.speaking' && f.data.user_id === a.id && f.data.speaking === false,
      { from, timeout: 3000 },
    );
    const after = Date.now() - lastAt;
    assert.deepEqual(off.data, { room_id: room, user_id: a.id, speaking: false });
    assert.ok(after >= 300 && after < 1500, `speaking false ${after} ms after the last frame`);
    assert.deepEqual(
      eventsOf(wb, 'room.speaking', room, from).map((d) => d.speaking),
      [true, false],
      'no flapping while frames come every 20 ms',
    );
    assert.equal(audioOf(wb, room, { from: mb }).length, 25);
    assert.deepEqual((await membersOf(owner.token, room)).map((m) => m.speaking), [false, false]);
  } finally {
    await closeAll(wa, wb);
  }
});

test('closing the socket leaves its rooms: the others get room.left reason closed', async () => {
  const owner = await user('co');
  const [a, b] = [await user('ca'), await user('cb')];
  const room = (await createRoom(owner.token)).room_id;
  const room2 = (await createRoom(owner.token)).room_id;
  const [wa, wb] = [await connect(a), await connect(b)];
  try {
    await join(wa, room);
    await join(wa, room2);
    const nb = (await join(wb, room)).me;
    const nb2 = (await join(wb, room2)).me;
    const m0 = await voiceMetrics();
    await wb.close();
    const evs = await wa.waitForCount((f) => f.cmd === 'room.left' && f.data.user_id === b.id, 2);
    assert.deepEqual(
      evs.map((f) => f.data).sort((x, y) => x.room_id - y.room_id),
      [
        { room_id: room, user_id: b.id, member_no: nb, reason: 'closed' },
        { room_id: room2, user_id: b.id, member_no: nb2, reason: 'closed' },
      ].sort((x, y) => x.room_id - y.room_id),
    );
    for (const r of [room, room2]) assert.deepEqual((await membersOf(owner.token, r)).map((m) => m.user_id), [a.id]);
    assert.equal((await voiceMetrics()).members, m0.members - 2);
  } finally {
    await closeAll(wa, wb);
  }
});

test('joining from a second connection of the same user keeps member_no and muted; the first is out', async () => {
  const owner = await user('do');
  const [u, l] = [await user('du', ['phone', 'laptop']), await user('dl')];
  const room = (await createRoom(owner.token)).room_id;
  const marker = (await createRoom(owner.token)).room_id;
  const [w1, wl] = [await connect(u, 0), await connect(l)];
  let w2;
  try {
    const n = (await join(w1, room)).me;
    await join(wl, room);
    await join(w1, marker);
    await join(wl, marker);
    assert.equal((await w1.request('room.mute', { room_id: room, muted: true })).cmd, 'room.mute');
    await wl.waitFor((f) => f.cmd === 'room.muted' && f.data.user_id === u.id);

    w2 = await connect(u, 1);
    const from = wl.mark();
    const from1 = w1.mark();
    const r = await join(w2, room);
    assert.equal(r.me, n, 'the same member_no');
    assert.deepEqual(r.members.find((m) => m.user_id === u.id), { user_id: u.id, member_no: n, muted: true, speaking: false });
    assert.equal(r.members.length, 2);
    const j = await wl.waitFor((f) => f.cmd === 'room.joined' && f.data.user_id === u.id, { from });
    assert.deepEqual(j.data, { room_id: room, user_id: u.id, member_no: n, muted: true });
    assert.deepEqual(await membersOf(owner.token, room), r.members);
    // The first connection is told it is out (`moved`), and not that its own user joined.
    const moved = await w1.waitFor((f) => f.cmd === 'room.left' && f.data.room_id === room, { from: from1 });
    assert.deepEqual(moved.data, { room_id: room, user_id: u.id, member_no: n, reason: 'moved' });
    assert.deepEqual(eventsOf(w1, 'room.joined', room, from1), []);
    // The others are not: for them the member is still in the room.
    assert.deepEqual(eventsOf(wl, 'room.left', room, from), []);

    // The first connection is out of the room: its commands are not_found, its frames dropped.
    assertWsError(await w1.request('room.mute', { room_id: room, muted: false }), 'not_found');
    assertWsError(await w1.request('room.send', { room_id: room, body: 'old' }), 'not_found');
    assert.equal((await w2.request('room.mute', { room_id: room, muted: false })).cmd, 'room.mute');
    await wl.waitFor((f) => f.cmd === 'room.muted' && f.data.user_id === u.id && f.data.muted === false);
    const m0 = await voiceMetrics();
    const ml = binaryMark(wl);
    await talk(w1, room, { count: 3, everyMs: 0 });
    await w1.ping();
    assert.equal((await voiceMetrics()).dropped.not_joined - m0.dropped.not_joined, 3);
    // From the second one they reach l with the same number.
    sendAudio(w2, room, 77, payloadOf(2, 77));
    const got = await waitForAudio(wl, (f) => f.roomId === room, 1, { from: ml });
    assert.deepEqual([got[0].memberNo, got[0].seq], [n, 77]);

    // l's frames reach the second connection, not the first.
    const m1 = binaryMark(w1);
    const m2 = binaryMark(w2);
    const sent = await talk(wl, room, { count: 5, everyMs: 5, sender: 3 });
    assert.deepEqual((await waitForAudio(w2, (f) => f.roomId === room, 5, { from: m2 })).map((f) => f.seq), sent);
    await markerFrame(wl, marker, w1);
    assert.deepEqual(audioOf(w1, room, { from: m1 }), [], 'the first connection no longer hears the room');

    // Closing the first connection leaves what it was in (the marker room), not the room u moved.
    const mark = wl.mark();
    await w1.close();
    const gone = await wl.waitFor((f) => f.cmd === 'room.left' && f.data.user_id === u.id, { from: mark });
    assert.deepEqual(gone.data, { room_id: marker, user_id: u.id, member_no: gone.data.member_no, reason: 'closed' });
    await roundTrip(w2, room, [wl]);
    assert.deepEqual(eventsOf(wl, 'room.left', room, mark), []);
    assert.deepEqual((await membersOf(owner.token, room)).find((m) => m.user_id === u.id)?.member_no, n);
  } finally {
    await closeAll(w1, w2, wl);
  }
});

test('room.deleted reaches the members, who are out', async () => {
  const owner = await user('eo');
  const [a, b] = [await user('ea'), await user('eb')];
  const room = (await createRoom(owner.token)).room_id;
  const keep = (await createRoom(owner.token)).room_id;
  const [wo, wa, wb] = [await connect(owner), await connect(a), await connect(b)];
  try {
    for (const w of [wo, wa, wb]) await join(w, room);
    await join(wa, keep);
    await join(wb, keep);
    const m0 = await voiceMetrics();
    const del = await http(h.node, 'DELETE', `/api/v1/rooms/${room}`, { token: owner.token });
    assert.equal(del.status, 200, del.text);
    for (const w of [wo, wa, wb]) {
      const ev = await w.waitFor((f) => f.cmd === 'room.deleted');
      assert.deepEqual(ev, { cmd: 'room.deleted', data: { room_id: room } });
    }
    assertHttpError(await http(h.node, 'GET', `/api/v1/rooms/${room}`, { token: owner.token }), 404, 'not_found');
    // Out: frames dropped, commands not_found, the room cannot be joined.
    const mb = binaryMark(wb);
    await talk(wa, room, { count: 2, everyMs: 0 });
    await wa.ping();
    const m1 = await voiceMetrics();
    assert.equal(m1.dropped.not_joined - m0.dropped.not_joined, 2);
    assert.equal(m1.members, m0.members - 3);
    assertWsError(await wa.request('room.join', { room_id: room }), 'not_found');
    assertWsError(await wa.request('room.send', { room_id: room, body: 'x' }), 'not_found');
    // The other room is untouched.
    sendAudio(wa, keep, 5, payloadOf(0, 5));
    const got = await waitForAudio(wb, (f) => f.roomId === keep, 1, { from: mb });
    assert.equal(got[0].seq, 5);
    assert.deepEqual(audioOf(wb, room, { from: mb }), []);
    assert.deepEqual((await membersOf(owner.token, keep)).map((m) => m.user_id), [a.id, b.id]);
  } finally {
    await closeAll(wo, wa, wb);
  }
});

test('a listener that stops reading loses late audio, not its connection, and then hears current audio', async () => {
  // 4,000-byte frames at about 400 a second fill the paused listener's socket buffers in a second
  // or two; then its queue on the node holds what is newest, and what waited there past
  // voice_max_delay_ms (50 here) is dropped as `late` before the next write.
  const node = await startNode({
    flags: [...FLAGS, '--voice-max-frames-per-s', '100000', '--voice-max-delay-ms', '50'],
  });
  let ws;
  let wl;
  let wq;
  try {
    const owner = await user('so', ['d1'], node);
    const [s, l, q] = [await user('ss', ['d1'], node), await user('sl', ['d1'], node), await user('sq', ['d1'], node)];
    const room = (await createRoom(owner.token, {}, node)).room_id;
    ws = await connect(s, 0, node);
    wl = await connect(l, 0, node);
    wq = await connect(q, 0, node);
    await join(ws, room);
    await join(wl, room);
    await join(wq, room);
    const m0 = await voiceMetrics(node);
    // The listener's app stops reading; the node does not know. (ws resumes a paused socket by
    // itself when its parser drains: kept paused until we say.)
    const sock = wl.ws._socket;
    const resume = sock.resume;
    sock.resume = function () {
      return this;
    };
    sock.pause();
    let seq = 0;
    const deadline = Date.now() + 15000;
    let m1 = m0;
    // Bursts of 5 frames (20 KB, under the 64 KiB a listener may have queued): frames are
    // dropped as slow only once the listener's socket takes no more.
    const burst = async () => {
      for (let i = 0; i < 5; i++) sendAudio(ws, room, seq++ & 0xffff, payloadOf(1, seq, 4000));
      await sleep(10);
    };
    while (Date.now() < deadline && m1.dropped.slow === m0.dropped.slow) {
      for (let k = 0; k < 5; k++) await burst();
      m1 = await voiceMetrics(node);
    }
    assert.ok(m1.dropped.slow > m0.dropped.slow, `frames dropped as slow: ${m1.dropped.slow - m0.dropped.slow}`);
    for (let k = 0; k < 20; k++) await burst(); // the socket stays full; the queue ages
    await sleep(100); // what the node holds for the listener is older than 50 ms now
    // `late` needs a write: the listener's socket must take something, which it does once it
    // reads again; frames that waited meanwhile go then.
    sock.resume = resume;
    sock.resume();
    // Once an event sent now reaches the listener, what the node held for it is out (or dropped).
    await roundTrip(ws, room, [wl, wq]);
    const tail = binaryMark(wl);
    const last = await talk(ws, room, { sender: 1, count: 10, firstSeq: (seq + 100) & 0xffff, everyMs: 20, size: 80 });
    const fresh = await waitForAudio(wl, (f) => f.roomId === room && last.includes(f.seq), 10, { from: tail });
    assert.deepEqual(fresh.map((f) => f.seq), last, 'the current audio arrives, in order');
    const m2 = await voiceMetrics(node);
    assert.ok(m2.dropped.late > m0.dropped.late, `frames dropped as late: ${m2.dropped.late - m0.dropped.late}`);
    assert.equal(wl.closeInfo, null, 'the slow listener keeps its connection');
    // The listener that kept reading lost nothing.
    const all = audioOf(wq, room);
    assert.equal(all.length, seq + 10, `the reading listener got every frame (${all.length})`);
    assert.equal(m2.frames_in_total - m0.frames_in_total, seq + 10);
  } finally {
    await closeAll(ws, wl, wq);
    await node.stop({ removeData: true });
  }
});
