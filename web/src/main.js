// Converge web client: plain DOM, the SDK from clients/js does the protocol.
import { ApiError, ConvergeClient, messageId, randomId } from '@converge/client';
import { setupRooms } from './rooms-page.js';
import './style.css';

const PAGE = 30; // messages per history page
const SESSION_KEY = 'converge.session';
const DEVICE_KEY = 'converge.device';

const $ = (id) => document.getElementById(id);

/** Tiny element builder: h('li', {class: 'x', onclick: fn}, 'text', child). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

// ---------------------------------------------------------------- local storage

const storage = {
  session() {
    try {
      return JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
    } catch {
      return null;
    }
  },
  saveSession(s) {
    localStorage.setItem(SESSION_KEY, JSON.stringify(s));
  },
  clearSession() {
    localStorage.removeItem(SESSION_KEY);
  },
  // One device id per browser profile: the server keeps this device's sync cursor.
  deviceId() {
    let d = localStorage.getItem(DEVICE_KEY);
    if (!d) {
      d = 'web-' + randomId(6);
      localStorage.setItem(DEVICE_KEY, d);
    }
    return d;
  },
};

// ---------------------------------------------------------------- app state

let client = null;
const app = {
  me: null, // session
  admin: false, // a site admin (removes anyone but a group's owner)
  convs: new Map(), // id -> model
  current: null, // open conversation id
  everOnline: false,
  requests: new Map(), // request id -> pending application / invitation / friend request
  names: new Map(), // user id -> display name, as far as known
  groupNames: new Map(), // conversation id -> name, for groups we are not in (GET /groups/{id})
};

function model(id) {
  id = String(id);
  let m = app.convs.get(id);
  if (!m) {
    m = {
      id,
      info: null, // the server's conversation object
      title: `Conversation ${id}`,
      messages: new Map(), // seq -> message
      pending: new Map(), // client_msg_id -> local message not acked yet
      unread: 0,
      last: null, // newest message known
      historyLoaded: false,
      shownFrom: Infinity, // lowest seq in the open view; older ones wait behind "Load earlier"
      loadingEarlier: false,
    };
    app.convs.set(id, m);
  }
  return m;
}

const isMine = (m) => m.publisher_id === app.me?.user_id;

function errorText(err) {
  if (err instanceof ApiError) {
    if (err.code === 'too_large') return 'too large';
    if (err.code === 'network') return 'the node could not be reached (or the file is too large)';
    if (err.code === 'aborted') return 'cancelled';
    return err.message || err.code;
  }
  return String(err?.message || err);
}

// ---------------------------------------------------------------- sign in / out

function showAuth(message = '') {
  $('main-view').hidden = true;
  $('auth-view').hidden = false;
  $('auth-error').textContent = message;
}

function showMain() {
  $('auth-view').hidden = true;
  $('main-view').hidden = false;
  $('me').textContent = `${app.me.name || app.me.user_id} (${app.me.user_id})`;
}

async function login(user_id, password) {
  const c = new ConvergeClient();
  const session = await c.login({ user_id, password, device_id: storage.deviceId() });
  storage.saveSession(session);
  start(session);
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.currentTarget;
  const btn = f.querySelector('button');
  btn.disabled = true;
  try {
    await login(f.user_id.value.trim(), f.password.value);
    f.reset();
  } catch (err) {
    $('auth-error').textContent = `Log in failed: ${errorText(err)}`;
  } finally {
    btn.disabled = false;
  }
});

$('signup-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.currentTarget;
  const btn = f.querySelector('button');
  const user_id = f.user_id.value.trim();
  const password = f.password.value;
  if (!user_id || !password) {
    $('auth-error').textContent = 'Sign up needs a user id and a password.';
    return;
  }
  btn.disabled = true;
  try {
    const c = new ConvergeClient();
    await c.register({ user_id, name: f.name.value.trim() || user_id, password });
    await login(user_id, password);
    f.reset();
  } catch (err) {
    $('auth-error').textContent = `Sign up failed: ${errorText(err)}`;
  } finally {
    btn.disabled = false;
  }
});

$('logout').addEventListener('click', async () => {
  const c = client;
  stop();
  storage.clearSession();
  showAuth();
  await c?.logout();
});

function stop() {
  rooms.detach();
  client?.close();
  client = null;
  app.me = null;
  app.admin = false;
  app.convs.clear();
  app.current = null;
  app.everOnline = false;
  app.requests.clear();
  app.names.clear();
  app.groupNames.clear();
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  $('notif-panel').hidden = true;
  $('notif-toggle').setAttribute('aria-expanded', 'false');
  renderNotifications();
  $('members-panel').hidden = true;
  $('members-toggle').setAttribute('aria-expanded', 'false');
  closeMentions();
  $('conv-list').replaceChildren();
  $('messages').replaceChildren();
  $('notices').replaceChildren();
  $('chat-body').hidden = true;
  $('chat-empty').hidden = false;
  $('chat-gone').hidden = true;
  $('composer').hidden = false;
  closeChatView();
}

// ---------------------------------------------------------------- connection

function start(session) {
  stop();
  app.me = session;
  client = new ConvergeClient({ session, backoff: { initialMs: 300, maxMs: 5000 } });
  client.on('state', renderState);
  client.on('conversations', onConversations);
  client.on('conversation', onConversationPush);
  client.on('message', onMessage);
  client.on('request', onRequest);
  client.on('event', (d) => notice('Event', d));
  client.on('broadcast', (d) => notice('Broadcast', d));
  client.on('unauthorized', () => {
    stop();
    storage.clearSession();
    showAuth('Your session has ended. Please log in again.');
  });
  client.on('error', (err) => console.warn('converge:', err));
  rooms.attach(client);
  showMain();
  renderState(client.state);
  const c = client;
  // Conversations others put us in (or take us out of) come as 'conversation' pushes; each
  // reconnect re-reads the list. No polling.
  c.connect()
    .then(() => fillPreviews(c))
    .catch(() => {});
  c.me()
    .then((me) => {
      if (client !== c) return;
      app.admin = !!me.admin;
      app.directPolicy = me.direct_policy || 'anyone';
      if (app.current) renderChatHead();
    })
    .catch(() => {});
  handleRoute();
}

function renderState(state) {
  const el = $('conn');
  if (state === 'online') {
    app.everOnline = true;
    retryFailedFiles();
    refreshRequests(); // pushes missed while away are in the lists
  }
  const text =
    state === 'online' ? 'Online' : state === 'connecting' ? (app.everOnline ? 'Reconnecting…' : 'Connecting…') : 'Offline';
  el.textContent = text;
  el.dataset.state = state;
  document.body.dataset.conn = state;
  for (const li of $('messages').querySelectorAll('li.pending .status'))
    if (!li.closest('li').classList.contains('failed')) li.textContent = pendingText();
}

const pendingText = () => (client?.state === 'online' ? 'Sending…' : 'Waiting for connection…');

// ---------------------------------------------------------------- conversations

function onConversations(list) {
  // The SDK always hands over the whole list: conversations missing from it were left.
  const ids = new Set(list.map((c) => String(c.id)));
  for (const m of app.convs.values()) if (m.info && !ids.has(m.id)) noLongerMember(m);
  for (const c of list) applyInfo(c);
  renderConvList();
  if (app.current) renderChatHead();
}

/**
 * A membership push: a conversation we were put in (created with us, or we were added), one we
 * were taken out of (or left on another device), or a change to one we are in (members, owner).
 */
function onConversationPush(c, { member, change, event }) {
  const id = String(c.id);
  if (member) {
    applyInfo(client?.conversations.get(id) || c);
  } else {
    const m = app.convs.get(id);
    if (m) noLongerMember(m);
  }
  renderConvList();
  if (app.current === id) renderChatHead();
  // Made an admin or the owner (or no longer one): the applications waiting for us change.
  const me = app.me?.user_id;
  if ((change === 'role_changed' || change === 'owner_changed') && me && (event?.user_id === me || event?.previous === me))
    refreshRequests();
  if (!member) for (const r of app.requests.values()) if (r.kind === 'application' && r.conversation_id === id && r.user_id !== me) app.requests.delete(r.id);
  renderNotifications();
}

/** Takes the server's conversation object into the model: list entry, title, members. */
function applyInfo(c) {
  const m = model(c.id);
  m.info = c;
  if (c.type === 'group') {
    m.title = c.name || `Group ${c.id}`;
    app.groupNames.set(m.id, m.title);
    refreshNames('gid', m.id, m.title);
  }
  if (c.type === 'direct') {
    const other = c.members.find((u) => u !== app.me.user_id) || app.me.user_id;
    if (!m.otherName) {
      m.title = other;
      client
        ?.getUser(other)
        .then((u) => {
          m.otherName = u.name || other;
          m.title = m.otherName;
          renderConvList();
          if (app.current === m.id) renderChatHead();
        })
        .catch(() => {});
    }
  }
  return m;
}

/** Out of the list; if it is open, the view stays (read-only) and says so. */
function noLongerMember(m) {
  m.info = null;
  m.unread = 0;
}

