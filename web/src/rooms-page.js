// Web client: the voice rooms page (#/rooms): the rooms with their member counts, a new room,
// the room one is in — members with their numbers, who is speaking (the node's room.speaking),
// who is muted, the owner's mute / remove / delete — and the microphone. The audio itself is
// voice.js's. Same plain-DOM style as main.js, which hands over its helpers.

import { ENCODER_NAMES, VoiceSession, voiceSupport } from './voice.js';

const LIST_REFRESH_MS = 10000; // the room list has no pushes (member counts of rooms one is not in)
const ENCODER_KEY = 'converge.voice.encoder';

const $ = (id) => document.getElementById(id);

const OUT_TEXT = {
  removed: 'You were removed from this room by its owner.',
  deleted: 'The room was deleted by its owner.',
  left: 'You left the room.',
  closed: 'The connection closed: you are out of the room.',
  node_lost: 'The node lost you: you are out of the room.',
  rejoin_failed: 'You could not get back into the room after reconnecting.',
  moved: 'You joined this room from another tab or device: you are out of it here.',
};

const LEFT_TEXT = {
  left: 'left',
  closed: 'was disconnected',
  removed: 'was removed by the owner',
  node_lost: 'was lost with their node',
};

/**
 * @param {object} o
 * @param {Function} o.h element builder
 * @param {Function} o.client () -> the current ConvergeClient or null
 * @param {Function} o.me () -> the session ({user_id, name})
 * @param {Function} o.who (uid) -> a name node that follows the name
 * @param {Function} o.nameNow (uid) -> a name as text
 * @param {Function} o.errorText (err) -> text
 * @param {Function} o.actionButton (text, label, fn, cls, showError) -> a button running fn
 */
