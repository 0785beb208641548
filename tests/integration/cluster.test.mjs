// The cluster (issue 11): three real nodes on one private PostgreSQL and one private RabbitMQ,
// started once for the file. Clients on different nodes talk as if there were one; a user's two
// devices on two nodes both get everything in seq order; a plain AMQP client following seed 000
// takes part; a node killed with SIGKILL mid-traffic loses nothing that was acked.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import amqp from 'amqplib';

import { assertGapless, assertRange } from './lib/check.mjs';
import { createConversation, history, http, login, register } from './lib/http.mjs';
import { ConvergeNode } from './lib/node.mjs';
import { startPostgres } from './lib/postgres.mjs';
import { startRabbit } from './lib/rabbitmq.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

let pg;
let rabbit;
let filesDir;
const nodes = [];

async function startClusterNode(i) {
  const dataDir = await mkdtemp(path.join(tmpdir(), `converge-cluster-${i}-`));
  const node = new ConvergeNode({
    dataDir,
    flags: ['--store', pg.url, '--bus', rabbit.url, '--files-dir', filesDir, '--node-id', `node${i}`,
      '--admin-user', 'root', '--admin-password', 'root-pw', '--node-heartbeat-ms', '200',
      '--node-timeout-ms', '1500'],
  });
  await node.start();
  return node;
}

before(async () => {
  [pg, rabbit] = await Promise.all([startPostgres(), startRabbit()]);
  filesDir = await mkdtemp(path.join(tmpdir(), 'converge-cluster-files-'));
  for (let i = 1; i <= 3; i++) nodes.push(await startClusterNode(i));
});

after(async () => {
  for (const n of nodes) await n.stop({ removeData: true }).catch(() => {});
  await Promise.all([pg?.stop(), rabbit?.stop()]);
  if (filesDir) await rm(filesDir, { recursive: true, force: true });
});

// A user registered on one node and logged in (one token per device) on the nodes given.
async function user(id, where) {
  await register(nodes[0], id);
  const tokens = [];
  for (const [i, n] of where.entries()) tokens.push(await login(n, id, `d${i + 1}`));
  return { id, tokens };
}

// Waits until `c` has the messages of `conv` with seqs 1..n, and returns their seqs in order.
async function allOf(c, conv, n) {
  await c.waitForCount((f) => f.cmd === 'msg' && f.data.conversation_id === String(conv), n, { timeout: 10000 });
  return c.msgs(conv).map((m) => m.seq);
}

