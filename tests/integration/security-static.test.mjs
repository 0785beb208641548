// Security, the static route (issue 10 items 1, 2, 8's headers and 7's HEAD; /tmp spec "1 + 2").
//
// Every probe goes over a raw socket (lib/raw.mjs): fetch would normalise `..` and `//` away and
// never send the bytes an attacker sends. Three nodes:
//   - `node`: --web-root = a folder of its own, with hidden files, a symlink that stays inside and
//     symlinks that lead out of it (to a secret file next to it, to a folder, to /etc/passwd);
//   - `nested`: --web-root = the parent of its --data-dir, so the database, its WAL and the
//     uploaded blobs lie under the web root and must still never be served;
//   - `bare`: no web root at all (bad paths are still 400).
// Bad paths answer 400 bad_request, paths that resolve outside the root or into the data dir
// answer 404 not_found, and no probe ever gets the bytes of the file it aims at.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { assertHttpError } from './lib/check.mjs';
import { http, login, register } from './lib/http.mjs';
import { ConvergeNode, convergeBin, startNode } from './lib/node.mjs';
import { listFiles } from './lib/files.mjs';
import { describeResponse, rawHttp, rawRequest } from './lib/raw.mjs';

const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; " +
  "connect-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const STATIC_HEADERS = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'content-security-policy': CSP,
};

const INDEX = '<!doctype html><html><head><title>converge</title></head><body>INDEX-PAGE-7f3a</body></html>\n';
const APP_JS = 'console.log("APP-JS-91c2");\n';
const STYLE = 'body { color: #123; } /* STYLE-CSS-5d1e */\n';
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from('LOGO-PNG-c4b0')]);
const SECRET = 'SECRET-OUTSIDE-THE-ROOT-2b8d\n';
const HIDDEN = 'HIDDEN-FILE-0e4c\n';

// Bytes of every file a probe may be after: none of them may ever come back.
const FORBIDDEN = ['root:x:0:', 'SQLite format 3', SECRET.trim(), HIDDEN.trim(), 'ENV-SECRET', 'GIT-CONFIG-SECRET'];

function assertNotLeaked(r, what) {
  const text = r.body.toString('latin1');
  for (const f of FORBIDDEN) assert.ok(!text.includes(f), `${what}: the answer carries "${f}": ${describeResponse(r)}`);
}