export function setupRooms({ h, client, me, who, nameNow, errorText, actionButton }) {
  const st = {
    list: [], // GET /rooms: [{room_id, name, owner, max_members, member_count}]
    listGen: 0,
    current: null, // {id, voice, room, out, encoderOf: Map uid -> encoder}
    visible: false,
    timer: null,
    unsub: [],
    support: null,
  };

  voiceSupport().then((s) => {
    st.support = s;
    const sel = $('voice-encoder');
    sel.querySelector('option[value=webcodecs]').disabled = !s.webcodecs;
    sel.querySelector('option[value=mediarecorder]').disabled = !s.mediarecorder;
    const saved = localStorage.getItem(ENCODER_KEY);
    if (saved && sel.querySelector(`option[value=${saved}]:not([disabled])`)) sel.value = saved;
    sel.querySelector('option[value=auto]').textContent = `Auto: ${s.webcodecs ? 'WebCodecs' : s.mediarecorder ? 'MediaRecorder' : 'none here'}`;
    renderVoiceStatus();
  });

  // ------------------------------------------------------------ the list

  async function refreshList() {
    const c = client();
    if (!c) return;
    const gen = ++st.listGen;
    try {
      const rooms = [];
      let after;
      for (let page = 0; page < 10; page++) {
        const r = await c.listRooms({ after, limit: 100 });
        rooms.push(...r.rooms);
        if (r.next == null) break;
        after = r.next;
      }
      if (gen !== st.listGen || c !== client()) return;
      st.list = rooms;
      $('rooms-error').textContent = '';
      renderList();
    } catch (err) {
      if (gen === st.listGen) $('rooms-error').textContent = `Could not load the rooms: ${errorText(err)}`;
    }
  }

  function renderList() {
    const cur = st.current && !st.current.out ? st.current.id : null;
    $('rooms-empty').hidden = st.list.length > 0;
    $('room-list').replaceChildren(
      ...st.list.map((r) => {
        const id = r.room_id ?? r.id;
        const inIt = id === cur;
        const count = inIt ? st.current.room?.members?.length ?? r.member_count : r.member_count;
        const full = count >= r.max_members;
        const label = `${inIt ? 'Open' : 'Join'} room ${r.name}, ${count} of ${r.max_members} members${inIt ? ', you are in it' : full ? ', full' : ''}`;
        return h(
          'li',
          { class: inIt ? 'active' : '', dataset: { roomId: String(id), count: String(count) } },
          h(
            'button',
            { type: 'button', class: 'conv', 'aria-label': label, 'aria-current': inIt ? 'true' : null, onclick: () => (inIt ? openPane() : join(id)) },
            h('span', { class: 'conv-title' }, r.name, inIt ? h('span', { class: 'tag tag-in' }, 'joined') : null, full && !inIt ? h('span', { class: 'tag' }, 'full') : null),
            h('span', { class: 'conv-preview' }, `${count} / ${r.max_members} members · by `, who(r.owner)),
          ),
        );
      }),
    );
  }

  $('rooms-refresh').addEventListener('click', refreshList);

  $('room-create-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.currentTarget;
    const name = f.name.value.trim();
    const max = Number(f.max_members.value || 50);
    $('rooms-error').textContent = '';
    if (!name) {
      $('rooms-error').textContent = 'Give the room a name.';
      return;
    }
    if (!Number.isInteger(max) || max < 1) {
      $('rooms-error').textContent = 'Max members: a whole number from 1.';
      return;
    }
    const btn = f.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      const r = await client().createRoom({ name, max_members: max });
      f.name.value = '';
      st.list = [...st.list.filter((x) => (x.room_id ?? x.id) !== r.room_id), r].sort((a, b) => a.room_id - b.room_id);
      renderList();
      refreshList();
    } catch (err) {
      $('rooms-error').textContent = `Could not create the room: ${errorText(err)}`;
    } finally {
      btn.disabled = false;
    }
  });

  // ------------------------------------------------------------ joining and leaving

  async function join(id) {
    const c = client();
    if (!c) return;
    $('rooms-error').textContent = '';
    if (st.current && !st.current.out && st.current.id !== id) await leave({ quiet: true });
    if (st.current?.id === id && !st.current.out) return openPane();
    const voice = new VoiceSession({ client: c, roomId: id, onChange: renderStats, onError: (err) => showError(`Audio: ${errorText(err)}`) });
    voice.audio(); // now, in the click: browsers start audio only after a gesture
    st.current?.voice?.close();
    $('room-log').replaceChildren();
    st.current = { id, voice, room: null, out: null, encoderOf: new Map(), name: st.list.find((r) => r.room_id === id)?.name };
    try {
      // The SDK's joinRoom needs the socket up (a page opened at #/rooms/<id> is still connecting).
      await online(c);
      const room = await c.joinRoom(id);
      if (st.current?.voice !== voice) return;
      st.current.room = room;
      st.current.name = room.name;
      voice.setMuted(mine(room)?.muted);
      logLine(`You joined as member #${room.me}.`);
    } catch (err) {
      voice.close();
      if (st.current?.voice === voice) st.current = null;
      $('rooms-error').textContent = `Could not join the room: ${joinError(err)}`;
      renderRoom();
      renderList();
      return;
    }
    if (location.hash !== `#/rooms/${id}`) history.replaceState(null, '', `#/rooms/${id}`);
    openPane();
    renderRoom();
    renderList();
  }

  function online(c, timeoutMs = 20000) {
    if (c.state === 'online') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        off();
        reject(new Error('not connected to the node'));
      }, timeoutMs);
      const off = c.on('state', (s) => {
        if (s !== 'online') return;
        clearTimeout(t);
        off();
        resolve();
      });
    });
  }

  function joinError(err) {
    if (err?.code === 'room_full') return 'the room is full';
    if (err?.code === 'forbidden') return 'the owner removed you from this room';
    if (err?.code === 'not_found') return 'there is no such room (any more)';
    return errorText(err);
  }

  async function leave({ quiet = false } = {}) {
    const cur = st.current;
    if (!cur) return;
    cur.voice?.close();
    st.current = null;
    if (!cur.out) {
      try {
        await client()?.leaveRoom(cur.id);
      } catch (err) {
        if (!quiet) $('rooms-error').textContent = `Could not leave the room: ${errorText(err)}`;
      }
    }
    if (/^#\/rooms\/\d+$/.test(location.hash)) history.replaceState(null, '', '#/rooms');
    $('room-log').replaceChildren();
    document.body.classList.remove('room-open');
    renderRoom();
    renderList();
    refreshList();
  }

  $('room-leave').addEventListener('click', () => leave());

  $('room-back').addEventListener('click', () => document.body.classList.remove('room-open'));

  function openPane() {
    document.body.classList.add('room-open');
  }

  /** The SDK's room.state: (id, room | null, why). */
  function onState(id, room, why) {
    const cur = st.current;
    if (!cur || cur.id !== id) return;
    if (room === null) {
      cur.out = why?.reason || 'left';
      cur.voice?.close();
      cur.voice = null;
      if (cur.out === 'rejoin_failed' && why?.error) cur.outDetail = joinError(why.error);
      if (location.hash === `#/rooms/${id}`) history.replaceState(null, '', '#/rooms');
      renderRoom();
      renderList();
      refreshList();
      return;
    }
    cur.room = room;
    cur.name = room.name || cur.name;
    const m = mine(room);
    cur.voice?.setMuted(m?.muted);
    // Speakers who left: their decoders go.
    const nos = new Set(room.members.map((x) => x.member_no));
    for (const no of cur.voice ? [...cur.voice.speakers.keys()] : []) if (!nos.has(no)) cur.voice.dropSpeaker(no);
    renderRoom();
    renderList();
  }

  const mine = (room) => room?.members?.find((x) => x.user_id === me()?.user_id);
  const isOwner = () => st.current?.room?.owner === me()?.user_id;

  // ------------------------------------------------------------ the room

  function showError(text) {
    $('room-error').textContent = text;
  }

  function renderRoom() {
    const cur = st.current;
    $('room-empty').hidden = !!cur;
    const nav = $('nav-rooms');
    if (cur && !cur.out) {
      nav.dataset.inRoom = '1';
      nav.title = `You are in the room ${cur.name || cur.id}`;
    } else {
      delete nav.dataset.inRoom;
      nav.removeAttribute('title');
    }
    $('room-body').hidden = !cur || !!cur.out;
    $('room-out').hidden = !cur?.out;
    if (!cur) return;
    if (cur.out) {
      $('room-out').replaceChildren(
        h('strong', {}, cur.name || `Room ${cur.id}`), ': ',
        OUT_TEXT[cur.out] || 'You are out of the room.',
        cur.outDetail ? ` (${cur.outDetail})` : '',
        ' ',
        h('button', { type: 'button', class: 'link', onclick: () => { st.current = null; document.body.classList.remove('room-open'); renderRoom(); } }, 'Back to the rooms'),
      );
      return;
    }
    const room = cur.room;
    $('room-title').textContent = cur.name || `Room ${cur.id}`;
    const conn = room ? (room.connected ? 'connected' : 'reconnecting…') : 'joining…';
    $('room-conn').textContent = conn;
    $('room-conn').dataset.state = room?.connected ? 'online' : 'connecting';
    const m = mine(room);
    const muted = !!m?.muted;
    const mute = $('self-mute');
    mute.disabled = !room?.connected;
    mute.setAttribute('aria-pressed', String(muted));
    mute.textContent = muted ? 'Unmute' : 'Mute';
    mute.setAttribute('aria-label', muted ? 'Unmute yourself' : 'Mute yourself');
    const talking = !!cur.voice?.talking;
    const talk = $('talk');
    talk.setAttribute('aria-pressed', String(talking));
    $('talk-text').textContent = talking ? 'Stop talking' : 'Start talking';
    $('voice-encoder').disabled = talking;
    $('room-delete').hidden = !isOwner();
    renderMembers();
    renderVoiceStatus();
  }

  function renderMembers() {
    const cur = st.current;
    const room = cur?.room;
    const list = $('room-members');
    if (!room) return list.replaceChildren();
    const owner = isOwner();
    const myId = me()?.user_id;
    // Rows are made again on every change (speaking comes and goes): keep the focus where it was.
    const focused = list.contains(document.activeElement) ? document.activeElement.getAttribute('aria-label') : null;
    list.replaceChildren(
      ...room.members.map((m) => {
        const you = m.user_id === myId;
        const name = nameNow(m.user_id);
        const actions = [];
        if (owner && !you) {
          actions.push(
            action(m.muted ? 'Unmute' : 'Mute', `${m.muted ? 'Unmute' : 'Mute'} ${name}`, () => client().muteMember(cur.id, m.user_id, !m.muted)),
            action('Remove', `Remove ${name} from the room`, () => {
              if (!confirm(`Remove ${name} from the room? They cannot join it again.`)) return null;
              return client().removeRoomMember(cur.id, m.user_id);
            }, 'danger'),
          );
        }
        const enc = cur.encoderOf.get(m.user_id);
        const li = h(
          'li',
          {
            class: `room-member${m.speaking ? ' speaking' : ''}${m.muted ? ' muted' : ''}`,
            dataset: { uid: m.user_id, memberNo: String(m.member_no), speaking: String(!!m.speaking), muted: String(!!m.muted) },
          },
          h('span', { class: 'speak-dot', 'aria-hidden': 'true' }),
          who(m.user_id),
          h('span', { class: 'member-no', title: 'Member number in this room' }, `#${m.member_no}`),
          you ? h('span', { class: 'you' }, ' (you)') : null,
          m.user_id === room.owner ? h('span', { class: 'tag role-owner' }, 'owner') : null,
          m.speaking ? h('span', { class: 'tag tag-speaking' }, 'speaking') : null,
          m.muted ? h('span', { class: 'tag tag-muted' }, 'muted') : null,
          enc ? h('span', { class: 'tag', title: ENCODER_NAMES[enc] || enc }, enc === 'mediarecorder' ? 'MediaRecorder' : 'WebCodecs') : null,
          you ? null : h('meter', { class: 'level', min: '0', max: '0.3', low: '0.02', value: '0', 'aria-label': `Audio level of ${name}` }),
          actions.length ? h('span', { class: 'member-actions' }, ...actions) : null,
        );
        return li;
      }),
    );
    if (focused) [...list.querySelectorAll('button')].find((b) => b.getAttribute('aria-label') === focused)?.focus();
    renderStats();
  }

  const action = (text, label, fn, cls = '') => actionButton(text, label, fn, cls, showError);

  /** Meters and counts from the voice stats (in place: the member rows stay). */
  function renderStats() {
    const cur = st.current;
    const voice = cur?.voice;
    if (!voice) return;
    for (const li of $('room-members').children) {
      const s = voice.speakerStats(li.dataset.uid);
      if (!s) continue;
      li.dataset.decoded = String(s.decoded);
      li.dataset.peakRms = s.peakRms.toFixed(4);
      const meter = li.querySelector('meter');
      if (meter) meter.value = Math.min(0.3, s.lastRms);
    }
    renderVoiceStatus();
  }

  function renderVoiceStatus() {
    const cur = st.current;
    const el = $('voice-status');
    const sup = st.support;
    const voice = cur?.voice;
    if (!cur || cur.out) return void (el.textContent = '');
    const s = voice?.stats;
    const parts = [];
    if (voice?.talking) {
      parts.push(`Microphone on: ${ENCODER_NAMES[s.encoder]}${s.capture && s.capture !== 'MediaRecorder' ? ` from ${s.capture}` : ''}`);
      parts.push(mine(cur.room)?.muted ? 'muted, nothing is sent' : `${s.sent} packets sent`);
    } else parts.push('Microphone off');
    if (sup && !sup.decoder) parts.push('this browser has no WebCodecs AudioDecoder for Opus: you will not hear the others');
    else if (s) parts.push(`heard ${s.decoded} packets${s.lost ? `, ${s.lost} lost` : ''}${s.late ? `, ${s.late} late` : ''}`);
    el.textContent = parts.join(' · ') + '.';
    el.dataset.encoder = s?.encoder || '';
    $('audio-blocked').hidden = !voice?.audioBlocked || !voice.speakers.size;
  }

  $('audio-unblock').addEventListener('click', () => {
    st.current?.voice?.audio();
    setTimeout(renderVoiceStatus, 200);
  });

  $('voice-encoder').addEventListener('change', (e) => {
    localStorage.setItem(ENCODER_KEY, e.currentTarget.value);
  });

  $('talk').addEventListener('click', async () => {
    const cur = st.current;
    const voice = cur?.voice;
    if (!voice) return;
    showError('');
    if (voice.talking) {
      voice.stopTalking();
      return renderRoom();
    }
    const btn = $('talk');
    btn.disabled = true;
    voice.audio();
    try {
      const kind = await voice.startTalking($('voice-encoder').value);
      // Tell the others how this member's packets are made (the packets are the same either way).
      client().sendRoomMessage(cur.id, { type: 'voice', encoder: kind }).catch(() => {});
      cur.encoderOf.set(me().user_id, kind);
    } catch (err) {
      showError(`Could not start the microphone: ${errorText(err)}`);
    } finally {
      btn.disabled = false;
      renderRoom();
    }
  });

  $('self-mute').addEventListener('click', async () => {
    const cur = st.current;
    if (!cur?.room) return;
    const muted = !mine(cur.room)?.muted;
    showError('');
    cur.voice?.setMuted(muted);
    try {
      await client().muteSelf(cur.id, muted);
    } catch (err) {
      cur.voice?.setMuted(!muted);
      showError(`Could not ${muted ? 'mute' : 'unmute'}: ${errorText(err)}`);
    }
    renderRoom();
  });

  $('room-delete').addEventListener('click', async () => {
    const cur = st.current;
    if (!cur || !confirm(`Delete the room “${cur.name}”? Everyone in it is out.`)) return;
    showError('');
    try {
      await client().deleteRoom(cur.id);
      st.list = st.list.filter((r) => r.room_id !== cur.id);
      renderList();
      refreshList();
    } catch (err) {
      showError(`Could not delete the room: ${errorText(err)}`);
    }
  });

  // ------------------------------------------------------------ the room's events, as lines

  function logLine(...parts) {
    const list = $('room-log');
    list.append(h('li', {}, h('time', {}, new Date().toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })), ' ', ...parts));
    while (list.children.length > 50) list.firstElementChild.remove();
  }

  const here = (d) => st.current && !st.current.out && d?.room_id === st.current.id;

  function onEvent(cmd, d) {
    if (!here(d) && !(cmd === 'room.left' && st.current?.id === d?.room_id)) return;
    switch (cmd) {
      case 'room.joined':
        logLine(who(d.user_id), ` joined as #${d.member_no}.`);
        break;
      case 'room.left':
        if (d.user_id === me()?.user_id) break;
        st.current.encoderOf.delete(d.user_id);
        logLine(who(d.user_id), ` ${LEFT_TEXT[d.reason] || 'left'}.`);
        break;
      case 'room.muted': {
        const by = d.by && d.by !== d.user_id ? d.by : null;
        if (by) logLine(who(by), ` ${d.muted ? 'muted' : 'unmuted'} `, who(d.user_id, { lower: true }), '.');
        else logLine(who(d.user_id), d.muted ? ' muted themselves.' : ' unmuted.');
        break;
      }
      case 'room.message': {
        const body = d.body;
        if (body && typeof body === 'object' && body.type === 'voice' && typeof body.encoder === 'string') {
          st.current.encoderOf.set(d.from, body.encoder);
          renderMembers();
        } else logLine(who(d.from), ': ', typeof body === 'string' ? body : JSON.stringify(body));
        break;
      }
      default:
        break;
    }
  }

  // ------------------------------------------------------------ lifetime

  function attach(c) {
    detach();
    const on = (name, fn) => st.unsub.push(c.on(name, fn));
    on('room.state', onState);
    on('audio', (f) => st.current?.voice?.onAudio(f));
    for (const cmd of ['room.joined', 'room.left', 'room.muted', 'room.message']) on(cmd, (d) => onEvent(cmd, d));
    on('room.rejoined', (room) => {
      if (here(room)) logLine(`Back in the room after reconnecting, as #${room.me}.`);
    });
    on('state', (s) => {
      if (s === 'online' && st.visible) refreshList();
      renderRoom();
    });
  }

  function detach() {
    for (const f of st.unsub.splice(0)) f();
    st.current?.voice?.close();
    st.current = null;
    st.list = [];
    $('room-list').replaceChildren();
    $('room-log').replaceChildren();
    document.body.classList.remove('room-open');
    renderRoom();
  }

  function show() {
    st.visible = true;
    refreshList();
    clearInterval(st.timer);
    st.timer = setInterval(() => document.visibilityState === 'visible' && refreshList(), LIST_REFRESH_MS);
  }

  function hide() {
    st.visible = false;
    clearInterval(st.timer);
    st.timer = null;
  }

  /** Names became known: the rows follow (who() nodes update themselves; labels do not). */
  function namesChanged() {
    if (st.visible) {
      renderList();
      renderMembers();
    }
  }

  return { attach, detach, show, hide, join, refreshList, namesChanged, get current() { return st.current; } };
}
