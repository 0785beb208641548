// Offline catch-up (DESIGN.md section 4): a device that was away gets every stored message it
// missed, whether it reconnects in the seed order (conversations -> offline -> live stream ->
// heartbeat) or opens its live stream first and syncs over it, also while others keep sending.
// Heartbeats (WebSocket and HTTP) move the device's cursors.
//
// The returning devices of the happy paths are SDK clients (clients/js, lib/sdk.mjs): the SDK's
// start-up is the seed order plus a `sync` over the new socket, and its 'message' events must
// bring every missed message exactly once. What they received is also checked off the wire (the
// offline pages, the live stream's order). Raw (lib/ws.mjs, lib/http.mjs): the other order (live
// stream first, then sync pages over it: the SDK never does that, it fetches offline messages
// over HTTP while its socket is closed), the live stream's own catch-up of a device that never
// asks for offline, and the contract of /offline, sync and heartbeats (cursors, pages, clamping,
// error codes).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  assertGapless,
  assertHttpError,
  assertIncreasing,
  assertLiveOrder,
  assertRange,
  assertWsError,
  seqsOf,
} from './lib/check.mjs';
import {
  createConversation,
  heartbeatHttp,
  http,
  lastSeq,
  makeUser,
  offline,
  offlineAll,
} from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { closeDevices, sdkDevice } from './lib/sdk.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const h = useNode();

// A raw client's or an SDK device's send of one text message; resolves with the ack.
const rawSend = (ws) => (conv, body, client_msg_id) => ws.send({ conversation_id: conv, body, client_msg_id });
const sdkSend = (dev) => (conv, body, client_msg_id) => dev.client.send(conv, { body, client_msg_id });

// Sends `n` messages alternating between the conversations, pipelined (not awaited one by one);
// resolves with the acks.
function burst(send, convs, n, tag) {
  const sends = [];
  for (let i = 0; i < n; i++) sends.push(send(convs[i % convs.length], `${tag} ${i}`, `${tag}-${i}`));
  return Promise.all(sends);
}

// Keeps sending (one message at a time, alternating conversations, paced a little) until stop()
// is called; stop() resolves with the acks. Used to have messages stored during every step of
// a reconnect.
function sender(send, convs, tag) {
  let stopped = false;
  const acks = [];
  const done = (async () => {
    for (let i = 0; !stopped && i < 2000; i++) {
      acks.push(await send(convs[i % convs.length], `${tag} ${i}`, `${tag}-${i}`));
      await new Promise((r) => setTimeout(r, 2)); // pacing the load, not waiting for anything
    }
  })();
  return {
    acks,
    async stop() {
      stopped = true;
      await done;
      return acks;
    },
  };
}

const ascending = (seqs) => [...seqs].sort((a, b) => a - b);

// Every seq of `conv` the device has, from offline/sync pages and from its live stream.
function union(pages, live, conv) {
  return [...new Set([...seqsOf(pages, conv), ...live.msgs(conv).map((m) => m.seq)])].sort((a, b) => a - b);
}

