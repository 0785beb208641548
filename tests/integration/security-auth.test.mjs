// Security, logins and sessions (issue 10 items 4 and 6; /tmp spec "4" and "6").
//
// Login throttling per user id and per source address (429 rate_limited + Retry-After, unknown
// ids like known ones, successes free), the defaults (10/300 per user id, 50/300 per address),
// argon2id for unknown users too (timing), the bounded hashing pool (other calls stay fast while
// logins hash; over the queue: 429, Retry-After 1); and sessions: a WebSocket whose token is
// revoked (logout, logout-all, password change) or expires is closed with 4001, logout-all and
// the password change themselves.
//
// Source addresses: every 127/8 address is loopback on Linux, so a raw socket bound to
// 127.0.0.x (lib/raw.mjs, `localAddress`) is another client address to the node.
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { assertHttpError } from './lib/check.mjs';
import { http, login, makeUser, register } from './lib/http.mjs';
import { ConvergeNode, startNode } from './lib/node.mjs';
import { describeResponse, rawRequest } from './lib/raw.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

// lib/node.mjs always passes --password-cost min (and the CLI takes an option once): this node
// hashes at interactive cost instead, the cost production uses.
class InteractiveNode extends ConvergeNode {
  args() {
    const a = super.args();
    a[a.indexOf('--password-cost') + 1] = 'interactive';
    return a;
  }
}

async function startInteractiveNode(flags) {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'converge-it-'));
  const n = new InteractiveNode({ flags, dataDir });
  await n.start();
  return n;
}

// A node of its own for a describe block.
function nodeFor(flags, { interactive = false } = {}) {
  const handle = { node: null };
  before(async () => {
    handle.node = interactive ? await startInteractiveNode(flags) : await startNode({ flags });
  });
  after(async () => {
    await handle.node?.stop({ removeData: true });
  });
  return handle;
}

// POST /api/v1/login from 127.0.0.1 (fetch) or, with `from`, from that source address.
async function tryLogin(node, userId, password, { from, device = 'd1' } = {}) {
  const body = { user_id: userId, password, device_id: device };
  if (!from) return http(node, 'POST', '/api/v1/login', { json: body });
  return rawRequest(node, 'POST', '/api/v1/login', { body, localAddress: from });
}

function retryAfter(r) {
  return r.headers.get ? r.headers.get('retry-after') : r.headers['retry-after'];
}

function assertRateLimited(r, maxSeconds, what = '') {
  assertHttpError(r, 429, 'rate_limited');
  const v = retryAfter(r);
  assert.match(String(v), /^\d+$/, `${what} Retry-After must be integer seconds, got ${JSON.stringify(v)}`);
  assert.ok(Number(v) >= 1, `${what} Retry-After >= 1, got ${v}`);
  if (maxSeconds !== undefined) assert.ok(Number(v) <= maxSeconds, `${what} Retry-After <= ${maxSeconds}, got ${v}`);
  return Number(v);
}

