// The web client under the node's security headers (issue 10, item 8): a strict
// Content-Security-Policy the built client must satisfy with zero violations, and files shown
// and downloaded through blob: URLs fetched with the Authorization header, so the session token
// is in no URL, no attribute of the page, no navigation, request or WebSocket address.
//
// The policy is the node's own when it sends one. When it does not (yet), every static file the
// pages load gets the headers through Playwright's context.route, so the client is still tested
// under them; the test of the node's headers is then marked todo and says so.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, test } from 'node:test';
import {
  makePng,
  openConversation,
  seeMessage,
  sendText,
  signUp,
  sleep,
  newDirectChat,
  tokenOf,
  until,
  waitOnline,
  withArtifacts,
  useWebNodeAndBrowser,
} from './helpers.mjs';

const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; " +
  "connect-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const SECURITY_HEADERS = {
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

let node;
let browser;
let alice;
let bob;
let missing = {}; // the security headers the node does not send on `/`: injected by route
let injected = 0; // static responses the route added headers to

const env = useWebNodeAndBrowser();
before(async () => {
  ({ node, browser } = await env.ready);
  const res = await fetch(`${node.baseUrl}/`);
  await res.arrayBuffer();
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) if (!res.headers.has(k)) missing[k] = v;
});

/** Static files of the node (not the API, not the WebSocket). */
function isStatic(url) {
  const u = new URL(url);
  return u.origin === node.baseUrl && !u.pathname.startsWith('/api/') && u.pathname !== '/ws' && u.pathname !== '/healthz';
}

/**
 * Before the first load: the headers the node lacks are added to static responses; CSP
 * violations (the DOM event, in every frame) and console messages are recorded, and so is every
 * URL the page navigates to, requests, or opens a WebSocket to.
 */
function watch(record) {
  return async (context, page) => {
    if (Object.keys(missing).length) {
      // A document fulfilled by the route has no address Chromium can see, so its Local
      // Network Access checks would treat the page as public and block its WebSocket to
      // 127.0.0.1 (net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS). The page really comes from
      // that loopback address: say so. (Not needed, and not granted, when the node's own
      // headers are tested.)
      await context.grantPermissions(['local-network-access'], { origin: node.baseUrl });
      await context.route(
        (url) => isStatic(url),
        async (route) => {
          const response = await route.fetch();
          injected++;
          await route.fulfill({ response, headers: { ...response.headers(), ...missing } });
        },
      );
    }
    await context.addInitScript(() => {
      window.__cspViolations = [];
      window.addEventListener(
        'securitypolicyviolation',
        (e) => window.__cspViolations.push(`${e.effectiveDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber} ${e.sample || ''}`),
        true,
      );
    });
    record.console = [];
    record.urls = [];
    page.on('console', (m) => record.console.push(`[${m.type()}] ${m.text()}`));
    page.on('framenavigated', (f) => record.urls.push(`navigate ${f.url()}`));
    page.on('request', (r) => record.urls.push(`${r.method()} ${r.url()}`));
    page.on('websocket', (ws) => record.urls.push(`websocket ${ws.url()}`));
  };
}

async function secureUser(name, opts = {}) {
  const record = {};
  const u = await signUp(browser, node, name, { ...opts, prepare: watch(record) });
  return Object.assign(u, record);
}

const violations = (page) => page.evaluate(() => window.__cspViolations);
const cspConsole = (u) => u.console.filter((l) => /content security policy|refused to (load|apply|execute|connect|evaluate|frame)/i.test(l));

/** Every attribute of every element (and the page's address) that carries a token. */
async function tokenInDom(page, token) {
  return page.evaluate((token) => {
    const bad = [];
    const hit = (s) => /[?&]token=/i.test(s) || s.includes(token) || s.includes(encodeURIComponent(token));
    for (const el of document.querySelectorAll('*'))
      for (const a of el.attributes) if (hit(a.value)) bad.push(`<${el.localName} ${a.name}="${a.value}">`);
    for (const el of document.querySelectorAll('img, audio, a'))
      for (const prop of ['src', 'currentSrc', 'href']) if (typeof el[prop] === 'string' && hit(el[prop])) bad.push(`${el.localName}.${prop}=${el[prop]}`);
    if (hit(location.href)) bad.push(`location ${location.href}`);
    if (hit(document.documentElement.outerHTML)) bad.push('page markup');
    return bad;
  }, token);
}

function assertNoTokenInUrls(u, token) {
  const bad = u.urls.filter((x) => /[?&]token=/i.test(x) || x.includes(token) || x.includes(encodeURIComponent(token)));
  assert.deepEqual(bad, [], `URLs with a token (${u.name})`);
  assert.ok(u.urls.some((x) => x.startsWith('websocket ')), `${u.name} opened a WebSocket: ${u.urls.join('\n')}`);
}

test("the node sends the CSP and the other security headers on / and on the client's assets", async (t) => {
  const names = Object.keys(missing);
  if (names.length) {
    t.todo(
      `the node does not send ${names.join(', ')} on / yet (issue 10, item 8: the C++ side); ` +
        `the browser tests below inject them with context.route`,
    );
    return;
  }
  const html = await (await fetch(`${node.baseUrl}/`)).text();
  const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]);
  assert.ok(assets.length >= 2, `assets in index.html: ${assets}`);
  for (const path of ['/', '/index.html', ...assets]) {
    const res = await fetch(node.baseUrl + path);
    await res.arrayBuffer();
    assert.equal(res.status, 200, path);
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) assert.equal(res.headers.get(k), v, `${k} on ${path}`);
  }
});