let base; // temp folder holding the web root and the files outside it
let webRoot;
let node;
let bare;
let nested; // web root = parent of the data dir
let nestedBase;
let blobRel; // path of an uploaded blob, relative to nested's web root

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'converge-static-'));
  webRoot = path.join(base, 'web');
  const outside = path.join(base, 'outside');
  await mkdir(path.join(webRoot, 'assets'), { recursive: true });
  await mkdir(path.join(webRoot, '.git'), { recursive: true });
  await mkdir(outside, { recursive: true });
  await writeFile(path.join(webRoot, 'index.html'), INDEX);
  await writeFile(path.join(webRoot, 'app.js'), APP_JS);
  await writeFile(path.join(webRoot, 'style.css'), STYLE);
  await writeFile(path.join(webRoot, 'assets', 'logo.png'), PNG);
  await writeFile(path.join(webRoot, 'assets', '.secret.txt'), HIDDEN);
  await writeFile(path.join(webRoot, '.hidden'), HIDDEN);
  await writeFile(path.join(webRoot, '.env'), 'ENV-SECRET=1\n');
  await writeFile(path.join(webRoot, '.git', 'config'), '[core] GIT-CONFIG-SECRET\n');
  await writeFile(path.join(outside, 'secret.txt'), SECRET);
  await writeFile(path.join(outside, 'index.html'), SECRET);
  // Symlinks: one that stays inside the root, three that lead out of it.
  await symlink('app.js', path.join(webRoot, 'inside-link.js'));
  await symlink(path.join(outside, 'secret.txt'), path.join(webRoot, 'link-out.txt'));
  await symlink(outside, path.join(webRoot, 'dir-out'));
  await symlink('/etc/passwd', path.join(webRoot, 'passwd-link.txt'));
  await symlink('../../outside/secret.txt', path.join(webRoot, 'assets', 'relative-out.txt'));

  node = await startNode({ flags: ['--web-root', webRoot] });
  bare = await startNode();

  // nested: <nestedBase>/index.html is the web root's page, <nestedBase>/data the data dir.
  nestedBase = await mkdtemp(path.join(tmpdir(), 'converge-nested-'));
  const dataDir = path.join(nestedBase, 'data');
  await mkdir(dataDir);
  await writeFile(path.join(nestedBase, 'index.html'), INDEX);
  await symlink(path.join(dataDir, 'converge.db'), path.join(nestedBase, 'db-link.txt')); // inside the root, into the data dir
  nested = new ConvergeNode({ flags: ['--web-root', nestedBase], dataDir });
  await nested.start();
  // An uploaded blob, so that the data dir holds a file of a user's.
  await register(nested, 'uploader');
  const t = await login(nested, 'uploader');
  const up = await http(nested, 'POST', '/api/v1/files?name=a.txt', { token: t, body: Buffer.from('BLOB-BYTES-6a1f') });
  assert.equal(up.status, 201, up.text);
  const files = await listFiles(path.join(dataDir, 'files'));
  assert.ok(files.length > 0, 'the upload wrote a blob under data/files');
  blobRel = path.relative(nestedBase, files[0]);
});

after(async () => {
  await node?.stop({ removeData: true });
  await bare?.stop({ removeData: true });
  await nested?.stop({ removeData: true });
  if (base) await rm(base, { recursive: true, force: true });
  if (nestedBase) await rm(nestedBase, { recursive: true, force: true });
});

function assertStaticHeaders(r, what) {
  for (const [k, v] of Object.entries(STATIC_HEADERS))
    assert.equal(r.headers[k], v, `${what}: header ${k} (got ${JSON.stringify(r.headers[k])}; ${describeResponse(r)})`);
}

// ------------------------------------------------------------------ bad paths: 400 bad_request

// Each probe: [the request target as sent, byte for byte (latin1), why it is bad].
const BAD_PATHS = [
  ['//etc/passwd', 'empty segment: joined to the root it becomes absolute'],
  ['/%2Fetc/passwd', 'encoded slash'],
  ['/%2fetc/passwd', 'encoded slash, lower case'],
  ...[3, 4, 5, 6, 7, 8, 9, 10].map((n) => [`//proc/self/fd/${n}`, 'empty segment (the node\'s open files)']),
  ['/%2e%2e/%2e%2e/etc/passwd', 'encoded dot-dot segments'],
  ['/%2E%2E/%2E%2E/etc/passwd', 'encoded dot-dot segments, upper case'],
  ['/..%2f..%2fetc%2fpasswd', 'dot-dot with encoded slashes'],
  ['/x%2F..%2F..%2Fetc%2Fpasswd', 'encoded slashes inside a segment'],
  ['/assets/../../../etc/passwd', 'raw dot-dot segments'],
  ['/../../../../etc/passwd', 'raw dot-dot segments at the start'],
  ['/assets/../index.html', 'a dot-dot segment, even one that stays inside'],
  ['/assets/%2e%2e/index.html', 'an encoded dot-dot segment that stays inside'],
  ['/.%2e/etc/passwd', 'half-encoded dot-dot'],
  ['/%2e./etc/passwd', 'half-encoded dot-dot'],
  ['/..', 'dot-dot alone'],
  ['/%2e%2e', 'encoded dot-dot alone'],
  ['/./index.html', 'a dot segment'],
  ['/assets/./logo.png', 'a dot segment inside'],
  ['/.', 'dot alone'],
  ['/%2e/index.html', 'an encoded dot segment'],
  ['/a//b', 'empty segment in the middle'],
  ['/assets//logo.png', 'empty segment before an existing file'],
  ['/index.html%00.png', 'encoded NUL (the extension-confusion probe)'],
  ['/index.html%00', 'encoded NUL at the end'],
  ['/%00', 'encoded NUL alone'],
  ['/index.html\0.png', 'raw NUL'],
  ['/%5c..%5cetc%5cpasswd', 'encoded backslashes'],
  ['/%5C..%5C..%5Cetc%5Cpasswd', 'encoded backslashes, upper case'],
  ['/assets%5clogo.png', 'an encoded backslash inside a segment'],
  ['/\\..\\..\\etc\\passwd', 'raw backslashes'],
  ['/assets\\logo.png', 'a raw backslash inside a segment'],
];

