// Groups in the web client (issue 13), in Chromium: the New chat dialog with the user
// directory, system messages in a group's history, a group's settings and roles, an
// application approved by the owner in another browser context, an invitation accepted from the
// notification list, a friend request, a muted group across a reload, @ mentions.
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
  waitOnline,
  withArtifacts,
  useWebNodeAndBrowser,
} from './helpers.mjs';

let node;
let browser;
let alice;
let bob;
let carol;
let dave;

const env = useWebNodeAndBrowser();
before(async () => {
  ({ node, browser } = await env.ready);
  // Display names no other user of this node has, so that a search by name finds one person.
  [alice, bob, carol, dave] = await Promise.all([
    signUp(browser, node, 'Alice Archer', { id: uid('alice') }),
    signUp(browser, node, 'Bob Builder', { id: uid('bob') }),
    signUp(browser, node, 'Carol Climber', { id: uid('carol') }),
    signUp(browser, node, 'Dave Diver', { id: uid('dave') }),
  ]);
});
const everyone = () => [alice, bob, carol, dave];

const entry = (page, title) => page.getByRole('button', { name: new RegExp(`^Open conversation ${title}(,|$)`) });
const chatTitle = (page) => page.locator('#chat-title').textContent();
const systemLines = (page) => messages(page).locator('li.system .sys-text').allTextContents();
const notifications = (page) => page.getByRole('button', { name: /^Notifications/ });
const notificationList = (page) => page.getByRole('region', { name: 'Notification list' });

async function openPanel(page) {
  const toggle = page.getByRole('button', { name: 'Members', exact: true });
  if ((await toggle.getAttribute('aria-expanded')) !== 'true') await toggle.click();
}

async function openNotifications(page) {
  const toggle = notifications(page);
  if ((await toggle.getAttribute('aria-expanded')) !== 'true') await toggle.click();
  return notificationList(page);
}

async function groupOf(user, name) {
  const { conversations } = await api(node.baseUrl, 'GET', '/conversations', { token: await tokenOf(user.page) });
  return conversations.find((c) => c.name === name);
}

