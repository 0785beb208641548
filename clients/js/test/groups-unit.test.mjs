// Unit tests of the SDK's groups calls against a fake node (a fake fetch and a fake WebSocket):
// each call's method, path and body as docs/protocol.md ("Groups: roles, settings, applications,
// invitations, friends") has them, what they keep in `conversations`, the request pushes as
// events, the conversation pushes' `event`, system messages' parsed `event`, and `mentions` on
// sends. groups.test.mjs does the same against a real node.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConvergeClient } from '../src/index.js';

const session = { token: 'tok', user_id: 'alice', device_id: 'd1' };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const json = (body, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });

const group = (over = {}) => ({
  id: '12',
  conversation_id: '12',
  type: 'group',
  name: 'team',
  owner: 'alice',
  notice: '',
  join_policy: 'approval',
  roles: { alice: 'owner', bob: 'member' },
  members: ['alice', 'bob'],
  last_seq: 3,
  muted: false,
  created_at: 1,
  ...over,
});

/**
 * A fake node: `routes` maps "METHOD /path" (path without /api/v1, query included) to a body or
 * a function (call) -> body | Response. Every call is recorded in `calls` with its parsed JSON.
 */
function fakeNode(routes = {}) {
  const calls = [];
  const sockets = [];
  const fetch = async (url, init = {}) => {
    const u = new URL(String(url));
    const path = u.pathname.replace(/^\/api\/v1/, '') + u.search;
    const call = { method: init.method || 'GET', path, body: init.body ? JSON.parse(init.body) : undefined, headers: init.headers };
    calls.push(call);
    const key = `${call.method} ${path}`;
    let r = key in routes ? routes[key] : defaults(call);
    if (typeof r === 'function') r = await r(call);
    if (r instanceof Response) return r;
    if (r === undefined) return json({ error: { code: 'not_found', message: `fake: ${key}` } }, 404);
    return json(r);
  };
  function defaults(call) {
    if (call.method === 'GET' && call.path === '/conversations') return { conversations: [group()] };
    if (call.method === 'GET' && call.path.startsWith('/offline')) return { messages: [], more: false };
    if (call.method === 'POST' && call.path === '/heartbeat') return { seqs: {}, interval_ms: 30000 };
    return undefined;
  }
  /** A WebSocket that authenticates at once and answers sync / heartbeat. */
  class FakeWS {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
      setTimeout(() => {
        this.readyState = 1;
        this.onopen?.();
      }, 0);
    }
    send(text) {
      const f = JSON.parse(text);
      this.sent.push(f);
      const reply = (cmd, data) => setTimeout(() => this.onmessage?.({ data: JSON.stringify({ cmd, id: f.id, data }) }), 0);
      if (f.cmd === 'auth') reply('ready', { user_id: session.user_id, heartbeat_interval_ms: 30000 });
      else if (f.cmd === 'sync') reply('sync', { messages: [], more: false });
      else if (f.cmd === 'heartbeat') reply('heartbeat', { seqs: f.data?.seqs || {}, ts: Date.now() });
    }
    push(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }
    close() {
      this.readyState = 3;
      setTimeout(() => this.onclose?.({ code: 1000 }), 0);
    }
  }
  const c = new ConvergeClient({ baseUrl: 'http://node.test', fetch, WebSocket: FakeWS, session, watchNetwork: false });
  return { c, calls, sockets, last: () => calls.at(-1) };
}