describe('static route: bad paths answer 400 bad_request (web root set)', () => {
  for (const [target, why] of BAD_PATHS) {
    test(`GET ${JSON.stringify(target)} -> 400 (${why})`, async () => {
      const r = await rawRequest(node, 'GET', target);
      assertNotLeaked(r, target);
      assertHttpError(r, 400, 'bad_request');
      assert.ok(r.utf8Valid, 'the error body is UTF-8');
    });
  }

  test('HEAD and POST are checked the same way as GET (stricter reading: every method on a non-API path)', async () => {
    for (const target of ['//etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/index.html%00.png']) {
      const head = await rawRequest(node, 'HEAD', target);
      assert.equal(head.status, 400, `HEAD ${target}: ${describeResponse(head)}`);
      assert.equal(head.body.length, 0, 'HEAD: no body');
      const post = await rawRequest(node, 'POST', target, { body: '{}', headers: { 'Content-Type': 'application/json' } });
      assertNotLeaked(post, target);
      assertHttpError(post, 400, 'bad_request');
    }
  });
});

describe('static route: bad paths answer 400 bad_request without a web root too', () => {
  const probes = ['//etc/passwd', '/%2Fetc/passwd', '//proc/self/fd/3', '/%2e%2e/%2e%2e/etc/passwd', '/assets/../../../etc/passwd',
    '/index.html%00.png', '/index.html\0.png', '/%5c..%5cetc%5cpasswd', '/a\\b', '/a//b', '/./x'];
  for (const target of probes) {
    test(`GET ${JSON.stringify(target)} on a node without --web-root -> 400`, async () => {
      const r = await rawRequest(bare, 'GET', target);
      assertNotLeaked(r, target);
      assertHttpError(r, 400, 'bad_request');
    });
  }

  test('a good path on a node without --web-root is still 404 not_found', async () => {
    assertHttpError(await rawRequest(bare, 'GET', '/'), 404, 'not_found');
    assertHttpError(await rawRequest(bare, 'GET', '/.hidden'), 404, 'not_found');
  });
});

// ------------------------------------------------------------------ outside the root, hidden: 404

describe('static route: files outside the canonical root, hidden files: 404 not_found', () => {
  const cases = [
    ['/link-out.txt', 'a symlink to a file outside the root'],
    ['/dir-out/secret.txt', 'a file under a symlinked folder outside the root'],
    ['/dir-out/index.html', 'an index.html under a symlinked folder outside the root'],
    ['/passwd-link.txt', 'a symlink to /etc/passwd'],
    ['/assets/relative-out.txt', 'a relative symlink that climbs out'],
    ['/.hidden', 'a hidden file'],
    ['/.env', 'a hidden file (.env)'],
    ['/.git/config', 'a file under a hidden folder'],
    ['/assets/.secret.txt', 'a hidden file in a subfolder'],
    ['/%2ehidden', 'a hidden file, its dot encoded'],
  ];
  for (const [target, why] of cases) {
    test(`GET ${target} -> 404 (${why})`, async () => {
      const r = await rawRequest(node, 'GET', target);
      assertNotLeaked(r, target);
      assertHttpError(r, 404, 'not_found');
    });
  }

  test('a missing file with an extension is 404 (as before)', async () => {
    assertHttpError(await rawRequest(node, 'GET', '/nope.png'), 404, 'not_found');
  });

  test('a double-encoded dot-dot is decoded once: a plain unknown path, the page (SPA), never the target', async () => {
    const r = await rawRequest(node, 'GET', '/%252e%252e/%252e%252e/etc/passwd');
    assertNotLeaked(r, 'double-encoded');
    assert.equal(r.status, 200, describeResponse(r));
    assert.equal(r.text, INDEX);
  });
});

