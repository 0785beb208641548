// Requests over HTTP and the WebSocket (docs/protocol.md "Requests: applications, invitations,
// friend requests", "direct_policy", "the user directory", "Over the WebSocket"): join
// applications (approval, open and invite_only groups), invitations, friend requests and
// friends; the one-decision rule; the pushes to those concerned; strangers kept out by
// `direct_policy`; requests that expire (`--request-ttl-s 1`) and requests that survive a
// restart; every call as a WebSocket command; the user directory and its paging; inputs an
// attacker would try (ids with `../`, NUL, 5,000 bytes, of the wrong kind; long or invalid text).
//
// Raw clients only (lib/http.mjs, lib/ws.mjs, lib/raw.mjs): exact status and error codes and
// bodies; every refusal is shown to have stored nothing (the request lists, the group's
// members and last_seq, the friends lists), and where a push could have gone out, the next real
// one is the first the client sees.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { assertHttpError, assertWsError } from './lib/check.mjs';
import {
  conversation,
  createConversation,
  expectStatus,
  history,
  http,
  lastSeq,
  listApplications,
  listFriendRequests,
  listFriends,
  listInvitations,
  makeUser,
  patchConversation,
  putRole,
  sendHttp,
  systemMessages,
} from './lib/http.mjs';
import { startNode, useNode } from './lib/node.mjs';
import { rawRequest } from './lib/raw.mjs';
import { WsClient, closeAll } from './lib/ws.mjs';

const FLAGS = ['--rate-register-address', '0', '--rate-conversations-user', '0', '--rate-members-user', '0'];
const h = useNode({ flags: FLAGS });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const WEEK_MS = 7 * 24 * 3600 * 1000;
const PREFIX = { application: 'ap_', invitation: 'in_', friend_request: 'fr_' };
const ID_KEY = { application: 'application_id', invitation: 'invitation_id', friend_request: 'request_id' };
const PATH = { application: 'applications', invitation: 'invitations', friend_request: 'friend-requests' };

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

async function snapshot(node, token, id) {
  const c = await conversation(node, token, id);
  return { members: c.members, roles: c.roles, owner: c.owner, last_seq: c.last_seq, join_policy: c.join_policy };
}

// A request object of `kind` as the doc gives it, plus the fields given.
function assertRequest(r, kind, fields = {}, { ttlMs = WEEK_MS } = {}) {
  const what = JSON.stringify(r);
  assert.ok(r && typeof r === 'object', `a request object: ${what}`);
  assert.match(r.id, new RegExp(`^${PREFIX[kind]}[0-9a-f]{32}$`), what);
  assert.equal(r.kind, kind, what);
  assert.equal(r[ID_KEY[kind]], r.id, what);
  assert.equal(typeof r.created_at, 'number', what);
  assert.equal(typeof r.decided_at, 'number', what);
  assert.equal(typeof r.decided_by, 'string', what);
  assert.equal(typeof r.expires_at, 'number', what);
  assert.ok(Math.abs(r.expires_at - r.created_at - ttlMs) <= 1000, `expires_at is created_at + ${ttlMs} ms: ${what}`);
  assert.equal(typeof r.text, 'string', what);
  if (kind === 'invitation') assert.equal(r.inviter_id, r.from_id, what);
  if (kind === 'friend_request') {
    assert.equal(r.from, r.from_id, what);
    assert.equal(r.to, r.user_id, what);
  }
  if (kind === 'application') assert.equal(r.user_id, r.from_id, what);
  if (fields.status === 'pending') {
    assert.equal(r.decided_by, '', what);
    assert.equal(r.decided_at, 0, what);
  } else if (fields.status) {
    assert.ok(r.decided_at >= r.created_at, `decided_at set: ${what}`);
  }
  for (const [k, v] of Object.entries(fields)) assert.deepEqual(r[k], v, `${k} of ${what}`);
}

const apply = (node, token, gid, json = {}) => http(node, 'POST', `/api/v1/conversations/${gid}/applications`, { token, json });
const invite = (node, token, gid, userId, extra = {}) =>
  http(node, 'POST', `/api/v1/conversations/${gid}/invitations`, { token, json: { user_id: userId, ...extra } });
const askFriend = (node, token, userId, json = {}) => http(node, 'POST', `/api/v1/users/${userId}/friend-requests`, { token, json });
const decide = (node, token, kind, id, action) => http(node, 'POST', `/api/v1/${PATH[kind]}/${id}/${action}`, { token });

// The request in an answer: a decision may also carry the conversation (`conversation`) and,
// for friend requests, the request again under `request`; pushes carry the request alone.
const asRequest = (body) => {
  const { conversation: _c, request: _r, ...rest } = body;
  return rest;
};

const isReqPush = (cmd, id, status) => (f) => f.cmd === cmd && f.data?.id === id && (!status || f.data.status === status);

