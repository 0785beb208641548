// ConvergeClient: one logged-in device of a Converge user.
//
// HTTP for calls (login, conversations, history, files), one WebSocket for the live stream.
// The order after login follows the protocol: conversation list, offline messages, live stream,
// heartbeats. Every message reaches the app once ('message' event), whatever path it came by
// (offline fetch, live push, resync after a reconnect). Sends carry a client_msg_id and are
// retried with the same id until acked; sends made while disconnected wait in an outbox.
// Membership changes the node pushes ('conversation' frames) keep `conversations` current; a
// conversation the user joins is caught up from its first message not seen yet.
// Groups (roles, settings, applications, invitations, friend requests, the user directory) are
// plain calls; the node's request pushes come as 'application' / 'invitation' / 'friend_request'
// events, and a group's changes as `type: "system"` messages whose JSON body is parsed into
// `message.event`.
// Voice rooms: HTTP calls for the rooms, `room.*` commands over the socket, binary audio frames
// both ways ('audio' events), the member lists of the rooms the client is in (`rooms`), kept by
// the room events; those rooms are joined again after every reconnect, on whichever node of
// `nodes` the client reconnects to.

import { Backoff } from './backoff.js';
import { SeqTracker } from './dedupe.js';
import { Emitter } from './emitter.js';
import { Api, ApiError } from './http.js';
import { decodeAudioFrame, encodeAudioFrame, memberOf, roomFromReply, roomIdOf, sortMembers } from './rooms.js';

export const State = Object.freeze({ offline: 'offline', connecting: 'connecting', online: 'online' });

const CLOSE_UNAUTHORIZED = 4001;
const CLOSE_GOING_AWAY = 1001; // "node stopping; reconnect, possibly to another node"
// Refusals of a room.join that stand (the room is gone, full, or the user was removed from it).
const ROOM_FINAL = new Set(['not_found', 'forbidden', 'room_full', 'bad_request']);
// An audio frame is dropped rather than queued behind this much unsent data (real time).
const AUDIO_MAX_BUFFERED = 64 * 1024;

/** A random id (hex), good for client_msg_id and device_id; works in insecure browser contexts too. */
export function randomId(bytes = 16) {
  const a = new Uint8Array(bytes);
  const c = globalThis.crypto;
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(a);
  else for (let i = 0; i < bytes; i++) a[i] = Math.floor(Math.random() * 256);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * A client_msg_id, 32 hex digits: the clock's milliseconds (12), a counter within the
 * millisecond (4), 64 random bits (16). Ids made later sort later, so the server's retry index
 * takes each new one at its end; random ids land anywhere in it, which costs the store a page
 * write per message (docs/protocol.md, "Sending"). A clock that steps back does not reorder them.
 */
let lastIdMs = 0;
let idSeq = 0;
export function messageId() {
  let ms = Date.now();
  if (ms <= lastIdMs) {
    idSeq += 1;
    if (idSeq > 0xffff) { // the counter's room is used up: borrow the next millisecond
      lastIdMs += 1;
      idSeq = 0;
    }
    ms = lastIdMs;
  } else {
    lastIdMs = ms;
    idSeq = 0;
  }
  const seq = idSeq.toString(16).padStart(4, '0');
  return ms.toString(16).padStart(12, '0').slice(-12) + seq + randomId(8);
}

const isBinary = (data) => data instanceof ArrayBuffer || ArrayBuffer.isView(data);
const isBlob = (data) => typeof Blob !== 'undefined' && data instanceof Blob;
const trimUrl = (u) => String(u).replace(/\/+$/, '');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A system message's body (or a push's `event`) as an object; `{event: 'unknown'}` if unreadable. */
function parseEvent(v) {
  if (v && typeof v === 'object') return v;
  if (typeof v === 'string') {
    try {
      const o = JSON.parse(v);
      if (o && typeof o === 'object' && !Array.isArray(o)) return o;
    } catch {
      /* below */
    }
  }
  return { event: 'unknown' };
}

/** A `type: "system"` message gets `event`: its body parsed ({event, actor, ...}). */
function withEvent(m) {
  if (m && m.type === 'system' && (m.event === undefined || typeof m.event !== 'object')) m.event = parseEvent(m.body);
  return m;
}

/** The file_id of a message, a message's `file`, an upload answer, or a file_id itself. */
function fileIdOf(f) {
  return typeof f === 'string' ? f : f?.file?.file_id ?? f?.file_id;
}

export class ConvergeClient extends Emitter {
  /**
   * @param {object} [opts]
   * @param {string} [opts.baseUrl] node address, e.g. "http://127.0.0.1:8080" (default: the page's origin)
   * @param {string[]} [opts.nodes] the nodes of a cluster: a (re)connection that cannot reach one
   *   (or is told the node is stopping) goes on with the next; `baseUrl` (default: the first) is tried first
   * @param {Function} [opts.WebSocket] WebSocket class (default: globalThis.WebSocket; in Node < 22 pass `ws`)
   * @param {Function} [opts.fetch] fetch implementation (default: globalThis.fetch)
   * @param {object} [opts.session] {token, user_id, name, device_id} of an earlier login
   * @param {object} [opts.backoff] {initialMs, maxMs, factor, jitter} for reconnects
   * @param {number} [opts.heartbeatIntervalMs] override the interval the server advises
   * @param {number} [opts.ackTimeoutMs=10000] resend an unacked message after this long
   * @param {number} [opts.requestTimeoutMs=20000] a WebSocket request unanswered this long drops the connection
   * @param {number} [opts.connectTimeoutMs=15000] a connection not ready after this long is retried
   * @param {number} [opts.syncPageSize=100] messages per offline / sync page
   * @param {boolean} [opts.autoProcess=true] a message counts as processed once the 'message'
   *   handlers have returned; with false the app calls markProcessed() itself
   * @param {boolean} [opts.watchNetwork=true] in a browser, follow window online/offline events
   */
  constructor(opts = {}) {
    super();
    const nodes = Array.isArray(opts.nodes) ? opts.nodes.filter(Boolean).map(trimUrl) : [];
    const baseUrl = opts.baseUrl ?? nodes[0] ?? globalThis.location?.origin;
    if (!baseUrl) throw new TypeError('ConvergeClient: baseUrl is required outside a browser');
    this.baseUrl = trimUrl(baseUrl);
    /** The nodes a reconnect may go to, `baseUrl` among them. */
    this.nodes = nodes.includes(this.baseUrl) ? nodes : [this.baseUrl, ...nodes];
    this._WebSocket = opts.WebSocket ?? globalThis.WebSocket;
    const f = opts.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') throw new TypeError('ConvergeClient: no fetch implementation');
    this._fetchImpl = opts.fetch ? f : (...a) => globalThis.fetch(...a);
    this.options = {
      heartbeatIntervalMs: opts.heartbeatIntervalMs,
      ackTimeoutMs: opts.ackTimeoutMs ?? 10000,
      requestTimeoutMs: opts.requestTimeoutMs ?? 20000,
      connectTimeoutMs: opts.connectTimeoutMs ?? 15000,
      syncPageSize: opts.syncPageSize ?? 100,
      autoProcess: opts.autoProcess ?? true,
      watchNetwork: opts.watchNetwork ?? true,
    };
    this.session = opts.session ? { ...opts.session } : null;
    this.api = new Api({ baseUrl: this.baseUrl, fetch: this._fetchImpl, getToken: () => this.session?.token });
    this.tracker = new SeqTracker();
    this.backoff = new Backoff(opts.backoff);
    /** Map conversation id -> conversation ({id, type, name, owner, members, last_seq, muted, ...}). */
    this.conversations = new Map();
    /** 'offline' | 'connecting' | 'online' */
    this.state = State.offline;
    /** The server's `ready` frame data while connected. */
    this.ready = null;

    this._outbox = new Map(); // client_msg_id -> entry, in send order
    this._requests = new Map(); // frame id -> {resolve, reject, timer, cmd, cmid?}
    this._nextId = 1;
    this._authId = null; // id of the current socket's auth frame
    this._ws = null;
    this._gen = 0;
    this._started = false;
    this._closed = true;
    this._attempting = false;
    this._bootstrapped = false;
    this._everOnline = false;
    this._timers = { reconnect: null, heartbeat: null, tick: null, connect: null, refresh: null };
    this._lastFrameAt = 0;
    this._hbSentAt = 0;
    this._processed = new Map();
    this._users = new Map();
    this._netHandlers = null;
    this._convEpoch = 0; // bumped by every conversation push (a list fetched across one is stale)
    this._fillTo = new Map(); // conversation id -> seq a history fill is bringing it up to (see _fill)
    /** Map room id (number) -> the rooms this client is in, see rooms.js roomFromReply. */
    this.rooms = new Map();
  }