test('under the CSP: images, voice notes and files come through blob: URLs; no token anywhere; zero violations', async (t) => {
  await withArtifacts(t, () => [alice, bob], async () => {
    [alice, bob] = await Promise.all([secureUser('Alice'), secureUser('Bob')]);
    // Online means the WebSocket to the same origin was allowed by connect-src 'self'.
    await newDirectChat(alice.page, bob.id);
    await sendText(alice.page, 'secure hello');
    await openConversation(bob.page, 'Alice');
    await seeMessage(bob.page, 'secure hello');

    // An image: the receiver fetches it with the header and shows it from a blob: URL.
    await alice.page.getByLabel('Send image').setInputFiles({ name: 'red.png', mimeType: 'image/png', buffer: makePng(24, 16) });
    for (const u of [bob, alice]) {
      const img = u.page.getByRole('img', { name: 'Image: red.png' });
      await img.waitFor({ timeout: 15000 });
      const shown = await until(
        () => img.evaluate((el) => (el.complete && el.naturalWidth > 0 ? { w: el.naturalWidth, src: el.currentSrc, href: el.closest('a').href } : null)),
        { what: `${u.name}'s image decoded` },
      );
      assert.equal(shown.w, 24);
      assert.match(shown.src, /^blob:http:\/\/127\.0\.0\.1:\d+\//, `${u.name}'s image src`);
      assert.equal(shown.href, shown.src);
    }

    // A file: a link without href until clicked; then fetched, saved from a blob: URL.
    await alice.page.getByLabel('Send file').setInputFiles({ name: 'plan.txt', mimeType: 'text/plain', buffer: Buffer.from('the plan\n') });
    const link = bob.page.getByRole('link', { name: /plan\.txt/ });
    await link.waitFor();
    assert.equal(await link.getAttribute('href'), null, 'no href before it is used');
    assert.equal(await link.getAttribute('download'), null);
    const [download] = await Promise.all([bob.page.waitForEvent('download', { timeout: 15000 }), link.click()]);
    assert.equal(download.suggestedFilename(), 'plan.txt');
    assert.equal(readFileSync(await download.path(), 'utf8'), 'the plan\n');
    assert.match(await link.getAttribute('href'), /^blob:/);
    assert.equal(await link.getAttribute('download'), 'plan.txt');

    // A voice note (fake microphone): played from a blob: URL under media-src.
    await alice.page.getByRole('button', { name: 'Record voice note' }).click();
    await alice.page.getByRole('button', { name: 'Stop recording' }).waitFor();
    await sleep(1200);
    await alice.page.getByRole('button', { name: 'Stop recording' }).click();
    const audio = bob.page.getByLabel('Voice note from Alice');
    await audio.waitFor({ timeout: 15000 });
    const voice = await until(() => audio.evaluate((el) => (el.readyState >= 1 ? { src: el.currentSrc, duration: el.duration } : null)), {
      what: 'voice note metadata',
    });
    assert.match(voice.src, /^blob:/);
    assert.ok(voice.duration > 0, `duration ${voice.duration}`);

    // After a reload, history brings them again: fetched, not from our own upload.
    const reload = await bob.page.reload();
    const headers = await reload.allHeaders();
    assert.equal(headers['content-security-policy'], CSP, 'the document the browser got carries the policy');
    assert.equal(headers['x-frame-options'], 'DENY');
    await waitOnline(bob.page);
    await openConversation(bob.page, 'Alice');
    const again = bob.page.getByRole('img', { name: 'Image: red.png' });
    const src = await until(() => again.evaluate((el) => el.naturalWidth > 0 && el.currentSrc), { what: 'image after reload' });
    assert.match(src, /^blob:/);

    for (const u of [alice, bob]) {
      const token = await tokenOf(u.page);
      assert.deepEqual(await tokenInDom(u.page, token), [], `token in ${u.name}'s page`);
      assertNoTokenInUrls(u, token);
      assert.deepEqual(await violations(u.page), [], `CSP violations in ${u.name}'s page`);
      assert.deepEqual(cspConsole(u), [], `CSP errors in ${u.name}'s console`);
    }

    // The policy is in force (and the listener hears it): markup-made styles are refused.
    await bob.page.evaluate(() => {
      const d = document.createElement('div');
      d.innerHTML = '<span style="color: red">x</span>';
      document.body.append(d);
    });
    const seen = await until(async () => (await violations(bob.page)).length && violations(bob.page), { what: 'a deliberate violation' });
    assert.equal(seen.length, 1, seen.join('\n'));
    assert.match(seen[0], /^style-src-attr/);
    t.diagnostic(Object.keys(missing).length ? `headers injected by route into ${injected} static responses` : 'headers sent by the node');
  });
});

test('the page cannot be framed (frame-ancestors / X-Frame-Options)', async (t) => {
  await withArtifacts(t, () => [], async () => {
    const record = {};
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await watch(record)(context, page);
      await page.setContent(`<iframe src="${node.baseUrl}/" title="framed"></iframe>`);
      await sleep(1000);
      const frame = page.frames().find((f) => f !== page.mainFrame());
      assert.ok(frame, 'the iframe exists');
      const appInside = await frame.evaluate(() => !!document.getElementById('login-form')).catch(() => false);
      assert.equal(appInside, false, `the client loaded inside a frame (${frame.url()})`);
      assert.ok(record.console.some((l) => /frame-ancestors|X-Frame-Options/i.test(l)), record.console.join('\n'));
    } finally {
      await context.close();
    }
  });
});
