// The SDK's groups calls against a real node (started here, stopped by PID): settings and roles
// with their pushes and system messages, applications, invitations, friend requests and the
// direct policy, the user directory, mentions. groups-unit.test.mjs checks the wire shapes
// against a fake node.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { ConvergeClient } from '../src/index.js';
import { startNode } from '../test-support/node.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(fn, { timeout = 10000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

let node;
let seq = 0;
before(async () => {
  node = await startNode({ env: { CONVERGE_HEARTBEAT_INTERVAL_MS: '300', CONVERGE_HEARTBEAT_TIMEOUT_MS: '3000' } });
});
after(async () => {
  await node?.stop();
});

const clients = [];
after(() => clients.forEach((c) => c.close()));

/** A new user, logged in and connected; what it receives is collected. */
async function user(name, { connect = true, id } = {}) {
  id ??= `${name}${++seq}${Date.now() % 100000}`;
  const c = new ConvergeClient({ baseUrl: node.baseUrl, WebSocket, backoff: { initialMs: 50, maxMs: 400 }, ackTimeoutMs: 2000 });
  clients.push(c);
  await c.register({ user_id: id, name, password: 'password-' + id });
  await c.login({ user_id: id, password: 'password-' + id, device_id: 'dev-' + id });
  c.id = id;
  c.got = [];
  c.pushes = [];
  c.requests = [];
  c.on('message', (m) => c.got.push(m));
  c.on('conversation', (conv, info) => c.pushes.push({ conv, info }));
  c.on('request', (r) => c.requests.push(r));
  if (connect) await c.connect();
  return c;
}

const systemEvents = (c, conv) =>
  c.got
    .filter((m) => m.conversation_id === conv && m.type === 'system')
    .sort((x, y) => x.seq - y.seq)
    .map((m) => m.event);

describe('settings and roles', () => {
  test('the owner changes the notice: a system message and an `updated` push with the event; a member may not', async () => {
    const a = await user('alice');
    const b = await user('bob');
    const g = await a.createGroup({ name: 'team', members: [b.id] });
    assert.equal(g.roles[a.id], 'owner');
    assert.equal(g.roles[b.id], 'member');
    assert.equal(g.join_policy, 'approval', 'the default join policy');
    await waitFor(() => b.conversations.has(g.id), { what: 'bob has the group' });

    const updated = await a.updateConversation(g.id, { notice: 'standup at 10' });
    assert.equal(updated.notice, 'standup at 10');
    assert.equal(a.conversations.get(g.id).notice, 'standup at 10');
    const push = await waitFor(() => b.pushes.find((p) => p.info.change === 'updated'), { what: 'the updated push' });
    assert.equal(push.info.event.event, 'updated');
    assert.equal(push.info.event.actor, a.id);
    assert.equal(push.info.event.notice, 'standup at 10');
    assert.equal(b.conversations.get(g.id).notice, 'standup at 10');
    const ev = await waitFor(() => systemEvents(b, g.id).find((e) => e.event === 'updated'), { what: 'the system message' });
    assert.deepEqual({ ...ev }, { event: 'updated', actor: a.id, notice: 'standup at 10' });

    await assert.rejects(b.updateConversation(g.id, { name: 'mine now' }), { status: 403, code: 'forbidden' });
    // The same value again changes nothing and stores nothing.
    const last = a.conversations.get(g.id).last_seq;
    await a.updateConversation(g.id, { notice: 'standup at 10' });
    assert.equal((await a.getConversation(g.id)).last_seq, last);
    // Clients cannot send system messages.
    await assert.rejects(a.send(g.id, { type: 'system', body: '{"event":"updated"}' }), { code: 'bad_request' });
    // History has them too, parsed.
    const hist = await b.latest(g.id, 10);
    assert.ok(hist.some((m) => m.type === 'system' && m.event?.event === 'updated'));
  });

  test('roles: an admin is made, changes settings, the group is handed over', async () => {
    const a = await user('alice');
    const b = await user('bob');
    const c = await user('carol');
    const g = await a.createGroup({ name: 'roles', members: [b.id, c.id] });
    await waitFor(() => b.conversations.has(g.id), { what: 'bob has the group' });
    const r = await a.setRole(g.id, b.id, 'admin');
    assert.equal(r.roles[b.id], 'admin');
    await waitFor(() => b.conversations.get(g.id)?.roles?.[b.id] === 'admin', { what: "bob's role in his list" });
    const push = b.pushes.find((p) => p.info.change === 'role_changed');
    assert.deepEqual({ ...push.info.event }, { event: 'role_changed', actor: a.id, user_id: b.id, role: 'admin' });
    await b.updateConversation(g.id, { join_policy: 'open' });
    assert.equal((await a.getConversation(g.id)).join_policy, 'open');
    await assert.rejects(b.setRole(g.id, c.id, 'admin'), { status: 403 }, 'only the owner changes roles');
    await assert.rejects(a.setRole(g.id, c.id, 'owner'), { status: 400 });

    const t = await a.transferOwner(g.id, c.id);
    assert.equal(t.owner, c.id);
    assert.equal(t.roles[a.id], 'admin', 'the previous owner becomes an admin');
    const ev = await waitFor(() => b.pushes.find((p) => p.info.change === 'owner_changed'), { what: 'owner_changed' });
    assert.equal(ev.info.event.user_id, c.id);
    assert.equal(ev.info.event.previous, a.id);
    await waitFor(() => systemEvents(b, g.id).some((e) => e.event === 'owner_changed'), { what: 'the system message' });
  });
});