  // ------------------------------------------------------------------ accounts

  /** Signs up: {user_id?, name?, password} -> {user_id, name, ...}. */
  register({ user_id, name, password }) {
    return this.api.request('POST', '/users', { json: { user_id, name, password }, auth: false });
  }

  /** Logs in this device: {user_id, password, device_id?} -> session {token, user_id, name, device_id, expires_at}. */
  async login({ user_id, password, device_id }) {
    const r = await this.api.request('POST', '/login', {
      json: { user_id, password, device_id: device_id || randomId(8) },
      auth: false,
    });
    this.session = { token: r.token, user_id: r.user_id, name: r.name, device_id: r.device_id, expires_at: r.expires_at };
    this.emit('session', this.session);
    return this.session;
  }

  /** Uses the session of an earlier login (e.g. kept in localStorage). */
  useSession(session) {
    this.session = session ? { ...session } : null;
  }

  /** Ends the session on the server and disconnects. */
  async logout() {
    if (this.session) await this.api.request('POST', '/logout').catch(() => {});
    this.close();
    this.session = null;
  }

  /** The logged-in user: {user_id, name, device_id, admin, expires_at}. */
  me() {
    return this.api.request('GET', '/me');
  }

  /** Another user's public profile {user_id, name} (cached). */
  getUser(userId) {
    let p = this._users.get(userId);
    if (!p) {
      p = this.api.request('GET', `/users/${encodeURIComponent(userId)}`);
      this._users.set(userId, p);
      p.catch(() => this._users.delete(userId));
    }
    return p;
  }

  // ------------------------------------------------------------------ conversations

  /** Fetches this user's conversations (also kept in `client.conversations`). */
  async listConversations() {
    let r;
    for (let tries = 0; ; tries++) {
      const epoch = this._convEpoch;
      r = await this.api.request('GET', '/conversations');
      // A push applied while the request was out may be newer than the answer: ask again.
      if (epoch === this._convEpoch || tries >= 2) break;
    }
    const list = r.conversations || [];
    const previous = this.conversations;
    const next = new Map();
    for (const c of list) {
      const old = previous.get(c.id);
      if (old && old.last_seq > c.last_seq) c.last_seq = old.last_seq;
      next.set(c.id, c);
    }
    this.conversations = next;
    for (const id of previous.keys()) if (!next.has(id)) this._processed.delete(id);
    this.emit('conversations', [...next.values()]);
    return [...next.values()];
  }

  async getConversation(id) {
    const c = await this.api.request('GET', `/conversations/${encodeURIComponent(id)}`);
    this._remember(c);
    return c;
  }

  /** Creates a conversation: {type: 'direct'|'group', members: [user ids], name?}. Direct ones are idempotent per pair. */
  async createConversation({ type, members, name }) {
    const c = await this.api.request('POST', '/conversations', { json: { type, members, name } });
    this._remember(c);
    return c;
  }

  /** The direct conversation with one user (created on first use). */
  createDirect(userId) {
    return this.createConversation({ type: 'direct', members: [userId] });
  }

  createGroup({ name, members }) {
    return this.createConversation({ type: 'group', name, members });
  }

  async addMembers(conversationId, members) {
    const c = await this.api.request('POST', `/conversations/${encodeURIComponent(conversationId)}/members`, {
      json: { members },
    });
    this._remember(c);
    return c;
  }

  async removeMember(conversationId, userId) {
    const c = await this.api.request(
      'DELETE',
      `/conversations/${encodeURIComponent(conversationId)}/members/${encodeURIComponent(userId)}`,
    );
    if (userId === this.session?.user_id) {
      this._convEpoch++;
      this.conversations.delete(String(conversationId));
      this._processed.delete(String(conversationId));
      this.emit('conversations', [...this.conversations.values()]);
    } else {
      this._remember(c);
    }
    return c;
  }

  /** Mutes or unmutes a conversation for this user (offline push only; mentions still push): -> {muted}. */
  async mute(conversationId, muted) {
    const r = await this.api.request('POST', `/conversations/${encodeURIComponent(conversationId)}/mute`, {
      json: { muted: !!muted },
    });
    const c = this.conversations.get(String(conversationId));
    if (c && typeof r.muted === 'boolean' && c.muted !== r.muted) {
      c.muted = r.muted;
      this.emit('conversations', [...this.conversations.values()]);
    }
    return r;
  }

  // ------------------------------------------------------------------ groups

  /** Changes a group's settings (owner or admin): {name?, notice?, join_policy?} -> the conversation. */
  async updateConversation(conversationId, { name, notice, join_policy } = {}) {
    const json = {};
    if (name !== undefined) json.name = name;
    if (notice !== undefined) json.notice = notice;
    if (join_policy !== undefined) json.join_policy = join_policy;
    const c = await this.api.request('PATCH', `/conversations/${encodeURIComponent(conversationId)}`, { json });
    this._remember(c);
    return c;
  }

  /** Makes a member an admin or an admin a member again (owner): role 'admin' | 'member' -> the conversation. */
  async setRole(conversationId, userId, role) {
    const c = await this.api.request(
      'PUT',
      `/conversations/${encodeURIComponent(conversationId)}/roles/${encodeURIComponent(userId)}`,
      { json: { role } },
    );
    this._remember(c);
    return c;
  }

  /** Hands the group over to another member (owner); the caller becomes an admin -> the conversation. */
  async transferOwner(conversationId, userId) {
    const c = await this.api.request('POST', `/conversations/${encodeURIComponent(conversationId)}/owner`, {
      json: { user_id: userId },
    });
    this._remember(c);
    return c;
  }

  /** What anyone may see of a group: {conversation_id, name, join_policy, member_count, member}. */
  getGroup(conversationId) {
    return this.api.request('GET', `/groups/${encodeURIComponent(conversationId)}`);
  }

  /**
   * Applies to join a group: -> the application (`status` 'pending'; 'approved' in an open group,
   * where the caller is a member at once and the conversation is in `conversations`).
   */
  async apply(conversationId, { text } = {}) {
    const r = await this.api.request('POST', `/conversations/${encodeURIComponent(conversationId)}/applications`, {
      json: text ? { text } : {},
    });
    if (r?.status === 'approved') await this._joined(r.conversation_id ?? conversationId);
    return r;
  }

