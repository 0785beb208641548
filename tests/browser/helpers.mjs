import { after, before } from 'node:test';
// Shared by the browser tests: a private node serving web/dist, Chromium through playwright-core,
// users signed up through the UI, polling, and screenshots on failure.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { api, repoRoot, startNode } from '../../clients/js/test-support/node.mjs';

export { api };
const here = dirname(fileURLToPath(import.meta.url));
export const artifacts = join(here, '.artifacts');
// CONVERGE_WEB_ROOT: another build of the client (e.g. an older one, to see a test fail on it).
export const webRoot = resolve(process.env.CONVERGE_WEB_ROOT || resolve(repoRoot, 'web/dist'));
export const ADMIN = { user_id: 'root', password: 'root-password-1' };
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A node for one test file: fast heartbeats (so dead connections are noticed in seconds), an admin. */
export function startWebNode() {
  return startNode({
    webRoot,
    env: {
      CONVERGE_HEARTBEAT_INTERVAL_MS: '1000',
      CONVERGE_HEARTBEAT_TIMEOUT_MS: '5000',
      CONVERGE_ADMIN_USER: ADMIN.user_id,
      CONVERGE_ADMIN_PASSWORD: ADMIN.password,
    },
  });
}

/**
 * The node and browser of one test file: started in a before hook, stopped in an after hook.
 * Other before hooks must `await env.ready` (the runner does not wait for one file-level hook
 * before starting the next).
 */
export function useWebNodeAndBrowser() {
  const env = {};
  env.ready = new Promise((resolve, reject) => {
    before(async () => {
      try {
        [env.node, env.browser] = await Promise.all([startWebNode(), launchBrowser()]);
        resolve(env);
      } catch (e) {
        reject(e);
        throw e;
      }
    });
  });
  after(async () => {
    await env.browser?.close();
    await env.node?.stop();
  });
  return env;
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
}

/** Polls fn until it returns a truthy value. */
export async function until(fn, { timeout = 15000, what = 'condition', interval = 50 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last?.message ?? last})`);
    await sleep(interval);
  }
}

let userSeq = 0;
/** A unique user id for this run. */
export function uid(name) {
  return `${name}${Date.now().toString(36).slice(-4)}${++userSeq}`;
}

/**
 * A user in their own browser context, signed up through the UI.
 * `prepare(context, page)` runs before the page first loads (routes, init scripts, listeners).
 * @returns {{id, name, password, context, page}}
 */
export async function signUp(browser, node, name, { viewport = { width: 1100, height: 800 }, id = uid(name.toLowerCase()), prepare } = {}) {
  const context = await browser.newContext({ viewport, baseURL: node.baseUrl });
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  await prepare?.(context, page);
  await page.goto('/');
  const form = page.getByRole('form', { name: 'Sign up' });
  await form.getByLabel('User id').fill(id);
  await form.getByLabel('Display name').fill(name);
  await form.getByLabel('Password').fill('password-' + id);
  await form.getByRole('button', { name: 'Sign up' }).click();
  await waitOnline(page);
  return { id, name, password: 'password-' + id, context, page, logs };
}

export const connection = (page) => page.getByRole('status', { name: 'Connection' });

export async function waitOnline(page, timeout = 15000) {
  await until(async () => (await connection(page).textContent()) === 'Online', { timeout, what: 'Online' });
}

export const messages = (page) => page.getByRole('log', { name: 'Messages' });

/** Waits until the open conversation shows a message with this text. */
export async function seeMessage(page, text, timeout = 15000) {
  await messages(page).getByText(text, { exact: true }).first().waitFor({ state: 'visible', timeout });
}

export async function sendText(page, text) {
  await page.getByRole('textbox', { name: 'Message', exact: true }).fill(text);
  await page.getByRole('button', { name: 'Send', exact: true }).click();
}

export async function openConversation(page, title, timeout = 15000) {
  // On a phone-sized screen a conversation covers the list: go back first.
  const back = page.getByRole('button', { name: 'Back to conversations' });
  if (await back.isVisible()) await back.click();
  const btn = page.getByRole('button', { name: `Open conversation ${title}` });
  await btn.first().waitFor({ state: 'visible', timeout });
  await btn.first().click();
  await until(async () => (await page.locator('#chat-title').textContent()) === title, { what: `chat ${title} open` });
}

export async function startDirectChat(page, otherId) {
  const form = page.getByRole('form', { name: 'New direct chat' });
  await form.getByLabel('Chat with user id').fill(otherId);
  await form.getByRole('button', { name: 'Start chat' }).click();
}

/** The token the page logged in with (for API calls on the user's behalf). */
export async function tokenOf(page) {
  return page.evaluate(() => JSON.parse(localStorage.getItem('converge.session')).token);
}

/** Runs a test body; on failure saves a screenshot of every page and prints their console. */
export async function withArtifacts(t, users, fn) {
  try {
    await fn();
  } catch (err) {
    mkdirSync(artifacts, { recursive: true });
    const base = t.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
    for (const u of users()) {
      if (!u?.page) continue;
      try {
        await u.page.screenshot({ path: join(artifacts, `${base}-${u.name}.png`), fullPage: true });
        writeFileSync(join(artifacts, `${base}-${u.name}.log`), (u.logs || []).join('\n'));
      } catch {}
    }
    throw err;
  }
}

// A small valid PNG (solid colour) without any image library.
function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
export function makePng(width = 24, height = 16, [r, g, b] = [220, 40, 60]) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) raw.set([r, g, b], y * (width * 3 + 1) + 1 + x * 3);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

// The web client's "New chat" dialog (issue 13) replaced the sidebar's create forms; the forms
// live on in it ("New direct chat", "New group"), so startDirectChat works with it open.

/** Opens the New chat dialog on one of its tabs ('Direct chat', 'New group', 'Join a group'). */
export async function openNewChat(page, tab = 'Direct chat') {
  const dialog = page.getByRole('dialog', { name: 'New chat' });
  if (!(await dialog.isVisible())) await page.getByRole('button', { name: 'New chat', exact: true }).click();
  await dialog.getByRole('tab', { name: tab }).click();
  return dialog;
}

/** A direct chat with a user id, through the New chat dialog. */
export async function newDirectChat(page, otherId) {
  await openNewChat(page, 'Direct chat');
  await startDirectChat(page, otherId);
}

/** A group with typed-out member ids, through the New chat dialog; it opens when created. */
export async function newGroup(page, name, memberIds) {
  const dialog = await openNewChat(page, 'New group');
  const form = dialog.getByRole('form', { name: 'New group' });
  await form.getByLabel('Group name').fill(name);
  await form.getByLabel('Members').fill(memberIds.join(', '));
  await form.getByRole('button', { name: 'Create group' }).click();
}