describe('static route: what is inside the root is served', () => {
  const cases = [
    ['/', INDEX, 'text/html; charset=utf-8'],
    ['/index.html', INDEX, 'text/html; charset=utf-8'],
    ['/app.js', APP_JS, 'text/javascript; charset=utf-8'],
    ['/style.css', STYLE, 'text/css; charset=utf-8'],
    ['/assets/logo.png', PNG, 'image/png'],
    ['/inside-link.js', APP_JS, 'text/javascript; charset=utf-8'],
    ['/chat/42', INDEX, 'text/html; charset=utf-8'],
    ['/settings', INDEX, 'text/html; charset=utf-8'],
  ];
  for (const [target, want, type] of cases) {
    test(`GET ${target} -> 200 ${type}`, async () => {
      const r = await rawRequest(node, 'GET', target);
      assert.equal(r.status, 200, describeResponse(r));
      assert.ok(r.body.equals(Buffer.from(want)), `body of ${target}: ${describeResponse(r)}`);
      assert.equal(r.headers['content-type'], type);
      assert.equal(Number(r.headers['content-length']), r.body.length);
    });
  }
});

// ------------------------------------------------------------------ the data dir

describe('static route: nothing of the data dir is served, even under the web root', () => {
  test('the web root (parent of the data dir) serves its own page', async () => {
    const r = await rawRequest(nested, 'GET', '/');
    assert.equal(r.status, 200, describeResponse(r));
    assert.equal(r.text, INDEX);
  });

  const probes = () => [
    '/data/converge.db',
    '/data/converge.db-wal',
    '/data/converge.db-shm',
    '/data/port',
    '/' + blobRel.split(path.sep).join('/'),
    '/db-link.txt',
  ];
  test('the database, its WAL and SHM, the port file, an uploaded blob, a symlink into the data dir: 404', async () => {
    const dataFiles = await readdir(nested.dataDir);
    assert.ok(dataFiles.includes('converge.db'), `data dir holds ${dataFiles}`);
    for (const target of probes()) {
      const r = await rawRequest(nested, 'GET', target);
      assertNotLeaked(r, target);
      assert.ok(!r.text.includes('BLOB-BYTES-6a1f'), `${target}: the blob's bytes came back`);
      assertHttpError(r, 404, 'not_found');
    }
  });

  test('a HEAD of a data dir file is 404 too', async () => {
    const r = await rawRequest(nested, 'HEAD', '/data/converge.db');
    assert.equal(r.status, 404, describeResponse(r));
  });
});