  /** Approves an application (owner or admin of its group): -> the application as decided. */
  approveApplication(applicationId) {
    return this._decide('applications', applicationId, 'approve');
  }

  declineApplication(applicationId) {
    return this._decide('applications', applicationId, 'decline');
  }

  /**
   * Pending applications, newest first: with `conversationId`, that group's (owner or admin);
   * without, those of every group the caller owns or administers, and the caller's own.
   */
  async listApplications({ conversationId } = {}) {
    const r = await this.api.request('GET', '/applications', { query: { conversation_id: conversationId } });
    return r.applications || [];
  }

  /** Invites a user into a group: -> the invitation (pending). */
  invite(conversationId, userId, { text } = {}) {
    const json = { user_id: userId };
    if (text) json.text = text;
    return this.api.request('POST', `/conversations/${encodeURIComponent(conversationId)}/invitations`, { json });
  }

  /** Accepts an invitation made to the caller: -> the invitation; the group is in `conversations` after. */
  async acceptInvitation(invitationId) {
    const r = await this._decide('invitations', invitationId, 'accept');
    if (r?.status === 'accepted' && r.conversation_id != null) await this._joined(r.conversation_id);
    return r;
  }

  declineInvitation(invitationId) {
    return this._decide('invitations', invitationId, 'decline');
  }

  /** Pending invitations the caller received or sent, newest first. */
  async listInvitations() {
    const r = await this.api.request('GET', '/invitations');
    return r.invitations || [];
  }

  // ------------------------------------------------------------------ friends and the directory

  /**
   * Asks a user to be friends: -> {request, conversation?}. When they had asked the caller
   * already, that request is accepted instead (`request.status` 'accepted', with the pair's
   * direct conversation).
   */
  async requestFriend(userId, { text } = {}) {
    const r = await this.api.request('POST', `/users/${encodeURIComponent(userId)}/friend-requests`, {
      json: text ? { text } : {},
    });
    return this._friendAnswer(r);
  }

  /** Accepts a friend request made to the caller: -> {request, conversation} (the pair's direct conversation). */
  async acceptFriendRequest(requestId) {
    return this._friendAnswer(await this._decide('friend-requests', requestId, 'accept'));
  }

  /** Declines a friend request: -> the request. */
  declineFriendRequest(requestId) {
    return this._decide('friend-requests', requestId, 'decline');
  }

  /** Pending friend requests the caller received or sent. */
  async listFriendRequests() {
    const r = await this.api.request('GET', '/friend-requests');
    return r.friend_requests || [];
  }

  /** The caller's friends: [{user_id, name, since}], by id. */
  async listFriends() {
    const r = await this.api.request('GET', '/friends');
    return r.friends || [];
  }

  removeFriend(userId) {
    return this.api.request('DELETE', `/friends/${encodeURIComponent(userId)}`);
  }

  /** Who may start a direct conversation with the caller: 'anyone' | 'friends' -> the user. */
  setDirectPolicy(policy) {
    return this.api.request('PATCH', '/me', { json: { direct_policy: policy } });
  }

  /**
   * The user directory: users whose id starts with `q` or whose name contains it (empty: all),
   * by id. -> {users: [{user_id, name}], next?}; pass `next` as `after` for the next page.
   */
  async searchUsers({ q = '', after, limit } = {}) {
    const r = await this.api.request('GET', '/users', { query: { q, after, limit } });
    const users = r.users || [];
    for (const u of users)
      if (u?.user_id && !this._users.has(u.user_id)) this._users.set(u.user_id, Promise.resolve({ user_id: u.user_id, name: u.name }));
    return r.next ? { users, next: r.next } : { users };
  }

  /** Every page of a directory search, as an async iterator of users. */
  async *searchUsersAll({ q = '', limit } = {}) {
    let after;
    for (;;) {
      const page = await this.searchUsers({ q, after, limit });
      yield* page.users;
      if (!page.next || page.next === after) return;
      after = page.next;
    }
  }

  _decide(kind, id, decision) {
    return this.api.request('POST', `/${kind}/${encodeURIComponent(id)}/${decision}`);
  }

  _friendAnswer(r) {
    // {request, conversation} (accept), or the request itself, possibly with `conversation`.
    const request = r && typeof r === 'object' && r.request && typeof r.request === 'object' ? r.request : r;
    const conversation = r?.conversation ?? request?.conversation;
    if (conversation && typeof conversation === 'object' && (conversation.id ?? conversation.conversation_id) != null) {
      conversation.id = conversation.conversation_id = String(conversation.id ?? conversation.conversation_id);
      this._remember(conversation);
      return { request, conversation };
    }
    return { request };
  }

  /**
   * The caller became a member of a group by its own call (an invitation accepted, an open group
   * joined): its conversation is taken in as the node's `member_added` push would be (the
   * earlier messages are fetched), unless that push came first.
   */
  async _joined(conversationId) {
    const id = String(conversationId);
    if (this.conversations.has(id)) return;
    let c;
    try {
      c = await this.api.request('GET', `/conversations/${encodeURIComponent(id)}`);
    } catch {
      return; // the push, or the next list, brings it
    }
    if (!this.conversations.has(id)) this._onConversationPush({ ...c, change: 'member_added' });
  }

  _remember(c) {
    this._convEpoch++;
    const old = this.conversations.get(c.id);
    if (old && old.last_seq > c.last_seq) c.last_seq = old.last_seq;
    this.conversations.set(c.id, c);
    this.emit('conversations', [...this.conversations.values()]);
  }

  /**
   * A `conversation` push (docs/protocol.md, WebSocket, node -> client): the conversation object
   * as it now is plus `change` ('created' | 'member_added' | 'member_removed' | 'updated' |
   * 'role_changed' | 'owner_changed') and, for a group's change, `event` (the body of the system
   * message it stored, as an object). Sent to its members and to a member just removed, for
   * changes made on any device by anyone.
   */
  _onConversationPush(data) {
    if (!data || typeof data !== 'object' || (data.id ?? data.conversation_id) == null) return;
    const { change, event, ...conv } = data;
    const id = String(conv.id ?? conv.conversation_id);
    conv.id = conv.conversation_id = id;
    const me = this.session?.user_id;
    const member = Array.isArray(conv.members) && conv.members.includes(me);
    const old = this.conversations.get(id);
    const joined = member && !old;
    this._convEpoch++;
    if (member) {
      if (old && old.last_seq > conv.last_seq) conv.last_seq = old.last_seq;
      // `muted` is the caller's own flag, and a push has no caller of ours: keep what we know
      // (a conversation just joined starts unmuted).
      conv.muted = old ? old.muted : false;
      this.conversations.set(id, conv);
    } else {
      // Removed, or left (maybe on another device). The seq floor is kept: if the user is added
      // back, what came meanwhile is caught up and nothing seen before comes again. Heartbeats
      // name listed conversations only, so they leave this one out (naming it would be refused).
      this.conversations.delete(id);
      this._processed.delete(id);
    }
    const info = { change, member, joined };
    if (event !== undefined) info.event = parseEvent(event);
    this.emit('conversation', data, info);
    this.emit('conversations', [...this.conversations.values()]);
    if (joined) {
      // Its live stream starts at the first message stored after the join: what came before
      // (down to what this device has seen: nothing for a conversation new to it) is fetched.
      const next = this.tracker.lowestAbove(id);
      this._fill(id, next ? next - 1 : conv.last_seq ?? 0);
    }
  }

