// Unit tests of the SDK's voice rooms against a fake node (a fake fetch and a fake WebSocket):
// the HTTP calls, the room.* commands and their replies, the binary audio frames both ways, the
// member list kept by the room events, and the rejoin after every reconnect — to the same node,
// and to another one of `nodes` when the first is gone. rooms.test.mjs does it against a real node.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { ConvergeClient, decodeAudioFrame, encodeAudioFrame, encodeRelayedFrame } from '../src/index.js';

const session = { token: 'tok', user_id: 'alice', device_id: 'd1' };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every client made here is closed after its test, passed or failed (its timers would keep the
// process alive).
const clients = new Set();
afterEach(() => {
  for (const c of clients) c.close();
  clients.clear();
});

async function until(fn, what = 'condition', timeout = 3000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const json = (body, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });

/**
 * Fake nodes sharing one "store" of room memberships. `down` holds the hosts that no longer
 * answer (fetch fails, sockets do not open). Room commands are answered as docs/protocol.md
 * has them; `refuse[cmd]` = code makes a command fail with that error code.
 */
function fakeCluster({ nodes = ['http://a.test'], routes = {} } = {}) {
  const calls = [];
  const sockets = [];
  const down = new Set();
  const refuse = {};
  const store = new Map(); // room id -> {next, members: Map user -> {member_no, muted}}
  const host = (url) => new URL(String(url)).host;
  const fetch = async (url, init = {}) => {
    const u = new URL(String(url));
    if (down.has(u.host)) throw new TypeError('fetch failed');
    const path = u.pathname.replace(/^\/api\/v1/, '') + u.search;
    const call = { host: u.host, method: init.method || 'GET', path, body: init.body ? JSON.parse(init.body) : undefined };
    calls.push(call);
    const key = `${call.method} ${path}`;
    let r = key in routes ? routes[key] : undefined;
    if (typeof r === 'function') r = await r(call);
    if (r === undefined) {
      if (call.method === 'GET' && path === '/conversations') r = { conversations: [] };
      else if (call.method === 'GET' && path.startsWith('/offline')) r = { messages: [], more: false };
      else if (call.method === 'POST' && path === '/heartbeat') r = { seqs: {} };
    }
    if (r instanceof Response) return r;
    if (r === undefined) return json({ error: { code: 'not_found', message: `fake: ${key}` } }, 404);
    return json(r);
  };
  function roomOf(id) {
    let r = store.get(id);
    if (!r) store.set(id, (r = { next: 1, members: new Map() }));
    return r;
  }
  const listOf = (r) => [...r.members].map(([user_id, m]) => ({ user_id, member_no: m.member_no, muted: m.muted, speaking: false }));
  class FakeWS {
    constructor(url) {
      this.url = url;
      this.host = host(url);
      this.readyState = 0;
      this.sent = [];
      this.binary = [];
      this.bufferedAmount = 0;
      sockets.push(this);
      setTimeout(() => {
        if (down.has(this.host)) {
          this.readyState = 3;
          return this.onclose?.({ code: 1006 });
        }
        this.readyState = 1;
        this.onopen?.();
      }, 0);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error('not open');
      if (typeof data !== 'string') return void this.binary.push(new Uint8Array(data));
      const f = JSON.parse(data);
      this.sent.push(f);
      const reply = (cmd, d) => setTimeout(() => this.readyState === 1 && this.push({ cmd, id: f.id, data: d }), 0);
      const fail = (code) => reply('error', { code, message: code });
      if (refuse[f.cmd]) return fail(refuse[f.cmd]);
      const d = f.data || {};
      switch (f.cmd) {
        case 'auth':
          return reply('ready', { user_id: session.user_id, heartbeat_interval_ms: 30000 });
        case 'sync':
          return reply('sync', { messages: [], more: false });
        case 'heartbeat':
          return reply('heartbeat', { seqs: {}, ts: 1 });
        case 'room.join': {
          const r = roomOf(d.room_id);
          if (!r.members.has(session.user_id)) r.members.set(session.user_id, { member_no: r.next++, muted: false });
          const me = r.members.get(session.user_id).member_no;
          return reply('room.join', { room_id: d.room_id, name: 'standup', owner: 'alice', max_members: 50, me, members: listOf(r) });
        }
        case 'room.leave':
          store.get(d.room_id)?.members.delete(session.user_id);
          return reply('room.leave', { room_id: d.room_id });
        case 'room.mute':
          return reply('room.mute', { room_id: d.room_id, muted: d.muted });
        case 'room.mute_member':
          return reply('room.mute_member', { room_id: d.room_id, user_id: d.user_id, muted: d.muted });
        case 'room.remove':
          return reply('room.remove', { room_id: d.room_id, user_id: d.user_id });
        case 'room.send':
          return reply('room.send', { room_id: d.room_id });
        default:
          return fail('unknown_cmd');
      }
    }
    push(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }
    pushBinary(bytes) {
      this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
    }
    /** The connection dies (no close handshake). */
    cut() {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.onclose?.({ code: 1006 }), 0);
    }
    close() {
      this.cut();
    }
  }
  const c = new ConvergeClient({
    nodes,
    fetch,
    WebSocket: FakeWS,
    session,
    watchNetwork: false,
    backoff: { initialMs: 5, maxMs: 20, jitter: 0 },
  });
  clients.add(c);
  const ws = () => sockets.at(-1);
  /** A fake room with other members already in it (as another node would have them). */
  const seat = (roomId, userId, muted = false) => {
    const r = roomOf(roomId);
    r.members.set(userId, { member_no: r.next++, muted });
    return r.members.get(userId).member_no;
  };
  return { c, calls, sockets, ws, down, refuse, store, seat, last: () => calls.at(-1) };
}

