// The web client follows membership changes as they happen, with no reload and no polling: a
// group someone puts you in appears in your list within moments, changes to it (members) show,
// and when you are removed it leaves the list and the open view says you are no longer a member;
// added back, it returns with what was said meanwhile.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import {
  api,
  messages,
  openConversation,
  openNewChat,
  seeMessage,
  sendText,
  signUp,
  tokenOf,
  uid,
  until,
  withArtifacts,
  useWebNodeAndBrowser,
} from './helpers.mjs';

// Well under the 15 s the web client used to poll the conversation list at.
const PROMPTLY = 5000;

let node;
let browser;
let alice;
let bob;

const env = useWebNodeAndBrowser();
before(async () => {
  ({ node, browser } = await env.ready);
});

const entry = (page, title) => page.getByRole('button', { name: new RegExp(`^Open conversation ${title}(,|$)`) });
const membership = (page) => page.getByRole('status', { name: 'Membership' });

test('a group appears in the list of a member whose page is open, then goes when they are removed', async (t) => {
  await withArtifacts(t, () => [alice, bob], async () => {
    [alice, bob] = await Promise.all([signUp(browser, node, 'Alice'), signUp(browser, node, 'Bob')]);
    // Marks this page load: still there at the end means nothing was reloaded.
    await bob.page.evaluate(() => (window.__sameLoad = true));
    assert.equal(await entry(bob.page, 'Crew').count(), 0);

    // Alice creates a group with Bob; no message is sent.
    await openNewChat(alice.page, 'New group');
    const group = alice.page.getByRole('form', { name: 'New group' });
    await group.getByLabel('Group name').fill('Crew');
    await group.getByLabel('Members').fill(bob.id);
    const created = Date.now();
    await group.getByRole('button', { name: 'Create group' }).click();
    await entry(bob.page, 'Crew').waitFor({ state: 'visible', timeout: PROMPTLY });
    const appeared = Date.now() - created;
    assert.ok(appeared < PROMPTLY, `appeared after ${appeared} ms`);
    assert.equal(await entry(bob.page, 'Crew').getAttribute('aria-label'), 'Open conversation Crew', 'nothing unread yet');

    // A message: the entry shows it as unread.
    await until(async () => (await alice.page.locator('#chat-title').textContent()) === 'Crew', { what: 'group open for alice' });
    await sendText(alice.page, 'hello crew');
    await until(async () => /1 unread/.test(await entry(bob.page, 'Crew').getAttribute('aria-label')), {
      timeout: PROMPTLY,
      what: 'unread count',
    });
    assert.match(await entry(bob.page, 'Crew').textContent(), /hello crew/);
    await openConversation(bob.page, 'Crew');
    await seeMessage(bob.page, 'hello crew');

    // Alice adds Carol: Bob's member list follows.
    const carol = uid('carol');
    await api(node.baseUrl, 'POST', '/users', { json: { user_id: carol, name: 'Carol', password: 'password-' + carol } });
    await alice.page.getByRole('button', { name: 'Members' }).click();
    const add = alice.page.getByRole('form', { name: 'Add member' });
    await add.getByLabel('Add member by user id').fill(carol);
    await add.getByRole('button', { name: 'Add member' }).click();
    await bob.page.getByRole('button', { name: 'Members' }).click();
    await bob.page.getByRole('list', { name: 'Members' }).getByText(carol, { exact: true }).waitFor({ timeout: PROMPTLY });

    // Alice (the owner) removes Bob: the group leaves his list; the open view says why.
    const token = await tokenOf(alice.page);
    const { conversations } = await api(node.baseUrl, 'GET', '/conversations', { token });
    const crew = conversations.find((c) => c.name === 'Crew');
    const removed = Date.now();
    await api(node.baseUrl, 'DELETE', `/conversations/${crew.id}/members/${bob.id}`, { token });
    await until(async () => (await entry(bob.page, 'Crew').count()) === 0, { timeout: PROMPTLY, what: 'Crew gone from the list' });
    assert.ok(Date.now() - removed < PROMPTLY);
    await membership(bob.page).getByText('You are no longer a member of this conversation.').waitFor({ timeout: PROMPTLY });
    assert.equal(await bob.page.getByRole('form', { name: 'Send a message' }).isVisible(), false, 'no composer');
    assert.equal(await bob.page.getByRole('button', { name: 'Members' }).isVisible(), false);
    await seeMessage(bob.page, 'hello crew'); // what was loaded stays readable

    // Said while he is out; then Alice adds him back and says hello.
    await api(node.baseUrl, 'POST', `/conversations/${crew.id}/messages`, {
      token,
      json: { type: 'text', body: 'while you were out', client_msg_id: 'crew-out-1' },
    });
    await api(node.baseUrl, 'POST', `/conversations/${crew.id}/members`, { token, json: { members: [bob.id] } });
    await entry(bob.page, 'Crew').waitFor({ state: 'visible', timeout: PROMPTLY });
    await until(async () => await membership(bob.page).isHidden(), { timeout: PROMPTLY, what: 'membership notice gone' });
    await bob.page.getByRole('form', { name: 'Send a message' }).waitFor({ state: 'visible', timeout: PROMPTLY });
    await sendText(alice.page, 'welcome back');
    await seeMessage(bob.page, 'welcome back', PROMPTLY);
    await seeMessage(bob.page, 'while you were out', PROMPTLY);
    const texts = await messages(bob.page).locator('li .text').allTextContents();
    assert.deepEqual(texts, ['hello crew', 'while you were out', 'welcome back']);
    await sendText(bob.page, 'glad to be back');
    await seeMessage(alice.page, 'glad to be back');

    assert.equal(await bob.page.evaluate(() => window.__sameLoad), true, 'the page was not reloaded');
  });
});