  /**
   * Fetches, as history, the messages of a conversation from the first one not seen up to
   * `upTo`, and hands them over as 'message' events (source 'sync') — what the protocol's client
   * loop does for a gap ("fetch after_seq=have[c] to fill in"). Used for a conversation the user
   * joins while connected (its live stream starts after the join; an offline fetch would bring
   * the rest only at the next connection). The seq floor then rises with no hole, so heartbeats
   * carry the conversation; copies that also come live are duplicates the tracker drops.
   */
  async _fill(id, upTo) {
    id = String(id);
    if (!(upTo > (this._fillTo.get(id) ?? 0))) return;
    const running = this._fillTo.has(id);
    this._fillTo.set(id, upTo); // a fill under way goes on to the new end
    if (running) return;
    try {
      for (;;) {
        const floor = this.tracker.floor(id);
        const target = this._fillTo.get(id);
        if (floor >= target || !this._started) break;
        const page = await this.history(id, { afterSeq: floor, limit: Math.min(this.options.syncPageSize, target - floor) });
        if (!this._started) break;
        for (const m of page) this._deliver(m, 'sync');
        if (this.tracker.floor(id) <= floor) break; // nothing more to be had
      }
    } catch (err) {
      // Removed again meanwhile: nothing to fill. Otherwise the next connection's offline fetch
      // brings what is missing.
      if (err?.code !== 'forbidden' && err?.code !== 'not_found') this.emit('error', err);
    } finally {
      this._fillTo.delete(id);
    }
  }

  // ------------------------------------------------------------------ voice rooms

  /** Creates a voice room: {name?, max_members?} -> {room_id, name, owner, max_members, member_count, created_at}. */
  createRoom({ name, max_members } = {}) {
    const json = {};
    if (name !== undefined) json.name = name;
    if (max_members !== undefined) json.max_members = max_members;
    return this.api.request('POST', '/rooms', { json });
  }

  /** The rooms by id, a page at a time: -> {rooms, next?}; pass `next` as `after` for the next page. */
  async listRooms({ after, limit } = {}) {
    const r = await this.api.request('GET', '/rooms', { query: { after, limit } });
    const rooms = r.rooms || [];
    return r.next != null ? { rooms, next: r.next } : { rooms };
  }

  /** One room with its members [{user_id, member_no, muted, speaking}]. */
  getRoom(roomId) {
    return this.api.request('GET', `/rooms/${roomIdOf(roomId)}`);
  }

  /** Deletes a room (its owner): -> {room_id}. Its members get `room.deleted`. */
  async deleteRoom(roomId) {
    const id = roomIdOf(roomId);
    const r = await this.api.request('DELETE', `/rooms/${id}`);
    if (this.rooms.has(id)) this._roomGone(id, { room_id: id, reason: 'deleted' });
    return r;
  }

  /**
   * Joins a room on the current connection: -> the room with `members` and `me` (this client's
   * member_no), also kept in `rooms`. From then on the room is joined again after every
   * reconnect, until leaveRoom() or the client is removed, or the room deleted.
   */
  async joinRoom(roomId) {
    const id = roomIdOf(roomId);
    // Called while the socket is still connecting (a page opened at a room's address): wait for
    // it, within the request timeout, rather than fail at once.
    if (!this.ready && this.state === State.connecting) await this._untilOnline(this.options.requestTimeoutMs);
    const data = await this._request('room.join', { room_id: id });
    return this._roomJoined(id, data, 'joined');
  }

  /** Leaves a room (and stops rejoining it): -> {room_id}. Already out (not connected, not_found) is fine. */
  async leaveRoom(roomId) {
    const id = roomIdOf(roomId);
    if (this.rooms.has(id)) this._roomGone(id, { room_id: id, reason: 'left' });
    if (!this.ready) return { room_id: id }; // a closed connection is out of its rooms
    try {
      return await this._request('room.leave', { room_id: id });
    } catch (err) {
      if (err?.code === 'not_found' || err?.code === 'disconnected') return { room_id: id };
      throw err;
    }
  }

  /** Mutes or unmutes oneself in a room (a muted member's frames are dropped): -> {room_id, muted}. */
  async muteSelf(roomId, muted = true) {
    const id = roomIdOf(roomId);
    const r = await this._request('room.mute', { room_id: id, muted: !!muted });
    const room = this.rooms.get(id);
    if (room) {
      room.selfMuted = !!muted; // applied again after a rejoin that lost it
      this._setMember(room, this.session?.user_id, { muted: r?.muted ?? !!muted });
    }
    return r;
  }

  /** The owner mutes or unmutes a member: -> {room_id, user_id, muted}. */
  async muteMember(roomId, userId, muted = true) {
    const id = roomIdOf(roomId);
    const r = await this._request('room.mute_member', { room_id: id, user_id: userId, muted: !!muted });
    const room = this.rooms.get(id);
    if (room) this._setMember(room, userId, { muted: r?.muted ?? !!muted });
    return r;
  }

  /** The owner removes a member, who may not join again: -> {room_id, user_id}. */
  async removeRoomMember(roomId, userId) {
    const id = roomIdOf(roomId);
    const r = await this._request('room.remove', { room_id: id, user_id: userId });
    const room = this.rooms.get(id);
    if (room && memberOf(room, userId)) {
      room.members = room.members.filter((m) => m.user_id !== userId);
      room.member_count = room.members.length;
      this.emit('room.state', id, room);
    }
    return r;
  }

  /** An event to one member (`to`) or to every other member: `body` any JSON value -> {room_id}. */
  sendRoomMessage(roomId, body, to) {
    const data = { room_id: roomIdOf(roomId), body };
    if (to !== undefined && to !== null) data.to = to;
    return this._request('room.send', data);
  }

  /**
   * Sends one audio frame (an Opus packet, 1 to 4000 bytes) to a room this client is in; `seq`
   * is the sender's frame counter (16 bits, wraps). Returns false when it did not go out: not
   * connected, the room not joined on this connection (yet: a rejoin is under way), or the socket
   * more than 64 KiB behind (real time: a late frame is worth nothing).
   */
  sendAudio(roomId, seq, payload) {
    const frame = encodeAudioFrame(roomId, seq, payload);
    const room = this.rooms.get(roomIdOf(roomId));
    const ws = this._ws;
    if (!room?.connected || !this.ready || !ws || ws.readyState !== 1) return false;
    if ((ws.bufferedAmount ?? 0) > AUDIO_MAX_BUFFERED) return false;
    try {
      ws.send(frame);
      return true;
    } catch {
      return false;
    }
  }

  _roomJoined(id, data, change) {
    const old = this.rooms.get(id);
    const room = roomFromReply({ ...data, room_id: data?.room_id ?? id }, old);
    room.connected = true;
    room.gen = this._gen;
    if (old?.selfMuted !== undefined) room.selfMuted = old.selfMuted;
    this.rooms.set(id, room);
    this.emit('room.state', id, room);
    if (change === 'rejoined') this.emit('room.rejoined', room, { previousMe: old?.me });
    return room;
  }

  /** The client is out of a room for good: forgotten (never rejoined), `room.state` null. */
  _roomGone(id, why) {
    if (!this.rooms.delete(id)) return;
    this.emit('room.state', id, null, why);
  }

  _setMember(room, userId, fields) {
    const m = memberOf(room, userId);
    if (!m) return;
    let changed = false;
    for (const [k, v] of Object.entries(fields))
      if (m[k] !== v) {
        m[k] = v;
        changed = true;
      }
    if (changed) this.emit('room.state', room.room_id, room);
  }