async function online(f) {
  await f.c.connect();
  return f.ws();
}

const roomCmds = (ws) => ws.sent.filter((f) => f.cmd.startsWith('room.'));

describe('rooms over HTTP', () => {
  test('create, list (paged), get, delete: method, path and body', async () => {
    const f = fakeCluster({
      routes: {
        'POST /rooms': (call) => ({ room_id: 7, id: 7, name: call.body.name ?? 'room', owner: 'alice', max_members: call.body.max_members ?? 50, member_count: 0 }),
        'GET /rooms?limit=2': { rooms: [{ room_id: 1 }, { room_id: 7 }], next: 7 },
        'GET /rooms?after=7&limit=2': { rooms: [{ room_id: 9 }] },
        'GET /rooms/7': { room_id: 7, members: [] },
        'DELETE /rooms/7': { room_id: 7 },
      },
    });
    const r = await f.c.createRoom({ name: 'standup', max_members: 5 });
    assert.deepEqual(f.last().body, { name: 'standup', max_members: 5 });
    assert.equal(r.room_id, 7);
    await f.c.createRoom();
    assert.deepEqual(f.last().body, {});
    assert.deepEqual(await f.c.listRooms({ limit: 2 }), { rooms: [{ room_id: 1 }, { room_id: 7 }], next: 7 });
    assert.deepEqual(await f.c.listRooms({ after: 7, limit: 2 }), { rooms: [{ room_id: 9 }] });
    assert.equal((await f.c.getRoom('7')).room_id, 7);
    assert.deepEqual(await f.c.deleteRoom(7), { room_id: 7 });
    assert.equal(f.last().method, 'DELETE');
    assert.throws(() => f.c.getRoom('7; DROP'), TypeError);
    assert.throws(() => f.c.getRoom(2 ** 32), TypeError);
    assert.throws(() => f.c.getRoom(0), TypeError);
  });
});