// Starts `converge serve` and expects it to refuse: resolves {code, stderr, started}. A node that
// starts (writes its port file) is killed at once by its PID.
async function expectStartRefused(dataDir, flags) {
  const portFile = path.join(dataDir, 'port');
  const proc = spawn(
    convergeBin,
    ['serve', '--listen', '127.0.0.1:0', '--mqtt-listen', '127.0.0.1:0', '--data-dir', dataDir, '--port-file', portFile, '--password-cost', 'min', '--log-level', 'warn', ...flags],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  proc.stdout.on('data', () => {});
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + 10000;
  let outcome = null;
  exited.then((r) => {
    outcome = r;
  });
  for (;;) {
    if (outcome) return { ...outcome, stderr, started: false };
    const started = await stat(portFile).then(() => true, () => false);
    if (started || Date.now() > deadline) {
      try {
        process.kill(proc.pid, 'SIGKILL');
      } catch {
        // gone already
      }
      const r = await exited;
      return { ...r, stderr, started };
    }
    await new Promise((res) => setTimeout(res, 20)); // polling for the port file, as node.mjs does
  }
}

describe('a web root inside the data dir is refused at start', () => {
  test('--web-root <data-dir>/web: exit code 2, a message on stderr', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'converge-webin-'));
    try {
      await mkdir(path.join(dataDir, 'web'));
      await writeFile(path.join(dataDir, 'web', 'index.html'), INDEX);
      const r = await expectStartRefused(dataDir, ['--web-root', path.join(dataDir, 'web')]);
      assert.equal(r.started, false, 'the node started (wrote its port file) with its web root inside its data dir');
      assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
      assert.ok(r.stderr.trim().length > 0, 'a message on stderr');
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  test('--web-root = the data dir itself is refused too (stricter reading of "inside")', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'converge-webin-'));
    try {
      await writeFile(path.join(dataDir, 'index.html'), INDEX);
      const r = await expectStartRefused(dataDir, ['--web-root', dataDir]);
      assert.equal(r.started, false, 'the node started with its web root equal to its data dir');
      assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
      assert.ok(r.stderr.trim().length > 0, 'a message on stderr');
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------ item 8: headers

describe('security headers', () => {
  for (const target of ['/', '/index.html', '/app.js', '/style.css', '/assets/logo.png', '/inside-link.js', '/chat/42']) {
    test(`GET ${target} carries nosniff, X-Frame-Options DENY, Referrer-Policy no-referrer and the CSP`, async () => {
      const r = await rawRequest(node, 'GET', target);
      assert.equal(r.status, 200, describeResponse(r));
      assertStaticHeaders(r, target);
    });
  }

  test('static 404 and 400 answers carry them too (stricter reading of "every static response")', async () => {
    for (const target of ['/.hidden', '/nope.png', '/link-out.txt', '//etc/passwd', '/index.html%00.png']) {
      const r = await rawRequest(node, 'GET', target);
      assert.ok(r.status === 400 || r.status === 404, `${target}: ${describeResponse(r)}`);
      assertStaticHeaders(r, target);
    }
  });

  test('HEAD / carries them', async () => {
    const r = await rawRequest(node, 'HEAD', '/');
    assert.equal(r.status, 200, describeResponse(r));
    assertStaticHeaders(r, 'HEAD /');
  });

  test('every API response carries X-Content-Type-Options: nosniff (200, 201, 400, 401, 404, 405)', async () => {
    await register(node, 'hdr');
    await register(node, 'hdr2');
    const t = await login(node, 'hdr');
    const cases = [
      ['GET', '/api/v1/me', { token: t }, 200],
      ['GET', '/api/v1/conversations', { token: t }, 200],
      ['POST', '/api/v1/conversations', { token: t, body: { type: 'group', members: ['hdr2'], name: 'h' } }, 201],
      ['GET', '/api/v1/me', {}, 401],
      ['GET', '/api/v1/nothing-here', { token: t }, 404],
      ['PUT', '/api/v1/conversations', { token: t, body: '' }, 405],
      ['POST', '/api/v1/login', { body: '{"user_id":', headers: { 'Content-Type': 'application/json' } }, 400],
      ['POST', '/api/v1/login', { body: { user_id: 'hdr', password: 'wrong', device_id: 'x' } }, 401],
    ];
    for (const [method, target, opts, status] of cases) {
      const r = await rawRequest(node, method, target, opts);
      assert.equal(r.status, status, `${method} ${target}: ${describeResponse(r)}`);
      assert.equal(r.headers['x-content-type-options'], 'nosniff', `${method} ${target} (${r.status}): no nosniff`);
    }
  });

  test('/healthz carries nosniff too (stricter reading: it is answered by the API side)', async () => {
    const r = await rawRequest(node, 'GET', '/healthz');
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
  });
});

// ------------------------------------------------------------------ item 7: HEAD

// GET and HEAD of `target`, each followed on the same socket by a pipelined GET /healthz.
async function headAndGet(n, target) {
  const get = await rawHttp(n, [{ method: 'GET', target }, { method: 'GET', target: '/healthz' }]);
  const head = await rawHttp(n, [{ method: 'HEAD', target }, { method: 'GET', target: '/healthz' }]);
  return { get, head };
}

function headersWithout(r, ...names) {
  const out = { ...r.headers };
  for (const n of ['date', ...names]) delete out[n];
  return out;
}

describe('HEAD on static files: the GET answer without its body', () => {
  for (const target of ['/', '/index.html', '/app.js', '/assets/logo.png', '/chat/42']) {
    test(`HEAD ${target}: same status and headers as GET, Content-Length of the GET body, no body bytes`, async () => {
      const { get, head } = await headAndGet(node, target);
      assert.equal(get.error, undefined, `GET: ${get.error}`);
      assert.equal(get.responses.length, 2, 'GET and the pipelined /healthz both answered');
      const g = get.responses[0];
      assert.equal(g.status, 200);
      assert.equal(head.error, undefined, `after the HEAD answer's headers the next bytes must be the next answer: ${head.error}`);
      assert.equal(head.responses.length, 2, `HEAD and the pipelined /healthz both answered (timed out: ${head.timedOut})`);
      const [h, next] = head.responses;
      assert.equal(h.status, g.status);
      assert.deepEqual(headersWithout(h), headersWithout(g), 'HEAD headers = GET headers');
      assert.equal(Number(h.headers['content-length']), g.body.length, 'Content-Length of the GET body');
      assert.equal(next.status, 200, 'the pipelined request right after the HEAD headers');
      assert.deepEqual(next.json, { status: 'ok' });
      assert.equal(head.extra.length, 0, 'nothing after the second answer');
    });
  }

  test('HEAD / alone (Connection: close): no body bytes follow the headers before the node closes', async () => {
    const res = await rawHttp(node, { method: 'HEAD', target: '/', headers: { Connection: 'close' } }, { waitClose: 2000 });
    assert.equal(res.responses.length, 1, res.error);
    assert.equal(res.responses[0].status, 200);
    assert.ok(Number(res.responses[0].headers['content-length']) > 0);
    assert.equal(res.extra.length, 0, `body bytes after a HEAD answer: ${JSON.stringify(res.extra.toString('latin1').slice(0, 80))}`);
  });

  test('HEAD on a static 404 has no body either', async () => {
    const res = await rawHttp(node, [{ method: 'HEAD', target: '/nope.png' }, { method: 'GET', target: '/healthz' }]);
    assert.equal(res.error, undefined, res.error);
    assert.equal(res.responses.length, 2);
    assert.equal(res.responses[0].status, 404);
    assert.equal(res.responses[1].status, 200);
  });
});

test('the fixtures are what the probes assume', async () => {
  // Guards against a probe "passing" because a fixture is missing.
  assert.equal(await readFile(path.join(webRoot, 'link-out.txt'), 'utf8'), SECRET);
  assert.equal(await readFile(path.join(webRoot, 'dir-out', 'secret.txt'), 'utf8'), SECRET);
  assert.equal(await readFile(path.join(webRoot, 'inside-link.js'), 'utf8'), APP_JS);
  assert.equal(await readFile(path.join(webRoot, 'assets', 'relative-out.txt'), 'utf8'), SECRET);
  assert.ok((await readFile('/etc/passwd', 'utf8')).includes('root:x:0:'));
});