describe('group settings and roles', () => {
  test('updateConversation PATCHes only the fields given and keeps the answer', async () => {
    const { c, last } = fakeNode({
      'PATCH /conversations/12': (call) => group({ ...call.body }),
    });
    const lists = [];
    c.on('conversations', (l) => lists.push(l));
    const r = await c.updateConversation('12', { notice: 'standup at 10' });
    assert.deepEqual(last().body, { notice: 'standup at 10' });
    assert.equal(last().headers['Content-Type'], 'application/json');
    assert.equal(r.notice, 'standup at 10');
    assert.equal(c.conversations.get('12').notice, 'standup at 10');
    assert.equal(lists.length, 1);
    await c.updateConversation(12, { name: 'crew', join_policy: 'open' });
    assert.deepEqual(last().body, { name: 'crew', join_policy: 'open' });
    assert.equal(c.conversations.get('12').join_policy, 'open');
  });

  test('setRole PUTs the role; transferOwner POSTs the user; both keep the conversation', async () => {
    const { c, calls } = fakeNode({
      'PUT /conversations/12/roles/bob': group({ roles: { alice: 'owner', bob: 'admin' } }),
      'POST /conversations/12/owner': group({ owner: 'bob', roles: { alice: 'admin', bob: 'owner' } }),
    });
    await c.setRole('12', 'bob', 'admin');
    assert.deepEqual(calls[0], { ...calls[0], method: 'PUT', path: '/conversations/12/roles/bob', body: { role: 'admin' } });
    assert.equal(c.conversations.get('12').roles.bob, 'admin');
    await c.transferOwner('12', 'bob');
    assert.deepEqual(calls[1].body, { user_id: 'bob' });
    assert.equal(c.conversations.get('12').owner, 'bob');
  });

  test('ids in paths are encoded', async () => {
    const { c, last } = fakeNode({ 'PUT /conversations/12/roles/a%2Fb': group() });
    await c.setRole('12', 'a/b', 'member');
    assert.equal(last().path, '/conversations/12/roles/a%2Fb');
  });

  test('mute sends a boolean and updates the local flag', async () => {
    const { c, last } = fakeNode({ 'POST /conversations/12/mute': (call) => ({ muted: call.body.muted }) });
    await c.listConversations();
    const lists = [];
    c.on('conversations', (l) => lists.push(l));
    assert.deepEqual(await c.mute('12', 1), { muted: true });
    assert.deepEqual(last().body, { muted: true });
    assert.equal(c.conversations.get('12').muted, true);
    assert.equal(lists.length, 1);
  });

  test('getGroup', async () => {
    const info = { conversation_id: '12', name: 'team', join_policy: 'approval', member_count: 2, member: false };
    const { c, last } = fakeNode({ 'GET /groups/12': info });
    assert.deepEqual(await c.getGroup('12'), info);
    assert.equal(last().method, 'GET');
  });
});

const request = (kind, over = {}) => ({
  id: `${kind.slice(0, 2)}_1`,
  kind,
  conversation_id: '12',
  user_id: 'dave',
  from_id: 'dave',
  text: '',
  status: 'pending',
  decided_by: '',
  created_at: 1,
  decided_at: 0,
  expires_at: 2,
  ...over,
});