describe('room commands and events', () => {
  test('joinRoom while the socket is still connecting waits for it instead of failing', async () => {
    const f = fakeCluster();
    const connecting = f.c.connect();
    assert.equal(f.c.state, 'connecting');
    const room = await f.c.joinRoom(7);
    await connecting;
    assert.equal(room.room_id, 7);
    assert.equal(f.c.rooms.get(7)?.connected, true);
  });

  test('join keeps the room (members by member_no, me); events keep the member list', async () => {
    const f = fakeCluster();
    const ws = await online(f);
    f.seat(7, 'carol');
    f.seat(7, 'bob', true);
    const states = [];
    f.c.on('room.state', (id, room) => states.push([id, room && room.members.map((m) => m.user_id)]));
    const room = await f.c.joinRoom(7);
    assert.deepEqual(roomCmds(ws).map((x) => [x.cmd, x.data]), [['room.join', { room_id: 7 }]]);
    assert.equal(room.me, 3);
    assert.equal(room.connected, true);
    assert.deepEqual(room.members.map((m) => [m.user_id, m.member_no, m.muted]), [['carol', 1, false], ['bob', 2, true], ['alice', 3, false]]);
    assert.equal(f.c.rooms.get(7), room);
    assert.deepEqual(states.at(-1), [7, ['carol', 'bob', 'alice']]);

    const events = [];
    for (const e of ['room.joined', 'room.left', 'room.muted', 'room.speaking', 'room.message']) f.c.on(e, (d) => events.push([e, d]));
    ws.push({ cmd: 'room.joined', data: { room_id: 7, user_id: 'dave', member_no: 4, muted: false } });
    ws.push({ cmd: 'room.speaking', data: { room_id: 7, user_id: 'carol', speaking: true } });
    ws.push({ cmd: 'room.muted', data: { room_id: 7, user_id: 'dave', muted: true, by: 'alice' } });
    ws.push({ cmd: 'room.left', data: { room_id: 7, user_id: 'bob', member_no: 2, reason: 'closed' } });
    ws.push({ cmd: 'room.message', data: { room_id: 7, from: 'carol', body: { hand: 'up' } } });
    assert.deepEqual(room.members.map((m) => [m.user_id, m.member_no, m.muted, m.speaking]), [
      ['carol', 1, false, true],
      ['alice', 3, false, false],
      ['dave', 4, true, false],
    ]);
    assert.equal(room.member_count, 3);
    assert.deepEqual(events.map((e) => e[0]), ['room.joined', 'room.speaking', 'room.muted', 'room.left', 'room.message']);
    assert.deepEqual(events.at(-1)[1].body, { hand: 'up' });
    // The same user joining from another connection: one entry, the member_no kept.
    ws.push({ cmd: 'room.joined', data: { room_id: 7, user_id: 'dave', member_no: 4, muted: true } });
    assert.equal(room.members.filter((m) => m.user_id === 'dave').length, 1);
    // Events of a room the client is not in change nothing and still reach the app.
    ws.push({ cmd: 'room.joined', data: { room_id: 8, user_id: 'x', member_no: 1 } });
    assert.equal(f.c.rooms.has(8), false);
    assert.equal(events.at(-1)[1].room_id, 8);
    f.c.close();
  });

  test('leave, mute, mute_member, remove, send: the frames, and what the room keeps', async () => {
    const f = fakeCluster();
    const ws = await online(f);
    f.seat(7, 'bob');
    await f.c.joinRoom(7);
    assert.deepEqual(await f.c.muteSelf(7, true), { room_id: 7, muted: true });
    assert.equal(f.c.rooms.get(7).members.find((m) => m.user_id === 'alice').muted, true);
    await f.c.muteMember(7, 'bob', true);
    assert.equal(f.c.rooms.get(7).members.find((m) => m.user_id === 'bob').muted, true);
    await f.c.sendRoomMessage(7, { t: 'hi' });
    await f.c.sendRoomMessage(7, 'psst', 'bob');
    await f.c.removeRoomMember(7, 'bob');
    assert.deepEqual(f.c.rooms.get(7).members.map((m) => m.user_id), ['alice']);
    const gone = [];
    f.c.on('room.state', (id, room, why) => room === null && gone.push([id, why.reason]));
    await f.c.leaveRoom(7);
    assert.deepEqual(gone, [[7, 'left']]);
    assert.equal(f.c.rooms.size, 0);
    assert.deepEqual(roomCmds(ws).map((x) => [x.cmd, x.data]), [
      ['room.join', { room_id: 7 }],
      ['room.mute', { room_id: 7, muted: true }],
      ['room.mute_member', { room_id: 7, user_id: 'bob', muted: true }],
      ['room.send', { room_id: 7, body: { t: 'hi' } }],
      ['room.send', { room_id: 7, body: 'psst', to: 'bob' }],
      ['room.remove', { room_id: 7, user_id: 'bob' }],
      ['room.leave', { room_id: 7 }],
    ]);
    f.c.close();
  });

  test('a refused command rejects with its code', async () => {
    const f = fakeCluster();
    await online(f);
    f.refuse['room.join'] = 'room_full';
    await assert.rejects(f.c.joinRoom(7), { code: 'room_full' });
    assert.equal(f.c.rooms.size, 0);
    f.refuse['room.join'] = 'forbidden';
    await assert.rejects(f.c.joinRoom(7), { code: 'forbidden' });
    f.c.close();
    await assert.rejects(f.c.joinRoom(7), { code: 'disconnected' });
  });

  test('removed by the owner, or the room deleted: out of rooms, with the event', async () => {
    const f = fakeCluster();
    const ws = await online(f);
    await f.c.joinRoom(7);
    await f.c.joinRoom(8);
    const seen = [];
    f.c.on('room.left', (d) => seen.push(['left', d.reason]));
    f.c.on('room.deleted', (d) => seen.push(['deleted', d.room_id]));
    ws.push({ cmd: 'room.left', data: { room_id: 7, user_id: 'alice', member_no: 1, reason: 'removed' } });
    ws.push({ cmd: 'room.deleted', data: { room_id: 8 } });
    assert.deepEqual(seen, [['left', 'removed'], ['deleted', 8]]);
    assert.equal(f.c.rooms.size, 0);
    // Neither is joined again after a reconnect.
    ws.cut();
    const ws2 = await until(() => f.c.ready && f.ws() !== ws && f.ws(), 'reconnected');
    await sleep(20);
    assert.deepEqual(roomCmds(ws2), []);
    f.c.close();
  });
});

