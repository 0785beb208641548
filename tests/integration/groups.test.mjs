// Groups: roles, settings and system messages (docs/protocol.md "Groups: roles, settings,
// applications, invitations, friends"): the conversation object's `roles`, `notice` and
// `join_policy`; PATCH (owner and admins), PUT roles and the hand-over (owner only); who may
// remove whom; adding in `invite_only` groups; `max_group_members`; every change stored as a
// `system` message with its own seq (history, live `msg` frames, /offline) and pushed as a
// `conversation` frame carrying the event; `GET /api/v1/groups/{id}`; direct conversations
// refusing all of it.
//
// Raw clients only (lib/http.mjs, lib/ws.mjs): exact status and error codes, exact event bodies,
// and for every refusal a proof that nothing was stored: the conversation (name, notice, policy,
// roles, members, last_seq) is unchanged, and where a push could have gone out, the next real
// change's push is the first one the member sees.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { assertHttpError, assertRange, assertWsError } from './lib/check.mjs';
import {
  addMembers,
  conversation,
  createConversation,
  expectStatus,
  history,
  http,
  lastSeq,
  listApplications,
  listInvitations,
  login,
  makeUser,
  offlineAll,
  patchConversation,
  putRole,
  removeMember,
  sendHttp,
  systemMessages,
  transferOwner,
} from './lib/http.mjs';
import { startNode, useNode } from './lib/node.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

// The abuse limits off: these tests create many users, groups and members in little time.
const FLAGS = ['--rate-register-address', '0', '--rate-conversations-user', '0', '--rate-members-user', '0'];
const h = useNode({ flags: FLAGS });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Fresh users for one test: {short name: {id, token}}, ids `<prefix>-<name>`.
async function users(node, prefix, names) {
  const out = {};
  for (const n of names) out[n] = await makeUser(node, `${prefix}-${n}`);
  return out;
}