describe('applications and invitations', () => {
  test('apply: the text only when given; pending leaves the list alone', async () => {
    const { c, calls } = fakeNode({ 'POST /conversations/12/applications': request('application') });
    const r = await c.apply('12', { text: 'hi' });
    assert.equal(r.status, 'pending');
    assert.deepEqual(calls[0].body, { text: 'hi' });
    await c.apply('12');
    assert.deepEqual(calls[1].body, {});
    assert.equal(calls.length, 2);
    assert.equal(c.conversations.size, 0);
  });

  test('apply to an open group: approved, and the group is taken in as joined', async () => {
    const { c } = fakeNode({
      'POST /conversations/12/applications': request('application', { user_id: 'alice', from_id: 'alice', status: 'approved' }),
      'GET /conversations/12': group({ last_seq: 0 }),
    });
    const events = [];
    c.on('conversation', (conv, info) => events.push(info));
    await c.apply('12');
    assert.ok(c.conversations.has('12'));
    assert.deepEqual(events, [{ change: 'member_added', member: true, joined: true }]);
  });

  test('approve / decline / list applications', async () => {
    const { c, calls } = fakeNode({
      'POST /applications/ap_1/approve': request('application', { status: 'approved' }),
      'POST /applications/ap_1/decline': request('application', { status: 'approved' }),
      'GET /applications': { applications: [request('application')] },
      'GET /applications?conversation_id=12': { applications: [] },
    });
    assert.equal((await c.approveApplication('ap_1')).status, 'approved');
    assert.equal((await c.declineApplication('ap_1')).status, 'approved', 'the first decision stands');
    assert.equal((await c.listApplications()).length, 1);
    assert.deepEqual(await c.listApplications({ conversationId: '12' }), []);
    assert.deepEqual(
      calls.map((x) => `${x.method} ${x.path}`),
      ['POST /applications/ap_1/approve', 'POST /applications/ap_1/decline', 'GET /applications', 'GET /applications?conversation_id=12'],
    );
  });

  test('invite, accept (the group comes in), decline, list', async () => {
    const inv = request('invitation', { id: 'in_1', invitation_id: 'in_1', user_id: 'alice', inviter_id: 'bob', from_id: 'bob' });
    const { c, calls } = fakeNode({
      'POST /conversations/12/invitations': inv,
      'POST /invitations/in_1/accept': { ...inv, status: 'accepted' },
      'POST /invitations/in_2/decline': { ...inv, id: 'in_2', status: 'declined' },
      'GET /conversations/12': group(),
      'GET /invitations': { invitations: [inv] },
    });
    await c.invite('12', 'erin', { text: 'come' });
    assert.deepEqual(calls[0].body, { user_id: 'erin', text: 'come' });
    await c.invite('12', 'erin');
    assert.deepEqual(calls[1].body, { user_id: 'erin' });
    assert.equal((await c.acceptInvitation('in_1')).status, 'accepted');
    assert.equal(c.conversations.get('12').name, 'team');
    assert.equal((await c.declineInvitation('in_2')).status, 'declined');
    assert.deepEqual(await c.listInvitations(), [inv]);
  });

  test('accepting when the push came first does not fetch the group again', async () => {
    const inv = request('invitation', { id: 'in_1', conversation_id: '12', status: 'accepted' });
    const { c, calls } = fakeNode({ 'POST /invitations/in_1/accept': inv });
    await c.listConversations(); // the group is known (as after the push)
    await c.acceptInvitation('in_1');
    assert.ok(!calls.some((x) => x.path === '/conversations/12'));
  });
});