describe('events about oneself', () => {
  test('joined from another connection: out here (moved), not rejoined', async () => {
    const f = fakeCluster();
    const ws = await online(f);
    const me = (await f.c.joinRoom(7)).me;
    const gone = [];
    f.c.on('room.state', (id, room, why) => room === null && gone.push([id, why.reason]));
    ws.push({ cmd: 'room.joined', data: { room_id: 7, user_id: 'alice', member_no: me, muted: false } });
    assert.deepEqual(gone, [[7, 'moved']]);
    assert.equal(f.c.rooms.size, 0);
    assert.equal(f.c.sendAudio(7, 1, new Uint8Array([1])), false);
    ws.cut();
    const ws2 = await until(() => f.c.ready && f.ws() !== ws && f.ws(), 'reconnected');
    await sleep(20);
    assert.deepEqual(roomCmds(ws2), []);
  });

  test('node_lost about oneself while connected: joined again on this connection', async () => {
    const f = fakeCluster();
    const ws = await online(f);
    const me = (await f.c.joinRoom(7)).me;
    const rejoined = [];
    f.c.on('room.rejoined', (room, info) => rejoined.push([room.me, info.previousMe]));
    // A stale row of an older membership (another number) is ignored.
    ws.push({ cmd: 'room.left', data: { room_id: 7, user_id: 'alice', member_no: me + 10, reason: 'node_lost' } });
    assert.equal(f.c.rooms.get(7).connected, true);
    f.store.get(7).members.delete('alice');
    ws.push({ cmd: 'room.left', data: { room_id: 7, user_id: 'alice', member_no: me, reason: 'node_lost' } });
    assert.equal(f.c.rooms.get(7).connected, false);
    await until(() => rejoined.length, 'rejoined');
    assert.deepEqual(rejoined, [[me + 1, me]]);
    assert.deepEqual(roomCmds(ws).map((x) => x.cmd), ['room.join', 'room.join']);
    assert.equal(f.c.sendAudio(7, 1, new Uint8Array([1])), true);
  });

  test('a token refused on reconnect (4001): the rooms are forgotten', async () => {
    const f = fakeCluster();
    const ws = await online(f);
    await f.c.joinRoom(7);
    const gone = [];
    f.c.on('room.state', (id, room, why) => room === null && gone.push(why.reason));
    f.c.on('unauthorized', () => {});
    ws.readyState = 3;
    ws.onclose({ code: 4001, reason: 'token revoked' });
    assert.deepEqual(gone, ['closed']);
    assert.equal(f.c.rooms.size, 0);
  });
});