async function assertFailedLogins(node, userId, count, opts) {
  for (let i = 1; i <= count; i++)
    assertHttpError(await tryLogin(node, userId, 'wrong-password', opts), 401, 'unauthorized');
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function timed(fn) {
  const t0 = performance.now();
  const r = await fn();
  return { r, ms: performance.now() - t0 };
}

// ------------------------------------------------------------------------------ item 4: per user id

describe('failed logins per user id (--rate-login-user 3/60, per-address off)', () => {
  const l = nodeFor(['--rate-login-user', '3/60', '--rate-login-address', '0']);

  test('after 3 failed logins, the next one answers 429 rate_limited with Retry-After, even with the right password', async () => {
    const n = l.node;
    for (const u of ['alice', 'bob', 'carol', 'dave']) await register(n, u);
    await assertFailedLogins(n, 'alice', 3);
    assertRateLimited(await tryLogin(n, 'alice', 'pw-alice'), 60, 'right password:');
    assertRateLimited(await tryLogin(n, 'alice', 'wrong-password'), 60, 'wrong password:');
  });

  test("the user id's bucket holds whatever the source address", async () => {
    const r = await tryLogin(l.node, 'alice', 'pw-alice', { from: '127.0.0.2' });
    assertRateLimited(r, 60, 'from 127.0.0.2:');
  });

  test('other user ids are not affected', async () => {
    assert.equal((await tryLogin(l.node, 'carol', 'pw-carol')).status, 200);
  });

  test('unknown user ids are throttled the same way as known ones', async () => {
    const n = l.node;
    const known = await tryLogin(n, 'carol', 'wrong-password');
    const unknown = await tryLogin(n, 'ghost', 'wrong-password');
    assertHttpError(unknown, 401, 'unauthorized');
    assert.equal(unknown.json.error.message, known.json.error.message, 'the same answer for an unknown id as for a wrong password');
    await assertFailedLogins(n, 'ghost', 2);
    assertRateLimited(await tryLogin(n, 'ghost', 'wrong-password'), 60, 'unknown id:');
  });

  test('successful logins do not consume the bucket', async () => {
    const n = l.node;
    for (let i = 0; i < 6; i++) assert.equal((await tryLogin(n, 'bob', 'pw-bob', { device: `d${i}` })).status, 200, `success ${i + 1}`);
    await assertFailedLogins(n, 'bob', 3);
    assertRateLimited(await tryLogin(n, 'bob', 'pw-bob'), 60);
  });

  test('a wrong old password on POST /api/v1/password counts as a failed login', async () => {
    const n = l.node;
    const t = await login(n, 'dave');
    for (let i = 1; i <= 3; i++) {
      const r = await http(n, 'POST', '/api/v1/password', { token: t, json: { old_password: 'not-it', new_password: `new-${i}` } });
      assertHttpError(r, 401, 'unauthorized');
    }
    assertRateLimited(await tryLogin(n, 'dave', 'pw-dave'), 60, 'login after 3 wrong old passwords:');
  });
});

describe('the bucket refills (--rate-login-user 2/2: one attempt back per second)', () => {
  const l = nodeFor(['--rate-login-user', '2/2', '--rate-login-address', '0']);

  test('429 until Retry-After has passed, then the right password logs in', async () => {
    const n = l.node;
    await register(n, 'erin');
    await assertFailedLogins(n, 'erin', 2);
    const wait = assertRateLimited(await tryLogin(n, 'erin', 'pw-erin'), 2);
    // The refill itself is what is tested: wait the time the node asked for.
    await new Promise((r) => setTimeout(r, wait * 1000 + 150));
    const r = await tryLogin(n, 'erin', 'pw-erin');
    assert.equal(r.status, 200, `after Retry-After (${wait} s): ${r.status} ${r.text}`);
  });
});

// ------------------------------------------------------------------------------ item 4: per address

describe('failed logins per source address (--rate-login-address 3/60, per-user off)', () => {
  const a = nodeFor(['--rate-login-address', '3/60', '--rate-login-user', '0']);

  test("after 3 failed logins from 127.0.0.3, every login from there is 429, for any user id; other addresses are not affected", async () => {
    const n = a.node;
    for (const u of ['u1', 'u2', 'u3']) await register(n, u);
    const from = '127.0.0.3';
    for (const u of ['u1', 'u2', 'ghost-a']) assertHttpError(await tryLogin(n, u, 'wrong-password', { from }), 401, 'unauthorized');
    assertRateLimited(await tryLogin(n, 'u1', 'pw-u1', { from }), 60, 'u1, right password:');
    assertRateLimited(await tryLogin(n, 'u3', 'pw-u3', { from }), 60, 'u3 (never failed), right password:');
    assertRateLimited(await tryLogin(n, 'ghost-b', 'x', { from }), 60, 'unknown id:');
    const other = await tryLogin(n, 'u1', 'pw-u1', { from: '127.0.0.4' });
    assert.equal(other.status, 200, `from 127.0.0.4: ${describeResponse(other)}`);
    assert.equal((await tryLogin(n, 'u2', 'pw-u2')).status, 200, 'from 127.0.0.1');
  });
});

// ------------------------------------------------------------------------------ item 4: defaults

describe('defaults: 10 failed logins per user id, 50 per address, in 300 s', () => {
  const d = nodeFor([]);

  test('the 11th login for a user id after 10 failures -> 429', async () => {
    const n = d.node;
    await register(n, 'frank');
    await assertFailedLogins(n, 'frank', 10, { from: '127.0.0.5' });
    assertRateLimited(await tryLogin(n, 'frank', 'pw-frank', { from: '127.0.0.5' }), 300);
  });

  test('the 51st login from an address after 50 failures (50 different ids) -> 429', async () => {
    const n = d.node;
    await register(n, 'gina');
    const from = '127.0.0.6';
    for (let i = 1; i <= 50; i++)
      assertHttpError(await tryLogin(n, `nobody${i}`, 'wrong-password', { from }), 401, 'unauthorized');
    assertRateLimited(await tryLogin(n, 'gina', 'pw-gina', { from }), 300);
    assert.equal((await tryLogin(n, 'gina', 'pw-gina', { from: '127.0.0.7' })).status, 200, 'another address');
  });
});

// ------------------------------------------------------------------------------ item 4: argon2id pool

describe('argon2id at interactive cost: unknown users cost the same, logins do not starve other calls', () => {
  // No rate flags: the defaults (10 per user id, 50 per address) are not reached here
  // (6 + 6 + 20 failed logins from 127.0.0.1, at most 6 per user id).
  const t = nodeFor([], { interactive: true });

  test('the fastest unknown-user answer is more than half the median known-user wrong-password answer', async () => {
    const n = t.node;
    await register(n, 'k1');
    assertHttpError(await tryLogin(n, 'k1', 'wrong-password'), 401, 'unauthorized'); // warm-up
    assertHttpError(await tryLogin(n, 'nobody-0', 'wrong-password'), 401, 'unauthorized');
    const known = [];
    for (let i = 0; i < 5; i++) {
      const { r, ms } = await timed(() => tryLogin(n, 'k1', 'wrong-password'));
      assertHttpError(r, 401, 'unauthorized');
      known.push(ms);
    }
    const unknown = [];
    for (let i = 1; i <= 5; i++) {
      const { r, ms } = await timed(() => tryLogin(n, `nobody-${i}`, 'wrong-password'));
      assertHttpError(r, 401, 'unauthorized');
      unknown.push(ms);
    }
    const fmt = (xs) => xs.map((x) => x.toFixed(1)).join(', ');
    assert.ok(
      Math.min(...unknown) > median(known) / 2,
      `unknown user ids answer too fast (user enumeration by timing): unknown [${fmt(unknown)}] ms, known wrong password [${fmt(known)}] ms`,
    );
  });

  test('while 20 wrong-password logins hash at once, another user\'s GET /api/v1/me stays fast (median < 50 ms)', async () => {
    const n = t.node;
    const victims = ['p1', 'p2', 'p3', 'p4'];
    for (const u of [...victims, 'watcher']) await register(n, u);
    const token = await login(n, 'watcher');
    let pending = true;
    const logins = Promise.all(
      Array.from({ length: 20 }, (_, i) => tryLogin(n, victims[i % 4], 'wrong-password', { device: `x${i}` })),
    ).finally(() => {
      pending = false;
    });
    // Open-loop probes: a GET /api/v1/me every 20 ms while the logins run, each timed on its own
    // (one probe after the other would count a stall once, however many calls it holds up).
    const probes = [];
    while (pending && probes.length < 300) {
      probes.push(timed(() => http(n, 'GET', '/api/v1/me', { token })));
      await new Promise((r) => setTimeout(r, 20)); // pacing of the probes, not a wait for an absence
    }
    const done = await Promise.all(probes);
    for (const { r } of done) assert.equal(r.status, 200);
    const samples = done.map((x) => x.ms);
    assert.ok(samples.length >= 3, `${samples.length} probes while the logins ran`);
    const results = await logins;
    assert.deepEqual(
      results.map((r) => r.status),
      Array(20).fill(401),
      'all 20 logins were verified (a queue of 64 holds them; no rate limit reached)',
    );
    const m = median(samples);
    assert.ok(m < 50, `GET /api/v1/me median ${m.toFixed(1)} ms while logins hash (samples: ${samples.map((x) => x.toFixed(0)).join(', ')})`);
  });
});

describe('the hashing queue is bounded (--auth-threads 1 --auth-queue-max 2)', () => {
  const q = nodeFor(['--auth-threads', '1', '--auth-queue-max', '2', '--rate-login-user', '0', '--rate-login-address', '0'], {
    interactive: true,
  });

  test('logins over the queue answer 429 rate_limited with Retry-After: 1 at once', async () => {
    const n = q.node;
    await register(n, 'q1');
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => tryLogin(n, 'q1', 'wrong-password', { device: `q${i}` })));
    const statuses = results.map((r) => r.status);
    assert.ok(statuses.every((s) => s === 401 || s === 429), `only 401 and 429: ${statuses}`);
    const limited = results.filter((r) => r.status === 429);
    // 1 hashing + 2 queued are admitted; a few more may get in as the first ones finish.
    assert.ok(limited.length >= 6, `at least 6 of 12 refused over the queue: ${statuses}`);
    assert.ok(results.some((r) => r.status === 401), `some were verified: ${statuses}`);
    for (const r of limited) {
      assertHttpError(r, 429, 'rate_limited');
      assert.equal(retryAfter(r), '1', 'Retry-After: 1');
    }
  });
});

