// Presence on a single node: who of the users asked about has a connection open, as the asker
// may see it (themselves and those they share a conversation with; devices only for their own,
// or for an admin). The cluster's side (rows of other nodes, a dead node) is in cluster.test.mjs.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { assertHttpError } from './lib/check.mjs';
import { createConversation, http, login, makeUser, register } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const h = useNode({ flags: ['--admin-user', 'root', '--admin-password', 'root-pw'] });

async function presence(node, token, ids) {
  const r = await http(node, 'GET', `/api/v1/presence?users=${ids.join(',')}`, { token });
  assert.equal(r.status, 200, r.text);
  return new Map(r.json.presence.map((p) => [p.user_id, p]));
}

async function until(node, token, id, pred) {
  const deadline = Date.now() + 3000;
  for (;;) {
    const p = (await presence(node, token, [id])).get(id);
    if (pred(p) || Date.now() > deadline) return p;
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('presence: own devices in detail, contacts online or not, strangers left out', async () => {
  const node = await h.ready;
  const ann = await makeUser(node, 'ann', ['phone', 'laptop']);
  const bo = await makeUser(node, 'bo', ['d1']);
  await register(node, 'cy');
  await createConversation(node, bo.tokens.d1, 'direct', ['ann']);
  const phone = await WsClient.connect(node, { token: ann.tokens.phone });
  const laptop = await WsClient.connect(node, { token: ann.tokens.laptop });
  try {
    const own = (await presence(node, ann.tokens.phone, ['ann'])).get('ann');
    assert.equal(own.online, true);
    assert.deepEqual(own.devices.map((d) => d.device_id).sort(), ['laptop', 'phone']);
    assert.ok(own.devices.every((d) => d.protocol === 'ws' && d.node_id && d.since > 0), JSON.stringify(own));
    // bo shares a conversation with ann: online and how many, no devices. Ids fold to lower case.
    const seen = await presence(node, bo.tokens.d1, ['ANN', 'cy', 'bo', 'ann']);
    assert.deepEqual([...seen.keys()], ['ann', 'bo']);
    assert.deepEqual(seen.get('ann'), { user_id: 'ann', online: true, connections: 2 });
    assert.equal(seen.get('bo').online, false);
    // Admins see everyone, with devices.
    const root = await login(node, 'root', 'adm', { password: 'root-pw' });
    const all = await presence(node, root, ['ann', 'cy']);
    assert.equal(all.get('ann').devices.length, 2);
    assert.equal(all.get('cy').online, false);
    // A closed connection is gone as soon as the node has seen it close.
    await laptop.close();
    assert.equal((await until(node, bo.tokens.d1, 'ann', (p) => p.connections === 1)).connections, 1);
    await phone.close();
    assert.equal((await until(node, bo.tokens.d1, 'ann', (p) => !p.online)).online, false);
  } finally {
    await closeAll(phone, laptop);
  }
});

test('presence: bad requests are refused', async () => {
  const node = await h.ready;
  const dee = await makeUser(node, 'dee', ['d1']);
  const many = Array.from({ length: 101 }, (_, i) => `u${i}`).join(',');
  for (const q of ['', '?users=', `?users=${many}`, '?users=a%20b', '?users=a,,b', '?users=dee,', '?users=%FF', '?users=dee%00']) {
    const r = await http(node, 'GET', `/api/v1/presence${q}`, { token: dee.tokens.d1 });
    assert.equal(r.status, 400, `${q}: ${r.text}`);
  }
  assertHttpError(await http(node, 'GET', '/api/v1/presence?users=dee'), 401, 'unauthorized');
  assert.equal((await http(node, 'POST', '/api/v1/presence?users=dee', { token: dee.tokens.d1 })).status, 404);
});