/** For conversations with messages but none known here: fetch the newest for the preview. */
async function fillPreviews(c) {
  for (const info of c.conversations.values()) {
    const m = model(info.id);
    if (m.last || !info.last_seq) continue;
    const msgs = await c.latest(info.id, 1).catch(() => []);
    if (client !== c) return;
    for (const x of msgs) addMessage(m, x);
  }
  renderConvList();
}

function preview(msg) {
  if (!msg) return '';
  if (msg.type === 'system') return systemText(msg.event);
  const who = isMine(msg) ? 'You: ' : '';
  switch (msg.type) {
    case 'image':
      return who + 'Photo';
    case 'voice':
      return who + 'Voice note';
    case 'file':
      return who + 'File: ' + (msg.file?.name || msg.body);
    default:
      return who + msg.body;
  }
}

function activity(m) {
  return m.last?.ts || m.info?.created_at || 0;
}

function renderConvList() {
  const list = $('conv-list');
  const items = [...app.convs.values()].filter((m) => m.info).sort((a, b) => activity(b) - activity(a));
  $('conv-empty').hidden = items.length > 0;
  list.replaceChildren(
    ...items.map((m) => {
      const muted = !!m.info.muted;
      const label = `Open conversation ${m.title}` + (muted ? ', muted' : '') + (m.unread ? `, ${m.unread} unread` : '');
      return h(
        'li',
        { class: [m.id === app.current ? 'active' : '', muted ? 'muted' : ''].join(' ').trim() },
        h(
          'button',
          { type: 'button', class: 'conv', 'aria-label': label, 'aria-current': m.id === app.current ? 'true' : null, dataset: { id: m.id, muted: muted ? '1' : null }, onclick: () => openConversation(m.id) },
          h('span', { class: 'conv-title' }, m.title,
            m.info.type === 'group' ? h('span', { class: 'tag' }, 'group') : null,
            muted ? h('span', { class: 'tag tag-muted', title: 'Muted' }, 'muted') : null),
          h('span', { class: 'conv-preview' }, preview(m.last)),
          m.unread ? h('span', { class: `badge${muted ? ' badge-muted' : ''}`, 'aria-label': `${m.unread} unread` }, String(m.unread)) : null,
        ),
      );
    }),
  );
}

// ---------------------------------------------------------------- the user directory

/**
 * Live search of the user directory (GET /api/v1/users?q=) under a text field: by id prefix or
 * name, a page at a time ("More people"). `row(user)` gives the buttons of a result; `skip`
 * leaves some out (oneself, members already in).
 */
function directorySearch({ input, list, more, row, skip = () => false, limit = 10, several = false }) {
  const st = { q: '', next: null, gen: 0, timer: null };
  async function load(append) {
    const c = client;
    const gen = ++st.gen;
    const q = st.q;
    if (!c || !q) {
      list.replaceChildren();
      more.hidden = true;
      return;
    }
    try {
      const page = await c.searchUsers({ q, after: append ? st.next : undefined, limit });
      if (gen !== st.gen || client !== c) return;
      for (const u of page.users) if (u.name) app.names.set(u.user_id, u.name);
      const items = page.users.filter((u) => !skip(u)).map((u) =>
        h('li', { dataset: { uid: u.user_id } },
          h('span', { class: 'dir-name' }, u.name || u.user_id),
          u.name && u.name !== u.user_id ? [' ', h('span', { class: 'member-id' }, u.user_id)] : null,
          h('span', { class: 'dir-actions' }, ...row(u))),
      );
      if (append) list.append(...items);
      else list.replaceChildren(...items);
      st.next = page.next || null;
      more.hidden = !st.next;
      if (!append && !items.length) list.replaceChildren(h('li', { class: 'empty' }, page.users.length ? 'Nobody else found.' : 'Nobody found.'));
    } catch (err) {
      if (gen !== st.gen) return;
      list.replaceChildren(h('li', { class: 'error' }, `Search failed: ${errorText(err)}`));
      more.hidden = true;
    }
  }
  input.addEventListener('input', () => {
    clearTimeout(st.timer);
    // Where several are typed (the group form), the part after the last comma: "bob, car" searches "car".
    st.q = (several ? input.value.split(',').pop() : input.value).trim();
    st.timer = setTimeout(() => load(false), 150);
  });
  more.addEventListener('click', () => load(true));
  return {
    clear() {
      clearTimeout(st.timer);
      st.gen++;
      st.q = '';
      st.next = null;
      list.replaceChildren();
      more.hidden = true;
    },
  };
}

// ---------------------------------------------------------------- the new-chat dialog
//
// Direct chat with someone found in the directory (or by exact id), a new group with members
// picked from it, or a group joined by its id or link (#/join/<id>).

const dlg = $('new-chat-dialog');

function dialogMessage(error = '', status = '') {
  $('dialog-error').textContent = error;
  $('dialog-status').textContent = status;
}

function showPane(name) {
  for (const tab of dlg.querySelectorAll('[role=tab]')) {
    const on = tab.dataset.pane === name;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`pane-${tab.dataset.pane}`).hidden = !on;
  }
  dialogMessage();
}

function openNewChat(pane = 'direct') {
  showPane(pane);
  if (!dlg.open) dlg.showModal();
  const first = $(`pane-${pane}`).querySelector('input');
  first?.focus();
}

$('new-chat').addEventListener('click', () => openNewChat('direct'));
for (const tab of dlg.querySelectorAll('[role=tab]')) {
  tab.addEventListener('click', () => openNewChat(tab.dataset.pane));
  tab.addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
    const tabs = [...dlg.querySelectorAll('[role=tab]')];
    const next = tabs[(tabs.indexOf(tab) + (e.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length];
    openNewChat(next.dataset.pane);
    next.focus();
  });
}
for (const d of document.querySelectorAll('dialog'))
  for (const b of d.querySelectorAll('[data-close]')) b.addEventListener('click', () => (d === dlg ? closeNewChat() : d.close()));
/** A join link opened the dialog: once it closes, the address goes back to the app's own. */
function dropJoinLink() {
  if (/^#\/join\//.test(location.hash)) history.replaceState(null, '', location.pathname + location.search);
}

function closeNewChat() {
  dropJoinLink();
  if (dlg.open) dlg.close();
}

dlg.addEventListener('close', dropJoinLink); // Escape

async function startDirect(userId) {
  const c = await client.createDirect(userId);
  closeNewChat();
  openConversation(c.id);
}

async function tryDirect(uid) {
  dialogMessage();
  try {
    await startDirect(uid);
    $('direct-form').reset();
    directSearch.clear();
  } catch (err) {
    const friendsOnly = err?.status === 403;
    dialogMessage(`Could not start a chat with ${uid}: ${errorText(err)}${friendsOnly ? ' — send a friend request first.' : ''}`);
  }
}

async function askFriend(uid) {
  dialogMessage();
  try {
    const { request } = await client.requestFriend(uid);
    if (request?.status === 'accepted') dialogMessage('', `You and ${nameNow(uid)} are friends now.`);
    else dialogMessage('', `Friend request sent to ${nameNow(uid)}.`);
    if (request?.status === 'pending') app.requests.set(request.id, request);
    renderNotifications();
  } catch (err) {
    dialogMessage(`Could not ask ${uid} to be friends: ${err?.status === 409 ? 'you are friends already' : errorText(err)}`);
  }
}

$('direct-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const uid = e.currentTarget.user_id.value.trim();
  if (uid) await tryDirect(uid);
});

const directSearch = directorySearch({
  input: document.querySelector('#direct-form input[name=user_id]'),
  list: $('direct-results'),
  more: $('direct-more'),
  skip: (u) => u.user_id === app.me?.user_id,
  row: (u) => [
    h('button', { type: 'button', class: 'small', 'aria-label': `Chat with ${u.user_id}`, onclick: () => tryDirect(u.user_id) }, 'Chat'),
    h('button', { type: 'button', class: 'small secondary', 'aria-label': `Add ${u.user_id} as a friend`, onclick: () => askFriend(u.user_id) }, 'Add friend'),
  ],
});

// New group: the people picked from the directory, plus any ids typed out in the field.
const picked = new Map(); // user id -> name

function renderPicked() {
  $('group-picked').replaceChildren(
    ...[...picked].map(([uid, name]) =>
      h('li', { class: 'chip', dataset: { uid } }, name === uid ? uid : `${name} (${uid})`,
        h('button', { type: 'button', class: 'link', 'aria-label': `Take ${uid} off the list`, onclick: () => {
          picked.delete(uid);
          renderPicked();
        } }, '×')),
    ),
  );
}

const groupInput = document.querySelector('#group-form input[name=members]');
const groupSearch = directorySearch({
  input: groupInput,
  list: $('group-results'),
  more: $('group-more'),
  several: true,
  skip: (u) => u.user_id === app.me?.user_id || picked.has(u.user_id),
  row: (u) => [
    h('button', { type: 'button', class: 'small', 'aria-label': `Pick ${u.user_id}`, onclick: () => {
      picked.set(u.user_id, u.name || u.user_id);
      // The search word goes; ids typed before it stay.
      groupInput.value = groupInput.value.replace(/[^,]*$/, '');
      groupSearch.clear();
      renderPicked();
      groupInput.focus();
    } }, 'Pick'),
  ],
});