// ------------------------------------------------------------------------------ item 6: sessions

describe('sessions: revoked tokens close their WebSockets with 4001', () => {
  const s = nodeFor([]);
  const open = [];
  after(() => closeAll(open));

  async function ws(token) {
    const c = await WsClient.connect(s.node, { token });
    open.push(c);
    return c;
  }

  async function assertClosed4001(c, what) {
    const info = await c.waitClose(1000).catch((e) => {
      throw new Error(`${what}: not closed within a second of the revocation (${e.message.slice(0, 200)})`);
    });
    assert.equal(info.code, 4001, `${what}: close code`);
  }

  test('logout closes that token\'s WebSocket with 4001 within a second; the other device stays', async () => {
    const n = s.node;
    const sa = await makeUser(n, 'sa', ['d1', 'd2']);
    const w1 = await ws(sa.tokens.d1);
    const w2 = await ws(sa.tokens.d2);
    const out = await http(n, 'POST', '/api/v1/logout', { token: sa.tokens.d2 });
    assert.equal(out.status, 200, out.text);
    await assertClosed4001(w2, 'the logged-out socket');
    assertHttpError(await http(n, 'GET', '/api/v1/me', { token: sa.tokens.d2 }), 401, 'unauthorized');
    await w1.ping();
    assert.ok(w1.open, 'the other device is still connected');
    assert.equal((await http(n, 'GET', '/api/v1/me', { token: sa.tokens.d1 })).status, 200);
  });

  test('POST /api/v1/logout-all -> 200 {"revoked": 3}: every token of the user, the caller\'s too, and all its sockets (4001)', async () => {
    const n = s.node;
    const sb = await makeUser(n, 'sb', ['d1', 'd2', 'd3']);
    const sd = await makeUser(n, 'sd');
    const socks = [await ws(sb.tokens.d1), await ws(sb.tokens.d2), await ws(sb.tokens.d3)];
    const bystander = await ws(sd.token);
    const r = await http(n, 'POST', '/api/v1/logout-all', { token: sb.tokens.d1 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json?.revoked, 3, r.text);
    for (const [i, c] of socks.entries()) await assertClosed4001(c, `sb's socket d${i + 1}`);
    for (const d of ['d1', 'd2', 'd3'])
      assertHttpError(await http(n, 'GET', '/api/v1/me', { token: sb.tokens[d] }), 401, 'unauthorized');
    await bystander.ping();
    assert.equal((await http(n, 'GET', '/api/v1/me', { token: sd.token })).status, 200, "another user's token");
    assert.equal((await http(n, 'POST', '/api/v1/login', { json: { user_id: 'sb', password: 'pw-sb', device_id: 'again' } })).status, 200);
  });

  test('POST /api/v1/password -> 200 {"revoked": 2}: the other tokens and sockets go (4001), the caller\'s stay', async () => {
    const n = s.node;
    const sc = await makeUser(n, 'sc', ['d1', 'd2', 'd3']);
    const [w1, w2, w3] = [await ws(sc.tokens.d1), await ws(sc.tokens.d2), await ws(sc.tokens.d3)];
    const r = await http(n, 'POST', '/api/v1/password', { token: sc.tokens.d1, json: { old_password: 'pw-sc', new_password: 'new-sc-secret' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json?.revoked, 2, r.text);
    await assertClosed4001(w2, 'd2');
    await assertClosed4001(w3, 'd3');
    await w1.ping();
    assert.ok(w1.open, "the caller's socket stays");
    assert.equal((await http(n, 'GET', '/api/v1/me', { token: sc.tokens.d1 })).status, 200, "the caller's token keeps working");
    for (const d of ['d2', 'd3']) assertHttpError(await http(n, 'GET', '/api/v1/me', { token: sc.tokens[d] }), 401, 'unauthorized');
    assertHttpError(await tryLogin(n, 'sc', 'pw-sc'), 401, 'unauthorized');
    assert.equal((await tryLogin(n, 'sc', 'new-sc-secret')).status, 200, 'the new password logs in');
  });

  test('a wrong old password -> 401 unauthorized; password and sessions unchanged', async () => {
    const n = s.node;
    const se = await makeUser(n, 'se', ['d1', 'd2']);
    const w2 = await ws(se.tokens.d2);
    const r = await http(n, 'POST', '/api/v1/password', { token: se.tokens.d1, json: { old_password: 'not-it', new_password: 'x-new' } });
    assertHttpError(r, 401, 'unauthorized');
    assert.equal((await tryLogin(n, 'se', 'pw-se')).status, 200, 'the old password still works');
    assertHttpError(await tryLogin(n, 'se', 'x-new'), 401, 'unauthorized');
    await w2.ping();
    assert.equal((await http(n, 'GET', '/api/v1/me', { token: se.tokens.d2 })).status, 200);
    // The endpoint itself exists (the 401 above is not a missing route's 401/404).
    const ok = await http(n, 'POST', '/api/v1/password', { token: se.tokens.d1, json: { old_password: 'pw-se', new_password: 'se-2' } });
    assert.equal(ok.status, 200, ok.text);
  });

  test('a missing or empty new_password -> 400 bad_request; password unchanged', async () => {
    const n = s.node;
    const sf = await makeUser(n, 'sf');
    const w = await ws(sf.token);
    for (const json of [{ old_password: 'pw-sf' }, { old_password: 'pw-sf', new_password: '' }])
      assertHttpError(await http(n, 'POST', '/api/v1/password', { token: sf.token, json }), 400, 'bad_request');
    assert.equal((await tryLogin(n, 'sf', 'pw-sf')).status, 200, 'the password is unchanged');
    await w.ping();
  });

  test('logout-all and password need a token', async () => {
    const n = s.node;
    assertHttpError(await http(n, 'POST', '/api/v1/logout-all'), 401, 'unauthorized');
    assertHttpError(await http(n, 'POST', '/api/v1/password', { json: { old_password: 'a', new_password: 'b' } }), 401, 'unauthorized');
  });
});

describe('sessions: a WebSocket is closed with 4001 when its token expires (--token-ttl-s 2)', () => {
  const e = nodeFor(['--token-ttl-s', '2']);

  test('open before expiry, closed 4001 at expiry, then HTTP 401', async () => {
    const n = e.node;
    await register(n, 'eve');
    const r = await http(n, 'POST', '/api/v1/login', { json: { user_id: 'eve', password: 'pw-eve', device_id: 'd1' } });
    assert.equal(r.status, 200);
    const { token, expires_at: expiresAt } = r.json;
    const c = await WsClient.connect(n, { token });
    try {
      await c.ping();
      // Expiry itself is what is tested: wait for the close, bounded by expiry + 2 s.
      const info = await c.waitClose(Math.max(0, expiresAt - Date.now()) + 2000);
      const at = Date.now();
      assert.equal(info.code, 4001);
      assert.ok(at >= expiresAt - 100, `closed ${expiresAt - at} ms before the token expired`);
      assert.ok(at <= expiresAt + 1000, `closed ${at - expiresAt} ms after the token expired`);
      assertHttpError(await http(n, 'GET', '/api/v1/me', { token }), 401, 'unauthorized');
    } finally {
      await c.close();
    }
  });
});
