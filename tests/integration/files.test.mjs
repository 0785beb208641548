// Files: upload, send as an image/file message, download by members only (DESIGN.md section 3).
//
// Uploading, sending and receiving file messages and downloading them by the URL a client puts in
// <img src> go through the SDK (clients/js, lib/sdk.mjs). Raw (lib/http.mjs, lib/ws.mjs): who may
// not download (403/401/404), the download's headers, uploads without a Content-Type, refused
// file messages (error codes, nothing stored) and upload limits.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { assertHttpError, assertWsError } from './lib/check.mjs';
import { createConversation, http, lastSeq, makeUser, sendHttp } from './lib/http.mjs';
import { startNode, useNode } from './lib/node.mjs';
import { closeDevices, sdkDevice } from './lib/sdk.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const MAX_FILE = 64 * 1024;
const h = useNode({ flags: ['--max-file-bytes', String(MAX_FILE)] });

function upload(node, token, bytes, { name, type } = {}) {
  const headers = {};
  if (type) headers['Content-Type'] = type;
  const q = name === undefined ? '' : `?name=${encodeURIComponent(name)}`;
  return http(node, 'POST', `/api/v1/files${q}`, { token, body: bytes, headers });
}

describe('files', () => {
  let node;
  let alice;
  let bob;
  let carol;
  let aWs; // raw connections
  let bWs;
  let aSdk; // SDK devices
  let bSdk;
  let cSdk;
  let conv;

  before(async () => {
    node = await h.ready;
    alice = await makeUser(node, 'alice');
    bob = await makeUser(node, 'bob');
    carol = await makeUser(node, 'carol');
    conv = (await createConversation(node, alice.token, 'group', ['bob'], 'pics')).id;
    aWs = await WsClient.connect(node, { token: alice.token });
    bWs = await WsClient.connect(node, { token: bob.token });
    aSdk = await sdkDevice(node, 'alice');
    bSdk = await sdkDevice(node, 'bob');
    cSdk = await sdkDevice(node, 'carol');
  });

  after(async () => {
    closeDevices(aSdk, bSdk, cSdk);
    await closeAll(aWs, bWs);
  });

  // Downloads through the URL the SDK gives for <img src> (the token rides in the query).
  async function download(dev, fileOrMessage) {
    const r = await fetch(dev.client.fileUrl(fileOrMessage));
    return { status: r.status, headers: r.headers, bytes: Buffer.from(await r.arrayBuffer()) };
  }

  test('image round trip: upload, send with file_id, member downloads identical bytes; non-member gets 403', async () => {
    const bytes = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), randomBytes(20000)]);
    const f = await aSdk.client.uploadFile(bytes, { name: 'holiday photo.png', type: 'image/png' });
    assert.match(f.file_id, /^[0-9a-f]{32}$/);
    assert.equal(f.name, 'holiday photo.png');
    assert.equal(f.size, bytes.length);
    assert.equal(f.mime, 'image/png');
    assert.equal(f.url, `/api/v1/files/${f.file_id}`);

    // The uploader may fetch it before it is sent anywhere; bob may not yet.
    const own = await download(aSdk, f);
    assert.equal(own.status, 200);
    assert.ok(own.bytes.equals(bytes));
    assertHttpError(await http(node, 'GET', f.url, { token: bob.token }), 403, 'forbidden');

    const ack = await aSdk.client.send(conv, { type: 'image', file_id: f.file_id, client_msg_id: 'img-1' });
    const live = await bSdk.waitForMsg(conv, ack.seq);
    assert.equal(live.type, 'image');
    assert.deepEqual(live.file, f);
    const [stored] = (await bSdk.client.history(conv)).filter((m) => m.seq === ack.seq);
    assert.deepEqual(stored.file, f);

    // Bob's <img src>: the SDK's URL with ?token= (a browser cannot add a header to it).
    const viaQuery = await download(bSdk, live);
    assert.equal(viaQuery.status, 200);
    assert.equal(viaQuery.headers.get('content-type'), 'image/png');
    assert.ok(viaQuery.bytes.equals(bytes), 'downloaded bytes are identical');
    // Raw: with the Authorization header, and the download's headers.
    const dl = await http(node, 'GET', live.file.url, { token: bob.token });
    assert.equal(dl.status, 200);
    assert.equal(dl.headers.get('content-type'), 'image/png');
    assert.ok(dl.bytes.equals(bytes), 'downloaded bytes are identical');
    assert.match(dl.headers.get('content-disposition') || '', /filename="holiday photo.png"/);
    assert.equal(dl.headers.get('x-content-type-options'), 'nosniff');

    // Carol is in no conversation the file was sent in.
    assertHttpError(await http(node, 'GET', f.url, { token: carol.token }), 403, 'forbidden');
    assert.equal((await download(cSdk, f)).status, 403);
    assertHttpError(await http(node, 'GET', f.url), 401, 'unauthorized');
    assertHttpError(await http(node, 'GET', '/api/v1/files/0123456789abcdef0123456789abcdef', { token: bob.token }), 404, 'not_found');
  });

  // The upload without a Content-Type and the HTTP send are raw (server defaults, status code);
  // alice receives and downloads it through the SDK.
  test('file message: body defaults to the file name; Content-Type defaults to application/octet-stream', async () => {
    const bytes = randomBytes(3000);
    const up = await upload(node, bob.token, bytes, { name: 'dir/../report.bin' });
    assert.equal(up.status, 201, up.text);
    assert.equal(up.json.name, 'report.bin', 'path parts are dropped from the name');
    // fetch sends no Content-Type for a Buffer body, so the node picks the default.
    assert.equal(up.json.mime, 'application/octet-stream');
    const r = await sendHttp(node, bob.token, conv, { type: 'file', file_id: up.json.file_id, client_msg_id: 'file-1' });
    assert.equal(r.status, 201, r.text);
    const m = await aSdk.waitForMsg(conv, r.json.seq);
    assert.equal(m.type, 'file');
    assert.equal(m.body, 'report.bin');
    assert.deepEqual(m.file, up.json);
    const dl = await download(aSdk, m);
    assert.equal(dl.status, 200);
    assert.equal(dl.headers.get('content-type'), 'application/octet-stream');
    assert.ok(dl.bytes.equals(bytes));
  });

  test('file message sent by the SDK in one call (upload, then send): body is the file name', async () => {
    const bytes = randomBytes(1200);
    const sent = await bSdk.client.sendFile(conv, bytes, { type: 'file', name: 'notes.txt', mime: 'text/plain' });
    assert.equal(sent.file.name, 'notes.txt');
    assert.equal(sent.file.size, bytes.length);
    assert.equal(sent.file.mime, 'text/plain');
    const m = await aSdk.waitForMsg(conv, sent.seq);
    assert.equal(m.type, 'file');
    assert.equal(m.body, 'notes.txt');
    assert.equal(m.publisher_id, 'bob');
    assert.deepEqual(m.file, sent.file);
    const dl = await download(aSdk, m);
    assert.equal(dl.status, 200);
    assert.ok(dl.bytes.equals(bytes));
  });

  // Raw: error codes, nothing stored.
  test('unknown file_id in a message -> not_found, nothing stored, connection fine', async () => {
    const before = await lastSeq(node, alice.token, conv);
    assertWsError(
      await aWs.request('msg', { conversation_id: conv, type: 'image', file_id: 'ffffffffffffffffffffffffffffffff', client_msg_id: 'ghost' }),
      'not_found',
    );
    assertHttpError(await sendHttp(node, alice.token, conv, { type: 'file', file_id: 'nope' }), 404, 'not_found');
    assert.equal(await lastSeq(node, alice.token, conv), before);
    const ok = await aWs.send({ conversation_id: conv, body: 'still here', client_msg_id: 'after-ghost' });
    assert.equal(ok.seq, before + 1);
    await bWs.waitForMsg(conv, before + 1);
  });

  // Raw: error codes, nothing stored.
  test("someone else's unshared file cannot be sent; message shapes are checked", async () => {
    const up = await upload(node, carol.token, randomBytes(100), { name: 'secret.bin' });
    assert.equal(up.status, 201);
    const before = await lastSeq(node, alice.token, conv);
    assertWsError(await aWs.request('msg', { conversation_id: conv, type: 'file', file_id: up.json.file_id }), 'forbidden');
    // image/file/voice need a file_id; text takes none.
    assertWsError(await aWs.request('msg', { conversation_id: conv, type: 'image' }), 'bad_request');
    assertWsError(await aWs.request('msg', { conversation_id: conv, type: 'voice', body: 'x' }), 'bad_request');
    assertWsError(await aWs.request('msg', { conversation_id: conv, type: 'text', body: 'x', file_id: up.json.file_id }), 'bad_request');
    assertWsError(await aWs.request('msg', { conversation_id: conv, type: 'image', file_id: 42 }), 'bad_request');
    assert.equal(await lastSeq(node, alice.token, conv), before);
    await aWs.ping();
  });

  test('a member may forward a file shared with them', async () => {
    const bytes = randomBytes(500);
    const orig = await aSdk.client.sendFile(conv, bytes, { type: 'file', name: 'fwd.bin', mime: 'application/x-test' });
    const other = (await bSdk.client.createDirect('carol')).id;
    const fwd = await bSdk.client.send(other, { type: 'file', file_id: orig.file.file_id, client_msg_id: 'fwd-1' });
    assert.equal(fwd.seq, 1);
    // Now carol, member of the conversation it was forwarded to, gets it and may download it.
    const m = await cSdk.waitForMsg(other, 1);
    assert.deepEqual(m.file, orig.file);
    const dl = await download(cSdk, m);
    assert.equal(dl.status, 200);
    assert.equal(dl.headers.get('content-type'), 'application/x-test');
    assert.ok(dl.bytes.equals(bytes));
  });

  // Raw: status and error codes.
  test('upload limits: over --max-file-bytes -> 413 too_large; empty -> 400; bad Content-Type -> 400', async () => {
    assertHttpError(await upload(node, alice.token, randomBytes(MAX_FILE + 1), { name: 'big.bin' }), 413, 'too_large');
    assertHttpError(await upload(node, alice.token, Buffer.alloc(0), { name: 'empty.bin' }), 400, 'bad_request');
    assertHttpError(await upload(node, alice.token, randomBytes(10), { name: 'x', type: 'not a mime' }), 400, 'bad_request');
    assertHttpError(await upload(node, undefined, randomBytes(10), { name: 'x' }), 401, 'unauthorized');
    // Exactly at the limit is fine.
    const ok = await upload(node, alice.token, randomBytes(MAX_FILE), { name: 'edge.bin' });
    assert.equal(ok.status, 201);
    assert.equal(ok.json.size, MAX_FILE);
  });

  // Raw: the download's headers.
  test(
    'uploaded active content (text/html, image/svg+xml) is not rendered inline on the node origin',
    async () => {
      for (const [type, name] of [['text/html', 'page.html'], ['image/svg+xml', 'pic.svg']]) {
        const up = await upload(node, alice.token, Buffer.from('<script>alert(document.cookie)</script>'), { name, type });
        assert.equal(up.status, 201);
        const dl = await http(node, 'GET', up.json.url, { token: alice.token });
        assert.equal(dl.status, 200);
        const disp = dl.headers.get('content-disposition') || '';
        const csp = dl.headers.get('content-security-policy') || '';
        assert.ok(disp.startsWith('attachment') || /sandbox/.test(csp), `${type}: served with "${disp}", CSP "${csp}"`);
      }
    },
  );

  test(
    'uploads larger than 1 MiB work under the default 25 MiB --max-file-bytes',
    async () => {
      const other = await startNode();
      let big;
      try {
        await makeUser(other, 'big');
        big = await sdkDevice(other, 'big', 'sdk', { connect: false });
        const bytes = randomBytes(2 * 1024 * 1024);
        let f;
        try {
          f = await big.client.uploadFile(bytes, { name: 'two-mib.bin' });
        } catch (e) {
          assert.fail(`upload of 2 MiB failed: ${e.status} ${e.code} ${e.cause?.cause?.code || e.cause?.code || e.message}`);
        }
        assert.equal(f.size, bytes.length);
        assert.equal(f.name, 'two-mib.bin');
      } finally {
        big?.close();
        await other.stop({ removeData: true });
      }
    },
  );
});
