// Assertions shared by the suites.
import assert from 'node:assert/strict';

// `seqs` must be exactly from, from+1, ..., to (in this order).
export function assertRange(seqs, from, to, what = 'seqs') {
  const want = [];
  for (let s = from; s <= to; s++) want.push(s);
  assert.deepEqual(seqs, want, `${what}: expected ${from}..${to}, got ${JSON.stringify(seqs)}`);
}

// Strictly increasing, each one more than the one before.
export function assertGapless(seqs, what = 'seqs') {
  for (let i = 1; i < seqs.length; i++)
    assert.equal(seqs[i], seqs[i - 1] + 1, `${what} not gapless/in order: ${JSON.stringify(seqs)}`);
}

// Strictly increasing (no repeats, gaps allowed).
export function assertIncreasing(seqs, what = 'seqs') {
  for (let i = 1; i < seqs.length; i++)
    assert.ok(seqs[i] > seqs[i - 1], `${what} not increasing: ${JSON.stringify(seqs)}`);
}

// The error frame / HTTP error body carries `code`.
export function assertWsError(frame, code, id) {
  assert.equal(frame.cmd, 'error', `expected an error frame, got ${JSON.stringify(frame)}`);
  assert.equal(frame.data.code, code, `expected error ${code}, got ${JSON.stringify(frame)}`);
  assert.equal(typeof frame.data.message, 'string');
  assert.ok(frame.data.message.length > 0);
  if (id !== undefined) assert.equal(frame.id, id);
}

export function assertHttpError(r, status, code) {
  assert.equal(r.status, status, `expected HTTP ${status}, got ${r.status}: ${r.text.slice(0, 300)}`);
  assert.ok(r.json && r.json.error, `expected an error body, got ${r.text.slice(0, 300)}`);
  assert.equal(r.json.error.code, code, `expected ${code}, got ${r.text.slice(0, 300)}`);
  assert.equal(typeof r.json.error.message, 'string');
}

// Seqs of the messages of one conversation, in the order given.
export function seqsOf(messages, conversationId) {
  return messages.filter((m) => m.conversation_id === String(conversationId)).map((m) => m.seq);
}

// The order of a connection's live stream for one conversation (docs/protocol.md, "Order per
// device"): its `msg` pushes come in increasing seq order, each exactly one more than the one
// before, except that after a `sync` reply the stream skips what that reply contained.
// `frames` is every frame the connection received, in order; `startAfter` (when known) is the
// seq the stream starts right after. Returns the live seqs.
export function assertLiveOrder(frames, conversationId, { startAfter, what = `live ${conversationId}` } = {}) {
  const conv = String(conversationId);
  const inSync = new Set(); // seqs of `conv` some sync reply received so far contained
  let prev = startAfter;
  const live = [];
  for (const f of frames) {
    if (f.cmd === 'sync' && Array.isArray(f.data?.messages)) {
      for (const m of f.data.messages) if (m.conversation_id === conv) inSync.add(m.seq);
    } else if (f.cmd === 'msg' && f.data?.conversation_id === conv) {
      const s = f.data.seq;
      live.push(s);
      if (prev !== undefined) {
        assert.ok(s > prev, `${what}: seq ${s} after ${prev}; live ${JSON.stringify(live)}`);
        for (let k = prev + 1; k < s; k++)
          assert.ok(
            inSync.has(k),
            `${what}: skipped ${k} (${prev} -> ${s}) though no sync reply held it; live ${JSON.stringify(live)}`,
          );
      }
      prev = s;
    }
  }
  return live;
}