  /**
   * After every `ready`: the rooms this client was in are joined again on the new connection
   * (the node may be another one: the membership moves there, member_no and muted kept, or the
   * client is a new member if the old node was taken for dead meanwhile). `room.rejoined` gives
   * the new member list; a refusal that stands (room deleted, full, user removed) drops the room.
   */
  _rejoinRooms() {
    for (const id of [...this.rooms.keys()]) this._rejoinRoom(id);
  }

  async _rejoinRoom(id, tries = 0) {
    const gen = this._gen;
    let data;
    try {
      data = await this._request('room.join', { room_id: id });
    } catch (err) {
      if (gen !== this._gen || !this.rooms.has(id)) return; // the next connection tries again
      if (ROOM_FINAL.has(err?.code)) {
        this._roomGone(id, { room_id: id, reason: 'rejoin_failed', error: err });
        return void this.emit('room.rejoin_failed', { room_id: id, error: err });
      }
      if (err?.code === 'disconnected' || err?.code === 'timeout') return; // the next connection tries again
      // unavailable / internal: the node could not do it now; try again shortly on this socket.
      if (tries < 5) {
        setTimeout(() => gen === this._gen && this.rooms.has(id) && this._rejoinRoom(id, tries + 1), 500 * (tries + 1));
        return;
      }
      this._roomGone(id, { room_id: id, reason: 'rejoin_failed', error: err });
      this.emit('room.rejoin_failed', { room_id: id, error: err });
      return;
    }
    if (!this.rooms.has(id)) {
      // Left while the rejoin was out: out on the node too.
      if (gen === this._gen) this._request('room.leave', { room_id: id }).catch(() => {});
      return;
    }
    if (gen !== this._gen) return;
    const room = this._roomJoined(id, data, 'rejoined');
    const me = this.session?.user_id;
    if (room.selfMuted && !memberOf(room, me)?.muted) this.muteSelf(id, true).catch(() => {});
  }

  _roomsDisconnected() {
    for (const [id, room] of this.rooms) {
      if (!room.connected) continue;
      room.connected = false;
      for (const m of room.members) m.speaking = false;
      this.emit('room.state', id, room);
    }
  }

  /** room.joined / left / muted / speaking / message / deleted: the member lists follow, then the event. */
  _onRoomEvent(cmd, data) {
    if (!data || typeof data !== 'object') return;
    let id;
    try {
      id = roomIdOf(data.room_id);
    } catch {
      return;
    }
    const room = this.rooms.get(id);
    const me = this.session?.user_id;
    const changed = () => {
      room.member_count = room.members.length;
      this.emit('room.state', id, room);
    };
    switch (cmd) {
      case 'room.joined':
        if (room && data.user_id === me) {
          // Not the joiner's own event (the node never sends it to the joiner): this user joined
          // from another connection (another device, or this one's successor), which has the
          // membership now. This client is out; rejoining would take it back and forth.
          this.emit(cmd, data);
          return this._roomGone(id, { ...data, reason: 'moved' });
        }
        if (room) {
          // One membership per user: joining from another connection moves it (same member_no).
          room.members = room.members.filter((m) => m.user_id !== data.user_id && m.member_no !== data.member_no);
          room.members.push({ user_id: data.user_id, member_no: data.member_no, muted: !!data.muted, speaking: false });
          sortMembers(room);
          changed();
        }
        break;
      case 'room.left':
        if (room) {
          if (data.user_id === me) {
            // A stale row of an earlier membership (another member_no) is not this one.
            if (data.member_no != null && room.me != null && data.member_no !== room.me) break;
            this.emit(cmd, data);
            if (data.reason === 'node_lost' && room.connected) {
              // The cluster took this client's node for dead while the client is still on it:
              // the membership is gone from the store; join again (a new member_no).
              room.connected = false;
              this.emit('room.state', id, room);
              return void this._rejoinRoom(id);
            }
            // Removed by the owner, or left elsewhere: out for good (not rejoined); the app may
            // join again where that is allowed.
            return this._roomGone(id, data);
          }
          const before = room.members.length;
          room.members = room.members.filter((m) => !(m.user_id === data.user_id && (data.member_no == null || m.member_no === data.member_no)));
          if (room.members.length !== before) changed();
        }
        break;
      case 'room.muted':
        if (room) {
          if (data.user_id === me && data.by && data.by !== me) room.selfMuted = undefined; // the owner's say
          this._setMember(room, data.user_id, { muted: !!data.muted });
        }
        break;
      case 'room.speaking':
        if (room) this._setMember(room, data.user_id, { speaking: !!data.speaking });
        break;
      case 'room.deleted':
        this.emit(cmd, data);
        return this._roomGone(id, { ...data, reason: 'deleted' });
      default:
        break; // room.message: nothing to keep
    }
    this.emit(cmd, data);
  }

  _onBinary(bytes) {
    const f = decodeAudioFrame(bytes);
    if (!f) return;
    const room = this.rooms.get(f.roomId);
    f.userId = room?.members.find((m) => m.member_no === f.memberNo)?.user_id;
    this.emit('audio', f);
  }

  // ------------------------------------------------------------------ history

  /**
   * History of one conversation, ascending seq. {afterSeq, limit}: the messages after afterSeq;
   * {beforeSeq, limit}: the `limit` messages just before beforeSeq (paging upward).
   * History is not deduplicated and raises no 'message' events: the app merges it by seq.
   */
  async history(conversationId, { afterSeq, beforeSeq, limit } = {}) {
    const r = await this.api.request('GET', `/conversations/${encodeURIComponent(conversationId)}/messages`, {
      query: { after_seq: afterSeq, before_seq: beforeSeq, limit },
    });
    return (r.messages || []).map(withEvent);
  }

  /** The newest `limit` messages of a conversation (ascending). */
  latest(conversationId, limit = 50) {
    return this.history(conversationId, { beforeSeq: Number.MAX_SAFE_INTEGER, limit });
  }

  // ------------------------------------------------------------------ files

  /**
   * Uploads bytes (Blob/File, ArrayBuffer, typed array or string): -> {file_id, name, size, mime, url}.
   * @param {object} [o] {name, type} (defaults: the File's own name and type)
   */
  uploadFile(data, { name, type } = {}) {
    const fileName = name || data?.name || 'file';
    const mime = type || data?.type || 'application/octet-stream';
    return this.api.request('POST', '/files', { query: { name: fileName }, body: data, contentType: mime });
  }

  /**
   * Downloads a file (a message, its `file`, or a file_id) with the `Authorization: Bearer`
   * header: -> Blob, typed by the node's Content-Type. Rejects with ApiError (`forbidden` for a
   * file not shared with this user, `not_found`, `network`, `aborted` when `signal` fires).
   * @param {object} [o] {signal: AbortSignal}
   */
  fetchFile(f, { signal } = {}) {
    const id = fileIdOf(f);
    if (!id) return Promise.reject(new TypeError('fetchFile: no file_id'));
    return this.api.blob(`/files/${encodeURIComponent(id)}`, { signal });
  }

  /**
   * A file as an object URL (`blob:…`) for <img src>, <audio src> or a download link
   * (`<a href download>`), fetched with fetchFile(): no token in any URL. Resolves to
   * {url, blob, revoke}: call revoke() (idempotent) once the element showing it is gone, or the
   * bytes stay in memory until the page is closed.
   * @param {object} [o] {signal: AbortSignal}
   */
  async fileObjectUrl(f, { signal } = {}) {
    const blob = await this.fetchFile(f, { signal });
    const U = globalThis.URL;
    if (typeof U?.createObjectURL !== 'function') throw new TypeError('fileObjectUrl: no URL.createObjectURL here');
    const url = U.createObjectURL(blob);
    let live = true;
    return {
      url,
      blob,
      revoke() {
        if (!live) return;
        live = false;
        U.revokeObjectURL(url);
      },
    };
  }