async function group(node, owner, members, name) {
  const r = await http(node, 'POST', '/api/v1/conversations', {
    token: owner.token,
    json: { type: 'group', members: members.map((m) => m.id), name },
  });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

// What a refusal must leave as it was.
async function snapshot(node, token, id) {
  const c = await conversation(node, token, id);
  return {
    name: c.name,
    notice: c.notice,
    join_policy: c.join_policy,
    owner: c.owner,
    roles: c.roles,
    members: c.members,
    last_seq: c.last_seq,
  };
}

const isPush = (id, change) => (f) => f.cmd === 'conversation' && f.data?.id === String(id) && f.data.change === change;

// The last stored message of the conversation, which must be a system message; its parsed event.
async function lastEvent(node, token, id) {
  const msgs = await history(node, token, id);
  const m = msgs.at(-1);
  assert.ok(m, 'a message was stored');
  assert.equal(m.type, 'system', `the last message is a system message: ${JSON.stringify(m)}`);
  return { seq: m.seq, event: JSON.parse(m.body), message: m };
}

describe('groups: roles and settings', () => {
  let node;
  before(async () => {
    node = await h.ready;
  });

  test('a group carries roles, notice and join_policy (approval by default); a direct one names its creator owner', async () => {
    const u = await users(node, 'obj', ['own', 'bob', 'carol', 'dan']);
    const g = await group(node, u.own, [u.bob, u.carol], 'team');
    assert.equal(g.type, 'group');
    assert.equal(g.owner, u.own.id);
    assert.deepEqual(g.roles, { [u.own.id]: 'owner', [u.bob.id]: 'member', [u.carol.id]: 'member' });
    assert.equal(g.notice, '');
    assert.equal(g.join_policy, 'approval');
    assert.equal(g.last_seq, 0, 'creating a group stores no message');
    // The same for every member, in GET and in the list.
    for (const who of [u.own, u.bob, u.carol]) {
      const c = await conversation(node, who.token, g.id);
      assert.deepEqual(c.roles, g.roles);
      assert.equal(c.notice, '');
      assert.equal(c.join_policy, 'approval');
      const list = expectStatus(await http(node, 'GET', '/api/v1/conversations', { token: who.token }), 200).json.conversations;
      const mine = list.find((x) => x.id === g.id);
      assert.deepEqual(mine.roles, g.roles);
      assert.equal(mine.join_policy, 'approval');
      assert.equal(mine.notice, '');
    }
    const d = await createConversation(node, u.own.token, 'direct', [u.dan.id]);
    assert.equal(d.type, 'direct');
    assert.deepEqual(d.roles, { [u.own.id]: 'owner', [u.dan.id]: 'member' });
  });

  test('PATCH by the owner and by an admin: 200, an `updated` system message with only what changed, a `conversation` push with the event', async () => {
    const u = await users(node, 'pa', ['own', 'adm', 'mem']);
    const g = await group(node, u.own, [u.adm, u.mem], 'team');
    expectStatus(await putRole(node, u.own.token, g.id, u.adm.id, 'admin'), 200);
    const ws = await WsClient.connect(node, { token: u.mem.token });
    try {
      const seq0 = await lastSeq(node, u.own.token, g.id);
      assert.equal(seq0, 1, 'the role change is seq 1');
      let mark = ws.mark();
      // The owner: the name is the same, only the notice changes.
      const r = await patchConversation(node, u.own.token, g.id, { name: 'team', notice: 'standup at 10' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.id, g.id);
      assert.equal(r.json.name, 'team');
      assert.equal(r.json.notice, 'standup at 10');
      assert.equal(r.json.join_policy, 'approval');
      assert.equal(r.json.last_seq, seq0 + 1);
      const e1 = await lastEvent(node, u.mem.token, g.id);
      assert.equal(e1.seq, seq0 + 1);
      assert.deepEqual(e1.event, { event: 'updated', actor: u.own.id, notice: 'standup at 10' });
      const p1 = await ws.waitFor(isPush(g.id, 'updated'), { from: mark });
      assert.deepEqual(p1.data.event, e1.event);
      assert.equal(p1.data.notice, 'standup at 10');
      assert.equal(p1.data.name, 'team');
      assert.equal(p1.data.muted, false);
      assert.deepEqual(p1.data.roles, { [u.own.id]: 'owner', [u.adm.id]: 'admin', [u.mem.id]: 'member' });
      // The system message also comes live, as a msg frame.
      const live1 = await ws.waitForMsg(g.id, seq0 + 1);
      assert.equal(live1.data.type, 'system');
      assert.deepEqual(JSON.parse(live1.data.body), e1.event);

      // An admin: name and join policy; the notice is repeated unchanged and left out.
      mark = ws.mark();
      const r2 = await patchConversation(node, u.adm.token, g.id, { name: 'team 2', join_policy: 'open', notice: 'standup at 10' });
      assert.equal(r2.status, 200, r2.text);
      assert.equal(r2.json.name, 'team 2');
      assert.equal(r2.json.join_policy, 'open');
      assert.equal(r2.json.notice, 'standup at 10');
      const e2 = await lastEvent(node, u.own.token, g.id);
      assert.equal(e2.seq, seq0 + 2);
      assert.deepEqual(e2.event, { event: 'updated', actor: u.adm.id, name: 'team 2', join_policy: 'open' });
      const p2 = await ws.waitFor(isPush(g.id, 'updated'), { from: mark });
      assert.deepEqual(p2.data.event, e2.event);
      assert.equal(p2.data.join_policy, 'open');

      // A notice may hold newlines and tabs, and any UTF-8; every member reads the same.
      const notice = 'line 1\n\tline 2 — été 😀';
      const r3 = await patchConversation(node, u.adm.token, g.id, { notice });
      assert.equal(r3.status, 200, r3.text);
      assert.equal(r3.json.notice, notice);
      assert.deepEqual((await lastEvent(node, u.mem.token, g.id)).event, { event: 'updated', actor: u.adm.id, notice });
      for (const who of [u.own, u.adm, u.mem]) assert.equal((await conversation(node, who.token, g.id)).notice, notice);
      // 4,096 bytes exactly (2,048 two-byte characters) is allowed.
      const r4 = await patchConversation(node, u.own.token, g.id, { notice: 'é'.repeat(2048) });
      assert.equal(r4.status, 200, r4.text);
      assert.equal((await conversation(node, u.mem.token, g.id)).notice, 'é'.repeat(2048));
      assert.deepEqual(
        (await systemMessages(node, u.mem.token, g.id)).map((m) => m.seq),
        [1, 2, 3, 4, 5],
        'one system message per change, gapless',
      );
    } finally {
      await closeAll(ws);
    }
  });

  test('PATCH by a plain member, a non-member, or on an unknown conversation: refused, nothing stored, nothing pushed', async () => {
    const u = await users(node, 'pm', ['own', 'mem', 'out']);
    const g = await group(node, u.own, [u.mem], 'team');
    const ws = await WsClient.connect(node, { token: u.mem.token });
    try {
      const before = await snapshot(node, u.own.token, g.id);
      const mark = ws.mark();
      assertHttpError(await patchConversation(node, u.mem.token, g.id, { name: 'mine now' }), 403, 'forbidden');
      assertHttpError(await patchConversation(node, u.mem.token, g.id, { join_policy: 'open' }), 403, 'forbidden');
      assertHttpError(await patchConversation(node, u.out.token, g.id, { notice: 'hijacked' }), 403, 'forbidden');
      assertHttpError(await patchConversation(node, u.own.token, '987654321', { name: 'x' }), 404, 'not_found');
      assertHttpError(await patchConversation(node, u.own.token, 'abc', { name: 'x' }), 404, 'not_found');
      assertHttpError(await http(node, 'PATCH', `/api/v1/conversations/${g.id}`, { json: { name: 'x' } }), 401, 'unauthorized');
      assert.deepEqual(await snapshot(node, u.own.token, g.id), before);
      // The next real change is the first push the member sees.
      expectStatus(await patchConversation(node, u.own.token, g.id, { notice: 'real' }), 200);
      const p = await ws.waitFor(isPush(g.id, 'updated'), { from: mark });
      assert.deepEqual(p.data.event, { event: 'updated', actor: u.own.id, notice: 'real' });
      assert.equal(ws.frames.slice(mark).filter((f) => f.cmd === 'conversation').length, 1);
      assert.equal((await lastEvent(node, u.own.token, g.id)).seq, 1);
    } finally {
      await closeAll(ws);
    }
  });

  describe('PATCH with bad values: 400 (413 over a length limit), nothing stored', () => {
    let u;
    let g;
    let snap0;
    before(async () => {
      u = await users(node, 'pb', ['own', 'mem']);
      g = await group(node, u.own, [u.mem], 'team');
      expectStatus(await patchConversation(node, u.own.token, g.id, { notice: 'kept' }), 200);
      snap0 = await snapshot(node, u.own.token, g.id);
    });
    const unchanged = async () => {
      assert.deepEqual(await snapshot(node, u.own.token, g.id), snap0, 'nothing changed');
      assert.equal((await systemMessages(node, u.own.token, g.id)).length, 1, 'only the first, good PATCH is in history');
    };
    const bad = [
      ['join_policy "x"', { join_policy: 'x' }, 400, 'bad_request'],
      ['join_policy "OPEN"', { join_policy: 'OPEN' }, 400, 'bad_request'],
      ['join_policy 1', { join_policy: 1 }, 400, 'bad_request'],
      ['join_policy null', { join_policy: null }, 400, 'bad_request'],
      ['notice 7', { notice: 7 }, 400, 'bad_request'],
      ['name ["x"]', { name: ['x'] }, 400, 'bad_request'],
      ['notice with NUL', { notice: 'nul \u0000 inside' }, 400, 'bad_request'],
      ['notice with BEL', { notice: 'bell \u0007' }, 400, 'bad_request'],
      ['notice with ESC', { notice: 'escape \u001b[31m red' }, 400, 'bad_request'],
      ['notice with CR', { notice: 'carriage\rreturn' }, 400, 'bad_request'],
      ['notice with DEL', { notice: 'del \u007f' }, 400, 'bad_request'],
      ['notice with C1 NEL', { notice: 'c1 \u0085 next line' }, 400, 'bad_request'],
      ['notice with RLO (U+202E)', { notice: 'bidi \u202e override' }, 400, 'bad_request'],
      ['notice with LRO (U+202D)', { notice: 'bidi \u202d override' }, 400, 'bad_request'],
      ['name with RLO', { name: 'evil\u202egnp.exe' }, 400, 'bad_request'],
      ['name with an isolate (U+2066)', { name: 'isolate \u2066x\u2069' }, 400, 'bad_request'],
      ['name with a tab', { name: 'tab\tname' }, 400, 'bad_request'],
      // "A string field over its limit is too_large, not bad_request" (Limits).
      ['notice of 4,097 bytes', { notice: 'a'.repeat(4097) }, 413, 'too_large'],
      ['notice of 4,097 bytes (multi-byte)', { notice: 'é'.repeat(2048) + 'a' }, 413, 'too_large'],
      ['name of 257 bytes', { name: 'n'.repeat(257) }, 413, 'too_large'],
      // A bad field spoils the good ones: nothing of it is applied.
      ['a good name with a bad join_policy', { name: 'new name', join_policy: 'x' }, 400, 'bad_request'],
      ['a good notice with a bad name', { notice: 'new notice', name: 'bad\u0001' }, 400, 'bad_request'],
      // At least one field.
      ['an empty object', {}, 400, 'bad_request'],
      ['only an unknown field', { unknown: 'field' }, 400, 'bad_request'],
    ];
    for (const [label, json, status, code] of bad) {
      test(`${label}: ${status} ${code}`, async () => {
        assertHttpError(await patchConversation(node, u.own.token, g.id, json), status, code);
        await unchanged();
      });
    }
    // No body, or a body that is not a JSON object, or not UTF-8.
    const raw = [
      ['no body', undefined],
      ['an empty body', ''],
      ['a JSON array', '[]'],
      ['truncated JSON', '{"name": '],
      ['a lone surrogate escape', '{"notice": "\\ud800"}'],
      ['invalid UTF-8 bytes', Buffer.concat([Buffer.from('{"notice": "'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')])],
    ];
    for (const [label, body] of raw) {
      test(`${label}: 400 bad_json`, async () => {
        const r = await http(node, 'PATCH', `/api/v1/conversations/${g.id}`, {
          token: u.own.token,
          body,
          headers: { 'Content-Type': 'application/json' },
        });
        assertHttpError(r, 400, 'bad_json');
        await unchanged();
      });
    }
  });

  test('a PATCH that changes nothing: 200, no system message, no push', async () => {
    const u = await users(node, 'pn', ['own', 'mem']);
    const g = await group(node, u.own, [u.mem], 'same');
    expectStatus(await patchConversation(node, u.own.token, g.id, { notice: 'n1', join_policy: 'open' }), 200);
    const ws = await WsClient.connect(node, { token: u.mem.token });
    try {
      const before = await snapshot(node, u.own.token, g.id);
      const mark = ws.mark();
      for (const json of [{ name: 'same' }, { notice: 'n1' }, { join_policy: 'open' }, { name: 'same', notice: 'n1', join_policy: 'open' }]) {
        const r = await patchConversation(node, u.own.token, g.id, json);
        assert.equal(r.status, 200, `${JSON.stringify(json)}: ${r.text}`);
        assert.equal(r.json.last_seq, before.last_seq);
        assert.equal(r.json.name, 'same');
      }
      assert.deepEqual(await snapshot(node, u.own.token, g.id), before);
      // The next real change is seq last+1 and the first push since the mark.
      expectStatus(await patchConversation(node, u.own.token, g.id, { notice: 'n2' }), 200);
      const p = await ws.waitFor(isPush(g.id, 'updated'), { from: mark });
      assert.deepEqual(p.data.event, { event: 'updated', actor: u.own.id, notice: 'n2' });
      assert.equal(ws.frames.slice(mark).filter((f) => f.cmd === 'conversation').length, 1);
      assert.equal((await lastEvent(node, u.own.token, g.id)).seq, before.last_seq + 1);
      await ws.waitForMsg(g.id, before.last_seq + 1);
      const live = ws.msgs(g.id).map((m) => m.seq);
      assert.deepEqual(live, [before.last_seq + 1], 'no msg frame for the no-op PATCHes');
    } finally {
      await closeAll(ws);
    }
  });

  test('PUT roles: the owner makes and unmakes admins (role_changed); admins, members and non-members may not', async () => {
    const u = await users(node, 'ro', ['own', 'bob', 'carol', 'out']);
    const g = await group(node, u.own, [u.bob, u.carol], 'roles');
    const ws = await WsClient.connect(node, { token: u.carol.token });
    try {
      let mark = ws.mark();
      const r = await putRole(node, u.own.token, g.id, u.bob.id, 'admin');
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json.roles, { [u.own.id]: 'owner', [u.bob.id]: 'admin', [u.carol.id]: 'member' });
      const e = await lastEvent(node, u.carol.token, g.id);
      assert.equal(e.seq, 1);
      assert.deepEqual(e.event, { event: 'role_changed', actor: u.own.id, user_id: u.bob.id, role: 'admin' });
      const p = await ws.waitFor(isPush(g.id, 'role_changed'), { from: mark });
      assert.deepEqual(p.data.event, e.event);
      assert.equal(p.data.roles[u.bob.id], 'admin');

      // The role bob has already: 200, nothing stored.
      const same = await putRole(node, u.own.token, g.id, u.bob.id, 'admin');
      assert.equal(same.status, 200, same.text);
      assert.equal(same.json.last_seq, 1);
      // A user id in upper case is the same user.
      const upper = await putRole(node, u.own.token, g.id, u.bob.id.toUpperCase(), 'admin');
      assert.equal(upper.status, 200, upper.text);
      assert.equal(upper.json.last_seq, 1);

      const before = await snapshot(node, u.own.token, g.id);
      mark = ws.mark();
      // An admin, a member, a non-member: 403.
      assertHttpError(await putRole(node, u.bob.token, g.id, u.carol.id, 'admin'), 403, 'forbidden');
      assertHttpError(await putRole(node, u.bob.token, g.id, u.bob.id, 'member'), 403, 'forbidden');
      assertHttpError(await putRole(node, u.carol.token, g.id, u.carol.id, 'admin'), 403, 'forbidden');
      assertHttpError(await putRole(node, u.out.token, g.id, u.carol.id, 'admin'), 403, 'forbidden');
      // "owner" is a hand-over, not a role; the owner's own role; unknown roles and shapes.
      assertHttpError(await putRole(node, u.own.token, g.id, u.bob.id, 'owner'), 400, 'bad_request');
      assertHttpError(await putRole(node, u.own.token, g.id, u.own.id, 'member'), 400, 'bad_request');
      assertHttpError(await putRole(node, u.own.token, g.id, u.own.id, 'admin'), 400, 'bad_request');
      assertHttpError(await putRole(node, u.own.token, g.id, u.carol.id, 'x'), 400, 'bad_request');
      assertHttpError(await putRole(node, u.own.token, g.id, u.carol.id, 1), 400, 'bad_request');
      assertHttpError(await putRole(node, u.own.token, g.id, u.carol.id, null), 400, 'bad_request');
      assertHttpError(
        await http(node, 'PUT', `/api/v1/conversations/${g.id}/roles/${u.carol.id}`, { token: u.own.token, json: {} }),
        400,
        'bad_request',
      );
      // Not a member, no such user, no such conversation.
      assertHttpError(await putRole(node, u.own.token, g.id, u.out.id, 'admin'), 404, 'not_found');
      assertHttpError(await putRole(node, u.own.token, g.id, 'ro-nobody', 'admin'), 404, 'not_found');
      assertHttpError(await putRole(node, u.own.token, '987654321', u.carol.id, 'admin'), 404, 'not_found');
      assert.deepEqual(await snapshot(node, u.own.token, g.id), before, 'nothing changed');

      // The owner makes bob a member again: the next push and seq.
      const back = await putRole(node, u.own.token, g.id, u.bob.id, 'member');
      assert.equal(back.status, 200, back.text);
      assert.equal(back.json.roles[u.bob.id], 'member');
      const e2 = await lastEvent(node, u.own.token, g.id);
      assert.equal(e2.seq, 2);
      assert.deepEqual(e2.event, { event: 'role_changed', actor: u.own.id, user_id: u.bob.id, role: 'member' });
      const p2 = await ws.waitFor(isPush(g.id, 'role_changed'), { from: mark });
      assert.deepEqual(p2.data.event, e2.event, 'the first role_changed push after the refusals is the real one');
    } finally {
      await closeAll(ws);
    }
  });

  test('hand-over: the new owner, the previous one an admin, owner_changed; only the owner may', async () => {
    const u = await users(node, 'ho', ['own', 'bob', 'carol', 'out']);
    const g = await group(node, u.own, [u.bob, u.carol], 'handover');
    const ws = await WsClient.connect(node, { token: u.carol.token });
    try {
      let before = await snapshot(node, u.own.token, g.id);
      // Not the owner: 403; not a member: 404; no user_id: 400.
      assertHttpError(await transferOwner(node, u.bob.token, g.id, u.bob.id), 403, 'forbidden');
      assertHttpError(await transferOwner(node, u.out.token, g.id, u.out.id), 403, 'forbidden');
      assertHttpError(await transferOwner(node, u.own.token, g.id, u.out.id), 404, 'not_found');
      assertHttpError(await http(node, 'POST', `/api/v1/conversations/${g.id}/owner`, { token: u.own.token, json: {} }), 400, 'bad_request');
      assertHttpError(await http(node, 'POST', `/api/v1/conversations/${g.id}/owner`, { token: u.own.token, json: { user_id: 5 } }), 400, 'bad_request');
      assert.deepEqual(await snapshot(node, u.own.token, g.id), before);

      const mark = ws.mark();
      const r = await transferOwner(node, u.own.token, g.id, u.bob.id);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.owner, u.bob.id);
      assert.deepEqual(r.json.roles, { [u.own.id]: 'admin', [u.bob.id]: 'owner', [u.carol.id]: 'member' });
      assert.deepEqual(r.json.members, before.members, 'nobody joined or left');
      const e = await lastEvent(node, u.carol.token, g.id);
      assert.equal(e.seq, before.last_seq + 1);
      assert.deepEqual(e.event, { event: 'owner_changed', actor: u.own.id, user_id: u.bob.id, previous: u.own.id });
      const p = await ws.waitFor(isPush(g.id, 'owner_changed'), { from: mark });
      assert.deepEqual(p.data.event, e.event);
      assert.equal(p.data.owner, u.bob.id);
      assert.equal(p.data.roles[u.own.id], 'admin');
      assert.equal(
        ws.frames.slice(mark).filter((f) => f.cmd === 'conversation').length,
        1,
        'one push for the hand-over (the refusals pushed nothing)',
      );

      // The previous owner is an admin now: no roles, no hand-over; the new owner has both.
      before = await snapshot(node, u.own.token, g.id);
      assertHttpError(await putRole(node, u.own.token, g.id, u.carol.id, 'admin'), 403, 'forbidden');
      assertHttpError(await transferOwner(node, u.own.token, g.id, u.own.id), 403, 'forbidden');
      assert.deepEqual(await snapshot(node, u.own.token, g.id), before);
      expectStatus(await putRole(node, u.bob.token, g.id, u.carol.id, 'admin'), 200);
      // ...but an admin still changes the settings.
      expectStatus(await patchConversation(node, u.own.token, g.id, { notice: 'still admin' }), 200);
    } finally {
      await closeAll(ws);
    }
  });

  test('removals: the owner removes anyone, an admin members only, a member nobody; member_removed and member_left', async () => {
    const u = await users(node, 'rm', ['own', 'adm', 'adm2', 'carol', 'dan', 'erin']);
    const g = await group(node, u.own, [u.adm, u.adm2, u.carol, u.dan, u.erin], 'removals');
    expectStatus(await putRole(node, u.own.token, g.id, u.adm.id, 'admin'), 200);
    expectStatus(await putRole(node, u.own.token, g.id, u.adm2.id, 'admin'), 200);
    const wsDan = await WsClient.connect(node, { token: u.dan.token });
    const wsCarol = await WsClient.connect(node, { token: u.carol.token });
    try {
      const before = await snapshot(node, u.own.token, g.id);
      assertHttpError(await removeMember(node, u.carol.token, g.id, u.dan.id), 403, 'forbidden');
      assertHttpError(await removeMember(node, u.carol.token, g.id, u.adm.id), 403, 'forbidden');
      assertHttpError(await removeMember(node, u.adm.token, g.id, u.adm2.id), 403, 'forbidden');
      assertHttpError(await removeMember(node, u.adm.token, g.id, u.own.id), 403, 'forbidden');
      assert.deepEqual(await snapshot(node, u.own.token, g.id), before, 'nothing changed');

      // An admin removes a member.
      const markC = wsCarol.mark();
      const r = await removeMember(node, u.adm.token, g.id, u.dan.id);
      assert.equal(r.status, 200, r.text);
      assert.ok(!r.json.members.includes(u.dan.id));
      assert.equal(r.json.roles[u.dan.id], undefined);
      const e1 = await lastEvent(node, u.carol.token, g.id);
      assert.equal(e1.seq, before.last_seq + 1);
      assert.deepEqual(e1.event, { event: 'member_removed', actor: u.adm.id, user_id: u.dan.id });
      const gone = await wsDan.waitFor(isPush(g.id, 'member_removed'));
      assert.ok(!gone.data.members.includes(u.dan.id), 'the removed member is told');
      const pc = await wsCarol.waitFor(isPush(g.id, 'member_removed'), { from: markC });
      assert.deepEqual(pc.data.event, e1.event);
      assertHttpError(await http(node, 'GET', `/api/v1/conversations/${g.id}/messages`, { token: u.dan.token }), 403, 'forbidden');

      // The owner removes an admin.
      const r2 = await removeMember(node, u.own.token, g.id, u.adm2.id);
      assert.equal(r2.status, 200, r2.text);
      assert.deepEqual((await lastEvent(node, u.carol.token, g.id)).event, { event: 'member_removed', actor: u.own.id, user_id: u.adm2.id });

      // A member leaves: member_left.
      const r3 = await removeMember(node, u.erin.token, g.id, u.erin.id);
      assert.equal(r3.status, 200, r3.text);
      const e3 = await lastEvent(node, u.carol.token, g.id);
      assert.equal(e3.seq, before.last_seq + 3);
      assert.deepEqual(e3.event, { event: 'member_left', actor: u.erin.id, user_id: u.erin.id });
      // An admin leaves too (anyone may leave).
      expectStatus(await removeMember(node, u.adm.token, g.id, u.adm.id), 200);
      assert.deepEqual((await lastEvent(node, u.carol.token, g.id)).event, { event: 'member_left', actor: u.adm.id, user_id: u.adm.id });
      const after = await conversation(node, u.own.token, g.id);
      assert.deepEqual(after.members, before.members.filter((m) => m === u.own.id || m === u.carol.id));
      assert.deepEqual(after.roles, { [u.own.id]: 'owner', [u.carol.id]: 'member' });
      // Removing someone no longer in: 404, nothing stored.
      assertHttpError(await removeMember(node, u.own.token, g.id, u.dan.id), 404, 'not_found');
      assert.equal(await lastSeq(node, u.own.token, g.id), before.last_seq + 4);
    } finally {
      await closeAll(wsDan, wsCarol);
    }
  });

  test('the owner leaving: the admin who joined earliest becomes the owner, or else the earliest member', async () => {
    const u = await users(node, 'ol', ['own', 'zed', 'amy', 'max']);
    const g = await group(node, u.own, [u.zed], 'succession');
    await sleep(5); // distinct join times
    expectStatus(await http(node, 'POST', `/api/v1/conversations/${g.id}/members`, { token: u.own.token, json: { members: [u.amy.id] } }), 200);
    await sleep(5);
    expectStatus(await http(node, 'POST', `/api/v1/conversations/${g.id}/members`, { token: u.own.token, json: { members: [u.max.id] } }), 200);
    // amy is made an admin first, zed later: zed joined earlier, so zed is the successor.
    expectStatus(await putRole(node, u.own.token, g.id, u.amy.id, 'admin'), 200);
    expectStatus(await putRole(node, u.own.token, g.id, u.zed.id, 'admin'), 200);
    const c0 = await conversation(node, u.own.token, g.id);
    assert.deepEqual(c0.members, [u.own.id, u.zed.id, u.amy.id, u.max.id], 'members in the order they joined');
    const ws = await WsClient.connect(node, { token: u.max.token });
    try {
      const r = await removeMember(node, u.own.token, g.id, u.own.id);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.owner, u.zed.id);
      assert.deepEqual(r.json.roles, { [u.zed.id]: 'owner', [u.amy.id]: 'admin', [u.max.id]: 'member' });
      const sys = await systemMessages(node, u.max.token, g.id, `?after_seq=${c0.last_seq}`);
      assert.deepEqual(sys.map((m) => m.seq), [c0.last_seq + 1, c0.last_seq + 2], 'two system messages, consecutive seqs');
      const events = sys.map((m) => m.event);
      const left = events.find((e) => e.event === 'member_left');
      const changed = events.find((e) => e.event === 'owner_changed');
      assert.deepEqual(left, { event: 'member_left', actor: u.own.id, user_id: u.own.id }, JSON.stringify(events));
      assert.deepEqual(changed, { event: 'owner_changed', actor: u.own.id, user_id: u.zed.id, previous: u.own.id }, JSON.stringify(events));
      // The new owner acts as one.
      expectStatus(await putRole(node, u.zed.token, g.id, u.max.id, 'admin'), 200);
      // Each change is a push with its event: the hand-over too.
      const pl = await ws.waitFor(isPush(g.id, 'member_removed'));
      assert.deepEqual(pl.data.event, left);
      const p = await ws.waitFor(isPush(g.id, 'owner_changed'));
      assert.equal(p.data.owner, u.zed.id);
      assert.deepEqual(p.data.event, changed);
    } finally {
      await closeAll(ws);
    }

  });

  test('the owner leaving a group without admins: the member who joined earliest becomes the owner', async () => {
    const v = await users(node, 'ol2', ['own', 'yan', 'abe']);
    const g2 = await group(node, v.own, [v.yan], 'no admins');
    await sleep(5);
    expectStatus(await http(node, 'POST', `/api/v1/conversations/${g2.id}/members`, { token: v.own.token, json: { members: [v.abe.id] } }), 200);
    const r2 = await removeMember(node, v.own.token, g2.id, v.own.id);
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.json.owner, v.yan.id);
    assert.deepEqual(r2.json.roles, { [v.yan.id]: 'owner', [v.abe.id]: 'member' });
    const ev = (await systemMessages(node, v.yan.token, g2.id)).map((m) => m.event);
    assert.ok(
      ev.some((e) => e.event === 'owner_changed' && e.user_id === v.yan.id && e.previous === v.own.id),
      JSON.stringify(ev),
    );
  });

  test('adding members: any member in an approval group, only the owner and admins in an invite_only one (member_added, via add)', async () => {
    const u = await users(node, 'ad', ['own', 'adm', 'mem', 'dan', 'erin', 'fay']);
    const g = await group(node, u.own, [u.adm, u.mem], 'adding');
    expectStatus(await putRole(node, u.own.token, g.id, u.adm.id, 'admin'), 200);
    // Approval (the default): a member adds.
    const r = await addMembers(node, u.mem.token, g.id, [u.dan.id]);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.roles[u.dan.id], 'member');
    assert.deepEqual((await lastEvent(node, u.own.token, g.id)).event, { event: 'member_added', actor: u.mem.id, users: [u.dan.id], via: 'add' });
    // Already in: ignored, nothing stored.
    const seq = await lastSeq(node, u.own.token, g.id);
    const again = await addMembers(node, u.mem.token, g.id, [u.dan.id]);
    assert.equal(again.status, 200, again.text);
    assert.equal(await lastSeq(node, u.own.token, g.id), seq);

    expectStatus(await patchConversation(node, u.own.token, g.id, { join_policy: 'invite_only' }), 200);
    const before = await snapshot(node, u.own.token, g.id);
    assertHttpError(await addMembers(node, u.mem.token, g.id, [u.erin.id]), 403, 'forbidden');
    assertHttpError(await http(node, 'POST', `/api/v1/conversations/${g.id}/members`, { token: u.dan.token, json: { user_id: u.erin.id } }), 403, 'forbidden');
    assert.deepEqual(await snapshot(node, u.own.token, g.id), before, 'nothing stored');
    // The admin and the owner may.
    const ra = await addMembers(node, u.adm.token, g.id, [u.erin.id]);
    assert.equal(ra.status, 200, ra.text);
    const e = await lastEvent(node, u.own.token, g.id);
    assert.equal(e.seq, before.last_seq + 1);
    assert.deepEqual(e.event, { event: 'member_added', actor: u.adm.id, users: [u.erin.id], via: 'add' });
    expectStatus(await addMembers(node, u.own.token, g.id, [u.fay.id]), 200);
    assert.deepEqual((await conversation(node, u.own.token, g.id)).members, [...before.members, u.erin.id, u.fay.id]);
  });

  describe('--max-group-members 3: adding, applying, approving, accepting or joining past it is 403 "full", nothing stored', () => {
    let n;
    let k = 0;
    before(async () => {
      n = await startNode({ flags: [...FLAGS, '--max-group-members', '3'] });
    });
    after(async () => {
      if (n) await n.stop({ removeData: true });
    });
    // A full group of three (owner, bob, carol) and two outsiders, fresh for each test.
    const full3 = async () => {
      k += 1;
      const u = await users(n, `lim${k}`, ['own', 'bob', 'carol', 'dan', 'erin']);
      const g = await group(n, u.own, [u.bob, u.carol], 'three');
      assert.equal(g.members.length, 3);
      return { u, g };
    };

    test('adding a fourth: 403 "the group is full", nothing stored', async () => {
      const { u, g } = await full3();
      const before = await snapshot(n, u.own.token, g.id);
      const r = await addMembers(n, u.own.token, g.id, [u.dan.id]);
      assertHttpError(r, 403, 'forbidden');
      assert.match(r.json.error.message, /full/);
      const r2 = await addMembers(n, u.own.token, g.id, [u.dan.id, u.erin.id]);
      assertHttpError(r2, 403, 'forbidden');
      assert.deepEqual(await snapshot(n, u.own.token, g.id), before, 'nothing stored');
    });

    test('applying to a full approval group: 403, no application stored', async () => {
      const { u, g } = await full3();
      const before = await snapshot(n, u.own.token, g.id);
      assertHttpError(await http(n, 'POST', `/api/v1/conversations/${g.id}/applications`, { token: u.dan.token, json: {} }), 403, 'forbidden');
      assert.deepEqual(await listApplications(n, u.own.token, g.id), []);
      assert.deepEqual(await listApplications(n, u.dan.token), []);
      assert.deepEqual(await snapshot(n, u.own.token, g.id), before, 'nothing stored');
    });

    test('joining a full open group: 403, nothing stored', async () => {
      const { u, g } = await full3();
      expectStatus(await patchConversation(n, u.own.token, g.id, { join_policy: 'open' }), 200);
      const before = await snapshot(n, u.own.token, g.id);
      assertHttpError(await http(n, 'POST', `/api/v1/conversations/${g.id}/applications`, { token: u.dan.token, json: {} }), 403, 'forbidden');
      assert.deepEqual(await snapshot(n, u.own.token, g.id), before, 'nothing stored');
      assert.deepEqual(await listApplications(n, u.dan.token), []);
    });

    test('approving an application or accepting an invitation once the group filled up: 403, still pending; with room again, they go through', async () => {
      const { u, g } = await full3();
      // Room for one: dan applies, erin is invited; then carol comes back and the room is taken.
      expectStatus(await removeMember(n, u.carol.token, g.id, u.carol.id), 200);
      const ap = await http(n, 'POST', `/api/v1/conversations/${g.id}/applications`, { token: u.dan.token, json: { text: 'me' } });
      assert.equal(ap.status, 201, ap.text);
      const inv = await http(n, 'POST', `/api/v1/conversations/${g.id}/invitations`, { token: u.own.token, json: { user_id: u.erin.id } });
      assert.equal(inv.status, 201, inv.text);
      expectStatus(await addMembers(n, u.own.token, g.id, [u.carol.id]), 200);
      const before = await snapshot(n, u.own.token, g.id);
      assert.equal(before.members.length, 3);
      const appr = await http(n, 'POST', `/api/v1/applications/${ap.json.id}/approve`, { token: u.own.token });
      assertHttpError(appr, 403, 'forbidden');
      assert.match(appr.json.error.message, /full/);
      const acc = await http(n, 'POST', `/api/v1/invitations/${inv.json.id}/accept`, { token: u.erin.token });
      assertHttpError(acc, 403, 'forbidden');
      assert.match(acc.json.error.message, /full/);
      assert.deepEqual(await snapshot(n, u.own.token, g.id), before, 'nothing stored');
      assert.deepEqual((await listApplications(n, u.own.token, g.id)).map((a) => [a.id, a.status]), [[ap.json.id, 'pending']]);
      assert.deepEqual((await listInvitations(n, u.erin.token)).map((i) => [i.id, i.status]), [[inv.json.id, 'pending']]);
      // Room again: the pending application is approved, then the invitation fills the last place.
      expectStatus(await removeMember(n, u.own.token, g.id, u.carol.id), 200);
      expectStatus(await removeMember(n, u.own.token, g.id, u.bob.id), 200);
      const ok = await http(n, 'POST', `/api/v1/applications/${ap.json.id}/approve`, { token: u.own.token });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.json.status, 'approved');
      const ok2 = await http(n, 'POST', `/api/v1/invitations/${inv.json.id}/accept`, { token: u.erin.token });
      assert.equal(ok2.status, 200, ok2.text);
      assert.equal(ok2.json.status, 'accepted');
      assert.deepEqual([...(await conversation(n, u.own.token, g.id)).members].sort(), [u.dan.id, u.erin.id, u.own.id].sort());
    });
  });

  test('system messages: type system, a JSON body {event, actor, …}, their own seqs in order, live on the WebSocket and in /offline', async () => {
    const u = await users(node, 'sm', ['own', 'bob', 'carol']);
    const g = await group(node, u.own, [u.bob], 'sys');
    const ws = await WsClient.connect(node, { token: u.bob.token });
    try {
      expectStatus(await sendHttp(node, u.own.token, g.id, { body: 'hello', client_msg_id: 'sm-1' }), 201); // 1
      expectStatus(await patchConversation(node, u.own.token, g.id, { notice: 'read me' }), 200); // 2
      expectStatus(await addMembers(node, u.own.token, g.id, [u.carol.id]), 200); // 3
      expectStatus(await putRole(node, u.own.token, g.id, u.carol.id, 'admin'), 200); // 4
      const ack = await ws.send({ conversation_id: g.id, body: 'after', client_msg_id: 'sm-2' }); // 5
      assert.equal(ack.seq, 5, 'system messages take seqs like any other message');
      await ws.waitForMsg(g.id, 5);
      assertRange(ws.msgs(g.id).map((m) => m.seq), 1, 5, 'live stream');
      const stored = await history(node, u.bob.token, g.id);
      assertRange(stored.map((m) => m.seq), 1, 5, 'history');
      assert.deepEqual(ws.msgs(g.id), stored, 'live frames are the stored messages');
      assert.deepEqual(stored.map((m) => m.type), ['text', 'system', 'system', 'system', 'text']);
      const sys = stored.filter((m) => m.type === 'system');
      for (const m of sys) {
        assert.equal(typeof m.body, 'string', 'the body is a string');
        assert.equal(m.conversation_id, g.id);
        assert.equal(typeof m.ts, 'number');
      }
      assert.deepEqual(sys.map((m) => JSON.parse(m.body)), [
        { event: 'updated', actor: u.own.id, notice: 'read me' },
        { event: 'member_added', actor: u.own.id, users: [u.carol.id], via: 'add' },
        { event: 'role_changed', actor: u.own.id, user_id: u.carol.id, role: 'admin' },
      ]);
      // A device that was away gets them through /offline, in order.
      const away = await login(node, u.bob.id, 'away');
      const off = (await offlineAll(node, away)).filter((m) => m.conversation_id === g.id);
      assert.deepEqual(off, stored);
    } finally {
      await closeAll(ws);
    }
  });

  test('clients cannot send system messages: 400 over HTTP and WebSocket, nothing stored', async () => {
    const u = await users(node, 'cs', ['own', 'bob']);
    const g = await group(node, u.own, [u.bob], 'forge');
    const ws = await WsClient.connect(node, { token: u.bob.token });
    try {
      const forged = JSON.stringify({ event: 'owner_changed', actor: u.own.id, user_id: u.bob.id, previous: u.own.id });
      assertHttpError(await sendHttp(node, u.bob.token, g.id, { type: 'system', body: forged, client_msg_id: 'f1' }), 400, 'bad_request');
      assertHttpError(await sendHttp(node, u.own.token, g.id, { type: 'system', body: forged }), 400, 'bad_request');
      assertHttpError(await sendHttp(node, u.own.token, g.id, { type: 'SYSTEM', body: forged }), 400, 'bad_request');
      assertWsError(await ws.request('msg', { conversation_id: g.id, type: 'system', body: forged, client_msg_id: 'f2' }), 'bad_request');
      const before = await snapshot(node, u.own.token, g.id);
      assert.equal(before.last_seq, 0, 'nothing stored');
      assert.equal(before.owner, u.own.id);
      // The client_msg_ids were not taken either.
      const ok = await sendHttp(node, u.bob.token, g.id, { body: 'real', client_msg_id: 'f1' });
      assert.equal(ok.status, 201, ok.text);
      assert.equal(ok.json.seq, 1);
      assert.equal((await ws.waitForMsg(g.id, 1)).data.type, 'text');
    } finally {
      await closeAll(ws);
    }
  });

  test('GET /api/v1/groups/{id}: what a non-member may see', async () => {
    const u = await users(node, 'gg', ['own', 'bob', 'out']);
    const g = await group(node, u.own, [u.bob], 'public face');
    expectStatus(await patchConversation(node, u.own.token, g.id, { notice: 'secret notice' }), 200);
    expectStatus(await sendHttp(node, u.own.token, g.id, { body: 'secret message' }), 201);
    const r = await http(node, 'GET', `/api/v1/groups/${g.id}`, { token: u.out.token });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.conversation_id, g.id);
    assert.equal(r.json.name, 'public face');
    assert.equal(r.json.join_policy, 'approval');
    assert.equal(r.json.member_count, 2);
    assert.equal(r.json.member, false);
    for (const k of ['members', 'roles', 'notice', 'last_seq'])
      assert.equal(r.json[k], undefined, `a non-member is not shown ${k}: ${r.text}`);
    assert.ok(!r.text.includes('secret'), r.text);
    const m = await http(node, 'GET', `/api/v1/groups/${g.id}`, { token: u.bob.token });
    assert.equal(m.status, 200, m.text);
    assert.equal(m.json.member, true);
    assert.equal(m.json.member_count, 2);
    // Unknown, not a number, a direct conversation: 404; no token: 401.
    assertHttpError(await http(node, 'GET', '/api/v1/groups/987654321', { token: u.out.token }), 404, 'not_found');
    const d = await createConversation(node, u.own.token, 'direct', [u.bob.id]);
    assertHttpError(await http(node, 'GET', `/api/v1/groups/${d.id}`, { token: u.out.token }), 404, 'not_found');
    assertHttpError(await http(node, 'GET', `/api/v1/groups/${d.id}`, { token: u.bob.token }), 404, 'not_found');
    assertHttpError(await http(node, 'GET', `/api/v1/groups/${g.id}`), 401, 'unauthorized');
    // Not a number: no such group, as for GET /api/v1/conversations/{id}.
    assertHttpError(await http(node, 'GET', '/api/v1/groups/abc', { token: u.out.token }), 404, 'not_found');
  });

  test('a direct conversation refuses PATCH, roles and the hand-over: 400, nothing stored', async () => {
    const u = await users(node, 'dc', ['own', 'bob', 'carol']);
    const d = await createConversation(node, u.own.token, 'direct', [u.bob.id]);
    const before = await snapshot(node, u.own.token, d.id);
    assertHttpError(await patchConversation(node, u.own.token, d.id, { name: 'renamed' }), 400, 'bad_request');
    assertHttpError(await patchConversation(node, u.bob.token, d.id, { notice: 'n' }), 400, 'bad_request');
    assertHttpError(await patchConversation(node, u.own.token, d.id, { join_policy: 'open' }), 400, 'bad_request');
    assertHttpError(await putRole(node, u.own.token, d.id, u.bob.id, 'admin'), 400, 'bad_request');
    assertHttpError(await transferOwner(node, u.own.token, d.id, u.bob.id), 400, 'bad_request');
    assertHttpError(
      await http(node, 'POST', `/api/v1/conversations/${d.id}/invitations`, { token: u.own.token, json: { user_id: u.carol.id } }),
      400,
      'bad_request',
    );
    assert.deepEqual(await snapshot(node, u.own.token, d.id), before);
    assert.equal(before.last_seq, 0);
  });
});