describe('applications and invitations', () => {
  test('an application is pushed to the owner, approved, and the applicant is in with the history', async () => {
    const a = await user('alice');
    const d = await user('dave');
    const g = await a.createGroup({ name: 'club', members: [(await user('bob', { connect: false })).id] });
    await a.sendText(g.id, 'before dave');
    const info = await d.getGroup(g.id);
    const { conversation_id, name, join_policy, member_count, member } = info;
    assert.deepEqual(
      { conversation_id, name, join_policy, member_count, member },
      { conversation_id: g.id, name: 'club', join_policy: 'approval', member_count: 2, member: false },
    );
    const ap = await d.apply(g.id, { text: "hi, I'm dave" });
    assert.equal(ap.status, 'pending');
    assert.equal(ap.kind, 'application');
    assert.equal(ap.user_id, d.id);
    assert.match(ap.id, /^ap_[0-9a-f]{32}$/);
    assert.equal((await d.apply(g.id)).id, ap.id, 'asking again answers the pending one');
    const made = await waitFor(() => a.requests.find((r) => r.id === ap.id), { what: 'the application pushed to the owner' });
    assert.equal(made.status, 'pending');
    assert.equal(made.text, "hi, I'm dave");
    assert.ok((await a.listApplications()).some((x) => x.id === ap.id));
    assert.ok((await a.listApplications({ conversationId: g.id })).some((x) => x.id === ap.id));
    assert.ok((await d.listApplications()).some((x) => x.id === ap.id), "the applicant's own");
    await assert.rejects(d.listApplications({ conversationId: g.id }), { status: 403 });

    const ok = await a.approveApplication(ap.id);
    assert.equal(ok.status, 'approved');
    assert.equal((await a.declineApplication(ap.id)).status, 'approved', 'decided once');
    await waitFor(() => d.requests.some((r) => r.id === ap.id && r.status === 'approved'), { what: 'the decision pushed to dave' });
    await waitFor(() => d.conversations.has(g.id), { what: 'the group in dave’s list' });
    await waitFor(() => d.got.some((m) => m.body === 'before dave'), { what: 'the history before the join' });
    const ev = await waitFor(() => systemEvents(d, g.id).find((e) => e.event === 'member_added'), { what: 'member_added' });
    assert.deepEqual([...ev.users], [d.id]);
    assert.equal(ev.via, 'application');
    assert.equal(ev.actor, a.id);
  });

  test('an open group: applying joins at once; an invite_only one refuses', async () => {
    const a = await user('alice');
    const e = await user('erin');
    const g = await a.createGroup({ name: 'open', members: [(await user('bob', { connect: false })).id] });
    await a.updateConversation(g.id, { join_policy: 'open' });
    const r = await e.apply(g.id);
    assert.equal(r.status, 'approved');
    assert.ok(e.conversations.has(g.id), 'in the list when apply resolves');
    assert.equal((await e.getGroup(g.id)).member, true);
    await assert.rejects(e.apply(g.id), { status: 409 });
    const closed = await a.createGroup({ name: 'closed', members: [(await user('bob', { connect: false })).id] });
    await a.updateConversation(closed.id, { join_policy: 'invite_only' });
    await assert.rejects(e.apply(closed.id), { status: 403 });
    await assert.rejects(e.getGroup('999999'), { status: 404 });
  });

  test('an invitation is pushed to the invitee, accepted, and the group comes in', async () => {
    const a = await user('alice');
    const e = await user('erin');
    const g = await a.createGroup({ name: 'invited', members: [(await user('bob', { connect: false })).id] });
    const inv = await a.invite(g.id, e.id, { text: 'join us' });
    assert.equal(inv.kind, 'invitation');
    assert.equal(inv.user_id, e.id);
    assert.equal(inv.inviter_id, a.id);
    await waitFor(() => e.requests.some((r) => r.id === inv.id), { what: 'the invitation pushed' });
    assert.ok((await e.listInvitations()).some((x) => x.id === inv.id));
    assert.ok((await a.listInvitations()).some((x) => x.id === inv.id), 'the inviter sees it too');
    await assert.rejects(a.acceptInvitation(inv.id), { status: 403 }, 'only the invitee');
    const acc = await e.acceptInvitation(inv.id);
    assert.equal(acc.status, 'accepted');
    assert.ok(e.conversations.has(g.id));
    await waitFor(() => a.requests.some((r) => r.id === inv.id && r.status === 'accepted'), { what: 'the inviter told' });
    const ev = await waitFor(() => systemEvents(a, g.id).find((x) => x.event === 'member_added'), { what: 'member_added' });
    assert.equal(ev.via, 'invitation');
    await assert.rejects(a.invite(g.id, e.id), { status: 409 }, 'a member already');
    await assert.rejects(a.invite(g.id, a.id), { status: 400 });
  });
});