describe('audio frames', () => {
  test('encode and decode: big-endian headers, the payload as is', () => {
    const up = encodeAudioFrame(0x01020304, 0x0506, new Uint8Array([9, 8, 7]));
    assert.deepEqual([...up], [1, 1, 2, 3, 4, 5, 6, 9, 8, 7]);
    assert.deepEqual([...encodeAudioFrame(1, 0x10001, [1].length ? new Uint8Array([1]) : null)].slice(5, 7), [0, 1], 'seq wraps at 16 bits');
    assert.throws(() => encodeAudioFrame(1, 0, new Uint8Array(0)), RangeError);
    assert.throws(() => encodeAudioFrame(1, 0, new Uint8Array(4001)), RangeError);
    assert.equal(encodeAudioFrame(1, 0, new Uint8Array(4000)).length, 4007);
    const down = encodeRelayedFrame(0xfffffffe, 0xa0b0c0d0, 65535, new Uint8Array([42, 43]));
    assert.deepEqual([...down.subarray(0, 11)], [1, 0xff, 0xff, 0xff, 0xfe, 0xa0, 0xb0, 0xc0, 0xd0, 0xff, 0xff]);
    const f = decodeAudioFrame(down.buffer);
    assert.deepEqual({ ...f, payload: [...f.payload] }, { roomId: 0xfffffffe, memberNo: 0xa0b0c0d0, seq: 65535, payload: [42, 43] });
    assert.equal(decodeAudioFrame(new Uint8Array([1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0])), null, 'no payload');
    assert.equal(decodeAudioFrame(new Uint8Array([2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 5])), null, 'another kind');
  });

  test('sendAudio sends the binary frame once joined on this connection; audio events name the sender', async () => {
    const f = fakeCluster();
    const ws = await online(f);
    assert.equal(f.c.sendAudio(7, 1, new Uint8Array([1, 2])), false, 'not in the room');
    const bobNo = f.seat(7, 'bob');
    await f.c.joinRoom(7);
    assert.equal(f.c.sendAudio(7, 1, new Uint8Array([1, 2])), true);
    assert.equal(f.c.sendAudio(7, 2, new Uint8Array([3]).buffer), true);
    assert.deepEqual(ws.binary.map((b) => [...b]), [[1, 0, 0, 0, 7, 0, 1, 1, 2], [1, 0, 0, 0, 7, 0, 2, 3]]);
    ws.bufferedAmount = 100000;
    assert.equal(f.c.sendAudio(7, 3, new Uint8Array([3])), false, 'a socket far behind drops the frame');
    ws.bufferedAmount = 0;
    const got = [];
    f.c.on('audio', (a) => got.push({ ...a, payload: [...a.payload] }));
    ws.pushBinary(encodeRelayedFrame(7, bobNo, 12, new Uint8Array([5, 6, 7])));
    ws.pushBinary(new Uint8Array([1, 2, 3])); // not a frame: ignored
    assert.deepEqual(got, [{ roomId: 7, memberNo: bobNo, userId: 'bob', seq: 12, payload: [5, 6, 7] }]);
    f.c.close();
  });
});

