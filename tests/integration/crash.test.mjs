// A node killed (SIGKILL) in the middle of a stream of sends, then started again on the same
// data: every message that was acked is stored with its seq, body and client_msg_id, seqs have
// no gap, and a sender that retries what was not acked gets each stored one back as a duplicate
// and the rest stored once, after them. What SQLite's WAL (synchronous=NORMAL) and Converge's
// WAL-gathering VFS promise: a commit that returned survives the process.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createConversation, history, makeUser } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const h = useNode();

async function allMessages(node, token, conv) {
  const out = [];
  for (;;) {
    const page = await history(node, token, conv, `?after_seq=${out.length ? out.at(-1).seq : 0}&limit=1000`);
    out.push(...page);
    if (page.length < 1000) return out;
  }
}

test('SIGKILL during a stream of sends: every acked message is there after the restart', async (t) => {
  const node = await h.ready;
  const alice = await makeUser(node, 'alice');
  await makeUser(node, 'bob');
  const conv = (await createConversation(node, alice.token, 'group', ['bob'], 'crash')).id;
  const body = (i) => `crash-${i}-${'x'.repeat(i % 300)}`;

  // Four connections each keep 32 sends in flight; the node is killed once 3000 acks are in.
  const total = 20000;
  const acked = new Map(); // client_msg_id -> seq
  let next = 0;
  let killed = false;
  const clients = await Promise.all([0, 1, 2, 3].map(() => WsClient.connect(node, { token: alice.token })));
  const pump = async (ws) => {
    const inflight = new Set();
    while (!killed && next < total) {
      while (inflight.size < 32 && next < total) {
        const i = next++;
        const p = ws
          .send({ conversation_id: conv, type: 'text', body: body(i), client_msg_id: `c${i}` }, { timeout: 30000 })
          .then((a) => acked.set(`c${i}`, a.seq))
          .catch(() => {}) // the node died before answering: not acked
          .finally(() => inflight.delete(p));
        inflight.add(p);
      }
      await Promise.race(inflight);
    }
  };
  const pumps = clients.map(pump);
  while (acked.size < 3000) await new Promise((r) => setTimeout(r, 5));
  const dying = node.kill(); // SIGKILL is sent now, with sends in flight
  killed = true; // the pumps send nothing more
  const r = await dying;
  assert.equal(r.signal, 'SIGKILL');
  await Promise.all(pumps);
  await closeAll(...clients);
  const sentBeforeKill = next;
  assert.ok(acked.size >= 3000 && acked.size <= sentBeforeKill, `acked ${acked.size} of ${sentBeforeKill}`);
  t.diagnostic(`${sentBeforeKill} sent, ${acked.size} acked before the kill`);

  await node.start();
  const stored = await allMessages(node, alice.token, conv);
  // Seqs run 1..n without a gap; n is at least what was acked (a commit may have been cut
  // between storing and answering).
  assert.deepEqual(stored.map((m) => m.seq), Array.from({ length: stored.length }, (_, k) => k + 1));
  assert.ok(stored.length >= acked.size, `stored ${stored.length} < acked ${acked.size}`);
  const byId = new Map(stored.map((m) => [m.client_msg_id, m]));
  for (const [id, seq] of acked) {
    const m = byId.get(id);
    assert.ok(m, `acked ${id} (seq ${seq}) is missing after the crash`);
    assert.equal(m.seq, seq, `${id} moved`);
    assert.equal(m.body, body(Number(id.slice(1))));
  }

  // The sender retries everything it sent before the crash: stored ones come back as duplicates
  // with their seq, the others are stored now, after the last stored seq.
  const ws = await WsClient.connect(node, { token: alice.token });
  const retried = [];
  for (let i = 0; i < sentBeforeKill; ++i)
    retried.push(ws.send({ conversation_id: conv, type: 'text', body: body(i), client_msg_id: `c${i}` }, { timeout: 30000 }));
  const answers = await Promise.all(retried);
  let fresh = 0;
  for (let i = 0; i < sentBeforeKill; ++i) {
    const a = answers[i];
    const before = byId.get(`c${i}`);
    if (before) {
      assert.equal(a.duplicate, true, `c${i} stored twice`);
      assert.equal(a.seq, before.seq);
    } else {
      assert.ok(!a.duplicate && a.seq > stored.length, `c${i} got ${JSON.stringify(a)}`);
      ++fresh;
    }
  }
  await closeAll(ws);
  const after = await allMessages(node, alice.token, conv);
  assert.equal(after.length, stored.length + fresh);
  assert.equal(new Set(after.map((m) => m.client_msg_id)).size, after.length, 'a client_msg_id stored twice');
});