describe('friends, direct policy, directory', () => {
  test('friends only: a direct chat is refused until a friend request is accepted', async () => {
    const a = await user('alice');
    const b = await user('bob');
    await b.setDirectPolicy('friends');
    assert.equal((await b.me()).direct_policy, 'friends');
    await assert.rejects(a.createDirect(b.id), { status: 403 });
    const { request: fr } = await a.requestFriend(b.id, { text: 'hey' });
    assert.equal(fr.kind, 'friend_request');
    assert.equal(fr.status, 'pending');
    await waitFor(() => b.requests.some((r) => r.id === fr.id), { what: 'the friend request pushed' });
    assert.ok((await b.listFriendRequests()).some((x) => x.id === fr.id));
    const { request, conversation } = await b.acceptFriendRequest(fr.id);
    assert.equal(request.status, 'accepted');
    assert.equal(conversation.type, 'direct');
    assert.ok(b.conversations.has(conversation.id));
    assert.deepEqual((await a.listFriends()).map((f) => f.user_id), [b.id]);
    assert.equal((await a.createDirect(b.id)).id, conversation.id);
    assert.deepEqual(await a.removeFriend(b.id), {});
    assert.deepEqual(await a.listFriends(), []);
  });

  test('asking someone who asked already accepts their request', async () => {
    const a = await user('alice');
    const b = await user('bob');
    await a.requestFriend(b.id);
    const r = await b.requestFriend(a.id);
    assert.equal(r.request.status, 'accepted');
    assert.ok(r.conversation?.id, 'with the direct conversation');
  });

  test('the directory: by id prefix or name, paged', async () => {
    const tag = `dir${Date.now() % 100000}x`;
    const a = await user('alice', { connect: false });
    for (let i = 0; i < 5; i++) await user(`Zed ${tag} ${i}`, { connect: false, id: `${tag}${i}` });
    const p1 = await a.searchUsers({ q: tag, limit: 2 });
    assert.deepEqual(p1.users.map((u) => u.user_id), [`${tag}0`, `${tag}1`]);
    assert.equal(p1.next, `${tag}1`);
    const p3 = await a.searchUsers({ q: tag, after: `${tag}3`, limit: 2 });
    assert.deepEqual(p3.users.map((u) => u.user_id), [`${tag}4`]);
    assert.equal(p3.next, undefined);
    const all = [];
    for await (const u of a.searchUsersAll({ q: tag, limit: 2 })) all.push(u.user_id);
    assert.equal(all.length, 5);
    const byName = await a.searchUsers({ q: `ZED ${tag.toUpperCase()} 3` });
    assert.deepEqual(byName.users, [{ user_id: `${tag}3`, name: `Zed ${tag} 3` }]);
  });
});

describe('mute and mentions', () => {
  test('mute shows in the list; mentions come with the message', async () => {
    const a = await user('alice');
    const b = await user('bob');
    const g = await a.createGroup({ name: 'loud', members: [b.id] });
    await waitFor(() => b.conversations.has(g.id), { what: 'bob has it' });
    await b.mute(g.id, true);
    assert.equal(b.conversations.get(g.id).muted, true);
    await b.listConversations();
    assert.equal(b.conversations.get(g.id).muted, true, 'kept by the node');
    await a.sendText(g.id, `hey @${b.id}`, { mentions: [b.id.toUpperCase()] });
    const m = await waitFor(() => b.got.find((x) => x.body === `hey @${b.id}`), { what: 'the message' });
    assert.deepEqual(m.mentions, [b.id]);
    await a.sendText(g.id, 'hey @all', { mentions: ['all'] });
    const all = await waitFor(() => b.got.find((x) => x.body === 'hey @all'), { what: '@all' });
    assert.deepEqual(all.mentions, ['all']);
  });
});