describe('friends, direct policy, directory', () => {
  test('requestFriend: pending -> {request}; the other had asked -> {request, conversation}', async () => {
    const fr = request('friend_request', { id: 'fr_1', request_id: 'fr_1', from: 'alice', to: 'bob', from_id: 'alice', user_id: 'bob' });
    const direct = { ...group({ id: '7', conversation_id: '7', type: 'direct', name: '' }), members: ['alice', 'bob'] };
    let answer = fr;
    const { c, calls } = fakeNode({ 'POST /users/bob/friend-requests': () => answer });
    assert.deepEqual(await c.requestFriend('bob', { text: 'hey' }), { request: fr });
    assert.deepEqual(calls[0].body, { text: 'hey' });
    answer = { ...fr, status: 'accepted', conversation: direct };
    const r = await c.requestFriend('bob');
    assert.equal(r.request.status, 'accepted');
    assert.equal(r.conversation.id, '7');
    assert.ok(c.conversations.has('7'));
    answer = { request: { ...fr, status: 'accepted' }, conversation: direct };
    assert.equal((await c.requestFriend('bob')).request.status, 'accepted');
  });

  test('accept / decline / list friend requests, friends, unfriend', async () => {
    const fr = request('friend_request', { id: 'fr_1', from: 'bob', to: 'alice' });
    const direct = { ...group({ id: '8', conversation_id: '8', type: 'direct' }), members: ['alice', 'bob'] };
    const { c, calls } = fakeNode({
      'POST /friend-requests/fr_1/accept': { request: { ...fr, status: 'accepted', conversation_id: '8' }, conversation: direct },
      'POST /friend-requests/fr_2/decline': { ...fr, id: 'fr_2', status: 'declined' },
      'GET /friend-requests': { friend_requests: [fr] },
      'GET /friends': { friends: [{ user_id: 'bob', name: 'Bob', since: 5 }] },
      'DELETE /friends/bob': {},
    });
    const a = await c.acceptFriendRequest('fr_1');
    assert.equal(a.request.status, 'accepted');
    assert.equal(a.conversation.id, '8');
    assert.ok(c.conversations.has('8'));
    assert.equal((await c.declineFriendRequest('fr_2')).status, 'declined');
    assert.deepEqual(await c.listFriendRequests(), [fr]);
    assert.deepEqual(await c.listFriends(), [{ user_id: 'bob', name: 'Bob', since: 5 }]);
    assert.deepEqual(await c.removeFriend('bob'), {});
    assert.deepEqual(
      calls.map((x) => `${x.method} ${x.path}`),
      ['POST /friend-requests/fr_1/accept', 'POST /friend-requests/fr_2/decline', 'GET /friend-requests', 'GET /friends', 'DELETE /friends/bob'],
    );
  });

  test('setDirectPolicy PATCHes /me', async () => {
    const { c, last } = fakeNode({ 'PATCH /me': { user_id: 'alice', direct_policy: 'friends' } });
    assert.equal((await c.setDirectPolicy('friends')).direct_policy, 'friends');
    assert.deepEqual(last().body, { direct_policy: 'friends' });
  });

  test('searchUsers pages with after/next; searchUsersAll walks every page; names are cached', async () => {
    const all = Array.from({ length: 5 }, (_, i) => ({ user_id: `u${i}`, name: `User ${i}` }));
    const { c, calls } = fakeNode();
    const fetchPage = (q, after, limit) => {
      const rest = all.filter((u) => u.user_id.startsWith(q) && (!after || u.user_id > after));
      const users = rest.slice(0, limit);
      return rest.length > limit ? { users, next: users.at(-1).user_id } : { users };
    };
    // The query's order is the SDK's: q, after, limit.
    const { c: d, calls: dcalls } = fakeNode(
      Object.fromEntries(
        [undefined, 'u1', 'u3'].map((after) => [`GET /users?q=u${after ? `&after=${after}` : ''}&limit=2`, fetchPage('u', after, 2)]),
      ),
    );
    const p1 = await d.searchUsers({ q: 'u', limit: 2 });
    assert.deepEqual(p1, { users: all.slice(0, 2), next: 'u1' });
    const p3 = await d.searchUsers({ q: 'u', after: 'u3', limit: 2 });
    assert.deepEqual(p3, { users: all.slice(4) });
    const every = [];
    for await (const u of d.searchUsersAll({ q: 'u', limit: 2 })) every.push(u.user_id);
    assert.deepEqual(every, ['u0', 'u1', 'u2', 'u3', 'u4']);
    assert.deepEqual(await d.getUser('u2'), { user_id: 'u2', name: 'User 2' });
    assert.equal(dcalls.filter((x) => x.path.startsWith('/users/')).length, 0, 'getUser answered from the directory');
    // An empty query is sent as no q (everyone).
    await c.searchUsers().catch(() => {});
    assert.equal(calls.at(-1).path, '/users');
  });
});