test('the New chat dialog: a group with members found in the directory, a direct chat by name, paging', async (t) => {
  await withArtifacts(t, everyone, async () => {
    const dialog = await openNewChat(alice.page, 'New group');
    const form = dialog.getByRole('form', { name: 'New group' });
    await form.getByLabel('Group name').fill('Team');
    // By name (any part of it, any case) and by id prefix.
    await form.getByLabel('Members').fill('bob build');
    await dialog.getByRole('button', { name: `Pick ${bob.id}` }).click();
    await form.getByLabel('Members').fill(carol.id.slice(0, 5));
    await dialog.getByRole('button', { name: `Pick ${carol.id}` }).click();
    const picked = dialog.getByRole('list', { name: 'Picked people' });
    await picked.getByText(`Bob Builder (${bob.id})`).waitFor();
    await picked.getByText(`Carol Climber (${carol.id})`).waitFor();
    assert.equal(await form.getByLabel('Members').inputValue(), '', 'the search word goes once picked');
    await form.getByRole('button', { name: 'Create group' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await until(async () => (await chatTitle(alice.page)) === 'Team', { what: 'Team open' });
    await openPanel(alice.page);
    const members = alice.page.getByRole('list', { name: 'Members' });
    for (const u of [alice, bob, carol]) await members.locator(`li[data-uid="${u.id}"]`).waitFor();
    assert.equal(await members.locator(`li[data-uid="${alice.id}"]`).getAttribute('data-role'), 'owner');
    for (const u of [bob, carol]) await entry(u.page, 'Team').waitFor();

    // A direct chat with someone found by name.
    const d = await openNewChat(bob.page, 'Direct chat');
    await d.getByLabel('Chat with user id or name').fill('dave div');
    await d.getByRole('button', { name: `Chat with ${dave.id}` }).click();
    await until(async () => (await chatTitle(bob.page)) === 'Dave Diver', { what: 'chat with Dave' });
    await sendText(bob.page, 'found you');
    await entry(dave.page, 'Bob Builder').waitFor();

    // The directory a page at a time.
    const tag = uid('zz');
    for (let i = 0; i < 13; i++) {
      const id = `${tag}${String(i).padStart(2, '0')}`;
      await api(node.baseUrl, 'POST', '/users', { json: { user_id: id, name: `Many ${i}`, password: 'password-' + id } });
    }
    const d2 = await openNewChat(dave.page, 'Direct chat');
    await d2.getByLabel('Chat with user id or name').fill(tag);
    const found = d2.getByRole('list', { name: 'People found' });
    await until(async () => (await found.locator('li').count()) === 10, { what: 'the first page' });
    await d2.getByRole('button', { name: 'More people' }).click();
    await until(async () => (await found.locator('li').count()) === 13, { what: 'the second page' });
    assert.equal(await d2.getByRole('button', { name: 'More people' }).isVisible(), false);
    await d2.getByRole('button', { name: 'Close' }).click();
  });
});

test("system messages in the group's history; settings are the owner's and admins'", async (t) => {
  await withArtifacts(t, everyone, async () => {
    await openConversation(alice.page, 'Team');
    await openPanel(alice.page);
    const settings = alice.page.getByRole('form', { name: 'Group settings' });
    await settings.getByLabel('Name').fill('Team A');
    await settings.getByLabel('Notice').fill('standup at 10');
    await settings.getByRole('button', { name: 'Save settings' }).click();
    await until(async () => (await chatTitle(alice.page)) === 'Team A', { what: 'renamed' });
    const add = alice.page.getByRole('form', { name: 'Add member' });
    await add.getByLabel('Add member by user id').fill(dave.id);
    await add.getByRole('button', { name: 'Add member' }).click();

    await openConversation(bob.page, 'Team A');
    const expected = [
      'Alice Archer renamed the group to “Team A” and changed the notice to “standup at 10”',
      'Alice Archer added Dave Diver',
    ];
    await until(async () => {
      const now = await systemLines(bob.page);
      return expected.every((l) => now.includes(l));
    }, { what: 'system lines on bob’s page' });
    let lines = await systemLines(bob.page);
    for (const l of expected) assert.ok(lines.includes(l), `${l} in ${JSON.stringify(lines)}`);
    assert.ok(lines.indexOf(expected[0]) < lines.indexOf(expected[1]), 'in seq order');
    // Centred grey lines, not chat bubbles; not unread messages.
    const line = messages(bob.page).locator('li.system').last();
    assert.equal(await line.evaluate((el) => getComputedStyle(el).alignSelf), 'center');
    assert.equal(await messages(bob.page).locator('li.system .text').count(), 0);
    // The actor reads "You".
    await until(async () => (await systemLines(alice.page)).includes('You added Dave Diver'), { what: "alice's own line" });
    // The notice shows above the chat; bob (a member) sees the settings but cannot change them.
    assert.equal(await bob.page.getByRole('note', { name: 'Group notice' }).textContent(), 'standup at 10');
    await openPanel(bob.page);
    const bobSettings = bob.page.getByRole('form', { name: 'Group settings' });
    assert.equal(await bobSettings.getByLabel('Name').inputValue(), 'Team A');
    assert.equal(await bobSettings.getByLabel('Name').isEditable(), false);
    assert.equal(await bobSettings.getByRole('button', { name: 'Save settings' }).isVisible(), false);
    assert.equal(await bob.page.getByRole('button', { name: `Remove ${carol.id}` }).count(), 0, 'a member removes nobody');

    // Alice makes bob an admin: his page follows (a line, editable settings, a remove button).
    await alice.page.getByRole('button', { name: `Make ${bob.id} an admin` }).click();
    await until(async () => (await systemLines(bob.page)).includes('Alice Archer made you an admin'), { what: 'role line' });
    await bobSettings.getByRole('button', { name: 'Save settings' }).waitFor();
    assert.equal(await bobSettings.getByLabel('Name').isEditable(), true);
    await bob.page.getByRole('button', { name: `Remove ${dave.id}` }).waitFor();
    assert.equal(await bob.page.getByRole('button', { name: `Make ${carol.id} an admin` }).count(), 0, 'only the owner makes admins');
    assert.equal(await bob.page.getByRole('button', { name: `Remove ${alice.id}` }).count(), 0, 'an admin removes members only');
    // An admin removes a member.
    await bob.page.getByRole('button', { name: `Remove ${dave.id}` }).click();
    await until(async () => (await systemLines(alice.page)).includes('Bob Builder removed Dave Diver'), { what: 'removal line' });
    await until(async () => (await entry(dave.page, 'Team A').count()) === 0, { what: 'gone from dave’s list' });

    // After a reload the lines come from the history.
    await bob.page.reload();
    await waitOnline(bob.page);
    await openConversation(bob.page, 'Team A');
    await until(async () => (await systemLines(bob.page)).includes('You removed Dave Diver'), { what: 'lines after reload' });
    lines = await systemLines(bob.page);
    for (const l of expected) assert.ok(lines.includes(l), `${l} after reload in ${JSON.stringify(lines)}`);
    // The preview of a group whose last message is a system line.
    assert.match(await entry(bob.page, 'Team A').textContent(), /You removed Dave Diver/);

    // Alice hands the group over to Carol (after a confirmation): she is an admin now.
    alice.page.once('dialog', (d) => d.accept());
    await alice.page.getByRole('button', { name: `Make ${carol.id} the owner` }).click();
    await until(async () => (await systemLines(bob.page)).includes('Alice Archer handed the group over to Carol Climber'), {
      what: 'hand-over line',
    });
    const aliceMembers = alice.page.getByRole('list', { name: 'Members' });
    await until(async () => (await aliceMembers.locator(`li[data-uid="${alice.id}"]`).getAttribute('data-role')) === 'admin', { what: 'alice an admin' });
    assert.equal(await aliceMembers.locator(`li[data-uid="${carol.id}"]`).getAttribute('data-role'), 'owner');
    assert.equal(await alice.page.getByRole('button', { name: `Make ${bob.id} a member` }).count(), 0, 'roles are the owner’s');
    assert.equal((await groupOf(bob, 'Team A')).owner, carol.id);
  });
});

test('an application by link, approved by the owner in another browser context', async (t) => {
  await withArtifacts(t, everyone, async () => {
    const club = await api(node.baseUrl, 'POST', '/conversations', {
      token: await tokenOf(alice.page),
      json: { type: 'group', name: 'Club', members: [bob.id] },
    });
    // Dave follows the group's link.
    await dave.page.goto(`/#/join/${club.id}`);
    await waitOnline(dave.page);
    const dialog = dave.page.getByRole('dialog', { name: 'New chat' });
    const card = dialog.getByRole('region', { name: 'Group found' });
    await card.getByText('Club', { exact: true }).waitFor();
    assert.match(await card.textContent(), /2 members/);
    await card.getByLabel('Message to the admins').fill("hi, I'm Dave");
    await card.getByRole('button', { name: 'Apply to join' }).click();
    await dialog.getByRole('status', { name: 'New chat status' }).getByText(/Application sent/).waitFor();
    await dialog.getByRole('button', { name: 'Close' }).click();
    assert.doesNotMatch(dave.page.url(), /#\/join\//, 'the link is gone from the address');
    assert.equal(await entry(dave.page, 'Club').count(), 0);
    // Dave sees his own application as waiting, without it counting.
    const daveList = await openNotifications(dave.page);
    await daveList.getByText(/You asked to join Club/).waitFor();
    assert.equal(await notifications(dave.page).getAttribute('aria-label'), 'Notifications');

    // Alice: a badge, the application, approve.
    await until(async () => (await notifications(alice.page).getAttribute('aria-label')) === 'Notifications, 1 waiting', { what: 'badge' });
    assert.equal(await alice.page.locator('#notif-badge').textContent(), '1');
    const list = await openNotifications(alice.page);
    const item = list.locator('li', { hasText: 'asks to join' });
    await item.getByText('Dave Diver', { exact: true }).waitFor();
    assert.match(await item.textContent(), /asks to join Club/);
    assert.match(await item.textContent(), /hi, I'm Dave/);
    await item.getByRole('button', { name: 'Approve' }).click();
    await until(async () => (await list.locator('li', { hasText: 'asks to join' }).count()) === 0, { what: 'handled' });
    assert.equal(await notifications(alice.page).getAttribute('aria-label'), 'Notifications');

    // Dave's page: the group is there, without a reload; he is told.
    await entry(dave.page, 'Club').waitFor({ timeout: 5000 });
    await dave.page.getByRole('log', { name: 'Notices' }).getByText('Your application to Club was approved.').waitFor();
    await until(async () => (await daveList.getByText(/You asked to join Club/).count()) === 0, { what: 'no longer waiting' });
    await notifications(dave.page).click(); // closes the list
    await openConversation(dave.page, 'Club');
    await until(async () => (await systemLines(dave.page)).includes('Alice Archer let you in'), { what: 'the join line' });
    await sendText(dave.page, 'thanks for having me');
    await openConversation(bob.page, 'Club');
    await seeMessage(bob.page, 'thanks for having me');
  });
});

test("an invitation accepted from the invitee's notification list", async (t) => {
  await withArtifacts(t, everyone, async () => {
    await openConversation(alice.page, 'Club');
    await openPanel(alice.page);
    const invite = alice.page.getByRole('form', { name: 'Invite' });
    await invite.getByLabel('Invite someone').fill('carol clim');
    await alice.page.getByRole('button', { name: `Invite ${carol.id}` }).click();
    await alice.page.getByRole('status', { name: 'Group status' }).getByText(/Invited Carol Climber/).waitFor();

    await until(async () => (await notifications(carol.page).getAttribute('aria-label')) === 'Notifications, 1 waiting', { what: "carol's badge" });
    const list = await openNotifications(carol.page);
    const item = list.locator('li', { hasText: 'invites you to' });
    await until(async () => /Alice Archer invites you to Club/.test(await item.textContent()), { what: 'the invitation' });
    assert.equal(await entry(carol.page, 'Club').count(), 0);
    await item.getByRole('button', { name: 'Accept' }).click();
    await entry(carol.page, 'Club').waitFor({ timeout: 5000 });
    await until(async () => (await list.locator('li', { hasText: 'invites you to' }).count()) === 0, { what: 'handled' });
    assert.equal(await notifications(carol.page).getAttribute('aria-label'), 'Notifications');
    await notifications(carol.page).click();
    await openConversation(carol.page, 'Club');
    await until(async () => (await systemLines(carol.page)).includes('You joined by invitation'), { what: 'the join line' });
    await until(async () => (await systemLines(alice.page)).includes('Carol Climber joined by invitation'), { what: "alice's line" });
  });
});

test('a friend request from the directory, accepted: the direct chat is there for both', async (t) => {
  await withArtifacts(t, everyone, async () => {
    const d = await openNewChat(carol.page, 'Direct chat');
    await d.getByLabel('Chat with user id or name').fill(dave.id);
    await d.getByRole('button', { name: `Add ${dave.id} as a friend` }).click();
    await d.getByRole('status', { name: 'New chat status' }).getByText('Friend request sent to Dave Diver.').waitFor();
    await d.getByRole('button', { name: 'Close' }).click();
    const list = await openNotifications(dave.page);
    const item = list.locator('li', { hasText: 'wants to be friends' });
    await until(async () => /Carol Climber wants to be friends/.test(await item.textContent()), { what: 'the request' });
    await item.getByRole('button', { name: 'Accept' }).click();
    await entry(dave.page, 'Carol Climber').waitFor({ timeout: 5000 });
    await entry(carol.page, 'Dave Diver').waitFor({ timeout: 5000 });
    await carol.page.getByRole('log', { name: 'Notices' }).getByText('Dave Diver accepted your friend request.').waitFor();
    await notifications(dave.page).click();
  });
});

test('a muted group stays muted across a reload and shows as muted', async (t) => {
  await withArtifacts(t, everyone, async () => {
    await openConversation(bob.page, 'Club');
    const mute = bob.page.getByRole('button', { name: 'Mute', exact: true });
    assert.equal(await mute.getAttribute('aria-pressed'), 'false');
    await mute.click();
    await until(async () => (await mute.getAttribute('aria-pressed')) === 'true', { what: 'pressed' });
    await until(async () => /, muted/.test(await entry(bob.page, 'Club').getAttribute('aria-label')), { what: 'muted in the list' });
    assert.equal((await groupOf(bob, 'Club')).muted, true, 'kept by the node');
    assert.equal((await groupOf(alice, 'Club')).muted, false, "bob's own flag");

    await bob.page.reload();
    await waitOnline(bob.page);
    await until(async () => /, muted/.test(await entry(bob.page, 'Club').getAttribute('aria-label')), { what: 'muted after reload' });
    assert.match(await entry(bob.page, 'Club').textContent(), /muted/);
    assert.doesNotMatch(await entry(bob.page, 'Team A').getAttribute('aria-label'), /muted/);
    await openConversation(bob.page, 'Club');
    assert.equal(await mute.getAttribute('aria-pressed'), 'true');
    // Unread still counts while muted.
    await openConversation(bob.page, 'Team A');
    await sendText(alice.page, 'while muted');
    await until(async () => /, muted, 1 unread$/.test(await entry(bob.page, 'Club').getAttribute('aria-label')), { what: 'unread while muted' });
    await openConversation(bob.page, 'Club');
    await mute.click();
    await until(async () => (await mute.getAttribute('aria-pressed')) === 'false', { what: 'unmuted' });
    assert.equal((await groupOf(bob, 'Club')).muted, false);
  });
});

test('@ mentions: members of the group offered as you type, their ids sent in mentions; @all for the owner', async (t) => {
  await withArtifacts(t, everyone, async () => {
    await openConversation(bob.page, 'Club');
    const text = bob.page.getByRole('textbox', { name: 'Message', exact: true });
    const suggestions = bob.page.getByRole('listbox', { name: 'Mention suggestions' });
    await text.fill('');
    await text.pressSequentially('hey @car');
    await suggestions.getByRole('option', { name: `Carol Climber (${carol.id})` }).waitFor();
    assert.equal(await suggestions.getByRole('option', { name: /^@all/ }).count(), 0, 'bob is a plain member of Club');
    await text.press('Enter');
    assert.equal(await text.inputValue(), 'hey @Carol Climber ');
    await text.pressSequentially('and @' + dave.id.slice(0, 4));
    await suggestions.getByRole('option', { name: `Dave Diver (${dave.id})` }).click();
    await text.pressSequentially('look');
    await bob.page.getByRole('button', { name: 'Send', exact: true }).click();
    const body = 'hey @Carol Climber and @Dave Diver look';
    await seeMessage(carol.page, body);
    const club = await groupOf(bob, 'Club');
    const { messages: hist } = await api(node.baseUrl, 'GET', `/conversations/${club.id}/messages?before_seq=1000000&limit=5`, { token: await tokenOf(bob.page) });
    const sent = hist.find((m) => m.body === body);
    assert.deepEqual(sent.mentions, [carol.id, dave.id].sort());
    // A mention of you stands out.
    assert.equal(await messages(carol.page).locator('li.mention-me', { hasText: body }).count(), 1);

    // The owner is offered @all.
    await openConversation(alice.page, 'Club');
    const atext = alice.page.getByRole('textbox', { name: 'Message', exact: true });
    await atext.fill('');
    await atext.pressSequentially('@al');
    const aSuggestions = alice.page.getByRole('listbox', { name: 'Mention suggestions' });
    await aSuggestions.getByRole('option', { name: /^@all/ }).click();
    await atext.pressSequentially('meeting now');
    await atext.press('Enter');
    await seeMessage(bob.page, '@all meeting now');
    const after = await api(node.baseUrl, 'GET', `/conversations/${club.id}/messages?before_seq=1000000&limit=5`, { token: await tokenOf(bob.page) });
    assert.deepEqual(after.messages.find((m) => m.body === '@all meeting now').mentions, ['all']);
  });
});