$('group-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.currentTarget;
  const name = f.name.value.trim();
  const members = [...new Set([...picked.keys(), ...f.members.value.split(/[\s,]+/).filter(Boolean)])];
  dialogMessage();
  if (!name) return dialogMessage('A group needs a name.');
  const btn = f.querySelector('button[type=submit]');
  btn.disabled = true;
  try {
    const c = await client.createGroup({ name, members });
    f.reset();
    picked.clear();
    renderPicked();
    groupSearch.clear();
    closeNewChat();
    openConversation(c.id);
  } catch (err) {
    dialogMessage(`Could not create the group: ${errorText(err)}`);
  } finally {
    btn.disabled = false;
  }
});

// Join a group by id or link.
let joinTarget = null; // the group looked up: GET /api/v1/groups/{id}

function groupIdOf(text) {
  const t = String(text || '').trim();
  const link = /#\/join\/(\d+)\s*$/.exec(t);
  if (link) return link[1];
  return /^\d+$/.test(t) ? t : null;
}

async function lookupGroup(id) {
  const card = $('join-card');
  dialogMessage();
  card.hidden = true;
  joinTarget = null;
  if (!id) return dialogMessage('A group id is a number, or a link ending in #/join/<id>.');
  try {
    const g = await client.getGroup(id);
    joinTarget = { ...g, conversation_id: String(g.conversation_id ?? id) };
  } catch (err) {
    return dialogMessage(err?.status === 404 ? `There is no group ${id}.` : `Could not look up group ${id}: ${errorText(err)}`);
  }
  renderJoinCard();
}

function renderJoinCard() {
  const g = joinTarget;
  if (!g) return;
  const id = g.conversation_id;
  app.groupNames.set(id, g.name || `group ${id}`);
  $('join-card').hidden = false;
  $('join-name').textContent = g.name || `Group ${id}`;
  const n = g.member_count;
  $('join-meta').textContent = `Group ${id} · ${n} member${n === 1 ? '' : 's'} · ${POLICY_TEXT[g.join_policy] || g.join_policy}`;
  const member = g.member || app.convs.get(id)?.info;
  const pending = [...app.requests.values()].some((r) => r.kind === 'application' && r.user_id === app.me?.user_id && r.conversation_id === id);
  $('join-open').hidden = !member;
  const form = $('apply-form');
  form.hidden = !!member || g.join_policy === 'invite_only';
  $('apply-text-label').hidden = g.join_policy === 'open';
  $('apply-button').textContent = g.join_policy === 'open' ? 'Join group' : 'Apply to join';
  $('apply-button').disabled = pending;
  if (member) dialogMessage('', 'You are a member of this group.');
  else if (g.join_policy === 'invite_only') dialogMessage('', 'This group takes new members by invitation only.');
  else if (pending) dialogMessage('', 'Your application is waiting for an admin.');
}

$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  lookupGroup(groupIdOf(e.currentTarget.group.value));
});

$('apply-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const g = joinTarget;
  if (!g) return;
  const f = e.currentTarget;
  const btn = $('apply-button');
  btn.disabled = true;
  dialogMessage();
  try {
    const r = await client.apply(g.conversation_id, { text: g.join_policy === 'open' ? '' : f.text.value.trim() });
    f.reset();
    if (r.status === 'approved') {
      closeNewChat();
      openConversation(g.conversation_id);
      return;
    }
    if (r.status === 'pending') app.requests.set(r.id, r);
    renderNotifications();
    dialogMessage('', 'Application sent. The group shows up here once an admin approves it.');
  } catch (err) {
    btn.disabled = false;
    const why = err?.status === 409 ? 'you are a member already' : errorText(err);
    dialogMessage(`Could not apply: ${why}`);
  }
});

$('join-open').addEventListener('click', () => {
  const id = joinTarget?.conversation_id;
  if (!id) return;
  closeNewChat();
  openConversation(id);
});

/** #/join/<id>: the join pane with that group looked up (after signing in, if need be). */
function handleRoute() {
  if (!client) return;
  const r = /^#\/rooms(?:\/(\d+))?$/.exec(location.hash);
  showView(r ? 'rooms' : 'chats');
  if (r?.[1] && rooms.current?.id !== Number(r[1])) rooms.join(Number(r[1]));
  const m = /^#\/join\/(\d+)$/.exec(location.hash);
  if (!m) return;
  openNewChat('join');
  $('join-form').group.value = m[1];
  lookupGroup(m[1]);
}

window.addEventListener('hashchange', handleRoute);

// ---------------------------------------------------------------- pages: chats, voice rooms

const rooms = setupRooms({ h, client: () => client, me: () => app.me, who, nameNow, errorText, actionButton });

function showView(view) {
  const inRooms = view === 'rooms';
  $('rooms-view').hidden = !inRooms;
  document.querySelector('#main-view > .panes:not(.rooms-view)').hidden = inRooms;
  $('nav-chats').setAttribute('aria-current', inRooms ? 'false' : 'page');
  $('nav-rooms').setAttribute('aria-current', inRooms ? 'page' : 'false');
  document.body.dataset.view = view;
  if (inRooms) rooms.show();
  else rooms.hide();
}

