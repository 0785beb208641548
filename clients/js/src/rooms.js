// Voice rooms (docs/protocol.md, "Voice rooms"): the binary audio frames and the member list a
// client keeps of a room it is in. ConvergeClient uses these; they are exported for tests and
// for apps that handle frames themselves.

/** Frame kind of an audio frame, the first byte of both directions. */
export const AUDIO_KIND = 1;
/** Payload bounds of one frame the node accepts (one Opus packet). */
export const MAX_AUDIO_PAYLOAD = 4000;
const UP_HEADER = 7; // [u8 kind][u32 room_id][u16 seq]
const DOWN_HEADER = 11; // [u8 kind][u32 room_id][u32 sender member_no][u16 seq]

/** A room id as the protocol has it: an integer in 1..2^32-1. Throws TypeError otherwise. */
export function roomIdOf(id) {
  const n = typeof id === 'string' && /^\d+$/.test(id) ? Number(id) : id;
  if (!Number.isInteger(n) || n < 1 || n > 0xffffffff) throw new TypeError(`not a room id: ${id}`);
  return n;
}

function bytesOf(payload) {
  if (payload instanceof Uint8Array) return payload;
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  throw new TypeError('audio payload: an ArrayBuffer or a typed array');
}

/** client -> node: `[u8 1][u32 room_id][u16 seq][payload]`, big-endian. */
export function encodeAudioFrame(roomId, seq, payload) {
  const id = roomIdOf(roomId);
  const p = bytesOf(payload);
  if (p.byteLength < 1 || p.byteLength > MAX_AUDIO_PAYLOAD)
    throw new RangeError(`audio payload of ${p.byteLength} bytes (1 to ${MAX_AUDIO_PAYLOAD})`);
  const out = new Uint8Array(UP_HEADER + p.byteLength);
  const v = new DataView(out.buffer);
  v.setUint8(0, AUDIO_KIND);
  v.setUint32(1, id);
  v.setUint16(5, seq & 0xffff);
  out.set(p, UP_HEADER);
  return out;
}

/**
 * node -> client: `[u8 1][u32 room_id][u32 sender member_no][u16 seq][payload]` ->
 * {roomId, memberNo, seq, payload: Uint8Array (a view, not a copy)}, or null if it is not one.
 */
export function decodeAudioFrame(data) {
  let b;
  try {
    b = bytesOf(data);
  } catch {
    return null;
  }
  if (b.byteLength <= DOWN_HEADER || b[0] !== AUDIO_KIND) return null;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    roomId: v.getUint32(1),
    memberNo: v.getUint32(5),
    seq: v.getUint16(9),
    payload: b.subarray(DOWN_HEADER),
  };
}

/** For tests and relays: the node's form of a frame (what decodeAudioFrame reads). */
export function encodeRelayedFrame(roomId, memberNo, seq, payload) {
  const p = bytesOf(payload);
  const out = new Uint8Array(DOWN_HEADER + p.byteLength);
  const v = new DataView(out.buffer);
  v.setUint8(0, AUDIO_KIND);
  v.setUint32(1, roomIdOf(roomId));
  v.setUint32(5, memberNo >>> 0);
  v.setUint16(9, seq & 0xffff);
  out.set(p, DOWN_HEADER);
  return out;
}

/**
 * The state of a room the client is in, from a `room.join` reply and kept current by the room
 * events: {room_id, id, name, owner, max_members, me, members: [{user_id, member_no, muted,
 * speaking}] by member_no, connected (joined on the current connection), ...}.
 */
export function roomFromReply(data, old) {
  const room = { ...(old || {}), ...data };
  room.room_id = room.id = roomIdOf(data.room_id ?? data.id ?? old?.room_id);
  room.members = (Array.isArray(data.members) ? data.members : old?.members || []).map((m) => ({
    user_id: m.user_id,
    member_no: m.member_no,
    muted: !!m.muted,
    speaking: !!m.speaking,
  }));
  sortMembers(room);
  room.member_count = room.members.length;
  return room;
}

export function sortMembers(room) {
  room.members.sort((a, b) => a.member_no - b.member_no);
}

/** The member entry of a user in a room, or undefined. */
export function memberOf(room, userId) {
  return room?.members.find((m) => m.user_id === userId);
}
