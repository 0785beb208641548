// The SDK against a real node (started here, stopped by PID): accounts, conversations, live
// messages, offline sync, retries, reconnects, files, events and broadcasts.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { ApiError, ConvergeClient, State } from '../src/index.js';
import { flakyWebSocket } from '../test-support/flaky-ws.mjs';
import { api, startNode } from '../test-support/node.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(fn, { timeout = 10000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

let node;
let seq = 0;
const ADMIN = { user_id: 'root', password: 'root-password-1' };

before(async () => {
  node = await startNode({
    env: {
      CONVERGE_HEARTBEAT_INTERVAL_MS: '300',
      CONVERGE_HEARTBEAT_TIMEOUT_MS: '3000',
      CONVERGE_ADMIN_USER: ADMIN.user_id,
      CONVERGE_ADMIN_PASSWORD: ADMIN.password,
      CONVERGE_MAX_FILE_BYTES: String(1500 * 1000),
    },
  });
});
after(async () => {
  await node?.stop();
});

const clients = [];
function client(opts = {}) {
  const c = new ConvergeClient({
    baseUrl: node.baseUrl,
    WebSocket,
    backoff: { initialMs: 50, maxMs: 400 },
    ackTimeoutMs: 2000,
    ...opts,
  });
  clients.push(c);
  return c;
}
after(() => clients.forEach((c) => c.close()));

/** A new user, logged in on a new device; messages it receives are collected in `.got`. */
async function user(name, opts = {}) {
  const id = `${name}${++seq}${Date.now() % 100000}`;
  const c = client(opts);
  await c.register({ user_id: id, name, password: 'password-' + id });
  await c.login({ user_id: id, password: 'password-' + id, device_id: opts.device_id || 'dev-' + id });
  c.id = id;
  c.got = [];
  c.on('message', (m, info) => c.got.push({ ...m, source: info.source }));
  return c;
}

/** Another device (or a later session of the same device) of an existing user. */
async function sameUser(c, device_id, opts = {}) {
  const d = client(opts);
  await d.login({ user_id: c.id, password: 'password-' + c.id, device_id });
  d.id = c.id;
  d.got = [];
  d.on('message', (m, info) => d.got.push({ ...m, source: info.source }));
  return d;
}

// The bodies a client received in one conversation, by seq. (Arrival order can differ from seq
// order when a message comes live while a resync is still bringing older ones.) A group's own
// changes (system messages: members added, removed, ...) are left out; they take seqs too.
const chat = (m) => m.type !== 'system';
const bodies = (c, conv) =>
  c.got
    .filter((m) => m.conversation_id === conv && chat(m))
    .sort((x, y) => x.seq - y.seq)
    .map((m) => m.body);

describe('accounts', () => {
  test('register, login, me, user profile; errors carry code and status', async () => {
    const a = await user('alice');
    const me = await a.me();
    assert.equal(me.user_id, a.id);
    assert.equal(me.name, 'alice');
    assert.equal(a.session.device_id, 'dev-' + a.id);
    assert.deepEqual(await a.getUser(a.id), { user_id: a.id, name: 'alice' });
    await assert.rejects(a.register({ user_id: a.id, name: 'x', password: 'whatever-1' }), (e) => {
      assert.ok(e instanceof ApiError);
      assert.equal(e.code, 'conflict');
      assert.equal(e.status, 409);
      return true;
    });
    await assert.rejects(a.login({ user_id: a.id, password: 'wrong' }), { code: 'unauthorized', status: 401 });
    await assert.rejects(a.getUser('nobody-here'), { code: 'not_found' });
  });

  test('connect without a session or with a bad token fails cleanly', async () => {
    await assert.rejects(client().connect(), { code: 'unauthorized' });
    const c = client({ session: { token: 'bad', user_id: 'x', device_id: 'y' } });
    const states = [];
    c.on('state', (s) => states.push(s));
    await assert.rejects(c.connect(), { status: 401 });
    assert.equal(c.state, State.offline);
    assert.deepEqual(states, ['connecting', 'offline']);
  });
});

