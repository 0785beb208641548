// The web client in Chromium: two users chat both ways, a third joins a group and reads its
// history, images and files, events and broadcasts. One node and one browser for the file.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, test } from 'node:test';
import {
  ADMIN,
  api,
  makePng,
  messages,
  openConversation,
  openNewChat,
  seeMessage,
  sendText,
  signUp,
  newDirectChat,
  tokenOf,
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

test('two users chat both ways (bob on a phone-sized screen)', async (t) => {
  await withArtifacts(t, () => [alice, bob], async () => {
    [alice, bob] = await Promise.all([
      signUp(browser, node, 'Alice'),
      signUp(browser, node, 'Bob', { viewport: { width: 390, height: 844 } }),
    ]);
    await newDirectChat(alice.page, bob.id);
    await until(async () => (await alice.page.locator('#chat-title').textContent()) === 'Bob', { what: 'chat with Bob' });
    await sendText(alice.page, 'Hello Bob');
    await seeMessage(alice.page, 'Hello Bob');

    // Bob: the conversation appears with an unread badge and the last message.
    const entry = bob.page.getByRole('button', { name: 'Open conversation Alice' });
    await entry.waitFor();
    await until(async () => /1 unread/.test(await entry.getAttribute('aria-label')), { what: 'unread count' });
    assert.match(await entry.textContent(), /Hello Bob/);
    // Phone layout: the list fills the screen until a conversation is opened.
    assert.equal(await bob.page.getByRole('main', { name: 'Chat' }).isVisible(), false);
    await entry.click();
    await seeMessage(bob.page, 'Hello Bob');
    assert.equal(await bob.page.getByRole('complementary', { name: 'Conversations' }).isVisible(), false);

    await sendText(bob.page, 'Hi Alice!');
    await seeMessage(alice.page, 'Hi Alice!');
    await sendText(alice.page, 'How are you?');
    await seeMessage(bob.page, 'How are you?');
    const texts = await messages(alice.page).locator('li .text').allTextContents();
    assert.deepEqual(texts, ['Hello Bob', 'Hi Alice!', 'How are you?']);
    // Back to the list on the phone; what was read is not unread.
    await bob.page.getByRole('button', { name: 'Back to conversations' }).click();
    await entry.waitFor();
    assert.equal(await entry.getAttribute('aria-label'), 'Open conversation Alice');
    assert.match(await entry.textContent(), /How are you\?/);
  });
});

test('a third user joins a group and sees its history, paging upward', async (t) => {
  let carol;
  await withArtifacts(t, () => [alice, bob, carol], async () => {
    carol = await signUp(browser, node, 'Carol');
    await openNewChat(alice.page, 'New group');
    const group = alice.page.getByRole('form', { name: 'New group' });
    await group.getByLabel('Group name').fill('Team');
    await group.getByLabel('Members').fill(bob.id);
    await group.getByRole('button', { name: 'Create group' }).click();
    await until(async () => (await alice.page.locator('#chat-title').textContent()) === 'Team', { what: 'group open' });

    // 40 messages of history (through the API, for speed), then one from the UI.
    const token = await tokenOf(alice.page);
    const { conversations } = await api(node.baseUrl, 'GET', '/conversations', { token });
    const team = conversations.find((c) => c.name === 'Team');
    for (let i = 1; i <= 40; i++)
      await api(node.baseUrl, 'POST', `/conversations/${team.id}/messages`, {
        token,
        json: { type: 'text', body: `history ${i}`, client_msg_id: `hist-${i}` },
      });
    await seeMessage(alice.page, 'history 40');
    await openConversation(bob.page, 'Team');
    await seeMessage(bob.page, 'history 40');

    // Alice adds Carol from the members panel.
    await alice.page.getByRole('button', { name: 'Members' }).click();
    const add = alice.page.getByRole('form', { name: 'Add member' });
    await add.getByLabel('Add member by user id').fill(carol.id);
    await add.getByRole('button', { name: 'Add member' }).click();
    await alice.page.getByRole('list', { name: 'Members' }).getByText(carol.id).waitFor();
    await sendText(alice.page, 'Welcome Carol');
    await seeMessage(bob.page, 'Welcome Carol');

    await openConversation(carol.page, 'Team');
    await seeMessage(carol.page, 'Welcome Carol');
    await seeMessage(carol.page, 'history 40');
    // The first page is the newest 30; older ones come on demand.
    assert.equal(await messages(carol.page).getByText('history 1', { exact: true }).count(), 0);
    const earlier = carol.page.getByRole('button', { name: 'Load earlier messages' });
    while (await earlier.isVisible()) {
      await earlier.click();
      await sleepBrief();
    }
    await seeMessage(carol.page, 'history 1');
    const texts = await messages(carol.page).locator('li .text').allTextContents();
    assert.deepEqual(texts, [...Array.from({ length: 40 }, (_, i) => `history ${i + 1}`), 'Welcome Carol']);

    await sendText(carol.page, 'Thanks!');
    await seeMessage(alice.page, 'Thanks!');
    await seeMessage(bob.page, 'Thanks!');

    // Log out, log back in: the conversation is still there.
    await carol.page.getByRole('button', { name: 'Log out' }).click();
    const login = carol.page.getByRole('form', { name: 'Log in' });
    await login.waitFor();
    await login.getByLabel('User id').fill(carol.id);
    await login.getByLabel('Password').fill('wrong password');
    await login.getByRole('button', { name: 'Log in' }).click();
    await carol.page.getByRole('alert').getByText(/Log in failed/).waitFor();
    await login.getByLabel('Password').fill(carol.password);
    await login.getByRole('button', { name: 'Log in' }).click();
    await openConversation(carol.page, 'Team');
    await seeMessage(carol.page, 'Thanks!');
    await carol.context.close();
  });
});

const sleepBrief = () => new Promise((r) => setTimeout(r, 150));

test('an image is shown inline, a file is a download link', async (t) => {
  await withArtifacts(t, () => [alice, bob], async () => {
    await openConversation(alice.page, 'Bob');
    await openConversation(bob.page, 'Alice');
    await alice.page.getByLabel('Send image').setInputFiles({ name: 'red.png', mimeType: 'image/png', buffer: makePng(24, 16) });
    const img = bob.page.getByRole('img', { name: 'Image: red.png' });
    await img.waitFor({ timeout: 15000 });
    const size = await until(
      () => img.evaluate((el) => (el.complete && el.naturalWidth > 0 ? [el.naturalWidth, el.naturalHeight] : null)),
      { what: 'image decoded' },
    );
    assert.deepEqual(size, [24, 16]);
    // The sender's own copy too.
    const mine = alice.page.getByRole('img', { name: 'Image: red.png' });
    await until(() => mine.evaluate((el) => el.naturalWidth > 0), { what: "alice's image" });

    await alice.page.getByLabel('Send file').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('meeting at noon\n') });
    const link = bob.page.getByRole('link', { name: /notes\.txt/ });
    await link.waitFor();
    // Fetched (with the Authorization header) when first clicked, then saved from a blob: URL.
    const [download] = await Promise.all([bob.page.waitForEvent('download', { timeout: 15000 }), link.click()]);
    assert.equal(download.suggestedFilename(), 'notes.txt');
    assert.equal(readFileSync(await download.path(), 'utf8'), 'meeting at noon\n');
    assert.equal(await link.getAttribute('download'), 'notes.txt');
    assert.match(await link.getAttribute('href'), /^blob:/);
    const body = await link.evaluate(async (a) => (await fetch(a.href)).text());
    assert.equal(body, 'meeting at noon\n');
    // The conversation list shows the last message.
    const entry = alice.page.getByRole('button', { name: 'Open conversation Bob' });
    await until(async () => /notes\.txt/.test(await entry.textContent()), { what: 'preview' });
  });
});

test('events and broadcasts show as notices', async (t) => {
  await withArtifacts(t, () => [alice, bob], async () => {
    const admin = await api(node.baseUrl, 'POST', '/login', { json: { ...ADMIN, device_id: 'admin' } });
    await api(node.baseUrl, 'POST', '/admin/broadcast', { token: admin.token, json: { data: { text: 'Maintenance tonight' } } });
    await api(node.baseUrl, 'POST', '/admin/events', { token: admin.token, json: { user_id: bob.id, data: { text: 'Your badge is ready' } } });
    for (const u of [alice, bob]) await u.page.getByRole('log', { name: 'Notices' }).getByText('Maintenance tonight').waitFor();
    const bobNotices = bob.page.getByRole('log', { name: 'Notices' });
    await bobNotices.getByText('Your badge is ready').waitFor();
    assert.equal(await alice.page.getByRole('log', { name: 'Notices' }).getByText('Your badge is ready').count(), 0);
    await bobNotices.getByRole('button', { name: 'Dismiss notice' }).first().click();
    await until(async () => (await bobNotices.getByText('Maintenance tonight').count()) === 0, { what: 'dismissed' });
  });
});
