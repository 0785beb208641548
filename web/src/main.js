// Converge web client: plain DOM, the SDK from clients/js does the protocol.
import { ApiError, ConvergeClient, randomId } from '@converge/client';
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
  convs: new Map(), // id -> model
  current: null, // open conversation id
  everOnline: false,
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
  client?.close();
  client = null;
  app.me = null;
  app.convs.clear();
  app.current = null;
  app.everOnline = false;
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
  client.on('event', (d) => notice('Event', d));
  client.on('broadcast', (d) => notice('Broadcast', d));
  client.on('unauthorized', () => {
    stop();
    storage.clearSession();
    showAuth('Your session has ended. Please log in again.');
  });
  client.on('error', (err) => console.warn('converge:', err));
  showMain();
  renderState(client.state);
  const c = client;
  // Conversations others put us in (or take us out of) come as 'conversation' pushes; each
  // reconnect re-reads the list. No polling.
  c.connect()
    .then(() => fillPreviews(c))
    .catch(() => {});
}

function renderState(state) {
  const el = $('conn');
  if (state === 'online') {
    app.everOnline = true;
    retryFailedFiles();
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
function onConversationPush(c, { member }) {
  const id = String(c.id);
  if (member) {
    applyInfo(client?.conversations.get(id) || c);
  } else {
    const m = app.convs.get(id);
    if (m) noLongerMember(m);
  }
  renderConvList();
  if (app.current === id) renderChatHead();
}

/** Takes the server's conversation object into the model: list entry, title, members. */
function applyInfo(c) {
  const m = model(c.id);
  m.info = c;
  if (c.type === 'group') m.title = c.name || `Group ${c.id}`;
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
      const label = `Open conversation ${m.title}` + (m.unread ? `, ${m.unread} unread` : '');
      return h(
        'li',
        { class: m.id === app.current ? 'active' : '' },
        h(
          'button',
          { type: 'button', class: 'conv', 'aria-label': label, 'aria-current': m.id === app.current ? 'true' : null, dataset: { id: m.id }, onclick: () => openConversation(m.id) },
          h('span', { class: 'conv-title' }, m.title, m.info.type === 'group' ? h('span', { class: 'tag' }, 'group') : null),
          h('span', { class: 'conv-preview' }, preview(m.last)),
          m.unread ? h('span', { class: 'badge', 'aria-label': `${m.unread} unread` }, String(m.unread)) : null,
        ),
      );
    }),
  );
}

async function startDirect(userId) {
  const c = await client.createDirect(userId);
  openConversation(c.id);
}

$('direct-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.currentTarget;
  const uid = f.user_id.value.trim();
  if (!uid) return;
  $('side-error').textContent = '';
  try {
    await startDirect(uid);
    f.reset();
  } catch (err) {
    $('side-error').textContent = `Could not start a chat with ${uid}: ${errorText(err)}`;
  }
});

$('group-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.currentTarget;
  const name = f.name.value.trim();
  const members = f.members.value.split(/[\s,]+/).filter(Boolean);
  $('side-error').textContent = '';
  try {
    const c = await client.createGroup({ name, members });
    f.reset();
    openConversation(c.id);
  } catch (err) {
    $('side-error').textContent = `Could not create the group: ${errorText(err)}`;
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
  if (isNew && !isMine(msg) && app.current !== m.id) m.unread++;
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

function messageEl(msg, pending) {
  const mine = isMine(msg);
  const el = h(
    'li',
    {
      class: `msg ${mine ? 'mine' : 'theirs'} type-${msg.type}${pending ? ' pending' : ''}`,
      dataset: { seq: msg.seq ?? '', cmid: msg.client_msg_id || '' },
    },
    h('div', { class: 'meta' }, h('span', { class: 'author' }, authorName(msg)), ' ', h('time', {}, fmtTime(msg.ts))),
    h('div', { class: 'content' }, content(msg)),
    pending ? h('span', { class: 'status', role: 'status' }, pendingText()) : null,
  );
  return el;
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
    client_msg_id: randomId(),
    publisher_id: app.me.user_id,
    publisher_name: app.me.name,
    ts: Date.now(),
    ...fields,
  };
}

function sendText(text) {
  const m = model(app.current);
  const p = localMessage(m, { type: 'text', body: text });
  m.pending.set(p.client_msg_id, p);
  renderPending(m, p);
  client
    .sendText(m.id, text, { client_msg_id: p.client_msg_id })
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
  t.value = '';
  sendText(text);
  t.focus();
});

$('text').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
});

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
  $('member-list').replaceChildren(...(m.info?.members || []).map((u) => h('li', {}, u === app.me.user_id ? `${u} (you)` : u)));
}

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
