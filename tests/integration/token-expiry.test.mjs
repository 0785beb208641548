// Tokens expire after --token-ttl-s: then HTTP answers 401 and a WebSocket is closed with 4001.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { assertHttpError } from './lib/check.mjs';
import { http, register } from './lib/http.mjs';
import { useNode } from './lib/node.mjs';
import { WsClient } from './lib/ws.mjs';

const h = useNode({ flags: ['--token-ttl-s', '1'] });

test('an expired token is refused over HTTP (401) and WebSocket (4001)', async () => {
  const node = await h.ready;
  await register(node, 'eve');
  const r = await http(node, 'POST', '/api/v1/login', { json: { user_id: 'eve', password: 'pw-eve', device_id: 'd1' } });
  assert.equal(r.status, 200);
  const { token, expires_at: expiresAt } = r.json;
  assert.ok(expiresAt - Date.now() <= 1000 + 50, 'expires_at is one second ahead');
  // Valid now.
  assert.equal((await http(node, 'GET', '/api/v1/me', { token })).status, 200);
  const early = await WsClient.connect(node, { token });
  await early.close();
  // Expiry itself is what is tested, so wait for it.
  await new Promise((res) => setTimeout(res, Math.max(0, expiresAt - Date.now()) + 200));
  assertHttpError(await http(node, 'GET', '/api/v1/me', { token }), 401, 'unauthorized');
  const late = await WsClient.connect(node, { token, ready: false });
  assert.equal((await late.waitClose()).code, 4001);
  assert.equal(late.frames[0].data.code, 'unauthorized');
  // A fresh login works again.
  const again = await http(node, 'POST', '/api/v1/login', { json: { user_id: 'eve', password: 'pw-eve', device_id: 'd1' } });
  assert.equal((await http(node, 'GET', '/api/v1/me', { token: again.json.token })).status, 200);
});
