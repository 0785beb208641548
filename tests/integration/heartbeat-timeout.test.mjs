// Liveness: a WebSocket that sends nothing for --heartbeat-timeout-ms is closed with 4000; one
// that never authenticates is closed with 4001; any frame keeps a connection alive.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { makeUser, metrics } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { WsClient } from './lib/ws.mjs';

const TIMEOUT_MS = 1500;
const h = useNode({ flags: ['--heartbeat-timeout-ms', String(TIMEOUT_MS), '--heartbeat-interval-ms', '500'] });

describe('heartbeat timeout', { concurrency: true }, () => {
  let node;
  let alice;

  before(async () => {
    node = await h.ready;
    alice = await makeUser(node, 'alice', ['a', 'b']);
  });

  test('a silent connection is closed with 4000 after the timeout; a heartbeating one stays', async () => {
    const before = (await metrics(node)).values.converge_heartbeat_timeouts_total;
    // The active connection opens first and heartbeats; the silent one opens after it. When the
    // silent one is closed, the active one is older than the timeout: without its heartbeats it
    // would have been closed first.
    const active = await WsClient.connect(node, { token: alice.tokens.b });
    let beating = true;
    const beats = (async () => {
      while (beating) {
        const r = await active.request('heartbeat', {});
        assert.equal(r.cmd, 'heartbeat');
        await new Promise((res) => setTimeout(res, 300)); // the heartbeat interval of this client
      }
    })();
    const silent = await WsClient.connect(node, { token: alice.tokens.a });
    const t0 = Date.now();
    const ready = silent.frames.find((f) => f.cmd === 'ready');
    assert.equal(ready.data.heartbeat_timeout_ms, TIMEOUT_MS);
    assert.equal(ready.data.heartbeat_interval_ms, 500);
    try {
      const { code, reason } = await silent.waitClose(TIMEOUT_MS * 4);
      const elapsed = Date.now() - t0;
      assert.equal(code, 4000);
      assert.equal(reason, 'heartbeat timeout');
      assert.ok(elapsed >= TIMEOUT_MS - 100, `closed after ${elapsed} ms, before the timeout`);
      assert.ok(elapsed < TIMEOUT_MS * 3, `closed only after ${elapsed} ms`);
      assert.ok(active.open, 'the heartbeating connection is still open');
      await active.ping();
    } finally {
      beating = false;
      await beats;
      await active.close();
    }
    const afterCount = (await metrics(node)).values.converge_heartbeat_timeouts_total;
    assert.equal(afterCount, before + 1);
  });

  test('a connection that never authenticates is closed with 4001 after the timeout', async () => {
    const anon = await WsClient.connect(node, {});
    const t0 = Date.now();
    // Commands before auth are refused but do not authenticate anything.
    const r = await anon.request('ping', {});
    assert.equal(r.cmd, 'error');
    assert.equal(r.data.code, 'unauthorized');
    const { code } = await anon.waitClose(TIMEOUT_MS * 4);
    assert.equal(code, 4001);
    assert.ok(Date.now() - t0 >= TIMEOUT_MS - 200);
    const last = anon.frames.at(-1);
    assert.equal(last.cmd, 'error');
    assert.equal(last.data.code, 'unauthorized');
  });
});