test('added to a group with history: it appears at once, its messages count as unread and show when opened', async (t) => {
  await withArtifacts(t, () => [alice, bob], async () => {
    const token = await tokenOf(alice.page);
    const dave = uid('dave');
    await api(node.baseUrl, 'POST', '/users', { json: { user_id: dave, name: 'Dave', password: 'password-' + dave } });
    const deck = await api(node.baseUrl, 'POST', '/conversations', { token, json: { type: 'group', name: 'Deck', members: [dave] } });
    for (let i = 1; i <= 3; i++)
      await api(node.baseUrl, 'POST', `/conversations/${deck.id}/messages`, {
        token,
        json: { type: 'text', body: `deck ${i}`, client_msg_id: `deck-${i}` },
      });
    assert.equal(await entry(bob.page, 'Deck').count(), 0);
    await api(node.baseUrl, 'POST', `/conversations/${deck.id}/members`, { token, json: { members: [bob.id] } });
    await entry(bob.page, 'Deck').waitFor({ state: 'visible', timeout: PROMPTLY });
    // The first message after the join at the latest, everything said in it is there, unread.
    await api(node.baseUrl, 'POST', `/conversations/${deck.id}/messages`, {
      token,
      json: { type: 'text', body: 'hi bob', client_msg_id: 'deck-4' },
    });
    await until(async () => /, 4 unread$/.test(await entry(bob.page, 'Deck').getAttribute('aria-label')), {
      timeout: PROMPTLY,
      what: '4 unread',
    });
    assert.match(await entry(bob.page, 'Deck').textContent(), /hi bob/);
    await openConversation(bob.page, 'Deck');
    await seeMessage(bob.page, 'hi bob');
    const texts = await messages(bob.page).locator('li .text').allTextContents();
    assert.deepEqual(texts, ['deck 1', 'deck 2', 'deck 3', 'hi bob']);
    assert.equal(await entry(bob.page, 'Deck').getAttribute('aria-label'), 'Open conversation Deck', 'read once open');
    assert.equal(await bob.page.evaluate(() => window.__sameLoad), true, 'the page was not reloaded');
  });
});