  /**
   * Discouraged: an absolute URL for a file carrying the session token in its query
   * (`?token=`). A URL like that ends up in browser history, bookmarks, copy-paste, server and
   * proxy logs, and it stays valid as long as the session. Use fetchFile() / fileObjectUrl()
   * instead; this stays for callers that cannot send a header (and for compatibility).
   */
  fileUrl(f) {
    const id = fileIdOf(f);
    if (!id) return '';
    const token = this.session?.token ?? '';
    return `${this.baseUrl}/api/v1/files/${encodeURIComponent(id)}?token=${encodeURIComponent(token)}`;
  }

  // ------------------------------------------------------------------ sending

  /**
   * Sends a message. Resolves with the ack {conversation_id, seq, client_msg_id, ts} once the
   * server stored it; rejects on a final error (not a member, bad input) or close().
   * While disconnected the message waits and goes out on reconnect, with the same client_msg_id,
   * so a retry is never stored twice. The promise has a `client_msg_id` property.
   * @param {string} conversationId
   * `mentions`: user ids of members (or ['all']) the message mentions; they are pushed even when
   * they muted the conversation.
   * @param {{type?: string, body?: string, file_id?: string, client_msg_id?: string, mentions?: string[]}} msg
   */
  send(conversationId, { type = 'text', body = '', file_id, client_msg_id, mentions } = {}) {
    const cmid = client_msg_id || messageId();
    const existing = this._outbox.get(cmid);
    if (existing) return existing.promise;
    const data = { conversation_id: String(conversationId), type, body, client_msg_id: cmid };
    if (file_id) data.file_id = file_id;
    if (Array.isArray(mentions) && mentions.length) data.mentions = [...new Set(mentions.map(String))];
    const entry = { cmid, data, sentAt: 0, attempts: 0, frameId: 0 };
    entry.promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    entry.promise.client_msg_id = cmid;
    this._outbox.set(cmid, entry);
    this.emit('pending', { ...data });
    if (this.ready) this._transmit(entry);
    return entry.promise;
  }

  sendText(conversationId, text, opts = {}) {
    return this.send(conversationId, { ...opts, type: 'text', body: text });
  }

  /**
   * Uploads a file, then sends it as a message of `type` ('image' | 'file' | 'voice').
   * The upload is retried while the connection is down. Resolves with the ack (plus `file`).
   */
  async sendFile(conversationId, data, { type = 'file', name, mime, body, client_msg_id, mentions } = {}) {
    const cmid = client_msg_id || messageId();
    const file = await this._retrying(() => this.uploadFile(data, { name, type: mime }));
    const ack = await this.send(conversationId, { type, body: body ?? file.name, file_id: file.file_id, client_msg_id: cmid, mentions });
    return { ...ack, file };
  }

  /** Messages not acked yet, in send order: [{conversation_id, type, body, client_msg_id, file_id?}]. */
  pending() {
    return [...this._outbox.values()].map((e) => ({ ...e.data }));
  }

  /**
   * Runs fn again on retryable failures. While the connection is down it waits for it to come
   * back (up to `attempts` tries); a failure while online (the node answers the socket but not
   * this request) is given `onlineAttempts` tries only.
   */
  async _retrying(fn, { attempts = 30, onlineAttempts = 3 } = {}) {
    const b = new Backoff({ initialMs: 300, maxMs: 5000 });
    let online = 0;
    for (let i = 1; ; i++) {
      const wasOnline = this.state === State.online;
      try {
        return await fn();
      } catch (err) {
        if (wasOnline) online++;
        if (!(err instanceof ApiError) || !err.retryable || i >= attempts || online >= onlineAttempts || !this._started) throw err;
        const delay = b.next();
        await (this.state === State.online ? sleep(delay) : Promise.race([sleep(delay), this._waitState(State.online)]));
      }
    }
  }

  _waitState(state) {
    if (this.state === state) return sleep(0);
    return new Promise((resolve) => {
      const off = this.on('state', (s) => {
        if (s === state) {
          off();
          resolve();
        }
      });
    });
  }

  _transmit(entry) {
    const id = this._nextId++;
    entry.frameId = id;
    entry.sentAt = Date.now();
    entry.attempts++;
    if (!this._sendFrame({ cmd: 'msg', id, data: entry.data })) {
      entry.sentAt = 0;
      return;
    }
    this._requests.set(id, { cmd: 'msg', cmid: entry.cmid });
  }

  _onAck(data, id) {
    if (id !== undefined) this._requests.delete(id);
    const entry = this._outbox.get(data?.client_msg_id);
    if (!entry) return; // an ack for a retry whose first ack already came
    this._outbox.delete(entry.cmid);
    this.emit('ack', data);
    entry.resolve(data);
  }

  // ------------------------------------------------------------------ processing and heartbeats

  /**
   * With autoProcess: false, tells the client the app has processed a conversation up to `seq`;
   * heartbeats report it, and offline sync resumes after it.
   */
  markProcessed(conversationId, seq) {
    const k = String(conversationId);
    if ((this._processed.get(k) ?? 0) < seq) this._processed.set(k, seq);
  }

  /** The per-conversation seqs heartbeats carry: processed with no hole, for current conversations. */
  processedSeqs() {
    const seqs = this.tracker.snapshot(this.conversations.keys());
    if (!this.options.autoProcess)
      for (const k of Object.keys(seqs)) {
        const p = this._processed.get(k) ?? 0;
        if (p < seqs[k]) seqs[k] = p;
        if (!seqs[k]) delete seqs[k];
      }
    return seqs;
  }

  /** Sends a heartbeat now (over the WebSocket when connected, else over HTTP). */
  async heartbeat() {
    const seqs = this.processedSeqs();
    try {
      if (this.ready) {
        this._hbSentAt = Date.now();
        return await this._request('heartbeat', { seqs });
      }
      return await this.api.request('POST', '/heartbeat', { json: { seqs } });
    } catch (err) {
      // A conversation we were removed from: refresh the list (heartbeats then leave it out).
      if (err?.code === 'forbidden') this.listConversations().catch(() => {});
      throw err;
    }
  }

  // ------------------------------------------------------------------ incoming messages

  /** Hands a message to the app unless it is a duplicate; returns whether it was new. */
  _deliver(m, source) {
    if (!m || typeof m !== 'object' || m.conversation_id == null) return false;
    withEvent(m);
    const id = String(m.conversation_id);
    // The live stream of a conversation has no gaps, except where it starts for a conversation
    // joined while connected: a first live message above floor + 1 leaves a hole to fetch.
    const hole = source === 'live' && m.seq > this.tracker.floor(id) + 1 && !this.tracker.seen(id, m.seq);
    if (!this.tracker.accept(id, m.seq)) return false;
    if (hole) this._fill(id, (this.tracker.lowestAbove(id) || m.seq) - 1);
    const c = this.conversations.get(id);
    if (c) {
      if (m.seq > (c.last_seq ?? 0)) c.last_seq = m.seq;
    } else {
      this._refreshSoon(); // a conversation we were just added to
    }
    this.emit('message', m, { source });
    return true;
  }