$('nav-chats').addEventListener('click', () => {
  if (/^#\/rooms/.test(location.hash)) history.pushState(null, '', location.pathname + location.search);
  showView('chats');
});
$('nav-rooms').addEventListener('click', () => {
  const id = rooms.current && !rooms.current.out ? rooms.current.id : null;
  const hash = id ? `#/rooms/${id}` : '#/rooms';
  if (location.hash !== hash) history.pushState(null, '', hash);
  showView('rooms');
});

// ---------------------------------------------------------------- notifications: applications, invitations, friend requests
//
// What waits for this user: applications to the groups they own or administer, invitations and
// friend requests made to them (with buttons), and their own requests still pending (without).
// Loaded at every (re)connection, kept current by the node's pushes.

const isPending = (r) => r && r.status === 'pending';

function requestTarget(r) {
  return r.kind === 'friend_request' ? r.to ?? r.user_id : r.user_id;
}

function requestFrom(r) {
  if (r.kind === 'invitation') return r.inviter_id ?? r.from_id;
  if (r.kind === 'friend_request') return r.from ?? r.from_id;
  return r.from_id ?? r.user_id;
}

/** True when the request waits for this user's decision. */
function forMe(r) {
  const me = app.me?.user_id;
  if (r.kind === 'application') return r.user_id !== me;
  return requestTarget(r) === me;
}

let requestsGen = 0;
async function refreshRequests() {
  const c = client;
  if (!c) return;
  const gen = ++requestsGen;
  const lists = await Promise.all([
    c.listApplications().catch(() => null),
    c.listInvitations().catch(() => null),
    c.listFriendRequests().catch(() => null),
  ]);
  if (client !== c || gen !== requestsGen) return;
  const kinds = ['application', 'invitation', 'friend_request'];
  lists.forEach((list, i) => {
    if (!list) return; // that list could not be read: keep what is known
    for (const [id, r] of app.requests) if (r.kind === kinds[i]) app.requests.delete(id);
    for (const r of list) if (isPending(r)) app.requests.set(r.id, { ...r, kind: r.kind || kinds[i] });
  });
  renderNotifications();
}

function onRequest(r) {
  if (!r?.id) return;
  const had = app.requests.get(r.id);
  if (isPending(r)) app.requests.set(r.id, r);
  else app.requests.delete(r.id);
  if (!isPending(r) && (had || !forMe(r))) decidedNotice(r);
  renderNotifications();
  if (joinTarget && r.kind === 'application' && r.conversation_id === joinTarget.conversation_id) renderJoinCard();
}

/** A request of ours decided by the other side. */
function decidedNotice(r) {
  const me = app.me?.user_id;
  const group = () => groupTitle(r.conversation_id) || `group ${r.conversation_id}`;
  if (r.kind === 'application' && r.user_id === me) {
    if (r.status === 'approved') notice('Group', `Your application to ${group()} was approved.`);
    else if (r.status === 'declined') notice('Group', `Your application to ${group()} was declined.`);
  } else if (r.kind === 'invitation' && requestFrom(r) === me) {
    if (r.status === 'accepted') notice('Group', `${nameNow(r.user_id)} accepted your invitation to ${group()}.`);
  } else if (r.kind === 'friend_request' && requestFrom(r) === me) {
    if (r.status === 'accepted') notice('Friends', `${nameNow(requestTarget(r))} accepted your friend request.`);
    else if (r.status === 'declined') notice('Friends', `${nameNow(requestTarget(r))} declined your friend request.`);
  }
}

function renderNotifications() {
  const all = [...app.requests.values()].sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
  const mine = all.filter(forMe);
  const waiting = all.filter((r) => !forMe(r));
  const n = mine.length;
  const badge = $('notif-badge');
  badge.hidden = n === 0;
  badge.textContent = String(n);
  $('notif-toggle').setAttribute('aria-label', n ? `Notifications, ${n} waiting` : 'Notifications');
  $('notif-empty').hidden = all.length > 0;
  if (!client) return void $('notif-list').replaceChildren();
  $('notif-list').replaceChildren(...mine.map(requestItem), ...waiting.map(requestItem));
}

function requestItem(r) {
  const from = requestFrom(r);
  const text = r.text ? h('q', { class: 'req-text' }, r.text) : null;
  let line;
  let actions = [];
  if (r.kind === 'application') {
    if (forMe(r)) {
      line = [who(from), ' asks to join ', groupRef(r.conversation_id)];
      actions = [['Approve', () => client.approveApplication(r.id)], ['Decline', () => client.declineApplication(r.id)]];
    } else line = ['You asked to join ', groupRef(r.conversation_id), ' — waiting for an admin'];
  } else if (r.kind === 'invitation') {
    if (forMe(r)) {
      line = [who(from), ' invites you to ', groupRef(r.conversation_id)];
      actions = [['Accept', () => client.acceptInvitation(r.id)], ['Decline', () => client.declineInvitation(r.id)]];
    } else line = ['You invited ', who(r.user_id, { lower: true }), ' to ', groupRef(r.conversation_id), ' — not answered yet'];
  } else {
    if (forMe(r)) {
      line = [who(from), ' wants to be friends'];
      actions = [['Accept', () => client.acceptFriendRequest(r.id)], ['Decline', () => client.declineFriendRequest(r.id)]];
    } else line = ['You asked ', who(requestTarget(r), { lower: true }), ' to be friends — not answered yet'];
  }
  const li = h('li', { class: `req req-${r.kind}${forMe(r) ? ' req-for-me' : ''}`, dataset: { id: r.id, kind: r.kind } },
    h('span', { class: 'req-line' }, ...line), text);
  if (actions.length)
    li.append(h('span', { class: 'req-actions' }, ...actions.map(([label, fn]) =>
      h('button', { type: 'button', class: `small${label === 'Decline' ? ' secondary' : ''}`, onclick: (e) => decide(r, fn, e.currentTarget) }, label))));
  return li;
}

async function decide(r, fn, btn) {
  $('notif-error').textContent = '';
  for (const b of btn.parentElement.querySelectorAll('button')) b.disabled = true;
  try {
    const answer = await fn();
    const decided = answer?.request ?? answer;
    app.requests.delete(r.id);
    if (r.kind === 'invitation' && decided?.status === 'accepted') {
      const id = String(decided.conversation_id ?? r.conversation_id);
      notice('Group', `You joined ${groupTitle(id) || `group ${id}`}.`);
    }
  } catch (err) {
    if (err?.status === 409 || err?.status === 404) app.requests.delete(r.id); // expired, or gone
    $('notif-error').textContent = err?.status === 409 ? 'That request has expired.' : `Could not answer: ${errorText(err)}`;
    for (const b of btn.parentElement?.querySelectorAll('button') || []) b.disabled = false;
  }
  renderNotifications();
}

$('notif-toggle').addEventListener('click', () => {
  const panel = $('notif-panel');
  panel.hidden = !panel.hidden;
  $('notif-toggle').setAttribute('aria-expanded', String(!panel.hidden));
  if (!panel.hidden) refreshRequests();
});

// ---------------------------------------------------------------- settings: direct messages, friends

const account = $('account-dialog');

async function renderFriends() {
  const c = client;
  if (!c) return;
  let friends = [];
  try {
    friends = await c.listFriends();
  } catch (err) {
    $('account-error').textContent = `Could not load your friends: ${errorText(err)}`;
  }
  if (client !== c) return;
  for (const f of friends) if (f.name) app.names.set(f.user_id, f.name);
  $('friends-empty').hidden = friends.length > 0;
  $('friend-list').replaceChildren(
    ...friends.map((f) =>
      h('li', { dataset: { uid: f.user_id } },
        h('span', { class: 'dir-name' }, f.name || f.user_id),
        f.name && f.name !== f.user_id ? [' ', h('span', { class: 'member-id' }, f.user_id)] : null,
        h('span', { class: 'dir-actions' },
          h('button', { type: 'button', class: 'small', 'aria-label': `Chat with ${f.user_id}`, onclick: async () => {
            try {
              await startDirect(f.user_id);
              account.close();
            } catch (err) {
              $('account-error').textContent = errorText(err);
            }
          } }, 'Chat'),
          h('button', { type: 'button', class: 'small secondary', 'aria-label': `Remove ${f.user_id} from friends`, onclick: async () => {
            try {
              await c.removeFriend(f.user_id);
              renderFriends();
            } catch (err) {
              $('account-error').textContent = errorText(err);
            }
          } }, 'Unfriend'))),
    ),
  );
}

$('account-toggle').addEventListener('click', async () => {
  $('account-error').textContent = '';
  $('account-status').textContent = '';
  $('policy-form').direct_policy.value = app.directPolicy || 'anyone';
  if (!account.open) account.showModal();
  renderFriends();
  try {
    const me = await client.me();
    app.directPolicy = me.direct_policy || 'anyone';
    $('policy-form').direct_policy.value = app.directPolicy;
  } catch {}
});

$('policy-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const policy = e.currentTarget.direct_policy.value;
  $('account-error').textContent = '';
  try {
    const me = await client.setDirectPolicy(policy);
    app.directPolicy = me.direct_policy || policy;
    $('account-status').textContent = policy === 'friends' ? 'Only friends can start a direct chat with you now.' : 'Anyone can start a direct chat with you now.';
  } catch (err) {
    $('account-error').textContent = `Could not save: ${errorText(err)}`;
  }
});

// ---------------------------------------------------------------- messages

function addMessage(m, msg) {
  const had = m.messages.get(msg.seq);
  m.messages.set(msg.seq, had ? { ...had, ...msg } : msg);
  if (isMine(msg) && msg.client_msg_id) m.pending.delete(msg.client_msg_id);
  if (!m.last || msg.seq >= m.last.seq) m.last = m.messages.get(msg.seq);
  if (m.info && msg.seq > (m.info.last_seq || 0)) m.info.last_seq = msg.seq;
  return !had;
}

function onMessage(msg) {
  const m = model(msg.conversation_id);
  const isNew = addMessage(m, msg);
  // A group's own changes (system messages) show in its history but are not unread messages.
  if (isNew && !isMine(msg) && msg.type !== 'system' && app.current !== m.id) m.unread++;
  if (app.current === m.id) renderMessage(m, m.messages.get(msg.seq));
  renderConvList();
}

function fmtTime(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

function fmtSize(n) {
  if (!(n >= 0)) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function authorName(msg) {
  if (isMine(msg)) return 'You';
  return msg.publisher_name || msg.publisher_id;
}

/**
 * The content of a message: text, inline image, download link or audio player. File bytes are
 * never addressed by a URL with the token in it: they are fetched with the Authorization header
 * and shown through blob: URLs (see "files" below). One being sent from here shows its own bytes.
 */
function content(msg) {
  const name = msg.file?.name || msg.body || 'file';
  let el;
  switch (msg.type) {
    case 'image':
      el = h('a', { target: '_blank', rel: 'noopener', class: 'image-link' },
        h('img', { alt: `Image: ${name}`, class: 'image' }));
      return fileView(el, msg, 'image', (url) => {
        el.href = url;
        el.firstElementChild.src = url;
      });
    case 'voice':
      el = h('audio', { controls: true, preload: 'metadata', 'aria-label': `Voice note from ${authorName(msg)}` });
      return fileView(el, msg, 'voice', (url) => {
        el.src = url;
      });
    case 'file':
      // A link without href until the bytes are here (fetched when it is first used); then
      // href=blob:… and download=<name>, and the browser saves it.
      el = h('a', { class: 'file', role: 'link', tabindex: '0' },
        name, msg.file?.size ? h('span', { class: 'size' }, ` (${fmtSize(msg.file.size)})`) : null);
      el.addEventListener('click', onFileLinkClick);
      el.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && !el.hasAttribute('href')) {
          e.preventDefault();
          el.click();
        }
      });
      return fileView(el, msg, 'file', (url) => {
        el.href = url;
        el.download = name;
        el.removeAttribute('role');
        el.removeAttribute('tabindex');
      });
    default:
      return h('span', { class: 'text' }, msg.body);
  }
}

// ---------------------------------------------------------------- files (blob: URLs)
//
// Every element showing a file owns one object URL: made when its bytes are here, revoked when
// the element leaves the page. Images and voice notes are fetched once they come near the
// visible part of the list, a file when its link is first clicked. A failed fetch is tried
// again when the connection is back.

const fileViews = new Map(); // element -> {msg, kind, show, state, ac, handle}