describe('pushes and system messages', () => {
  async function connected(routes) {
    const n = fakeNode(routes);
    await n.c.connect();
    await sleep(10);
    return { ...n, ws: n.sockets.at(-1) };
  }

  test('application / invitation / friend_request pushes are events (and `request`)', async () => {
    const { c, ws } = await connected();
    const got = [];
    for (const name of ['application', 'invitation', 'friend_request', 'request']) c.on(name, (r) => got.push([name, r.id]));
    ws.push({ cmd: 'application', data: request('application', { id: 'ap_9' }) });
    ws.push({ cmd: 'invitation', data: request('invitation', { id: 'in_9' }) });
    ws.push({ cmd: 'friend_request', data: request('friend_request', { id: 'fr_9' }) });
    ws.push({ cmd: 'application', data: null });
    assert.deepEqual(got, [
      ['application', 'ap_9'],
      ['request', 'ap_9'],
      ['invitation', 'in_9'],
      ['request', 'in_9'],
      ['friend_request', 'fr_9'],
      ['request', 'fr_9'],
    ]);
    c.close();
  });

  test('conversation pushes for settings and roles carry `event`; the cached object has neither change nor event', async () => {
    const { c, ws } = await connected();
    const events = [];
    c.on('conversation', (conv, info) => events.push(info));
    const ev = { event: 'updated', actor: 'bob', name: 'crew' };
    ws.push({ cmd: 'conversation', data: { ...group({ name: 'crew' }), change: 'updated', event: ev } });
    assert.deepEqual(events[0], { change: 'updated', member: true, joined: false, event: ev });
    const cached = c.conversations.get('12');
    assert.equal(cached.name, 'crew');
    assert.equal(cached.change, undefined);
    assert.equal(cached.event, undefined);
    ws.push({
      cmd: 'conversation',
      data: { ...group({ roles: { alice: 'owner', bob: 'admin' } }), change: 'role_changed', event: JSON.stringify({ event: 'role_changed', actor: 'alice', user_id: 'bob', role: 'admin' }) },
    });
    assert.equal(events[1].event.role, 'admin', 'an event sent as a string is parsed');
    assert.equal(c.conversations.get('12').roles.bob, 'admin');
    ws.push({ cmd: 'conversation', data: { ...group({ owner: 'bob' }), change: 'owner_changed', event: { event: 'owner_changed', actor: 'alice', user_id: 'bob', previous: 'alice' } } });
    assert.equal(events[2].change, 'owner_changed');
    assert.equal(c.conversations.get('12').owner, 'bob');
    c.close();
  });

  test('system messages (live, history) come with their body parsed into `event`', async () => {
    const sys = {
      conversation_id: '12',
      seq: 4,
      publisher_id: 'alice',
      publisher_name: 'Alice',
      type: 'system',
      body: JSON.stringify({ event: 'member_added', actor: 'alice', users: ['carol'], via: 'add' }),
      client_msg_id: '',
      ts: 5,
    };
    const { c, ws } = await connected({
      'GET /conversations/12/messages?before_seq=9007199254740991&limit=50': {
        messages: [{ ...sys, seq: 2, body: '{"event":"updated","actor":"alice","notice":"hi"}' }, { ...sys, seq: 3, body: 'not json' }],
      },
    });
    const got = [];
    c.on('message', (m) => got.push(m));
    ws.push({ cmd: 'msg', data: sys });
    assert.equal(got.length, 1);
    assert.deepEqual(got[0].event, { event: 'member_added', actor: 'alice', users: ['carol'], via: 'add' });
    assert.equal(got[0].body, sys.body, 'the body stays as sent');
    const hist = await c.latest('12');
    assert.deepEqual(hist[0].event, { event: 'updated', actor: 'alice', notice: 'hi' });
    assert.deepEqual(hist[1].event, { event: 'unknown' });
    c.close();
  });

  test('mentions go out with the send (once each); none when empty', async () => {
    const { c, ws } = await connected();
    for (const p of [
      c.send('12', { body: 'hi @bob', mentions: ['bob', 'bob', 'carol'] }),
      c.sendText('12', 'hi @all', { mentions: ['all'] }),
      c.sendText('12', 'plain', { mentions: [] }),
    ])
      p.catch(() => {}); // never acked here: close() rejects them
    const msgs = ws.sent.filter((f) => f.cmd === 'msg').map((f) => f.data);
    assert.deepEqual(msgs[0].mentions, ['bob', 'carol']);
    assert.deepEqual(msgs[1].mentions, ['all']);
    assert.equal('mentions' in msgs[2], false);
    c.close();
  });
});