  _refreshSoon() {
    if (this._timers.refresh) return;
    this._timers.refresh = setTimeout(() => {
      this._timers.refresh = null;
      if (this.session) this.listConversations().catch(() => {});
    }, 100);
  }

  /**
   * Fetches offline messages over HTTP (everything after this device's heartbeat seqs), all
   * pages, emitting 'message' for each new one. Returns how many were new.
   */
  async syncOffline({ initial = false } = {}) {
    let cursor;
    let n = 0;
    for (;;) {
      const page = await this.api.request('GET', '/offline', { query: { limit: this.options.syncPageSize, cursor } });
      for (const m of page.messages || []) {
        // The first offline message of a conversation is the one right after the device's cursor.
        if (initial) this.tracker.initFloor(m.conversation_id, m.seq - 1);
        if (this._deliver(m, 'offline')) n++;
      }
      if (!page.more || !page.next_cursor) break;
      cursor = page.next_cursor;
    }
    return n;
  }

  /** Sync over the live connection (all pages); used after every (re)connect. */
  async resync() {
    let cursor;
    let n = 0;
    for (;;) {
      const page = await this._request('sync', cursor ? { limit: this.options.syncPageSize, cursor } : { limit: this.options.syncPageSize });
      for (const m of page.messages || []) if (this._deliver(m, 'sync')) n++;
      if (!page.more || !page.next_cursor) break;
      cursor = page.next_cursor;
    }
    return n;
  }

  // ------------------------------------------------------------------ connection

  /**
   * Starts the device: conversation list, offline messages, live stream, heartbeats; then keeps
   * the connection up (reconnects with backoff, resyncs). Resolves when first online; rejects if
   * the token is refused or close() is called first.
   */
  connect() {
    if (!this.session?.token) return Promise.reject(new ApiError(401, 'unauthorized', 'log in first'));
    if (this._started) return this._connectPromise;
    if (!this._WebSocket)
      return Promise.reject(
        new TypeError('no WebSocket implementation: pass options.WebSocket (e.g. the `ws` package) in Node < 22'),
      );
    this._started = true;
    this._closed = false;
    this._connectPromise = new Promise((resolve, reject) => {
      this._connectResolve = resolve;
      this._connectReject = reject;
    });
    this._connectPromise.catch(() => {});
    this._watchNetwork(true);
    this._setState(State.connecting);
    this._attempt();
    return this._connectPromise;
  }

  /** Disconnects for good; unacked sends are rejected. connect() may be called again. */
  close() {
    this._closed = true;
    this._started = false;
    for (const k of Object.keys(this._timers)) {
      clearTimeout(this._timers[k]);
      clearInterval(this._timers[k]);
      this._timers[k] = null;
    }
    this._watchNetwork(false);
    this._dropSocket('client closed');
    const err = new ApiError(0, 'closed', 'client closed');
    for (const e of this._outbox.values()) e.reject(err);
    this._outbox.clear();
    this._connectReject?.(err);
    this._connectResolve = this._connectReject = null;
    // Closing the connection leaves its rooms; nothing to rejoin on a later connect().
    for (const id of [...this.rooms.keys()]) this._roomGone(id, { room_id: id, reason: 'closed' });
    this._setState(State.offline);
  }

  /**
   * Points the client at another node (of `nodes`, or any): HTTP calls go there at once, the
   * WebSocket at its next (re)connection. Emits `node` with the URL.
   */
  useNode(url) {
    const u = trimUrl(url);
    if (!this.nodes.includes(u)) this.nodes.push(u);
    if (u === this.baseUrl) return;
    this.baseUrl = u;
    this.api.baseUrl = u;
    this.emit('node', u);
  }

  /** A connection to the current node failed: the next attempt goes to the next node, if any. */
  _nextNode() {
    if (this.nodes.length < 2) return;
    const i = this.nodes.indexOf(this.baseUrl);
    this.useNode(this.nodes[(i + 1) % this.nodes.length]);
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit('state', s);
  }

  /**
   * Before each connection: the conversation list, offline messages over HTTP (all pages), and a
   * heartbeat of what is processed. The live stream then starts after what this fetched (the
   * node's catch-up stays small), and the resync over the new socket only brings what is newer.
   */
  async _prepare() {
    await this.listConversations();
    // The socket is closed: nothing else is flowing, so the first offline message of a
    // conversation not seen before is the one right after the device's cursor...
    await this.syncOffline({ initial: true });
    // ...and a conversation with nothing offline is at its last seq.
    for (const c of this.conversations.values()) this.tracker.initFloor(c.id, c.last_seq ?? 0);
    const seqs = this.processedSeqs();
    if (Object.keys(seqs).length) await this.api.request('POST', '/heartbeat', { json: { seqs } }).catch(() => {});
    this._bootstrapped = true;
  }

  async _attempt() {
    if (this._closed || this._attempting || this._ws) return;
    this._attempting = true;
    try {
      try {
        await this._prepare();
      } catch (err) {
        if (this._closed) return;
        if (err?.status === 401) return this._fail(err);
        this.emit('error', err);
        if (err?.status === 0 || err?.status >= 500) this._nextNode(); // unreachable or failing: try another
        return this._scheduleReconnect();
      }
      if (this._closed || this._ws) return;
      this._openSocket();
    } finally {
      this._attempting = false;
    }
  }

  _openSocket() {
    const WS = this._WebSocket;
    // The token goes in the first frame, not in the URL (docs/protocol.md, "Opening and
    // authenticating"): a URL is logged by proxies and servers. The node answers `ready` (with
    // this frame's id), or `error unauthorized` and close 4001.
    const url = `${this.baseUrl.replace(/^http/, 'ws')}/ws`;
    const gen = ++this._gen;
    let ws;
    try {
      ws = new WS(url);
    } catch (err) {
      this.emit('error', err);
      return this._scheduleReconnect();
    }
    try {
      ws.binaryType = 'arraybuffer'; // audio frames (a browser's default would be Blob)
    } catch {
      /* a WebSocket without binaryType */
    }
    this._ws = ws;
    this._lastFrameAt = Date.now();
    const authId = (this._authId = this._nextId++);
    ws.onopen = () => {
      if (gen !== this._gen) return;
      const token = this.session?.token;
      if (!token || !this._sendFrame({ cmd: 'auth', id: authId, token })) this._dropSocket('could not authenticate');
    };
    ws.onmessage = (ev) => {
      if (gen === this._gen) this._onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (gen === this._gen) this._onSocketClosed(ev?.code, ev?.reason);
    };
    ws.onerror = () => {}; // a close event follows
    this._timers.connect = setTimeout(() => {
      this._timers.connect = null;
      if (gen === this._gen && !this.ready) this._dropSocket('connect timeout');
    }, this.options.connectTimeoutMs);
  }

  /** Forgets the current socket at once (a dead network may take minutes to report it). */
  _dropSocket(reason) {
    const ws = this._ws;
    if (!ws) return;
    this._gen++;
    try {
      if (typeof ws.terminate === 'function') ws.terminate();
      else ws.close(1000, reason);
    } catch {
      /* already closed */
    }
    this._onSocketClosed(1006, reason);
  }