describe('across nodes', () => {
  test('1:1 and group chat between users on three nodes: every member, every message, in order', async () => {
    const [a, b, c] = [await user('ann', [nodes[0]]), await user('ben', [nodes[1]]), await user('cat', [nodes[2]])];
    const wa = await WsClient.connect(nodes[0], { token: a.tokens[0] });
    const wb = await WsClient.connect(nodes[1], { token: b.tokens[0] });
    const wc = await WsClient.connect(nodes[2], { token: c.tokens[0] });
    try {
      const direct = (await createConversation(nodes[0], a.tokens[0], 'direct', ['ben'])).id;
      const group = (await createConversation(nodes[1], b.tokens[0], 'group', ['ann', 'cat'], 'three nodes')).id;
      // Each sender on its own node, interleaved: the database orders them, every node delivers.
      const sends = [];
      for (let i = 0; i < 10; i++) {
        sends.push(wa.send({ conversation_id: direct, body: `a${i}`, client_msg_id: `d-a${i}` }));
        sends.push(wb.send({ conversation_id: direct, body: `b${i}`, client_msg_id: `d-b${i}` }));
        for (const [w, who] of [[wa, 'a'], [wb, 'b'], [wc, 'c']])
          sends.push(w.send({ conversation_id: group, body: `${who}${i}`, client_msg_id: `g-${who}${i}` }));
      }
      const acks = await Promise.all(sends);
      assert.equal(acks.length, 50);
      for (const w of [wa, wb]) assertRange(await allOf(w, direct, 20), 1, 20, `direct on ${w === wa ? 'ann' : 'ben'}`);
      for (const w of [wa, wb, wc]) assertRange(await allOf(w, group, 30), 1, 30, 'group');
      // Same content everywhere, and as the store has it.
      const stored = await history(nodes[2], c.tokens[0], group, '?limit=100');
      for (const w of [wa, wb, wc])
        assert.deepEqual(w.msgs(group).map((m) => m.body), stored.map((m) => m.body));
    } finally {
      await closeAll(wa, wb, wc);
    }
  });

  test("a user's two devices on two nodes both get every message in seq order", async () => {
    const d = await user('dan', [nodes[0], nodes[2]]);
    const e = await user('eve', [nodes[1]]);
    const w1 = await WsClient.connect(nodes[0], { token: d.tokens[0] });
    const w2 = await WsClient.connect(nodes[2], { token: d.tokens[1] });
    const we = await WsClient.connect(nodes[1], { token: e.tokens[0] });
    try {
      const conv = (await createConversation(nodes[1], e.tokens[0], 'direct', ['dan'])).id;
      const sends = [];
      for (let i = 0; i < 25; i++) {
        sends.push(we.send({ conversation_id: conv, body: `e${i}`, client_msg_id: `e${i}` }));
        sends.push(w1.send({ conversation_id: conv, body: `d${i}`, client_msg_id: `d${i}` }));
      }
      await Promise.all(sends);
      for (const w of [w1, w2, we]) assertRange(await allOf(w, conv, 50), 1, 50);
    } finally {
      await closeAll(w1, w2, we);
    }
  });

  test('a member removed on one node gets nothing stored after it on another', async () => {
    const f = await user('fay', [nodes[0]]);
    const g = await user('gus', [nodes[1]]);
    const h = await user('hal', [nodes[2]]);
    const wg = await WsClient.connect(nodes[1], { token: g.tokens[0] });
    const wh = await WsClient.connect(nodes[2], { token: h.tokens[0] });
    try {
      const conv = (await createConversation(nodes[0], f.tokens[0], 'group', ['gus', 'hal'], 'removal')).id;
      await wg.send({ conversation_id: conv, body: 'before', client_msg_id: 'r1' });
      await wh.waitForMsg(conv, 1, { timeout: 10000 });
      const r = await http(nodes[0], 'DELETE', `/api/v1/conversations/${conv}/members/hal`, { token: f.tokens[0] });
      assert.equal(r.status, 200, r.text);
      // hal's node may have cached the membership; the sender's node and hal's must not use it.
      const refused = await wh.request('msg', { conversation_id: conv, body: 'after removal', client_msg_id: 'r2' });
      assert.equal(refused.cmd, 'error');
      assert.equal(refused.data.code, 'forbidden');
      await wg.send({ conversation_id: conv, body: 'after', client_msg_id: 'r3' });
      await wg.waitForMsg(conv, 2, { timeout: 10000 });
      await wh.ping();
      await new Promise((res) => setTimeout(res, 300));
      await wh.ping();
      assert.deepEqual(wh.msgs(conv).map((m) => m.seq), [1], 'hal got nothing after his removal');
    } finally {
      await closeAll(wg, wh);
    }
  });
});