describe('conversations and live messages', () => {
  test('two users chat both ways; acks carry seq; each message arrives once', async () => {
    const a = await user('alice');
    const b = await user('bob');
    const states = [];
    a.on('state', (s) => states.push(s));
    await Promise.all([a.connect(), b.connect()]);
    assert.equal(a.state, 'online');
    assert.deepEqual(states, ['connecting', 'online']);
    assert.ok(a.ready.heartbeat_interval_ms > 0);

    const conv = await a.createDirect(b.id);
    assert.equal(conv.type, 'direct');
    assert.deepEqual([...conv.members].sort(), [a.id, b.id].sort());
    assert.equal((await b.createDirect(a.id)).id, conv.id, 'direct conversations are one per pair');

    const ack1 = await a.sendText(conv.id, 'hi bob');
    assert.equal(ack1.seq, 1);
    assert.equal(ack1.conversation_id, conv.id);
    const ack2 = await b.sendText(conv.id, 'hi alice');
    assert.equal(ack2.seq, 2);
    await waitFor(() => bodies(b, conv.id).length === 2 && bodies(a, conv.id).length === 2, { what: 'both messages on both sides' });
    assert.deepEqual(bodies(a, conv.id), ['hi bob', 'hi alice']);
    assert.deepEqual(bodies(b, conv.id), ['hi bob', 'hi alice']);
    const m = b.got[0];
    assert.equal(m.publisher_id, a.id);
    assert.equal(m.publisher_name, 'alice');
    assert.equal(m.type, 'text');
    assert.equal(m.source, 'live');
    assert.equal(m.client_msg_id, ack1.client_msg_id);
    // b learned of the conversation from the message and refreshed its list.
    await waitFor(() => b.conversations.has(conv.id), { what: "b's conversation list" });
    assert.equal(b.conversations.get(conv.id).last_seq, 2);

    await sleep(700); // a few heartbeats: nothing is delivered twice
    assert.equal(bodies(a, conv.id).length, 2);
  });

  test('a retried send (same client_msg_id) is stored once', async () => {
    const a = await user('alice');
    const b = await user('bob');
    await a.connect();
    const conv = await a.createDirect(b.id);
    const first = await a.send(conv.id, { body: 'once', client_msg_id: 'fixed-id-1' });
    const again = await a.send(conv.id, { body: 'once', client_msg_id: 'fixed-id-1' });
    assert.equal(again.seq, first.seq);
    assert.equal(again.duplicate, true);
    const h = await a.history(conv.id, { afterSeq: 0 });
    assert.equal(h.length, 1);
  });

  test('a send the server refuses rejects and leaves the outbox', async () => {
    const a = await user('alice');
    const b = await user('bob');
    const c = await user('carol');
    await a.connect();
    const conv = await b.createDirect(c.id);
    const failed = [];
    a.on('send_failed', (m) => failed.push(m));
    await assert.rejects(a.sendText(conv.id, 'not mine'), { code: 'forbidden' });
    assert.equal(failed.length, 1);
    assert.deepEqual(a.pending(), []);
  });

  test('group: members added later receive new messages and can read the history', async () => {
    const a = await user('alice');
    const b = await user('bob');
    const c = await user('carol');
    await Promise.all([a.connect(), b.connect(), c.connect()]);
    const g = await a.createGroup({ name: 'team', members: [b.id] });
    assert.equal(g.type, 'group');
    assert.equal(g.name, 'team');
    for (let i = 1; i <= 5; i++) await a.sendText(g.id, `m${i}`);
    await waitFor(() => bodies(b, g.id).length === 5, { what: 'b has 5' });
    const g2 = await a.addMembers(g.id, [c.id]);
    assert.ok(g2.members.includes(c.id));
    await b.sendText(g.id, 'welcome carol');
    await waitFor(() => bodies(c, g.id).includes('welcome carol'), { what: 'carol gets the live message' });
    await waitFor(() => c.conversations.has(g.id), { what: "carol's list refreshed" });
    const hist = await c.latest(g.id, 10);
    assert.deepEqual(hist.filter(chat).map((m) => m.body), ['m1', 'm2', 'm3', 'm4', 'm5', 'welcome carol']);
    assert.ok(hist.some((m) => m.type === 'system' && m.event?.event === 'member_added'), 'carol being added is in the history');
    await a.removeMember(g.id, c.id);
    await assert.rejects(c.sendText(g.id, 'still here?'), { code: 'forbidden' });
  });

  test('history pages upward (before_seq) and forward (after_seq)', async () => {
    const a = await user('alice');
    const b = await user('bob');
    const conv = await a.createDirect(b.id);
    for (let i = 1; i <= 25; i++) await api(node.baseUrl, 'POST', `/conversations/${conv.id}/messages`, {
      token: a.session.token,
      json: { type: 'text', body: `n${i}`, client_msg_id: `h${i}` },
    });
    const last = await a.latest(conv.id, 10);
    assert.deepEqual(last.map((m) => m.seq), [16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    const older = await a.history(conv.id, { beforeSeq: last[0].seq, limit: 10 });
    assert.deepEqual(older.map((m) => m.seq), [6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    const oldest = await a.history(conv.id, { beforeSeq: older[0].seq, limit: 10 });
    assert.deepEqual(oldest.map((m) => m.body), ['n1', 'n2', 'n3', 'n4', 'n5']);
    const fwd = await a.history(conv.id, { afterSeq: 20, limit: 3 });
    assert.deepEqual(fwd.map((m) => m.seq), [21, 22, 23]);
  });
});

describe('offline, heartbeats, reconnects', () => {
  test('offline messages arrive at connect (all pages), and heartbeats mark them processed', async () => {
    const a = await user('alice');
    const b = await user('bob', { syncPageSize: 7 });
    const conv = await a.createDirect(b.id);
    for (let i = 1; i <= 20; i++) await api(node.baseUrl, 'POST', `/conversations/${conv.id}/messages`, {
      token: a.session.token,
      json: { type: 'text', body: `o${i}`, client_msg_id: `o${i}` },
    });
    await b.connect();
    await waitFor(() => bodies(b, conv.id).length === 20, { what: '20 offline messages' });
    assert.deepEqual(bodies(b, conv.id), Array.from({ length: 20 }, (_, i) => `o${i + 1}`));
    assert.ok(b.got.every((m) => m.source === 'offline'));
    assert.deepEqual(b.processedSeqs(), { [conv.id]: 20 });
    await sleep(800); // heartbeats and the post-connect sync: still once each
    assert.equal(bodies(b, conv.id).length, 20);
    b.close();

    // A later session of the same device gets only what came after its heartbeat.
    await api(node.baseUrl, 'POST', `/conversations/${conv.id}/messages`, {
      token: a.session.token,
      json: { type: 'text', body: 'after', client_msg_id: 'after-1' },
    });
    const b2 = await sameUser(b, b.session.device_id);
    await b2.connect();
    await waitFor(() => bodies(b2, conv.id).length >= 1, { what: 'the newer message' });
    await sleep(500);
    assert.deepEqual(bodies(b2, conv.id), ['after']);
  });

  test('with autoProcess off, heartbeats carry only what the app marked processed', async () => {
    const a = await user('alice');
    const b = await user('bob', { autoProcess: false });
    const conv = await a.createDirect(b.id);
    for (let i = 1; i <= 4; i++) await api(node.baseUrl, 'POST', `/conversations/${conv.id}/messages`, {
      token: a.session.token,
      json: { type: 'text', body: `p${i}`, client_msg_id: `p${i}` },
    });
    await b.connect();
    await waitFor(() => b.got.length === 4, { what: '4 messages' });
    assert.deepEqual(b.processedSeqs(), {});
    b.markProcessed(conv.id, 2);
    assert.deepEqual(b.processedSeqs(), { [conv.id]: 2 });
    await b.heartbeat();
    b.close();
    const b2 = await sameUser(b, b.session.device_id);
    await b2.connect();
    await waitFor(() => b2.got.length === 2, { what: 'the 2 unprocessed' });
    assert.deepEqual(bodies(b2, conv.id), ['p3', 'p4']);
  });

  test('a cut connection reconnects with backoff, resyncs, and the outbox goes out once', async () => {
    const net = flakyWebSocket();
    const a = await user('alice');
    const b = await user('bob', { WebSocket: net.WebSocket });
    await Promise.all([a.connect(), b.connect()]);
    const conv = await a.createDirect(b.id);
    await a.sendText(conv.id, 'before');
    await waitFor(() => bodies(b, conv.id).length === 1, { what: 'first message' });

    const states = [];
    const delays = [];
    b.on('state', (s) => states.push(s));
    b.on('reconnecting', (r) => delays.push(r.delay));
    net.refuse = true;
    net.cut();
    await waitFor(() => b.state === 'connecting', { what: 'b connecting' });
    // Missed while away: sent by the other side...
    for (let i = 1; i <= 3; i++) await a.sendText(conv.id, `missed${i}`);
    // ...and queued on this side.
    const queued = b.sendText(conv.id, 'from the outbox');
    assert.equal(b.pending().length, 1);
    await waitFor(() => delays.length >= 3, { what: 'several reconnect attempts' });
    net.refuse = false;
    const ack = await queued;
    assert.ok(ack.seq > 4);
    await waitFor(() => bodies(b, conv.id).length === 5, { what: 'b resynced' });
    assert.deepEqual(bodies(b, conv.id), ['before', 'missed1', 'missed2', 'missed3', 'from the outbox']);
    await waitFor(() => bodies(a, conv.id).includes('from the outbox'), { what: 'a got the queued message' });
    assert.equal(bodies(a, conv.id).filter((x) => x === 'from the outbox').length, 1);
    assert.equal(states[0], 'connecting');
    assert.equal(states.at(-1), 'online');
    assert.ok(delays.every((d) => d <= 400), 'capped at maxMs');
    const h = await a.history(conv.id, { afterSeq: 0 });
    assert.equal(h.filter((m) => m.body === 'from the outbox').length, 1, 'stored once');
  });

  test('a silent (dead) connection is noticed by heartbeats and replaced', async () => {
    const net = flakyWebSocket();
    const b = await user('bob', { WebSocket: net.WebSocket });
    const a = await user('alice');
    await Promise.all([a.connect(), b.connect()]);
    const conv = await a.createDirect(b.id);
    const opened = net.opened;
    net.deafen(); // the socket stays "open" but nothing gets through
    await a.sendText(conv.id, 'into the void');
    await waitFor(() => net.opened > opened, { what: 'a new connection', timeout: 5000 });
    await waitFor(() => bodies(b, conv.id).includes('into the void'), { what: 'the message after resync' });
  });

  test('sends queued while the node restarts go out once it is back', async () => {
    const a = await user('alice');
    const b = await user('bob');
    await Promise.all([a.connect(), b.connect()]);
    const conv = await a.createDirect(b.id);
    await a.sendText(conv.id, 'one');
    const states = [];
    a.on('state', (s) => states.push(s));
    await node.stop({ keepData: true });
    await waitFor(() => a.state === 'connecting', { what: 'a notices' });
    const p = a.sendText(conv.id, 'two');
    await sleep(300);
    await node.start();
    const ack = await p;
    assert.equal(ack.seq, 2);
    await waitFor(() => bodies(b, conv.id).length === 2, { what: 'b reconnected and got both' });
    assert.deepEqual(bodies(b, conv.id), ['one', 'two']);
    assert.deepEqual(states.slice(0, 1), ['connecting']);
    assert.equal(states.at(-1), 'online');
  });
});

// The node's `conversation` push (docs/protocol.md, WebSocket, node -> client). These tests hand
// the client the documented frame themselves (built from the node's own HTTP answer, as the
// node builds it) and keep back whatever the node sends about membership, so they check the
// SDK's side whatever the node does; the last two talk to the node alone.
const notices = (text) => {
  try {
    return JSON.parse(text).cmd === 'conversation';
  } catch {
    return false; // not a notice; reported on 'error' by the client
  }
};

/** A user whose membership pushes come from the test (net.inject) only. */
async function pushedUser(name) {
  const net = flakyWebSocket();
  net.drop = notices;
  const u = await user(name, { WebSocket: net.WebSocket });
  u.net = net;
  u.pushes = [];
  u.on('conversation', (c, info) => u.pushes.push({ c, info }));
  return u;
}

const push = (u, conv, change) => u.net.inject({ cmd: 'conversation', data: { ...conv, change } });
const sources = (c, conv) =>
  c.got
    .filter((m) => m.conversation_id === conv && chat(m))
    .sort((x, y) => x.seq - y.seq)
    .map((m) => m.source);

describe('membership pushes (the conversation event)', () => {
  test('added to a group: event, list, the earlier messages once, then live; heartbeats carry it', async () => {
    const a = await user('alice');
    const b = await pushedUser('bob');
    const c = await user('carol');
    await Promise.all([a.connect(), b.connect()]);
    const g = await a.createGroup({ name: 'crew', members: [c.id] });
    for (let i = 1; i <= 3; i++) await a.sendText(g.id, `before${i}`);
    const lists = [];
    b.on('conversations', (l) => lists.push(l.map((x) => x.id)));

    const added = await a.addMembers(g.id, [b.id]);
    assert.equal(b.conversations.has(g.id), false);
    push(b, added, 'member_added');
    // Synchronous: the list is current when the event comes.
    assert.equal(b.pushes.length, 1);
    const { c: data, info } = b.pushes[0];
    assert.deepEqual(info, { change: 'member_added', member: true, joined: true });
    assert.equal(data.change, 'member_added');
    assert.equal(data.id, g.id);
    assert.equal(data.name, 'crew');
    const cached = b.conversations.get(g.id);
    assert.equal(cached.name, 'crew');
    assert.deepEqual([...cached.members].sort(), [a.id, b.id, c.id].sort());
    assert.equal(cached.change, undefined, 'the cached conversation is the object, without change');
    assert.ok(lists.at(-1).includes(g.id));

    // What was said before the join comes at once (fetched), each message once...
    await waitFor(() => bodies(b, g.id).length === 3, { what: 'the 3 earlier messages' });
    assert.deepEqual(bodies(b, g.id), ['before1', 'before2', 'before3']);
    // Fetched by the SDK ('sync'); the node may also stream them from the store ('live') —
    // it does since the groups change when they were sent over a WebSocket. Once either way.
    assert.equal(sources(b, g.id).length, 3);
    // ...and what is said after it, live.
    await a.sendText(g.id, 'after');
    await waitFor(() => bodies(b, g.id).length === 4, { what: 'the live message' });
    assert.equal(sources(b, g.id).at(-1), 'live');
    const last = (await a.getConversation(g.id)).last_seq; // bob being added is a message too
    await waitFor(() => b.processedSeqs()[g.id] === last, { what: 'every seq processed' });
    const hb = await b.heartbeat();
    assert.equal(hb.seqs[g.id], last);
    await sleep(700); // heartbeats: nothing twice
    assert.equal(bodies(b, g.id).length, 4);
  });

  test('created with the user in it; removed (gone, heartbeats leave it out); added back (only what came meanwhile)', async () => {
    const a = await user('alice');
    const b = await pushedUser('bob');
    await Promise.all([a.connect(), b.connect()]);
    const g = await a.createGroup({ name: 'club', members: [b.id] });
    push(b, g, 'created');
    assert.deepEqual(b.pushes[0].info, { change: 'created', member: true, joined: true });
    assert.equal(b.conversations.get(g.id).last_seq, 0);
    await a.sendText(g.id, 'one');
    await a.sendText(g.id, 'two');
    await waitFor(() => bodies(b, g.id).length === 2, { what: 'two live messages' });
    assert.deepEqual(sources(b, g.id), ['live', 'live'], 'a new conversation starts at seq 1: no fetch');
    assert.equal(b.processedSeqs()[g.id], (await a.getConversation(g.id)).last_seq);

    const removed = await a.removeMember(g.id, b.id);
    assert.ok(!removed.members.includes(b.id));
    push(b, removed, 'member_removed');
    assert.deepEqual(b.pushes[1].info, { change: 'member_removed', member: false, joined: false });
    assert.equal(b.pushes[1].c.owner, a.id);
    assert.equal(b.conversations.has(g.id), false);
    assert.equal(g.id in b.processedSeqs(), false);
    await b.heartbeat(); // not refused: it does not name the conversation
    await a.sendText(g.id, 'while away 1');
    await a.sendText(g.id, 'while away 2');

    const back = await a.addMembers(g.id, [b.id]);
    push(b, back, 'member_added');
    assert.deepEqual(b.pushes[2].info, { change: 'member_added', member: true, joined: true });
    await waitFor(() => bodies(b, g.id).length === 4, { what: 'what came meanwhile' });
    assert.deepEqual(bodies(b, g.id), ['one', 'two', 'while away 1', 'while away 2']);
    // What came meanwhile is fetched ('sync'), or streamed by the node from the device's cursor
    // once the re-add (a stored message of its own now) reaches it ('live'): once either way.
    assert.deepEqual(sources(b, g.id).slice(0, 2), ['live', 'live']);
    const last = (await a.getConversation(g.id)).last_seq; // the removal and the re-add are messages too
    await waitFor(() => b.processedSeqs()[g.id] === last, { what: 'every seq processed' });
    await sleep(500);
    assert.equal(bodies(b, g.id).length, 4);
  });

  test('others leaving and the owner handing over: the member list and owner follow, no event flags a join', async () => {
    const a = await user('alice');
    const b = await pushedUser('bob');
    const c = await user('carol');
    await Promise.all([a.connect(), b.connect()]);
    const g = await a.createGroup({ name: 'trio', members: [b.id, c.id] });
    push(b, g, 'created');
    const left = await a.removeMember(g.id, a.id); // the owner leaves: bob joined first after her
    push(b, left, 'member_removed');
    assert.deepEqual(b.pushes[1].info, { change: 'member_removed', member: true, joined: false });
    const cached = b.conversations.get(g.id);
    assert.equal(cached.owner, b.id);
    assert.deepEqual([...cached.members].sort(), [b.id, c.id].sort());
    // A push's `muted` is not this user's flag: the one known here is kept.
    await b.mute(g.id, true);
    b.conversations.get(g.id).muted = true;
    const readd = await c.addMembers(g.id, [a.id]);
    push(b, { ...readd, muted: false }, 'member_added');
    assert.equal(b.conversations.get(g.id).muted, true);
    assert.equal(b.conversations.get(g.id).members.length, 3);
  });

  test('a live message before the push: the hole below it is fetched once; the late push adds nothing', async () => {
    const a = await user('alice');
    const b = await pushedUser('bob');
    const c = await user('carol');
    await Promise.all([a.connect(), b.connect()]);
    const g = await a.createGroup({ name: 'late', members: [c.id] });
    for (let i = 1; i <= 5; i++) await a.sendText(g.id, `old${i}`);
    const added = await a.addMembers(g.id, [b.id]);
    await a.sendText(g.id, 'first live');
    await waitFor(() => bodies(b, g.id).length === 6, { what: 'the live message and the 5 before it' });
    assert.deepEqual(bodies(b, g.id), ['old1', 'old2', 'old3', 'old4', 'old5', 'first live']);
    assert.equal(b.got.find((m) => m.body === 'first live').source, 'live');
    await waitFor(() => b.conversations.has(g.id), { what: 'the list refreshed' });
    push(b, added, 'member_added');
    assert.deepEqual(b.pushes[0].info, { change: 'member_added', member: true, joined: false });
    const last = (await a.getConversation(g.id)).last_seq; // 'first live', after bob's member_added message
    assert.equal(b.conversations.get(g.id).last_seq, last, 'a stale last_seq does not go backwards');
    await sleep(500);
    assert.equal(bodies(b, g.id).length, 6);
    assert.equal(b.processedSeqs()[g.id], last);
  });

  test('the list follows membership changes made by others, with no message and no reconnect', async () => {
    const a = await user('alice');
    const b = await user('bob');
    await Promise.all([a.connect(), b.connect()]);
    const g = await a.createGroup({ name: 'quiet', members: [b.id] });
    await waitFor(() => b.conversations.get(g.id)?.name === 'quiet', { what: "the group in bob's list", timeout: 3000 });
    await a.removeMember(g.id, b.id);
    await waitFor(() => !b.conversations.has(g.id), { what: "the group gone from bob's list", timeout: 3000 });
  });

  test(
    'the node sends membership changes as conversation frames',
    async () => {
      const net = flakyWebSocket();
      const frames = [];
      net.drop = (text) => void frames.push(text);
      const a = await user('alice');
      const b = await user('bob', { WebSocket: net.WebSocket });
      const events = [];
      b.on('conversation', (c, info) => events.push({ c, info }));
      await Promise.all([a.connect(), b.connect()]);
      const g = await a.createGroup({ name: 'wire', members: [b.id] });
      await waitFor(() => events.length >= 1, { what: 'a conversation event', timeout: 3000 }).catch(() => {});
      const parsed = frames.map((t) => {
        try {
          return JSON.parse(t);
        } catch {
          return { raw: t };
        }
      });
      const pushFrame = parsed.find((f) => f.cmd === 'conversation');
      assert.ok(pushFrame, `no conversation frame; got ${JSON.stringify(parsed.filter((f) => f.cmd !== 'ready' && f.cmd !== 'heartbeat'))}`);
      assert.equal(pushFrame.data.id, g.id);
      assert.equal(pushFrame.data.change, 'created');
      assert.deepEqual(events[0].info, { change: 'created', member: true, joined: true });
    },
  );
});

describe('files, events, broadcasts', () => {
  test('upload, send as image, download through fileUrl', async () => {
    const a = await user('alice');
    const b = await user('bob');
    await Promise.all([a.connect(), b.connect()]);
    const conv = await a.createDirect(b.id);
    const bytes = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10, 1, 2, 3]);
    const ack = await a.sendFile(conv.id, new Blob([bytes], { type: 'image/png' }), { type: 'image', name: 'dot.png' });
    assert.equal(ack.file.name, 'dot.png');
    assert.equal(ack.file.size, bytes.length);
    const m = await waitFor(() => b.got.find((x) => x.type === 'image'), { what: 'image message' });
    assert.equal(m.body, 'dot.png');
    assert.equal(m.file.file_id, ack.file.file_id);
    assert.equal(m.file.mime, 'image/png');
    const r = await fetch(b.fileUrl(m));
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'image/png');
    assert.deepEqual(new Uint8Array(await r.arrayBuffer()), bytes);
    const c = await user('carol');
    assert.equal((await fetch(c.fileUrl(m))).status, 403, 'not for non-members');
  });

  test('download with fetchFile / fileObjectUrl: the token in a header, never in the URL', async () => {
    const urls = [];
    const recording = (url, init) => {
      urls.push({ url: String(url), auth: init?.headers?.Authorization });
      return fetch(url, init);
    };
    const a = await user('alice');
    const b = await user('bob', { fetch: recording });
    await Promise.all([a.connect(), b.connect()]);
    const conv = await a.createDirect(b.id);
    const bytes = new TextEncoder().encode('meeting at noon\n');
    const ack = await a.sendFile(conv.id, bytes, { type: 'file', name: 'notes.txt', mime: 'text/plain' });
    const m = await waitFor(() => b.got.find((x) => x.type === 'file'), { what: 'file message' });

    urls.length = 0;
    const blob = await b.fetchFile(m);
    assert.equal(blob.type, 'text/plain');
    assert.equal(await blob.text(), 'meeting at noon\n');
    assert.deepEqual(urls, [{ url: `${node.baseUrl}/api/v1/files/${ack.file.file_id}`, auth: `Bearer ${b.session.token}` }]);
    // Same bytes by file_id and by the upload answer; the uploader may download it too.
    assert.equal(await (await b.fetchFile(ack.file.file_id)).text(), 'meeting at noon\n');
    assert.equal(await (await a.fetchFile(ack.file)).text(), 'meeting at noon\n');

    const obj = await b.fileObjectUrl(m);
    assert.match(obj.url, /^blob:/);
    assert.equal(await obj.blob.text(), 'meeting at noon\n');
    obj.revoke();
    assert.ok(urls.every((u) => !/token/i.test(u.url)), JSON.stringify(urls));

    const c = await user('carol');
    await assert.rejects(c.fetchFile(m), (e) => e instanceof ApiError && e.status === 403 && e.code === 'forbidden');
    await assert.rejects(b.fetchFile('no-such-file'), (e) => e instanceof ApiError && (e.code === 'not_found' || e.code === 'bad_request'));
    await b.logout();
    await assert.rejects(b.fetchFile(m), { status: 401 });
  });

  test('the WebSocket URL carries no token: the first frame authenticates', async () => {
    const seen = [];
    class Recording extends WebSocket {
      constructor(url, ...rest) {
        super(url, ...rest);
        seen.push({ url: String(url), frames: (this.frames = []) });
      }
      send(data, ...rest) {
        this.frames.push(String(data));
        super.send(data, ...rest);
      }
    }
    const a = await user('alice', { WebSocket: Recording });
    await a.connect();
    assert.equal(a.ready.user_id, a.id);
    assert.equal(seen.length, 1);
    assert.equal(seen[0].url, `${node.baseUrl.replace(/^http/, 'ws')}/ws`);
    const first = JSON.parse(seen[0].frames[0]);
    assert.equal(first.cmd, 'auth');
    assert.equal(first.token, a.session.token);
    assert.ok(seen[0].frames.slice(1).every((f) => !f.includes(a.session.token)), 'the token is sent once');

    // A token revoked after the HTTP start-up: the auth frame is refused, close 4001, 'unauthorized'.
    const b = await user('bob', { WebSocket: Recording });
    const gone = new Promise((resolve) => b.on('unauthorized', resolve));
    const errors = [];
    b.on('error', (e) => errors.push(e));
    const origPrepare = b._prepare.bind(b);
    b._prepare = async () => {
      await origPrepare();
      await api(node.baseUrl, 'POST', '/logout', { token: b.session.token });
    };
    await assert.rejects(b.connect(), { status: 401 });
    await gone;
    assert.equal(b.state, State.offline);
    assert.deepEqual(errors, [], 'the refused auth frame is not reported as an error of its own');
  });

  test('an upload the node refuses fails the send instead of retrying forever', async () => {
    const a = await user('alice');
    const b = await user('bob');
    await a.connect();
    const conv = await a.createDirect(b.id);
    const started = Date.now();
    await assert.rejects(a.sendFile(conv.id, new Uint8Array(2 * 1000 * 1000), { name: 'big.bin' }), (e) => {
      assert.ok(e instanceof ApiError);
      assert.ok(['too_large', 'network'].includes(e.code), e.code);
      return true;
    });
    assert.ok(Date.now() - started < 5000);
    assert.deepEqual(a.pending(), []);
  });

  test('events and broadcasts reach the callbacks', async () => {
    const a = await user('alice');
    const b = await user('bob');
    await Promise.all([a.connect(), b.connect()]);
    const events = [];
    const casts = [];
    a.on('event', (e) => events.push(e));
    a.on('broadcast', (e) => casts.push(e));
    b.on('broadcast', (e) => casts.push(e));
    const login = await api(node.baseUrl, 'POST', '/login', { json: { ...ADMIN, device_id: 'admin' } });
    await api(node.baseUrl, 'POST', '/admin/events', { token: login.token, json: { user_id: a.id, data: { kind: 'ping', n: 1 } } });
    await api(node.baseUrl, 'POST', '/admin/broadcast', { token: login.token, json: { data: { text: 'maintenance' } } });
    await waitFor(() => events.length === 1 && casts.length >= 2, { what: 'event and broadcasts' });
    assert.deepEqual(events[0], { kind: 'ping', n: 1 });
    assert.deepEqual(casts[0], { text: 'maintenance' });
  });
});
