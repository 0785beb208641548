// The web client when the network goes away: a page cut off (browser offline) shows it is
// reconnecting, queues what is typed, and on return receives what it missed; the same after the
// node itself restarts.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import {
  connection,
  messages,
  openConversation,
  seeMessage,
  sendText,
  signUp,
  sleep,
  newDirectChat,
  until,
  waitOnline,
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
  [alice, bob] = await Promise.all([signUp(browser, node, 'Alice'), signUp(browser, node, 'Bob')]);
  await newDirectChat(alice.page, bob.id);
  await sendText(alice.page, 'first');
  await openConversation(bob.page, 'Alice');
  await seeMessage(bob.page, 'first');
});

const pendingStatus = (page, text) => messages(page).locator('li.pending', { hasText: text }).locator('.status');

test('a page that goes offline reconnects and gets what it missed; its queued message goes out', async (t) => {
  await withArtifacts(t, () => [alice, bob], async () => {
    await bob.context.setOffline(true);
    await until(async () => (await connection(bob.page).textContent()) === 'Reconnecting…', { what: 'Reconnecting…' });

    for (let i = 1; i <= 3; i++) await sendText(alice.page, `missed ${i}`);
    await seeMessage(alice.page, 'missed 3');
    // Typed while offline: shown as waiting, sent on return.
    await sendText(bob.page, 'typed while offline');
    await until(async () => (await pendingStatus(bob.page, 'typed while offline').textContent()) === 'Waiting for connection…', {
      what: 'pending status',
    });
    await sleep(1500); // a few failed reconnect attempts
    assert.equal(await messages(bob.page).getByText('missed 1', { exact: true }).count(), 0);

    await bob.context.setOffline(false);
    await waitOnline(bob.page);
    for (let i = 1; i <= 3; i++) await seeMessage(bob.page, `missed ${i}`);
    await seeMessage(alice.page, 'typed while offline');
    await until(async () => (await messages(bob.page).locator('li.pending').count()) === 0, { what: 'nothing pending' });
    const bobTexts = await messages(bob.page).locator('li .text').allTextContents();
    assert.deepEqual(bobTexts, ['first', 'missed 1', 'missed 2', 'missed 3', 'typed while offline']);
    const aliceTexts = await messages(alice.page).locator('li .text').allTextContents();
    assert.deepEqual(aliceTexts, bobTexts);
  });
});

test('both pages ride out a node restart; what was sent during it is delivered', async (t) => {
  await withArtifacts(t, () => [alice, bob], async () => {
    await node.stop({ keepData: true });
    await until(async () => (await connection(alice.page).textContent()) === 'Reconnecting…', { what: 'alice reconnecting' });
    await until(async () => (await connection(bob.page).textContent()) === 'Reconnecting…', { what: 'bob reconnecting' });
    await sendText(alice.page, 'sent during the restart');
    await sleep(500);
    await node.start();
    await Promise.all([waitOnline(alice.page, 20000), waitOnline(bob.page, 20000)]);
    await seeMessage(bob.page, 'sent during the restart');
    await sendText(bob.page, 'back after the restart');
    await seeMessage(alice.page, 'back after the restart');
    const texts = await messages(bob.page).locator('li .text').allTextContents();
    assert.equal(texts.filter((x) => x === 'sent during the restart').length, 1, 'once');
    // A reload of the page keeps the session (same device) and shows the conversation again.
    await bob.page.reload();
    await waitOnline(bob.page);
    await openConversation(bob.page, 'Alice');
    await seeMessage(bob.page, 'back after the restart');
  });
});