describe('a plain AMQP client following seed 000', () => {
  test('publishes to conversation.outgoing, receives through its own queue, is answered on reply_to', async () => {
    const ivy = await user('ivy', [nodes[0]]);
    const jon = await user('jon', [nodes[1]]);
    const conv = (await createConversation(nodes[0], ivy.tokens[0], 'direct', ['jon'])).id;
    const wj = await WsClient.connect(nodes[1], { token: jon.tokens[0] });
    const conn = await amqp.connect(rabbit.url);
    try {
      const ch = await conn.createChannel();
      // Seed 000: a queue of its own, created after login, gone when it disconnects.
      const q = `queue_u_ivy_${randomBytes(4).toString('hex')}`;
      await ch.assertQueue(q, { exclusive: true, autoDelete: true });
      await ch.bindQueue(q, `exchange_c_${conv}`, '');
      await ch.bindQueue(q, 'exchange_base', 'u_.ivy');
      await ch.bindQueue(q, 'exchange_base', 'event');
      await ch.bindQueue(q, 'exchange_base', 'broadcast');
      const replies = await ch.assertQueue('', { exclusive: true });
      const got = [];
      const answers = [];
      await ch.consume(q, (m) => got.push(JSON.parse(m.content.toString())), { noAck: true });
      await ch.consume(replies.queue, (m) => answers.push({ corr: m.properties.correlationId, f: JSON.parse(m.content.toString()) }), { noAck: true });
      const publish = (envelope, corr, extra = {}) =>
        ch.publish('conversation.outgoing', '', Buffer.from(typeof envelope === 'string' ? envelope : JSON.stringify(envelope)), {
          replyTo: replies.queue,
          correlationId: corr,
          contentType: 'application/json',
          ...extra,
        });
      // A WebSocket client on another node sends; the AMQP client receives it.
      await wj.send({ conversation_id: conv, body: 'hello from the web', client_msg_id: 'w1' });
      // The AMQP client sends the seed envelope; the WebSocket client receives it.
      publish({ token: `Tricolor${ivy.tokens[0]}`, cmd: 'msg', id: 'q1', data: { conversation_id: String(conv), publisher_id: 'ivy', publisher_name: 'Ivy', type: 'text', body: 'hello from AMQP', client_msg_id: 'a1' } }, 'c1');
      const m2 = await wj.waitForMsg(conv, 2, { timeout: 10000 });
      assert.equal(m2.data.body, 'hello from AMQP');
      assert.equal(m2.data.publisher_id, 'ivy');
      // Refused envelopes store nothing and are answered where the envelope allows.
      publish({ token: 'Tricolor' + 'f'.repeat(64), cmd: 'msg', id: 'q2', data: { conversation_id: String(conv), body: 'forged' } }, 'c2');
      publish('{"cmd": "msg", "data": ', 'c3');
      publish({ token: `Tricolor${ivy.tokens[0]}`, cmd: 'msg', id: 'q4', data: { conversation_id: String(conv), type: 'video', body: 'x' } }, 'c4');
      publish({ token: `Tricolor${jon.tokens[0]}`, cmd: 'msg', id: 'q5', data: { conversation_id: '999999', body: 'x' } }, 'c5');
      const deadline = Date.now() + 10000;
      while (answers.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const byCorr = Object.fromEntries(answers.map((a) => [a.corr, a.f]));
      assert.equal(byCorr.c1?.cmd, 'ack', JSON.stringify(answers));
      assert.equal(byCorr.c1.id, 'q1');
      assert.equal(byCorr.c1.data.seq, 2);
      assert.equal(byCorr.c2?.data?.code, 'unauthorized');
      assert.equal(byCorr.c3?.data?.code, 'bad_json');
      assert.equal(byCorr.c4?.data?.code, 'bad_request');
      assert.ok(['forbidden', 'not_found'].includes(byCorr.c5?.data?.code), JSON.stringify(byCorr.c5));
      // Nothing stored by the refused ones: the next message is seq 3.
      const ack = await wj.send({ conversation_id: conv, body: 'after', client_msg_id: 'w2' });
      assert.equal(ack.seq, 3);
      // Without a client_msg_id, the AMQP message_id identifies the envelope: the same one
      // published again (as the broker redelivers it when a node dies before acking) is a
      // duplicate of the first, not a second message.
      const plainEnv = { token: `Tricolor${ivy.tokens[0]}`, cmd: 'msg', id: 'q6', data: { conversation_id: String(conv), body: 'once' } };
      publish(plainEnv, 'c6', { messageId: 'amqp-m-1' });
      publish(plainEnv, 'c7', { messageId: 'amqp-m-1' });
      while (answers.length < 7 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const by2 = Object.fromEntries(answers.map((a) => [a.corr, a.f]));
      assert.equal(by2.c6?.data?.seq, 4, JSON.stringify(answers.slice(5)));
      assert.equal(by2.c7?.data?.seq, 4);
      // Two nodes may take the two copies at once: whichever came second is the duplicate.
      assert.equal([by2.c6.data.duplicate, by2.c7.data.duplicate].filter((d) => d === true).length, 1, JSON.stringify([by2.c6, by2.c7]));
      // The AMQP client's queue had every message of the conversation, in order.
      while (got.filter((f) => f.cmd === 'msg').length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(got.filter((f) => f.cmd === 'msg').map((f) => f.data.seq), [1, 2, 3, 4]);
    } finally {
      await conn.close().catch(() => {});
      await wj.close();
    }
  });
});

describe("seed 000's notifications for backend services", () => {
  test('center_start at every node start, and validated config changes, reach queue_balance / queue_comm_gb', async () => {
    const conn = await amqp.connect(rabbit.url);
    try {
      const ch = await conn.createChannel();
      const take = async (queue, pred, timeout = 10000) => {
        const deadline = Date.now() + timeout;
        while (Date.now() < deadline) {
          const m = await ch.get(queue, { noAck: true });
          if (m) {
            const f = JSON.parse(m.content.toString());
            if (pred(f)) return f;
          } else {
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        throw new Error(`nothing on ${queue}`);
      };
      // Every node announced itself when it started (the queues are durable: they waited).
      const starts = new Set();
      for (let i = 0; i < 3; i++) starts.add((await take('queue_balance', (f) => f.cmd === 'center_start')).data.node_id);
      for (const n of ['node1', 'node2', 'node3']) assert.ok(starts.has(n), `center_start of ${n}: ${[...starts]}`);
      await take('queue_comm_gb', (f) => f.cmd === 'center_start');

      const admin = await login(nodes[1], 'root', 'adm', { password: 'root-pw' });
      // Every node knows the others (heartbeats on the bus).
      const known = await http(nodes[1], 'GET', '/api/v1/admin/nodes', { token: admin });
      assert.equal(known.status, 200, known.text);
      assert.deepEqual(known.json.nodes.map((n) => n.node_id), ['node1', 'node2', 'node3']);
      assert.deepEqual(known.json.nodes.map((n) => n.self), [false, true, false]);
      // Where a load balancer finds each, and how loaded each is.
      assert.deepEqual(known.json.nodes.map((n) => n.address), nodes.map((n) => n.url));
      for (const n of known.json.nodes) {
        assert.ok(Number.isInteger(n.cpu_percent) && n.cpu_percent >= 0 && n.cpu_percent <= 100, JSON.stringify(n));
        assert.ok(Number.isInteger(n.connections) && n.started_at > 0, JSON.stringify(n));
      }
      const balance = { server_id: '10001', local_host1: '172.19.102.90', local_host2: '172.19.103.90', http_listen_port: '80',
        rtsp_listen_port: 554, log_save_days: '7', log_level: '3', virtual_host1: '172.19.103.90', virtual_host2: '172.19.103.90' };
      const r = await http(nodes[1], 'POST', '/api/v1/admin/config/balance', { token: admin, json: balance });
      assert.equal(r.status, 202, r.text);
      const got = await take('queue_balance', (f) => f.cmd === 'balance_config');
      assert.deepEqual(got.data, { ...balance, rtsp_listen_port: '554' });
      const media = { server_id: '10002', local_host1: 'media.example', http_listen_port: '8080', rtsp_listen_port: '554',
        rtc_tcp_listen_port: '8000', rtc_udp_listen_port: '8000', log_save_days: '7', log_level: '5' };
      assert.equal((await http(nodes[0], 'POST', '/api/v1/admin/config/media', { token: await login(nodes[0], 'root', 'adm2', { password: 'root-pw' }), json: media })).status, 202);
      assert.deepEqual((await take('queue_comm_gb', (f) => f.cmd === 'media_config')).data, media);
      // Bad values are refused and nothing is published.
      for (const [field, value] of [['log_level', '6'], ['http_listen_port', '70000'], ['local_host1', 'a b'], ['server_id', '']]) {
        const bad = await http(nodes[1], 'POST', '/api/v1/admin/config/balance', { token: admin, json: { ...balance, [field]: value } });
        assert.equal(bad.status, 400, `${field}=${value}: ${bad.text}`);
      }
      const extra = await http(nodes[1], 'POST', '/api/v1/admin/config/balance', { token: admin, json: { ...balance, shell: 'rm -rf /' } });
      assert.equal(extra.status, 400);
      const mo = await user('mo', [nodes[1]]);
      assert.equal((await http(nodes[1], 'POST', '/api/v1/admin/config/balance', { token: mo.tokens[0], json: balance })).status, 403);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await ch.get('queue_balance', { noAck: true }), false, 'nothing more was published');
    } finally {
      await conn.close().catch(() => {});
    }
  });
});

describe("seed 000's admin clients (m_.<uid>)", () => {
  test('admins get node and registration notices, and admin_notify, on every node and on queue_m_<uid>_*', async () => {
    const conn = await amqp.connect(rabbit.url);
    const root1 = await login(nodes[0], 'root', 'adm-ws', { password: 'root-pw' });
    const admin = await WsClient.connect(nodes[0], { token: root1 });
    const plain = await user('nadia', [nodes[0]]);
    const wn = await WsClient.connect(nodes[0], { token: plain.tokens[0] });
    try {
      // A plain AMQP admin client: its own queue on exchange_base, key m_.root (seed 000).
      const ch = await conn.createChannel();
      const q = (await ch.assertQueue(`queue_m_root_${randomBytes(4).toString('hex')}`, { exclusive: true, autoDelete: true })).queue;
      await ch.bindQueue(q, 'exchange_base', 'm_.root');
      const got = [];
      await ch.consume(q, (m) => got.push(JSON.parse(m.content.toString())), { noAck: true });
      await register(nodes[1], 'newcomer');
      const wsReg = await admin.waitFor((f) => f.cmd === 'admin' && f.data.event === 'user_registered' && f.data.user_id === 'newcomer');
      assert.deepEqual(wsReg.data, { event: 'user_registered', user_id: 'newcomer', name: 'newcomer', by_admin: false, admin: false });
      const deadline = Date.now() + 5000;
      while (!got.some((f) => f.data?.user_id === 'newcomer') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const amqpReg = got.find((f) => f.data?.user_id === 'newcomer');
      assert.equal(amqpReg?.cmd, 'admin', JSON.stringify(got));
      assert.equal(amqpReg.user_id, 'root');
      // An admin's own notice, from another node, to one admin.
      const root2 = await login(nodes[2], 'root', 'adm-http', { password: 'root-pw' });
      const r = await http(nodes[2], 'POST', '/api/v1/admin/notify', { token: root2, json: { to: 'ROOT', data: { text: 'disk 90%' } } });
      assert.equal(r.status, 202, r.text);
      assert.deepEqual((await admin.waitFor((f) => f.cmd === 'admin' && f.data.text)).data, { text: 'disk 90%' });
      // Refusals: not an admin, no such admin, no data object. Nothing is published.
      assert.equal((await http(nodes[2], 'POST', '/api/v1/admin/notify', { token: plain.tokens[0], json: { data: { x: 1 } } })).status, 403);
      assert.equal((await http(nodes[2], 'POST', '/api/v1/admin/notify', { token: root2, json: { to: 'nadia', data: { x: 1 } } })).status, 404);
      assert.equal((await http(nodes[2], 'POST', '/api/v1/admin/notify', { token: root2, json: { data: 'x' } })).status, 400);
      assert.equal((await http(nodes[2], 'POST', '/api/v1/admin/notify', { token: root2, json: { to: 7, data: {} } })).status, 400);
      assert.equal((await http(nodes[2], 'POST', '/api/v1/admin/notify', { token: root2, json: { to: 'ro\u0000ot', data: {} } })).status, 400);
      await new Promise((res) => setTimeout(res, 300));
      assert.equal(admin.frames.filter((f) => f.cmd === 'admin' && f.data.x).length, 0);
      // A non-admin's connection gets no admin notice.
      assert.equal(wn.frames.filter((f) => f.cmd === 'admin').length, 0);
    } finally {
      await closeAll(admin, wn);
      await conn.close().catch(() => {});
    }
  });
});

// Presence as `token`'s user sees it, from node `n`: user id -> the entry (absent: not shown).
async function presence(n, token, ids) {
  const r = await http(n, 'GET', `/api/v1/presence?users=${ids.join(',')}`, { token });
  assert.equal(r.status, 200, r.text);
  return new Map(r.json.presence.map((p) => [p.user_id, p]));
}

// Polls presence until `pred` holds for the entry of `id` (within `ms`).
async function presenceUntil(n, token, id, pred, ms = 5000) {
  const deadline = Date.now() + ms;
  let p;
  for (;;) {
    p = (await presence(n, token, [id])).get(id);
    if (pred(p) || Date.now() > deadline) return p;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('presence across nodes', () => {
  test('who is online, on which node, with which devices; strangers are not shown', async () => {
    const p = await user('pia', [nodes[0], nodes[2]]);
    const q = await user('quinn', [nodes[1]]);
    await user('stranger', [nodes[1]]);
    await createConversation(nodes[1], q.tokens[0], 'direct', ['pia']);
    const c1 = await WsClient.connect(nodes[0], { token: p.tokens[0] });
    const c3 = await WsClient.connect(nodes[2], { token: p.tokens[1] });
    try {
      // quinn, on node 2, sees pia online with two connections (no detail: not quinn's own).
      const seen = await presenceUntil(nodes[1], q.tokens[0], 'pia', (e) => e?.connections === 2);
      assert.equal(seen.online, true, JSON.stringify(seen));
      assert.equal(seen.connections, 2);
      assert.equal(seen.devices, undefined, 'no device detail for another user');
      // pia sees her own devices and the nodes they are on.
      const own = (await presence(nodes[1], p.tokens[0], ['pia'])).get('pia');
      assert.deepEqual(own.devices.map((d) => [d.device_id, d.node_id, d.protocol]).sort(),
        [['d1', 'node1', 'ws'], ['d2', 'node3', 'ws']]);
      // Someone sharing no conversation with the asker is left out; so are unknown ids.
      const some = await presence(nodes[1], q.tokens[0], ['stranger', 'nobody-here', 'quinn']);
      assert.deepEqual([...some.keys()], ['quinn']);
      assert.equal(some.get('quinn').online, false, 'quinn has no socket open');
      // An admin sees everyone, with detail.
      const admin = await login(nodes[2], 'root', 'pres', { password: 'root-pw' });
      const all = (await presence(nodes[2], admin, ['stranger', 'pia'])).get('pia');
      assert.equal(all.devices.length, 2);
      // A device that goes is gone from every node's view.
      await c3.close();
      const after = await presenceUntil(nodes[1], q.tokens[0], 'pia', (e) => e?.connections === 1);
      assert.equal(after.connections, 1);
      // Bad input: no list, too many, a malformed id.
      for (const bad of ['', '?users=', `?users=${Array.from({ length: 101 }, (_, i) => `u${i}`).join(',')}`, '?users=a%20b', '?users=a,,b']) {
        const r = await http(nodes[0], 'GET', `/api/v1/presence${bad}`, { token: q.tokens[0] });
        assert.equal(r.status, 400, `${bad}: ${r.text}`);
      }
      assert.equal((await http(nodes[0], 'GET', '/api/v1/presence?users=pia')).status, 401);
    } finally {
      await closeAll(c1, c3);
    }
  });
});

describe('a node killed with SIGKILL mid-traffic', () => {
  test('its clients reconnect elsewhere and end with every acked message exactly once by seq', async () => {
    const k = await user('kim', [nodes[2], nodes[0]]);
    const l = await user('lee', [nodes[1]]);
    const conv = (await createConversation(nodes[1], l.tokens[0], 'group', ['kim'], 'crash')).id;
    const victim = await WsClient.connect(nodes[2], { token: k.tokens[0] });
    const wl = await WsClient.connect(nodes[1], { token: l.tokens[0] });
    const adminWs = await WsClient.connect(nodes[1], { token: await login(nodes[1], 'root', 'adm-kill', { password: 'root-pw' }) });
    const acked = new Map(); // client_msg_id -> seq
    let stop = false;
    const sender = (async () => {
      for (let i = 0; !stop && i < 400; i++) {
        const id = `k${i}`;
        try {
          const a = await victim.send({ conversation_id: conv, body: id, client_msg_id: id }, { timeout: 2000 });
          acked.set(id, a.seq);
        } catch {
          return i; // the node is gone
        }
      }
      return -1;
    })();
    const other = (async () => {
      for (let i = 0; i < 60; i++) {
        const a = await wl.send({ conversation_id: conv, body: `l${i}`, client_msg_id: `l${i}` });
        acked.set(`l${i}`, a.seq);
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    // lee, who shares the group with kim, sees kim's socket on node 3.
    const before = await presenceUntil(nodes[1], l.tokens[0], 'kim', (e) => e?.online);
    assert.equal(before.online, true, JSON.stringify(before));
    await nodes[2].kill();
    const killedAt = Date.now();
    const cutAt = await sender;
    stop = true;
    await other;
    assert.ok(acked.size > 60, `some of kim's sends were acked before the kill (${acked.size})`);
    // One node_lost notice for the admins, from the surviving node with the lowest id.
    const lostNotice = await adminWs.waitFor((f) => f.cmd === 'admin' && f.data.event === 'node_lost', { timeout: 6000 });
    assert.deepEqual(lostNotice.data, { event: 'node_lost', node_id: 'node3', reported_by: 'node1' });
    // The dead node's users count as offline within its timeout (1.5 s here, plus a beat).
    const gone = await presenceUntil(nodes[1], l.tokens[0], 'kim', (e) => e && !e.online, 6000);
    assert.equal(gone.online, false, `kim offline after node 3 died: ${JSON.stringify(gone)}`);
    assert.ok(Date.now() - killedAt < 4000, `offline ${Date.now() - killedAt} ms after the kill`);
    // kim comes back on node 1 and retries what was not acked: stored once, seq-wise.
    const back = await WsClient.connect(nodes[0], { token: k.tokens[1] });
    try {
      for (let i = Math.max(0, cutAt - 5); i < cutAt + 1; i++) {
        const id = `k${i}`;
        const a = await back.send({ conversation_id: conv, body: id, client_msg_id: id });
        if (acked.has(id)) assert.equal(a.seq, acked.get(id), `${id} retried after its ack keeps its seq`);
        acked.set(id, a.seq);
      }
      const msgs = await history(nodes[0], l.tokens[0], conv, '?limit=1000');
      const seqs = msgs.map((m) => m.seq);
      assertGapless(seqs);
      assert.equal(seqs[0], 1);
      const bySeq = new Map(msgs.map((m) => [m.seq, m.client_msg_id]));
      for (const [id, seq] of acked) assert.equal(bySeq.get(seq), id, `acked ${id} is stored at seq ${seq}`);
      assert.equal(new Set(msgs.map((m) => m.client_msg_id)).size, msgs.length, 'each message once');
      // The living nodes took the killed one for dead (its heartbeats stopped), so their devices
      // caught up from the store with what it stored and never published.
      const lost = async (n) => (await http(n, 'GET', '/metrics')).text.match(/^converge_cluster_nodes_lost_total (\d+)/m)?.[1];
      for (const n of [nodes[0], nodes[1]]) {
        const deadline = Date.now() + 10000;
        while (Number(await lost(n)) < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        assert.ok(Number(await lost(n)) >= 1, `node ${n.port} noticed the dead node`);
      }
      // lee, on a node that lived, saw every message live in order, without a gap.
      const live = await allOf(wl, conv, msgs.length).catch((e) => {
        const have = new Set(wl.msgs(conv).map((m) => m.seq));
        const missing = seqs.filter((q) => !have.has(q));
        throw new Error(`lee lacks seqs ${missing.slice(0, 50)} of ${seqs.length}\nnode2 log:\n${nodes[1].log.slice(-1500)}`);
      });
      assertRange(live, 1, msgs.length);
    } finally {
      await closeAll(back, wl, victim, adminWs);
      await nodes[2].start(); // for the files that follow
    }
  });
});