function fileView(el, msg, kind, show) {
  const v = { msg, kind, show, state: 'idle', ac: null, handle: null };
  el.dataset.file = kind;
  if (msg.localBlob) {
    // Our own send, not stored yet (or stored since): its bytes are at hand.
    const url = URL.createObjectURL(msg.localBlob);
    v.handle = { url, revoke: () => URL.revokeObjectURL(url) };
    v.state = 'ready';
    show(url);
  } else if (!fileIdOf(msg)) {
    v.state = 'failed';
  }
  el.dataset.load = v.state;
  fileViews.set(el, v);
  return el;
}

const fileIdOf = (msg) => msg.file?.file_id ?? msg.file_id;

async function loadFile(el) {
  const v = fileViews.get(el);
  const c = client;
  if (!v || !c || v.state === 'loading' || v.state === 'ready' || !fileIdOf(v.msg)) return false;
  v.state = el.dataset.load = 'loading';
  v.ac = new AbortController();
  try {
    const handle = await c.fileObjectUrl(v.msg, { signal: v.ac.signal });
    if (fileViews.get(el) !== v || client !== c) {
      handle.revoke(); // gone from the page meanwhile
      return false;
    }
    v.handle = handle;
    v.state = el.dataset.load = 'ready';
    el.removeAttribute('title');
    v.show(handle.url);
    return true;
  } catch (err) {
    if (fileViews.get(el) !== v) return false;
    v.state = el.dataset.load = 'failed';
    el.title = `Could not load ${v.msg.file?.name || 'the file'}: ${errorText(err)}`;
    if (err?.code !== 'aborted') console.warn('file', err);
    return false;
  } finally {
    v.ac = null;
  }
}

function releaseFile(el) {
  const v = fileViews.get(el);
  if (!v) return;
  fileViews.delete(el);
  v.ac?.abort();
  v.handle?.revoke();
  nearView?.unobserve(el);
}

async function onFileLinkClick(e) {
  const a = e.currentTarget;
  if (a.hasAttribute('href')) return; // fetched: the browser downloads the blob
  e.preventDefault();
  if (await loadFile(a)) a.click();
}

/** Images and voice notes start loading near the visible part of the message list. */
const nearView =
  typeof IntersectionObserver === 'function'
    ? new IntersectionObserver(
        (entries) => {
          for (const en of entries)
            if (en.isIntersecting) {
              nearView.unobserve(en.target);
              loadFile(en.target);
            }
        },
        { root: $('scroller'), rootMargin: '800px 0px' },
      )
    : null;

function fileElements(node) {
  if (!(node instanceof Element)) return [];
  const found = [...node.querySelectorAll('[data-file]')];
  if (node.matches('[data-file]')) found.push(node);
  return found;
}

// Attached: images and voice notes are watched; detached (not just moved): the URL is revoked.
new MutationObserver((records) => {
  for (const r of records) {
    for (const n of r.removedNodes) for (const el of fileElements(n)) if (!el.isConnected) releaseFile(el);
    for (const n of r.addedNodes)
      for (const el of fileElements(n)) {
        const v = fileViews.get(el);
        if (!v || !el.isConnected || v.state !== 'idle' || v.kind === 'file') continue;
        if (nearView) nearView.observe(el);
        else loadFile(el);
      }
  }
}).observe($('messages'), { childList: true, subtree: true });

/** Back online: what could not be fetched is tried again. */
function retryFailedFiles() {
  for (const [el, v] of fileViews)
    if (v.state === 'failed' && v.kind !== 'file' && el.isConnected && fileIdOf(v.msg)) {
      v.state = el.dataset.load = 'idle';
      if (nearView) nearView.observe(el);
      else loadFile(el);
    }
}

function mentionsMe(msg) {
  const me = app.me?.user_id;
  return Array.isArray(msg.mentions) && !isMine(msg) && (msg.mentions.includes('all') || msg.mentions.includes(me));
}

function messageEl(msg, pending) {
  if (msg.type === 'system') {
    // A group's change: one centred line ("Bob added Carol"), names filled in as they are known.
    return h(
      'li',
      { class: 'msg system', dataset: { seq: msg.seq ?? '', event: msg.event?.event || '' } },
      h('span', { class: 'sys-text' }, ...systemNodes(msg.event)),
      ' ',
      h('time', { class: 'sys-time' }, fmtTime(msg.ts)),
    );
  }
  const mine = isMine(msg);
  const el = h(
    'li',
    {
      class: `msg ${mine ? 'mine' : 'theirs'} type-${msg.type}${pending ? ' pending' : ''}${mentionsMe(msg) ? ' mention-me' : ''}`,
      dataset: { seq: msg.seq ?? '', cmid: msg.client_msg_id || '' },
    },
    h('div', { class: 'meta' }, h('span', { class: 'author' }, authorName(msg)), ' ', h('time', {}, fmtTime(msg.ts))),
    h('div', { class: 'content' }, content(msg)),
    pending ? h('span', { class: 'status', role: 'status' }, pendingText()) : null,
  );
  return el;
}

// ---------------------------------------------------------------- names and system messages
//
// User and group names are put in as text (never markup). A name not known yet shows as the id
// and is filled in everywhere it appears once the directory answers.

/** A user's name as far as known (the id until then); the signed-in user is "You" (mid-sentence "you"). */
function nameNow(uid, { lower = false } = {}) {
  if (uid && uid === app.me?.user_id) return lower ? 'you' : 'You';
  return app.names.get(uid) || uid || 'someone';
}

const nameWanted = new Set();

function wantName(uid) {
  if (!uid || uid === app.me?.user_id || app.names.has(uid) || nameWanted.has(uid) || !client) return;
  nameWanted.add(uid);
  const c = client;
  c.getUser(uid)
    .then((u) => {
      if (client !== c) return;
      app.names.set(uid, u.name || uid);
      refreshNames('uid', uid, u.name || uid);
      renderConvList();
      rooms.namesChanged();
      if (app.current && app.convs.get(app.current)?.info?.members?.includes(uid)) renderChatHead();
    })
    .catch(() => {})
    .finally(() => nameWanted.delete(uid));
}

/** A user's name as a node that follows the name once it is known. */
function who(uid, opts) {
  wantName(uid);
  return h('span', { class: 'who', dataset: { uid: uid || '' } }, nameNow(uid, opts));
}

/** A group's name as a node (for requests about groups we may not be in). */
/** A group's name as far as known: ours from the list, others' from GET /groups/{id}. */
function groupTitle(gid) {
  const m = app.convs.get(String(gid));
  return m?.info ? m.title : app.groupNames.get(String(gid));
}

function groupRef(gid) {
  gid = String(gid);
  const known = groupTitle(gid);
  if (!known && client) {
    const c = client;
    app.groupNames.set(gid, `group ${gid}`);
    c.getGroup(gid)
      .then((g) => {
        if (client !== c) return;
        app.groupNames.set(gid, g.name || `group ${gid}`);
        refreshNames('gid', gid, g.name || `group ${gid}`);
      })
      .catch(() => {});
  }
  return h('span', { class: 'grp', dataset: { gid } }, known || app.groupNames.get(gid) || `group ${gid}`);
}

function refreshNames(kind, id, text) {
  for (const el of document.querySelectorAll(`span.${kind === 'uid' ? 'who' : 'grp'}[data-${kind}="${CSS.escape(id)}"]`))
    if (!(kind === 'uid' && id === app.me?.user_id)) el.textContent = text;
}

const POLICY_TEXT = { open: 'anyone can join', approval: 'anyone can apply; an admin approves', invite_only: 'by invitation only' };

/**
 * What a system message says, as parts: strings and {uid} for a user (docs/protocol.md, "Every
 * change is a system message").
 */
function systemParts(ev) {
  if (!ev || typeof ev !== 'object') return ['The group changed'];
  const actor = { uid: ev.actor };
  const users = (list) => {
    const ids = (Array.isArray(list) ? list : []).map((u) => ({ uid: u }));
    const out = [];
    ids.forEach((u, i) => {
      if (i) out.push(i === ids.length - 1 ? ' and ' : ', ');
      out.push(u);
    });
    return out;
  };
  switch (ev.event) {
    case 'member_added': {
      const list = Array.isArray(ev.users) ? ev.users : [];
      if (ev.via === 'invitation') return [...users(list), ' joined by invitation'];
      if (ev.via === 'open') return [...users(list), ' joined'];
      if (ev.via === 'application') return [actor, ' let ', ...users(list), ' in'];
      return [actor, ' added ', ...users(list)];
    }
    case 'member_left':
      return [{ uid: ev.user_id ?? ev.actor }, ' left'];
    case 'member_removed':
      return [actor, ' removed ', { uid: ev.user_id }];
    case 'updated': {
      const parts = [];
      if (typeof ev.name === 'string') parts.push([' renamed the group to ', `“${ev.name}”`]);
      if (typeof ev.notice === 'string') parts.push(ev.notice ? [' changed the notice to ', `“${ev.notice}”`] : [' cleared the notice']);
      if (typeof ev.join_policy === 'string') parts.push([' made joining ', POLICY_TEXT[ev.join_policy] || ev.join_policy]);
      if (!parts.length) return [actor, ' changed the group settings'];
      const out = [actor];
      parts.forEach((p, i) => out.push(...(i ? [i === parts.length - 1 ? ' and' : ','] : []), ...p));
      return out;
    }
    case 'role_changed':
      return ev.role === 'admin' ? [actor, ' made ', { uid: ev.user_id }, ' an admin'] : [actor, ' made ', { uid: ev.user_id }, ' a member'];
    case 'owner_changed':
      if (ev.previous && ev.actor === ev.previous) return [actor, ' handed the group over to ', { uid: ev.user_id }];
      return [{ uid: ev.user_id }, ' is now the owner'];
    default:
      return ev.actor ? [actor, ' changed the group'] : ['The group changed'];
  }
}