describe('rejoining after a reconnect', () => {
  test('the rooms are joined again on the new connection; room.rejoined has the new member list', async () => {
    const f = fakeCluster();
    const ws = await online(f);
    f.seat(7, 'bob');
    await f.c.joinRoom(7);
    const rejoined = [];
    f.c.on('room.rejoined', (room, info) => rejoined.push([room.me, info.previousMe, room.members.map((m) => m.user_id)]));
    const states = [];
    f.c.on('room.state', (id, room) => states.push(room?.connected));
    ws.cut();
    await until(() => states.includes(false), 'the room shown as not connected');
    assert.equal(f.c.sendAudio(7, 1, new Uint8Array([1])), false, 'not joined until the rejoin');
    // Meanwhile bob left and carol came.
    f.store.get(7).members.delete('bob');
    f.seat(7, 'carol');
    await until(() => rejoined.length, 'rejoined');
    const ws2 = f.ws();
    assert.notEqual(ws2, ws);
    assert.deepEqual(roomCmds(ws2).map((x) => x.cmd), ['room.join']);
    assert.deepEqual(rejoined, [[2, 2, ['alice', 'carol']]]);
    assert.equal(f.c.rooms.get(7).connected, true);
    assert.equal(f.c.sendAudio(7, 2, new Uint8Array([1])), true);
    assert.equal(ws2.binary.length, 1);
    f.c.close();
  });

  test('after its node crashed, the client reconnects to another node and rejoins there', async () => {
    const f = fakeCluster({ nodes: ['http://a.test', 'http://b.test'] });
    const ws = await online(f);
    assert.equal(ws.host, 'a.test');
    f.seat(7, 'bob');
    await f.c.joinRoom(7);
    const nodes = [];
    f.c.on('node', (u) => nodes.push(u));
    const rejoined = [];
    f.c.on('room.rejoined', (room) => rejoined.push(room));
    // Node a dies: its sockets are cut and it answers nothing any more. Node b took the
    // members of a for dead meanwhile: alice comes back as a new member.
    f.down.add('a.test');
    f.store.get(7).members.delete('alice');
    ws.cut();
    await until(() => rejoined.length, 'rejoined on b');
    assert.deepEqual(nodes, ['http://b.test']);
    assert.equal(f.c.baseUrl, 'http://b.test');
    const ws2 = f.ws();
    assert.equal(ws2.host, 'b.test');
    assert.deepEqual(roomCmds(ws2).map((x) => [x.cmd, x.data]), [['room.join', { room_id: 7 }]]);
    assert.equal(rejoined[0].me, 3);
    assert.deepEqual(rejoined[0].members.map((m) => [m.user_id, m.member_no]), [['bob', 1], ['alice', 3]]);
    assert.ok(f.calls.some((c) => c.host === 'b.test' && c.path === '/conversations'), 'HTTP goes to b too');
    assert.equal(f.c.sendAudio(7, 1, new Uint8Array([1])), true);
    assert.equal(ws2.binary.length, 1);
    f.c.close();
  });

  test('a node that says it is stopping (1001) sends the client to the next node', async () => {
    const f = fakeCluster({ nodes: ['http://a.test', 'http://b.test'] });
    const ws = await online(f);
    await f.c.joinRoom(7);
    ws.readyState = 3;
    ws.onclose({ code: 1001, reason: 'node stopping' });
    await until(() => f.c.ready && f.ws().host === 'b.test' && f.c.rooms.get(7)?.connected, 'rejoined on b');
    f.c.close();
  });

  test('a rejoin refused for good drops the room; one left meanwhile is left on the node too', async () => {
    const f = fakeCluster();
    const ws = await online(f);
    await f.c.joinRoom(7);
    await f.c.joinRoom(8);
    const failed = [];
    f.c.on('room.rejoin_failed', (d) => failed.push([d.room_id, d.error.code]));
    f.refuse['room.join'] = 'forbidden';
    ws.cut();
    await until(() => failed.length === 2, 'both refused');
    assert.deepEqual(failed.sort(), [[7, 'forbidden'], [8, 'forbidden']]);
    assert.equal(f.c.rooms.size, 0);
    delete f.refuse['room.join'];
    await f.c.joinRoom(9);
    // Cut again, and leave while the rejoin is out: the rejoin's reply is followed by a leave.
    const ws2 = f.ws();
    ws2.cut();
    await until(() => f.ws() !== ws2 && f.ws().sent.some((x) => x.cmd === 'room.join'), 'rejoin sent');
    await f.c.leaveRoom(9);
    const ws3 = f.ws();
    await until(() => roomCmds(ws3).filter((x) => x.cmd === 'room.leave').length >= 1, 'leave sent');
    assert.equal(f.c.rooms.size, 0);
    f.c.close();
  });

  test('a self-mute the rejoin lost is applied again', async () => {
    const f = fakeCluster();
    const ws = await online(f);
    await f.c.joinRoom(7);
    await f.c.muteSelf(7, true);
    f.store.get(7).members.delete('alice'); // the node let the member go: back unmuted
    ws.cut();
    await until(() => f.ws() !== ws && roomCmds(f.ws()).some((x) => x.cmd === 'room.mute'), 'mute again');
    assert.deepEqual(roomCmds(f.ws()).map((x) => [x.cmd, x.data]), [['room.join', { room_id: 7 }], ['room.mute', { room_id: 7, muted: true }]]);
    await until(() => f.c.rooms.get(7).members.find((m) => m.user_id === 'alice').muted, 'muted in the list');
    f.c.close();
  });

  test('close() forgets the rooms (the node leaves them with the connection)', async () => {
    const f = fakeCluster();
    await online(f);
    await f.c.joinRoom(7);
    const gone = [];
    f.c.on('room.state', (id, room, why) => room === null && gone.push(why.reason));
    f.c.close();
    assert.deepEqual(gone, ['closed']);
    assert.equal(f.c.rooms.size, 0);
  });
});
