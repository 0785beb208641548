// Voice rooms across a cluster (docs/protocol.md "Voice rooms", "Across nodes"; DESIGN.md
// section 7): three real nodes on one private PostgreSQL and RabbitMQ. Members on different
// nodes hear each other (every frame, in order, stamped with the member_no every node shows),
// room events cross nodes, a member moving to another node keeps their number, and when a node
// is killed with SIGKILL its members leave (`node_lost`) within a bounded time, come back
// through another node and talk again: the room lives on.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { assertWsError } from './lib/check.mjs';
import { http, login, register } from './lib/http.mjs';
import { ConvergeNode } from './lib/node.mjs';
import { startPostgres } from './lib/postgres.mjs';
import { startRabbit } from './lib/rabbitmq.mjs';
import { WsClient, audioOf, binaryMark, closeAll, sendAudio, waitForAudio } from './lib/ws.mjs';

let pg;
let rabbit;
let filesDir;
const nodes = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const NODE_TIMEOUT_MS = 1500;

before(async () => {
  [pg, rabbit] = await Promise.all([startPostgres(), startRabbit()]);
  filesDir = await mkdtemp(path.join(tmpdir(), 'converge-cvoice-files-'));
  for (let i = 1; i <= 3; i++) {
    const dataDir = await mkdtemp(path.join(tmpdir(), `converge-cvoice-${i}-`));
    const node = new ConvergeNode({
      dataDir,
      flags: ['--store', pg.url, '--bus', rabbit.url, '--files-dir', filesDir, '--node-id', `vo${i}`,
        '--node-heartbeat-ms', '200', '--node-timeout-ms', String(NODE_TIMEOUT_MS),
        '--rate-register-address', '0'],
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

let userNo = 0;
// A user registered on node 1, with a token per device (tokens work on every node).
async function user(prefix, devices = 1) {
  const id = `${prefix}${++userNo}`;
  await register(nodes[0], id);
  const tokens = [];
  for (let d = 0; d < devices; d++) tokens.push(await login(nodes[0], id, `d${d + 1}`));
  return { id, token: tokens[0], tokens };
}

const connect = (node, u, device = 0) => WsClient.connect(node, { token: u.tokens[device] });

async function createRoom(node, token, body = {}) {
  const r = await http(node, 'POST', '/api/v1/rooms', { token, json: body });
  assert.equal(r.status, 201, r.text);
  return r.json.room_id;
}

async function membersOn(node, token, id) {
  const r = await http(node, 'GET', `/api/v1/rooms/${id}`, { token });
  assert.equal(r.status, 200, r.text);
  return r.json.members.map(({ speaking: _s, ...m }) => m); // speaking flips by itself
}

async function join(ws, roomId) {
  const r = await ws.request('room.join', { room_id: roomId });
  assert.equal(r.cmd, 'room.join', `room.join ${roomId}: ${JSON.stringify(r)}`);
  return r.data;
}

async function voiceMetrics(node) {
  const r = await http(node, 'GET', '/metrics');
  const out = { dropped: {} };
  for (const m of r.text.matchAll(/^converge_voice_dropped_total\{reason="([a-z_]+)"\} (\d+)$/gm))
    out.dropped[m[1]] = Number(m[2]);
  for (const name of ['frames_in_total', 'frames_out_total', 'frames_remote_total', 'members']) {
    const m = new RegExp(`^converge_voice_${name} (\\d+)$`, 'm').exec(r.text);
    out[name] = m ? Number(m[1]) : undefined;
  }
  return out;
}

function payloadOf(sender, seq, n = 80) {
  const b = Buffer.alloc(n);
  for (let k = 0; k < n; k++) b[k] = (sender * 31 + seq * 7 + k) & 0xff;
  return b;
}

async function talk(ws, roomId, { sender = 0, count = 50, firstSeq = 0, everyMs = 20 } = {}) {
  const seqs = [];
  for (let i = 0; i < count; i++) {
    const seq = (firstSeq + i) & 0xffff;
    sendAudio(ws, roomId, seq, payloadOf(sender, seq));
    seqs.push(seq);
    if (everyMs) await sleep(everyMs);
  }
  return seqs;
}

// Until every member has had a room.send from every other one: a node gets a room's traffic
// once its binding for the room is at the broker, which the join's reply does not wait for.
// Returns how long that took.
let probeNo = 0;
async function linked(roomId, members, { timeout = 5000 } = {}) {
  const t0 = Date.now();
  const pending = new Set();
  for (const a of members) for (const b of members) if (a !== b) pending.add(`${members.indexOf(a)}>${members.indexOf(b)}`);
  for (;;) {
    const bodies = members.map((_, i) => `probe-${i}-${++probeNo}`);
    for (const [i, w] of members.entries()) {
      const r = await w.request('room.send', { room_id: roomId, body: bodies[i] });
      assert.equal(r.cmd, 'room.send', JSON.stringify(r));
    }
    await sleep(150);
    for (const [i] of members.entries())
      for (const [j, w] of members.entries())
        if (i !== j && w.frames.some((f) => f.cmd === 'room.message' && String(f.data.body).startsWith(`probe-${i}-`)))
          pending.delete(`${i}>${j}`);
    if (pending.size === 0) return Date.now() - t0;
    if (Date.now() - t0 > timeout) throw new Error(`room ${roomId}: no traffic for ${[...pending]} after ${timeout} ms`);
  }
}

// A room.send from `ws` that `others` wait for: whatever `ws` sent to the room before it is in.
let markNo = 0;
async function roundTrip(ws, roomId, others, timeout = 5000) {
  const body = `mark-${++markNo}`;
  const r = await ws.request('room.send', { room_id: roomId, body });
  assert.equal(r.cmd, 'room.send', JSON.stringify(r));
  await Promise.all(
    others.map((o) => o.waitFor((f) => f.cmd === 'room.message' && f.data.body === body, { timeout, label: body })),
  );
}

const eventsOf = (ws, cmd, roomId, from = 0) =>
  ws.frames.slice(from).filter((f) => f.cmd === cmd && f.data?.room_id === roomId).map((f) => f.data);

test('members on three nodes hear each other: every frame, in order, the same member_no everywhere', async () => {
  const [a, b, c] = [await user('ha'), await user('hb'), await user('hc')];
  const room = await createRoom(nodes[0], a.token, { name: 'three nodes' });
  const ws = [await connect(nodes[0], a), await connect(nodes[1], b), await connect(nodes[2], c)];
  try {
    const nos = [];
    for (const w of ws) nos.push((await join(w, room)).me);
    assert.equal(new Set(nos).size, 3);
    const want = [a, b, c].map((u, i) => ({ user_id: u.id, member_no: nos[i], muted: false }));
    for (const n of nodes) assert.deepEqual(await membersOn(n, a.token, room), want, `members on ${n.port}`);
    await linked(room, ws);

    const m0 = await Promise.all(nodes.map(voiceMetrics));
    const marks = ws.map(binaryMark);
    const firsts = [65500, 10, 20000];
    const sent = await Promise.all(ws.map((w, i) => talk(w, room, { sender: i, firstSeq: firsts[i] })));
    for (let i = 0; i < 3; i++) {
      const got = await waitForAudio(ws[i], (f) => f.roomId === room, 100, { from: marks[i], timeout: 10000 });
      for (let j = 0; j < 3; j++) {
        const fromJ = got.filter((f) => f.memberNo === nos[j]);
        if (i === j) {
          assert.equal(fromJ.length, 0, `member ${i} got none of its own`);
          continue;
        }
        assert.deepEqual(fromJ.map((f) => f.seq), sent[j], `on node ${i + 1}, sender ${j}'s frames in order`);
        for (const f of fromJ) assert.ok(f.payload.equals(payloadOf(j, f.seq)));
      }
    }
    for (let i = 0; i < 3; i++) await roundTrip(ws[i], room, ws.filter((_, k) => k !== i));
    for (let i = 0; i < 3; i++) assert.equal(audioOf(ws[i], room, { from: marks[i] }).length, 100, `nothing more on ${i}`);
    const m1 = await Promise.all(nodes.map(voiceMetrics));
    for (let i = 0; i < 3; i++) {
      assert.equal(m1[i].frames_in_total - m0[i].frames_in_total, 50, `node ${i + 1} took its member's 50`);
      assert.equal(m1[i].frames_remote_total - m0[i].frames_remote_total, 100, `node ${i + 1} had the others' 100`);
      assert.equal(m1[i].frames_out_total - m0[i].frames_out_total, 100);
      for (const [r, n] of Object.entries(m1[i].dropped)) assert.equal(n, m0[i].dropped[r], `node ${i + 1}: no ${r} drops`);
    }
  } finally {
    await closeAll(ws);
  }
});

test('events cross nodes: joined, muted (by oneself and by the owner), removed, left', async () => {
  const [o, b, c, d] = [await user('eo'), await user('eb'), await user('ec'), await user('ed')];
  const room = await createRoom(nodes[0], o.token);
  const wo = await connect(nodes[0], o);
  const wb = await connect(nodes[1], b);
  const wc = await connect(nodes[2], c);
  let wd;
  try {
    await join(wo, room);
    await join(wb, room);
    await join(wc, room);
    await linked(room, [wo, wb, wc]);

    // joined: d on node 2, seen on nodes 1 and 3.
    wd = await connect(nodes[1], d);
    const nd = (await join(wd, room)).me;
    for (const w of [wo, wb, wc]) {
      const ev = await w.waitFor((f) => f.cmd === 'room.joined' && f.data.user_id === d.id, { label: 'd joined' });
      assert.deepEqual(ev.data, { room_id: room, user_id: d.id, member_no: nd, muted: false });
    }
    await linked(room, [wo, wd, wc]);

    // muted by oneself on node 2.
    assert.equal((await wb.request('room.mute', { room_id: room, muted: true })).cmd, 'room.mute');
    for (const w of [wo, wc, wd]) {
      const ev = await w.waitFor((f) => f.cmd === 'room.muted' && f.data.user_id === b.id);
      assert.deepEqual(ev.data, { room_id: room, user_id: b.id, muted: true, by: b.id });
    }
    for (const n of nodes) assert.equal((await membersOn(n, o.token, room)).find((m) => m.user_id === b.id).muted, true);

    // muted by the owner on node 1: node 2, where d talks, drops d's frames.
    const markC = binaryMark(wc);
    const markO = binaryMark(wo);
    const r = await wo.request('room.mute_member', { room_id: room, user_id: d.id, muted: true });
    assert.deepEqual(r.data, { room_id: room, user_id: d.id, muted: true });
    for (const w of [wd, wb, wc]) {
      const ev = await w.waitFor((f) => f.cmd === 'room.muted' && f.data.user_id === d.id && f.data.muted);
      assert.deepEqual(ev.data, { room_id: room, user_id: d.id, muted: true, by: o.id });
    }
    const m0 = await voiceMetrics(nodes[1]);
    await talk(wd, room, { count: 5, everyMs: 0 });
    await wd.ping();
    const m1 = await voiceMetrics(nodes[1]);
    assert.equal(m1.dropped.muted - m0.dropped.muted, 5, 'the owner\'s mute on node 1 holds on node 2');
    await roundTrip(wd, room, [wo, wc]);
    assert.deepEqual(audioOf(wc, room, { from: markC }), []);
    assert.deepEqual(audioOf(wo, room, { from: markO }), []);
    // Only the owner unmutes another (c on node 3 may not); the owner does, from node 1.
    assertWsError(await wc.request('room.mute_member', { room_id: room, user_id: d.id, muted: false }), 'forbidden');
    assert.equal((await wo.request('room.mute_member', { room_id: room, user_id: d.id, muted: false })).cmd, 'room.mute_member');
    await wd.waitFor((f) => f.cmd === 'room.muted' && f.data.user_id === d.id && f.data.muted === false);
    // Told on node 2 that they are unmuted, d's frames flow again from there.
    const u0 = await voiceMetrics(nodes[1]);
    sendAudio(wd, room, 900, payloadOf(3, 900));
    const got = await waitForAudio(wc, (f) => f.roomId === room, 1, { from: markC }).catch(async (e) => {
      const u1 = await voiceMetrics(nodes[1]);
      throw new Error(`${e.message}; node 2 dropped ${JSON.stringify(u0.dropped)} -> ${JSON.stringify(u1.dropped)}`);
    });
    assert.deepEqual([got[0].memberNo, got[0].seq], [nd, 900]);

    // removed by the owner on node 1: c on node 3 hears it and is out there too.
    const nc = (await membersOn(nodes[2], o.token, room)).find((m) => m.user_id === c.id).member_no;
    assert.equal((await wo.request('room.remove', { room_id: room, user_id: c.id })).cmd, 'room.remove');
    for (const w of [wc, wb, wd, wo]) {
      const ev = await w.waitFor((f) => f.cmd === 'room.left' && f.data.user_id === c.id);
      assert.deepEqual(ev.data, { room_id: room, user_id: c.id, member_no: nc, reason: 'removed' });
    }
    assertWsError(await wc.request('room.join', { room_id: room }), 'forbidden');
    const n3 = await voiceMetrics(nodes[2]);
    const markD = binaryMark(wd);
    await talk(wc, room, { count: 3, everyMs: 0 });
    await wc.ping();
    assert.equal((await voiceMetrics(nodes[2])).dropped.not_joined - n3.dropped.not_joined, 3);
    for (const n of nodes)
      assert.deepEqual((await membersOn(n, o.token, room)).map((m) => m.user_id), [o.id, b.id, d.id]);

    // left on node 2.
    const nb = (await membersOn(nodes[0], o.token, room)).find((m) => m.user_id === b.id).member_no;
    assert.equal((await wb.request('room.leave', { room_id: room })).cmd, 'room.leave');
    for (const w of [wo, wd]) {
      const ev = await w.waitFor((f) => f.cmd === 'room.left' && f.data.user_id === b.id);
      assert.deepEqual(ev.data, { room_id: room, user_id: b.id, member_no: nb, reason: 'left' });
    }
    for (const n of nodes)
      assert.deepEqual((await membersOn(n, o.token, room)).map((m) => m.user_id), [o.id, d.id]);
    await roundTrip(wo, room, [wd]);
    assert.deepEqual(audioOf(wd, room, { from: markD }), [], 'nothing of the removed member');
    // Each event once.
    assert.equal(eventsOf(wo, 'room.left', room).length, 2);
    assert.equal(eventsOf(wo, 'room.joined', room).filter((e) => e.user_id === d.id).length, 1);
  } finally {
    await closeAll(wo, wb, wc, wd);
  }
});

test('joining from a connection on another node moves the member there, with its member_no', async () => {
  const [u, l] = [await user('mu', 2), await user('ml')];
  const room = await createRoom(nodes[0], l.token);
  const marker = await createRoom(nodes[0], l.token);
  const w1 = await connect(nodes[0], u, 0);
  const wl = await connect(nodes[2], l);
  let w2;
  try {
    const n = (await join(w1, room)).me;
    await join(wl, room);
    await join(w1, marker);
    await join(wl, marker);
    await linked(room, [w1, wl]);
    await linked(marker, [w1, wl]);

    w2 = await connect(nodes[1], u, 1);
    const from = wl.mark();
    const from1 = w1.mark();
    const r = await join(w2, room);
    assert.equal(r.me, n, 'the same member_no on the new node');
    const ev = await wl.waitFor((f) => f.cmd === 'room.joined' && f.data.user_id === u.id, { from });
    assert.deepEqual(ev.data, { room_id: room, user_id: u.id, member_no: n, muted: false });
    // The old connection is told it is out, as on one node, not that its own user joined.
    const moved = await w1.waitFor((f) => f.cmd === 'room.left' && f.data.room_id === room, { from: from1 });
    assert.deepEqual(moved.data, { room_id: room, user_id: u.id, member_no: n, reason: 'moved' });
    assert.equal(w1.frames.slice(from1).filter((f) => f.cmd === 'room.joined' && f.data.room_id === room).length, 0);
    for (const node of nodes)
      assert.deepEqual((await membersOn(node, l.token, room)).map((m) => [m.user_id, m.member_no]), [[u.id, n], [l.id, r.members[1].member_no]]);
    await linked(room, [w2, wl]);

    // The old connection on node 1 is out: its frames are dropped there, it hears nothing.
    const m0 = await voiceMetrics(nodes[0]);
    const m1 = binaryMark(w1);
    const markL = binaryMark(wl);
    await talk(w1, room, { count: 3, everyMs: 0 });
    await w1.ping();
    assert.equal((await voiceMetrics(nodes[0])).dropped.not_joined - m0.dropped.not_joined, 3);
    assertWsError(await w1.request('room.send', { room_id: room, body: 'old' }), 'not_found');
    const sent = await talk(wl, room, { count: 10, everyMs: 10, sender: 1 });
    assert.deepEqual((await waitForAudio(w2, (f) => f.roomId === room, 10)).map((f) => f.seq), sent);
    // A frame in the marker room from l, after those, reaches the old connection: none of the
    // room's did.
    sendAudio(wl, marker, 4242, Buffer.from('marker'));
    await waitForAudio(w1, (f) => f.roomId === marker && f.seq === 4242, 1, { from: m1 });
    assert.deepEqual(audioOf(w1, room, { from: m1 }), []);
    // The new one's frames reach l, stamped with the same number.
    sendAudio(w2, room, 5, payloadOf(2, 5));
    const got = await waitForAudio(wl, (f) => f.roomId === room, 1, { from: markL });
    assert.deepEqual([got[0].memberNo, got[0].seq], [n, 5]);
  } finally {
    await closeAll(w1, w2, wl);
  }
});

test('a node killed with SIGKILL: its members leave with node_lost, come back through another node, the room lives on', async () => {
  const [a, b, k1, k2] = [await user('ka'), await user('kb'), await user('kx'), await user('ky')];
  const room = await createRoom(nodes[0], a.token, { name: 'survivor' });
  const wa = await connect(nodes[0], a);
  const wb = await connect(nodes[1], b);
  const wk1 = await connect(nodes[2], k1);
  const wk2 = await connect(nodes[2], k2);
  let back1;
  let back2;
  try {
    const na = (await join(wa, room)).me;
    const nb = (await join(wb, room)).me;
    const n1 = (await join(wk1, room)).me;
    const n2 = (await join(wk2, room)).me;
    await linked(room, [wa, wb, wk1, wk2]);
    // The killed node's members are talking when it dies.
    const markA = binaryMark(wa);
    const talking = talk(wk1, room, { count: 100, everyMs: 20, sender: 7 }).catch(() => {});
    await waitForAudio(wa, (f) => f.roomId === room && f.memberNo === n1, 5, { from: markA });
    const fromA = wa.mark();
    const fromB = wb.mark();
    await nodes[2].kill();
    const killedAt = Date.now();
    await talking;
    for (const [w, from] of [[wa, fromA], [wb, fromB]]) {
      const evs = await w.waitForCount(
        (f) => f.cmd === 'room.left' && f.data.room_id === room,
        2,
        { from, timeout: 6000, label: 'room.left node_lost for both' },
      );
      assert.deepEqual(
        evs.map((f) => f.data).sort((x, y) => x.member_no - y.member_no),
        [
          { room_id: room, user_id: k1.id, member_no: n1, reason: 'node_lost' },
          { room_id: room, user_id: k2.id, member_no: n2, reason: 'node_lost' },
        ].sort((x, y) => x.member_no - y.member_no),
      );
    }
    const took = Date.now() - killedAt;
    assert.ok(took < 6000, `node_lost seen ${took} ms after the kill`);
    for (const n of [nodes[0], nodes[1]])
      assert.deepEqual(await membersOn(n, a.token, room), [
        { user_id: a.id, member_no: na, muted: false },
        { user_id: b.id, member_no: nb, muted: false },
      ]);
    // The two who remain still hear each other.
    const mb = binaryMark(wb);
    sendAudio(wa, room, 1, payloadOf(0, 1));
    await waitForAudio(wb, (f) => f.roomId === room && f.memberNo === na && f.seq === 1, 1, { from: mb });

    // They come back, one through each surviving node, and join again.
    back1 = await connect(nodes[0], k1);
    back2 = await connect(nodes[1], k2);
    const since = new Map([[wa, wa.mark()], [wb, wb.mark()]]);
    const r1 = await join(back1, room);
    const r2 = await join(back2, room);
    assert.ok(r1.me > Math.max(na, nb, n1, n2) && r2.me > r1.me, `new numbers ${r1.me}, ${r2.me} after ${[na, nb, n1, n2]}`);
    assert.deepEqual(r2.members.map((m) => m.user_id), [a.id, b.id, k1.id, k2.id]);
    for (const w of [wa, wb]) {
      for (const [u, r] of [[k1, r1], [k2, r2]]) {
        const ev = await w.waitFor((f) => f.cmd === 'room.joined' && f.data.user_id === u.id, { from: since.get(w) });
        assert.deepEqual(ev.data, { room_id: room, user_id: u.id, member_no: r.me, muted: false });
      }
    }
    const ws = [wa, wb, back1, back2];
    const nos = [na, nb, r1.me, r2.me];
    await linked(room, ws);
    const marks = ws.map(binaryMark);
    const sent = await Promise.all(ws.map((w, i) => talk(w, room, { sender: i, count: 20, firstSeq: 300 * i })));
    for (let i = 0; i < 4; i++) {
      const got = await waitForAudio(ws[i], (f) => f.roomId === room, 60, { from: marks[i], timeout: 10000 });
      for (let j = 0; j < 4; j++)
        if (j !== i)
          assert.deepEqual(got.filter((f) => f.memberNo === nos[j]).map((f) => f.seq), sent[j], `${i} hears ${j}`);
    }
    for (const n of [nodes[0], nodes[1]])
      assert.deepEqual((await membersOn(n, a.token, room)).map((m) => [m.user_id, m.member_no]), [
        [a.id, na], [b.id, nb], [k1.id, r1.me], [k2.id, r2.me],
      ]);
    // Each member's leaving was told once.
    await roundTrip(back2, room, [wa, wb]);
    for (const w of [wa, wb])
      assert.deepEqual(
        eventsOf(w, 'room.left', room).map((e) => e.user_id).sort(),
        [k1.id, k2.id].sort(),
        'one room.left per lost member',
      );
    // The killed node comes back (same node id): it clears what its earlier run left, which is
    // nothing now, and not the members that moved to the other nodes.
    await nodes[2].start();
    const r = await http(nodes[2], 'GET', `/api/v1/rooms/${room}`, { token: a.token });
    assert.equal(r.json.name, 'survivor');
    assert.deepEqual(r.json.members.map((m) => [m.user_id, m.member_no]), [
      [a.id, na], [b.id, nb], [k1.id, r1.me], [k2.id, r2.me],
    ]);
    await roundTrip(wa, room, [wb, back1, back2]);
  } finally {
    await closeAll(wa, wb, wk1, wk2, back1, back2);
    if (!nodes[2].proc) await nodes[2].start().catch(() => {});
  }
});
