// Unit tests of file downloads (fetchFile, fileObjectUrl) against a fake fetch: the token goes in
// the Authorization header and never in the URL; errors are ApiErrors. (client.test.mjs does the
// same against a real node.)
import assert from 'node:assert/strict';
import { resolveObjectURL } from 'node:buffer';
import { test } from 'node:test';
import { ApiError, ConvergeClient } from '../src/index.js';

const TOKEN = 'tok-123+/=';
const session = { token: TOKEN, user_id: 'alice', device_id: 'd1' };

/** A client whose fetch answers with `answer(url, init)` and records every call. */
function fakeClient(answer, opts = {}) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    calls.push({ url: String(url), init });
    return answer(String(url), init);
  };
  const c = new ConvergeClient({ baseUrl: 'http://node.test:8080/', fetch, session, ...opts });
  return { c, calls };
}

const png = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10, 0, 1, 2, 3]);
const okPng = () => new Response(png, { status: 200, headers: { 'Content-Type': 'image/png' } });

test('fetchFile: GET /api/v1/files/<id> with the bearer header, no token in the URL; a typed Blob', async () => {
  const { c, calls } = fakeClient(okPng);
  const blob = await c.fetchFile('f/1 2');
  assert.ok(blob instanceof Blob);
  assert.equal(blob.type, 'image/png');
  assert.deepEqual(new Uint8Array(await blob.arrayBuffer()), png);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].url, 'http://node.test:8080/api/v1/files/f%2F1%202');
  assert.equal(calls[0].init.method, 'GET');
  assert.equal(calls[0].init.headers.Authorization, `Bearer ${TOKEN}`);
  assert.ok(!calls[0].url.includes('token'), calls[0].url);
  assert.ok(!calls[0].url.includes(encodeURIComponent(TOKEN)), calls[0].url);
});

test('fetchFile takes a message, its file, an upload answer or a file_id', async () => {
  const { c, calls } = fakeClient(okPng);
  await c.fetchFile({ type: 'image', body: 'x.png', file: { file_id: 'm1', name: 'x.png' } });
  await c.fetchFile({ file_id: 'u2', name: 'x.png', url: '/api/v1/files/u2' });
  await c.fetchFile('s3');
  assert.deepEqual(
    calls.map((x) => x.url.split('/').pop()),
    ['m1', 'u2', 's3'],
  );
  await assert.rejects(c.fetchFile({ type: 'text', body: 'hi' }), TypeError);
  await assert.rejects(c.fetchFile(null), TypeError);
  assert.equal(calls.length, 3);
});

test('fetchFile: the node\'s error answer becomes an ApiError with its code and status', async () => {
  const { c } = fakeClient(
    (url) =>
      new Response(JSON.stringify({ error: { code: url.endsWith('/gone') ? 'not_found' : 'forbidden', message: 'not shared with you' } }), {
        status: url.endsWith('/gone') ? 404 : 403,
        headers: { 'Content-Type': 'application/json' },
      }),
  );
  await assert.rejects(c.fetchFile('secret'), (e) => {
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 403);
    assert.equal(e.code, 'forbidden');
    assert.equal(e.message, 'not shared with you');
    assert.equal(e.retryable, false);
    return true;
  });
  await assert.rejects(c.fetchFile('gone'), { status: 404, code: 'not_found' });
});

test('fetchFile: no session is unauthorized without a request; a network failure is retryable', async () => {
  const { c, calls } = fakeClient(okPng, { session: undefined });
  await assert.rejects(c.fetchFile('f1'), { status: 401, code: 'unauthorized' });
  assert.equal(calls.length, 0);
  const down = fakeClient(() => {
    throw new TypeError('fetch failed');
  }).c;
  await assert.rejects(down.fetchFile('f1'), (e) => e instanceof ApiError && e.code === 'network' && e.status === 0 && e.retryable);
});

test('fetchFile: an AbortSignal is passed on; aborting rejects with code aborted (not retryable)', async () => {
  const { c, calls } = fakeClient(
    (url, init) =>
      new Promise((resolve, reject) => {
        if (init.signal?.aborted) return reject(init.signal.reason ?? new DOMException('aborted', 'AbortError'));
        init.signal?.addEventListener('abort', () => reject(new DOMException('The operation was aborted.', 'AbortError')));
      }),
  );
  const ac = new AbortController();
  const p = c.fetchFile('f1', { signal: ac.signal });
  ac.abort();
  await assert.rejects(p, (e) => e instanceof ApiError && e.code === 'aborted' && e.status === 0 && !e.retryable);
  assert.equal(calls[0].init.signal, ac.signal);
});

test('fileObjectUrl: a blob: URL of the bytes; revoke() frees it and may be called again', async () => {
  const { c, calls } = fakeClient(okPng);
  const f = await c.fileObjectUrl({ file: { file_id: 'img1' } });
  assert.match(f.url, /^blob:/);
  assert.ok(!f.url.includes('token'));
  assert.equal(calls[0].init.headers.Authorization, `Bearer ${TOKEN}`);
  assert.equal(f.blob.type, 'image/png');
  const held = resolveObjectURL(f.url);
  assert.ok(held, 'the URL resolves while not revoked');
  assert.deepEqual(new Uint8Array(await held.arrayBuffer()), png);
  f.revoke();
  assert.equal(resolveObjectURL(f.url), undefined, 'revoked');
  f.revoke();
});

test('fileObjectUrl: a refused download makes no URL', async () => {
  const { c } = fakeClient(() => new Response('{"error":{"code":"forbidden","message":"no"}}', { status: 403 }));
  await assert.rejects(c.fileObjectUrl('f1'), { code: 'forbidden' });
});

test('fileUrl (discouraged) still builds the ?token= URL for callers that cannot send a header', () => {
  const { c } = fakeClient(okPng);
  assert.equal(c.fileUrl({ file: { file_id: 'a b' } }), `http://node.test:8080/api/v1/files/a%20b?token=${encodeURIComponent(TOKEN)}`);
  assert.equal(c.fileUrl({ type: 'text' }), '');
});