/** A system message as nodes (names follow), with "You" at the start written as such. */
function systemNodes(ev) {
  return systemParts(ev).map((p, i) => (typeof p === 'string' ? p : who(p.uid, { lower: i > 0 })));
}

/** A system message as plain text (the conversation list's preview). */
function systemText(ev) {
  return systemParts(ev)
    .map((p, i) => (typeof p === 'string' ? p : (wantName(p.uid), nameNow(p.uid, { lower: i > 0 }))))
    .join('');
}

function nearBottom() {
  const s = $('scroller');
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom() {
  const s = $('scroller');
  s.scrollTop = s.scrollHeight;
}

/**
 * Puts a stored message in the open list, in seq order (replacing its pending twin). One older
 * than everything shown (e.g. the history of a conversation just joined, coming in after a newer
 * one) waits behind "Load earlier" unless `older` says it is being paged in.
 */
function renderMessage(m, msg, { keepScroll = false, older = false } = {}) {
  const list = $('messages');
  if (msg.seq < m.shownFrom && m.shownFrom !== Infinity && !older) return void updateLoadEarlier(m);
  if (msg.seq < m.shownFrom) m.shownFrom = msg.seq;
  if (list.querySelector(`li[data-seq="${msg.seq}"]:not(.pending)`)) return;
  const stick = nearBottom();
  // Our own message: the pending element becomes the stored one (its image is already loaded).
  const twin = msg.client_msg_id && isMine(msg) ? list.querySelector(`li.pending[data-cmid="${CSS.escape(msg.client_msg_id)}"]`) : null;
  if (twin) {
    twin.classList.remove('pending', 'failed');
    twin.dataset.seq = msg.seq;
    twin.querySelector('.status')?.remove();
    twin.querySelector('time').textContent = fmtTime(msg.ts);
    placeBySeq(list, twin, msg.seq);
  } else {
    placeBySeq(list, messageEl(msg, false), msg.seq);
  }
  if (!keepScroll && (stick || isMine(msg))) scrollToBottom();
}

function placeBySeq(list, el, seq) {
  let before = null;
  for (const li of list.children) {
    if (li === el) continue;
    if (li.classList.contains('pending') || Number(li.dataset.seq) > seq) {
      before = li;
      break;
    }
  }
  if (before) {
    if (before !== el.nextSibling) list.insertBefore(el, before);
  } else if (list.lastElementChild !== el) {
    list.append(el);
  }
}

function renderPending(m, p) {
  if (app.current !== m.id) return;
  $('messages').append(messageEl(p, true));
  scrollToBottom();
}

function markFailed(cmid, err) {
  const li = $('messages').querySelector(`li.pending[data-cmid="${CSS.escape(cmid)}"]`);
  if (!li) return;
  li.classList.add('failed');
  const s = li.querySelector('.status');
  if (s) s.textContent = `Not sent: ${errorText(err)}`;
}

/** Our ack came before the live copy: show it as stored now. */
function onAck(m, p, ack) {
  m.pending.delete(p.client_msg_id);
  const msg = { ...p, seq: ack.seq, ts: ack.ts, file: ack.file || p.file };
  delete msg.localBlob;
  const isNew = addMessage(m, { ...msg, ...(m.messages.get(ack.seq) || {}) });
  if (app.current === m.id) renderMessage(m, m.messages.get(ack.seq));
  if (isNew) renderConvList();
}

function localMessage(m, fields) {
  return {
    conversation_id: m.id,
    client_msg_id: messageId(),
    publisher_id: app.me.user_id,
    publisher_name: app.me.name,
    ts: Date.now(),
    ...fields,
  };
}

function sendText(text, mentions = []) {
  const m = model(app.current);
  const p = localMessage(m, { type: 'text', body: text, ...(mentions.length ? { mentions } : {}) });
  m.pending.set(p.client_msg_id, p);
  renderPending(m, p);
  client
    .sendText(m.id, text, { client_msg_id: p.client_msg_id, mentions })
    .then((ack) => onAck(m, p, ack))
    .catch((err) => markFailed(p.client_msg_id, err));
}

function sendAttachment(blob, type, name) {
  const m = model(app.current);
  const p = localMessage(m, { type, body: name, localBlob: blob, file: { name, size: blob.size, mime: blob.type } });
  m.pending.set(p.client_msg_id, p);
  renderPending(m, p);
  client
    .sendFile(m.id, blob, { type, name, mime: blob.type || 'application/octet-stream', client_msg_id: p.client_msg_id })
    .then((ack) => onAck(m, p, ack))
    .catch((err) => markFailed(p.client_msg_id, err));
}

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const t = $('text');
  const text = t.value.trim();
  if (!text || !app.current) return;
  const mentions = draftMentions(text);
  t.value = '';
  mentionDraft.clear();
  closeMentions();
  sendText(text, mentions);
  t.focus();
});

$('text').addEventListener('keydown', (e) => {
  if (mentionKey(e)) return;
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
});

// ---------------------------------------------------------------- @ mentions
//
// Typing "@" in a group offers its members (and "all" to its owner and admins); a pick puts
// "@Name " in the text and remembers whose it is. On send, the ids of the mentions still in the
// text (picked ones, and "@<member id>" typed out) go in the message's `mentions`.

const mentionDraft = new Map(); // "@Name" as inserted -> user id ("all" for everyone)
const mentionState = { open: false, items: [], active: 0, start: 0 };

function myRole(info) {
  return roleOf(info, app.me?.user_id);
}

function roleOf(info, uid) {
  if (!info || !uid) return 'member';
  return info.roles?.[uid] || (info.owner === uid ? 'owner' : 'member');
}

const canMentionAll = (info) => ['owner', 'admin'].includes(myRole(info));

function draftMentions(text) {
  const m = app.convs.get(app.current);
  const info = m?.info;
  if (!info || info.type !== 'group') return [];
  const members = new Set(info.members || []);
  const ids = new Set();
  for (const [token, uid] of mentionDraft) if (containsToken(text, token)) ids.add(uid);
  // "@id" typed out (a trailing full stop or comma is not part of the id).
  for (const match of text.matchAll(/(^|[^\w@.])@([a-z0-9][a-z0-9_.@-]*)/gi)) {
    let id = match[2].toLowerCase();
    while (id && !members.has(id) && id !== 'all' && /[.@_-]$/.test(id)) id = id.slice(0, -1);
    if (members.has(id) || id === 'all') ids.add(id);
  }
  ids.delete(app.me?.user_id);
  if (ids.has('all')) return canMentionAll(info) ? ['all'] : [...ids].filter((x) => x !== 'all');
  return [...ids];
}

function containsToken(text, token) {
  let i = text.indexOf(token);
  while (i >= 0) {
    const after = text[i + token.length];
    if (after === undefined || !/[\w]/.test(after)) return true;
    i = text.indexOf(token, i + 1);
  }
  return false;
}

function mentionCandidates(q) {
  const m = app.convs.get(app.current);
  const info = m?.info;
  if (!info || info.type !== 'group') return [];
  const ql = q.toLowerCase();
  const out = [];
  if (canMentionAll(info) && 'all'.startsWith(ql)) out.push({ uid: 'all', label: 'all', text: '@all — everyone in the group' });
  for (const uid of info.members || []) {
    if (uid === app.me?.user_id) continue;
    wantName(uid);
    const name = app.names.get(uid) || uid;
    if (!ql || uid.startsWith(ql) || name.toLowerCase().includes(ql)) out.push({ uid, label: name, text: name === uid ? uid : `${name} (${uid})` });
  }
  // Two members with one name: theirs is "@id" instead.
  const counts = new Map();
  for (const c of out) counts.set(c.label, (counts.get(c.label) || 0) + 1);
  for (const c of out) if (c.uid !== 'all' && (counts.get(c.label) > 1 || /\s$/.test(c.label) || !c.label)) c.label = c.uid;
  return out.slice(0, 8);
}