describe('workflows', () => {
  let node;
  before(async () => {
    node = await h.ready;
  });

  describe('applications', () => {
    test('approval group: 201 pending, the owner and admins pushed; an admin approves: a member via application; one decision', async () => {
      const u = await users(node, 'ap', ['own', 'adm', 'mem', 'dan', 'out']);
      const g = await group(node, u.own, [u.adm, u.mem], 'team');
      expectStatus(await putRole(node, u.own.token, g.id, u.adm.id, 'admin'), 200);
      const [wOwn, wAdm, wMem, wDan] = await Promise.all([u.own, u.adm, u.mem, u.dan].map((x) => WsClient.connect(node, { token: x.token })));
      try {
        const before = await snapshot(node, u.own.token, g.id);
        const r = await apply(node, u.dan.token, g.id, { text: "hi, I'm on the team" });
        assert.equal(r.status, 201, r.text);
        const ap = r.json;
        assertRequest(ap, 'application', {
          conversation_id: g.id,
          user_id: u.dan.id,
          from_id: u.dan.id,
          text: "hi, I'm on the team",
          status: 'pending',
        });
        // The owner and the admin are pushed the request.
        for (const w of [wOwn, wAdm]) {
          const p = await w.waitFor(isReqPush('application', ap.id, 'pending'));
          assert.deepEqual(Object.keys(p).sort(), ['cmd', 'data']);
          assert.deepEqual(p.data, ap);
        }
        // Applying stores nothing in the group.
        assert.deepEqual(await snapshot(node, u.own.token, g.id), before);
        // Lists: the group's pending ones for its owner and admins (403 for a member); the
        // caller's own and those of the groups they run without conversation_id.
        assert.deepEqual(await listApplications(node, u.own.token, g.id), [ap]);
        assert.deepEqual(await listApplications(node, u.adm.token, g.id), [ap]);
        assertHttpError(await http(node, 'GET', `/api/v1/applications?conversation_id=${g.id}`, { token: u.mem.token }), 403, 'forbidden');
        assertHttpError(await http(node, 'GET', `/api/v1/applications?conversation_id=${g.id}`, { token: u.dan.token }), 403, 'forbidden');
        assert.deepEqual(await listApplications(node, u.dan.token), [ap]);
        assert.deepEqual(await listApplications(node, u.own.token), [ap]);
        assert.deepEqual(await listApplications(node, u.adm.token), [ap]);
        assert.deepEqual(await listApplications(node, u.mem.token), []);
        // Asking again while it is pending: 200, the same one.
        const again = await apply(node, u.dan.token, g.id, { text: 'again' });
        assert.equal(again.status, 200, again.text);
        assert.deepEqual(again.json, ap, 'the pending one, unchanged');
        assert.equal((await listApplications(node, u.own.token, g.id)).length, 1);

        // A member, the applicant, an outsider: 403; nothing changes.
        for (const who of [u.mem, u.dan, u.out])
          for (const action of ['approve', 'decline'])
            assertHttpError(await decide(node, who.token, 'application', ap.id, action), 403, 'forbidden');
        assert.deepEqual(await snapshot(node, u.own.token, g.id), before);
        assert.deepEqual((await listApplications(node, u.own.token, g.id)).map((a) => a.status), ['pending']);

        const markDan = wDan.mark();
        const ok = await decide(node, u.adm.token, 'application', ap.id, 'approve');
        assert.equal(ok.status, 200, ok.text);
        assertRequest(ok.json, 'application', { id: ap.id, status: 'approved', decided_by: u.adm.id, user_id: u.dan.id });
        const c = await conversation(node, u.dan.token, g.id);
        assert.deepEqual(c.members, [...before.members, u.dan.id]);
        assert.equal(c.roles[u.dan.id], 'member');
        assert.equal(c.last_seq, before.last_seq + 1);
        const sys = (await systemMessages(node, u.dan.token, g.id)).at(-1);
        assert.equal(sys.seq, before.last_seq + 1);
        assert.deepEqual(sys.event, { event: 'member_added', actor: u.adm.id, users: [u.dan.id], via: 'application' });
        // The applicant is pushed the decision; the owner and admins too, so that their lists stay true.
        const pd = await wDan.waitFor(isReqPush('application', ap.id, 'approved'), { from: markDan });
        assert.deepEqual(pd.data, asRequest(ok.json));
        for (const w of [wOwn, wAdm]) assert.deepEqual((await w.waitFor(isReqPush('application', ap.id, 'approved'))).data, asRequest(ok.json));
        // The plain member was never pushed the request: the member_added message, stored after
        // it, reaches them with no application frame before it.
        await wMem.waitForMsg(g.id, before.last_seq + 1);
        assert.ok(!wMem.frames.some((f) => f.cmd === 'application'), wMem.describe());

        // Deciding again, the same or the other way, by the same or another: 200, as decided.
        for (const [who, action] of [[u.own, 'approve'], [u.own, 'decline'], [u.adm, 'decline'], [u.adm, 'approve']]) {
          const r2 = await decide(node, who.token, 'application', ap.id, action);
          assert.equal(r2.status, 200, r2.text);
          assert.deepEqual(asRequest(r2.json), asRequest(ok.json), `${who.id} ${action}`);
        }
        assert.equal(await lastSeq(node, u.own.token, g.id), before.last_seq + 1, 'nothing more stored');
        assert.deepEqual((await conversation(node, u.own.token, g.id)).members, c.members);
        assert.deepEqual(await listApplications(node, u.own.token, g.id), [], 'no longer pending');
        assert.deepEqual(await listApplications(node, u.dan.token), []);
        // A member now: applying again is 409.
        assertHttpError(await apply(node, u.dan.token, g.id), 409, 'conflict');
      } finally {
        await closeAll(wOwn, wAdm, wMem, wDan);
      }
    });

    test('declining: declined, not a member, nothing stored; a later application is a new one', async () => {
      const u = await users(node, 'apd', ['own', 'mem', 'erin']);
      const gg = await group(node, u.own, [u.mem], 'declines');
      const wErin = await WsClient.connect(node, { token: u.erin.token });
      try {
        const before = await snapshot(node, u.own.token, gg.id);
        const ap = expectStatus(await apply(node, u.erin.token, gg.id, { text: 'please' }), 201).json;
        const no = await decide(node, u.own.token, 'application', ap.id, 'decline');
        assert.equal(no.status, 200, no.text);
        assertRequest(no.json, 'application', { id: ap.id, status: 'declined', decided_by: u.own.id });
        assert.deepEqual((await wErin.waitFor(isReqPush('application', ap.id, 'declined'))).data, asRequest(no.json));
        assert.deepEqual(await snapshot(node, u.own.token, gg.id), before, 'a decline stores nothing in the group');
        const yes = await decide(node, u.own.token, 'application', ap.id, 'approve');
        assert.equal(yes.status, 200, yes.text);
        assert.deepEqual(asRequest(yes.json), asRequest(no.json), 'approving after a decline changes nothing');
        assert.deepEqual(await snapshot(node, u.own.token, gg.id), before);
        assertHttpError(await http(node, 'GET', `/api/v1/conversations/${gg.id}/messages`, { token: u.erin.token }), 403, 'forbidden');
        const ap2 = await apply(node, u.erin.token, gg.id, { text: 'please, again' });
        assert.equal(ap2.status, 201, ap2.text);
        assert.notEqual(ap2.json.id, ap.id);
        assertRequest(ap2.json, 'application', { status: 'pending', text: 'please, again' });
      } finally {
        await closeAll(wErin);
      }
    });

    test('open group: 200 approved and a member at once (via open); invite_only: 403; a member: 409; no such group: 404', async () => {
      const u = await users(node, 'apo', ['own', 'mem', 'fay', 'gus']);
      const g = await group(node, u.own, [u.mem], 'open');
      expectStatus(await patchConversation(node, u.own.token, g.id, { join_policy: 'open' }), 200);
      const seq = await lastSeq(node, u.own.token, g.id);
      const r = await apply(node, u.fay.token, g.id, { text: 'joining' });
      assert.equal(r.status, 200, r.text);
      assertRequest(r.json, 'application', { conversation_id: g.id, user_id: u.fay.id, status: 'approved' });
      const c = await conversation(node, u.fay.token, g.id);
      assert.ok(c.members.includes(u.fay.id));
      assert.equal(c.roles[u.fay.id], 'member');
      assert.equal(c.last_seq, seq + 1);
      const e = (await systemMessages(node, u.fay.token, g.id)).at(-1).event;
      assert.equal(e.event, 'member_added');
      assert.deepEqual(e.users, [u.fay.id]);
      assert.equal(e.via, 'open');
      assert.equal(typeof e.actor, 'string');
      assert.deepEqual(await listApplications(node, u.own.token, g.id), [], 'nothing left pending');
      assertHttpError(await apply(node, u.fay.token, g.id), 409, 'conflict');
      assertHttpError(await apply(node, u.mem.token, g.id), 409, 'conflict');
      assertHttpError(await apply(node, u.own.token, g.id), 409, 'conflict');

      expectStatus(await patchConversation(node, u.own.token, g.id, { join_policy: 'invite_only' }), 200);
      const before = await snapshot(node, u.own.token, g.id);
      assertHttpError(await apply(node, u.gus.token, g.id, { text: 'let me in' }), 403, 'forbidden');
      assert.deepEqual(await snapshot(node, u.own.token, g.id), before);
      assert.deepEqual(await listApplications(node, u.own.token, g.id), []);
      assert.deepEqual(await listApplications(node, u.gus.token), []);

      assertHttpError(await apply(node, u.gus.token, '987654321'), 404, 'not_found');
      assertHttpError(await apply(node, u.gus.token, 'abc'), 404, 'not_found');
      assertHttpError(await http(node, 'POST', `/api/v1/conversations/${g.id}/applications`, { json: {} }), 401, 'unauthorized');
    });
  });

  describe('decisions under contention and changing authority', () => {
    test('many approvals and declines at once, by two admins: one decision, every answer the same, one system message', async () => {
      const u = await users(node, 'cc', ['own', 'adm', 'dan']);
      const g = await group(node, u.own, [u.adm], 'race');
      expectStatus(await putRole(node, u.own.token, g.id, u.adm.id, 'admin'), 200);
      const ap = expectStatus(await apply(node, u.dan.token, g.id), 201).json;
      const seq = await lastSeq(node, u.own.token, g.id);
      const calls = [];
      for (let i = 0; i < 12; i++) {
        const who = i % 2 ? u.own : u.adm;
        calls.push(decide(node, who.token, 'application', ap.id, i % 3 ? 'approve' : 'decline'));
      }
      const rs = await Promise.all(calls);
      for (const r of rs) assert.equal(r.status, 200, r.text);
      const first = asRequest(rs[0].json);
      assert.ok(['approved', 'declined'].includes(first.status));
      for (const r of rs) assert.deepEqual(asRequest(r.json), first, 'every answer is the one decision');
      const c = await conversation(node, u.own.token, g.id);
      if (first.status === 'approved') {
        assert.equal(c.last_seq, seq + 1, 'exactly one member_added');
        assert.equal(c.members.filter((m) => m === u.dan.id).length, 1);
      } else {
        assert.equal(c.last_seq, seq);
        assert.ok(!c.members.includes(u.dan.id));
      }
    });

    test('many applications at once by one user: one pending request, the others answer it', async () => {
      const u = await users(node, 'ca', ['own', 'mem', 'dan']);
      const g = await group(node, u.own, [u.mem], 'burst');
      const rs = await Promise.all(Array.from({ length: 8 }, () => apply(node, u.dan.token, g.id, { text: 'me' })));
      assert.deepEqual(rs.map((r) => r.status).sort(), [200, 200, 200, 200, 200, 200, 200, 201]);
      assert.equal(new Set(rs.map((r) => r.json.id)).size, 1, 'one id');
      assert.deepEqual((await listApplications(node, u.own.token, g.id)).map((a) => a.id), [rs[0].json.id]);
    });

    test('authority is checked when deciding: a demoted or removed admin cannot decide, a newly made one can', async () => {
      const u = await users(node, 'au', ['own', 'adm', 'adm2', 'mem', 'dan']);
      const g = await group(node, u.own, [u.adm, u.adm2, u.mem], 'authority');
      expectStatus(await putRole(node, u.own.token, g.id, u.adm.id, 'admin'), 200);
      expectStatus(await putRole(node, u.own.token, g.id, u.adm2.id, 'admin'), 200);
      const ap = expectStatus(await apply(node, u.dan.token, g.id), 201).json;
      expectStatus(await putRole(node, u.own.token, g.id, u.adm.id, 'member'), 200);
      expectStatus(await http(node, 'DELETE', `/api/v1/conversations/${g.id}/members/${u.adm2.id}`, { token: u.own.token }), 200);
      const before = await snapshot(node, u.own.token, g.id);
      assertHttpError(await decide(node, u.adm.token, 'application', ap.id, 'approve'), 403, 'forbidden');
      assertHttpError(await decide(node, u.adm2.token, 'application', ap.id, 'approve'), 403, 'forbidden');
      assertHttpError(await http(node, 'GET', `/api/v1/applications?conversation_id=${g.id}`, { token: u.adm.token }), 403, 'forbidden');
      assert.deepEqual(await listApplications(node, u.adm2.token), [], 'a removed admin no longer sees the group\'s applications');
      assert.deepEqual(await snapshot(node, u.own.token, g.id), before);
      assert.deepEqual((await listApplications(node, u.own.token, g.id)).map((a) => a.status), ['pending']);
      expectStatus(await putRole(node, u.own.token, g.id, u.mem.id, 'admin'), 200);
      const ok = await decide(node, u.mem.token, 'application', ap.id, 'approve');
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.json.decided_by, u.mem.id);
    });
  });

  describe('invitations', () => {
    test('a member invites: 201, the invitee pushed; only the invitee decides; accept: a member via invitation; one decision', async () => {
      const u = await users(node, 'in', ['own', 'mem', 'erin', 'fay', 'out']);
      const g = await group(node, u.own, [u.mem], 'invites');
      const [wMem, wErin, wFay] = await Promise.all([u.mem, u.erin, u.fay].map((x) => WsClient.connect(node, { token: x.token })));
      try {
        const before = await snapshot(node, u.own.token, g.id);
        const r = await invite(node, u.mem.token, g.id, u.erin.id, { text: 'join us' });
        assert.equal(r.status, 201, r.text);
        const inv = r.json;
        assertRequest(inv, 'invitation', {
          conversation_id: g.id,
          user_id: u.erin.id,
          from_id: u.mem.id,
          inviter_id: u.mem.id,
          text: 'join us',
          status: 'pending',
        });
        assert.deepEqual((await wErin.waitFor(isReqPush('invitation', inv.id, 'pending'))).data, inv);
        assert.deepEqual(await snapshot(node, u.own.token, g.id), before, 'inviting stores nothing in the group');
        assert.deepEqual(await listInvitations(node, u.erin.token), [inv], 'received');
        assert.deepEqual(await listInvitations(node, u.mem.token), [inv], 'sent');
        assert.deepEqual(await listInvitations(node, u.own.token), [], 'neither');
        // Again while pending: the same one.
        const again = await invite(node, u.mem.token, g.id, u.erin.id);
        assert.equal(again.status, 200, again.text);
        assert.deepEqual(again.json, inv, 'the pending one, unchanged');

        // Anyone but the invitee: 403, the inviter and the owner included.
        for (const who of [u.mem, u.own, u.out, u.fay])
          for (const action of ['accept', 'decline'])
            assertHttpError(await decide(node, who.token, 'invitation', inv.id, action), 403, 'forbidden');
        assert.deepEqual(await snapshot(node, u.own.token, g.id), before);
        assert.deepEqual((await listInvitations(node, u.erin.token)).map((i) => i.status), ['pending']);

        const markMem = wMem.mark();
        const ok = await decide(node, u.erin.token, 'invitation', inv.id, 'accept');
        assert.equal(ok.status, 200, ok.text);
        assertRequest(ok.json, 'invitation', { id: inv.id, status: 'accepted', decided_by: u.erin.id });
        const c = await conversation(node, u.erin.token, g.id);
        assert.deepEqual(c.members, [...before.members, u.erin.id]);
        assert.equal(c.last_seq, before.last_seq + 1);
        assert.deepEqual((await systemMessages(node, u.erin.token, g.id)).at(-1).event, {
          event: 'member_added',
          actor: u.erin.id,
          users: [u.erin.id],
          via: 'invitation',
        });
        // Both are pushed the decision.
        assert.deepEqual((await wErin.waitFor(isReqPush('invitation', inv.id, 'accepted'))).data, asRequest(ok.json));
        assert.deepEqual((await wMem.waitFor(isReqPush('invitation', inv.id, 'accepted'), { from: markMem })).data, asRequest(ok.json));
        for (const action of ['accept', 'decline']) {
          const r2 = await decide(node, u.erin.token, 'invitation', inv.id, action);
          assert.equal(r2.status, 200, r2.text);
          assert.deepEqual(asRequest(r2.json), asRequest(ok.json));
        }
        assert.equal(await lastSeq(node, u.own.token, g.id), before.last_seq + 1, 'nothing more stored');
        assert.deepEqual(await listInvitations(node, u.erin.token), []);
        assert.deepEqual(await listInvitations(node, u.mem.token), []);
        // Already a member now: 409.
        assertHttpError(await invite(node, u.mem.token, g.id, u.erin.id), 409, 'conflict');

        // A decline: not a member, nothing stored; then accepting changes nothing.
        const inv2 = expectStatus(await invite(node, u.own.token, g.id, u.fay.id), 201).json;
        await wFay.waitFor(isReqPush('invitation', inv2.id, 'pending'));
        const seq = await lastSeq(node, u.own.token, g.id);
        const no = await decide(node, u.fay.token, 'invitation', inv2.id, 'decline');
        assert.equal(no.status, 200, no.text);
        assertRequest(no.json, 'invitation', { id: inv2.id, status: 'declined', decided_by: u.fay.id, inviter_id: u.own.id });
        const late = await decide(node, u.fay.token, 'invitation', inv2.id, 'accept');
        assert.equal(late.status, 200, late.text);
        assert.deepEqual(asRequest(late.json), asRequest(no.json));
        assert.equal(await lastSeq(node, u.own.token, g.id), seq);
        assert.ok(!(await conversation(node, u.own.token, g.id)).members.includes(u.fay.id));
      } finally {
        await closeAll(wMem, wErin, wFay);
      }
    });

    test('invite_only: members may not invite, owners and admins may, and accepting works whatever the policy; refusals', async () => {
      const u = await users(node, 'ino', ['own', 'adm', 'mem', 'gus', 'hal', 'out']);
      const g = await group(node, u.own, [u.adm, u.mem], 'closed');
      expectStatus(await putRole(node, u.own.token, g.id, u.adm.id, 'admin'), 200);
      expectStatus(await patchConversation(node, u.own.token, g.id, { join_policy: 'invite_only' }), 200);
      const before = await snapshot(node, u.own.token, g.id);
      assertHttpError(await invite(node, u.mem.token, g.id, u.gus.id), 403, 'forbidden');
      assertHttpError(await invite(node, u.out.token, g.id, u.gus.id), 403, 'forbidden');
      assert.deepEqual(await listInvitations(node, u.gus.token), []);
      assert.deepEqual(await listInvitations(node, u.mem.token), []);
      // Refused shapes: already a member, no such user, oneself, no user id, text too long.
      assertHttpError(await invite(node, u.adm.token, g.id, u.mem.id), 409, 'conflict');
      assertHttpError(await invite(node, u.adm.token, g.id, 'ino-nobody'), 404, 'not_found');
      assertHttpError(await invite(node, u.adm.token, g.id, u.adm.id), 400, 'bad_request');
      assertHttpError(await http(node, 'POST', `/api/v1/conversations/${g.id}/invitations`, { token: u.adm.token, json: {} }), 400, 'bad_request');
      assertHttpError(await invite(node, u.adm.token, g.id, 7), 400, 'bad_request');
      assertHttpError(await invite(node, u.adm.token, '987654321', u.gus.id), 404, 'not_found');
      assert.deepEqual(await listInvitations(node, u.gus.token), []);
      assert.deepEqual(await listInvitations(node, u.adm.token), []);
      assert.deepEqual(await snapshot(node, u.own.token, g.id), before, 'nothing stored');

      const byAdm = await invite(node, u.adm.token, g.id, u.gus.id, { text: 'é'.repeat(512) });
      assert.equal(byAdm.status, 201, byAdm.text);
      assertRequest(byAdm.json, 'invitation', { inviter_id: u.adm.id, text: 'é'.repeat(512), status: 'pending' });
      const byOwn = await invite(node, u.own.token, g.id, u.hal.id);
      assert.equal(byOwn.status, 201, byOwn.text);
      for (const [who, inv] of [[u.gus, byAdm.json], [u.hal, byOwn.json]]) {
        const r = await decide(node, who.token, 'invitation', inv.id, 'accept');
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.status, 'accepted');
      }
      const after = await conversation(node, u.own.token, g.id);
      assert.deepEqual(after.members, [...before.members, u.gus.id, u.hal.id]);
      assert.equal(after.join_policy, 'invite_only');
    });
  });

  describe('friend requests and friends', () => {
    test('ask, pushed, only the one asked decides; accept: friends both ways and the direct conversation; one decision', async () => {
      const u = await users(node, 'fr', ['ann', 'ben', 'cat']);
      const [wAnn, wBen] = await Promise.all([u.ann, u.ben].map((x) => WsClient.connect(node, { token: x.token })));
      try {
        const r = await askFriend(node, u.ann.token, u.ben.id, { text: 'hi ben' });
        assert.equal(r.status, 201, r.text);
        const fr = r.json;
        assertRequest(fr, 'friend_request', { from: u.ann.id, to: u.ben.id, from_id: u.ann.id, user_id: u.ben.id, text: 'hi ben', status: 'pending' });
        assert.equal(fr.conversation_id, undefined, 'no conversation before it is accepted');
        assert.deepEqual((await wBen.waitFor(isReqPush('friend_request', fr.id, 'pending'))).data, fr);
        assert.deepEqual(await listFriendRequests(node, u.ben.token), [fr], 'received');
        assert.deepEqual(await listFriendRequests(node, u.ann.token), [fr], 'sent');
        assert.deepEqual(await listFriendRequests(node, u.cat.token), []);
        const again = await askFriend(node, u.ann.token, u.ben.id, { text: 'hi again' });
        assert.equal(again.status, 200, again.text);
        assert.deepEqual(again.json, fr, 'the pending one, unchanged');

        // The asker and a third: 403, nothing changes.
        for (const who of [u.ann, u.cat])
          for (const action of ['accept', 'decline'])
            assertHttpError(await decide(node, who.token, 'friend_request', fr.id, action), 403, 'forbidden');
        assert.deepEqual(await listFriends(node, u.ann.token), []);
        assert.deepEqual(await listFriends(node, u.ben.token), []);
        assert.equal((await listFriendRequests(node, u.ben.token))[0].status, 'pending');
        const convsBefore = expectStatus(await http(node, 'GET', '/api/v1/conversations', { token: u.ann.token }), 200).json.conversations;
        assert.deepEqual(convsBefore, []);

        const ok = await decide(node, u.ben.token, 'friend_request', fr.id, 'accept');
        assert.equal(ok.status, 200, ok.text);
        const d = ok.json.conversation;
        assert.equal(d.type, 'direct');
        assert.deepEqual([...d.members].sort(), [u.ann.id, u.ben.id]);
        assertRequest(ok.json.request, 'friend_request', { id: fr.id, status: 'accepted', decided_by: u.ben.id, conversation_id: d.id });
        // The direct conversation is the pair's, and both list it.
        assert.equal((await createConversation(node, u.ann.token, 'direct', [u.ben.id])).id, d.id);
        const annF = await listFriends(node, u.ann.token);
        assert.equal(annF.length, 1);
        assert.deepEqual(Object.keys(annF[0]).sort(), ['name', 'since', 'user_id']);
        assert.equal(annF[0].user_id, u.ben.id);
        assert.equal(annF[0].name, u.ben.id);
        assert.equal(typeof annF[0].since, 'number');
        assert.deepEqual((await listFriends(node, u.ben.token)).map((f) => f.user_id), [u.ann.id]);
        for (const w of [wAnn, wBen]) assert.deepEqual((await w.waitFor(isReqPush('friend_request', fr.id, 'accepted'))).data, ok.json.request);
        // Again, either way: as decided.
        for (const action of ['accept', 'decline']) {
          const r2 = await decide(node, u.ben.token, 'friend_request', fr.id, action);
          assert.equal(r2.status, 200, r2.text);
          assert.deepEqual(asRequest(r2.json), ok.json.request, action);
        }
        assert.deepEqual(await listFriendRequests(node, u.ben.token), []);
        // Already friends: 409 either way.
        assertHttpError(await askFriend(node, u.ann.token, u.ben.id), 409, 'conflict');
        assertHttpError(await askFriend(node, u.ben.token, u.ann.id), 409, 'conflict');
        // Oneself, no such user, text too long: refused, nothing stored.
        assertHttpError(await askFriend(node, u.cat.token, u.cat.id), 400, 'bad_request');
        assertHttpError(await askFriend(node, u.cat.token, 'fr-nobody'), 404, 'not_found');
        assertHttpError(await askFriend(node, u.cat.token, u.ann.id, { text: 5 }), 400, 'bad_request');
        assert.deepEqual(await listFriendRequests(node, u.cat.token), []);
        assert.deepEqual(await listFriendRequests(node, u.ann.token), []);

        // Unfriending: 200 {} (also when they were not friends); the conversation stays.
        const del = await http(node, 'DELETE', `/api/v1/friends/${u.ben.id}`, { token: u.ann.token });
        assert.equal(del.status, 200, del.text);
        assert.deepEqual(del.json, {});
        assert.deepEqual(await listFriends(node, u.ann.token), []);
        assert.deepEqual(await listFriends(node, u.ben.token), []);
        const del2 = await http(node, 'DELETE', `/api/v1/friends/${u.ben.id}`, { token: u.ann.token });
        assert.equal(del2.status, 200, del2.text);
        assert.deepEqual(del2.json, {});
        const del3 = await http(node, 'DELETE', `/api/v1/friends/${u.cat.id}`, { token: u.ann.token });
        assert.equal(del3.status, 200, del3.text);
        expectStatus(await sendHttp(node, u.ben.token, d.id, { body: 'still here' }), 201);
        // They may ask again.
        assert.equal((await askFriend(node, u.ben.token, u.ann.id)).status, 201);
      } finally {
        await closeAll(wAnn, wBen);
      }
    });

    test('a request back to one who asked accepts theirs (200 accepted, with conversation); a decline leaves them strangers', async () => {
      const u = await users(node, 'frr', ['dee', 'eve', 'fox', 'gil']);
      // An existing direct conversation is the one accepting gives.
      const existing = await createConversation(node, u.dee.token, 'direct', [u.eve.id]);
      const fr = expectStatus(await askFriend(node, u.dee.token, u.eve.id), 201).json;
      const back = await askFriend(node, u.eve.token, u.dee.id, { text: 'you too' });
      assert.equal(back.status, 200, back.text);
      const req = back.json.request ?? back.json;
      assertRequest(req, 'friend_request', { id: fr.id, from: u.dee.id, to: u.eve.id, status: 'accepted', conversation_id: existing.id });
      assert.equal(back.json.conversation?.id, existing.id, back.text);
      assert.deepEqual((await listFriends(node, u.dee.token)).map((f) => f.user_id), [u.eve.id]);
      assert.deepEqual((await listFriends(node, u.eve.token)).map((f) => f.user_id), [u.dee.id]);
      assert.deepEqual(await listFriendRequests(node, u.dee.token), []);
      assert.deepEqual(await listFriendRequests(node, u.eve.token), []);

      const f2 = expectStatus(await askFriend(node, u.fox.token, u.gil.id), 201).json;
      const no = await decide(node, u.gil.token, 'friend_request', f2.id, 'decline');
      assert.equal(no.status, 200, no.text);
      const noReq = no.json.request ?? no.json;
      assertRequest(noReq, 'friend_request', { id: f2.id, status: 'declined', decided_by: u.gil.id });
      assert.equal(noReq.conversation_id, undefined);
      assert.deepEqual(await listFriends(node, u.fox.token), []);
      assert.deepEqual(await listFriends(node, u.gil.token), []);
      const gilConvs = expectStatus(await http(node, 'GET', '/api/v1/conversations', { token: u.gil.token }), 200).json.conversations;
      assert.deepEqual(gilConvs, [], 'a declined request creates no conversation');
      // A new request after a decline is a new one.
      const f3 = await askFriend(node, u.fox.token, u.gil.id);
      assert.equal(f3.status, 201, f3.text);
      assert.notEqual(f3.json.id, f2.id);
    });
  });

  test('direct_policy friends: strangers cannot open a direct conversation (403), friends and existing ones go on', async () => {
    const u = await users(node, 'dp', ['pol', 'str', 'fri', 'old']);
    const existing = await createConversation(node, u.old.token, 'direct', [u.pol.id]);
    const me0 = expectStatus(await http(node, 'GET', '/api/v1/me', { token: u.pol.token }), 200).json;
    assert.equal(me0.direct_policy, 'anyone', 'the default');
    for (const json of [{ direct_policy: 'x' }, { direct_policy: 'FRIENDS' }, { direct_policy: 1 }, { direct_policy: null }])
      assertHttpError(await http(node, 'PATCH', '/api/v1/me', { token: u.pol.token, json }), 400, 'bad_request');
    assert.equal(expectStatus(await http(node, 'GET', '/api/v1/me', { token: u.pol.token }), 200).json.direct_policy, 'anyone');
    const r = await http(node, 'PATCH', '/api/v1/me', { token: u.pol.token, json: { direct_policy: 'friends' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.user_id, u.pol.id);
    assert.equal(r.json.direct_policy, 'friends');
    assert.equal(expectStatus(await http(node, 'GET', '/api/v1/me', { token: u.pol.token }), 200).json.direct_policy, 'friends');

    // A stranger: 403, nothing created.
    const refused = await http(node, 'POST', '/api/v1/conversations', { token: u.str.token, json: { type: 'direct', members: [u.pol.id] } });
    assertHttpError(refused, 403, 'forbidden');
    assert.match(refused.json.error.message, /friends/);
    assert.deepEqual(expectStatus(await http(node, 'GET', '/api/v1/conversations', { token: u.str.token }), 200).json.conversations, []);
    assert.deepEqual(
      expectStatus(await http(node, 'GET', '/api/v1/conversations', { token: u.pol.token }), 200).json.conversations.map((c) => c.id),
      [existing.id],
    );
    // Friend requests stay open to strangers.
    const ask = await askFriend(node, u.str.token, u.pol.id, { text: 'may I?' });
    assert.equal(ask.status, 201, ask.text);
    // A friend: the direct conversation exists and works.
    const fr = expectStatus(await askFriend(node, u.fri.token, u.pol.id), 201).json;
    const acc = expectStatus(await decide(node, u.pol.token, 'friend_request', fr.id, 'accept'), 200).json;
    const d = await http(node, 'POST', '/api/v1/conversations', { token: u.fri.token, json: { type: 'direct', members: [u.pol.id] } });
    assert.equal(d.status, 200, d.text);
    assert.equal(d.json.id, acc.conversation.id);
    expectStatus(await sendHttp(node, u.fri.token, d.json.id, { body: 'hi friend' }), 201);
    // The conversation that existed before goes on.
    const again = await http(node, 'POST', '/api/v1/conversations', { token: u.old.token, json: { type: 'direct', members: [u.pol.id] } });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.id, existing.id);
    const sent = await sendHttp(node, u.old.token, existing.id, { body: 'still talking' });
    assert.equal(sent.status, 201, sent.text);
    // Back to anyone: the stranger may.
    expectStatus(await http(node, 'PATCH', '/api/v1/me', { token: u.pol.token, json: { direct_policy: 'anyone' } }), 200);
    const now = await http(node, 'POST', '/api/v1/conversations', { token: u.str.token, json: { type: 'direct', members: [u.pol.id] } });
    assert.equal(now.status, 201, now.text);
  });

  test('--request-ttl-s 1: after 2 s requests are expired (gone from the pending lists) and deciding them is 409', async () => {
    const n = await startNode({ flags: [...FLAGS, '--request-ttl-s', '1'] });
    try {
      const u = await users(n, 'ex', ['own', 'mem', 'dan', 'erin', 'fay', 'gus']);
      const g = await group(n, u.own, [u.mem], 'ttl');
      const ap = expectStatus(await apply(n, u.dan.token, g.id, { text: 'soon stale' }), 201).json;
      assertRequest(ap, 'application', { status: 'pending' }, { ttlMs: 1000 });
      const inv = expectStatus(await invite(n, u.own.token, g.id, u.erin.id), 201).json;
      assertRequest(inv, 'invitation', { status: 'pending' }, { ttlMs: 1000 });
      const fr = expectStatus(await askFriend(n, u.fay.token, u.gus.id), 201).json;
      assertRequest(fr, 'friend_request', { status: 'pending' }, { ttlMs: 1000 });
      const before = await snapshot(n, u.own.token, g.id);
      await sleep(2100); // the time itself is what is tested: past expires_at
      assert.deepEqual(await listApplications(n, u.own.token, g.id), []);
      assert.deepEqual(await listApplications(n, u.dan.token), []);
      assert.deepEqual(await listInvitations(n, u.erin.token), []);
      assert.deepEqual(await listInvitations(n, u.own.token), []);
      assert.deepEqual(await listFriendRequests(n, u.gus.token), []);
      assert.deepEqual(await listFriendRequests(n, u.fay.token), []);
      for (const [who, kind, id, action] of [
        [u.own, 'application', ap.id, 'approve'],
        [u.own, 'application', ap.id, 'decline'],
        [u.erin, 'invitation', inv.id, 'accept'],
        [u.erin, 'invitation', inv.id, 'decline'],
        [u.gus, 'friend_request', fr.id, 'accept'],
        [u.gus, 'friend_request', fr.id, 'decline'],
      ]) {
        const r = await decide(n, who.token, kind, id, action);
        assertHttpError(r, 409, 'conflict');
        assert.match(r.json.error.message, /expired/, `${kind} ${action}`);
      }
      assert.deepEqual(await snapshot(n, u.own.token, g.id), before, 'nobody joined');
      assert.deepEqual(await listFriends(n, u.gus.token), []);
      // Asking again makes a new request (the expired one is not pending).
      const ap2 = await apply(n, u.dan.token, g.id);
      assert.equal(ap2.status, 201, ap2.text);
      assert.notEqual(ap2.json.id, ap.id);
      const fr2 = await askFriend(n, u.fay.token, u.gus.id);
      assert.equal(fr2.status, 201, fr2.text);
      assert.notEqual(fr2.json.id, fr.id);
    } finally {
      await n.stop({ removeData: true });
    }
  });

  test('pending requests survive a restart: still listed, still pending, and decidable', async () => {
    const n = await startNode({ flags: FLAGS });
    try {
      const u = await users(n, 'rs', ['own', 'mem', 'dan', 'erin', 'fay', 'gus']);
      const g = await group(n, u.own, [u.mem], 'restart');
      const ap = expectStatus(await apply(n, u.dan.token, g.id, { text: 'before restart' }), 201).json;
      const inv = expectStatus(await invite(n, u.own.token, g.id, u.erin.id, { text: 'inv' }), 201).json;
      const fr = expectStatus(await askFriend(n, u.fay.token, u.gus.id, { text: 'fr' }), 201).json;
      const before = await snapshot(n, u.own.token, g.id);
      await n.restart();
      assert.deepEqual(await listApplications(n, u.own.token, g.id), [ap]);
      assert.deepEqual(await listInvitations(n, u.erin.token), [inv]);
      assert.deepEqual(await listFriendRequests(n, u.gus.token), [fr]);
      assert.deepEqual(await snapshot(n, u.own.token, g.id), before);
      // Still the pending one when asked again.
      const again = await apply(n, u.dan.token, g.id);
      assert.equal(again.status, 200, again.text);
      assert.deepEqual(again.json, ap);
      const a = await decide(n, u.own.token, 'application', ap.id, 'approve');
      assert.equal(a.status, 200, a.text);
      assert.equal(a.json.status, 'approved');
      const i = await decide(n, u.erin.token, 'invitation', inv.id, 'accept');
      assert.equal(i.status, 200, i.text);
      assert.equal(i.json.status, 'accepted');
      const f = await decide(n, u.gus.token, 'friend_request', fr.id, 'accept');
      assert.equal(f.status, 200, f.text);
      assert.equal(f.json.request.status, 'accepted');
      assert.deepEqual((await conversation(n, u.own.token, g.id)).members, [...before.members, u.dan.id, u.erin.id]);
      assert.deepEqual((await listFriends(n, u.gus.token)).map((x) => x.user_id), [u.fay.id]);
      // The decisions, too, survive the next restart.
      await n.restart();
      const again2 = await decide(n, u.own.token, 'application', ap.id, 'decline');
      assert.equal(again2.status, 200, again2.text);
      assert.equal(again2.json.status, 'approved');
      assert.deepEqual((await listFriends(n, u.fay.token)).map((x) => x.user_id), [u.gus.id]);
    } finally {
      await n.stop({ removeData: true });
    }
  });

  test('over the WebSocket: each call is a command; the reply has its name, the id and the HTTP body; refusals are error frames', async () => {
    const u = await users(node, 'ws', ['own', 'mem', 'dan', 'erin']);
    const g = await group(node, u.own, [u.mem], 'over ws');
    const [wOwn, wMem, wDan, wErin] = await Promise.all([u.own, u.mem, u.dan, u.erin].map((x) => WsClient.connect(node, { token: x.token })));
    const reply = async (w, cmd, data) => {
      const f = await w.request(cmd, data);
      assert.equal(f.cmd, cmd, `reply to ${cmd}: ${JSON.stringify(f)}`);
      assert.equal(typeof f.id, 'string');
      return f.data;
    };
    try {
      // conversation.update, set_role, group.get
      const upd = await reply(wOwn, 'conversation.update', { conversation_id: g.id, notice: 'over ws', join_policy: 'approval' });
      assert.equal(upd.notice, 'over ws');
      assert.deepEqual(upd, await conversation(node, u.own.token, g.id));
      assert.deepEqual((await systemMessages(node, u.own.token, g.id)).at(-1).event, { event: 'updated', actor: u.own.id, notice: 'over ws' });
      const seq = await lastSeq(node, u.own.token, g.id);
      assertWsError(await wMem.request('conversation.update', { conversation_id: g.id, name: 'mine' }), 'forbidden');
      assertWsError(await wOwn.request('conversation.update', { conversation_id: g.id, join_policy: 'x' }), 'bad_request');
      assertWsError(await wOwn.request('conversation.update', { conversation_id: g.id }), 'bad_request');
      assertWsError(await wOwn.request('conversation.update', { conversation_id: '987654321', name: 'x' }), 'not_found');
      assert.equal(await lastSeq(node, u.own.token, g.id), seq, 'the refused updates stored nothing');
      const role = await reply(wOwn, 'conversation.set_role', { conversation_id: g.id, user_id: u.mem.id, role: 'admin' });
      assert.equal(role.roles[u.mem.id], 'admin');
      assertWsError(await wMem.request('conversation.set_role', { conversation_id: g.id, user_id: u.own.id, role: 'member' }), 'forbidden');
      assertWsError(await wMem.request('conversation.transfer', { conversation_id: g.id, user_id: u.mem.id }), 'forbidden');
      const tr = await reply(wOwn, 'conversation.transfer', { conversation_id: g.id, user_id: u.mem.id });
      assert.equal(tr.owner, u.mem.id);
      assert.equal(tr.roles[u.own.id], 'admin');
      const back = await reply(wMem, 'conversation.transfer', { conversation_id: g.id, user_id: u.own.id });
      assert.equal(back.owner, u.own.id);
      assert.deepEqual(back, await conversation(node, u.mem.token, g.id));
      const gg = await reply(wDan, 'group.get', { conversation_id: g.id });
      assert.deepEqual(gg, expectStatus(await http(node, 'GET', `/api/v1/groups/${g.id}`, { token: u.dan.token }), 200).json);
      assert.equal(gg.member, false);

      // application.create / list / approve
      const ap = await reply(wDan, 'application.create', { conversation_id: g.id, text: 'hi' });
      assertRequest(ap, 'application', { conversation_id: g.id, user_id: u.dan.id, text: 'hi', status: 'pending' });
      assert.deepEqual((await wOwn.waitFor(isReqPush('application', ap.id, 'pending'))).data, ap);
      assert.deepEqual(await reply(wOwn, 'application.list', { conversation_id: g.id }), { applications: [ap] });
      assert.deepEqual(await reply(wDan, 'application.list', {}), { applications: [ap] });
      const refused = await wErin.request('application.approve', { application_id: ap.id });
      assertWsError(refused, 'forbidden');
      assert.equal(typeof refused.id, 'string', 'the error carries the request id');
      assertWsError(await wDan.request('application.approve', { application_id: ap.id }), 'forbidden');
      assertWsError(await wOwn.request('application.approve', {}), 'bad_request');
      assertWsError(await wOwn.request('application.approve', { application_id: 5 }), 'bad_request');
      assertWsError(await wDan.request('application.create', { conversation_id: 'abc' }), 'bad_request');
      assert.deepEqual(await listApplications(node, u.own.token, g.id), [ap], 'the refusals changed nothing');
      const approved = await reply(wMem, 'application.approve', { application_id: ap.id }); // an admin now
      assertRequest(approved, 'application', { id: ap.id, status: 'approved', decided_by: u.mem.id });
      assert.deepEqual(asRequest(await reply(wOwn, 'application.decline', { application_id: ap.id })), asRequest(approved), 'one decision');
      assert.ok((await conversation(node, u.own.token, g.id)).members.includes(u.dan.id));

      // invitation.create / list / accept
      const inv = await reply(wDan, 'invitation.create', { conversation_id: g.id, user_id: u.erin.id, text: 'come' });
      assertRequest(inv, 'invitation', { user_id: u.erin.id, inviter_id: u.dan.id, status: 'pending' });
      assert.deepEqual((await wErin.waitFor(isReqPush('invitation', inv.id, 'pending'))).data, inv);
      assert.deepEqual(await reply(wErin, 'invitation.list', {}), { invitations: [inv] });
      assert.deepEqual(await reply(wErin, 'invitation.list', {}), expectStatus(await http(node, 'GET', '/api/v1/invitations', { token: u.erin.token }), 200).json);
      assertWsError(await wDan.request('invitation.accept', { invitation_id: inv.id }), 'forbidden');
      assertWsError(await wErin.request('invitation.accept', { invitation_id: ap.id }), 'not_found');
      assertWsError(await wErin.request('application.approve', { application_id: inv.id }), 'not_found');
      const acc = await reply(wErin, 'invitation.accept', { invitation_id: inv.id });
      assertRequest(acc, 'invitation', { id: inv.id, status: 'accepted', decided_by: u.erin.id });
      assert.deepEqual(asRequest(await reply(wErin, 'invitation.decline', { invitation_id: inv.id })), asRequest(acc));

      // friend_request.create / list / accept, friend.list / remove
      const fr = await reply(wDan, 'friend_request.create', { user_id: u.erin.id, text: 'friends?' });
      assertRequest(fr, 'friend_request', { from: u.dan.id, to: u.erin.id, status: 'pending' });
      assert.deepEqual((await wErin.waitFor(isReqPush('friend_request', fr.id, 'pending'))).data, fr);
      assert.deepEqual(await reply(wErin, 'friend_request.list', {}), { friend_requests: [fr] });
      assertWsError(await wDan.request('friend_request.accept', { request_id: fr.id }), 'forbidden');
      assertWsError(await wDan.request('friend_request.create', { user_id: u.dan.id }), 'bad_request');
      assertWsError(await wDan.request('friend_request.create', { user_id: 'ws-nobody' }), 'not_found');
      const facc = await reply(wErin, 'friend_request.accept', { request_id: fr.id });
      assertRequest(facc.request, 'friend_request', { id: fr.id, status: 'accepted' });
      assert.equal(facc.conversation.type, 'direct');
      const fl = await reply(wDan, 'friend.list', {});
      assert.deepEqual(fl, expectStatus(await http(node, 'GET', '/api/v1/friends', { token: u.dan.token }), 200).json);
      assert.deepEqual(fl.friends.map((f) => f.user_id), [u.erin.id]);
      assert.deepEqual(await reply(wDan, 'friend.remove', { user_id: u.erin.id }), {});
      assert.deepEqual(await listFriends(node, u.erin.token), []);
      const fr2 = await reply(wErin, 'friend_request.create', { user_id: u.dan.id });
      const fdec = await reply(wDan, 'friend_request.decline', { request_id: fr2.id });
      assertRequest(asRequest(fdec), 'friend_request', { id: fr2.id, status: 'declined', decided_by: u.dan.id });
      assert.deepEqual(await listFriends(node, u.dan.token), []);

      // user.search, me.update
      const us = await reply(wDan, 'user.search', { q: 'ws-', limit: 2 });
      assert.deepEqual(us, expectStatus(await http(node, 'GET', '/api/v1/users?q=ws-&limit=2', { token: u.dan.token }), 200).json);
      assert.deepEqual(us.users.map((x) => x.user_id), [u.dan.id, u.erin.id]);
      assert.equal(us.next, u.erin.id);
      assertWsError(await wDan.request('user.search', { limit: 0 }), 'bad_request');
      const me = await reply(wDan, 'me.update', { direct_policy: 'friends' });
      assert.equal(me.direct_policy, 'friends');
      assertWsError(await wDan.request('me.update', { direct_policy: 'nobody' }), 'bad_request');

      // The id comes back as sent: a number stays a number; an unknown command is unknown_cmd.
      const m = wOwn.mark();
      wOwn.sendJson({ cmd: 'group.get', id: 7, data: { conversation_id: g.id } });
      const f7 = await wOwn.waitFor((f) => f.id === 7, { from: m });
      assert.equal(f7.cmd, 'group.get');
      assert.equal(f7.data.member, true);
      assertWsError(await wOwn.request('application.frobnicate', {}), 'unknown_cmd');
    } finally {
      await closeAll(wOwn, wMem, wDan, wErin);
    }
  });

  test('the user directory: id prefix or name substring, ASCII case ignored, by id, paged; wildcards are literal; bad limits 400', async () => {
    const mk = async (id, name) => {
      const r = await http(node, 'POST', '/api/v1/users', { json: { user_id: id, password: 'pw-' + id, name } });
      assert.equal(r.status, 201, r.text);
      return r.json;
    };
    await mk('dir-ann', 'Ann');
    await mk('dir-bob', 'Bobby Tables');
    await mk('dir-cat', '100% Cat');
    await mk('dirund', 'x_y');
    await mk('zz-lee', 'Ann LEE-Smith');
    await mk('dir-dee', 'Dee');
    const viewer = await makeUser(node, 'dir-viewer');
    const get = (q) => http(node, 'GET', `/api/v1/users${q}`, { token: viewer.token });

    // Everyone, page by page (q empty).
    const all = [];
    let after = '';
    for (let i = 0; i < 100; i++) {
      const r = await get(`?limit=7${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      assert.equal(r.status, 200, r.text);
      for (const x of r.json.users) assert.deepEqual(Object.keys(x).sort(), ['name', 'user_id'], JSON.stringify(x));
      all.push(...r.json.users);
      if (r.json.next === undefined) {
        assert.ok(r.json.users.length <= 7);
        break;
      }
      assert.equal(r.json.users.length, 7, 'a page with next is full');
      assert.equal(r.json.next, r.json.users.at(-1).user_id);
      after = r.json.next;
    }
    const ids = all.map((x) => x.user_id);
    assert.deepEqual(ids, [...ids].sort(), 'by id');
    assert.equal(new Set(ids).size, ids.length, 'no repeats');
    for (const id of ['dir-ann', 'dir-bob', 'dir-cat', 'dirund', 'zz-lee', 'dir-viewer']) assert.ok(ids.includes(id), id);
    assert.equal(all.find((x) => x.user_id === 'dir-cat').name, '100% Cat');
    // The default page is 20.
    const def = await get('');
    assert.equal(def.status, 200, def.text);
    assert.deepEqual(def.json.users, all.slice(0, 20));
    assert.equal(def.json.next, all.length > 20 ? all[19].user_id : undefined);

    // The rule, applied here to everyone: the result for each q must be exactly that.
    const lower = (s) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());
    const oracle = (q) => all.filter((x) => x.user_id.startsWith(lower(q)) || lower(x.name).includes(lower(q)));
    const probes = ['dir-', 'DIR-A', 'lee', 'LEE', 'tables', 'Ann', '%', '100%', '_', 'x_y', 'dir%', 'd_r', '*', "'", '"', '\\', ' ', 'é', 'nobody-at-all'];
    for (const q of probes) {
      const r = await get(`?q=${encodeURIComponent(q)}&limit=100`);
      assert.equal(r.status, 200, `${q}: ${r.text}`);
      assert.deepEqual(r.json.users, oracle(q), `q=${JSON.stringify(q)}`);
      assert.equal(r.json.next, undefined, q);
    }
    assert.deepEqual((await get('?q=%25&limit=100')).json.users.map((x) => x.user_id), ['dir-cat'], '% is literal');
    assert.deepEqual((await get('?q=_&limit=100')).json.users.map((x) => x.user_id), ['dirund'], '_ is literal');
    assert.deepEqual((await get('?q=d_r&limit=100')).json.users, [], '_ matches no other character');
    assert.deepEqual((await get('?q=LEE&limit=100')).json.users.map((x) => x.user_id), ['zz-lee'], 'by name, case ignored');
    assert.ok((await get('?q=DIR-A&limit=100')).json.users.some((x) => x.user_id === 'dir-ann'), 'by id prefix, case ignored');

    // Paging within a query.
    const want = oracle('dir-');
    assert.ok(want.length >= 5);
    const got = [];
    after = '';
    for (let i = 0; i < 20; i++) {
      const r = await get(`?q=dir-&limit=2${after ? `&after=${after}` : ''}`);
      assert.equal(r.status, 200, r.text);
      got.push(...r.json.users);
      if (!r.json.next) break;
      assert.equal(r.json.users.length, 2);
      after = r.json.next;
    }
    assert.deepEqual(got, want);
    const afterAnn = await get('?q=dir-&after=dir-ann&limit=100');
    assert.deepEqual(afterAnn.json.users, want.filter((x) => x.user_id > 'dir-ann'));

    // Bad parameters: 400; no token: 401.
    for (const q of ['?limit=0', '?limit=101', '?limit=-1', '?limit=abc', '?limit=1.5', '?q=%ff', '?after=%ff%fe', '?q=a&limit=1000000000000'])
      assertHttpError(await get(q), 400, 'bad_request');
    assert.equal((await get('?limit=100')).status, 200);
    assert.equal((await get('?limit=1')).json.users.length, 1);
    assertHttpError(await http(node, 'GET', '/api/v1/users?q=dir'), 401, 'unauthorized');
  });

  test('a request text over 1,024 bytes is 413 too_large (Limits: a string field over its limit), over HTTP and the WebSocket; nothing stored', async () => {
    const u = await users(node, 'long', ['own', 'mem', 'dan', 'erin']);
    const g = await group(node, u.own, [u.mem], 'long texts');
    const over = ['x'.repeat(1025), 'é'.repeat(512) + 'x'];
    const wDan = await WsClient.connect(node, { token: u.dan.token });
    try {
      for (const text of over) {
        assertHttpError(await apply(node, u.dan.token, g.id, { text }), 413, 'too_large');
        assertHttpError(await invite(node, u.own.token, g.id, u.erin.id, { text }), 413, 'too_large');
        assertHttpError(await askFriend(node, u.dan.token, u.erin.id, { text }), 413, 'too_large');
        assertWsError(await wDan.request('application.create', { conversation_id: g.id, text }), 'too_large');
        assertWsError(await wDan.request('friend_request.create', { user_id: u.erin.id, text }), 'too_large');
      }
      assert.deepEqual(await listApplications(node, u.own.token, g.id), []);
      assert.deepEqual(await listInvitations(node, u.erin.token), []);
      assert.deepEqual(await listFriendRequests(node, u.erin.token), []);
      // 1,024 bytes exactly is fine.
      const ok = await apply(node, u.dan.token, g.id, { text: 'é'.repeat(512) });
      assert.equal(ok.status, 201, ok.text);
    } finally {
      await closeAll(wDan);
    }
  });

  test('attacker inputs: odd and wrong ids (../, NUL, 5,000 bytes, another kind) are refused, long and invalid text too; nothing changes', async () => {
    const u = await users(node, 'atk', ['own', 'mem', 'dan', 'erin', 'fay', 'gus']);
    const g = await group(node, u.own, [u.mem], 'target');
    const ap = expectStatus(await apply(node, u.dan.token, g.id, { text: 'pending' }), 201).json;
    const inv = expectStatus(await invite(node, u.own.token, g.id, u.erin.id), 201).json;
    const fr = expectStatus(await askFriend(node, u.fay.token, u.gus.id), 201).json;
    const state = async () => ({
      group: await snapshot(node, u.own.token, g.id),
      apps: await listApplications(node, u.own.token, g.id),
      danApps: await listApplications(node, u.dan.token),
      invs: await listInvitations(node, u.erin.token),
      frs: await listFriendRequests(node, u.gus.token),
      friends: await listFriends(node, u.gus.token),
    });
    const before = await state();
    assert.deepEqual(before.apps, [ap]);

    // Another kind's id: 404.
    assertHttpError(await decide(node, u.own.token, 'application', inv.id, 'approve'), 404, 'not_found');
    assertHttpError(await decide(node, u.own.token, 'application', fr.id, 'approve'), 404, 'not_found');
    assertHttpError(await decide(node, u.erin.token, 'invitation', ap.id, 'accept'), 404, 'not_found');
    assertHttpError(await decide(node, u.gus.token, 'friend_request', inv.id, 'accept'), 404, 'not_found');
    assertHttpError(await decide(node, u.gus.token, 'friend_request', ap.id, 'accept'), 404, 'not_found');
    // The right prefix, an id that does not exist; the right hex behind the wrong prefix.
    assertHttpError(await decide(node, u.own.token, 'application', 'ap_' + '0'.repeat(32), 'approve'), 404, 'not_found');
    assertHttpError(await decide(node, u.own.token, 'application', 'in_' + ap.id.slice(3), 'approve'), 404, 'not_found');
    assertHttpError(await decide(node, u.erin.token, 'invitation', 'ap_' + inv.id.slice(3), 'accept'), 404, 'not_found');
    // An unknown action on a real id.
    assertHttpError(await http(node, 'POST', `/api/v1/applications/${ap.id}/accept`, { token: u.own.token }), 404, 'not_found');

    // Ids an attacker shapes: dot segments, encoded slashes, NUL, 5,000 bytes, not UTF-8. Sent
    // byte for byte (fetch would normalise `..` away).
    const targets = [
      `/api/v1/applications/${ap.id}/../${ap.id}/approve`,
      `/api/v1/applications/../applications/${ap.id}/approve`,
      `/api/v1/applications/..%2F${ap.id}/approve`,
      `/api/v1/applications/${ap.id}%2F..%2F..%2Fx/approve`,
      `/api/v1/applications/%2e%2e/approve`,
      `/api/v1/applications/${ap.id}%00/approve`,
      `/api/v1/applications/%00${ap.id}/approve`,
      `/api/v1/applications/${ap.id}%20/approve`,
      `/api/v1/applications/${'ap_' + 'a'.repeat(5000)}/approve`,
      `/api/v1/applications/${ap.id}${'a'.repeat(5000)}/approve`,
      `/api/v1/invitations/${inv.id}/../../applications/${ap.id}/approve`,
      `/api/v1/friend-requests/..%2F..%2Fapplications%2F${ap.id}/accept`,
    ];
    for (const target of targets) {
      const r = await rawRequest(node, 'POST', target, { token: u.own.token });
      assert.ok([400, 404, 413].includes(r.status), `${target.slice(0, 120)}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.ok(r.json?.error, `${target.slice(0, 120)}: an error body`);
      assert.ok(r.utf8Valid);
    }
    // Not UTF-8 in the path: 400.
    for (const target of [`/api/v1/applications/%ff%fe/approve`, `/api/v1/invitations/in_%c3%28/accept`, `/api/v1/users/%ff/friend-requests`]) {
      const r = await rawRequest(node, 'POST', target, { token: u.own.token, body: {} });
      assertHttpError(r, 400, 'bad_request');
      assert.ok(r.utf8Valid);
    }
    // A raw NUL in the request target: the parser refuses it.
    const nul = await rawRequest(node, 'POST', `/api/v1/applications/${ap.id}\0/approve`, { token: u.own.token });
    assert.equal(nul.status, 400, nul.text);
    // Odd user and conversation ids in paths.
    for (const target of [
      `/api/v1/users/..%2F${u.gus.id}/friend-requests`,
      `/api/v1/users/${u.gus.id}%00/friend-requests`,
      `/api/v1/users/${'g'.repeat(5000)}/friend-requests`,
      `/api/v1/conversations/${g.id}%00/applications`,
      `/api/v1/conversations/..%2F${g.id}/applications`,
      `/api/v1/conversations/${g.id}${'0'.repeat(5000)}/applications`,
      `/api/v1/conversations/-${g.id}/applications`,
    ]) {
      const r = await rawRequest(node, 'POST', target, { token: u.dan.token, body: { text: 'x' } });
      assert.ok([400, 404, 413].includes(r.status), `${target.slice(0, 120)}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.ok(r.json?.error, `${target.slice(0, 120)}: an error body`);
    }

    // Text: 1,024 bytes is the limit (413 past it); not a string: 400; invalid JSON / UTF-8: 400 bad_json.
    for (const [path, who] of [
      [`/api/v1/conversations/${g.id}/applications`, u.fay],
      [`/api/v1/users/${u.dan.id}/friend-requests`, u.fay],
    ]) {
      assertHttpError(await http(node, 'POST', path, { token: who.token, json: { text: 12 } }), 400, 'bad_request');
      assertHttpError(await http(node, 'POST', path, { token: who.token, json: { text: ['a'] } }), 400, 'bad_request');
      for (const body of [
        '[]',
        '"text"',
        '{"text": ',
        '{"text": "\\ud800"}',
        Buffer.concat([Buffer.from('{"text": "'), Buffer.from([0xc0, 0xaf, 0xff]), Buffer.from('"}')]),
      ])
        assertHttpError(
          await http(node, 'POST', path, { token: who.token, body, headers: { 'Content-Type': 'application/json' } }),
          400,
          'bad_json',
        );
    }
    const badInv = Buffer.concat([Buffer.from(`{"user_id": "${u.fay.id}", "text": "`), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]);
    assertHttpError(
      await http(node, 'POST', `/api/v1/conversations/${g.id}/invitations`, { token: u.own.token, body: badInv, headers: { 'Content-Type': 'application/json' } }),
      400,
      'bad_json',
    );
    // Bad list queries.
    assertHttpError(await http(node, 'GET', '/api/v1/applications?conversation_id=abc', { token: u.own.token }), 400, 'bad_request');
    assertHttpError(await http(node, 'GET', '/api/v1/applications?conversation_id=%ff', { token: u.own.token }), 400, 'bad_request');

    assert.deepEqual(await state(), before, 'nothing changed');
    assert.deepEqual(await listApplications(node, u.fay.token), [], 'fay applied to nothing');
    assert.deepEqual(await listFriendRequests(node, u.dan.token), [], 'nobody asked dan');
    assert.deepEqual(await listInvitations(node, u.fay.token), [], 'nobody invited fay');
    // Exactly 1,024 bytes is accepted.
    const ok = await apply(node, u.fay.token, g.id, { text: 'é'.repeat(512) });
    assert.equal(ok.status, 201, ok.text);
    assert.equal(ok.json.text, 'é'.repeat(512));
    // The real application is still pending, and the real path still works.
    const real = await decide(node, u.own.token, 'application', ap.id, 'approve');
    assert.equal(real.status, 200, real.text);
    assert.equal(real.json.status, 'approved');
    assert.equal((await history(node, u.own.token, g.id)).filter((m) => m.type === 'system').length, 1);
  });
});