  _onSocketClosed(code, reason) {
    const wasReady = !!this.ready;
    this._ws = null;
    this.ready = null;
    this._roomsDisconnected();
    for (const k of ['heartbeat', 'tick', 'connect']) {
      clearTimeout(this._timers[k]);
      clearInterval(this._timers[k]);
      this._timers[k] = null;
    }
    const err = new ApiError(0, 'disconnected', `connection closed${reason ? ': ' + reason : ''}`);
    for (const [id, r] of this._requests) {
      this._requests.delete(id);
      if (r.timer) clearTimeout(r.timer);
      r.reject?.(err);
    }
    for (const e of this._outbox.values()) e.sentAt = 0;
    this.emit('disconnect', { code, reason });
    if (this._closed) return this._setState(State.offline);
    if (code === CLOSE_UNAUTHORIZED) return this._fail(new ApiError(401, 'unauthorized', reason || 'unauthorized'));
    // The node is stopping, or never got to `ready`: reconnect to the next node, if there are several.
    if (code === CLOSE_GOING_AWAY || !wasReady) this._nextNode();
    this._setState(State.connecting);
    this._scheduleReconnect();
  }

  _fail(err) {
    this._closed = true;
    this._started = false;
    // The node closed the connection for good (token refused): it is out of its rooms.
    for (const id of [...this.rooms.keys()]) this._roomGone(id, { room_id: id, reason: 'closed' });
    this._watchNetwork(false);
    this._setState(State.offline);
    this.emit('unauthorized', err);
    this._connectReject?.(err);
    this._connectResolve = this._connectReject = null;
  }

  _scheduleReconnect() {
    if (this._closed || this._timers.reconnect) return;
    const delay = this.backoff.next();
    this.emit('reconnecting', { delay, attempt: this.backoff.attempt });
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      this._attempt();
    }, delay);
  }

  _watchNetwork(on) {
    const w = globalThis.window;
    if (!this.options.watchNetwork || !w || typeof w.addEventListener !== 'function') return;
    if (on && !this._netHandlers) {
      this._netHandlers = {
        offline: () => this._dropSocket('network offline'),
        online: () => {
          // Back online: try now rather than at the end of the backoff.
          if (this._closed || this._ws || this._attempting) return;
          clearTimeout(this._timers.reconnect);
          this._timers.reconnect = null;
          this.backoff.reset();
          this._attempt();
        },
      };
      w.addEventListener('offline', this._netHandlers.offline);
      w.addEventListener('online', this._netHandlers.online);
    } else if (!on && this._netHandlers) {
      w.removeEventListener('offline', this._netHandlers.offline);
      w.removeEventListener('online', this._netHandlers.online);
      this._netHandlers = null;
    }
  }

  _sendFrame(obj) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  /** Resolves once the client is online, or after `ms` (whatever the state then). */
  _untilOnline(ms) {
    if (this.state === State.online) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        off();
        resolve();
      };
      const off = this.on('state', (st) => st !== State.connecting && done());
      const timer = setTimeout(done, ms);
    });
  }

  /** A command that gets a reply echoing its id; rejects on `error` or a lost connection. */
  _request(cmd, data) {
    return new Promise((resolve, reject) => {
      const id = this._nextId++;
      if (!this._sendFrame({ cmd, id, data })) return reject(new ApiError(0, 'disconnected', 'not connected'));
      const r = { cmd, resolve, reject };
      r.timer = setTimeout(() => {
        if (!this._requests.delete(id)) return;
        reject(new ApiError(0, 'timeout', `${cmd}: no reply`));
        this._dropSocket(`${cmd} timed out`);
      }, this.options.requestTimeoutMs);
      this._requests.set(id, r);
    });
  }

  _onFrame(raw) {
    this._lastFrameAt = Date.now();
    if (isBinary(raw)) return this._onBinary(raw);
    if (isBlob(raw)) {
      const gen = this._gen;
      raw.arrayBuffer().then((b) => gen === this._gen && this._onBinary(b), () => {});
      return;
    }
    const text = typeof raw === 'string' ? raw : String(raw);
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      // Not JSON: nothing can be done with it but to say so.
      this.emit('error', new Error(`unreadable frame from the node: ${text.slice(0, 80)}`));
      return;
    }
    if (!f || typeof f !== 'object') return;
    const { cmd, id, data } = f;
    switch (cmd) {
      case 'msg':
        return void this._deliver(data, 'live');
      case 'conversation':
        return this._onConversationPush(data);
      case 'ack':
        return this._onAck(data, id);
      case 'ready':
        return this._onReady(data);
      case 'application':
      case 'invitation':
      case 'friend_request':
        // A request made or decided (docs/protocol.md, "Requests"): the request object.
        if (!data || typeof data !== 'object') return;
        this.emit(cmd, data);
        return void this.emit('request', data);
      case 'event':
        return void this.emit('event', data);
      case 'broadcast':
        return void this.emit('broadcast', data);
      case 'room.joined':
      case 'room.left':
      case 'room.muted':
      case 'room.speaking':
      case 'room.message':
      case 'room.deleted':
        return this._onRoomEvent(cmd, data);
      case 'error':
        return this._onError(id, data);
      default: {
        // heartbeat / sync / pong replies
        const r = id !== undefined ? this._requests.get(id) : undefined;
        if (!r) return;
        this._requests.delete(id);
        clearTimeout(r.timer);
        r.resolve?.(data);
      }
    }
  }

  _onError(id, data) {
    const err = new ApiError(400, data?.code || 'error', data?.message || 'error');
    // The auth frame refused: close 4001 follows, and ends the client ('unauthorized').
    if (id !== undefined && id === this._authId && !this.ready) return;
    const r = id !== undefined ? this._requests.get(id) : undefined;
    if (!r) return void this.emit('error', err);
    this._requests.delete(id);
    clearTimeout(r.timer);
    if (r.cmd !== 'msg') return r.reject(err);
    const entry = this._outbox.get(r.cmid);
    if (!entry || entry.frameId !== id) return;
    if (err.code === 'unavailable' || err.code === 'internal') {
      entry.sentAt = Date.now() - this.options.ackTimeoutMs + 1000; // resend in about a second
      return;
    }
    this._outbox.delete(entry.cmid);
    this.emit('send_failed', { ...entry.data, error: err });
    entry.reject(err);
  }

  _onReady(data) {
    this.ready = data;
    clearTimeout(this._timers.connect);
    this._timers.connect = null;
    this.backoff.reset();
    this._everOnline = true;
    this._setState(State.online);
    const interval = this.options.heartbeatIntervalMs || data?.heartbeat_interval_ms || 30000;
    this._hbSentAt = 0;
    this._timers.heartbeat = setInterval(() => this._heartbeatTick(), interval);
    this._timers.tick = setInterval(() => this._retryTick(), Math.min(1000, this.options.ackTimeoutMs));
    for (const e of this._outbox.values()) this._transmit(e);
    this._rejoinRooms(); // before the resync: voice is live
    this._connectResolve?.();
    this._connectResolve = this._connectReject = null;
    const gen = this._gen;
    (async () => {
      await this.resync();
      if (gen === this._gen) await this.heartbeat().catch(() => {});
      if (gen === this._gen) this.emit('synced');
    })().catch(() => {}); // a drop mid-way: the next connection does it again
  }

  _heartbeatTick() {
    if (!this.ready) return;
    // Nothing heard since the last heartbeat went out: the connection is dead.
    if (this._hbSentAt && this._lastFrameAt < this._hbSentAt) return this._dropSocket('heartbeat unanswered');
    this.heartbeat().catch(() => {});
  }

  _retryTick() {
    if (!this.ready) return;
    const now = Date.now();
    for (const e of this._outbox.values())
      if (e.sentAt === 0 || now - e.sentAt >= this.options.ackTimeoutMs) this._transmit(e);
  }
}
