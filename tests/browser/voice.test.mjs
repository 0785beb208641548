// A voice note recorded with Chromium's fake microphone (MediaRecorder) and played by the other user.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import {
  openConversation,
  seeMessage,
  sendText,
  signUp,
  sleep,
  newDirectChat,
  until,
  withArtifacts,
  useWebNodeAndBrowser,
} from './helpers.mjs';

let node;
let browser;
let alice;
let bob;

const env = useWebNodeAndBrowser();
before(async () => {
  ({ node, browser } = await env.ready);
});

test('a recorded voice note is sent and the other user can play it', async (t) => {
  await withArtifacts(t, () => [alice, bob], async () => {
    [alice, bob] = await Promise.all([signUp(browser, node, 'Alice'), signUp(browser, node, 'Bob')]);
    await newDirectChat(alice.page, bob.id);
    await sendText(alice.page, 'listen to this');
    await openConversation(bob.page, 'Alice');
    await seeMessage(bob.page, 'listen to this');

    await alice.page.getByRole('button', { name: 'Record voice note' }).click();
    const stop = alice.page.getByRole('button', { name: 'Stop recording' });
    await stop.waitFor();
    assert.equal(await stop.getAttribute('aria-pressed'), 'true');
    await alice.page.getByRole('status', { name: 'Recording' }).getByText(/Recording/).waitFor();
    await sleep(1500);
    await stop.click();
    await alice.page.getByRole('button', { name: 'Record voice note' }).waitFor();

    const audio = bob.page.getByLabel('Voice note from Alice');
    await audio.waitFor({ timeout: 15000 });
    const info = await audio.evaluate(async (el) => {
      if (el.readyState < 1) await new Promise((resolve, reject) => {
        el.addEventListener('loadedmetadata', resolve, { once: true });
        el.addEventListener('error', () => reject(new Error('audio error ' + el.error?.code)), { once: true });
      });
      return { src: el.currentSrc, mime: null, duration: el.duration, readyState: el.readyState };
    });
    assert.ok(info.duration > 0, `duration ${info.duration}`);
    // It plays: time moves forward.
    await audio.evaluate((el) => el.play());
    await until(() => audio.evaluate((el) => el.currentTime > 0.2 && !el.error), { what: 'playback', timeout: 10000 });
    const r = await bob.page.evaluate(async (src) => {
      const res = await fetch(src);
      return { status: res.status, type: res.headers.get('content-type'), size: (await res.arrayBuffer()).byteLength };
    }, info.src);
    assert.equal(r.status, 200);
    assert.match(r.type, /^audio\//);
    assert.ok(r.size > 1000, `${r.size} bytes of audio`);
    // The sender sees it too, as a stored message (no longer pending).
    await until(async () => (await alice.page.locator('li.type-voice:not(.pending) audio').count()) === 1, { what: "alice's copy" });
  });
});