describe('offline catch-up', () => {
  let node;
  let alice; // phone stays online; laptop goes away and comes back
  let bob;
  let bWs; // raw: bob's device d1
  let bSdk; // SDK: bob's device 'sdk', the sender in the SDK tests
  let aPhone;
  let direct;
  let group;

  before(async () => {
    node = await h.ready;
    alice = await makeUser(node, 'alice', ['phone', 'laptop', 'tablet']);
    bob = await makeUser(node, 'bob');
    await makeUser(node, 'carol');
    direct = (await createConversation(node, alice.token, 'direct', ['bob'])).id;
    group = (await createConversation(node, bob.token, 'group', ['alice', 'carol'], 'g')).id;
    bWs = await WsClient.connect(node, { token: bob.token });
    aPhone = await WsClient.connect(node, { token: alice.tokens.phone });
    bSdk = await sdkDevice(node, 'bob', 'sdk');
    await burst(rawSend(bWs), [direct, group], 6, 'warmup');
  });

  after(async () => {
    closeDevices();
    await closeAll(bWs, aPhone);
  });

  const lastSeqs = async () => ({
    [direct]: await lastSeq(node, alice.token, direct),
    [group]: await lastSeq(node, alice.token, group),
  });

  // The laptop acknowledges everything so far with a heartbeat and goes away.
  async function laptopAcksAndLeaves(useWs) {
    const seqs = await lastSeqs();
    if (useWs) {
      const ws = await WsClient.connect(node, { token: alice.tokens.laptop });
      const r = await ws.request('heartbeat', { seqs });
      assert.equal(r.cmd, 'heartbeat');
      assert.deepEqual(r.data.seqs, seqs);
      assert.equal(typeof r.data.ts, 'number');
      await ws.close();
    } else {
      const r = await heartbeatHttp(node, alice.tokens.laptop, seqs);
      assert.equal(r.status, 200);
      assert.deepEqual(r.json.seqs, seqs);
    }
    return seqs;
  }

  // The same through the SDK: the laptop's app starts, catches up, acknowledges everything it
  // processed with a heartbeat and quits.
  async function laptopCatchesUpAndLeaves() {
    const seqs = await lastSeqs();
    const laptop = await sdkDevice(node, 'alice', 'laptop');
    try {
      const processed = () => laptop.client.processedSeqs();
      await laptop.waitFor(() => [direct, group].every((c) => processed()[c] === seqs[c]), {
        label: `processed up to ${JSON.stringify(seqs)}`,
      });
      const r = await laptop.client.heartbeat();
      assert.deepEqual(r.seqs, seqs);
      assert.equal(typeof r.ts, 'number');
    } finally {
      laptop.close();
    }
    return seqs;
  }

  // A device came back in the SDK's start-up order while bob kept sending: checks what it got.
  // `from`: per conversation the first seq it was missing; `pageSize`: its syncPageSize.
  // Returns the last seqs.
  async function assertCaughtUp(dev, from, racing, pageSize) {
    // Some messages reach the live stream while the sender is still going.
    await dev.waitFor(() => dev.msgsFrom('live').length >= 6, { label: '6 live messages' });
    const raced = await racing.stop();
    assert.ok(raced.length >= 6);
    const final = await lastSeqs();
    for (const conv of [direct, group]) await dev.waitForSeqs(conv, final[conv], { from: from[conv] });
    const off = dev.msgsFrom('offline');
    for (const conv of [direct, group]) {
      // Every missed message reached the app exactly once.
      assertRange(ascending(dev.seqs(conv)), from[conv], final[conv], `${dev.label} ${conv}`);
      // Offline starts right after the heartbeat seq, without a gap.
      const s = seqsOf(off, conv);
      assert.ok(s.length > 0, `offline returned ${conv}`);
      assert.equal(s[0], from[conv], `offline of ${conv} starts after the heartbeat seq`);
      assertGapless(s, `offline ${conv}`);
      // The live stream continues right after what offline handed out, in order without gaps or
      // repeats (except what the SDK's sync replies held).
      assertLiveOrder(dev.frames(0), conv, { startAfter: s.at(-1), what: `${dev.label} live ${conv}` });
    }
    assert.equal(dev.wire.length, 1, 'one connection');
    const order = off.map((m) => Number(m.conversation_id));
    assert.deepEqual(order, [...order].sort((a, b) => a - b), 'offline pages ordered by conversation id');
    // The offline messages came in pages of `pageSize` that join up.
    const pages = dev.requests.filter((r) => r.path.startsWith('/api/v1/offline'));
    assert.ok(pages.length >= Math.ceil(off.length / pageSize), `${pages.length} offline pages for ${off.length} messages`);
    pages.forEach((p, i) => {
      const q = new URL(p.path, node.url).searchParams;
      assert.equal(p.status, 200);
      assert.equal(q.get('limit'), String(pageSize));
      const last = off[i * pageSize - 1];
      if (i > 0) assert.equal(q.get('cursor'), `${last.conversation_id}:${last.seq}`, 'each page continues after the one before');
    });
    return final;
  }

  test('seed order (the SDK start-up: conversations -> offline pages -> live stream -> sync -> heartbeat), with sends racing the reconnect', async () => {
    const acked = await laptopCatchesUpAndLeaves();
    // Missed while away.
    await burst(sdkSend(bSdk), [direct, group], 7, 'away1');
    // More keeps coming during every step of the reconnect.
    const racing = sender(sdkSend(bSdk), [direct, group], 'race1');
    const laptop = await sdkDevice(node, 'alice', 'laptop', { syncPageSize: 3, connect: false });
    try {
      await laptop.connect();
      assert.deepEqual([...laptop.client.conversations.keys()].sort(), [direct, group].sort());
      const from = { [direct]: acked[direct] + 1, [group]: acked[group] + 1 };
      const final = await assertCaughtUp(laptop, from, racing, 3);
      assert.ok(laptop.msgsFrom('offline').length >= 7, 'what was missed came offline');
      // Heartbeat: from now on offline is empty.
      const hb = await laptop.client.heartbeat();
      assert.deepEqual(hb.seqs, final);
      const rest = await offline(node, laptop.client.session.token);
      assert.deepEqual(rest.messages, []);
      assert.equal(rest.more, false);
    } finally {
      laptop.close();
    }
  });

  // Raw: the SDK never opens its live stream before fetching offline messages.
  test('live stream first, then sync pages over it, with sends racing the reconnect', async () => {
    const acked = await laptopAcksAndLeaves(false);
    await burst(rawSend(bWs), [direct, group], 9, 'away2');
    const racing = sender(rawSend(bWs), [direct, group], 'race2');

    const laptop = await WsClient.connect(node, { token: alice.tokens.laptop });
    try {
      const pages = [];
      let cursor;
      for (let i = 0; i < 100; i++) {
        const r = await laptop.request('sync', cursor ? { limit: 4, cursor } : { limit: 4 });
        assert.equal(r.cmd, 'sync', JSON.stringify(r));
        assert.ok(r.data.messages.length <= 4);
        pages.push(...r.data.messages);
        if (!r.data.more) {
          assert.equal(r.data.next_cursor, undefined);
          break;
        }
        assert.match(r.data.next_cursor, /^\d+:\d+$/);
        cursor = r.data.next_cursor;
      }
      await laptop.waitForCount((f) => f.cmd === 'msg', 6, { label: '6 live messages' });
      await racing.stop();
      const final = {
        [direct]: await lastSeq(node, alice.token, direct),
        [group]: await lastSeq(node, alice.token, group),
      };
      await laptop.waitFor(
        () => [direct, group].every((c) => union(pages, laptop, c).at(-1) === final[c]),
        { label: 'sync + live reach the last seqs' },
      );
      for (const conv of [direct, group]) {
        assertRange(union(pages, laptop, conv), acked[conv] + 1, final[conv], `laptop ${conv}`);
        // In order without repeats; it may skip what a sync reply already handed over (the
        // union above has no gap).
        assertIncreasing(laptop.msgs(conv).map((m) => m.seq), `live ${conv}`);
        assert.equal(seqsOf(pages, conv)[0], acked[conv] + 1, `sync of ${conv} starts after the heartbeat seq`);
      }
      const hb = await heartbeatHttp(node, alice.tokens.laptop, final);
      assert.deepEqual(hb.json.seqs, final);
      assert.deepEqual((await offline(node, alice.tokens.laptop)).messages, []);
    } finally {
      await laptop.close();
    }
  });

  test('a brand-new device in seed order (the SDK start-up), while others send: offline + live stream have no gap', async () => {
    const desk = await sdkDevice(node, 'alice', 'desk', { syncPageSize: 7, connect: false });
    try {
      assert.equal(desk.client.session.device_id, 'desk');
      assert.equal(desk.client.session.user_id, 'alice');
      const racing = sender(sdkSend(bSdk), [direct, group], 'race-new');
      await desk.connect();
      await assertCaughtUp(desk, { [direct]: 1, [group]: 1 }, racing, 7);
    } finally {
      desk.close();
    }
  });

  // Raw: the contract of /offline (fetching is not acknowledging).
  test('a device that never sent a heartbeat gets the whole history offline, and offline does not move without one', async () => {
    const all = await offlineAll(node, alice.tokens.tablet);
    for (const conv of [direct, group]) assertRange(seqsOf(all, conv), 1, await lastSeq(node, alice.token, conv), `tablet ${conv}`);
    // Fetching is not acknowledging: the same request returns the same messages.
    const again = await offlineAll(node, alice.tokens.tablet);
    assert.deepEqual(again, all);
  });

  // Raw: page sizes, cursor form, error codes.
  test('offline pagination: limit, next_cursor "conv:seq", pages join up exactly; bad cursor refused', async () => {
    const all = (await offline(node, alice.tokens.tablet, '?limit=1000')).messages;
    assert.ok(all.length > 10);
    const joined = [];
    let cursor = '';
    let pagesSeen = 0;
    for (;;) {
      const q = cursor ? `?limit=5&cursor=${encodeURIComponent(cursor)}` : '?limit=5';
      const page = await offline(node, alice.tokens.tablet, q);
      pagesSeen++;
      assert.ok(page.messages.length <= 5);
      joined.push(...page.messages);
      if (!page.more) break;
      const last = page.messages.at(-1);
      assert.equal(page.next_cursor, `${last.conversation_id}:${last.seq}`);
      cursor = page.next_cursor;
    }
    assert.ok(pagesSeen >= Math.ceil(all.length / 5));
    assert.deepEqual(joined, all);
    assertHttpError(await http(node, 'GET', '/api/v1/offline?cursor=nonsense', { token: alice.tokens.tablet }), 400, 'bad_request');
    assertHttpError(await http(node, 'GET', '/api/v1/offline?limit=0', { token: alice.tokens.tablet }), 400, 'bad_request');
    const viaWs = await WsClient.connect(node, { token: alice.tokens.tablet });
    try {
      assertWsError(await viaWs.request('sync', { cursor: '7' }), 'bad_request');
      assertWsError(await viaWs.request('sync', { limit: 'ten' }), 'bad_request');
      await viaWs.ping();
    } finally {
      await viaWs.close();
    }
  });

  // Raw: the heartbeat's effective cursors, clamping, error codes.
  test('heartbeat over HTTP and WebSocket moves the cursor: offline then returns only later messages', async () => {
    const dev = await makeUser(node, 'dana', ['d1']);
    const conv = (await createConversation(node, bob.token, 'group', ['dana'], 'hb')).id;
    await burst(rawSend(bWs), [conv], 5, 'hb-a');
    assertRange(seqsOf((await offline(node, dev.token)).messages, conv), 1, 5);

    // HTTP heartbeat at 3: offline starts at 4. A seq past the end is clamped to last_seq.
    const r = await heartbeatHttp(node, dev.token, { [conv]: 3 });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.seqs, { [conv]: 3 });
    assert.equal(typeof r.json.interval_ms, 'number');
    assert.equal(typeof r.json.ts, 'number');
    assertRange(seqsOf((await offline(node, dev.token)).messages, conv), 4, 5);
    // Cursors never move back; a heartbeat without a body is a keep-alive.
    await heartbeatHttp(node, dev.token, { [conv]: 1 });
    const bare = await http(node, 'POST', '/api/v1/heartbeat', { token: dev.token });
    assert.equal(bare.status, 200);
    assert.deepEqual(bare.json.seqs, {});
    assertRange(seqsOf((await offline(node, dev.token)).messages, conv), 4, 5);

    // WebSocket heartbeat at 5, then more messages: offline returns only those.
    const ws = await WsClient.connect(node, { token: dev.token });
    try {
      const hb = await ws.request('heartbeat', { seqs: { [conv]: 999 } });
      assert.equal(hb.cmd, 'heartbeat');
      assert.deepEqual(hb.data.seqs, { [conv]: 5 }, 'clamped to the last seq');
      await burst(rawSend(bWs), [conv], 3, 'hb-b');
      await ws.waitForMsg(conv, 8);
      assertRange(seqsOf((await offline(node, dev.token)).messages, conv), 6, 8);
      // An empty heartbeat is a keep-alive: cursors stay.
      const empty = await ws.request('heartbeat', {});
      assert.deepEqual(empty.data.seqs, {});
      assertRange(seqsOf((await offline(node, dev.token)).messages, conv), 6, 8);

      // A heartbeat naming a conversation the device's user is not in is refused as a whole.
      const other = (await createConversation(node, alice.token, 'direct', ['bob'])).id;
      assertWsError(await ws.request('heartbeat', { seqs: { [conv]: 8, [other]: 1 } }), 'forbidden');
      assertHttpError(await heartbeatHttp(node, dev.token, { [conv]: 8, [other]: 1 }), 403, 'forbidden');
      assertRange(seqsOf((await offline(node, dev.token)).messages, conv), 6, 8);
      // Bad shapes.
      assertWsError(await ws.request('heartbeat', { seqs: [1] }), 'bad_request');
      assertWsError(await ws.request('heartbeat', { seqs: { [conv]: -1 } }), 'bad_request');
      assertWsError(await ws.request('heartbeat', { seqs: { abc: 1 } }), 'bad_request');
      assertHttpError(await heartbeatHttp(node, dev.token, { [conv]: 'x' }), 400, 'bad_request');
      await ws.ping();
    } finally {
      await ws.close();
    }
  });

  // Raw: the SDK always fetches offline first, so it never relies on this catch-up alone.
  test('a device with cursors that reconnects is caught up by its live stream alone', async () => {
    // The laptop heartbeats, leaves; messages arrive; it comes back and never asks for offline.
    const acked = await laptopAcksAndLeaves(true);
    await burst(rawSend(bWs), [direct, group], 6, 'away3');
    const racing = sender(rawSend(bWs), [direct, group], 'race3');
    const laptop = await WsClient.connect(node, { token: alice.tokens.laptop });
    try {
      await laptop.waitForCount((f) => f.cmd === 'msg', 6, { label: '6 live messages' });
      await racing.stop();
      for (const conv of [direct, group]) {
        const last = await lastSeq(node, alice.token, conv);
        await laptop.waitForMsg(conv, last);
        assertRange(laptop.msgs(conv).map((m) => m.seq), acked[conv] + 1, last, `live ${conv}`);
      }
    } finally {
      await laptop.close();
    }
  });
});