function updateMentions() {
  const t = $('text');
  const caret = t.selectionStart ?? t.value.length;
  const before = t.value.slice(0, caret);
  const match = /(^|\s)@([^\s@]*)$/.exec(before);
  if (!match || t.selectionEnd !== t.selectionStart) return closeMentions();
  const items = mentionCandidates(match[2]);
  if (!items.length) return closeMentions();
  mentionState.open = true;
  mentionState.items = items;
  mentionState.start = caret - match[2].length - 1;
  mentionState.active = Math.min(mentionState.active, items.length - 1);
  renderMentions();
}

function renderMentions() {
  const list = $('mention-list');
  list.replaceChildren(
    ...mentionState.items.map((it, i) =>
      h(
        'li',
        {
          id: `mention-opt-${i}`,
          role: 'option',
          class: i === mentionState.active ? 'active' : '',
          'aria-selected': i === mentionState.active ? 'true' : 'false',
          dataset: { uid: it.uid },
          // mousedown, not click: the textarea keeps its focus and caret.
          onmousedown: (e) => {
            e.preventDefault();
            pickMention(i);
          },
        },
        it.text,
      ),
    ),
  );
  list.hidden = false;
  $('text').setAttribute('aria-expanded', 'true');
  $('text').setAttribute('aria-activedescendant', `mention-opt-${mentionState.active}`);
}

function closeMentions() {
  mentionState.open = false;
  mentionState.items = [];
  mentionState.active = 0;
  $('mention-list').hidden = true;
  $('mention-list').replaceChildren();
  $('text').setAttribute('aria-expanded', 'false');
  $('text').removeAttribute('aria-activedescendant');
}

function pickMention(i) {
  const it = mentionState.items[i];
  if (!it) return;
  const t = $('text');
  const caret = t.selectionStart ?? t.value.length;
  const token = `@${it.label}`;
  t.value = t.value.slice(0, mentionState.start) + token + ' ' + t.value.slice(caret);
  const pos = mentionState.start + token.length + 1;
  t.setSelectionRange(pos, pos);
  mentionDraft.set(token, it.uid);
  closeMentions();
  t.focus();
}

/** Keys while the suggestions are open; true when the key was theirs. */
function mentionKey(e) {
  if (!mentionState.open || e.isComposing) return false;
  const n = mentionState.items.length;
  if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    mentionState.active = (mentionState.active + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
    renderMentions();
  } else if (e.key === 'Enter' || e.key === 'Tab') {
    pickMention(mentionState.active);
  } else if (e.key === 'Escape') {
    closeMentions();
  } else {
    return false;
  }
  e.preventDefault();
  return true;
}

$('text').addEventListener('input', updateMentions);
$('text').addEventListener('click', updateMentions);
$('text').addEventListener('blur', () => setTimeout(() => document.activeElement !== $('text') && closeMentions(), 100));

for (const [id, type] of [['image-input', 'image'], ['file-input', 'file']]) {
  $(id).addEventListener('change', (e) => {
    const input = e.currentTarget;
    for (const f of input.files) if (app.current) sendAttachment(f, type, f.name);
    input.value = '';
  });
}

// ---------------------------------------------------------------- voice notes

let recorder = null;
// Icons are DOM nodes, not HTML strings (the page's CSP allows no markup-made styles or scripts).
const MIC_ICON = $('record').firstElementChild.cloneNode(true);
const STOP_ICON = svg('svg', { class: 'icon', viewBox: '0 0 24 24', 'aria-hidden': 'true' },
  svg('rect', { x: 6, y: 6, width: 12, height: 12, rx: 2, fill: 'currentColor' }));

function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

function recordStatus(text) {
  $('record-status').textContent = text;
}

async function toggleRecording() {
  const btn = $('record');
  if (recorder) {
    recorder.stop();
    return;
  }
  if (!app.current) return;
  if (!navigator.mediaDevices?.getUserMedia || typeof MediaRecorder === 'undefined') {
    recordStatus('Voice notes need a browser with microphone recording.');
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    recordStatus(`No microphone: ${errorText(err)}`);
    return;
  }
  const mime = ['audio/webm;codecs=opus', 'audio/webm', 'audio/ogg;codecs=opus', 'audio/mp4'].find((t) => MediaRecorder.isTypeSupported(t));
  const rec = new MediaRecorder(stream, mime ? { mimeType: mime } : undefined);
  const chunks = [];
  const conv = app.current;
  const started = Date.now();
  const timer = setInterval(() => recordStatus(`Recording… ${Math.round((Date.now() - started) / 1000)} s`), 500);
  rec.ondataavailable = (ev) => ev.data.size && chunks.push(ev.data);
  rec.onstop = () => {
    clearInterval(timer);
    stream.getTracks().forEach((t) => t.stop());
    recorder = null;
    btn.setAttribute('aria-pressed', 'false');
    btn.setAttribute('aria-label', 'Record voice note');
    btn.replaceChildren(MIC_ICON.cloneNode(true));
    const type = (rec.mimeType || mime || 'audio/webm').split(';')[0];
    const blob = new Blob(chunks, { type: rec.mimeType || type });
    recordStatus('');
    if (!blob.size || app.current !== conv) return;
    const ext = type.includes('ogg') ? 'ogg' : type.includes('mp4') ? 'm4a' : 'webm';
    sendAttachment(blob, 'voice', `voice-${new Date().toISOString().replace(/[:.]/g, '-')}.${ext}`);
  };
  recorder = rec;
  rec.start(250);
  btn.setAttribute('aria-pressed', 'true');
  btn.setAttribute('aria-label', 'Stop recording');
  btn.replaceChildren(STOP_ICON.cloneNode(true));
  recordStatus('Recording… 0 s');
}

$('record').addEventListener('click', toggleRecording);

// ---------------------------------------------------------------- the open conversation

function renderChatHead() {
  const m = app.convs.get(app.current);
  if (!m) return;
  $('chat-title').textContent = m.title;
  // Not (or no longer) a member: what was loaded stays readable, nothing can be sent.
  const gone = !m.info;
  $('chat-gone').hidden = !gone;
  $('composer').hidden = gone;
  if (gone && recorder) recorder.stop();
  const group = m.info?.type === 'group';
  $('members-toggle').hidden = !group;
  if (!group) {
    $('members-panel').hidden = true;
    $('members-toggle').setAttribute('aria-expanded', 'false');
  }
  const muted = !!m.info?.muted;
  const mute = $('mute-toggle');
  mute.hidden = gone;
  mute.setAttribute('aria-pressed', String(muted));
  mute.textContent = muted ? 'Muted' : 'Mute';
  mute.title = muted ? 'Muted: no offline notifications unless you are mentioned. Click to unmute.' : 'Mute offline notifications';
  const notice = group ? m.info.notice || '' : '';
  $('chat-notice').hidden = !notice;
  $('chat-notice').textContent = notice;
  if (group) renderGroupPanel(m);
}

// ---------------------------------------------------------------- group panel: settings, members, invitations

const ROLE_RANK = { owner: 0, admin: 1, member: 2 };

function renderGroupPanel(m) {
  const info = m.info;
  const me = app.me.user_id;
  const mine = myRole(info);
  const manager = mine === 'owner' || mine === 'admin';

  // Settings: owner and admins change them; the others see them.
  const f = $('settings-form');
  if (f.dataset.conv !== m.id) {
    f.dataset.conv = m.id;
    delete f.dataset.dirty;
  }
  if (!f.dataset.dirty && !f.contains(document.activeElement)) {
    f.name.value = info.name || '';
    f.notice.value = info.notice || '';
    f.join_policy.value = info.join_policy || 'approval';
  }
  for (const el of [f.name, f.notice]) el.readOnly = !manager;
  f.join_policy.disabled = !manager;
  f.querySelector('button[type=submit]').hidden = !manager;
  $('settings-hint').hidden = manager;

  // Members, owner first, then admins, in joining order.
  const members = [...(info.members || [])].sort((a, b) => ROLE_RANK[roleOf(info, a)] - ROLE_RANK[roleOf(info, b)]);
  $('member-list').replaceChildren(
    ...members.map((u) => {
      const role = roleOf(info, u);
      const actions = [];
      if (u !== me) {
        if (mine === 'owner' && role === 'member')
          actions.push(actionButton('Make admin', `Make ${u} an admin`, () => client.setRole(m.id, u, 'admin')));
        if (mine === 'owner' && role === 'admin')
          actions.push(actionButton('Make member', `Make ${u} a member`, () => client.setRole(m.id, u, 'member')));
        if (mine === 'owner')
          actions.push(
            actionButton('Make owner', `Make ${u} the owner`, () => {
              if (!confirm(`Hand the group over to ${nameNow(u)}? You will be an admin.`)) return null;
              return client.transferOwner(m.id, u);
            }),
          );
        const mayRemove = (mine === 'owner') || (mine === 'admin' && role === 'member') || (app.admin && role !== 'owner');
        if (mayRemove) actions.push(actionButton('Remove', `Remove ${u}`, () => client.removeMember(m.id, u), 'danger'));
      }
      return h(
        'li',
        { dataset: { uid: u, role } },
        who(u),
        // The id beside the name once the name is known (until then the name shown is the id).
        u === me || (app.names.has(u) && app.names.get(u) !== u) ? [' ', h('span', { class: 'member-id' }, u)] : null,
        role !== 'member' ? h('span', { class: `tag role-${role}` }, role) : null,
        u === me ? h('span', { class: 'you' }, ' (you)') : null,
        actions.length ? h('span', { class: 'member-actions' }, ...actions) : null,
      );
    }),
  );

  // Adding and inviting: everyone, except in invite-only groups (owner and admins there).
  const mayAdd = manager || info.join_policy !== 'invite_only';
  $('add-member-form').hidden = !mayAdd;
  $('invite-form').hidden = !mayAdd;
  if (!mayAdd) {
    $('invite-results').replaceChildren();
    $('invite-more').hidden = true;
  }
  $('join-link').textContent = joinLink(m.id);
}

