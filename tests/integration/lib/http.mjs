// HTTP helpers over the global fetch (Node 18+).
//
//   const r = await http(node, 'POST', '/api/v1/login', { json: { user_id, password } });
//   r.status, r.json, r.text, r.bytes (Buffer), r.headers (Headers)
//
// `json` is serialized; `body` is sent as is (string, Buffer, Uint8Array); `token` becomes
// `Authorization: Bearer <token>`.
export async function http(node, method, path, { token, json, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token !== undefined && token !== null) h.Authorization = `Bearer ${token}`;
  let payload = body;
  if (json !== undefined) {
    payload = JSON.stringify(json);
    if (!h['Content-Type']) h['Content-Type'] = 'application/json';
  }
  const res = await fetch(node.url + path, { method, headers: h, body: payload });
  const bytes = Buffer.from(await res.arrayBuffer());
  const text = bytes.toString('utf8');
  let parsed;
  const ct = res.headers.get('content-type') || '';
  if (ct.startsWith('application/json')) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
  }
  return { status: res.status, headers: res.headers, bytes, text, json: parsed };
}

// Throws with the response in the message unless the status is one of `expected`.
export function expectStatus(r, ...expected) {
  if (!expected.includes(r.status))
    throw new Error(`expected HTTP ${expected.join(' or ')}, got ${r.status}: ${r.text.slice(0, 500)}`);
  return r;
}

// ---- accounts and conversations, the calls nearly every test makes ----

export async function register(node, userId, { password = 'pw-' + userId, name, token } = {}) {
  const body = { user_id: userId, password };
  if (name) body.name = name;
  const r = await http(node, 'POST', token ? '/api/v1/admin/users' : '/api/v1/users', {
    json: body,
    token,
  });
  expectStatus(r, 201);
  return r.json;
}

export async function login(node, userId, deviceId = 'd1', { password = 'pw-' + userId } = {}) {
  const r = await http(node, 'POST', '/api/v1/login', {
    json: { user_id: userId, password, device_id: deviceId },
  });
  expectStatus(r, 200);
  return r.json.token;
}

export async function createConversation(node, token, type, members, name) {
  const body = { type, members };
  if (name !== undefined) body.name = name;
  const r = await http(node, 'POST', '/api/v1/conversations', { token, json: body });
  expectStatus(r, 200, 201);
  return r.json;
}

export async function history(node, token, conversationId, query = '') {
  const r = await http(node, 'GET', `/api/v1/conversations/${conversationId}/messages${query}`, {
    token,
  });
  expectStatus(r, 200);
  return r.json.messages;
}

export async function conversation(node, token, conversationId) {
  const r = await http(node, 'GET', `/api/v1/conversations/${conversationId}`, { token });
  expectStatus(r, 200);
  return r.json;
}

export async function lastSeq(node, token, conversationId) {
  return (await conversation(node, token, conversationId)).last_seq;
}

export async function sendHttp(node, token, conversationId, data) {
  return http(node, 'POST', `/api/v1/conversations/${conversationId}/messages`, {
    token,
    json: data,
  });
}

export async function offline(node, token, query = '') {
  const r = await http(node, 'GET', `/api/v1/offline${query}`, { token });
  expectStatus(r, 200);
  return r.json;
}

// Every offline page, following next_cursor; returns all messages in order.
export async function offlineAll(node, token, limit) {
  const out = [];
  let cursor = '';
  for (let i = 0; i < 10000; i++) {
    const q = new URLSearchParams();
    if (limit) q.set('limit', String(limit));
    if (cursor) q.set('cursor', cursor);
    const page = await offline(node, token, `?${q}`);
    out.push(...page.messages);
    if (!page.more) return out;
    cursor = page.next_cursor;
  }
  throw new Error('offline pagination did not end');
}

export async function heartbeatHttp(node, token, seqs) {
  return http(node, 'POST', '/api/v1/heartbeat', { token, json: { seqs } });
}

// Reads /metrics into {name: value} (unlabelled samples only, histograms' _sum/_count included).
export async function metrics(node) {
  const r = await http(node, 'GET', '/metrics');
  expectStatus(r, 200);
  const out = {};
  for (const line of r.text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && !m[2]) out[m[1]] = Number(m[3]);
  }
  return { values: out, text: r.text, contentType: r.headers.get('content-type') };
}

// Registers `userId` (open registration, or through the admin endpoint with `adminToken`) and
// logs in one token per device: returns {id, token, tokens: {device: token}}.
export async function makeUser(node, userId, devices = ['d1'], { adminToken } = {}) {
  await register(node, userId, { token: adminToken });
  const tokens = {};
  for (const d of devices) tokens[d] = await login(node, userId, d);
  return { id: userId, token: tokens[devices[0]], tokens };
}

// ---- groups: roles, settings, requests, friends (docs/protocol.md "Groups") ----

// The stored system messages of a conversation (type "system"), each with its body parsed:
// [{seq, ...message, event: {event, actor, ...}}], in seq order; `query` as for history.
export async function systemMessages(node, token, conversationId, query = '') {
  const msgs = await history(node, token, conversationId, query);
  return msgs.filter((m) => m.type === 'system').map((m) => ({ ...m, event: JSON.parse(m.body) }));
}

// PATCH /api/v1/conversations/{id} (name, notice, join_policy); the raw response.
export function patchConversation(node, token, conversationId, json) {
  return http(node, 'PATCH', `/api/v1/conversations/${conversationId}`, { token, json });
}

// PUT /api/v1/conversations/{id}/roles/{user_id} {role}; the raw response.
export function putRole(node, token, conversationId, userId, role) {
  return http(node, 'PUT', `/api/v1/conversations/${conversationId}/roles/${encodeURIComponent(userId)}`, {
    token,
    json: { role },
  });
}

// POST /api/v1/conversations/{id}/owner {user_id}; the raw response.
export function transferOwner(node, token, conversationId, userId) {
  return http(node, 'POST', `/api/v1/conversations/${conversationId}/owner`, { token, json: { user_id: userId } });
}

// POST /api/v1/conversations/{id}/members {members}; the raw response.
export function addMembers(node, token, conversationId, members) {
  return http(node, 'POST', `/api/v1/conversations/${conversationId}/members`, { token, json: { members } });
}

// DELETE /api/v1/conversations/{id}/members/{user_id}; the raw response.
export function removeMember(node, token, conversationId, userId) {
  return http(node, 'DELETE', `/api/v1/conversations/${conversationId}/members/${encodeURIComponent(userId)}`, { token });
}

// The request lists, each asserted 200: GET /api/v1/applications[?conversation_id=],
// /invitations, /friend-requests, /friends.
export async function listApplications(node, token, conversationId) {
  const q = conversationId === undefined ? '' : `?conversation_id=${encodeURIComponent(conversationId)}`;
  return expectStatus(await http(node, 'GET', `/api/v1/applications${q}`, { token }), 200).json.applications;
}

export async function listInvitations(node, token) {
  return expectStatus(await http(node, 'GET', '/api/v1/invitations', { token }), 200).json.invitations;
}

export async function listFriendRequests(node, token) {
  return expectStatus(await http(node, 'GET', '/api/v1/friend-requests', { token }), 200).json.friend_requests;
}

export async function listFriends(node, token) {
  return expectStatus(await http(node, 'GET', '/api/v1/friends', { token }), 200).json.friends;
}