const joinLink = (id) => `${location.origin}/#/join/${id}`;

/**
 * A small action button: runs `fn` (a promise or null to cancel) and shows its error through
 * `showError` (the group panel's members error line unless given; '' clears it).
 */
function actionButton(text, label, fn, cls = '', showError = (t) => ($('members-error').textContent = t)) {
  return h('button', {
    type: 'button',
    class: `small ${cls}`.trim(),
    'aria-label': label,
    onclick: async (e) => {
      const btn = e.currentTarget;
      showError('');
      btn.disabled = true;
      try {
        await fn();
      } catch (err) {
        showError(`${label}: ${errorText(err)}`);
      } finally {
        btn.disabled = false;
      }
    },
  }, text);
}

$('settings-form').addEventListener('input', (e) => {
  e.currentTarget.dataset.dirty = '1';
});

$('settings-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.currentTarget;
  const m = app.convs.get(app.current);
  if (!m?.info) return;
  const info = m.info;
  const change = {};
  const name = f.name.value.trim();
  if (name && name !== (info.name || '')) change.name = name;
  if (f.notice.value !== (info.notice || '')) change.notice = f.notice.value;
  if (f.join_policy.value !== (info.join_policy || 'approval')) change.join_policy = f.join_policy.value;
  $('members-error').textContent = '';
  $('members-status').textContent = '';
  delete f.dataset.dirty;
  if (!Object.keys(change).length) {
    $('members-status').textContent = 'Nothing to change.';
    return;
  }
  const btn = f.querySelector('button[type=submit]');
  btn.disabled = true;
  try {
    await client.updateConversation(m.id, change);
    $('members-status').textContent = 'Settings saved.';
  } catch (err) {
    f.dataset.dirty = '1';
    $('members-error').textContent = `Could not save the settings: ${errorText(err)}`;
  } finally {
    btn.disabled = false;
  }
});

$('invite-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const uid = e.currentTarget.user_id.value.trim().toLowerCase();
  if (uid) await inviteUser(uid);
});

async function inviteUser(uid) {
  const id = app.current;
  if (!id) return;
  $('members-error').textContent = '';
  $('members-status').textContent = '';
  try {
    await client.invite(id, uid);
    $('invite-form').reset();
    $('invite-results').replaceChildren();
    $('invite-more').hidden = true;
    $('members-status').textContent = `Invited ${nameNow(uid)}; they join once they accept.`;
  } catch (err) {
    $('members-error').textContent = `Could not invite ${uid}: ${err?.status === 409 ? 'already a member' : errorText(err)}`;
  }
}

directorySearch({
  input: document.querySelector('#invite-form input[name=user_id]'),
  list: $('invite-results'),
  more: $('invite-more'),
  skip: (u) => u.user_id === app.me?.user_id || app.convs.get(app.current)?.info?.members?.includes(u.user_id),
  row: (u) => [actionButton('Invite', `Invite ${u.user_id}`, () => inviteUser(u.user_id))],
});

$('copy-link').addEventListener('click', async () => {
  const text = $('join-link').textContent;
  try {
    await navigator.clipboard.writeText(text);
    $('members-status').textContent = 'Link copied.';
  } catch {
    getSelection()?.selectAllChildren($('join-link'));
    $('members-status').textContent = 'Select the link and copy it.';
  }
});

$('leave').addEventListener('click', async () => {
  const m = app.convs.get(app.current);
  if (!m?.info) return;
  if (!confirm(`Leave ${m.title}?`)) return;
  $('members-error').textContent = '';
  try {
    await client.removeMember(m.id, app.me.user_id);
  } catch (err) {
    $('members-error').textContent = `Could not leave: ${errorText(err)}`;
  }
});

$('mute-toggle').addEventListener('click', async () => {
  const m = app.convs.get(app.current);
  if (!m?.info) return;
  const btn = $('mute-toggle');
  btn.disabled = true;
  try {
    await client.mute(m.id, !m.info.muted);
  } catch (err) {
    notice('Error', `Could not change muting: ${errorText(err)}`);
  } finally {
    btn.disabled = false;
  }
});

function updateLoadEarlier(m) {
  const min = m.shownFrom;
  $('load-earlier').hidden = !(min > 1 && min !== Infinity);
}

async function openConversation(id) {
  id = String(id);
  const m = model(id);
  if (!m.info) {
    try {
      applyInfo(await client.getConversation(id));
    } catch {}
  }
  if (app.current !== id) {
    mentionDraft.clear();
    closeMentions();
  }
  app.current = id;
  m.unread = 0;
  document.body.classList.add('chat-open');
  $('chat-empty').hidden = true;
  $('chat-body').hidden = false;
  renderChatHead();
  renderConvList();
  const list = $('messages');
  list.replaceChildren();
  // The newest page of what is known here; older ones on demand.
  const known = [...m.messages.values()].sort((a, b) => a.seq - b.seq).slice(-PAGE);
  m.shownFrom = known.length ? known[0].seq : Infinity;
  for (const msg of known) list.append(messageEl(msg, false));
  for (const p of m.pending.values()) list.append(messageEl(p, true));
  updateLoadEarlier(m);
  scrollToBottom();
  if (!m.historyLoaded) {
    try {
      const msgs = await client.latest(id, PAGE);
      m.historyLoaded = true;
      if (app.current !== id) return;
      for (const msg of msgs) {
        addMessage(m, msg);
        renderMessage(m, m.messages.get(msg.seq), { keepScroll: true, older: true });
      }
      updateLoadEarlier(m);
      scrollToBottom();
      renderConvList();
    } catch (err) {
      console.warn('history', err);
    }
  }
  if (matchMedia('(min-width: 701px)').matches) $('text').focus();
}

async function loadEarlier() {
  const m = app.convs.get(app.current);
  if (!m || m.loadingEarlier) return;
  const min = m.shownFrom;
  if (!(min > 1) || min === Infinity) return;
  m.loadingEarlier = true;
  const s = $('scroller');
  try {
    const msgs = await client.history(m.id, { beforeSeq: min, limit: PAGE });
    if (app.current !== m.id) return;
    const fromBottom = s.scrollHeight - s.scrollTop;
    for (const msg of msgs) {
      addMessage(m, msg);
      renderMessage(m, m.messages.get(msg.seq), { keepScroll: true, older: true });
    }
    s.scrollTop = s.scrollHeight - fromBottom; // keep the reader where they were
    updateLoadEarlier(m);
  } catch (err) {
    console.warn('history', err);
  } finally {
    m.loadingEarlier = false;
  }
}

$('load-earlier').addEventListener('click', loadEarlier);
$('scroller').addEventListener('scroll', () => {
  if ($('scroller').scrollTop < 40 && !$('load-earlier').hidden) loadEarlier();
});

function closeChatView() {
  document.body.classList.remove('chat-open');
}

$('back').addEventListener('click', () => {
  closeChatView();
  app.current = null;
  renderConvList();
});

$('members-toggle').addEventListener('click', () => {
  const panel = $('members-panel');
  panel.hidden = !panel.hidden;
  $('members-toggle').setAttribute('aria-expanded', String(!panel.hidden));
});

$('add-member-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.currentTarget;
  const uid = f.user_id.value.trim();
  if (!uid || !app.current) return;
  $('members-error').textContent = '';
  try {
    await client.addMembers(app.current, [uid]);
    f.reset();
  } catch (err) {
    $('members-error').textContent = `Could not add ${uid}: ${errorText(err)}`;
  }
});

// ---------------------------------------------------------------- notices (events, broadcasts)

function noticeText(d) {
  if (d === null || d === undefined) return '';
  if (typeof d !== 'object') return String(d);
  return d.text || d.message || d.body || JSON.stringify(d);
}

function notice(kind, data) {
  const list = $('notices');
  const li = h('li', { class: `notice notice-${kind.toLowerCase()}` },
    h('strong', {}, `${kind}: `), h('span', {}, noticeText(data)),
    h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss notice', onclick: () => li.remove() }, '×'));
  list.append(li);
  while (list.children.length > 5) list.firstElementChild.remove();
}

// ---------------------------------------------------------------- boot

const saved = storage.session();
if (saved?.token && (!saved.expires_at || saved.expires_at > Date.now())) start(saved);
else showAuth();
